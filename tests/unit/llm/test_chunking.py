"""Chunking and corpus loading: deterministic splits, bounded sizes, overlap, validation of documents."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlpilot.errors import InvalidArgument
from mlpilot.llm.chunking import Document, chunk_documents, chunk_text, load_documents, metadata_fields

SENTENCES = " ".join(f"Sentence number {i} talks about topic {i % 7} in some detail." for i in range(60))
TEXT = f"{SENTENCES}\n\nA second paragraph follows here.\n\n\n  Third one, after extra blank lines."


def test_short_text_is_one_chunk_with_whitespace_normalised() -> None:
    assert chunk_text("  Hello   world.\tBye.  ") == ["Hello world. Bye."]


def test_paragraphs_are_joined_by_a_blank_line_when_they_fit() -> None:
    assert chunk_text("One.\n\nTwo.\r\n\r\nThree.") == ["One.\n\nTwo.\n\nThree."]


@pytest.mark.parametrize(("size", "overlap"), [(800, 100), (200, 50), (120, 0), (60, 20)], ids=str)
def test_chunks_respect_the_size_and_cover_every_sentence(size: int, overlap: int) -> None:
    chunks = chunk_text(TEXT, chunk_chars=size, overlap_chars=overlap)
    assert len(chunks) > 1
    assert all(0 < len(c) <= size for c in chunks)
    joined = " ".join(chunks)
    for i in range(60):
        assert f"Sentence number {i} " in joined
    assert "Third one, after extra blank lines." in chunks[-1]


def test_each_chunk_starts_with_the_tail_of_the_previous_one() -> None:
    chunks = chunk_text(SENTENCES, chunk_chars=200, overlap_chars=50)
    for prev, nxt in itertools.pairwise(chunks):
        # the overlap is at most 50 characters, cut forward to a word boundary (so at least 50 - a word)
        assert any(nxt.startswith(prev[-j:].strip()) for j in range(35, 51) if prev[-j - 1] == " "), (prev, nxt)


def test_no_overlap_means_disjoint_chunks() -> None:
    chunks = chunk_text(SENTENCES, chunk_chars=200, overlap_chars=0)
    assert " ".join(chunks) == SENTENCES


def test_a_word_longer_than_a_chunk_is_cut_by_characters() -> None:
    chunks = chunk_text("x" * 250 + " end.", chunk_chars=100, overlap_chars=0)
    assert chunks == ["x" * 100, "x" * 100, "x" * 50 + " end."]


def test_chunking_is_deterministic_and_ids_are_numbered() -> None:
    docs = [Document("a", TEXT, {"lang": "en"}), Document("b/c.md", "Short.")]
    one = chunk_documents(docs, chunk_chars=200, overlap_chars=40)
    two = chunk_documents(docs, chunk_chars=200, overlap_chars=40)
    assert one == two
    ids = [c.chunk_id for c in one]
    assert ids[:2] == ["a#0", "a#1"] and ids[-1] == "b/c.md#0"
    assert all(c.metadata == {"lang": "en"} for c in one if c.doc_id == "a")


@pytest.mark.parametrize(
    ("size", "overlap", "message"),
    [(0, 0, "chunk_chars"), (100, -1, "overlap_chars"), (100, 50, "less than half"), (True, 0, "chunk_chars")],
    ids=["zero-size", "negative-overlap", "overlap-too-big", "bool-size"],
)
def test_bad_chunking_parameters_are_rejected(size: int, overlap: int, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        chunk_text("text", chunk_chars=size, overlap_chars=overlap)


def test_load_documents_from_rows_keeps_metadata_and_stringifies_int_ids() -> None:
    docs = load_documents([{"id": 7, "text": "hello", "lang": "en", "tags": ["a"]}])
    assert docs == [Document("7", "hello", {"lang": "en", "tags": ["a"]})]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([], "empty corpus"),
        ([{"id": "a", "text": "x"}, {"id": "a", "text": "y"}], "duplicate document id 'a'"),
        ([{"id": "a", "text": "  \n"}], "empty text"),
        ([{"id": "a"}], "empty text"),
        ([{"text": "x"}], "has no id"),
        (["just a string"], "expected an object"),
        ([{"id": "a", "text": "x", "bad key": 1}], "metadata key 'bad key'"),
        ([{"id": "a", "text": "x", "vector": 1}], "metadata key 'vector'"),
        ([{"id": "a", "text": "x", "when": object()}], "not JSON"),
    ],
    ids=["empty", "duplicate", "blank-text", "no-text", "no-id", "not-object", "key-space", "reserved", "not-json"],
)
def test_bad_documents_are_rejected(rows: list[object], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        load_documents(rows)  # type: ignore[arg-type]


def test_load_documents_from_files(tmp_path: Path) -> None:
    rows = [{"id": "a", "text": "alpha", "n": 1}, {"id": "b", "text": "beta", "n": 2}]
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    (tmp_path / "c.json").write_text(json.dumps(rows))
    (tmp_path / "c.csv").write_text("id,text,n\na,alpha,1\nb,beta,2\n")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "c.parquet")
    expected = [Document("a", "alpha", {"n": 1}), Document("b", "beta", {"n": 2})]
    for name in ("c.jsonl", "c.json", "c.parquet"):
        assert load_documents(tmp_path / name) == expected, name
    assert load_documents(tmp_path / "c.csv")[1] == Document("b", "beta", {"n": "2"})  # CSV values are strings


def test_load_documents_from_a_directory_uses_relative_paths_as_ids(tmp_path: Path) -> None:
    (tmp_path / "guide").mkdir()
    (tmp_path / "guide" / "b.md").write_text("# B\n\nbee")
    (tmp_path / "a.txt").write_text("ay")
    (tmp_path / "skip.bin").write_bytes(b"\x00")
    assert [d.id for d in load_documents(tmp_path)] == ["a.txt", "guide/b.md"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("x.jsonl", "{broken", "cannot read"),
        ("x.json", '{"id": 1}', "list of objects"),
        ("x.xml", "<a/>", "unsupported"),
    ],
    ids=["bad-json", "json-not-list", "unsupported"],
)
def test_unreadable_corpus_files_are_rejected(tmp_path: Path, name: str, content: str, message: str) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(InvalidArgument, match=message):
        load_documents(tmp_path / name)
    with pytest.raises(InvalidArgument, match="not found"):
        load_documents(tmp_path / "missing.jsonl")


def test_metadata_field_types() -> None:
    docs = [
        Document("a", "x", {"s": "en", "i": 1, "f": 1, "b": True, "l": [1], "m": "x", "z": None}),
        Document("b", "y", {"s": None, "i": 2, "f": 2.5, "b": False, "l": [2], "m": 3, "z": None}),
    ]
    assert metadata_fields(docs) == {
        "b": "bool", "f": "float", "i": "int", "l": "json", "m": "json", "s": "string", "z": "json"
    }  # fmt: skip
