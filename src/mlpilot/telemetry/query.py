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
) -> pd.DataFrame:
    """Logged rows of ``deployment`` in a time window, as a DataFrame (one row per input row).

    Raises:
        InvalidArgument: an unknown column was asked for.
    """
    return with_segment_files(
        root,
        deployment,
        since,
        until,
        lambda files: _read(root, files, since, until, variant, status, shadow, columns, limit, newest_first),
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
        if columns:
            unknown = [c for c in columns if c not in available]
            if unknown:
                raise InvalidArgument(f"unknown log columns {unknown}; available: {sorted(available)}")
            select = ", ".join(f'"{c}"' for c in columns)
        else:
            select = "* EXCLUDE (dt, hour)" if "dt" in available else "*"
        sql = (
            f"SELECT {select} FROM read_parquet(?, union_by_name=true) WHERE {' AND '.join(where)} "
            f"ORDER BY ts {'DESC' if newest_first else 'ASC'}, row"
        )
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return con.execute(sql, [files, *params]).df()
    finally:
        con.close()


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
