"""Request-log segments on object storage: uploading a sealed segment, and compaction, retention and recovery of
the shipped ones (the remote counterparts of :mod:`mlpilot.telemetry.compaction`, with the same invariant).

*Upload* (:func:`upload`): a segment goes to the same relative path under the remote URL. On object stores whose PUT
is atomic (S3, GCS, Azure, memory…) it is written directly under its name; elsewhere (``file://``, SFTP…) to a
dot-file first, then moved. Its size is read back and must match: only then is it catalogued as remote and its
local copy deleted. A name is written once, so uploading it again (after a crash between the upload and the
deletion) writes the same bytes, and readers never read it twice (one entry per name).

*Compaction* (:func:`compact_remote`): the small segments of closed hours are downloaded into a temporary directory
under the local root, merged there by :func:`mlpilot.telemetry.compaction._merge` (the merged file names its
sources in its Parquet metadata), and the merged segment is uploaded — **the commit point**: from then on readers
leave its sources out (:meth:`SegmentStore.live`). The catalogue then replaces the sources with it in one
transaction, and the sources are deleted. A crash after the upload leaves sources next to their merged segment;
:func:`recover_remote` (run first by every compaction) finishes it. Excluded per deployment among the processes of
one host by a lock file; across hosts by the scheduler's leader lease (only the leader runs maintenance).

*Retention* (:func:`retain_remote`): whole hour partitions that ended before the cutoff are forgotten by the
catalogue, then their objects deleted.
"""

from __future__ import annotations

import contextlib
import shutil
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlpilot.errors import NotFound, Unavailable
from mlpilot.telemetry.compaction import (
    CompactionResult,
    RetentionResult,
    SegmentCatalog,
    _bins,
    _exclusive,
    _merge,
    _small,
    is_merged,
)
from mlpilot.telemetry.reqlog import ts_span
from mlpilot.telemetry.segments import RemoteObject, SegmentStore, is_segment, partition_dirs

if TYPE_CHECKING:
    from collections.abc import Iterator

_HOUR = timedelta(hours=1)
#: a dot-file of an upload (non-atomic backends) older than this is an upload that died; recovery deletes it
_STALE_TMP_S = 3600.0
_WORK = ".maintenance"  # under the local root: lock files and the temporary directories of remote compactions


# ---------------------------------------------------------------------------------------------- upload


def upload(store: SegmentStore, src: Path, relative: str) -> str:
    """Put the local segment ``src`` at ``relative`` (``<deployment>/dt=…/hour=…/<name>``) under the remote and
    check its size. Returns its URL. An object of that name and size already there is not uploaded again.

    Raises:
        Unavailable: the object store failed, or the stored size differs.
    """
    fs = store.fs
    key = store.path_of(relative)
    size = src.stat().st_size

    def stored() -> int:
        try:
            return int(fs.info(key)["size"])
        except FileNotFoundError:
            return -1

    if store.call(f"checking {relative}", stored) != size:
        if store.atomic_put:
            store.call(f"uploading {relative}", lambda: fs.put_file(str(src), key))
        else:
            parent, name = key.rsplit("/", 1)
            tmp = f"{parent}/.{name}.{uuid.uuid4().hex[:8]}.tmp"

            def put() -> None:
                fs.makedirs(parent, exist_ok=True)
                fs.put_file(str(src), tmp)
                fs.mv(tmp, key)

            store.call(f"uploading {relative}", put)
        got = store.call(f"verifying {relative}", stored)
        if got != size:
            raise Unavailable(f"object storage at {store.remote} holds {got} bytes of {relative}, {size} were sent")
    return store.url_of(key)


def segment_facts(metadata: Any, read_ts: Any = None) -> tuple[int, datetime, datetime]:
    """Rows and the earliest and latest ``ts`` of a segment from its Parquet footer (a merged segment's metadata,
    else the ``ts`` column's statistics; ``read_ts()`` — the ``ts`` column as a table — when there are none)."""
    meta = metadata.metadata or {}
    if b"mlpilot_min_ts" in meta:
        lo, hi = float(meta[b"mlpilot_min_ts"]), float(meta[b"mlpilot_max_ts"])
        return metadata.num_rows, _dt(lo), _dt(hi)
    lows, highs = [], []
    for i in range(metadata.num_row_groups):
        rg = metadata.row_group(i)
        for j in range(rg.num_columns):
            col = rg.column(j)
            if col.path_in_schema == "ts" and col.statistics is not None and col.statistics.has_min_max:
                lows.append(col.statistics.min)
                highs.append(col.statistics.max)
    if lows and all(isinstance(v, datetime) for v in (*lows, *highs)):
        return metadata.num_rows, _utc(min(lows)), _utc(max(highs))
    if read_ts is None or not metadata.num_rows:
        return metadata.num_rows, _dt(0.0), _dt(0.0)
    lo_s, hi_s = ts_span(read_ts())
    return metadata.num_rows, _dt(lo_s), _dt(hi_s)


def local_facts(path: Path) -> tuple[int, int, datetime, datetime]:
    """``(rows, bytes, min_ts, max_ts)`` of a local segment, for the catalogue."""
    import pyarrow.parquet as pq

    rows, lo, hi = segment_facts(pq.read_metadata(path), lambda: pq.read_table(path, columns=["ts"]))
    return rows, path.stat().st_size, lo, hi


def _dt(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)


# ---------------------------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _remote_lock(store: SegmentStore, deployment: str) -> Iterator[Path]:
    """The deployment's remote maintenance lock (a local file) and a fresh temporary directory under it."""
    work = store.local / _WORK
    work.mkdir(parents=True, exist_ok=True)
    with _exclusive(work, f"{deployment}.lock"):
        for stale in work.glob(f"tmp-{deployment}-*"):  # left by a run that died (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        tmp = work / f"tmp-{deployment}-{uuid.uuid4().hex[:8]}"
        try:
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _name(obj: RemoteObject) -> str:
    return obj.path.rsplit("/", 1)[-1]


def _age_s(info: dict[str, Any]) -> float:
    when = info.get("LastModified") or info.get("mtime") or info.get("created")
    if isinstance(when, datetime):
        return time.time() - when.timestamp()
    if isinstance(when, (int, float)):
        return time.time() - float(when)
    return 0.0


def _remove(store: SegmentStore, objs: Sequence[RemoteObject]) -> None:
    if objs:
        store.call(f"deleting {len(objs)} segment(s)", lambda: store.fs.rm([o.path for o in objs]))
        store.forget([o.url for o in objs])


def _catalogue(
    store: SegmentStore, catalog: SegmentCatalog, deployment: str, url: str, size: int, sources: list[str]
) -> None:
    rows, lo, hi = segment_facts(store.read_metadata(url))
    catalog.replace_segments(deployment, sources, url, rows, size, lo, hi)


# ---------------------------------------------------------------------------------------------- recovery


def recover_remote(
    store: SegmentStore, deployment: str, objs: list[RemoteObject], catalog: SegmentCatalog | None
) -> list[RemoteObject]:
    """Finish interrupted merges in one remote partition (sources still next to their merged segment: catalogue
    replayed, sources deleted) and delete dead uploads' dot-files. Returns the partition's segments left."""
    segments = [o for o in objs if is_segment(_name(o))]
    stale = [o for o in objs if not is_segment(_name(o))]
    if stale:
        infos = {o.path: store.call(f"reading {o.url}", lambda p=o.path: store.fs.info(p)) for o in stale}  # type: ignore[misc]
        _remove(store, [o for o in stale if _age_s(infos[o.path]) > _STALE_TMP_S])
    if len(segments) < 2 or not any(is_merged(_name(o)) for o in segments):
        return segments
    by_name = {_name(o): o for o in segments}
    gone: set[str] = set()
    for merged in [o for o in segments if is_merged(_name(o))]:
        if merged.url in gone:
            continue
        sources = store.sources(merged.url)
        present = [by_name[n] for n in sources if n in by_name and n not in gone]
        if not present:
            continue
        if catalog is not None:
            prefix = merged.url.rsplit("/", 1)[0]
            _catalogue(store, catalog, deployment, merged.url, merged.size, [f"{prefix}/{n}" for n in sources])
        _remove(store, present)
        gone.update(_name(o) for o in present)
    return [o for o in segments if _name(o) not in gone]


# ---------------------------------------------------------------------------------------------- compaction


def compact_remote(
    store: SegmentStore,
    deployment: str,
    cutoff: datetime,
    catalog: SegmentCatalog | None,
    min_rows: int,
    target_rows: int,
    missing_ok: bool,
) -> CompactionResult:
    """:func:`mlpilot.telemetry.compaction.compact` of the shipped segments (see the module docstring)."""
    totals = {"partitions": 0, "merged": 0, "written": 0, "rows": 0, "bytes_before": 0, "bytes_after": 0}
    recovered = 0
    with _remote_lock(store, deployment) as tmp:
        parts = store.remote_partitions(deployment, None, cutoff, temporary=True)
        if not parts and not missing_ok and not (store.local / deployment).is_dir():
            raise NotFound(f"deployment {deployment!r} has no request log under {store.remote}")
        for start in sorted(parts):
            before = len(parts[start])
            segments = recover_remote(store, deployment, parts[start], catalog)
            recovered += before - len(segments)
            if start + _HOUR > cutoff:
                continue  # not closed yet
            by_url = {o.url: o for o in segments}
            live = store.live({_name(o): o.url for o in segments})
            if len(live) < 2:
                continue
            merged_here = False
            for group in _bins(_small(live, min_rows, store.read_metadata), target_rows):
                rows, size_before, size_after = _merge_remote(
                    store, deployment, start, [by_url[u] for u in group], catalog, tmp
                )
                merged_here = True
                totals["merged"] += len(group)
                totals["written"] += 1
                totals["rows"] += rows
                totals["bytes_before"] += size_before
                totals["bytes_after"] += size_after
            totals["partitions"] += merged_here
    return CompactionResult(deployment, cutoff, recovered=recovered, **totals)


def _merge_remote(
    store: SegmentStore,
    deployment: str,
    start: datetime,
    sources: list[RemoteObject],
    catalog: SegmentCatalog | None,
    tmp: Path,
) -> tuple[int, int, int]:
    """Download ``sources``, merge them locally, upload the merged segment (the commit point), catalogue it in
    their place, delete them. Returns (rows, bytes before, bytes after)."""
    hour_dir = tmp / partition_dirs(start)
    hour_dir.mkdir(parents=True, exist_ok=True)
    local = []
    for o in sources:
        dest = hour_dir / _name(o)
        store.call(f"downloading {o.url}", lambda o=o, dest=dest: store.fs.get_file(o.path, str(dest)))  # type: ignore[misc]
        local.append(dest)
    rows, before, after, merged = _merge(deployment, hour_dir, local, None)
    url = upload(store, merged, f"{deployment}/{partition_dirs(start)}/{merged.name}")
    if catalog is not None:
        n, lo, hi = segment_facts(_read_local_metadata(merged))
        catalog.replace_segments(deployment, [o.url for o in sources], url, n, after, lo, hi)
    _remove(store, sources)
    merged.unlink()
    return rows, before, after


def _read_local_metadata(path: Path) -> Any:
    import pyarrow.parquet as pq

    return pq.read_metadata(path)


# ---------------------------------------------------------------------------------------------- retention


def retain_remote(
    store: SegmentStore,
    deployment: str,
    cutoff: datetime,
    catalog: SegmentCatalog | None,
    local: RetentionResult,
    local_hours: set[datetime],
    missing_ok: bool,
) -> RetentionResult:
    """:func:`mlpilot.telemetry.compaction.apply_retention` of the shipped partitions, added to what the local
    retention (``local``, of the hours ``local_hours``) deleted."""
    segments = rows = size = 0
    hours = set(local_hours)
    with _remote_lock(store, deployment):
        parts = store.remote_partitions(deployment, None, cutoff, temporary=True)
        if not parts and not local_hours and not missing_ok and not (store.local / deployment).is_dir():
            raise NotFound(f"deployment {deployment!r} has no request log under {store.remote}")
        for start in sorted(parts):
            if start + _HOUR > cutoff:
                continue
            objs = parts[start]
            segs = [o for o in objs if is_segment(_name(o))]
            for url in store.live({_name(o): o.url for o in segs}):
                with contextlib.suppress(OSError, Unavailable):
                    rows += store.read_metadata(url).num_rows
            if catalog is not None and segs:
                catalog.delete_segments([o.url for o in segs])
            _remove(store, objs)
            segments += len(segs)
            size += sum(o.size for o in segs)
            hours.add(start)
    return RetentionResult(
        deployment,
        cutoff,
        len(hours),
        local.segments + segments,
        local.rows + rows,
        local.bytes + size,
        local.recovered,
    )
