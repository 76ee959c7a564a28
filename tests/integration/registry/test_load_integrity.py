"""Every load checks the digest, cached copies included: a byte flipped on disk is never handed to a loader. What
went bad at its source is an IntegrityError; a cached copy that went bad is fetched or unpacked again."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from mlpilot import Client, IntegrityError, MlpilotError
from mlpilot.blobs import BlobStore
from mlpilot.blobs.local import digest_key
from mlpilot.flavors import get_flavor, with_trust
from tests.factories import iris_frame, sklearn_case


def _flip(path: Path, at: int = -1) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_blob_corrupted_on_disk_is_not_served_and_the_deployment_says_why(tmp_path: Path) -> None:
    home = tmp_path / "home"
    X, _ = iris_frame()
    with Client(home=home) as c:
        v = c.register_model("iris", sklearn_case().model, sample=X.head(3))
        c.deploy("iris", v.ref)
        assert len(c.predict("iris", X.head(2)).outputs["predict"]) == 2
    _flip(home / "artifacts" / digest_key(v.digest))  # same size, one byte different
    with Client(home=home) as c:
        with pytest.raises(MlpilotError, match="unknown model 'iris'"):  # the restarted data plane did not load it
            c.predict("iris", X.head(2))
        failed = c.events(subject="deployment:iris", action="deployment.load_failed")
        assert len(failed) == 1
        message = failed[0].after["error"]
        assert f"blob {v.digest} is corrupt" in message and "refusing to load it" in message
        with pytest.raises(IntegrityError, match="is corrupt"):
            c.load_model(v.ref)


def test_a_corrupted_sdk_download_is_fetched_again(tmp_path: Path) -> None:
    with Client(home=tmp_path / "home") as c:
        v = c.register_dataset("ref", iris_frame()[0])
        _, path = c.download(v.ref)
        good = path.read_bytes()
        _flip(path)
        _, again = c.download(v.ref)
        assert again.read_bytes() == good
        assert c.read_dataset(v.ref).shape == iris_frame()[0].shape


def test_a_ray_replica_refuses_a_corrupt_blob(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    from mlpilot.executors.replica import ReplicaSpec, VariantReplica

    ser = get_flavor("sklearn").serialize(sklearn_case().model)
    blobs = BlobStore(tmp_path / "blobs")
    digest, _ = blobs.put_bytes(ser.data)
    meta = with_trust(ser.metadata, "test", "request")
    replica = VariantReplica(ReplicaSpec("d", "v", digest, "sklearn", meta, 1, None, blobs))
    assert replica.info()["pid"] > 0  # the intact blob loads
    _flip(tmp_path / "blobs" / digest_key(digest), at=len(ser.data) // 2)
    with pytest.raises(IntegrityError, match=f"blob {digest} is corrupt"):
        VariantReplica(ReplicaSpec("d", "v", digest, "sklearn", meta, 1, None, blobs))


def test_an_unpacked_index_that_went_bad_is_unpacked_again(tmp_path: Path) -> None:
    from mlpilot.blobs.archives import matches_tar
    from mlpilot.llm.index import build_index, pack_index
    from mlpilot.runtimes.app import open_index
    from tests.integration.llm.test_index import HashEmbedder, corpus

    build_index(corpus(), HashEmbedder(), tmp_path / "kb", chunk_chars=120, overlap_chars=20)
    packed = pack_index(tmp_path / "kb", tmp_path / "kb.tar")
    blobs = BlobStore(tmp_path / "blobs")
    digest, _ = blobs.put_file(packed.path)
    binding = {"ref": "kb:1", "digest": digest}

    def path_of(b: dict[str, str]) -> Path:
        return blobs.open_verified(b["digest"]).path

    cache = tmp_path / "cache"
    first = open_index(binding, HashEmbedder(), path_of, cache)  # type: ignore[arg-type]
    hits = first.search_text("engine wheel car", HashEmbedder(), k=3)
    unpacked = cache / digest.replace(":", "-")
    data = next(p for p in unpacked.rglob("*.lance") if p.is_file())
    _flip(data, at=len(data.read_bytes()) // 2)
    assert not matches_tar(path_of(binding), unpacked)
    again = open_index(binding, HashEmbedder(), path_of, cache)  # type: ignore[arg-type]
    assert matches_tar(path_of(binding), unpacked)  # unpacked again from the verified blob
    assert [h.doc_id for h in again.search_text("engine wheel car", HashEmbedder(), k=3)] == [h.doc_id for h in hits]
    assert [p.name for p in cache.iterdir()] == [unpacked.name]  # the bad copy is gone

    _flip(tmp_path / "blobs" / digest_key(digest))  # the blob itself went bad: nothing is opened
    with pytest.raises(IntegrityError, match="is corrupt"):
        open_index(binding, HashEmbedder(), path_of, cache)  # type: ignore[arg-type]


def test_predictions_survive_their_check(tmp_path: Path) -> None:
    """The control: without corruption, the same paths load and answer."""
    ser = get_flavor("sklearn").serialize(sklearn_case().model)
    blobs = BlobStore(tmp_path / "blobs")
    digest, _ = blobs.put_bytes(ser.data)
    model = get_flavor("sklearn").load(blobs.open_verified(digest), ser.metadata)
    assert np.asarray(model.predict(iris_frame()[0].head(3))["predict"]).shape == (3,)


def test_a_deployment_that_failed_to_load_is_loaded_again_once_it_can_be(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed load is not final: the data plane keeps the previous routing and tries again (server.load_retry_s,
    doubling), so a runtime that was slow to start or a blob that was briefly away serves without a new deploy."""
    monkeypatch.setenv("MLPILOT_SERVER__LOAD_RETRY_S", "0.2")
    home = tmp_path / "home"
    X, _ = iris_frame()
    with Client(home=home) as c:
        v = c.register_model("iris", sklearn_case().model, sample=X.head(3))
        blob = home / "artifacts" / digest_key(v.digest)
        away = blob.with_name("away")
        blob.rename(away)
        c.deploy("iris", v.ref)
        with pytest.raises(MlpilotError, match="unknown model 'iris'"):
            c.predict("iris", X.head(2))
        [failed] = c.events(subject="deployment:iris", action="deployment.load_failed")
        assert "is missing" in failed.after["error"]
        away.rename(blob)
        deadline = time.monotonic() + 30
        while True:
            try:
                assert len(c.predict("iris", X.head(2)).outputs["predict"]) == 2
                break
            except MlpilotError:
                assert time.monotonic() < deadline, "the failed deployment was not loaded again"
                time.sleep(0.1)
