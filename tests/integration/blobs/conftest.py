"""Blob-store harnesses for the conformance checks: a local directory, an fsspec ``file://`` URL and S3 (moto)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlpilot.blobs import BlobStore, open_blob_store
from mlpilot.blobs.local import digest_key
from mlpilot.testing import BlobHarness


def _files(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()] if root.is_dir() else []


def _flip(data: bytes) -> bytes:
    return bytes([data[0] ^ 0xFF]) + data[1:] if data else b"\x00"


def local_harness(tmp: Path) -> BlobHarness:
    root = tmp / "blobs"

    def corrupt(digest: str) -> None:
        path = root / digest_key(digest)
        path.write_bytes(_flip(path.read_bytes()))

    return BlobHarness(lambda max_bytes: BlobStore(root, max_bytes), corrupt, lambda: _files(root))


def fsspec_harness(tmp: Path, url: str, storage_options: dict[str, Any]) -> BlobHarness:
    """Stores over ``url``, each with its own cache directory under ``tmp``."""
    counter = itertools.count()
    caches: list[Path] = []

    def make(max_bytes: int) -> BlobStore:
        cache = tmp / f"cache-{next(counter)}"
        caches.append(cache)
        return open_blob_store(url, cache, storage_options, max_bytes=max_bytes)

    probe: Any = make(1)
    fs, base = probe.fs, probe._base

    def corrupt(digest: str) -> None:
        key = f"{base}/{digest_key(digest)}"
        fs.pipe_file(key, _flip(fs.cat_file(key)))

    def listing() -> list[str]:
        fs.invalidate_cache()
        remote = [f"remote:{p}" for p in fs.find(base)] if fs.exists(base) else []
        return remote + [f"{c.name}:{name}" for c in caches for name in _files(c)]

    return BlobHarness(make, corrupt, listing)


@pytest.fixture(params=["local", "file", "s3"])
def blob_harness(request: pytest.FixtureRequest, tmp_path: Path) -> BlobHarness:
    """One blob store adapter per parameter: a local directory, ``file://`` through fsspec, S3 on moto."""
    kind: str = request.param
    makers: dict[str, Callable[[], BlobHarness]] = {
        "local": lambda: local_harness(tmp_path),
        "file": lambda: fsspec_harness(tmp_path, f"file://{tmp_path / 'remote'}", {}),
        "s3": lambda: fsspec_harness(
            tmp_path, request.getfixturevalue("s3_root"), request.getfixturevalue("s3_storage_options")
        ),
    }
    return makers[kind]()
