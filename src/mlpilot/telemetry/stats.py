"""Traffic statistics from the request log for dashboards: requests, errors, quarantined requests and latency
percentiles per time bucket and variant, aggregated by DuckDB over the Parquet segments (one query, no rows in
Python), so a window of millions of records answers in well under a second.

Requests are counted once (the first row of each request), shadows apart; latency percentiles are over answered
requests (``status = 'ok'``), in milliseconds.
"""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from mlpilot.errors import InvalidArgument
from mlpilot.telemetry.query import _duckdb, with_segment_files

__all__ = ["LLM_METRICS", "SERIES_COLUMNS", "llm_series", "traffic", "traffic_series", "traffic_summary"]

SERIES_COLUMNS = ["start", "variant", "requests", "errors", "quarantined", "p50_ms", "p95_ms", "p99_ms"]
_AGGREGATES = (
    "count(*)::BIGINT AS requests, "
    "count(*) FILTER (WHERE status = 'error')::BIGINT AS errors, "
    "count(*) FILTER (WHERE status = 'quarantined')::BIGINT AS quarantined, "
    # one t-digest per group for the three percentiles (approximate: well under 1% of the value range)
    "approx_quantile(latency_s, [0.5, 0.95, 0.99]) FILTER (WHERE status = 'ok') AS q"
)


_local = threading.local()


def _connection() -> Any:
    """One DuckDB connection per thread, kept (a connection costs ~25 ms to open; queries here are read-only)."""
    con = getattr(_local, "con", None)
    if con is None:
        con = _local.con = _duckdb().connect()
    return con


def traffic(
    root: Path, deployment: str, since: datetime, until: datetime, bucket_s: float | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The window's series (one row per bucket and variant, :data:`SERIES_COLUMNS`; empty when ``bucket_s`` is
    ``None``) and its summary (overall and per variant, see :func:`traffic_summary`), from **one** scan of the
    segments (grouping sets).

    Raises:
        InvalidArgument: ``bucket_s`` is not positive, or the window is empty.
    """
    if until <= since:
        raise InvalidArgument(f"the window is empty: until ({until.isoformat()}) is not after since")
    if bucket_s is not None and not bucket_s > 0:
        raise InvalidArgument(f"bucket_s must be > 0 seconds, got {bucket_s}")
    bucket = f"floor(epoch(ts) / {float(bucket_s)!r})::BIGINT" if bucket_s is not None else "0::BIGINT"
    sets = "(bucket, variant), (variant), ()"
    sql = (
        f"SELECT {bucket} AS bucket, variant, grouping(bucket) AS g_bucket, grouping(variant) AS g_variant, "
        f"{_AGGREGATES} FROM read_parquet(?, union_by_name=true) "
        f'WHERE ts >= ? AND ts < ? AND "row" = 0 AND NOT shadow GROUP BY GROUPING SETS ({sets})'
    )

    def run(files: list[str]) -> pd.DataFrame:
        return _connection().execute(sql, [files, since, until]).df() if files else pd.DataFrame()

    out = with_segment_files(root, deployment, since, until, run)
    if not out.empty:
        q = out.pop("q")
        for i, name in enumerate(("p50_ms", "p95_ms", "p99_ms")):
            out[name] = [1000.0 * float(v[i]) if v is not None and len(v) > i and v[i] is not None else None for v in q]
    seconds = (until - since).total_seconds()
    empty = {"requests": 0, "errors": 0, "quarantined": 0, "requests_per_s": 0.0, "error_rate": None,
             "p50_ms": None, "p95_ms": None, "p99_ms": None}  # fmt: skip
    summary: dict[str, Any] = {"since": since.isoformat(), "until": until.isoformat(), "overall": empty, "variants": {}}
    series = pd.DataFrame({c: pd.Series(dtype="float64") for c in SERIES_COLUMNS})
    if out.empty:
        return series, summary
    overall = out[(out["g_variant"] == 1) & (out["g_bucket"] == 1)]
    per_variant = out[(out["g_variant"] == 0) & (out["g_bucket"] == 1)]
    if len(overall):
        summary["overall"] = _row(overall.iloc[0], seconds)
    per_variant = per_variant.sort_values("variant")
    summary["variants"] = {str(r["variant"]): _row(r, seconds) for _, r in per_variant.iterrows()}
    if bucket_s is not None:
        rows = out[(out["g_variant"] == 0) & (out["g_bucket"] == 0)].sort_values(["bucket", "variant"])
        if len(rows):
            rows = rows.assign(start=pd.to_datetime(rows["bucket"] * float(bucket_s), unit="s", utc=True))
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


def traffic_series(root: Path, deployment: str, since: datetime, until: datetime, bucket_s: float) -> pd.DataFrame:
    """One row per (bucket, variant) with traffic in ``[since, until)``: :data:`SERIES_COLUMNS` (``start`` UTC).

    Raises:
        InvalidArgument: ``bucket_s`` is not positive, or the window is empty.
    """
    return traffic(root, deployment, since, until, bucket_s)[0]


def traffic_summary(root: Path, deployment: str, since: datetime, until: datetime) -> dict[str, Any]:
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


def llm_series(root: Path, deployment: str, since: datetime, until: datetime, bucket_s: float) -> pd.DataFrame | None:
    """Per (bucket, variant) of an LLM app's answered requests: mean input and output tokens, total cost, time to
    first token (p50, p95, ms) and mean groundedness. ``None`` when the deployment's records carry no LLM columns
    (a model deployment)."""
    if not bucket_s > 0:
        raise InvalidArgument(f"bucket_s must be > 0 seconds, got {bucket_s}")
    b = float(bucket_s)
    where = "ts >= ? AND ts < ? AND \"row\" = 0 AND NOT shadow AND status = 'ok'"
    duckdb = _duckdb()

    def run(files: list[str]) -> pd.DataFrame | None:
        if not files:
            return None
        con = duckdb.connect()
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

    out = with_segment_files(root, deployment, since, until, run)
    if out is not None and not out.empty:
        out["start"] = pd.to_datetime(out["start"], utc=True)
    return out
