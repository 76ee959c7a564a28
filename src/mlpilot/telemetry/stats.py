"""Traffic statistics from the request log for dashboards: requests, errors, quarantined requests and latency
percentiles per time bucket and variant, aggregated by DuckDB over the Parquet segments (one query, no rows in
Python), so a window of millions of records answers in well under a second.

Requests are counted once (the first row of each request), shadows apart; latency percentiles are over answered
requests (``status = 'ok'``), in milliseconds.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from mlpilot.errors import InvalidArgument
from mlpilot.telemetry.query import _duckdb, with_segment_files

__all__ = ["LLM_METRICS", "SERIES_COLUMNS", "llm_series", "traffic_series", "traffic_summary"]

SERIES_COLUMNS = ["start", "variant", "requests", "errors", "quarantined", "p50_ms", "p95_ms", "p99_ms"]
_AGGREGATES = (
    "count(*)::BIGINT AS requests, "
    "count(*) FILTER (WHERE status = 'error')::BIGINT AS errors, "
    "count(*) FILTER (WHERE status = 'quarantined')::BIGINT AS quarantined, "
    "1000 * quantile_cont(latency_s, 0.5) FILTER (WHERE status = 'ok') AS p50_ms, "
    "1000 * quantile_cont(latency_s, 0.95) FILTER (WHERE status = 'ok') AS p95_ms, "
    "1000 * quantile_cont(latency_s, 0.99) FILTER (WHERE status = 'ok') AS p99_ms"
)


def _query(root: Path, deployment: str, since: datetime, until: datetime, select: str, group: str) -> pd.DataFrame:
    if until <= since:
        raise InvalidArgument(f"the window is empty: until ({until.isoformat()}) is not after since")
    sql = (
        f"SELECT {select}, {_AGGREGATES} FROM read_parquet(?, union_by_name=true) "
        f'WHERE ts >= ? AND ts < ? AND "row" = 0 AND NOT shadow GROUP BY {group} ORDER BY {group}'
    )

    def run(files: list[str]) -> pd.DataFrame:
        if not files:
            return pd.DataFrame()
        con = _duckdb().connect()
        try:
            return con.execute(sql, [files, since, until]).df()
        finally:
            con.close()

    return with_segment_files(root, deployment, since, until, run)


def traffic_series(root: Path, deployment: str, since: datetime, until: datetime, bucket_s: float) -> pd.DataFrame:
    """One row per (bucket, variant) with traffic in ``[since, until)``: :data:`SERIES_COLUMNS` (``start`` UTC).

    Raises:
        InvalidArgument: ``bucket_s`` is not positive, or the window is empty.
    """
    if not bucket_s > 0:
        raise InvalidArgument(f"bucket_s must be > 0 seconds, got {bucket_s}")
    b = float(bucket_s)
    out = _query(root, deployment, since, until, f"to_timestamp(floor(epoch(ts) / {b!r}) * {b!r}) AS start, variant",
                 "start, variant")  # fmt: skip
    if out.empty:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in SERIES_COLUMNS})
    out["start"] = pd.to_datetime(out["start"], utc=True)
    return out[SERIES_COLUMNS]


def traffic_summary(root: Path, deployment: str, since: datetime, until: datetime) -> dict[str, Any]:
    """Totals over ``[since, until)``, overall and per variant: requests, errors, quarantined, requests per second,
    error rate (errors over requests not quarantined) and latency percentiles."""
    seconds = (until - since).total_seconds()
    per_variant = _query(root, deployment, since, until, "variant", "variant")
    overall = _query(root, deployment, since, until, "1 AS one", "one")

    def row(r: Any) -> dict[str, Any]:
        served = int(r["requests"]) - int(r["quarantined"])
        return {
            "requests": int(r["requests"]),
            "errors": int(r["errors"]),
            "quarantined": int(r["quarantined"]),
            "requests_per_s": int(r["requests"]) / seconds if seconds > 0 else 0.0,
            "error_rate": int(r["errors"]) / served if served else None,
            **{k: (None if pd.isna(r[k]) else round(float(r[k]), 3)) for k in ("p50_ms", "p95_ms", "p99_ms")},
        }

    empty = {"requests": 0, "errors": 0, "quarantined": 0, "requests_per_s": 0.0, "error_rate": None,
             "p50_ms": None, "p95_ms": None, "p99_ms": None}  # fmt: skip
    return {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "overall": row(overall.iloc[0]) if len(overall) else empty,
        "variants": {str(r["variant"]): row(r) for _, r in per_variant.iterrows()},
    }


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
