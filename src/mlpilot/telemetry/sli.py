"""Service-level indicators from the request log: good and total requests per time bucket (DuckDB, one scan).

A request counts once (its first row), shadows never. ``availability`` counts requests that succeeded;
``latency`` counts successful requests served within a limit.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from mlpilot.errors import InvalidArgument
from mlpilot.telemetry.query import with_segment_files
from mlpilot.telemetry.segments import LogRoot, as_store

__all__ = ["request_buckets"]


def request_buckets(
    root: LogRoot,
    deployment: str,
    *,
    since: datetime,
    until: datetime,
    bucket_s: float = 60.0,
    indicator: str = "availability",
    latency_ms: float | None = None,
    variant: str | None = None,
) -> pd.DataFrame:
    """Columns ``start`` (UTC), ``good``, ``total``: one row per non-empty bucket in ``[since, until)``, in order.

    Raises:
        InvalidArgument: an unknown indicator, or a latency indicator without ``latency_ms``.
    """
    if indicator not in ("availability", "latency"):
        raise InvalidArgument(f"unknown request indicator {indicator!r}: use availability or latency")
    if indicator == "latency" and (latency_ms is None or latency_ms <= 0):
        raise InvalidArgument("the latency indicator needs latency_ms > 0")
    if bucket_s <= 0:
        raise InvalidArgument("bucket_s must be > 0")
    empty = pd.DataFrame({"start": pd.Series([], dtype="datetime64[us, UTC]"), "good": [], "total": []})
    where = ["ts >= ?", "ts < ?", "row = 0", "NOT shadow"]
    params: list[object] = [since, until]
    if variant is not None:
        where.append("variant = ?")
        params.append(variant)
    if indicator == "availability":
        where.append("status <> 'quarantined'")  # refused by the deployment's own input policy: not an outage
        good = "sum(CASE WHEN status = 'ok' THEN 1 ELSE 0 END)"
    else:
        where.append("status = 'ok'")
        good = f"sum(CASE WHEN latency_s <= {float(latency_ms or 0) / 1000.0!r} THEN 1 ELSE 0 END)"
    sql = (
        f"SELECT to_timestamp(floor(epoch(ts) / {float(bucket_s)!r}) * {float(bucket_s)!r}) AS start, "
        f"{good}::DOUBLE AS good, count(*)::DOUBLE AS total "
        f"FROM read_parquet(?, union_by_name=true) WHERE {' AND '.join(where)} GROUP BY 1 ORDER BY 1"
    )

    store = as_store(root)

    def run(files: list[str]) -> pd.DataFrame:
        if not files:
            return empty
        con = store.connect()
        try:
            return con.execute(sql, [files, *params]).df()
        finally:
            con.close()

    out = with_segment_files(store, deployment, since, until, run)
    if out.empty:
        return empty
    out["start"] = pd.to_datetime(out["start"], utc=True)
    return out
