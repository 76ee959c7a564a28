"""Dashboard traffic statistics over real segment files: percentiles within 1% of the exact ones, counts exact for
windows that cut segments, and the kept per-segment aggregates never stale (new segments, compaction)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from mlpilot.serving.dataplane import InferenceRecord
from mlpilot.telemetry import stats
from mlpilot.telemetry.compaction import compact
from mlpilot.telemetry.query import read_records
from mlpilot.telemetry.reqlog import RequestLog

HOUR = timedelta(hours=1)
T0 = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - 3 * HOUR  # a closed hour


def _write(root: Path, ts: np.ndarray, latency: np.ndarray, variant: str = "a", status: str = "ok") -> None:
    """One segment per call, through the real writer."""
    log = RequestLog(root)
    log.start()
    for t, lat in zip(ts.tolist(), latency.tolist(), strict=True):
        log.append(
            InferenceRecord(
                ts=t,
                request_id=uuid.uuid4().hex,
                deployment="d",
                variant=variant,
                model="m:1",
                status=status,
                latency_s=lat,
                error=None if status == "ok" else "boom",
                outputs=None,
                inputs=None,
            )
        )
    log.stop()


def _exact(root: Path, since: datetime, until: datetime) -> tuple[int, np.ndarray]:
    df = read_records(root, "d", since=since, until=until)
    df = df[(df["ts"] >= since) & (df["ts"] < until) & (df["row"] == 0)]
    return len(df), df.loc[df["status"] == "ok", "latency_s"].to_numpy()


def test_percentiles_within_one_percent_and_counts_exact_on_cut_windows(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    base = T0.timestamp()
    for k in range(6):  # six segments of ten minutes each, log-normal latencies over three decades
        ts = base + k * 600 + np.sort(rng.random(4000)) * 600
        _write(tmp_path, ts, 0.003 * np.exp(rng.normal(0.0, 1.2, ts.size)))
    _write(tmp_path, base + 100 + rng.random(300) * 3000, np.full(300, 0.5), status="error")
    for since_s, until_s in ((0, 3600), (0, 1800), (250, 3350), (601, 602), (1234.5, 2345.25)):
        since, until = T0 + timedelta(seconds=since_s), T0 + timedelta(seconds=until_s)
        for _ in range(2):  # cold, then from the kept aggregates: the same answer
            series, summary = stats.traffic(tmp_path, "d", since, until, bucket_s=60)
            n, ok = _exact(tmp_path, since, until)
            overall = summary["overall"]
            assert overall["requests"] == n == int(series["requests"].sum()), (since_s, until_s)
            assert overall["errors"] == n - ok.size
            for q, key in ((0.5, "p50_ms"), (0.95, "p95_ms"), (0.99, "p99_ms")):
                exact = 1000.0 * float(np.quantile(ok, q, method="inverted_cdf"))
                assert overall[key] == pytest.approx(exact, rel=0.0101), (since_s, until_s, key)


def test_new_segments_and_compaction_are_seen(tmp_path: Path) -> None:
    base = T0.timestamp()
    since, until = T0, T0 + HOUR
    _write(tmp_path, base + np.arange(100.0), np.full(100, 0.010))
    assert stats.traffic_summary(tmp_path, "d", since, until)["overall"]["requests"] == 100
    _write(tmp_path, base + 200 + np.arange(50.0), np.full(50, 0.020), variant="b")
    summary = stats.traffic_summary(tmp_path, "d", since, until)
    assert summary["overall"]["requests"] == 150 and summary["variants"]["b"]["p50_ms"] == pytest.approx(20.0)
    merged = compact(tmp_path, "d", older_than=timedelta(0), now=T0 + 2 * HOUR)
    assert (merged.merged, merged.written) == (2, 1)  # the two segments are now one new file
    summary = stats.traffic_summary(tmp_path, "d", since, until)
    assert summary["overall"]["requests"] == 150 and summary["variants"]["a"]["p50_ms"] == pytest.approx(10.0)


def test_an_empty_window_and_bad_arguments(tmp_path: Path) -> None:
    series, summary = stats.traffic(tmp_path, "d", T0, T0 + HOUR, bucket_s=60)
    assert series.empty and summary["overall"]["requests"] == 0 and summary["overall"]["p50_ms"] is None
    _write(tmp_path, T0.timestamp() + np.arange(10.0), np.full(10, 0.01), status="error")
    summary = stats.traffic_summary(tmp_path, "d", T0, T0 + HOUR)
    assert summary["overall"]["errors"] == 10 and summary["overall"]["p50_ms"] is None  # nothing answered
    with pytest.raises(Exception, match="window is empty"):
        stats.traffic(tmp_path, "d", T0, T0)
    with pytest.raises(Exception, match="bucket_s must be > 0"):
        stats.traffic(tmp_path, "d", T0, T0 + HOUR, bucket_s=0)
