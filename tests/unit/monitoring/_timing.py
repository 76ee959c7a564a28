"""Timing of the full per-feature drift report on 1,000,000 rows x (20 numeric + 5 categorical) features.

Not collected by pytest (leading underscore). Run it by hand::

    .venv/bin/python tests/unit/monitoring/_timing.py

It prints the wall time of ``TableDrift.fit`` (reference) and ``TableDrift.predict`` (current window), the peak
traced memory of each (tracemalloc, in a second run because tracing slows numpy down), the process's peak RSS,
and, for comparison, a plain loop of ``scipy.stats.ks_2samp`` over the numeric columns.
"""

from __future__ import annotations

import resource
import sys
import time
import tracemalloc

import numpy as np
import pandas as pd
from scipy import stats

from mlpilot.monitoring import TableDrift

N_ROWS = 1_000_000
N_NUMERIC = 20
N_CATEGORICAL = 5
DRIFTED = 5  # numeric columns whose mean moves by 0.01-0.05 std in the current window


def make(rng: np.random.Generator, *, current: bool) -> pd.DataFrame:
    columns: dict[str, object] = {}
    for i in range(N_NUMERIC):
        shift = 0.01 * (i + 1) if current and i < DRIFTED else 0.0
        columns[f"num_{i}"] = rng.normal(shift, 1.0, N_ROWS)
    for j in range(N_CATEGORICAL):
        levels = np.array([f"level_{k}" for k in range(5 + 5 * j)])
        columns[f"cat_{j}"] = levels[rng.integers(0, levels.size, N_ROWS)]  # object dtype: the slow case
    return pd.DataFrame(columns)


def timed(label: str, fn: object) -> object:
    start = time.perf_counter()
    out = fn()  # type: ignore[operator]
    print(f"{label:<44s} {time.perf_counter() - start:7.2f} s")
    return out


def peak_mib(fn: object) -> float:
    tracemalloc.start()
    fn()  # type: ignore[operator]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    rng = np.random.default_rng(0)
    reference, current = make(rng, current=False), make(rng, current=True)
    print(f"data: {N_ROWS:,} rows x {N_NUMERIC} numeric + {N_CATEGORICAL} categorical (object) columns")
    print(f"frames in memory: {(reference.memory_usage(deep=True).sum() * 2) / 2**20:,.0f} MiB (reference + current)")

    detector = TableDrift(numeric_test="ks", categorical_test="chi2", correction="holm")
    timed("TableDrift.fit (reference)", lambda: detector.fit(reference))
    result = timed("TableDrift.predict (current)", lambda: detector.predict(current))
    timed("TableDrift.predict (current, second call)", lambda: detector.predict(current))
    print(f"drifted: {result.drifted_features} (share {result.share_drifted:.2f})")  # type: ignore[attr-defined]

    def scipy_loop() -> None:
        for column in [f"num_{i}" for i in range(N_NUMERIC)]:
            stats.ks_2samp(reference[column].to_numpy(), current[column].to_numpy())

    timed("plain loop of scipy ks_2samp (numeric only)", scipy_loop)

    worst = 0.0
    for column in [f"num_{i}" for i in range(N_NUMERIC)]:
        expected = stats.ks_2samp(reference[column].to_numpy(), current[column].to_numpy()).pvalue
        got = result[column].detail["raw_p_value"]  # type: ignore[index]
        worst = max(worst, abs(got - expected) / max(expected, 1e-300))
    print(f"largest relative difference of a KS p-value from scipy: {worst:.1e}")

    fit_peak = peak_mib(lambda: TableDrift().fit(reference))
    predict_peak = peak_mib(lambda: detector.predict(current))
    print(f"peak traced memory: fit {fit_peak:,.0f} MiB, predict {predict_peak:,.0f} MiB (on top of the frames)")
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
    print(f"process peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
