"""Request-log ingestion: records/s from ``append`` to zstd Parquet segments on disk.

    .venv/bin/python bench/reqlog.py [--records 500000]

Records look like the serving benchmark's: one row of 20 FP64 features, a class label and two probabilities.
Each record goes in one at a time through the call the data plane makes per request (``log(record)``, the
sink; no batch API). The time covers those calls (the request-path cost) and the writer turning every record
into segments (``stop()`` waits for the last one to be renamed into place); the rows on disk are then counted
with DuckDB. Run twice; reported in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from mlpilot.serving.dataplane import InferenceRecord
from mlpilot.telemetry.query import count_records
from mlpilot.telemetry.reqlog import RequestLog


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=500_000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(args.records, 1, 20))
    proba = rng.random((args.records, 1, 2))
    now = time.time()
    records = [
        InferenceRecord(
            ts=now,
            request_id=f"{i:024x}",
            deployment="lr",
            variant="lr-v1",
            model="lr:1",
            status="ok",
            latency_s=0.0002,
            inputs={"input-0": rows[i]},
            outputs={"predict": np.array([i % 2]), "predict_proba": proba[i]},
        )
        for i in range(args.records)
    ]
    for run in (1, 2):
        root = Path(tempfile.mkdtemp())
        log = RequestLog(root, capacity=args.records + 1, flush_interval_s=0.2)
        log.start()
        t0 = time.perf_counter()
        for r in records:
            log(r)  # what serving/dataplane.py calls for every request
        t_append = time.perf_counter() - t0
        log.stop()
        elapsed = time.perf_counter() - t0
        n = count_records(root, "lr")
        assert n == args.records and log.dropped == 0, (n, log.dropped)
        size = sum(p.stat().st_size for p in root.rglob("*.parquet"))
        print(
            f"run {run}: {args.records:,} records in {elapsed:.2f} s = {args.records / elapsed:,.0f} records/s "
            f"(append alone {t_append / args.records * 1e9:.0f} ns/record); {size / 1e6:.1f} MB of segments, "
            f"{len(list(root.rglob('*.parquet')))} files"
        )
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
