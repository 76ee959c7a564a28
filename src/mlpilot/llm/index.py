"""Vector indexes as production artifacts: build, open, search, pack.

An index is a directory: ``manifest.json`` (embedding model, corpus lineage, chunking, metric, counts, ANN settings,
content digest) and ``chunks.lance/``, a LanceDB table (chunk_id, doc_id, text, metadata as JSON, vector, and one
column per filterable metadata field). :func:`build_index` chunks (:mod:`mlpilot.llm.chunking`), embeds and writes
it atomically; :meth:`VectorIndex.search` scores by cosine similarity; :meth:`VectorIndex.search_text` refuses an
embedder whose fingerprint differs from the index's (vectors of two models are not comparable).

Search strategies (``bench/retrieval.py``; BENCHMARKS.md "Retrieval over 100,000 chunks"): ``numpy`` (exact; the
vectors loaded once into a contiguous float32 matrix, mat-vec + ``argpartition``; 100,000 x 384 is 154 MB, ~8 ms
on 2 cores), ``lance_flat`` (exact LanceDB scan, no memory held, ~30x slower) and ``ivf_pq`` (LanceDB IVF-PQ with
``refine_factor`` re-ranking; approximate, its recall@10 vs exact measured at build and kept in the manifest).
``ann="auto"`` builds IVF-PQ only beyond ``AUTO_EXACT_MAX_FLOATS`` (chunks x dimensions); ``strategy="auto"``
searches with ``ivf_pq`` when the index has one, else ``numpy``. ``where`` filters work in every strategy, and
searches are thread-safe (the loaded state is read-only).

:func:`pack_index` writes a deterministic tar (same index, same digest) for content-addressed storage;
:func:`unpack_index` extracts one safely (regular files and directories only, no absolute or ``..`` paths, size
limits) and atomically.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
import tarfile
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Protocol, overload, runtime_checkable

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlpilot.errors import FailedPrecondition, IntegrityError, InvalidArgument, MissingExtra
from mlpilot.llm.chunking import (
    DEFAULT_CHUNK_CHARS,
    DEFAULT_OVERLAP_CHARS,
    Document,
    DocumentSource,
    check_chunking,
    chunk_documents,
    load_documents,
    metadata_fields,
)

__all__ = [
    "AUTO_EXACT_MAX_FLOATS",
    "MANIFEST",
    "MIN_IVF_PQ_CHUNKS",
    "AnnSettings",
    "Embedder",
    "Hit",
    "IndexManifest",
    "PackedIndex",
    "VectorIndex",
    "build_index",
    "pack_index",
    "unpack_index",
]

MANIFEST = "manifest.json"
TABLE = "chunks"
SCHEMA_VERSION = 1
#: ``ann="auto"`` keeps exact search up to this many stored floats (250,000 chunks of 384 dimensions, 384 MB):
#: numpy exact search measured ~8 ms per 100,000 x 384 on 2 cores, so this is about the 20 ms budget.
AUTO_EXACT_MAX_FLOATS = 250_000 * 384
#: IVF-PQ trains 256 centroids per sub-vector: fewer chunks than that cannot train it.
MIN_IVF_PQ_CHUNKS = 256
_RECALL_QUERIES = 100
_MAX_BATCH_QUERIES = 64  # bounds the score matrix of a batch search: 64 x chunks floats
Metric = Literal["cosine", "dot"]
Ann = Literal["auto", "flat", "ivf_pq"]
Strategy = Literal["auto", "numpy", "lance_flat", "ivf_pq"]
Where = Mapping[str, Any] | None
Score = float | None


@runtime_checkable
class Embedder(Protocol):
    """What an index needs from an embedding model.

    ``fingerprint`` identifies the model's exact weights and preprocessing (two embedders with equal fingerprints
    produce comparable vectors); ``embed`` returns an ``(n, dimensions)`` float32 array of L2-normalised rows.
    """

    @property
    def name(self) -> str: ...

    @property
    def fingerprint(self) -> str: ...

    @property
    def dimensions(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EmbeddingInfo(_Frozen):
    name: str
    fingerprint: str
    dimensions: int = Field(ge=1)


class ChunkingInfo(_Frozen):
    chunk_chars: int
    overlap_chars: int
    splitter: str = "paragraphs-sentences-v1"


class AnnSettings(_Frozen):
    """How the index searches: ``kind`` is what was built (``flat``: no ANN index; ``ivf_pq``)."""

    requested: Ann
    kind: Literal["flat", "ivf_pq"]
    num_partitions: int | None = None
    num_sub_vectors: int | None = None
    nprobes: int | None = None
    refine_factor: int | None = None
    recall_at_10: float | None = None  # of the ANN search vs exact, on ``recall_queries`` queries at build time
    recall_queries: int | None = None


class IndexCounts(_Frozen):
    documents: int
    chunks: int


class IndexManifest(_Frozen):
    """``manifest.json``: what an index is and where it came from (durable JSON, ``schema_version`` 1)."""

    schema_version: Literal[1] = 1
    kind: Literal["vector_index"] = "vector_index"
    embedding: EmbeddingInfo
    corpus_ref: str | None = None  # the registered dataset it was built from, e.g. "kb-docs:3"
    chunking: ChunkingInfo
    metric: Metric
    counts: IndexCounts
    ann: AnnSettings
    metadata_fields: dict[str, str]  # name -> string | int | float | bool (filterable) | json (not filterable)
    content_digest: str  # sha256 over the chunks (id, text, metadata): equal for two builds of the same corpus
    built_at: str
    build_seconds: float


@dataclass(frozen=True)
class Hit:
    """One search result; ``score`` is the cosine similarity (``metric="dot"``: the dot product), higher is better."""

    chunk_id: str
    doc_id: str
    text: str
    score: float
    metadata: dict[str, Any] = field(default_factory=dict)


def _lancedb() -> Any:
    try:
        import lancedb
    except ImportError as exc:  # pragma: no cover - lancedb comes with the llm extra
        raise MissingExtra("vector indexes", "llm") from exc
    return lancedb


def _check_vectors(vectors: Any, n: int, dimensions: int, who: str) -> np.ndarray:
    try:
        arr = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"{who} returned something that is not a numeric array: {exc}") from exc
    if arr.shape != (n, dimensions):
        raise InvalidArgument(f"{who} returned shape {arr.shape} for {n} texts, expected ({n}, {dimensions})")
    if not np.isfinite(arr).all():
        raise InvalidArgument(f"{who} returned non-finite values (NaN or inf)")
    return np.ascontiguousarray(arr)


def _normalise(arr: np.ndarray, who: str) -> np.ndarray:
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    if (norms == 0).any():
        raise InvalidArgument(f"{who} returned a zero vector, which has no direction to compare")
    return np.ascontiguousarray(arr / norms, dtype=np.float32)


_ARROW_TYPES = {"string": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}


def _ivf_params(n: int, dimensions: int) -> tuple[int, int]:
    partitions = max(1, min(1024, round(math.sqrt(n))))
    # 16-dim sub-vectors (24 for 384-d): the measured build-time/recall trade-off; must divide the dimensions.
    sub = next((s for s in (dimensions // 16, dimensions // 8, dimensions // 4) if s and dimensions % s == 0), 1)
    return partitions, sub


def build_index(
    documents: DocumentSource | Sequence[Document],
    embedder: Embedder,
    path: Path | str,
    *,
    chunk_chars: int = DEFAULT_CHUNK_CHARS,
    overlap_chars: int = DEFAULT_OVERLAP_CHARS,
    metric: Metric = "cosine",
    ann: Ann = "auto",
    corpus_ref: str | None = None,
    batch_size: int = 256,
    nprobes: int = 20,
    refine_factor: int = 10,
) -> IndexManifest:
    """Chunk, embed and write a corpus as an index directory at ``path``.

    Args:
        documents: rows ``{"id", "text", **metadata}``, :class:`Document` objects, or a path (see
            :func:`mlpilot.llm.chunking.load_documents`).
        embedder: the embedding model; its name, fingerprint and dimensions go into the manifest.
        path: the index directory to create; it must not exist (or be empty).
        chunk_chars, overlap_chars: chunk size and overlap in characters.
        metric: ``"cosine"`` (vectors are normalised) or ``"dot"`` (vectors stored as the embedder returns them).
        ann: ``"flat"`` (exact search only), ``"ivf_pq"`` (an IVF-PQ index, at least 256 chunks) or ``"auto"``
            (IVF-PQ when ``chunks x dimensions > AUTO_EXACT_MAX_FLOATS``).
        corpus_ref: lineage, e.g. the registered dataset ``"kb-docs:3"``.
        batch_size: texts per ``embed`` call.
        nprobes, refine_factor: IVF-PQ search settings recorded in the manifest (partitions probed; candidates
            re-ranked on the full vectors = ``k x refine_factor``).

    Returns:
        The manifest written to ``path/manifest.json``.

    Raises:
        InvalidArgument: an empty corpus, a duplicate document id, a blank text, bad parameters, an existing
            non-empty ``path``, or an embedder that returns the wrong shape, non-finite values or zero vectors.
    """
    started = time.perf_counter()
    if metric not in ("cosine", "dot"):
        raise InvalidArgument(f"metric must be 'cosine' or 'dot', got {metric!r}")
    if ann not in ("auto", "flat", "ivf_pq"):
        raise InvalidArgument(f"ann must be 'auto', 'flat' or 'ivf_pq', got {ann!r}")
    for label, value in (("batch_size", batch_size), ("nprobes", nprobes), ("refine_factor", refine_factor)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidArgument(f"{label} must be a positive integer, got {value!r}")
    check_chunking(chunk_chars, overlap_chars)
    dims = embedder.dimensions
    if isinstance(dims, bool) or not isinstance(dims, int) or dims < 1:
        raise InvalidArgument(f"embedder {embedder.name!r} has invalid dimensions {dims!r}")
    target = Path(path)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise InvalidArgument(f"{target} already exists and is not an empty directory; build into a new path")

    if isinstance(documents, Sequence) and documents and all(isinstance(d, Document) for d in documents):
        docs = load_documents([{"id": d.id, "text": d.text, **d.metadata} for d in documents])  # type: ignore[union-attr]
    else:
        docs = load_documents(documents)  # type: ignore[arg-type]
    chunks = chunk_documents(docs, chunk_chars=chunk_chars, overlap_chars=overlap_chars)
    n = len(chunks)

    who = f"embedder {embedder.name!r}"
    vectors = np.empty((n, dims), dtype=np.float32)
    for start in range(0, n, batch_size):
        texts = [c.text for c in chunks[start : start + batch_size]]
        vectors[start : start + len(texts)] = _check_vectors(embedder.embed(texts), len(texts), dims, who)
    if metric == "cosine":
        vectors = _normalise(vectors, who)

    kind: Literal["flat", "ivf_pq"] = "flat"
    if ann == "ivf_pq" or (ann == "auto" and n * dims > AUTO_EXACT_MAX_FLOATS):
        kind = "ivf_pq"
    if kind == "ivf_pq" and n < MIN_IVF_PQ_CHUNKS:
        raise InvalidArgument(f"ann='ivf_pq' needs at least {MIN_IVF_PQ_CHUNKS} chunks, the corpus has {n}; use 'flat'")

    fields = metadata_fields(docs)
    digest = hashlib.sha256()
    for c in chunks:
        digest.update(json.dumps([c.chunk_id, c.text, c.metadata], sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\n")
    columns: dict[str, Any] = {
        "chunk_id": pa.array([c.chunk_id for c in chunks], pa.string()),
        "doc_id": pa.array([c.doc_id for c in chunks], pa.string()),
        "text": pa.array([c.text for c in chunks], pa.string()),
        "metadata": pa.array([json.dumps(c.metadata, sort_keys=True) for c in chunks], pa.string()),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel(), pa.float32()), dims),
    }
    for key, kind_name in fields.items():
        if kind_name != "json":
            values = [c.metadata.get(key) for c in chunks]
            if kind_name == "float":
                values = [None if v is None else float(v) for v in values]
            columns[key] = pa.array(values, _ARROW_TYPES[kind_name])

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.build-", dir=target.parent))
    try:
        table = _lancedb().connect(str(tmp)).create_table(TABLE, pa.table(columns))
        settings = AnnSettings(requested=ann, kind=kind)
        if kind == "ivf_pq":
            settings = _build_ivf_pq(table, vectors, metric, ann, nprobes, refine_factor)
        manifest = IndexManifest(
            embedding=EmbeddingInfo(name=embedder.name, fingerprint=embedder.fingerprint, dimensions=dims),
            corpus_ref=corpus_ref,
            chunking=ChunkingInfo(chunk_chars=chunk_chars, overlap_chars=overlap_chars),
            metric=metric,
            counts=IndexCounts(documents=len(docs), chunks=n),
            ann=settings,
            metadata_fields=fields,
            content_digest=f"sha256:{digest.hexdigest()}",
            built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            build_seconds=round(time.perf_counter() - started, 3),
        )
        (tmp / MANIFEST).write_text(json.dumps(manifest.model_dump(mode="json"), indent=2, sort_keys=True) + "\n")
        if target.exists():
            target.rmdir()  # empty (checked above); rename cannot replace a directory
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _build_ivf_pq(
    table: Any, vectors: np.ndarray, metric: Metric, ann: Ann, nprobes: int, refine_factor: int
) -> AnnSettings:
    from lancedb.index import IvfPq

    n, dims = vectors.shape
    partitions, sub = _ivf_params(n, dims)
    config = IvfPq(distance_type=metric, num_partitions=partitions, num_sub_vectors=sub, max_iterations=20)
    table.create_index("vector", config=config, replace=True)
    # Recall@10 of the ANN search against exact search, on queries between two random chunks (seeded).
    rng = np.random.default_rng(0)
    m = min(_RECALL_QUERIES, n)
    queries = _normalise(vectors[rng.integers(0, n, m)] + 0.5 * vectors[rng.integers(0, n, m)], "recall queries")
    found = 0.0
    for q in queries:
        exact = set(np.argpartition(-(vectors @ q), 9)[:10].tolist()) if n > 10 else set(range(n))
        rows = (
            table.search(q, vector_column_name="vector")
            .distance_type(metric)
            .nprobes(nprobes)
            .refine_factor(refine_factor)
            .limit(10)
            .with_row_id(True)
            .select(["_distance"])
            .to_arrow()
        )
        found += len(exact & set(rows.column("_rowid").to_pylist())) / len(exact)
    return AnnSettings(
        requested=ann,
        kind="ivf_pq",
        num_partitions=partitions,
        num_sub_vectors=sub,
        nprobes=nprobes,
        refine_factor=refine_factor,
        recall_at_10=round(found / m, 4),
        recall_queries=m,
    )


def _read_manifest(path: Path) -> IndexManifest:
    file = path / MANIFEST
    try:
        return IndexManifest.model_validate_json(file.read_bytes())
    except FileNotFoundError as exc:
        raise InvalidArgument(f"{path} is not a vector index: {MANIFEST} is missing") from exc
    except ValidationError as exc:
        raise InvalidArgument(f"{file} is not a valid index manifest: {exc.errors()[0]['msg']}") from exc


class VectorIndex:
    """An opened index. Create with :meth:`open`; all searches are thread-safe.

    Attributes:
        path: the index directory.
        manifest: its :class:`IndexManifest`.
        strategy: the resolved search strategy (``numpy``, ``lance_flat`` or ``ivf_pq``).
    """

    def __init__(self, path: Path, manifest: IndexManifest, strategy: Strategy, table: Any) -> None:
        self.path = path
        self.manifest = manifest
        self.strategy: Strategy = strategy
        self._table = table
        self._filterable = {k: t for k, t in manifest.metadata_fields.items() if t != "json"}
        self._lock = threading.Lock()
        self._columns: dict[str, Any] = {}
        self._matrix: np.ndarray | None = None
        self._codes: dict[str, tuple[np.ndarray, dict[Any, int]]] = {}
        if strategy == "numpy":
            self._load_matrix()

    @classmethod
    def open(cls, path: Path | str, *, strategy: Strategy = "auto") -> VectorIndex:
        """Open an index directory.

        Args:
            path: a directory written by :func:`build_index` (or :func:`unpack_index`).
            strategy: ``"auto"`` (``ivf_pq`` if the index has one, else ``numpy``), or force ``"numpy"`` (exact,
                vectors in memory), ``"lance_flat"`` (exact, LanceDB scan) or ``"ivf_pq"``.

        Raises:
            InvalidArgument: not an index, a bad strategy, or ``ivf_pq`` on an index built without it.
        """
        root = Path(path)
        manifest = _read_manifest(root)
        if strategy not in ("auto", "numpy", "lance_flat", "ivf_pq"):
            raise InvalidArgument(f"strategy must be auto, numpy, lance_flat or ivf_pq, got {strategy!r}")
        if strategy == "ivf_pq" and manifest.ann.kind != "ivf_pq":
            raise InvalidArgument(f"{root} was built without an IVF-PQ index (ann={manifest.ann.kind!r})")
        if strategy == "auto":
            strategy = "ivf_pq" if manifest.ann.kind == "ivf_pq" else "numpy"
        try:
            table = _lancedb().connect(str(root)).open_table(TABLE)
        except (FileNotFoundError, ValueError) as exc:
            raise InvalidArgument(f"{root}: the {TABLE!r} table cannot be opened: {exc}") from exc
        return cls(root, manifest, strategy, table)

    def __repr__(self) -> str:
        m = self.manifest
        return f"VectorIndex({str(self.path)!r}, chunks={m.counts.chunks}, strategy={self.strategy!r})"

    def _load_matrix(self) -> None:
        data = self._table.to_arrow()
        dims = self.manifest.embedding.dimensions
        flat = data.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        self._matrix = np.ascontiguousarray(flat.reshape(-1, dims), dtype=np.float32)
        self._columns = {
            name: data.column(name).combine_chunks() for name in ("chunk_id", "doc_id", "text", "metadata")
        }
        for key in self._filterable:
            encoded = data.column(key).combine_chunks().dictionary_encode()
            codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
            self._codes[key] = (codes, {v: i for i, v in enumerate(encoded.dictionary.to_pylist())})

    def _check_where(self, where: Where) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for key, value in (where or {}).items():
            kind = self._filterable.get(key)
            if kind is None:
                raise InvalidArgument(f"cannot filter on {key!r}: filterable fields are {sorted(self._filterable)}")
            values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
            for v in values:
                ok = {
                    "string": isinstance(v, str),
                    "bool": isinstance(v, bool),
                    "int": isinstance(v, int) and not isinstance(v, bool),
                    "float": isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
                }[kind]
                if not ok:
                    raise InvalidArgument(f"filter {key}={v!r}: the field holds {kind} values")
            out[key] = values
        return out

    def _query_matrix(self, query: Any) -> tuple[np.ndarray, bool]:
        try:
            arr = np.asarray(query, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(f"a query must be a vector of numbers or a list of vectors: {exc}") from exc
        single = arr.ndim == 1
        arr = arr.reshape(1, -1) if single else arr
        dims = self.manifest.embedding.dimensions
        if arr.ndim != 2 or arr.shape[1] != dims or arr.shape[0] == 0:
            raise InvalidArgument(f"query vectors must have {dims} dimensions, got shape {np.shape(query)}")
        if not np.isfinite(arr).all():
            raise InvalidArgument("query vectors contain non-finite values")
        if self.manifest.metric == "cosine":
            arr = _normalise(arr, "a query")
        return np.ascontiguousarray(arr), single

    @overload
    def search(
        self, query: Sequence[float], k: int = ..., *, where: Where = ..., min_score: Score = ...
    ) -> list[Hit]: ...
    @overload
    def search(
        self, query: Sequence[Sequence[float]], k: int = ..., *, where: Where = ..., min_score: Score = ...
    ) -> list[list[Hit]]: ...
    @overload
    def search(self, query: np.ndarray, k: int = ..., *, where: Where = ..., min_score: Score = ...) -> list[Any]: ...

    def search(self, query: Any, k: int = 5, *, where: Where = None, min_score: Score = None) -> list[Any]:
        """The ``k`` chunks nearest to a query vector (or to each of a list of vectors).

        Args:
            query: one vector of ``dimensions`` numbers, or a list/2-D array of them.
            k: results per query (at most; fewer if the index, the filter or ``min_score`` leave fewer).
            where: equality filters on metadata fields, ANDed; a list value matches any of its items.
            min_score: drop hits scoring below it.

        Returns:
            For one vector, its hits, best first; for several, one such list per vector.

        Raises:
            InvalidArgument: a vector of the wrong size or with NaNs, ``k < 1``, or a filter on an unknown field or
                with a value of the wrong type.
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InvalidArgument(f"k must be a positive integer, got {k!r}")
        matrix, single = self._query_matrix(query)
        filters = self._check_where(where)
        if self.strategy == "numpy":
            results = self._search_numpy(matrix, k, filters)
        else:
            results = [self._search_lance(q, k, filters) for q in matrix]
        if min_score is not None:
            results = [[h for h in hits if h.score >= min_score] for hits in results]
        return results[0] if single else results

    def search_text(
        self,
        query: str | Sequence[str],
        embedder: Embedder,
        k: int = 5,
        *,
        where: Where = None,
        min_score: Score = None,
    ) -> list[Any]:
        """Embed ``query`` (a text or a list of texts) with ``embedder`` and :meth:`search`.

        Raises:
            FailedPrecondition: the embedder's fingerprint differs from the one the index was built with.
        """
        built = self.manifest.embedding
        if embedder.fingerprint != built.fingerprint:
            raise FailedPrecondition(
                f"index built with {built.name} ({built.fingerprint}), queried with {embedder.name} "
                f"({embedder.fingerprint}): vectors of different models are not comparable; query with the "
                "index's embedder or rebuild the index",
                detail={"index": built.fingerprint, "query": embedder.fingerprint},
            )
        texts = [query] if isinstance(query, str) else list(query)
        vectors = _check_vectors(embedder.embed(texts), len(texts), built.dimensions, f"embedder {embedder.name!r}")
        hits = self.search(vectors, k, where=where, min_score=min_score)
        return hits[0] if isinstance(query, str) else hits

    def _mask(self, filters: dict[str, list[Any]]) -> np.ndarray | None:
        mask: np.ndarray | None = None
        for key, values in filters.items():
            codes, lookup = self._codes[key]
            wanted = [lookup[v] for v in values if v in lookup]
            part = np.isin(codes, wanted) if len(wanted) > 1 else codes == (wanted[0] if wanted else -2)
            mask = part if mask is None else mask & part
        return mask

    def _search_numpy(self, queries: np.ndarray, k: int, filters: dict[str, list[Any]]) -> list[list[Hit]]:
        assert self._matrix is not None
        matrix = self._matrix
        rows: np.ndarray | None = None  # candidate row numbers when a filter selects a subset
        mask = self._mask(filters)
        if mask is not None:
            rows = np.flatnonzero(mask)
            if rows.size == 0:
                return [[] for _ in queries]
            matrix = matrix[rows] if rows.size * 3 < len(mask) else matrix
        results: list[list[Hit]] = []
        for start in range(0, len(queries), _MAX_BATCH_QUERIES):
            scores = queries[start : start + _MAX_BATCH_QUERIES] @ matrix.T
            if mask is not None and matrix is self._matrix:
                scores[:, ~mask] = -np.inf
            for row in scores:
                results.append(self._top(row, k, rows if matrix is not self._matrix else None))
        return results

    def _top(self, scores: np.ndarray, k: int, rows: np.ndarray | None) -> list[Hit]:
        kk = min(k, scores.size)
        best = np.argpartition(-scores, kk - 1)[:kk] if kk < scores.size else np.arange(scores.size)
        best = best[np.lexsort((best, -scores[best]))]  # by score, ties by row: deterministic
        best = best[np.isfinite(scores[best])]  # rows excluded by the filter score -inf
        ids = best if rows is None else rows[best]
        cols = self._columns
        return [
            Hit(
                chunk_id=cols["chunk_id"][int(i)].as_py(),
                doc_id=cols["doc_id"][int(i)].as_py(),
                text=cols["text"][int(i)].as_py(),
                score=float(scores[j]),
                metadata=json.loads(cols["metadata"][int(i)].as_py()),
            )
            for i, j in zip(ids, best, strict=True)
        ]

    def _search_lance(self, q: np.ndarray, k: int, filters: dict[str, list[Any]]) -> list[Hit]:
        query = (
            self._table.search(q, vector_column_name="vector")
            .distance_type(self.manifest.metric)
            .limit(k)
            .select(["chunk_id", "doc_id", "text", "metadata", "_distance"])
        )
        if self.strategy == "lance_flat":
            query = query.bypass_vector_index()
        else:
            ann = self.manifest.ann
            query = query.nprobes(ann.nprobes or 20).refine_factor(ann.refine_factor or 10)
        if filters:
            query = query.where(" AND ".join(_sql(key, values) for key, values in filters.items()), prefilter=True)
        rows = query.to_arrow().to_pylist()
        return [
            Hit(r["chunk_id"], r["doc_id"], r["text"], 1.0 - float(r["_distance"]), json.loads(r["metadata"]))
            for r in rows
        ]


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def _sql(key: str, values: list[Any]) -> str:
    # Keys are identifiers (checked at build time); backticks keep SQL keywords usable as field names.
    if len(values) == 1:
        return f"`{key}` = {_literal(values[0])}"
    if not values:
        return "false"
    return f"`{key}` IN ({', '.join(_literal(v) for v in values)})"


# --- packing ----------------------------------------------------------------------------------------------------

_COPY_BUFFER = 1 << 20


@dataclass(frozen=True)
class PackedIndex:
    """A packed index: the tar file, its ``sha256:`` digest and size in bytes."""

    path: Path
    digest: str
    size: int

    def read_bytes(self) -> bytes:
        return self.path.read_bytes()


def pack_index(path: Path | str, dest: Path | str | None = None) -> PackedIndex:
    """Write an index directory as one deterministic, uncompressed tar.

    Entries are sorted, times zeroed, owners ``0``/empty, modes ``0o755`` (directories) and ``0o644`` (files):
    packing the same directory twice gives the same bytes, hence the same digest.

    Args:
        path: the index directory (must hold a ``manifest.json``).
        dest: the tar file to write; default ``<path>.tar`` next to the directory.

    Raises:
        InvalidArgument: ``path`` is not an index, or holds a symlink or a special file.
    """
    root = Path(path)
    _read_manifest(root)
    out = Path(dest) if dest is not None else root.with_name(root.name + ".tar")
    walk = (Path(base) / name for base, dirs, files in os.walk(root) for name in dirs + files)
    entries = sorted(walk, key=lambda p: p.relative_to(root).as_posix())
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with tmp.open("wb") as raw:
            with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for entry in entries:
                    _add(tar, root, entry)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return PackedIndex(out, _digest(out), out.stat().st_size)


def _add(tar: tarfile.TarFile, root: Path, entry: Path) -> None:
    name = entry.relative_to(root).as_posix()
    if entry.is_symlink() or not (entry.is_dir() or entry.is_file()):
        raise InvalidArgument(f"cannot pack {entry}: only regular files and directories belong in an index")
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    if entry.is_dir():
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
        return
    info.mode, info.size = 0o644, entry.stat().st_size
    with entry.open("rb") as f:
        tar.addfile(info, f)


def unpack_index(
    source: Path | str | bytes,
    dest: Path | str,
    *,
    expected_digest: str | None = None,
    max_member_bytes: int = 4 * 1024**3,
    max_total_bytes: int = 16 * 1024**3,
    max_members: int = 100_000,
) -> Path:
    """Extract a packed index into ``dest``, safely and atomically; return ``dest``.

    Members are extracted into a temporary sibling of ``dest`` that is renamed into place once complete, so
    ``dest`` is either absent or a whole index. If ``dest`` already holds an index (a cache hit, or a concurrent
    unpacker of the same digest won the rename) it is returned as it is.

    Args:
        source: the tar file (path) or its bytes.
        dest: the directory to create, e.g. ``cache / digest``.
        expected_digest: ``sha256:…`` the tar must have (checked before anything is extracted).
        max_member_bytes, max_total_bytes, max_members: limits against archive bombs.

    Raises:
        InvalidArgument: an unreadable tar; a member with an absolute path, ``..``, a link, a device or another
            special type; a member or the total over its limit; or no ``manifest.json``.
        IntegrityError: the tar's digest is not ``expected_digest``.
    """
    target = Path(dest)
    if (target / MANIFEST).is_file():
        return target
    data: Any = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else Path(source)
    if expected_digest is not None:
        actual = _digest(data)
        if actual != expected_digest:
            raise IntegrityError(f"packed index digest is {actual}, expected {expected_digest}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.unpack-", dir=target.parent))
    try:
        _extract(data, tmp, max_member_bytes, max_total_bytes, max_members)
        _read_manifest(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / MANIFEST).is_file():  # not a lost race with another unpacker: a real failure
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _digest(data: Path | io.BytesIO) -> str:
    if isinstance(data, io.BytesIO):
        return f"sha256:{hashlib.sha256(data.getbuffer()).hexdigest()}"
    h = hashlib.sha256()
    with open(data, "rb") as f:
        while block := f.read(_COPY_BUFFER):
            h.update(block)
    return f"sha256:{h.hexdigest()}"


def _safe_name(name: str) -> str:
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (parts and ":" in parts[0]) or ".." in parts:
        raise InvalidArgument(f"unsafe path in packed index: {name!r} (absolute or with '..')")
    clean = "/".join(p for p in parts if p not in ("", "."))
    if not clean:
        raise InvalidArgument(f"unsafe path in packed index: {name!r}")
    return clean


def _extract(data: Any, root: Path, max_member: int, max_total: int, max_members: int) -> None:
    total = 0
    try:
        tar = tarfile.open(fileobj=data, mode="r:*") if isinstance(data, io.BytesIO) else tarfile.open(data, "r:*")  # noqa: SIM115
    except (tarfile.TarError, OSError) as exc:
        raise InvalidArgument(f"not a readable tar archive: {exc}") from exc
    with tar:
        try:
            for count, member in enumerate(tar, start=1):
                if count > max_members:
                    raise InvalidArgument(f"packed index has more than {max_members} members")
                name = _safe_name(member.name)
                if not (member.isfile() or member.isdir()):
                    raise InvalidArgument(f"packed index member {name!r} is a link or special file; not allowed")
                out = root / name
                if member.isdir():
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                if member.size > max_member:
                    raise InvalidArgument(f"packed index member {name!r} is {member.size} bytes, over {max_member}")
                total += member.size
                if total > max_total:
                    raise InvalidArgument(f"packed index is over {max_total} bytes uncompressed")
                out.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                assert src is not None  # a regular file
                with src, open(out, "xb") as f:
                    written = 0
                    while block := src.read(_COPY_BUFFER):
                        written += len(block)
                        if written > member.size:
                            raise InvalidArgument(f"packed index member {name!r} is longer than its header says")
                        f.write(block)
        except (FileExistsError, NotADirectoryError) as exc:
            raise InvalidArgument(f"packed index repeats or nests a member under a file: {exc.filename}") from exc
        except (tarfile.TarError, EOFError) as exc:
            raise InvalidArgument(f"corrupt packed index: {exc}") from exc
