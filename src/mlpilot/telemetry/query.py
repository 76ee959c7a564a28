"""Queries over request-log segments with DuckDB (no extensions, nothing downloaded).

Windows are pruned by the ``dt=``/``hour=`` partitions before any file is opened; segments of different schemas
(a new model version with new features) are read together by column name.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from mlpilot.errors import InvalidArgument, MissingExtra
from mlpilot.telemetry.compaction import live_files

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


def segment_files(root: Path, deployment: str, since: datetime | None, until: datetime | None) -> list[str]:
    """Segment files of a deployment in the hour partitions that overlap ``[since, until]``."""
    base = Path(root) / deployment
    if not base.is_dir():
        return []
    lo = since.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0) if since else None
    hi = until.astimezone(timezone.utc) if until else None
    files: list[str] = []
    for day_dir in sorted(base.glob("dt=*")):
        day = day_dir.name[3:]
        for hour_dir in sorted(day_dir.glob("hour=*")):
            start = datetime.strptime(f"{day} {hour_dir.name[5:]}", "%Y-%m-%d %H").replace(tzinfo=timezone.utc)
            if (lo and start + timedelta(hours=1) <= lo) or (hi and start > hi):
                continue  # partition pruning: this hour cannot hold matching rows
            files.extend(str(p) for p in live_files(sorted(hour_dir.glob("seg-*.parquet"))))
    return files


def with_segment_files(
    root: Path, deployment: str, since: datetime | None, until: datetime | None, run: Callable[[list[str]], T]
) -> T:
    """Run ``run(files)`` (a DuckDB query) on the live segment files of a window. If one vanished between listing
    and reading (a compaction or a prune deleted it meanwhile), list again and retry: the new listing holds the
    same rows (a merged segment replaces its sources). Use it for any query over segment files."""
    duckdb = _duckdb()
    for attempt in range(_RETRIES):
        files = segment_files(root, deployment, since, until)
        try:
            return run(files)
        except duckdb.IOException:
            if attempt == _RETRIES - 1 or all(Path(f).exists() for f in files):
                raise  # not a vanished segment, or no end to it
            time.sleep(0.002 * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


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
    root: Path,
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
        lambda files: _read(files, since, until, variant, status, shadow, columns, limit, newest_first),
    )


def _read(
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
    con = _duckdb().connect()
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


def count_records(root: Path, deployment: str, since: datetime | None = None, until: datetime | None = None) -> int:
    def count(files: list[str]) -> int:
        if not files:
            return 0
        con = _duckdb().connect()
        try:
            where, params = _window(since, until)
            sql = f"SELECT count(*) FROM read_parquet(?, union_by_name=true) WHERE {' AND '.join(where)}"
            return int(con.execute(sql, [files, *params]).fetchone()[0])
        finally:
            con.close()

    return with_segment_files(root, deployment, since, until, count)
