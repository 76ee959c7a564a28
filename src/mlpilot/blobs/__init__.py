"""Content-addressed blob storage shared by both planes: the control plane writes, the data plane reads.

Blobs are addressed by ``sha256:<hex>`` and verified on every read. :func:`open_blob_store` picks the store for a
root: a local directory (:class:`BlobStore`) or any fsspec URL (:class:`~mlpilot.blobs.remote.FsspecBlobStore`,
read through a local cache).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlpilot.blobs.http import HttpBlobSource
from mlpilot.blobs.local import BlobStore, VerifiedBlob, sha256_file
from mlpilot.errors import InvalidArgument

__all__ = [
    "BlobStore",
    "HttpBlobSource",
    "VerifiedBlob",
    "check_blob_url",
    "is_url",
    "open_blob_store",
    "sha256_file",
]


def is_url(root: Path | str) -> bool:
    """Whether ``root`` names an fsspec URL (``scheme://…``) rather than a local directory."""
    return isinstance(root, str) and "://" in root


def check_blob_url(url: str) -> None:
    """Check, without connecting, that an artifact URL's filesystem is installed here (``MissingExtra`` with the pip
    command for ``s3://`` without ``mlpilot[s3]``; ``InvalidArgument`` naming what is missing otherwise)."""
    from mlpilot.blobs.remote import check_url

    check_url(url)


def open_blob_store(
    root_or_url: Path | str,
    cache_dir: Path | str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    *,
    max_bytes: int = 2 * 1024**3,
    cache_max_bytes: int | None = 10 * 1024**3,
) -> BlobStore:
    """The blob store for a local directory or an fsspec URL (``s3://bucket/prefix``, ``file:///…``, ``memory://…``).

    Args:
        root_or_url: a directory (a plain path) or a URL.
        cache_dir: the local read-through cache of a URL (required for one; unused for a directory).
        storage_options: the fsspec filesystem's options (for S3: ``endpoint_url``, ``key``, ``secret``…).
        max_bytes: largest blob accepted.
        cache_max_bytes: the cache's size bound (``None``: unbounded).
    """
    if not is_url(root_or_url):
        if storage_options:
            raise InvalidArgument(f"storage options apply to URLs only; the artifact root {root_or_url} is a path")
        return BlobStore(root_or_url, max_bytes=max_bytes)
    if cache_dir is None:
        raise InvalidArgument(f"the artifact root {root_or_url} is a URL: give a local cache directory for it")
    from mlpilot.blobs.remote import FsspecBlobStore

    return FsspecBlobStore(
        str(root_or_url),
        cache_dir,
        max_bytes=max_bytes,
        cache_max_bytes=cache_max_bytes,
        storage_options=storage_options,
    )
