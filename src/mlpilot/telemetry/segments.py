"""Where a request log's segments are: the local directory the writers write to and, when the log is shipped to
object storage (``logs.remote``), an fsspec URL with the same layout (``<deployment>/dt=…/hour=…/seg-….parquet``).

:class:`SegmentStore` is what every reader takes (a plain ``Path`` still works: the local directory alone). It lists
the segments of a window as one set per hour partition — the local files (sealed but not shipped yet) and the
remote objects (shipped), one entry per file name (a name is written once, so a local file and an object of the
same name hold the same bytes; the local one is read) — and leaves out the sources of a merged segment that is
present (:func:`~mlpilot.telemetry.compaction.live_files`' rule, across both places). DuckDB reads the remote ones
through the store's fsspec filesystem, registered on its connection (:meth:`SegmentStore.connect`): no DuckDB
extension is loaded or downloaded.

Listings are never cached (other processes ship and compact meanwhile): a short window lists its hour prefixes
(one LIST each), a longer or open one lists the deployment's prefix recursively (1,000 keys per LIST; compacted
hours hold one or a few objects). Object-store failures raise ``Unavailable`` naming the URL.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

from mlpilot.blobs.remote import object_store_call
from mlpilot.errors import InvalidArgument, MissingExtra, Unavailable
from mlpilot.telemetry.compaction import is_merged, merged_sources

T = TypeVar("T")

_HOUR = timedelta(hours=1)
#: a window of at most this many hour partitions lists each partition's prefix; a longer one lists recursively
_LIST_HOURS = 6
#: remote objects whose (size, version) and merged sources are remembered (objects never change under a name)
_KEEP = 65_536
#: protocols whose single PUT (or completed multipart upload) is atomic: an object is never seen half-written
ATOMIC_PUT = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss", "r2", "memory"}
_EXTRAS = {"s3": "s3", "s3a": "s3"}


def is_segment(name: str) -> bool:
    """A sealed segment's file name (temporary files start with a dot)."""
    return name.startswith("seg-") and name.endswith(".parquet")


def hour_of(day: str, hour: str) -> datetime | None:
    """The start of a partition from its directory names (``dt=YYYY-MM-DD``, ``hour=HH``); None if not ours."""
    try:
        start = datetime.strptime(f"{day.removeprefix('dt=')} {hour.removeprefix('hour=')}", "%Y-%m-%d %H")
    except ValueError:
        return None
    return start.replace(tzinfo=timezone.utc)


def partition_dirs(start: datetime) -> str:
    """``dt=YYYY-MM-DD/hour=HH`` of the partition starting at ``start``."""
    return f"dt={start:%Y-%m-%d}/hour={start:%H}"


def _utc(t: datetime | None) -> datetime | None:
    """``t`` in UTC for pruning partitions, or None (no bound) when converting leaves the years ``datetime`` holds
    (year 1 or 9999 with an offset, a naive year-1 time): the query's own ``ts`` filter still applies."""
    if t is None:
        return None
    try:
        return t.astimezone(timezone.utc)
    except (OverflowError, ValueError):
        return None


@dataclass(frozen=True)
class RemoteObject:
    url: str  # with its protocol, as DuckDB is given it and reports it back (``filename``)
    path: str  # the filesystem's own path (no protocol)
    size: int
    version: str  # ETag, or the modification time: with the size, the key of cached aggregates


class SegmentStore:
    """The segments of a request log: ``local`` always (the writers' directory), ``remote`` when shipped.

    Args:
        local: the writers' directory (``logs.root``).
        remote: an fsspec URL sealed segments are shipped to (``s3://bucket/prefix``); empty: local only, exactly
            as before object storage existed.
        storage_options: passed to the fsspec filesystem (for S3: ``endpoint_url``, ``key``, ``secret``…).

    Raises:
        InvalidArgument: ``remote`` is not a URL.
    """

    def __init__(self, local: Path | str, remote: str = "", storage_options: Mapping[str, Any] | None = None) -> None:
        self.local = Path(local)
        self.remote = remote.rstrip("/")
        if self.remote and "://" not in self.remote:
            raise InvalidArgument(f"the request log's remote must be a URL (s3://bucket/prefix…), got {remote!r}")
        self.storage_options = dict(storage_options or {})
        self._fs: Any = None
        self._base = ""
        self._lock = threading.Lock()
        self._objects: OrderedDict[str, RemoteObject] = OrderedDict()
        self._sources: OrderedDict[str, tuple[str, ...]] = OrderedDict()

    def __repr__(self) -> str:
        return f"SegmentStore({str(self.local)!r}, {self.remote!r})"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_fs=None, _lock=None, _objects=OrderedDict(), _sources=OrderedDict())
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def key(self) -> tuple[str, str]:
        """Identifies the remote and its options (DuckDB connections with its filesystem are kept by it)."""
        return self.remote, json.dumps(self.storage_options, sort_keys=True, default=str)

    # ------------------------------------------------------------------------------------------ the filesystem

    @property
    def fs(self) -> Any:
        """The remote's fsspec filesystem (created on first use; listings never cached)."""
        if self._fs is None:
            with self._lock:
                if self._fs is None:
                    self._fs, self._base = _filesystem(self.remote, self.storage_options)
        return self._fs

    @property
    def base(self) -> str:
        """The remote's path in its filesystem (no protocol)."""
        _ = self.fs
        return self._base

    @property
    def atomic_put(self) -> bool:
        protocol = self.fs.protocol
        protocols = {protocol} if isinstance(protocol, str) else set(protocol)
        return bool(protocols & ATOMIC_PUT)

    def call(self, what: str, call: Callable[[], T]) -> T:
        """Run an object-store call; its failures become ``Unavailable`` naming the URL and what was being done."""
        return object_store_call(self.remote, what, call)

    def path_of(self, relative: str) -> str:
        """The filesystem path of ``<deployment>/dt=…/hour=…/<name>`` under the remote."""
        return f"{self.base}/{relative}"

    def url_of(self, path: str) -> str:
        return str(self.fs.unstrip_protocol(path))

    def connect(self) -> Any:
        """A new DuckDB connection that reads this store's segments (the remote's filesystem registered)."""
        from mlpilot.telemetry.query import _duckdb

        duckdb = _duckdb()
        if not self.remote:
            return duckdb.connect()
        # no extension may be installed or loaded behind our back (offline hosts): s3:// goes to our filesystem
        con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
        con.register_filesystem(self.fs)
        return con

    # ------------------------------------------------------------------------------------------ listing

    def files(self, deployment: str, since: datetime | None = None, until: datetime | None = None) -> list[str]:
        """The segments a query of ``[since, until]`` reads: local paths and remote URLs, oldest partition first,
        each row once (see the module docstring)."""
        lo, hi = _utc(since), _utc(until)
        lo = lo.replace(minute=0, second=0, microsecond=0) if lo else None
        # Local files first, then the remote: the shipper uploads before it deletes the local copy, so a segment
        # shipped in between is listed remotely, or locally under a path that is gone by the time it is read (the
        # caller lists again, see ``query.with_segment_files``) — never missed.
        local = {
            start: sorted(hour_dir.glob("seg-*.parquet"))
            for start, hour_dir in self._local_partitions(deployment, lo, hi)
        }
        remote = self.remote_partitions(deployment, lo, hi) if self.remote else {}
        out: list[str] = []
        for start in sorted(set(local) | set(remote)):
            by_name: dict[str, str] = {o.url.rsplit("/", 1)[-1]: o.url for o in remote.get(start, [])}
            by_name.update((f.name, str(f)) for f in local.get(start, []))
            out.extend(self.live(by_name))
        return out

    def live(self, by_name: Mapping[str, str]) -> list[str]:
        """The locations of one partition's segments (``name → path or URL``) a query reads: without the sources
        of a merged segment that is present."""
        if len(by_name) < 2 or not any(is_merged(n) for n in by_name):
            return [by_name[n] for n in sorted(by_name)]
        covered: set[str] = set()
        for name, where in by_name.items():
            if is_merged(name):
                covered.update(self.sources(where))
        return [by_name[n] for n in sorted(by_name) if n not in covered]

    def sources(self, where: str) -> tuple[str, ...]:
        """File names a merged segment replaces (local path or remote URL); cached (a name is written once)."""
        if "://" not in where:
            return merged_sources(Path(where))
        with self._lock:
            if where in self._sources:
                return self._sources[where]
        try:
            meta = self.read_metadata(where).metadata or {}
        except FileNotFoundError:
            return ()  # deleted meanwhile: it covers nothing any more
        found = tuple(json.loads(meta[b"mlpilot_sources"])) if b"mlpilot_sources" in meta else ()
        with self._lock:
            self._sources[where] = found
            while len(self._sources) > _KEEP:
                self._sources.popitem(last=False)
        return found

    def read_metadata(self, where: str) -> Any:
        """The Parquet footer of a segment (local path or remote URL)."""
        import pyarrow.parquet as pq

        if "://" not in where:
            return pq.read_metadata(where)
        fs = self.fs
        path = fs._strip_protocol(where)
        try:
            with fs.open(path, "rb") as f:
                return pq.read_metadata(f)
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise Unavailable(f"object storage at {self.remote} failed reading {where}: {exc}") from exc

    def stat(self, where: str) -> tuple[str, int, Any]:
        """``(location, size, version)`` of a listed segment: the key of its cached aggregates (``version`` is
        the modification time of a local file, the ETag or modification time of an object).

        Raises:
            FileNotFoundError: a local file that is gone.
        """
        if "://" not in where:
            import os

            st = os.stat(where)
            return where, st.st_size, st.st_mtime_ns
        with self._lock:
            obj = self._objects.get(where)
        if obj is None:
            info = self.call(f"reading the size of {where}", lambda: self.fs.info(self.fs._strip_protocol(where)))
            obj = self._remember(info)
        return where, obj.size, obj.version

    def exists(self, where: str) -> bool:
        if "://" not in where:
            return Path(where).exists()
        return bool(self.call(f"checking {where}", lambda: self.fs.exists(self.fs._strip_protocol(where))))

    def _local_partitions(self, deployment: str, lo: datetime | None, hi: datetime | None) -> Iterator[Any]:
        base = self.local / deployment
        if not base.is_dir():
            return
        for day_dir in sorted(base.glob("dt=*")):
            for hour_dir in sorted(day_dir.glob("hour=*")):
                start = hour_of(day_dir.name, hour_dir.name)
                if start is None or (lo and start + _HOUR <= lo) or (hi and start > hi):
                    continue  # partition pruning: this hour cannot hold matching rows
                yield start, hour_dir

    def remote_partitions(
        self, deployment: str, lo: datetime | None = None, hi: datetime | None = None, *, temporary: bool = False
    ) -> dict[datetime, list[RemoteObject]]:
        """The remote segments of ``deployment`` by hour partition, pruned to ``[lo, hi]`` (``temporary``: also
        the dot-files of uploads in flight, for recovery)."""
        prefix = self.path_of(deployment)
        if lo is not None and hi is not None and hi - lo <= _LIST_HOURS * _HOUR:
            entries = []
            start = lo
            while start <= hi:
                path = f"{prefix}/{partition_dirs(start)}"
                entries.extend(self.call(f"listing {path}", lambda p=path: _ls(self.fs, p)))  # type: ignore[misc]
                start += _HOUR
        else:
            entries = self.call(f"listing {prefix}", lambda: _find(self.fs, prefix))
        out: dict[datetime, list[RemoteObject]] = {}
        for info in entries:
            parts = str(info["name"]).rsplit("/", 3)
            if len(parts) < 4 or not (is_segment(parts[3]) or (temporary and parts[3].startswith(".seg-"))):
                continue
            hour = hour_of(parts[1], parts[2])
            if hour is None or (lo and hour + _HOUR <= lo) or (hi and hour > hi):
                continue
            out.setdefault(hour, []).append(self._remember(info))
        for objs in out.values():
            objs.sort(key=lambda o: o.url)
        return out

    def _remember(self, info: Mapping[str, Any]) -> RemoteObject:
        path = str(info["name"])
        version = info.get("ETag") or info.get("etag") or info.get("LastModified") or info.get("mtime") or ""
        obj = RemoteObject(self.url_of(path), path, int(info.get("size") or 0), str(version))
        with self._lock:
            self._objects[obj.url] = obj
            self._objects.move_to_end(obj.url)
            while len(self._objects) > _KEEP:
                self._objects.popitem(last=False)
        return obj

    def forget(self, urls: list[str]) -> None:
        """Drop what is remembered of deleted objects."""
        with self._lock:
            for u in urls:
                self._objects.pop(u, None)


#: what readers and maintenance accept: a local directory, or a store (local and remote)
LogRoot = Path | SegmentStore


def as_store(root: LogRoot | str) -> SegmentStore:
    """A :class:`SegmentStore` for ``root`` (a directory means the local segments alone)."""
    return root if isinstance(root, SegmentStore) else SegmentStore(Path(root))


def _filesystem(url: str, storage_options: Mapping[str, Any]) -> tuple[Any, str]:
    import fsspec

    protocol = url.split("://", 1)[0]
    options = {"use_listings_cache": False, **storage_options}  # other processes ship and compact meanwhile
    try:
        fs, path = fsspec.core.url_to_fs(url, **options)
    except ImportError as exc:
        extra = _EXTRAS.get(protocol)
        if extra:
            raise MissingExtra(f"the request log's remote {url}", extra) from exc
        raise InvalidArgument(
            f"the request log's remote {url!r} needs a filesystem that is not installed: {exc}"
        ) from exc
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(f"the request log's remote {url!r} is not a usable fsspec URL: {exc}") from exc
    return fs, str(path).rstrip("/")


def _ls(fs: Any, path: str) -> list[dict[str, Any]]:
    try:
        return [e for e in fs.ls(path, detail=True, refresh=True) if e.get("type") != "directory"]
    except FileNotFoundError:
        return []


def _find(fs: Any, path: str) -> list[dict[str, Any]]:
    try:
        found = fs.find(path, detail=True)
    except FileNotFoundError:
        return []
    return [e for e in found.values() if e.get("type") != "directory"]
