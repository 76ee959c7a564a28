"""Queries over request-log segments with DuckDB (no extensions, nothing downloaded).

Windows are pruned by the ``dt=``/``hour=`` partitions before any file is opened; segments of different schemas
(a new model version with new features) are read together by column name. Every function takes the log's root: a
local directory, or a :class:`~mlpilot.telemetry.segments.SegmentStore` whose sealed segments may be on object
storage (read through its fsspec filesystem registered on the DuckDB connection).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd

from mlpilot.errors import InvalidArgument, MissingExtra

if TYPE_CHECKING:
    from mlpilot.telemetry.segments import LogRoot

_RETRIES = 50  # a compaction going through many hours can make a long query retry several times in a row
T = TypeVar("T")

META_COLUMNS = (
    "ts",
    "request_id",
    "row",
    "deployment",
    "variant",
    "model",
    "status",
    "error",
    "latency_s",
    "decode_s",
    "shadow",
    "sticky_key",
    "trace_id",
)


def _duckdb() -> Any:
    try:
        import duckdb
    except ImportError as exc:  # pragma: no cover - duckdb is a core dependency
        raise MissingExtra("querying the request log", "all") from exc
    return duckdb


def segment_files(root: LogRoot, deployment: str, since: datetime | None, until: datetime | None) -> list[str]:
    """Segment files of a deployment in the hour partitions that overlap ``[since, until]`` (local paths, and the
    URLs of shipped segments)."""
    from mlpilot.telemetry.segments import as_store

    return as_store(root).files(deployment, since, until)


def with_segment_files(
    root: LogRoot, deployment: str, since: datetime | None, until: datetime | None, run: Callable[[list[str]], T]
) -> T:
    """Run ``run(files)`` (a DuckDB query, on a connection from :func:`connect`) on the live segment files of a
    window. If one vanished between listing and reading (a compaction, a prune or the shipper moved it
    meanwhile), list again and retry: the new listing holds the same rows (a merged segment replaces its sources,
    a shipped segment is the same file). Use it for any query over segment files."""
    from mlpilot.telemetry.segments import as_store

    store = as_store(root)
    duckdb = _duckdb()
    for attempt in range(_RETRIES):
        files = store.files(deployment, since, until)
        try:
            return run(files)
        except (duckdb.Error, FileNotFoundError) as exc:
            # a local file that vanished is an IOException; a remote one read through fsspec a plain duckdb.Error
            # carrying the filesystem's FileNotFoundError
            vanished = not isinstance(exc, duckdb.Error) or isinstance(exc, duckdb.IOException)
            if not (vanished or "FileNotFoundError" in str(exc)):
                raise
            if attempt == _RETRIES - 1 or all(store.exists(f) for f in files):
                raise  # not a vanished segment, or no end to it
            time.sleep(0.002 * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def connect(root: LogRoot) -> Any:
    """A DuckDB connection that reads the segments of ``root`` (its remote's filesystem registered)."""
    from mlpilot.telemetry.segments import as_store

    return as_store(root).connect()


def _window(since: datetime | None, until: datetime | None) -> tuple[list[str], list[Any]]:
    where: list[str] = ["TRUE"]
    params: list[Any] = []
    if since is not None:
        where.append("ts >= ?")
        params.append(since)
    if until is not None:
        where.append("ts <= ?")
        params.append(until)
    return where, params


def read_records(
    root: LogRoot,
    deployment: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    variant: str | None = None,
    status: str | None = None,
    shadow: bool | None = None,
    columns: list[str] | None = None,
    limit: int | None = None,
    newest_first: bool = False,
    sample: int | None = None,
) -> pd.DataFrame:
    """Logged rows of ``deployment`` in a time window, as a DataFrame (one row per input row).

    Args:
        columns: only these columns; a name ending in ``.*`` (``in.*``, ``out.*``) stands for every column with
            that prefix (none is fine). None: every column.
        sample: at most this many rows, a uniform random sample of the window's (reservoir sampling in DuckDB,
            repeatable), in time order; None: every row. Ignored with ``limit``.

    Raises:
        InvalidArgument: an unknown column was asked for.
    """
    return with_segment_files(
        root,
        deployment,
        since,
        until,
        lambda files: _read(root, files, since, until, variant, status, shadow, columns, limit, newest_first, sample),
    )


def _read(
    root: LogRoot,
    files: list[str],
    since: datetime | None,
    until: datetime | None,
    variant: str | None,
    status: str | None,
    shadow: bool | None,
    columns: list[str] | None,
    limit: int | None,
    newest_first: bool,
    sample: int | None = None,
) -> pd.DataFrame:
    if not files:
        return pd.DataFrame(columns=list(columns or META_COLUMNS))
    con = connect(root)
    try:
        where, params = _window(since, until)
        for col, value in (("variant", variant), ("status", status), ("shadow", shadow)):
            if value is not None:
                where.append(f"{col} = ?")
                params.append(value)
        rel = con.read_parquet(files, union_by_name=True)
        available = set(rel.columns)
        wanted = _expand(columns, list(rel.columns)) if columns else None
        if wanted == []:  # only prefixes, and no column has them
            return pd.DataFrame()
        if wanted is not None:
            unknown = [c for c in wanted if c not in available]
            if unknown:
                raise InvalidArgument(f"unknown log columns {unknown}; available: {sorted(available)}")
            select = _quoted(wanted)
        else:
            select = "* EXCLUDE (dt, hour)" if "dt" in available else "*"
        order = f"ORDER BY ts {'DESC' if newest_first else 'ASC'}, row"
        frm = f"FROM read_parquet(?, union_by_name=true) WHERE {' AND '.join(where)}"
        if sample is not None and limit is None:  # the time order needs ts and row, whatever the caller selects
            inner = select if wanted is None else _quoted(list(dict.fromkeys([*wanted, "ts", "row"])))
            outer = "*" if wanted is None else select
            sql = (
                f"SELECT {outer} FROM (SELECT {inner} {frm}) AS w "
                f"USING SAMPLE reservoir({int(sample)} ROWS) REPEATABLE (7) {order}"
            )
        else:
            sql = f"SELECT {select} {frm} {order}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return con.execute(sql, [files, *params]).df()
    finally:
        con.close()


def _expand(columns: list[str], available: list[str]) -> list[str]:
    """``columns`` with each ``prefix.*`` replaced by the available columns of that prefix."""
    out: list[str] = []
    for c in columns:
        out += [a for a in available if a.startswith(c[:-1])] if c.endswith(".*") else [c]
    return list(dict.fromkeys(out))


def _quoted(columns: list[str]) -> str:
    return ", ".join(f'"{c}"' for c in columns)


#: up to this many requests in a window, :func:`traffic_stats` computes exact percentiles (see there)
EXACT_QUANTILES_UP_TO = 100_000


def traffic_stats(
    root: LogRoot, deployment: str, since: datetime, until: datetime, variant: str | None = None
) -> dict[str, Any]:
    """What the traffic monitor needs of a window, aggregated in DuckDB (no rows leave it, whatever the window
    holds): ``requests`` (served, not shadows), ``rows``, ``errors``, ``latency_s`` (p50/p95/p99 of the ok
    requests) and ``top_errors`` (the 5 most frequent messages, first 120 characters).

    Percentiles are exact (linear interpolation, numpy's default) up to ``EXACT_QUANTILES_UP_TO`` requests and
    t-digest estimates (DuckDB's ``approx_quantile``) beyond: an exact quantile holds every value of the window in
    memory (~16 bytes a row: 230 MB for an hour at 4,000 requests/s, inside the server), a t-digest a few KB."""

    def run(files: list[str]) -> dict[str, Any]:
        stats: dict[str, Any] = {"requests": 0, "rows": 0, "errors": 0, "latency_s": {}, "top_errors": {}}
        if not files:
            return stats
        con = connect(root)
        try:
            where, params = _window(since, until)
            where.append("shadow = false")
            if variant is not None:
                where.append("variant = ?")
                params.append(variant)
            base = f"FROM read_parquet(?, union_by_name=true) WHERE {' AND '.join(where)}"
            ok = "FILTER (WHERE row = 0 AND status = 'ok') "
            requests, rows, errors, q = con.execute(
                "SELECT count(*) FILTER (WHERE row = 0), count(*), count(*) FILTER (WHERE row = 0 AND status <> 'ok'), "
                f"approx_quantile(latency_s, [0.5, 0.95, 0.99]) {ok}{base}",
                [files, *params],
            ).fetchone()
            if requests <= EXACT_QUANTILES_UP_TO:  # a small window: exact, a second scan that costs little
                q = con.execute(f"SELECT quantile_cont(latency_s, [0.5, 0.95, 0.99]) {ok}{base}", [files, *params])
                q = q.fetchone()[0]
            stats.update(requests=int(requests), rows=int(rows), errors=int(errors))
            if q is not None:
                stats["latency_s"] = {50: q[0], 95: q[1], 99: q[2]}
            if errors and "error" in con.read_parquet(files, union_by_name=True).columns:
                top = con.execute(
                    f"SELECT left(error, 120) AS e, count(*) AS n {base} AND row = 0 AND status <> 'ok' "
                    "AND error IS NOT NULL GROUP BY e ORDER BY n DESC, e LIMIT 5",
                    [files, *params],
                ).fetchall()
                stats["top_errors"] = {str(e): int(n) for e, n in top}
            return stats
        finally:
            con.close()

    return with_segment_files(root, deployment, since, until, run)


def count_records(root: LogRoot, deployment: str, since: datetime | None = None, until: datetime | None = None) -> int:
    def count(files: list[str]) -> int:
        if not files:
            return 0
        con = connect(root)
        try:
            where, params = _window(since, until)
            sql = f"SELECT count(*) FROM read_parquet(?, union_by_name=true) WHERE {' AND '.join(where)}"
            return int(con.execute(sql, [files, *params]).fetchone()[0])
        finally:
            con.close()

    return with_segment_files(root, deployment, since, until, count)
