"""Vector indexes on real LanceDB in tmp_path: build, open, search (every strategy), filters, lineage, the
wrong-embedder guard, every rejected input, and packing (determinism, unsafe archives, concurrent unpackers)."""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlpilot.errors import FailedPrecondition, IntegrityError, InvalidArgument
from mlpilot.llm.index import Embedder, Hit, VectorIndex, build_index, pack_index, unpack_index
from tests.factories import index_tar, tar_member

DIMS = 64
TOPICS = ["apple banana fruit", "engine wheel car", "python code bug", "river mountain lake"]


class HashEmbedder:
    """Deterministic bag of words hashed into 64 dimensions, L2-normalised."""

    def __init__(self, name: str = "hash-bow", fingerprint: str = "hash-bow-v1") -> None:
        self.name, self.fingerprint, self.dimensions = name, fingerprint, DIMS

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), DIMS), np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % DIMS] += 1.0
        out[:, 0] += 1e-3  # never a zero vector
        return out / np.linalg.norm(out, axis=1, keepdims=True)


class BrokenEmbedder(HashEmbedder):
    def __init__(self, damage: Callable[[np.ndarray], Any]) -> None:
        super().__init__()
        self.damage = damage

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.damage(super().embed(texts))  # type: ignore[no-any-return]


def corpus(n: int = 40) -> list[dict[str, Any]]:
    return [
        {
            "id": f"doc-{i}",
            "text": f"Document {i} is about {TOPICS[i % 4]}. " + f"More words on {TOPICS[i % 4]} number {i}. " * 3,
            "lang": "en" if i % 2 else "fr",
            "year": 2020 + i % 3,
            "tags": ["x"],
        }
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("idx") / "kb"
    build_index(corpus(), HashEmbedder(), path, chunk_chars=120, overlap_chars=20, corpus_ref="kb-docs:3")
    return path


@pytest.fixture(scope="module")
def built_ivf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("idx") / "kb-ivf"
    build_index(corpus(300), HashEmbedder(), path, chunk_chars=400, overlap_chars=20, ann="ivf_pq")
    return path


def test_the_fake_embedder_satisfies_the_protocol() -> None:
    assert isinstance(HashEmbedder(), Embedder)


def test_manifest_records_lineage_counts_and_settings(built: Path) -> None:
    raw = json.loads((built / "manifest.json").read_text())
    index = VectorIndex.open(built)
    m = index.manifest
    assert raw["schema_version"] == 1 and raw["corpus_ref"] == "kb-docs:3"
    assert m.embedding.model_dump() == {"name": "hash-bow", "fingerprint": "hash-bow-v1", "dimensions": DIMS}
    assert (m.chunking.chunk_chars, m.chunking.overlap_chars, m.metric) == (120, 20, "cosine")
    assert m.counts.documents == 40 and m.counts.chunks > 40
    assert m.ann.kind == "flat" and m.ann.requested == "auto" and index.strategy == "numpy"
    assert m.metadata_fields == {"lang": "string", "tags": "json", "year": "int"}
    assert m.content_digest.startswith("sha256:") and m.build_seconds >= 0


def test_two_builds_of_the_same_corpus_have_the_same_digest(built: Path, tmp_path: Path) -> None:
    again = build_index(corpus(), HashEmbedder(), tmp_path / "again", chunk_chars=120, overlap_chars=20)
    other = build_index(corpus()[:-1], HashEmbedder(), tmp_path / "other", chunk_chars=120, overlap_chars=20)
    assert again.content_digest == VectorIndex.open(built).manifest.content_digest
    assert other.content_digest != again.content_digest


@pytest.mark.parametrize("strategy", ["numpy", "lance_flat"])
def test_search_returns_the_topic_best_first_with_cosine_scores(built: Path, strategy: Any) -> None:
    index = VectorIndex.open(built, strategy=strategy)
    hits = index.search_text("python code bug", HashEmbedder(), k=6)
    assert len(hits) == 6 and all(isinstance(h, Hit) for h in hits)
    assert all("python code bug" in h.text for h in hits)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0 + 1e-6 for s in scores)
    assert hits[0].chunk_id.startswith(hits[0].doc_id + "#")
    assert hits[0].metadata["tags"] == ["x"]
    vec = HashEmbedder().embed([hits[0].text])[0]
    assert index.search(vec, k=1)[0].score == pytest.approx(1.0, abs=1e-5)


def test_strategies_agree_and_batches_match_single_queries(built: Path) -> None:
    queries = HashEmbedder().embed(["apple fruit", "mountain lake", "wheel"])
    exact = VectorIndex.open(built, strategy="numpy")
    scan = VectorIndex.open(built, strategy="lance_flat")
    batch = exact.search(queries, k=5)
    assert len(batch) == 3
    for q, hits in zip(queries, batch, strict=True):
        assert [h.chunk_id for h in exact.search(q, k=5)] == [h.chunk_id for h in hits]
        assert [round(h.score, 4) for h in scan.search(q, k=5)] == [round(h.score, 4) for h in hits]
    assert exact.search(queries.tolist(), k=2)[1][0].chunk_id == batch[1][0].chunk_id


@pytest.mark.parametrize("strategy", ["numpy", "lance_flat"])
def test_filters_and_min_score(built: Path, strategy: Any) -> None:
    index = VectorIndex.open(built, strategy=strategy)
    embedder = HashEmbedder()
    fr = index.search_text("apple fruit", embedder, k=50, where={"lang": "fr", "year": 2021})
    assert fr and all(h.metadata["lang"] == "fr" and h.metadata["year"] == 2021 for h in fr)
    both = index.search_text("apple fruit", embedder, k=200, where={"year": [2020, 2022]})
    assert {h.metadata["year"] for h in both} == {2020, 2022}
    assert index.search_text("apple", embedder, k=5, where={"lang": "de"}) == []
    good = index.search_text("apple banana fruit", embedder, k=50, min_score=0.5)
    assert good and all(h.score >= 0.5 for h in good) and len(good) < 50


@pytest.mark.parametrize(
    ("where", "message"),
    [({"tags": "x"}, "cannot filter on 'tags'"), ({"nope": 1}, "cannot filter"), ({"year": "2020"}, "int values")],
    ids=["json-field", "unknown-field", "wrong-type"],
)
def test_bad_filters_are_rejected(built: Path, where: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        VectorIndex.open(built).search_text("apple", HashEmbedder(), where=where)


@pytest.mark.parametrize(
    ("query", "k", "message"),
    [(np.zeros(3), 5, "64 dimensions"), (np.full(DIMS, np.nan), 5, "non-finite"), (np.ones(DIMS), 0, "k must")],
    ids=["wrong-dims", "nan", "k-zero"],
)
def test_bad_queries_are_rejected(built: Path, query: np.ndarray, k: int, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        VectorIndex.open(built).search(query, k=k)


def test_a_query_with_another_embedder_fails_with_both_names(built: Path) -> None:
    other = HashEmbedder(name="minilm", fingerprint="minilm-sha256:abc")
    with pytest.raises(FailedPrecondition, match=r"index built with hash-bow .*queried with minilm"):
        VectorIndex.open(built).search_text("apple", other)


def test_concurrent_searches_give_the_same_answers(built: Path) -> None:
    index = VectorIndex.open(built)
    queries = HashEmbedder().embed([t + " extra" for t in TOPICS] * 10)
    expected = [[h.chunk_id for h in index.search(q, k=4)] for q in queries]
    with ThreadPoolExecutor(8) as pool:
        got = list(
            pool.map(lambda q: [h.chunk_id for h in index.search(q, k=4, where={"lang": ["en", "fr"]})], queries)
        )
    assert got == expected


def test_ivf_pq_records_recall_and_searches_with_filters(built_ivf: Path) -> None:
    index = VectorIndex.open(built_ivf)
    ann = index.manifest.ann
    assert index.strategy == "ivf_pq" and ann.kind == "ivf_pq" and ann.num_partitions and ann.num_sub_vectors
    assert ann.recall_at_10 is not None and 0.0 < ann.recall_at_10 <= 1.0 and ann.recall_queries == 100
    hits = index.search_text("engine wheel car", HashEmbedder(), k=5, where={"lang": "en"})
    assert hits and all("engine wheel car" in h.text and h.metadata["lang"] == "en" for h in hits)
    assert hits[0].score == pytest.approx(VectorIndex.open(built_ivf, strategy="numpy").search_text(
        "engine wheel car", HashEmbedder(), k=1, where={"lang": "en"})[0].score, abs=1e-4)  # fmt: skip


def test_opening_rejects_what_is_not_an_index(built: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match=r"manifest\.json is missing"):
        VectorIndex.open(tmp_path)
    with pytest.raises(InvalidArgument, match="without an IVF-PQ index"):
        VectorIndex.open(built, strategy="ivf_pq")
    (tmp_path / "manifest.json").write_text('{"schema_version": 9}')
    with pytest.raises(InvalidArgument, match="not a valid index manifest"):
        VectorIndex.open(tmp_path)


@pytest.mark.parametrize(
    ("documents", "embedder", "kwargs", "message"),
    [
        ([], HashEmbedder(), {}, "empty corpus"),
        ([{"id": "a", "text": "x"}, {"id": "a", "text": "y"}], HashEmbedder(), {}, "duplicate document id"),
        ([{"id": "a", "text": " "}], HashEmbedder(), {}, "empty text"),
        (corpus(3), BrokenEmbedder(lambda v: v[:, :10]), {}, r"shape \(\d+, 10\).*expected \(\d+, 64\)"),
        (corpus(3), BrokenEmbedder(lambda v: v[:-1]), {}, "shape"),
        (corpus(3), BrokenEmbedder(lambda v: v * np.nan), {}, "non-finite"),
        (corpus(3), BrokenEmbedder(lambda v: v * 0), {}, "zero vector"),
        (corpus(3), BrokenEmbedder(lambda v: "nope"), {}, "not a numeric array|shape"),
        (corpus(3), HashEmbedder(), {"metric": "l2"}, "metric"),
        (corpus(3), HashEmbedder(), {"ann": "hnsw"}, "ann must"),
        (corpus(3), HashEmbedder(), {"ann": "ivf_pq"}, "at least 256 chunks"),
        (corpus(3), HashEmbedder(), {"batch_size": 0}, "batch_size"),
        (corpus(3), HashEmbedder(), {"chunk_chars": 100, "overlap_chars": 60}, "less than half"),
    ],
    ids=[
        "empty", "duplicate-ids", "empty-text", "wrong-dims", "wrong-rows", "nan", "zero", "not-array",
        "bad-metric", "bad-ann", "ivf-too-small", "bad-batch", "bad-overlap",
    ],
)  # fmt: skip
def test_build_rejects_bad_input_and_leaves_nothing(
    tmp_path: Path, documents: Any, embedder: Any, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        build_index(documents, embedder, tmp_path / "idx", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_build_refuses_an_existing_index(built: Path) -> None:
    with pytest.raises(InvalidArgument, match="already exists"):
        build_index(corpus(), HashEmbedder(), built)


def test_build_from_a_directory_of_markdown(tmp_path: Path) -> None:
    (tmp_path / "docs" / "guide").mkdir(parents=True)
    (tmp_path / "docs" / "guide" / "deploy.md").write_text("# Deploy\n\nRun mlpilot up to deploy a model.")
    (tmp_path / "docs" / "faq.txt").write_text("Rollouts are canaries with gates.")
    build_index(tmp_path / "docs", HashEmbedder(), tmp_path / "idx")
    hits = VectorIndex.open(tmp_path / "idx").search_text("deploy a model", HashEmbedder(), k=1)
    assert hits[0].chunk_id == "guide/deploy.md#0"


def test_pack_is_deterministic_and_round_trips(built: Path, tmp_path: Path) -> None:
    one, two = pack_index(built, tmp_path / "one.tar"), pack_index(built, tmp_path / "two.tar")
    assert one.digest == two.digest and one.read_bytes() == two.read_bytes()
    assert one.digest == "sha256:" + hashlib.sha256(one.read_bytes()).hexdigest() and one.size > 0
    with tarfile.open(one.path) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == sorted(m.name for m in members)
    assert all(m.mtime == 0 and m.uid == 0 and m.uname == "" for m in members)
    out = unpack_index(one.read_bytes(), tmp_path / "cache" / "a", expected_digest=one.digest)
    hits = VectorIndex.open(out).search_text("river lake", HashEmbedder(), k=3)
    assert [h.chunk_id for h in hits] == [h.chunk_id for h in VectorIndex.open(built).search_text(
        "river lake", HashEmbedder(), k=3)]  # fmt: skip
    assert unpack_index(one.path, out) == out  # already there: a cache hit
    with pytest.raises(IntegrityError, match="expected sha256:00"):
        unpack_index(one.path, tmp_path / "cache" / "b", expected_digest="sha256:" + "0" * 64)


def test_pack_refuses_a_symlink_inside_the_index(built: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    unpack_index(pack_index(built, tmp_path / "p.tar").path, copy)
    (copy / "link").symlink_to("/etc/passwd")
    with pytest.raises(InvalidArgument, match="only regular files"):
        pack_index(copy, tmp_path / "bad.tar")


@pytest.mark.parametrize(
    ("archive", "message"),
    [
        (index_tar([(tar_member("../evil"), b"x")]), "unsafe path"),
        (index_tar([(tar_member("a/../../evil"), b"x")]), "unsafe path"),
        (index_tar([(tar_member("/etc/evil"), b"x")]), "unsafe path"),
        (index_tar([(tar_member("link", tarfile.SYMTYPE, "/etc/passwd"), None)]), "link or special"),
        (index_tar([(tar_member("hard", tarfile.LNKTYPE, "manifest.json"), None)]), "link or special"),
        (index_tar([(tar_member("dev", tarfile.CHRTYPE), None)]), "link or special"),
        (index_tar([(tar_member("fifo", tarfile.FIFOTYPE), None)]), "link or special"),
        (index_tar([(tar_member("big"), b"x" * 2000)]), "over 1000"),
        (b"not a tar at all" * 100, "not a readable tar"),
        (index_tar([]), "not a valid index manifest"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink", "hardlink", "device", "fifo", "oversize", "garbage",
         "no-index"],
)  # fmt: skip
def test_unpack_rejects_unsafe_archives(tmp_path: Path, archive: bytes, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        unpack_index(archive, tmp_path / "cache" / "x", max_member_bytes=1000)
    assert list((tmp_path / "cache").iterdir()) == []  # nothing left behind, not even the temp dir
    assert not (tmp_path / "evil").exists()


def test_unpack_total_limit(built: Path, tmp_path: Path) -> None:
    packed = pack_index(built, tmp_path / "p.tar")
    with pytest.raises(InvalidArgument, match="uncompressed"):
        unpack_index(packed.path, tmp_path / "x", max_total_bytes=1000)


def test_concurrent_unpackers_of_one_digest_all_get_a_whole_index(built: Path, tmp_path: Path) -> None:
    packed = pack_index(built, tmp_path / "p.tar")
    dest = tmp_path / "cache" / packed.digest.replace(":", "-")
    barrier = threading.Barrier(6)

    def unpack(_: int) -> Path:
        barrier.wait()
        return unpack_index(packed.path, dest, expected_digest=packed.digest)

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(unpack, range(6)))
    assert results == [dest] * 6
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [dest.name]  # no temp dirs left
    assert VectorIndex.open(dest).manifest == VectorIndex.open(built).manifest
