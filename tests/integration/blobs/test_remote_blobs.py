"""What only a blob store on an fsspec URL does: the read-through cache (verified, bounded, self-healing), the
object store's failures as clear errors, the factory and the settings that choose it. S3 is a real moto server."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mlpilot.blobs import BlobStore, open_blob_store
from mlpilot.blobs.local import digest_key
from mlpilot.blobs.remote import FsspecBlobStore
from mlpilot.errors import IntegrityError, InvalidArgument, Unavailable
from mlpilot.testing.blob_checks import race
from tests.helpers import free_port


def _s3(root: str, cache: Path, options: dict[str, Any], **kw: Any) -> FsspecBlobStore:
    store = open_blob_store(root, cache, options, **kw)
    assert isinstance(store, FsspecBlobStore)
    return store


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _age(path: Path, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


@pytest.fixture
def s3(s3_root: str, s3_storage_options: dict[str, Any], tmp_path: Path) -> Any:
    """``s3(cache_name, **kw)`` → a store over this test's prefix with its own cache directory."""

    def make(cache: str = "cache", **kw: Any) -> FsspecBlobStore:
        return _s3(s3_root, tmp_path / cache, s3_storage_options, **kw)

    return make


def test_a_cold_cache_downloads_then_serves_verified_copies(s3: Any) -> None:
    writer, reader = s3("w"), s3("r")
    digest, _ = writer.put_bytes(b"model bytes")
    assert reader.cached_bytes() == 0
    assert reader.open_verified(digest).path.read_bytes() == b"model bytes"
    assert reader.cached_bytes() == len(b"model bytes")
    writer.fs.rm(writer._key(digest))  # content-addressed: the verified cached copy is still that blob
    assert reader.open_verified(digest).path.read_bytes() == b"model bytes"
    assert not reader.exists(digest)  # exists() answers for the object store


def test_a_corrupt_cached_copy_is_dropped_and_downloaded_again(s3: Any) -> None:
    store = s3()
    digest, _ = store.put_bytes(b"good bytes")
    cached = store._path(digest)
    cached.write_bytes(b"rotten!!!!")
    assert store.open_verified(digest).path.read_bytes() == b"good bytes"
    assert cached.read_bytes() == b"good bytes"


def test_a_corrupt_remote_object_is_refused_and_nothing_is_cached(s3: Any) -> None:
    digest, _ = s3("w").put_bytes(b"x" * 5000)
    reader = s3("r")
    reader.fs.pipe_file(reader._key(digest), b"y" * 5000)
    with pytest.raises(IntegrityError, match="is corrupt in s3://"):
        reader.open_verified(digest)
    assert _files(reader.root) == []  # no blob, no temporary file


def test_a_put_replaces_a_truncated_remote_object(s3: Any) -> None:
    store = s3()
    digest, _ = store.put_bytes(b"z" * 4096)
    key = store._key(digest)
    store.fs.pipe_file(key, b"z" * 100)
    assert store.put_bytes(b"z" * 4096) == (digest, 4096)
    store.fs.invalidate_cache()
    assert store.fs.cat_file(key) == b"z" * 4096


def test_the_cache_is_bounded_least_recently_used_first(s3: Any) -> None:
    store = s3(cache_max_bytes=2500)
    a, _ = store.put_bytes(b"a" * 1000)
    b, _ = store.put_bytes(b"b" * 1000)
    _age(store._path(a), 300)
    _age(store._path(b), 200)
    c, _ = store.put_bytes(b"c" * 1000)  # 3000 bytes > 2500: the least recently used (a) goes
    assert not store._path(a).exists() and store._path(b).exists() and store._path(c).exists()
    assert store.cached_bytes() == 2000
    assert store.open_verified(a).path.read_bytes() == b"a" * 1000  # downloaded again; now b is the oldest
    assert not store._path(b).exists() and store._path(c).exists()
    assert store.cached_bytes() <= 2500


def test_blobs_used_within_the_last_minute_are_never_evicted(s3: Any) -> None:
    store = s3(cache_max_bytes=1500)
    a, _ = store.put_bytes(b"a" * 1000)
    _age(store._path(a), 300)
    store.open_verified(a)  # a hit marks it used
    store.put_bytes(b"b" * 1000)
    assert store.cached_bytes() == 2000  # over the bound, but both were just used: their paths may be open


def test_concurrent_cold_reads_of_one_blob_all_get_it(s3: Any) -> None:
    data = os.urandom(2 * 1024**2)
    digest, _ = s3("w").put_bytes(data)
    reader = s3("r")
    got = race([lambda: reader.open_verified(digest).path.read_bytes()] * 6)
    assert got == [data] * 6
    assert [p.name for p in _files(reader.root)] == [digest_key(digest).rsplit("/", 1)[1]]


def test_a_pickled_store_reads_in_its_new_home(s3: Any) -> None:
    store = s3()
    digest, _ = store.put_bytes(b"shipped to a replica")
    copy = pickle.loads(pickle.dumps(store))
    assert isinstance(copy, FsspecBlobStore) and copy.url == store.url
    assert copy.open_verified(digest).path.read_bytes() == b"shipped to a replica"


@pytest.mark.parametrize("size", [100, 6 * 1024**2], ids=["one-request", "multipart"])
def test_a_missing_bucket_is_unavailable_and_leaves_nothing(
    size: int, s3_storage_options: dict[str, Any], tmp_path: Path
) -> None:
    store = _s3("s3://no-such-bucket-here/p", tmp_path / "cache", s3_storage_options)
    with pytest.raises(Unavailable, match=r"object storage at s3://no-such-bucket-here/p failed while"):
        store.put_bytes(b"q" * size)
    assert _files(store.root) == []


def test_an_unreachable_endpoint_is_unavailable(tmp_path: Path) -> None:
    options = {
        "endpoint_url": f"http://127.0.0.1:{free_port()}",
        "key": "k",
        "secret": "s",
        "client_kwargs": {"region_name": "us-east-1"},
        "config_kwargs": {"retries": {"max_attempts": 1}},
    }
    store = _s3("s3://bucket/p", tmp_path / "cache", options)
    with pytest.raises(Unavailable, match="Could not connect"):
        store.put_bytes(b"abc")
    with pytest.raises(Unavailable, match="downloading a blob"):
        store.open_verified("sha256:" + "a" * 64)
    with pytest.raises(Unavailable):
        store.exists("sha256:" + "a" * 64)
    assert _files(store.root) == []


def test_refused_storage_options_are_invalid_argument(s3_url: str, tmp_path: Path) -> None:
    store = _s3(s3_url, tmp_path / "cache", {"no_such_option": 1})
    with pytest.raises(InvalidArgument, match="storage options of s3://"):
        store.exists("sha256:" + "a" * 64)


def test_the_factory_picks_the_store_and_checks_its_arguments(tmp_path: Path) -> None:
    local = open_blob_store(tmp_path / "blobs")
    assert type(local) is BlobStore and local.root == tmp_path / "blobs"
    assert type(open_blob_store(str(tmp_path / "blobs"))) is BlobStore
    remote = open_blob_store(f"file://{tmp_path}/remote", tmp_path / "cache", max_bytes=10, cache_max_bytes=None)
    assert isinstance(remote, FsspecBlobStore) and remote.max_bytes == 10 and remote.cache_max_bytes is None
    with pytest.raises(InvalidArgument, match="cache directory"):
        open_blob_store("s3://bucket/p")
    with pytest.raises(InvalidArgument, match="URLs only"):
        open_blob_store(tmp_path / "blobs", storage_options={"key": "k"})
    with pytest.raises(InvalidArgument, match="not a usable fsspec URL"):
        open_blob_store("nope://bucket/p", tmp_path / "cache")
    with pytest.raises(InvalidArgument, match="gcsfs"):
        open_blob_store("gcs://bucket/p", tmp_path / "cache")


def test_s3_without_its_extra_names_the_pip_command(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['s3fs'] = None\n"  # as if mlpilot[s3] were not installed
        "from mlpilot.blobs import open_blob_store\n"
        "from mlpilot.errors import MissingExtra\n"
        "try:\n"
        f"    open_blob_store('s3://bucket/p', {str(tmp_path)!r})\n"
        "except MissingExtra as exc:\n"
        "    print(exc.message)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert 'pip install "mlpilot[s3]"' in out.stdout, out.stdout + out.stderr


def test_settings_choose_the_object_store(
    s3_root: str, s3_storage_options: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlpilot.app import build_platform
    from mlpilot.settings import Settings

    monkeypatch.setenv("MLPILOT_ARTIFACTS__ROOT", s3_root)
    monkeypatch.setenv("MLPILOT_ARTIFACTS__STORAGE_OPTIONS__KEY", "testing")
    monkeypatch.setenv("MLPILOT_ARTIFACTS__STORAGE_OPTIONS__SECRET", "testing")
    monkeypatch.setenv("MLPILOT_ARTIFACTS__STORAGE_OPTIONS__ENDPOINT_URL", s3_storage_options["endpoint_url"])
    monkeypatch.setenv("MLPILOT_ARTIFACTS__CACHE_MAX_BYTES", "123456789")
    settings = Settings(home=tmp_path / "home")
    assert settings.artifact_root() == s3_root
    assert settings.artifacts.storage_options == {
        "key": "testing",
        "secret": "testing",
        "endpoint_url": s3_storage_options["endpoint_url"],
    }
    platform = build_platform(settings)
    try:
        blobs = platform.blobs
        assert isinstance(blobs, FsspecBlobStore)
        assert blobs.url == s3_root and blobs.cache_max_bytes == 123456789
        assert blobs.root == tmp_path / "home" / "cache" / "blobs"
        digest, _ = blobs.put_bytes(b"through the settings")
        assert blobs.exists(digest)
    finally:
        platform.close()
    monkeypatch.delenv("MLPILOT_ARTIFACTS__STORAGE_OPTIONS__KEY")
    monkeypatch.delenv("MLPILOT_ARTIFACTS__STORAGE_OPTIONS__SECRET")
    monkeypatch.delenv("MLPILOT_ARTIFACTS__STORAGE_OPTIONS__ENDPOINT_URL")
    monkeypatch.setenv("MLPILOT_ARTIFACTS__STORAGE_OPTIONS", '{"endpoint_url": "http://x:1", "anon": true}')
    assert Settings().artifacts.storage_options == {"endpoint_url": "http://x:1", "anon": True}
