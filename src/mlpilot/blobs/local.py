"""A content-addressed blob store on a local directory (``<root>/sha256/ab/cdef…``).

Writes go to a temporary file in the same directory and are renamed into place, so a reader never sees a
partial blob and concurrent writers of the same content are harmless. Reads verify the digest.

The receiving half (stream → hashed, size-limited, fsynced temporary file) and the committing half (temporary
file → its digest's place) are separate steps so that :class:`~mlpilot.blobs.remote.FsspecBlobStore` reuses both:
its local directory is a read-through cache of an object store.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from mlpilot.errors import IntegrityError, InvalidArgument, NotFound

_CHUNK = 1 << 20


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return f"sha256:{h.hexdigest()}"


def digest_key(digest: str) -> str:
    """The relative key of a blob (``sha256/ab/cdef…``); raises ``InvalidArgument`` for a malformed digest."""
    algo, _, hexd = digest.partition(":")
    if algo != "sha256" or len(hexd) != 64 or any(c not in "0123456789abcdef" for c in hexd):
        raise InvalidArgument(f"malformed digest {digest!r}; expected sha256:<64 hex chars>")
    return f"sha256/{hexd[:2]}/{hexd[2:]}"


@dataclass(frozen=True)
class VerifiedBlob:
    """A blob whose bytes were checked against their digest by the :class:`BlobStore` that returned it.

    Only ``BlobStore`` creates these, so code that loads unsafe (pickle-based) formats can require one and thereby
    only ever load from the registry's own store.
    """

    digest: str
    path: Path
    _token: object

    def __post_init__(self) -> None:
        if self._token is not _TOKEN:
            raise TypeError("VerifiedBlob is created by BlobStore.open_verified only")


_TOKEN = object()


def corrupt_error(digest: str, actual: str, where: str) -> IntegrityError:
    return IntegrityError(
        f"blob {digest} is corrupt in {where}: its content hashes to {actual}; refusing to load it",
        detail={"expected": digest, "actual": actual},
    )


class BlobStore:
    """Blobs under ``root``, by digest.

    Args:
        root: directory (created on first write).
        max_bytes: largest blob accepted; bigger input raises ``InvalidArgument`` and stores nothing.
    """

    def __init__(self, root: Path | str, max_bytes: int = 2 * 1024**3) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes

    @property
    def location(self) -> str:
        """Where the blobs are, for messages."""
        return str(self.root)

    def _path(self, digest: str) -> Path:
        return self.root / digest_key(digest)

    def _receive(self, stream: Readable, limit: int | None, chunk_size: int = _CHUNK) -> tuple[Path, str, int]:
        """Copy ``stream`` into a fsynced temporary file under ``root`` while hashing it.

        Returns ``(temporary path, digest, size)``; the caller commits or removes the file. Nothing is left behind
        when reading fails or the stream is longer than ``limit`` bytes (``InvalidArgument``).
        """
        self.root.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        size = 0
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in iter(lambda: stream.read(chunk_size), b""):
                    size += len(chunk)
                    if limit is not None and size > limit:
                        raise InvalidArgument(f"upload exceeds the limit of {limit} bytes")
                    h.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return Path(tmp), f"sha256:{h.hexdigest()}", size

    def _commit(self, tmp: Path, digest: str) -> Path:
        """Move a received temporary file to its digest's place (atomic; equal content may already be there)."""
        dest = self._path(digest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)
        return dest

    def put_stream(self, stream: BinaryIO) -> tuple[str, int]:
        """Store the bytes of ``stream``; returns ``(digest, size)``. Idempotent for equal content."""
        tmp, digest, size = self._receive(stream, self.max_bytes)
        try:
            self._commit(tmp, digest)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return digest, size

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        return self.put_stream(io.BytesIO(data))

    def put_file(self, path: Path | str) -> tuple[str, int]:
        with open(path, "rb") as f:
            return self.put_stream(f)

    def exists(self, digest: str) -> bool:
        return self._path(digest).is_file()

    def open_verified(self, digest: str) -> VerifiedBlob:
        """The blob's path after checking its bytes hash to ``digest``.

        Raises:
            NotFound: no blob with that digest.
            IntegrityError: the stored bytes do not match (corruption or tampering); nothing is loaded.
        """
        path = self._path(digest)
        if not path.is_file():
            raise NotFound(f"blob {digest} is missing from the artifact store at {self.location}")
        actual = sha256_file(path)
        if actual != digest:
            raise corrupt_error(digest, actual, self.location)
        return VerifiedBlob(digest, path, _TOKEN)

    def read_chunks(self, digest: str) -> Iterator[bytes]:
        blob = self.open_verified(digest)
        with open(blob.path, "rb") as f:
            yield from iter(lambda: f.read(_CHUNK), b"")
