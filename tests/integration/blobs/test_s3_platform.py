"""The platform with its artifacts on S3 (moto): models registered through the SDK land in the bucket, and the data
plane loads them from there (through its verified cache) to serve predictions."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlpilot import Client
from mlpilot.blobs.local import digest_key
from mlpilot.errors import InvalidArgument
from tests.factories import sklearn_case


def test_a_model_registered_to_s3_is_served_from_s3(
    s3_root: str, s3_storage_options: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import s3fs

    monkeypatch.setenv("MLPILOT_ARTIFACTS__ROOT", s3_root)
    monkeypatch.setenv("MLPILOT_ARTIFACTS__STORAGE_OPTIONS", json.dumps(s3_storage_options))
    home = tmp_path / "home"
    case = sklearn_case()
    with Client(home=home) as c:
        version = c.register_model("iris", case.model, sample=case.X.head(3))
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **s3_storage_options)
    key = f"{s3_root.removeprefix('s3://')}/{digest_key(version.digest)}"
    assert fs.info(key)["size"] == version.size  # the bytes are in the bucket
    assert not (home / "artifacts").exists()  # and not in a local artifact directory
    shutil.rmtree(home / "cache" / "blobs")  # so the data plane can only load the model from S3

    with Client(home=home) as c:
        c.deploy("iris", "iris:1")
        prediction = c.predict("iris", case.X)
        assert prediction.model_version == "1"
        np.testing.assert_array_equal(prediction["predict"], case.expected)
        cached = home / "cache" / "blobs" / digest_key(version.digest)
        assert cached.is_file()  # downloaded by the data plane, verified
        _, path = c.download("iris:1")  # the content API streams it from the object store too
        assert path.read_bytes() == cached.read_bytes()


def test_a_server_process_keeps_its_artifacts_on_s3(
    s3_root: str, s3_storage_options: dict[str, Any], tmp_path: Path
) -> None:
    """``mlpilot up`` configured by the environment only: the remote SDK registers, the server stores on S3."""
    import s3fs

    from tests.helpers import ServerProcess

    env = {"MLPILOT_ARTIFACTS__ROOT": s3_root, "MLPILOT_ARTIFACTS__STORAGE_OPTIONS": json.dumps(s3_storage_options)}
    server = ServerProcess(tmp_path / "home", extra_env=env, args=("--no-grpc",))
    try:
        case = sklearn_case()
        with Client(url=server.url) as c:
            version = c.register_model("iris", case.save(tmp_path), sample=case.X.head(3), trust_pickle=True)
            c.deploy("iris", "iris:1")
            np.testing.assert_array_equal(_predict_when_loaded(c, case.X)["predict"], case.expected)
    finally:
        server.stop()
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **s3_storage_options)
    assert fs.info(f"{s3_root.removeprefix('s3://')}/{digest_key(version.digest)}")["size"] == version.size
    assert not (tmp_path / "home" / "artifacts").exists()


def _predict_when_loaded(c: Client, X: Any, timeout: float = 60.0) -> Any:
    """The server's data plane follows the store's snapshot; a new deployment serves after its next poll."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return c.predict("iris", X)
        except InvalidArgument as exc:
            if "unknown model" not in exc.message or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
