"""What a drift or data-quality monitor's read of its window costs: every logged column vs the inputs and outputs.

    .venv/bin/python bench/monitor_read.py [--records 200000]

Writes ``--records`` single-row iris-like requests (4 inputs, a class and 3 probabilities, a unique request id)
into one hour of a request log with the real writer, then reads a ``monitors.max_rows`` reservoir sample of the
window, as ``MonitorService`` does, in a fresh process per read (peak RSS is per process): every column (before)
and ``ts, row, in.*, out.*`` (what drift and quality monitors read now). Each read runs twice.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FEATURES = ("sepal length", "sepal width", "petal length", "petal width")
READ = """
import sys, time
from datetime import datetime, timedelta, timezone
from mlpilot.telemetry.query import read_records
root, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
cols = None if mode == "every column" else ["ts", "row", "in.*", "out.*"]
def hwm():  # this process's peak RSS in kB (VmHWM starts afresh at exec, unlike ru_maxrss, inherited from the parent)
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
base = hwm()
t = time.perf_counter()
df = read_records(root, "iris", since=datetime.now(timezone.utc) - timedelta(hours=2), sample=n, columns=cols)
dt = time.perf_counter() - t
peak = hwm()
print(f"| {mode} | {len(df):,} x {df.shape[1]} | {df.memory_usage(deep=True).sum() / 1e6:.0f} MB | "
      f"+{(peak - base) / 1024:.0f} MB | {dt:.2f} s |")
"""


def write(root: Path, n: int) -> None:
    from mlpilot.serving.dataplane import InferenceRecord
    from mlpilot.telemetry.reqlog import RequestLog

    rng = np.random.default_rng(0)
    t0 = time.time() - 1800
    log = RequestLog(root, capacity=n + 1)
    for i in range(n):
        x = rng.normal(size=(1, 4))
        log.append(
            InferenceRecord(
                ts=t0 + i * 0.005,
                request_id=f"req-{i:08d}-{rng.integers(1 << 60):x}",
                deployment="iris",
                variant="iris-v1",
                model="iris:1",
                status="ok",
                latency_s=0.002,
                inputs={name: x[:, j] for j, name in enumerate(FEATURES)},
                outputs={"predict": np.array([i % 3]), "predict_proba": rng.dirichlet([1, 1, 1], size=1)},
            )
        )
    log.start()
    log.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--sample", type=int, default=200_000, help="monitors.max_rows")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "logs"
        write(root, args.records)
        print("| read | rows x columns | frame | peak RSS of the read | time |\n|---|---|---|---|---|")
        for mode in ("every column", "in.*, out.*", "every column", "in.*, out.*"):
            cmd = [sys.executable, "-c", READ, str(root), mode, str(args.sample)]
            print(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
