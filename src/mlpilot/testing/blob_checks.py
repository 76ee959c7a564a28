"""Blob-store conformance checks. Each takes a :class:`BlobHarness` and raises ``AssertionError`` when the adapter
misbehaves. They use only the public ``BlobStore`` API, plus the harness to damage and list what is stored.

Run them on every adapter (a local directory, an fsspec URL such as S3)::

    from mlpilot.testing import BLOB_CHECKS
    for check in BLOB_CHECKS:
        check(harness)
"""

from __future__ import annotations

import functools
import hashlib
import random
import tempfile
import threading
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar, cast

from mlpilot.blobs import BlobStore
from mlpilot.errors import IntegrityError, InvalidArgument, NotFound

T = TypeVar("T")
UNKNOWN = "sha256:" + "ab" * 32
#: the large-blob check's size, and the most memory (traced Python allocations) a put or a read may use for it.
LARGE_BYTES = 48 * 1024**2
LARGE_PEAK_BYTES = LARGE_BYTES // 2


@dataclass(frozen=True)
class BlobHarness:
    """How the checks reach an adapter.

    Attributes:
        make: ``make(max_bytes)`` → a store over the harness's one backing storage (empty at first); each store has
            a cold local cache of its own, if the adapter has one, so reading through it reads the backing storage.
        corrupt: ``corrupt(digest)`` changes the stored bytes of a blob in the backing storage (same size), as disk
            rot or tampering would.
        listing: every file the backing storage and the stores' local directories hold, temporary ones included;
            a blob's files are named after its hex digest.
    """

    make: Callable[[int], BlobStore]
    corrupt: Callable[[str], None]
    listing: Callable[[], list[str]]


def _sha(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _read(store: BlobStore, digest: str) -> bytes:
    return store.open_verified(digest).path.read_bytes()


def _only_copies_of(listing: list[str], digest: str) -> None:
    hexd = digest.partition(":")[2]
    stray = [name for name in listing if hexd[2:] not in name]
    assert not stray, f"files other than copies of {digest} were left behind: {stray}"


class PatternStream:
    """``size`` pseudo-random bytes, produced as they are read (never all in memory), hashed as they go."""

    def __init__(self, size: int, seed: int = 0) -> None:
        self.left = size
        self._rng = random.Random(seed)
        self._h = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        chunk = self._rng.randbytes(n)
        self.left -= n
        self._h.update(chunk)
        return chunk

    @property
    def digest(self) -> str:
        return f"sha256:{self._h.hexdigest()}"


def check_round_trip(h: BlobHarness) -> None:
    """Bytes, files and streams come back byte for byte, by their sha256, from the writer and a cold reader."""
    store = h.make(2**30)
    data = b"mlpilot blob " * 1000
    digest, size = store.put_bytes(data)
    assert (digest, size) == (_sha(data), len(data))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "blob"
        path.write_bytes(data)
        assert store.put_file(path) == (digest, size)
        with open(path, "rb") as f:
            assert store.put_stream(f) == (digest, size)
    assert store.exists(digest)
    blob = store.open_verified(digest)
    assert blob.digest == digest and blob.path.read_bytes() == data
    assert b"".join(store.read_chunks(digest)) == data
    other = h.make(2**30)
    assert other.exists(digest)
    assert _read(other, digest) == data
    empty, n = other.put_bytes(b"")
    assert n == 0 and _read(store, empty) == b""


def check_idempotent_put(h: BlobHarness) -> None:
    """Storing equal content again, from the same or another store, stores nothing new."""
    store = h.make(2**30)
    data = b"same content"
    first = store.put_bytes(data)
    stored = sorted(h.listing())
    assert store.put_bytes(data) == first
    assert sorted(h.listing()) == stored
    other = h.make(2**30)
    assert other.put_bytes(data) == first
    _only_copies_of(h.listing(), first[0])
    assert _read(other, first[0]) == data


def check_streams_large_blobs(h: BlobHarness) -> None:
    """A blob bigger than memory should hold goes in and out in chunks: the traced peak stays under half its size."""
    store = h.make(2**31)
    warm, _ = store.put_bytes(b"warm-up")  # clients and connection pools are set up outside the measurement
    h.make(2**31).open_verified(warm)
    stream = PatternStream(LARGE_BYTES, seed=7)
    tracemalloc.start()
    try:
        digest, size = store.put_stream(cast(BinaryIO, stream))
        _, put_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        reader = h.make(2**31)
        hasher = hashlib.sha256()
        read = 0
        for chunk in reader.read_chunks(digest):
            hasher.update(chunk)
            read += len(chunk)
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (digest, size) == (stream.digest, LARGE_BYTES)
    assert (f"sha256:{hasher.hexdigest()}", read) == (digest, LARGE_BYTES)
    assert put_peak < LARGE_PEAK_BYTES, f"put held {put_peak} bytes at once for a {LARGE_BYTES}-byte blob"
    assert read_peak < LARGE_PEAK_BYTES, f"read held {read_peak} bytes at once for a {LARGE_BYTES}-byte blob"


def check_unknown_digest_is_not_found(h: BlobHarness) -> None:
    store = h.make(2**30)
    assert not store.exists(UNKNOWN)
    for read in (store.open_verified, lambda d: list(store.read_chunks(d))):
        try:
            read(UNKNOWN)
        except NotFound as exc:
            assert UNKNOWN in exc.message
        else:
            raise AssertionError("an unknown digest must raise NotFound")
    for bad in ("sha256:xyz", "md5:" + "0" * 32, "", "sha256:" + "A" * 64):
        try:
            store.open_verified(bad)
        except InvalidArgument:
            pass
        else:
            raise AssertionError(f"a malformed digest {bad!r} must raise InvalidArgument")


def check_corruption_is_detected(h: BlobHarness) -> None:
    """Changed stored bytes are refused on every read (IntegrityError), never loaded or cached as the blob."""
    data = bytes(range(256)) * 64
    digest, _ = h.make(2**30).put_bytes(data)
    h.corrupt(digest)
    reader = h.make(2**30)
    for attempt in range(2):  # a failed read must not leave a copy that a second read would trust
        for read in (reader.open_verified, lambda d: list(reader.read_chunks(d))):
            try:
                read(digest)
            except IntegrityError as exc:
                assert exc.detail["expected"] == digest and exc.detail["actual"] != digest
            else:
                raise AssertionError(f"corrupt bytes of {digest} were returned (attempt {attempt + 1})")


def check_max_bytes(h: BlobHarness) -> None:
    """A blob over the limit is refused with a clear error and leaves nothing behind; one at the limit is stored."""
    store = h.make(1000)
    before = sorted(h.listing())
    try:
        store.put_bytes(b"x" * 1001)
    except InvalidArgument as exc:
        assert "1000" in exc.message and "limit" in exc.message
    else:
        raise AssertionError("a blob over max_bytes must raise InvalidArgument")
    try:
        store.put_stream(cast(BinaryIO, PatternStream(5 * 1024**2)))
    except InvalidArgument:
        pass
    else:
        raise AssertionError("a stream over max_bytes must raise InvalidArgument")
    assert sorted(h.listing()) == before, "a refused blob left files behind"
    assert not store.exists(_sha(b"x" * 1001))
    digest, size = store.put_bytes(b"y" * 1000)
    assert size == 1000 and _read(store, digest) == b"y" * 1000


def race(calls: list[Callable[[], T]]) -> list[T]:
    """Run ``calls`` on threads released at once; their results in order, or the first error raised."""
    start = threading.Barrier(len(calls))
    results: list[tuple[bool, Any]] = [(False, None)] * len(calls)

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = (True, calls[i]())
        except BaseException as exc:  # re-raised in the caller's thread below
            results[i] = (False, exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for ok, value in results:
        if not ok:
            raise value
    return [value for _, value in results]


def check_concurrent_puts_of_the_same_content(h: BlobHarness) -> None:
    """Writers racing on equal content (one shared store and stores of their own) all succeed, with one result."""
    shared = h.make(2**30)
    data = random.Random(3).randbytes(3 * 1024**2 + 17)
    stores = [shared] * 4 + [h.make(2**30) for _ in range(4)]
    results = race([functools.partial(s.put_bytes, data) for s in stores])
    assert results == [(_sha(data), len(data))] * 8, results
    _only_copies_of(h.listing(), _sha(data))
    assert _read(h.make(2**30), _sha(data)) == data


BLOB_CHECKS: tuple[Callable[[BlobHarness], None], ...] = (
    check_round_trip,
    check_idempotent_put,
    check_streams_large_blobs,
    check_unknown_digest_is_not_found,
    check_corruption_is_detected,
    check_max_bytes,
    check_concurrent_puts_of_the_same_content,
)


def check_blob_store(harness: BlobHarness) -> None:
    """Run every blob-store check against the adapter the harness makes."""
    for check in BLOB_CHECKS:
        check(harness)
