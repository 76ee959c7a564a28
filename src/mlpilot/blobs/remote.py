"""Content-addressed blobs on any fsspec URL (``s3://bucket/prefix``, ``memory://``, ``file://``…), read through a
local cache.

* **Writes** stream into a temporary file of the local cache (hashed, size-limited, fsynced: the same code as
  :class:`~mlpilot.blobs.local.BlobStore`), are uploaded to a temporary object ``<url>/.incoming/<uuid>`` and then
  moved under their digest key ``<url>/sha256/ab/cdef…``: a digest key never names a partial object. A digest
  already stored (same size) is not uploaded again, so a put is idempotent and concurrent puts of equal content
  are harmless.
* **Reads** download into the cache (``<cache_dir>/sha256/ab/cdef…``) while hashing, and commit the file only when
  its bytes hash to the digest; a cached blob is hashed again on every ``open_verified``, and a corrupt cached
  copy is dropped and downloaded again. A corrupt remote object raises ``IntegrityError`` and leaves nothing in
  the cache. ``open_verified`` returns a :class:`VerifiedBlob` with a local path, so flavors load unchanged.
* **The cache is bounded** (``cache_max_bytes``): after a download or a put the least recently used blobs are
  removed, except those used within the last minute (a caller may be about to open the path it was given).

Memory stays bounded whatever the blob's size: uploads send ``_UPLOAD_BLOCK`` parts, downloads read
``_DOWNLOAD_READ`` ranges. Failures of the object store (unreachable endpoint, missing bucket, refused
credentials) raise ``Unavailable`` naming the URL; refused storage options raise ``InvalidArgument``; a missing
extra (``s3fs``) raises ``MissingExtra``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from mlpilot.blobs.local import _CHUNK, _TOKEN, BlobStore, VerifiedBlob, corrupt_error, digest_key
from mlpilot.errors import IntegrityError, InvalidArgument, MissingExtra, MlpilotError, NotFound, Unavailable

log = logging.getLogger("mlpilot.blobs")

T = TypeVar("T")


def object_store_call(url: str, what: str, call: Callable[[], T]) -> T:
    """Run a call on the object store at ``url``; its failures become ``Unavailable`` naming the URL and what was
    being done (``InvalidArgument`` when the filesystem refused its storage options)."""
    try:
        return call()
    except MlpilotError:
        raise
    except TypeError as exc:  # the filesystem refused an option (raised on its first call)
        raise InvalidArgument(f"the storage options of {url} were refused: {exc}") from exc
    except Exception as exc:
        raise Unavailable(f"object storage at {url} failed while {what}: {type(exc).__name__}: {exc}") from exc


#: upload part size: S3's smallest multipart part (s3fs holds about three copies of a part while sending it).
_UPLOAD_BLOCK = 5 * _CHUNK
#: download read size: each read is one ranged GET (no read-ahead cache, which could grow with the object).
_DOWNLOAD_READ = 4 * _CHUNK
#: a cached blob used this recently is never evicted (its path may just have been handed to a caller).
_EVICT_GRACE_S = 60.0
#: object stores have no directories to create (creating one may create a bucket).
_OBJECT_STORES = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss", "r2", "memory"}
_EXTRAS = {"s3": "s3", "s3a": "s3"}


def _not_installed(url: str, exc: ImportError) -> MlpilotError:
    extra = _EXTRAS.get(url.split("://", 1)[0])
    if extra:
        return MissingExtra(f"the artifact root {url}", extra)
    return InvalidArgument(f"artifact root {url!r} needs a filesystem that is not installed: {exc}")


def check_url(url: str) -> None:
    """Check, without connecting, that this process can open ``url``'s scheme (``mlpilot up`` does it first).

    Raises:
        MissingExtra: the scheme's mlpilot extra is not installed (``s3://`` without ``mlpilot[s3]``).
        InvalidArgument: an unknown scheme, or one whose fsspec implementation is missing (the message names it).
    """
    protocol = url.split("://", 1)[0]
    try:
        import fsspec

        fsspec.get_filesystem_class(protocol)
    except ImportError as exc:
        raise _not_installed(url, exc) from exc
    except ValueError as exc:
        raise InvalidArgument(f"artifact root {url!r}: unknown scheme {protocol!r} ({exc})") from exc


def _filesystem(url: str, storage_options: Mapping[str, Any]) -> tuple[Any, str]:
    try:
        import fsspec

        fs, path = fsspec.core.url_to_fs(url, **storage_options)
    except ImportError as exc:
        raise _not_installed(url, exc) from exc
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(f"artifact root {url!r} is not a usable fsspec URL: {exc}") from exc
    return fs, str(path).rstrip("/")


class FsspecBlobStore(BlobStore):
    """Blobs under an fsspec ``url``, by digest, with a local read-through cache.

    Args:
        url: where the blobs live, e.g. ``s3://bucket/mlpilot/artifacts`` (the bucket must exist).
        cache_dir: local directory of the read-through cache (created on first use); may be shared by stores.
        max_bytes: largest blob accepted; bigger input raises ``InvalidArgument`` and stores nothing.
        cache_max_bytes: the cache's size bound in bytes (least recently used blobs go first); ``None``: unbounded.
        storage_options: passed to the fsspec filesystem (for S3: ``endpoint_url``, ``key``, ``secret``,
            ``client_kwargs``…).
    """

    def __init__(
        self,
        url: str,
        cache_dir: Path | str,
        *,
        max_bytes: int = 2 * 1024**3,
        cache_max_bytes: int | None = 10 * 1024**3,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(cache_dir, max_bytes)
        self.url = url.rstrip("/")
        self.cache_max_bytes = cache_max_bytes
        self.storage_options = dict(storage_options or {})
        self.fs, self._base = _filesystem(self.url, self.storage_options)
        protocols = {self.fs.protocol} if isinstance(self.fs.protocol, str) else set(self.fs.protocol)
        self._has_dirs = not (protocols & _OBJECT_STORES)
        self._fetching: dict[str, threading.Lock] = {}
        self._fetching_guard = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (executors ship the store to replicas): the filesystem is rebuilt, the locks are new."""
        state = dict(self.__dict__)
        for name in ("fs", "_fetching", "_fetching_guard"):
            state.pop(name)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.fs, _ = _filesystem(self.url, self.storage_options)
        self._fetching = {}
        self._fetching_guard = threading.Lock()

    @property
    def location(self) -> str:
        return self.url

    def _key(self, digest: str) -> str:
        return f"{self._base}/{digest_key(digest)}"

    def _remote(self, what: str, call: Callable[[], T]) -> T:
        return object_store_call(self.url, what, call)

    # ---------------------------------------------------------------------------------------------- writes

    def _commit(self, tmp: Path, digest: str) -> Path:
        key = self._key(digest)
        size = tmp.stat().st_size
        if self._remote_size(key) != size:  # absent, or a truncated object left by a broken store: (re)upload
            self._upload(tmp, key)
        dest = super()._commit(tmp, digest)
        self._evict(keep=dest)
        return dest

    def _remote_size(self, key: str) -> int | None:
        def info() -> int | None:
            self.fs.invalidate_cache(key)  # another process may have written it since a listing was cached
            try:
                return int(self.fs.info(key)["size"])
            except FileNotFoundError:
                return None

        return self._remote("reading an object's size", info)

    def _upload(self, tmp: Path, key: str) -> None:
        part = f"{self._base}/.incoming/{uuid.uuid4().hex}"

        def upload() -> None:
            if self._has_dirs:
                self.fs.makedirs(self.fs._parent(part), exist_ok=True)
                self.fs.makedirs(self.fs._parent(key), exist_ok=True)
            out = self.fs.open(part, "wb", block_size=_UPLOAD_BLOCK)
            try:
                with open(tmp, "rb") as src:
                    for chunk in iter(lambda: src.read(_CHUNK), b""):
                        out.write(chunk)
            except BaseException:
                discard = getattr(out, "discard", None)  # aborts a multipart upload instead of completing it
                if callable(discard):
                    discard()
                else:
                    out.close()
                raise
            out.close()
            self.fs.mv(part, key)

        try:
            self._remote("uploading a blob", upload)
        except BaseException:
            with contextlib.suppress(Exception):
                if self.fs.exists(part):
                    self.fs.rm(part)
            raise

    # ---------------------------------------------------------------------------------------------- reads

    def exists(self, digest: str) -> bool:
        key = self._key(digest)

        def exists() -> bool:
            self.fs.invalidate_cache(key)
            return bool(self.fs.exists(key))

        return self._remote("checking a blob", exists)

    def open_verified(self, digest: str) -> VerifiedBlob:
        """The blob's local (cached) path after checking its bytes hash to ``digest``.

        Raises:
            NotFound: no blob with that digest in the object store.
            IntegrityError: the remote bytes do not match (corruption or tampering); nothing is cached or loaded.
            Unavailable: the object store failed.
        """
        path = self._path(digest)
        with self._fetch_lock(digest):  # one download per digest at a time; the others then read the cache
            if path.is_file():
                try:
                    blob = super().open_verified(digest)
                except NotFound:  # evicted meanwhile: download again
                    pass
                except IntegrityError as exc:  # a corrupt cached copy: drop it, the remote one is checked below
                    log.warning("dropping a corrupt cached blob %s: %s", digest, exc)
                    with contextlib.suppress(OSError):
                        path.unlink()
                else:
                    with contextlib.suppress(OSError):
                        os.utime(path)  # recently used: evicted last
                    return blob
            return VerifiedBlob(digest, self._fetch(digest), _TOKEN)

    def _fetch_lock(self, digest: str) -> threading.Lock:
        with self._fetching_guard:
            return self._fetching.setdefault(digest, threading.Lock())

    def _fetch(self, digest: str) -> Path:
        key = self._key(digest)

        def download() -> tuple[Path, str, int]:
            try:
                src = self.fs.open(key, "rb", block_size=_DOWNLOAD_READ, cache_type="none")
            except FileNotFoundError as exc:
                raise NotFound(f"blob {digest} is missing from the artifact store at {self.url} ({exc})") from exc
            with src:
                return self._receive(src, None, _DOWNLOAD_READ)

        tmp, actual, _ = self._remote("downloading a blob", download)
        if actual != digest:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise corrupt_error(digest, actual, self.url)
        dest = super()._commit(tmp, digest)
        self._evict(keep=dest)
        return dest

    # ---------------------------------------------------------------------------------------------- cache

    def cached_bytes(self) -> int:
        """Bytes the local cache holds."""
        return sum(size for _, size, _ in self._cached())

    def _cached(self) -> list[tuple[float, int, Path]]:
        found = []
        for p in (self.root / "sha256").glob("*/*"):
            with contextlib.suppress(FileNotFoundError):
                st = p.stat()
                found.append((st.st_mtime, st.st_size, p))
        return found

    def _evict(self, keep: Path) -> None:
        """Remove least recently used cached blobs until the cache fits ``cache_max_bytes``."""
        if self.cache_max_bytes is None:
            return
        entries = self._cached()
        total = sum(size for _, size, _ in entries)
        recent = time.time() - _EVICT_GRACE_S
        for mtime, size, path in sorted(entries):
            if total <= self.cache_max_bytes:
                break
            if path == keep or mtime > recent:
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            total -= size
