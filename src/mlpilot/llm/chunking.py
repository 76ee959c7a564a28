"""Documents and chunks: loading a corpus and splitting it deterministically for a vector index.

A document is a row ``{"id": str, "text": str, **metadata}``. A corpus comes from a list of such dicts, a JSONL,
JSON (a list of objects), Parquet or CSV file, or a directory of ``.md``/``.txt`` files (id = the path relative to
the directory, with ``/``; no metadata). Ids must be unique, texts non-blank, metadata keys identifiers
(``[A-Za-z_][A-Za-z0-9_]*``, not one of the index's own columns) with JSON values.

Chunking splits a text into paragraphs (blank lines), paragraphs into sentences (after ``.``, ``!``, ``?`` followed by
whitespace), and sentences longer than a chunk into words (or, for a word that long, hard character cuts). Units
are packed greedily into chunks of at most ``chunk_chars`` characters (paragraphs joined with a blank line, sentences
with a space). Each chunk after the first of a document starts with the last ``overlap_chars`` characters of the
previous chunk, moved forward to a word boundary, so a sentence cut at a chunk boundary keeps its context. Chunk
ids are ``"{doc_id}#{n}"`` (``n`` from 0). The same text and parameters always give the same chunks.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlpilot.errors import InvalidArgument

__all__ = [
    "DEFAULT_CHUNK_CHARS",
    "DEFAULT_OVERLAP_CHARS",
    "RESERVED_FIELDS",
    "Chunk",
    "Document",
    "DocumentSource",
    "check_chunking",
    "chunk_documents",
    "chunk_text",
    "load_documents",
    "metadata_fields",
]

DEFAULT_CHUNK_CHARS = 800
DEFAULT_OVERLAP_CHARS = 100
#: Column names of the index table; metadata may not use them.
RESERVED_FIELDS = frozenset({"id", "text", "chunk_id", "doc_id", "vector", "metadata", "_distance", "_rowid"})
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_PARAGRAPH = re.compile(r"\n[ \t]*\n\s*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_SPACE = re.compile(r"\s+")
_TEXT_SUFFIXES = (".md", ".txt")

DocumentSource = Sequence[Mapping[str, Any]] | str | Path


@dataclass(frozen=True)
class Document:
    """One validated document: its id, its text and its metadata (JSON values, identifier keys)."""

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Chunk:
    """One piece of a document: ``chunk_id`` is ``"{doc_id}#{n}"``; metadata is the document's."""

    chunk_id: str
    doc_id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


def load_documents(source: DocumentSource | Iterable[Mapping[str, Any]]) -> list[Document]:
    """Read and validate a corpus.

    Args:
        source: a sequence of ``{"id", "text", **metadata}`` mappings; or a path to a ``.jsonl``, ``.json``,
            ``.parquet`` or ``.csv`` file of such rows; or a directory whose ``.md``/``.txt`` files (recursively,
            sorted) are the documents.

    Returns:
        The documents in source order.

    Raises:
        InvalidArgument: the corpus is empty, a row has no id or a blank text, an id repeats, a metadata key is not
            an identifier or is reserved, a value is not JSON, or the file cannot be read.
    """
    rows: Iterable[Mapping[str, Any]]
    if isinstance(source, (str, Path)):
        rows = _read_path(Path(source))
        where = str(source)
    else:
        rows = source
        where = "the documents"
    docs: list[Document] = []
    seen: dict[str, int] = {}
    for i, row in enumerate(rows):
        doc = _document(row, i)
        if doc.id in seen:
            raise InvalidArgument(f"duplicate document id {doc.id!r} (rows {seen[doc.id]} and {i}); ids must be unique")
        seen[doc.id] = i
        docs.append(doc)
    if not docs:
        raise InvalidArgument(f"empty corpus: {where} holds no documents")
    return docs


def _document(row: Any, i: int) -> Document:
    if not isinstance(row, Mapping):
        raise InvalidArgument(f"document row {i} is a {type(row).__name__}, expected an object with 'id' and 'text'")
    doc_id, text = row.get("id"), row.get("text")
    if isinstance(doc_id, int) and not isinstance(doc_id, bool):
        doc_id = str(doc_id)
    if not isinstance(doc_id, str) or not doc_id.strip():
        raise InvalidArgument(f"document row {i} has no id: every row needs a non-empty string 'id'")
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgument(f"document {doc_id!r} (row {i}) has an empty text: every row needs a non-blank 'text'")
    metadata: dict[str, Any] = {}
    for key, value in row.items():
        if key in ("id", "text"):
            continue
        if not isinstance(key, str) or not _KEY.match(key) or key in RESERVED_FIELDS:
            raise InvalidArgument(
                f"document {doc_id!r}: metadata key {key!r} is not allowed; use identifiers "
                f"([A-Za-z_][A-Za-z0-9_]*) other than {sorted(RESERVED_FIELDS)}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            value = None  # NaN is how Parquet/pandas spell a missing value
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(f"document {doc_id!r}: metadata {key!r} is not JSON: {exc}") from exc
        metadata[key] = value
    return Document(doc_id, text, metadata)


def _read_path(path: Path) -> list[Mapping[str, Any]]:
    try:
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in _TEXT_SUFFIXES)
            return [{"id": p.relative_to(path).as_posix(), "text": p.read_text(encoding="utf-8")} for p in files]
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            with path.open(encoding="utf-8") as f:
                return [json.loads(line) for line in f if line.strip()]
        if suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, list):
                raise InvalidArgument(f"{path}: a JSON corpus must be a list of objects")
            return data
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
        if suffix == ".csv":
            with path.open(encoding="utf-8", newline="") as f:
                return list(csv.DictReader(f))
    except FileNotFoundError as exc:
        raise InvalidArgument(f"corpus not found: {path}") from exc
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidArgument(f"cannot read corpus {path}: {exc}") from exc
    except Exception as exc:  # pyarrow's errors (ArrowInvalid …) on a corrupt Parquet file
        raise InvalidArgument(f"cannot read corpus {path}: {exc}") from exc
    raise InvalidArgument(f"unsupported corpus {path}: use .jsonl, .json, .parquet, .csv or a directory of .md/.txt")


def metadata_fields(documents: Sequence[Document]) -> dict[str, str]:
    """Each metadata key's column type: ``string``, ``int``, ``float``, ``bool`` (filterable) or ``json``."""
    seen: dict[str, set[str]] = {}
    for doc in documents:
        for key, value in doc.metadata.items():
            kinds = seen.setdefault(key, set())
            if value is None:
                continue
            if isinstance(value, bool):
                kinds.add("bool")
            elif isinstance(value, int):
                kinds.add("int")
            elif isinstance(value, float):
                kinds.add("float")
            elif isinstance(value, str):
                kinds.add("string")
            else:
                kinds.add("json")
    out: dict[str, str] = {}
    for key, kinds in sorted(seen.items()):
        if kinds <= {"int", "float"} and kinds:
            out[key] = "float" if "float" in kinds else "int"
        elif len(kinds) == 1 and kinds <= {"bool", "string"}:
            out[key] = next(iter(kinds))
        else:  # lists, objects, mixed types or always null: kept in the JSON column, not filterable
            out[key] = "json"
    return out


def check_chunking(chunk_chars: int, overlap_chars: int) -> None:
    """Raise :class:`InvalidArgument` unless ``1 <= chunk_chars`` and ``0 <= 2 * overlap_chars < chunk_chars``."""
    if isinstance(chunk_chars, bool) or not isinstance(chunk_chars, int) or chunk_chars < 1:
        raise InvalidArgument(f"chunk_chars must be a positive integer, got {chunk_chars!r}")
    if isinstance(overlap_chars, bool) or not isinstance(overlap_chars, int) or overlap_chars < 0:
        raise InvalidArgument(f"overlap_chars must be a non-negative integer, got {overlap_chars!r}")
    if 2 * overlap_chars >= chunk_chars:
        raise InvalidArgument(f"overlap_chars ({overlap_chars}) must be less than half of chunk_chars ({chunk_chars})")


def _pieces(sentence: str, limit: int) -> list[str]:
    """A sentence cut into word runs of at most ``limit`` characters (a longer word is cut by characters)."""
    if len(sentence) <= limit:
        return [sentence]
    out: list[str] = []
    current = ""
    for word in sentence.split(" "):
        while len(word) > limit:
            if current:
                out.append(current)
                current = ""
            out.append(word[:limit])
            word = word[limit:]
        if not word:
            continue
        if current and len(current) + 1 + len(word) > limit:
            out.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        out.append(current)
    return out


def _units(text: str, limit: int) -> list[tuple[str, str]]:
    """(separator before, unit) pairs: paragraphs' sentences, each at most ``limit`` characters."""
    units: list[tuple[str, str]] = []
    for paragraph in _PARAGRAPH.split(text.replace("\r\n", "\n").replace("\r", "\n").strip()):
        sep = "\n\n"
        for sentence in _SENTENCE_END.split(paragraph):
            sentence = _SPACE.sub(" ", sentence).strip()
            for piece in _pieces(sentence, limit) if sentence else []:
                units.append((sep, piece))
                sep = " "
    return units


def _tail(chunk: str, overlap_chars: int) -> str:
    if overlap_chars == 0:
        return ""
    tail = chunk[-overlap_chars:]
    if len(tail) < len(chunk) and not chunk[-overlap_chars - 1].isspace():
        cut = re.search(r"\s", tail)  # start the overlap at a word boundary when there is one
        if cut is not None:
            tail = tail[cut.end() :]
    return tail.strip()


def chunk_text(
    text: str, *, chunk_chars: int = DEFAULT_CHUNK_CHARS, overlap_chars: int = DEFAULT_OVERLAP_CHARS
) -> list[str]:
    """Split one text into chunks of at most ``chunk_chars`` characters with ``overlap_chars`` of overlap.

    Raises:
        InvalidArgument: bad parameters (see :func:`check_chunking`).
    """
    check_chunking(chunk_chars, overlap_chars)
    # A unit must fit after the overlap, so every chunk makes progress.
    units = _units(text, chunk_chars - overlap_chars - 1 if overlap_chars else chunk_chars)
    chunks: list[str] = []
    current = ""
    for sep, unit in units:
        if current and len(current) + len(sep) + len(unit) > chunk_chars:
            chunks.append(current)
            current, sep = _tail(current, overlap_chars), " "
        current = f"{current}{sep}{unit}" if current else unit
    if current:
        chunks.append(current)
    return chunks


def chunk_documents(
    documents: Sequence[Document],
    *,
    chunk_chars: int = DEFAULT_CHUNK_CHARS,
    overlap_chars: int = DEFAULT_OVERLAP_CHARS,
) -> list[Chunk]:
    """Chunk every document, in order; chunk ids are ``"{doc_id}#{n}"``."""
    check_chunking(chunk_chars, overlap_chars)
    return [
        Chunk(f"{doc.id}#{n}", doc.id, piece, doc.metadata)
        for doc in documents
        for n, piece in enumerate(chunk_text(doc.text, chunk_chars=chunk_chars, overlap_chars=overlap_chars))
    ]
