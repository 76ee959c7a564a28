"""Blobs read from a control plane's API (``GET /api/v1/blobs/{digest}``) through a local cache, for data planes
on other hosts (``mlpilot serve --control-url``).

The cache is a :class:`BlobStore` directory: a blob is downloaded once into a temporary file beside it, hashed while
it streams (``BlobStore._receive``), and renamed under its digest only when the bytes match (``BlobStore._commit``);
a mismatch raises ``IntegrityError`` and leaves nothing behind. Every read verifies the cached bytes again (as every
``BlobStore`` read does); a cached copy that went bad is dropped and downloaded anew. Blobs already cached are served
with the control plane unreachable, so a restarted data plane loads its last snapshot's models without it. The cache
is not bounded (it holds the models of the snapshots the data plane served; clear it while the process is stopped).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from mlpilot.blobs.local import BlobStore, VerifiedBlob, corrupt_error
from mlpilot.errors import IntegrityError, InvalidArgument, NotFound, Unavailable, error_from_dict

if TYPE_CHECKING:
    import httpx

_CHUNK = 1 << 20


class HttpBlobSource(BlobStore):
    """Read-only blobs of the control plane at ``base_url``, cached under ``cache_dir``.

    Args:
        base_url: the control plane (``http://host:8000``); blobs come from ``{base_url}/api/v1/blobs/{digest}``.
        cache_dir: the local cache (a blob-store layout; created on first download).
        headers: sent with every request (credentials, once the API checks them).
        timeout_s: connect and read timeout of each request (a download may take longer; each read may not).
        max_bytes: largest blob accepted; a bigger download is abandoned (``InvalidArgument``), nothing is kept.
    """

    def __init__(
        self,
        base_url: str,
        cache_dir: Path | str,
        headers: Mapping[str, str] | None = None,
        *,
        timeout_s: float = 30.0,
        max_bytes: int = 2 * 1024**3,
    ) -> None:
        import httpx  # the SDK's HTTP client; imported here so `import mlpilot.blobs` stays light

        super().__init__(cache_dir, max_bytes=max_bytes)
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, headers=dict(headers or {}), timeout=timeout_s)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    @property
    def location(self) -> str:
        return f"{self.base_url} (cached in {self.root})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> HttpBlobSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ read interface

    def cached(self, digest: str) -> bool:
        """Whether the blob is in the local cache (not verified)."""
        return super().exists(digest)

    def exists(self, digest: str) -> bool:
        """Cached, or known to the control plane (``HEAD``; ``Unavailable`` when it cannot be asked)."""
        if self.cached(digest):
            return True
        response = self._request("HEAD", digest)
        if response.status_code == 404:
            return False
        self._raise_for(response, digest)
        return True

    def open_verified(self, digest: str) -> VerifiedBlob:
        """The cached blob's path after checking its bytes hash to ``digest``, downloading it first if needed.

        Raises:
            InvalidArgument: a malformed digest. NotFound: the control plane has no such blob.
            IntegrityError: the bytes received (or stored by the control plane) do not match; nothing is cached.
            Unavailable: not cached, and the control plane cannot be reached.
        """
        path = self._path(digest)  # InvalidArgument before any request
        with self._lock(digest):
            if path.is_file():
                try:
                    return super().open_verified(digest)
                except NotFound:  # removed meanwhile: download it again
                    pass
                except IntegrityError:  # the local copy went bad: the control plane has the good one
                    with contextlib.suppress(OSError):
                        path.unlink()
            self._download(digest)
            return super().open_verified(digest)

    # read_chunks (inherited) streams the verified cached file.

    def put_stream(self, stream: BinaryIO) -> tuple[str, int]:
        raise InvalidArgument("an HttpBlobSource is read-only: register artifacts through the control plane")

    # ------------------------------------------------------------------------------------------ download

    def _lock(self, digest: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(digest, threading.Lock())

    def _request(self, method: str, digest: str) -> httpx.Response:
        import httpx

        try:
            return self._http.request(method, f"/api/v1/blobs/{digest}")
        except httpx.HTTPError as exc:
            raise Unavailable(f"the control plane at {self.base_url} is unreachable ({exc}); blob {digest}") from exc

    def _raise_for(self, response: httpx.Response, digest: str) -> None:
        if response.status_code == 200:
            return
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = {"error": f"HTTP {response.status_code} from {self.base_url} for blob {digest}"}
        raise error_from_dict(body, response.status_code)

    def _download(self, digest: str) -> None:
        import httpx

        try:
            with self._http.stream("GET", f"/api/v1/blobs/{digest}") as response:
                if response.status_code != 200:
                    response.read()
                    self._raise_for(response, digest)
                tmp, actual, _ = self._receive(_Chunks(response.iter_bytes(_CHUNK)), self.max_bytes)
        except httpx.HTTPError as exc:
            raise Unavailable(f"downloading blob {digest} from {self.base_url} failed ({exc})") from exc
        if actual != digest:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise corrupt_error(digest, actual, f"what {self.base_url} sent")
        self._commit(tmp, digest)


class _Chunks:
    """``read()`` over an iterator of byte chunks (what ``BlobStore._receive`` reads from)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks

    def read(self, n: int = -1, /) -> bytes:
        return next(self._chunks, b"")


__all__ = ["HttpBlobSource"]
