"""Traffic statistics from the request log for dashboards: requests, errors, quarantined requests and latency
percentiles per time bucket and variant, aggregated by DuckDB over the Parquet segments (one query, no rows in
Python), so a window of millions of records answers in well under a second.

Requests are counted once (the first row of each request), shadows apart; latency percentiles are over answered
requests (``status = 'ok'``), in milliseconds.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from mlpilot.errors import InvalidArgument
from mlpilot.telemetry.query import _duckdb, with_segment_files
from mlpilot.telemetry.segments import LogRoot, SegmentStore, as_store

__all__ = ["LLM_METRICS", "SERIES_COLUMNS", "llm_series", "traffic", "traffic_series", "traffic_summary"]

SERIES_COLUMNS = ["start", "variant", "requests", "errors", "quarantined", "p50_ms", "p95_ms", "p99_ms"]
QUANTILES = (0.5, 0.95, 0.99)

#: latency histogram bins grow by this ratio, so a percentile is within ~1% of the true value (it is the midpoint
#: of its bin, in log space, clamped to the smallest and largest latency seen in that bin)
GAMMA = 1.02
_LN_GAMMA = math.log(GAMMA)
_KEEP = 4096  # partial aggregates kept (one per segment file and bucket width): a few MB at most

# one row per (file, bucket, variant, status, latency bin): the partial aggregate a sealed segment always gives
_PARTIAL = (
    "SELECT {file} AS file, {bucket} AS bucket, variant, status, "
    f"CASE WHEN status = 'ok' AND latency_s IS NOT NULL THEN floor(ln(greatest(latency_s, 1e-9)) / {_LN_GAMMA!r}) "
    "END::INTEGER AS bin, count(*)::BIGINT AS n, min(latency_s) AS lo, max(latency_s) AS hi "
    'FROM read_parquet(?, union_by_name=true, filename=true) WHERE "row" = 0 AND NOT shadow {window}'
    "GROUP BY ALL"
)
_PART_COLUMNS = ["bucket", "variant", "status", "bin", "n", "lo", "hi"]
_RANGE = "SELECT filename, epoch(min(ts)), epoch(max(ts)) FROM read_parquet(?, filename=true) GROUP BY filename"


_local = threading.local()


def _connection(store: SegmentStore) -> Any:
    """One DuckDB connection per thread and remote, kept (a connection costs ~25 ms to open; queries here are
    read-only); a store's remote filesystem is registered on its connection."""
    cons = getattr(_local, "cons", None)
    if cons is None:
        cons = _local.cons = {}
    key = store.key if store.remote else None
    con = cons.get(key)
    if con is None:
        con = cons[key] = store.connect()
    return con


class _Partials:
    """Partial aggregates of whole segment files, kept by (path, size, mtime, bucket width) — (URL, size, ETag or
    modification time, bucket width) for a shipped segment: a sealed segment never changes (a compaction writes a
    new file), so a dashboard refreshing every few seconds over a million records scans only the segments it has
    not seen and the ones its window cuts. Least recently used go first."""

    def __init__(self, keep: int = _KEEP) -> None:
        self._keep = keep
        self._lock = threading.Lock()
        self._parts: OrderedDict[tuple[Any, ...], tuple[float, float, pd.DataFrame]] = OrderedDict()

    def window(
        self, store: SegmentStore, files: list[str], bucket_s: float | None, since: datetime, until: datetime
    ) -> pd.DataFrame:
        """The partial-aggregate rows of ``[since, until)`` over ``files``."""
        keys = {f: (*_stat(store, f), bucket_s) for f in files}
        with self._lock:
            known = {f: self._parts.get(k) for f, k in keys.items()}
            for k in keys.values():
                if k in self._parts:
                    self._parts.move_to_end(k)
        missing = [f for f, v in known.items() if v is None]
        if missing:
            fresh = self._scan(store, missing, bucket_s)
            with self._lock:
                for f, v in fresh.items():
                    known[f] = self._parts[keys[f]] = v
                while len(self._parts) > self._keep:
                    self._parts.popitem(last=False)
        lo, hi = since.timestamp(), until.timestamp()
        frames, cut = [], []
        for f in files:
            first, last, part = known[f]  # type: ignore[misc]
            if first >= lo and last < hi:
                if not part.empty:
                    frames.append(part)  # the whole file is in the window
            elif last >= lo and first < hi:
                cut.append(f)  # the window cuts it: read its rows in the window
        if cut:
            frames.append(_query(store, cut, bucket_s, "AND ts >= ? AND ts < ? ", [since, until]))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=_PART_COLUMNS)

    @staticmethod
    def _scan(
        store: SegmentStore, files: list[str], bucket_s: float | None
    ) -> dict[str, tuple[float, float, pd.DataFrame]]:
        con = _connection(store)
        ranges = {str(r[0]): (float(r[1]), float(r[2])) for r in con.execute(_RANGE, [files]).fetchall()}
        rows = _query(store, files, bucket_s, "", [], by_file=True)
        by_file = dict(iter(rows.groupby("file", sort=False)))
        out = {}
        for f in files:
            first, last = ranges.get(f, (math.inf, -math.inf))  # an empty segment is in no window
            part = by_file.get(f, rows.iloc[:0])
            out[f] = (first, last, part.drop(columns="file").reset_index(drop=True))
        return out


def _stat(store: SegmentStore, path: str) -> tuple[str, int, Any]:
    try:
        return store.stat(path)
    except FileNotFoundError as exc:  # compacted or shipped since the listing: with_segment_files lists again
        raise _duckdb().IOException(f"segment vanished: {path}") from exc


def _query(
    store: SegmentStore, files: list[str], bucket_s: float | None, window: str, params: list[Any], by_file: bool = False
) -> Any:
    bucket = f"floor(epoch(ts) / {float(bucket_s)!r})::BIGINT" if bucket_s is not None else "0::BIGINT"
    sql = _PARTIAL.format(file="filename" if by_file else "''", bucket=bucket, window=window)
    return _connection(store).execute(sql, [files, *params]).df()


_PARTIALS = _Partials()


def merge(parts: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Requests, errors, quarantined and latency percentiles (ms) per ``keys`` from partial-aggregate rows."""
    if parts.empty:
        return pd.DataFrame(columns=[*keys, "requests", "errors", "quarantined", "p50_ms", "p95_ms", "p99_ms"])
    parts = parts.assign(_all=0)
    by = keys or ["_all"]
    status = parts.groupby([*by, "status"], sort=False)["n"].sum().unstack("status", fill_value=0)
    out = pd.DataFrame(index=status.index)
    out["requests"] = status.sum(axis=1).astype("int64")
    for name in ("error", "quarantined"):
        out[name + ("s" if name == "error" else "")] = status[name].astype("int64") if name in status else 0
    ok = parts[parts["bin"].notna()]
    hist = ok.groupby([*by, "bin"], sort=True).agg(n=("n", "sum"), lo=("lo", "min"), hi=("hi", "max")).reset_index()
    if not hist.empty:
        grouped = hist.groupby(by, sort=False)["n"]
        cum, total = grouped.cumsum(), grouped.transform("sum")
        middle = np.exp((hist["bin"].to_numpy(dtype="float64") + 0.5) * _LN_GAMMA)
        value = np.clip(middle, hist["lo"].to_numpy(dtype="float64"), hist["hi"].to_numpy(dtype="float64"))
        for q in QUANTILES:
            rank = np.maximum(np.ceil(q * total.to_numpy(dtype="float64")), 1.0)  # nearest rank
            hit = hist.assign(v=value * 1000.0)[cum.to_numpy() >= rank].groupby(by, sort=False)["v"].first()
            out[f"p{round(q * 100)}_ms"] = hit
    for q in QUANTILES:
        out[f"p{round(q * 100)}_ms"] = out.get(f"p{round(q * 100)}_ms", np.nan)
    out = out.reset_index()
    return out.drop(columns="_all") if not keys else out


def traffic(
    root: LogRoot, deployment: str, since: datetime, until: datetime, bucket_s: float | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The window's series (one row per bucket and variant, :data:`SERIES_COLUMNS`; empty when ``bucket_s`` is
    ``None``) and its summary (overall and per variant, see :func:`traffic_summary`).

    Sealed segments are aggregated once (per bucket width) and kept: a request for the live window scans only new
    segments and the one the window's start cuts. Latency percentiles come from log-spaced histograms (within ~1%).

    Raises:
        InvalidArgument: ``bucket_s`` is not positive, or the window is empty.
    """
    if until <= since:
        raise InvalidArgument(f"the window is empty: until ({until.isoformat()}) is not after since")
    if bucket_s is not None and not bucket_s > 0:
        raise InvalidArgument(f"bucket_s must be > 0 seconds, got {bucket_s}")
    b = float(bucket_s) if bucket_s is not None else None
    store = as_store(root)
    parts = with_segment_files(
        store, deployment, since, until, lambda files: _PARTIALS.window(store, files, b, since, until)
    )
    seconds = (until - since).total_seconds()
    empty = {"requests": 0, "errors": 0, "quarantined": 0, "requests_per_s": 0.0, "error_rate": None,
             "p50_ms": None, "p95_ms": None, "p99_ms": None}  # fmt: skip
    summary: dict[str, Any] = {"since": since.isoformat(), "until": until.isoformat(), "overall": empty, "variants": {}}
    series = pd.DataFrame({c: pd.Series(dtype="float64") for c in SERIES_COLUMNS})
    if parts.empty:
        return series, summary
    overall = merge(parts, [])
    summary["overall"] = _row(overall.iloc[0], seconds)
    per_variant = merge(parts, ["variant"]).sort_values("variant")
    summary["variants"] = {str(r["variant"]): _row(r, seconds) for _, r in per_variant.iterrows()}
    if b is not None:
        rows = merge(parts, ["bucket", "variant"]).sort_values(["bucket", "variant"])
        rows = rows.assign(start=pd.to_datetime(rows["bucket"] * b, unit="s", utc=True))
        series = rows[SERIES_COLUMNS].reset_index(drop=True)
    return series, summary


def _row(r: Any, seconds: float) -> dict[str, Any]:
    served = int(r["requests"]) - int(r["quarantined"])
    return {
        "requests": int(r["requests"]),
        "errors": int(r["errors"]),
        "quarantined": int(r["quarantined"]),
        "requests_per_s": int(r["requests"]) / seconds if seconds > 0 else 0.0,
        "error_rate": int(r["errors"]) / served if served else None,
        **{k: (None if pd.isna(r[k]) else round(float(r[k]), 3)) for k in ("p50_ms", "p95_ms", "p99_ms")},
    }


def traffic_series(root: LogRoot, deployment: str, since: datetime, until: datetime, bucket_s: float) -> pd.DataFrame:
    """One row per (bucket, variant) with traffic in ``[since, until)``: :data:`SERIES_COLUMNS` (``start`` UTC).

    Raises:
        InvalidArgument: ``bucket_s`` is not positive, or the window is empty.
    """
    return traffic(root, deployment, since, until, bucket_s)[0]


def traffic_summary(root: LogRoot, deployment: str, since: datetime, until: datetime) -> dict[str, Any]:
    """Totals over ``[since, until)``, overall and per variant: requests, errors, quarantined, requests per second,
    error rate (errors over requests not quarantined) and latency percentiles."""
    return traffic(root, deployment, since, until)[1]


#: the LLM columns an app's records carry (``out.*``) and how a bucket aggregates each
LLM_METRICS = {
    "input_tokens": 'avg("out.input_tokens")',
    "output_tokens": 'avg("out.output_tokens")',
    "cost": 'sum("out.cost")',
    "ttft_p50_ms": '1000 * quantile_cont("out.ttft_s", 0.5)',
    "ttft_p95_ms": '1000 * quantile_cont("out.ttft_s", 0.95)',
    "groundedness": 'avg("out.groundedness")',
}


_LLM_COLUMN = {
    "input_tokens": "out.input_tokens",
    "output_tokens": "out.output_tokens",
    "cost": "out.cost",
    "ttft_p50_ms": "out.ttft_s",
    "ttft_p95_ms": "out.ttft_s",
    "groundedness": "out.groundedness",
}


def llm_series(
    root: LogRoot, deployment: str, since: datetime, until: datetime, bucket_s: float
) -> pd.DataFrame | None:
    """Per (bucket, variant) of an LLM app's answered requests: mean input and output tokens, total cost, time to
    first token (p50, p95, ms) and mean groundedness. ``None`` when the deployment's records carry no LLM columns
    (a model deployment)."""
    if not bucket_s > 0:
        raise InvalidArgument(f"bucket_s must be > 0 seconds, got {bucket_s}")
    b = float(bucket_s)
    where = "ts >= ? AND ts < ? AND \"row\" = 0 AND NOT shadow AND status = 'ok'"
    store = as_store(root)

    def run(files: list[str]) -> pd.DataFrame | None:
        if not files:
            return None
        con = store.connect()
        try:
            described = con.execute("DESCRIBE SELECT * FROM read_parquet(?, union_by_name=true)", [files]).fetchall()
            names = {str(r[0]) for r in described}
            if "out.ttft_s" not in names or "out.output_tokens" not in names:
                return None
            # an app without retrieval has no groundedness, a local model no cost: those metrics are NULL
            cols = ", ".join(
                f"{expr if _LLM_COLUMN[name] in names else 'NULL::DOUBLE'} AS {name}"
                for name, expr in LLM_METRICS.items()
            )
            sql = (
                f"SELECT to_timestamp(floor(epoch(ts) / {b!r}) * {b!r}) AS start, variant, "
                f"count(*)::BIGINT AS requests, {cols} FROM read_parquet(?, union_by_name=true) WHERE {where} "
                "GROUP BY 1, 2 ORDER BY 1, 2"
            )
            return con.execute(sql, [files, since, until]).df()
        finally:
            con.close()

    out = with_segment_files(store, deployment, since, until, run)
    if out is not None and not out.empty:
        out["start"] = pd.to_datetime(out["start"], utc=True)
    return out
