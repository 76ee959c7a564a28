"""Vector search over 100,000 chunks: numpy exact vs LanceDB flat scan vs LanceDB IVF-PQ, side by side in one run.

Run from the repository root with mlpilot's virtualenv::

    .venv/bin/python bench/retrieval.py            # 100,000 chunks x 384 dims, 1,000 queries (~3-5 minutes)
    .venv/bin/python bench/retrieval.py --quick    # 20,000 chunks, 200 queries (smoke run)

Data (seeded): unit vectors from a mixture of 200 Gaussian clusters in 384 dimensions, each cluster a centre plus a
16-dimensional low-rank spread and a little isotropic noise (cosine ~0.73 within a cluster, ~0 across: text
embeddings have a low intrinsic dimension, which is what makes ANN work on them). Queries are drawn the same way.
Each chunk has a metadata field ``shard`` (``s0`` … ``s9``, 10% each) for the filtered run.

The indexes are built with the real :func:`mlpilot.llm.index.build_index` (chunking, validation, LanceDB write,
digest; the embedder looks the vectors up by chunk text), once with ``ann="flat"`` and once with ``ann="ivf_pq"``
(whose build includes the recall measurement it stores in the manifest). Strategies, each through
:meth:`VectorIndex.search` with k=10 (so the Hit objects are part of the cost):

- ``numpy``: the flat index opened with ``strategy="numpy"`` (vectors in memory; exact);
- ``lance_flat``: the flat index with ``strategy="lance_flat"`` (LanceDB brute-force scan; exact) — on the first
  100 queries only, as it is ~30x slower;
- ``ivf_pq``: the IVF-PQ index (nprobes 20, refine_factor 10).

Recall@10 is against the exact top 10 of a numpy matmul (filtered: within the shard). Output: a markdown table,
printed and written to bench/results/retrieval.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlpilot.llm.index import VectorIndex, build_index

RESULTS = Path(__file__).resolve().parent / "results"
DIMS, CLUSTERS, RANK, K = 384, 200, 16, 10


def vectors(rng: np.random.Generator, n: int, centres: np.ndarray, bases: np.ndarray) -> np.ndarray:
    label = rng.integers(0, CLUSTERS, n)
    z = rng.standard_normal((n, RANK)).astype(np.float32)
    x = centres[label] + 0.6 * np.einsum("nr,nrd->nd", z, bases[label])
    x += 0.15 * rng.standard_normal((n, DIMS)).astype(np.float32) / np.sqrt(DIMS)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


class LookupEmbedder:
    """Returns the pre-drawn vector of chunk ``"chunk {i}"``: the build path is real, the model is not."""

    name, fingerprint = "bench-lookup", "bench-lookup-v1"
    dimensions = DIMS

    def __init__(self, table: np.ndarray) -> None:
        self.table = table

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.table[[int(t.split()[1]) for t in texts]]


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def timed(index: VectorIndex, queries: np.ndarray, where: dict[str, str] | None) -> tuple[np.ndarray, list[set[str]]]:
    index.search(queries[0], K, where=where)  # warm-up: caches, lazy LanceDB state
    lat, found = [], []
    for q in queries:
        t = time.perf_counter()
        hits = index.search(q, K, where=where)
        lat.append(time.perf_counter() - t)
        found.append({h.chunk_id for h in hits})
    return np.asarray(lat) * 1000, found


def exact(x: np.ndarray, queries: np.ndarray, rows: np.ndarray) -> list[set[str]]:
    scores = queries @ x[rows].T
    top = np.argpartition(-scores, K - 1, axis=1)[:, :K]
    return [{f"c{rows[j]}#0" for j in row} for row in top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 chunks, 200 queries")
    args = parser.parse_args()
    n, nq = (20_000, 200) if args.quick else (100_000, 1_000)
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((CLUSTERS, DIMS)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    bases = (rng.standard_normal((CLUSTERS, RANK, DIMS)) / np.sqrt(DIMS)).astype(np.float32)
    x, queries = vectors(rng, n, centres, bases), vectors(rng, nq, centres, bases)
    docs = [{"id": f"c{i}", "text": f"chunk {i}", "shard": f"s{i % 10}"} for i in range(n)]
    embedder = LookupEmbedder(x)
    shard = np.flatnonzero(np.arange(n) % 10 == 3)
    truth = {None: exact(x, queries, np.arange(n)), "s3": exact(x, queries, shard)}

    work = Path(tempfile.mkdtemp(prefix="mlpilot-retrieval-"))
    wall = time.perf_counter()
    builds = {}
    for ann in ("flat", "ivf_pq"):
        t = time.perf_counter()
        manifest = build_index(docs, embedder, work / ann, ann=ann, corpus_ref="bench:1")  # type: ignore[arg-type]
        builds[ann] = (time.perf_counter() - t, du(work / ann), manifest)
        print(f"built {ann}: {builds[ann][0]:.1f} s, {builds[ann][1] / 1e6:.0f} MB, ann={manifest.ann}", flush=True)

    rows = []
    plan = (("numpy", "flat", nq), ("lance_flat", "flat", min(nq, 100)), ("ivf_pq", "ivf_pq", nq))
    for strategy, path, count in plan:
        t = time.perf_counter()
        index = VectorIndex.open(work / path, strategy=strategy)  # type: ignore[arg-type]
        opened = time.perf_counter() - t
        for shard_filter in (None, "s3"):
            where = {"shard": shard_filter} if shard_filter else None
            lat, found = timed(index, queries[:count], where)
            recall = np.mean([len(f & e) / K for f, e in zip(found, truth[shard_filter][:count], strict=True)])
            build_s, size, _ = builds[path]
            rows.append(
                f"| {strategy} | {'shard = s3 (10%)' if where else '-'} | {count} | "
                + " | ".join(f"{v:.2f}" for v in np.percentile(lat, [50, 95, 99]))
                + f" | {recall:.3f} | {build_s:.1f} | {size / 1e6:.0f} | {opened * 1000:.0f} |"
            )
            print(rows[-1], flush=True)
        del index
    shutil.rmtree(work, ignore_errors=True)

    ivf = builds["ivf_pq"][2].ann
    cmd = " ".join(["bench/retrieval.py", *sys.argv[1:]])
    head = (
        f"Command: `.venv/bin/python {cmd}`; {n:,} chunks x {DIMS} dims, {nq:,} queries, k={K}; "
        f"machine: {platform.processor() or platform.machine()} ({os.cpu_count()} CPUs), Python "
        f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f} at the end; wall time "
        f"{time.perf_counter() - wall:.0f} s. IVF-PQ: {ivf.num_partitions} partitions, {ivf.num_sub_vectors} "
        f"sub-vectors, nprobes {ivf.nprobes}, refine_factor {ivf.refine_factor}; recall@10 measured at build "
        f"(manifest): {ivf.recall_at_10}.\n\n"
        "| strategy | filter | queries | p50 ms | p95 ms | p99 ms | recall@10 | build s | size MB | open ms |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    text = head + "\n".join(rows) + "\n"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "retrieval.md").write_text(text)
    print("\n" + text)


if __name__ == "__main__":
    main()
