"""Retention and compaction of request-log segments.

The writer leaves a segment per deployment, hour and flush — under steady traffic one a second, most of them
small. :func:`compact` merges the small segments of closed hours into few large ones; :func:`apply_retention`
deletes whole hour partitions older than a cutoff. Both keep the store's catalogue (``log_segments``) in step
through :class:`SegmentCatalog`, a protocol the control plane's store satisfies — this shared package never
imports the control plane.

Crash safety of a merge. Queries read the files on disk, so the invariant is about files: at every instant the
segments a query reads hold every logged row exactly once. A merge of sources ``S`` in one partition is:

1. write the rows of ``S`` to ``.seg-<ns>-<pid>-m<digest>.parquet.tmp``, with the names of ``S`` in the Parquet
   key-value metadata (``mlpilot_sources``); fsync it. Readers ignore dot-files, so nothing changes for them.
2. rename it to ``seg-<ns>-<pid>-m<digest>.parquet``; fsync the directory. **The commit point.**
3. one store transaction: catalogue the merged segment, forget ``S``.
4. delete ``S``; fsync the directory.

Between 2 and 4 the rows exist twice on disk. Readers resolve it: :func:`live_files` (used by every query in
:mod:`mlpilot.telemetry.query`) leaves out the files named as sources by a merged segment of the same partition,
so the rows are read once, from the merged file (complete: it was written and fsynced before the rename). The
alternative — readers dropping the merged file until its sources are gone — would need the sources to be deleted
before the merged file becomes visible, a window in which rows are lost. Recovery (:func:`recover`, run first by
every :func:`compact` and :func:`apply_retention`) finishes interrupted merges: sources still next to their merged
segment are deleted and the catalogue replacement is replayed (idempotent), and temporary files of dead
processes are removed. A crash before 2 leaves only an invisible temporary file; after 2, recovery completes the
merge. Compactions and retention of one deployment exclude each other with a lock file (``.maintenance.lock``,
``flock``), so two merged segments never claim the same source.

Only closed hours are compacted: by default those that ended more than :data:`CLOSE_GRACE` ago, so records
that arrive late for an hour (the writer's last flush of the hour) have landed; a segment that lands later still
is simply another segment of the partition (the next compaction merges it). Retention works on whole hour
partitions: an hour is deleted once it ended before the cutoff.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from mlpilot.errors import Conflict, InvalidArgument, NotFound
from mlpilot.telemetry.columns import COMPRESSION, COMPRESSION_LEVEL, dictionary_columns
from mlpilot.telemetry.reqlog import SCHEMA_VERSION, pid_alive, pid_of, ts_span

if TYPE_CHECKING:
    from mlpilot.telemetry.segments import LogRoot

F = TypeVar("F")
SOURCES_KEY = b"mlpilot_sources"
CLOSE_GRACE = timedelta(minutes=10)
DEFAULT_MIN_ROWS = 50_000
DEFAULT_TARGET_ROWS = 1_000_000
_ROW_GROUP = 131_072
_HOUR = timedelta(hours=1)
_MERGED = re.compile(r"^seg-\d+-\d+-m[0-9a-f]+\.parquet$")
_LOCK = ".maintenance.lock"


class SegmentCatalog(Protocol):
    """Where segments are catalogued (the control plane's store implements it)."""

    def replace_segments(
        self,
        deployment: str,
        old_paths: Sequence[str],
        path: str,
        rows: int,
        size: int,
        min_ts: datetime,
        max_ts: datetime,
    ) -> None:
        """Catalogue ``path`` and forget ``old_paths`` in one transaction (idempotent)."""

    def delete_segments(self, paths: Sequence[str]) -> int:
        """Forget ``paths`` in one transaction."""


@dataclass(frozen=True)
class CompactionResult:
    deployment: str
    cutoff: datetime
    partitions: int = 0  # partitions in which segments were merged
    merged: int = 0  # source segments merged (and deleted)
    written: int = 0  # merged segments written
    rows: int = 0  # rows in the merged segments
    bytes_before: int = 0
    bytes_after: int = 0
    recovered: int = 0  # files of interrupted compactions cleaned up first


@dataclass(frozen=True)
class RetentionResult:
    deployment: str
    cutoff: datetime
    partitions: int = 0  # hour partitions deleted
    segments: int = 0
    rows: int = 0
    bytes: int = 0
    recovered: int = 0


# ---------------------------------------------------------------------------------------------- readers' view


def is_merged(name: str) -> bool:
    """Whether a segment file name is a merged segment's (``seg-<ns>-<pid>-m<digest>.parquet``)."""
    return _MERGED.match(name) is not None


@lru_cache(maxsize=4096)
def _sources_cached(path: str) -> tuple[str, ...]:
    import pyarrow.parquet as pq

    meta = pq.read_metadata(path).metadata or {}
    return tuple(json.loads(meta[SOURCES_KEY])) if SOURCES_KEY in meta else ()


def merged_sources(path: Path) -> tuple[str, ...]:
    """File names of the segments a merged segment replaces (its Parquet key-value metadata). A merged file is
    never rewritten under the same name, so the answer is cached."""
    try:
        return _sources_cached(str(path))
    except FileNotFoundError:
        return ()  # deleted meanwhile (retention): it covers nothing any more


def live_files(files: Sequence[Path]) -> list[Path]:
    """The segment files of one partition that a query reads: without the sources of a merged segment that is
    present (a compaction that was interrupted, or is finishing, between its commit and deleting its sources)."""
    if len(files) < 2 or not any(is_merged(f.name) for f in files):
        return list(files)
    covered: set[str] = set()
    for f in files:
        if is_merged(f.name):
            covered.update(merged_sources(f))
    return [f for f in files if f.name not in covered]


# ---------------------------------------------------------------------------------------------- helpers


def _check_name(deployment: str) -> None:
    if not deployment or deployment.startswith(".") or "/" in deployment or "\\" in deployment:
        raise InvalidArgument(f"bad deployment name {deployment!r}")


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)


def resolve_cutoff(older_than: datetime | timedelta, now: datetime) -> datetime:
    """A cutoff from an age (``timedelta``, before ``now``) or a time (naive = UTC); never in the future.

    Raises:
        InvalidArgument: a negative age or a cutoff after ``now``.
    """
    if isinstance(older_than, timedelta):
        if older_than < timedelta(0):
            raise InvalidArgument(f"the age must not be negative, got {older_than}")
        return now - older_than
    cutoff = _utc(older_than)
    if cutoff > now:
        raise InvalidArgument(f"the cutoff {cutoff.isoformat()} is in the future (now is {now.isoformat()})")
    return cutoff


def _partitions(base: Path) -> Iterator[tuple[datetime, Path]]:
    """``(hour start, directory)`` of every hour partition of a deployment, oldest first."""
    for day_dir in sorted(base.glob("dt=*")):
        for hour_dir in sorted(day_dir.glob("hour=*")):
            try:
                start = datetime.strptime(f"{day_dir.name[3:]} {hour_dir.name[5:]}", "%Y-%m-%d %H")
            except ValueError:
                continue  # not ours
            yield start.replace(tzinfo=timezone.utc), hour_dir


def _segments(hour_dir: Path) -> list[Path]:
    return sorted(hour_dir.glob("seg-*.parquet"))


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _exclusive(base: Path, lock: str = _LOCK) -> Iterator[None]:
    """One maintenance run (compaction or retention) per deployment at a time, across processes."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no flock; runs are not excluded there
        yield
        return
    with open(base / lock, "a+b") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise Conflict(f"another compaction or prune of {base.name!r} is running; try again later") from exc
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _base(root: Path, deployment: str, missing_ok: bool) -> Path | None:
    _check_name(deployment)
    base = Path(root) / deployment
    if base.is_dir():
        return base
    if missing_ok:
        return None
    raise NotFound(f"deployment {deployment!r} has no request log under {root}")


def _dt(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


# ---------------------------------------------------------------------------------------------- recovery


def recover(root: Path, deployment: str, *, catalog: SegmentCatalog | None = None) -> int:
    """Finish what interrupted compactions left (see the module docstring). Returns the files removed."""
    base = _base(root, deployment, missing_ok=True)
    if base is None:
        return 0
    return sum(_recover_partition(deployment, hour_dir, catalog) for _, hour_dir in _partitions(base))


def _recover_partition(deployment: str, hour_dir: Path, catalog: SegmentCatalog | None) -> int:
    removed = 0
    for tmp in hour_dir.glob(".seg-*.tmp"):
        pid = pid_of(tmp.name, 2)
        if pid != os.getpid() and not pid_alive(pid):  # a dead writer's or compactor's half-written file
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed += 1
    files = _segments(hour_dir)
    if len(files) < 2:
        return removed
    for merged in (f for f in files if is_merged(f.name)):
        sources = [hour_dir / name for name in merged_sources(merged)]
        present = [s for s in sources if s.exists()]
        if not present:
            continue
        if catalog is not None:
            _catalogue(catalog, deployment, merged, [str(s) for s in sources])
        _remove_sources(hour_dir, present)
        removed += len(present)
    return removed


# ---------------------------------------------------------------------------------------------- compaction


def compact(
    root: LogRoot,
    deployment: str,
    *,
    catalog: SegmentCatalog | None = None,
    older_than: datetime | timedelta | None = None,
    min_rows: int = DEFAULT_MIN_ROWS,
    target_rows: int = DEFAULT_TARGET_ROWS,
    now: datetime | None = None,
    missing_ok: bool = False,
) -> CompactionResult:
    """Merge the small segments (fewer than ``min_rows`` rows) of each closed hour partition of ``deployment``
    into segments of at most ``target_rows`` rows.

    Args:
        root: the log's directory, or a :class:`~mlpilot.telemetry.segments.SegmentStore`; with a remote, the
            shipped segments are compacted on object storage (:mod:`mlpilot.telemetry.remote`).
        older_than: only hours that ended before this time (or this long ago); default ``CLOSE_GRACE`` ago.
        catalog: kept in step (merged segments catalogued, their sources forgotten); None: files only.
        missing_ok: a deployment without a log directory is nothing to do instead of ``NotFound``.

    Raises:
        NotFound: no request log for ``deployment`` (unless ``missing_ok``).
        InvalidArgument: a bad name, a negative age, a cutoff in the future, or bad row bounds.
        Conflict: another compaction or prune of the deployment is running.
    """
    now = _utc(now) if now is not None else datetime.now(timezone.utc)
    cutoff = resolve_cutoff(older_than if older_than is not None else CLOSE_GRACE, now)
    if min_rows < 2:
        raise InvalidArgument(f"min_rows must be at least 2, got {min_rows}")
    if target_rows < min_rows:
        raise InvalidArgument(f"target_rows ({target_rows}) must not be below min_rows ({min_rows})")
    from mlpilot.telemetry.segments import as_store

    store = as_store(root)
    if store.remote:
        from mlpilot.telemetry.remote import compact_remote

        _check_name(deployment)
        return compact_remote(store, deployment, cutoff, catalog, min_rows, target_rows, missing_ok)
    root = store.local
    base = _base(root, deployment, missing_ok)
    if base is None:
        return CompactionResult(deployment, cutoff)
    totals = {"partitions": 0, "merged": 0, "written": 0, "rows": 0, "bytes_before": 0, "bytes_after": 0}
    with _exclusive(base):
        recovered = recover(root, deployment, catalog=catalog)
        for start, hour_dir in _partitions(base):
            if start + _HOUR > cutoff:
                continue  # not closed yet
            files = live_files(_segments(hour_dir))
            if len(files) < 2:
                continue
            merged_here = False
            for group in _bins(_small(files, min_rows), target_rows):
                rows, before, after, _ = _merge(deployment, hour_dir, group, catalog)
                merged_here = True
                totals["merged"] += len(group)
                totals["written"] += 1
                totals["rows"] += rows
                totals["bytes_before"] += before
                totals["bytes_after"] += after
            totals["partitions"] += merged_here
    return CompactionResult(deployment, cutoff, recovered=recovered, **totals)


def _small(files: Sequence[F], min_rows: int, read_metadata: Any = None) -> list[tuple[F, int, Any]]:
    """``(file, rows, schema)`` of the segments with fewer than ``min_rows`` rows (from their footers)."""
    import pyarrow.parquet as pq

    small = []
    for f in files:
        meta = (read_metadata or pq.read_metadata)(f)
        if meta.num_rows < min_rows:
            small.append((f, meta.num_rows, _plain(meta.schema.to_arrow_schema())))
    return small


def _bins(small: list[tuple[F, int, Any]], target_rows: int) -> Iterator[list[F]]:
    """Consecutive runs of segments whose rows add up to at most ``target_rows`` and whose columns can be
    unified (a column whose type changed incompatibly starts a new run); runs of one segment are left alone."""
    import pyarrow as pa

    run: list[F] = []
    rows = 0
    schema: Any = None
    for f, n, s in small:
        unified = None
        if run and rows + n <= target_rows:
            with contextlib.suppress(pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                unified = pa.unify_schemas([schema, s], promote_options="permissive")
        if unified is None:
            if len(run) > 1:
                yield run
            run, rows, schema = [], 0, s
        else:
            schema = unified
        run.append(f)
        rows += n
    if len(run) > 1:
        yield run


def _merge(
    deployment: str, hour_dir: Path, sources: list[Path], catalog: SegmentCatalog | None
) -> tuple[int, int, int, Path]:
    """Steps 1-4 of the module docstring for one run of ``sources``. Returns (rows, bytes before, bytes after, the
    merged file)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = [s.name for s in sources]
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
    name = f"seg-{time.time_ns()}-{os.getpid()}-m{digest}.parquet"
    tmp, final = hour_dir / f".{name}.tmp", hour_dir / name
    before = sum(s.stat().st_size for s in sources)
    schema = pa.unify_schemas([_plain(pq.read_schema(s)) for s in sources], promote_options="permissive")
    rows = 0
    lo, hi = float("inf"), float("-inf")
    meta = {"mlpilot_schema_version": str(SCHEMA_VERSION), SOURCES_KEY.decode(): json.dumps(names)}
    try:
        # Streamed: at most one row group (plus one source) in memory, whatever target_rows is.
        with pq.ParquetWriter(
            tmp,
            schema.with_metadata(meta),
            compression=COMPRESSION,
            compression_level=COMPRESSION_LEVEL,
            use_dictionary=dictionary_columns(schema),
        ) as writer:
            buffered: list[Any] = []
            held = 0
            for i, s in enumerate(sources):
                table = _conform(pq.read_table(s), schema)
                if table.num_rows:
                    t_lo, t_hi = ts_span(table)
                    lo, hi = min(lo, t_lo), max(hi, t_hi)
                buffered.append(table)
                held += table.num_rows
                if held >= _ROW_GROUP or i == len(sources) - 1:
                    writer.write_table(pa.concat_tables(buffered), row_group_size=_ROW_GROUP)
                    rows += held
                    buffered, held = [], 0
            writer.add_key_value_metadata({"mlpilot_min_ts": repr(lo), "mlpilot_max_ts": repr(hi)})
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        _publish(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if catalog is not None:
        _catalogue(catalog, deployment, final, [str(s) for s in sources])
    _remove_sources(hour_dir, sources)
    return rows, before, final.stat().st_size, final


def _plain(schema: Any) -> Any:
    """``schema`` without metadata and with dictionary columns as their values' type: the writer's constant
    columns are dictionary arrays (older segments: plain strings); the merged file stores values, still with
    dictionary pages in Parquet, so any mix of both merges."""
    import pyarrow as pa

    fields = [pa.field(f.name, f.type.value_type) if pa.types.is_dictionary(f.type) else f for f in schema]
    return pa.schema(fields)


def _conform(table: Any, schema: Any) -> Any:
    """``table`` with exactly the columns and types of ``schema`` (missing columns as nulls)."""
    import pyarrow as pa

    cols = []
    for field in schema:
        if field.name in table.column_names:
            col = table.column(field.name)
            cols.append(col if col.type == field.type else col.cast(field.type))
        else:
            cols.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(cols, schema=schema)


def _publish(tmp: Path, final: Path) -> None:
    """Step 2: the commit point — from here on readers read the merged file instead of its sources."""
    os.replace(tmp, final)
    _fsync_dir(final.parent)


def _catalogue(catalog: SegmentCatalog, deployment: str, merged: Path, sources: list[str]) -> None:
    """Step 3: one transaction — the merged segment in, its sources out."""
    import pyarrow.parquet as pq

    md = pq.read_metadata(merged)
    meta = md.metadata or {}
    lo = float(meta.get(b"mlpilot_min_ts", b"0"))
    hi = float(meta.get(b"mlpilot_max_ts", b"0"))
    catalog.replace_segments(deployment, sources, str(merged), md.num_rows, merged.stat().st_size, _dt(lo), _dt(hi))


def _remove_sources(hour_dir: Path, sources: Sequence[Path]) -> None:
    """Step 4."""
    for s in sources:
        with contextlib.suppress(FileNotFoundError):
            s.unlink()
    _fsync_dir(hour_dir)


# ---------------------------------------------------------------------------------------------- retention


def apply_retention(
    root: LogRoot,
    deployment: str,
    *,
    older_than: datetime | timedelta,
    catalog: SegmentCatalog | None = None,
    now: datetime | None = None,
    missing_ok: bool = False,
) -> RetentionResult:
    """Delete the hour partitions of ``deployment`` that ended before ``older_than`` (a time, or an age before
    now), with their catalogue rows — forgotten first, so a crash leaves uncatalogued old files (deleted by the
    next run), never catalogue rows without files. With a :class:`~mlpilot.telemetry.segments.SegmentStore` that
    has a remote, the shipped partitions are deleted on object storage too (and local segments not shipped yet).

    Raises:
        NotFound: no request log for ``deployment`` (unless ``missing_ok``).
        InvalidArgument: a bad name, a negative age or a cutoff in the future.
        Conflict: another compaction or prune of the deployment is running.
    """
    import pyarrow.parquet as pq

    now = _utc(now) if now is not None else datetime.now(timezone.utc)
    cutoff = resolve_cutoff(older_than, now)
    from mlpilot.telemetry.segments import as_store

    store = as_store(root)
    if store.remote:
        from mlpilot.telemetry.remote import retain_remote

        _check_name(deployment)
        hours = {start for start, _ in _partitions(store.local / deployment) if start + _HOUR <= cutoff}
        local = apply_retention(store.local, deployment, older_than=cutoff, catalog=catalog, now=now, missing_ok=True)
        return retain_remote(store, deployment, cutoff, catalog, local, hours, missing_ok)
    root = store.local
    base = _base(root, deployment, missing_ok)
    if base is None:
        return RetentionResult(deployment, cutoff)
    partitions = segments = rows = size = 0
    with _exclusive(base):
        recovered = recover(root, deployment, catalog=catalog)
        for start, hour_dir in _partitions(base):
            if start + _HOUR > cutoff:
                continue
            files = _segments(hour_dir)
            for f in live_files(files):
                with contextlib.suppress(OSError):
                    rows += pq.read_metadata(f).num_rows
            if catalog is not None and files:
                catalog.delete_segments([str(f) for f in files])
            for f in files:
                with contextlib.suppress(FileNotFoundError):
                    size += f.stat().st_size
                    f.unlink()
                    segments += 1
            _recover_partition(deployment, hour_dir, None)  # dead processes' temporary files
            for d in (hour_dir, hour_dir.parent):
                with contextlib.suppress(OSError):
                    d.rmdir()  # only when empty (a live writer's temporary file keeps it)
            partitions += 1
    return RetentionResult(deployment, cutoff, partitions, segments, rows, size, recovered)


def maintain(
    root: LogRoot,
    deployment: str,
    *,
    catalog: SegmentCatalog | None = None,
    retention_days: float = 0.0,
    compact_below_rows: int = DEFAULT_MIN_ROWS,
    now: datetime | None = None,
) -> tuple[RetentionResult | None, CompactionResult]:
    """Retention (when ``retention_days`` > 0), then compaction of the closed hours — what a periodic job runs
    with the ``MLPILOT_LOGS__RETENTION_DAYS`` and ``…__COMPACT_BELOW_ROWS`` settings."""
    kept = None
    if retention_days > 0:
        kept = apply_retention(
            root, deployment, older_than=timedelta(days=retention_days), catalog=catalog, now=now, missing_ok=True
        )
    merged = compact(
        root,
        deployment,
        catalog=catalog,
        min_rows=compact_below_rows,
        target_rows=max(DEFAULT_TARGET_ROWS, compact_below_rows),
        now=now,
        missing_ok=True,
    )
    return kept, merged
