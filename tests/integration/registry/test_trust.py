"""Formats that run code when loaded need an explicit trust decision: at registration (SDK, CLI, settings) and again at
every load (registry, SDK, in-process data plane, Ray replica). A malicious pickle proves that nothing ran."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from typer.testing import CliRunner

from mlpilot import Client, FailedPrecondition, MlpilotError
from mlpilot.app import build_platform
from mlpilot.cli.main import app as cli_app
from mlpilot.records import ArtifactKind
from mlpilot.settings import ArtifactSettings, Settings
from tests.factories import iris_frame, lightgbm_case, onnx_case, pyfunc_case, sklearn_case, skops_case, xgboost_case
from tests.helpers import run_cli


class _Evil:
    """Unpickling it creates ``marker`` (any code could run there)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def _evil_pickle(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_Evil(marker), protocol=4))
    return path, marker


def _stored_blobs(home: Path) -> list[Path]:
    return [p for p in (home / "artifacts").rglob("*") if p.is_file()] if (home / "artifacts").exists() else []


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def client(home: Path):  # type: ignore[no-untyped-def]
    with Client(home=home, actor="tester") as c:
        yield c


def _joblib_file(tmp_path: Path) -> Path:
    joblib.dump(sklearn_case().model, tmp_path / "model.joblib")
    return tmp_path / "model.joblib"


def _pickle_file(tmp_path: Path) -> Path:
    with open(tmp_path / "model.pkl", "wb") as f:
        pickle.dump(sklearn_case().model, f, protocol=5)
    return tmp_path / "model.pkl"


def _python_file(tmp_path: Path) -> Path:
    return pyfunc_case().save(tmp_path)


@pytest.mark.parametrize(
    ("make", "flavor", "fmt"),
    [(_joblib_file, "sklearn", "joblib"), (_pickle_file, "sklearn", "pickle"), (_python_file, "pyfunc", "python")],
    ids=["joblib", "pickle", "python"],
)
def test_a_file_that_runs_code_needs_trust_and_is_recorded(
    client: Client, home: Path, tmp_path: Path, make: Any, flavor: str, fmt: str
) -> None:
    path = make(tmp_path)
    with pytest.raises(FailedPrecondition, match="--trust-pickle") as info:
        client.register_model("m", path)
    assert f"in {fmt} format" in info.value.message and "skops" in info.value.message
    assert info.value.detail == {"flavor": flavor, "format": fmt, "requires_trust": True}
    assert client.list_artifacts() == [] and client.events() == []
    assert _stored_blobs(home) == []  # refused before anything was stored

    v = client.register_model("m", path, trust_pickle=True)
    assert v.unsafe and v.flavor == flavor
    fmeta = v.metadata["flavor"]
    assert (fmeta["requires_trust"], fmeta["trusted_by"], fmeta["trusted_via"]) == (True, "tester", "request")
    created = client.events(subject="artifact:m", action="version.created")
    assert [e.after["trust"] for e in created] == [{"by": "tester", "via": "request"}]
    loaded = client.load_model(v.ref)  # trusted: loads
    x = iris_frame()[0].head(2) if flavor == "sklearn" else np.ones((2, 3))
    assert len(loaded.predict(x)["predict"]) == 2


@pytest.mark.parametrize("make", [skops_case, xgboost_case, lightgbm_case, onnx_case], ids=lambda f: f.__name__)
def test_formats_that_load_without_running_code_need_nothing(client: Client, tmp_path: Path, make: Any) -> None:
    case = make()
    v = client.register_model("m", case.save(tmp_path), sample=case.X[:3])
    assert not v.unsafe and "requires_trust" not in v.metadata["flavor"]
    assert "trust" not in client.events(action="version.created")[0].after


def test_the_sdk_trusts_an_in_memory_object_it_serialises(client: Client) -> None:
    v = client.register_model("m", sklearn_case().model)
    assert v.unsafe and v.metadata["flavor"]["trusted_via"] == "request"


def test_the_server_setting_trusts_every_pickle(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", artifacts=ArtifactSettings(trust_pickle=True))
    with Client(settings=settings, actor="ops") as c:
        v = c.register_model("m", _joblib_file(tmp_path))
        assert v.metadata["flavor"]["trusted_via"] == "setting" and v.metadata["flavor"]["trusted_by"] == "ops"


def test_a_malicious_pickle_never_runs_without_trust(client: Client, tmp_path: Path) -> None:
    path, marker = _evil_pickle(tmp_path)
    with pytest.raises(FailedPrecondition):
        client.register_model("evil", path)
    with pytest.raises(FailedPrecondition):  # naming the flavor and format does not get around it
        client.register_model("evil", path, flavor="sklearn")
    assert not marker.exists()


def _legacy_untrusted_version(home: Path, path: Path) -> str:
    """A pickle version without a trust record (registered before the check, or written to the store by hand)."""
    platform = build_platform(Settings(home=home))
    try:
        digest, size = platform.blobs.put_file(path)
        v = platform.store.create_version(
            name="legacy",
            kind=ArtifactKind.MODEL,
            digest=digest,
            size=size,
            filename=path.name,
            actor="old-mlpilot",
            flavor="sklearn",
            metadata={"flavor": {"format": "pickle"}},
            unsafe=True,
        )
        with pytest.raises(FailedPrecondition, match="registered without a trust decision"):
            platform.registry.load_model(v.ref)
        return v.ref
    finally:
        platform.close()


def test_every_load_path_refuses_a_version_without_a_trust_record(home: Path, tmp_path: Path) -> None:
    path, marker = _evil_pickle(tmp_path)
    ref = _legacy_untrusted_version(home, path)
    with Client(home=home, actor="tester") as c:
        with pytest.raises(FailedPrecondition, match="--trust-pickle"):
            c.load_model(ref)  # the SDK, locally
        c.deploy("legacy", ref)
        with pytest.raises(MlpilotError, match="unknown model 'legacy'"):  # not loaded, so nothing is served
            c.predict("legacy", np.ones((1, 4)))
        failed = c.events(subject="deployment:legacy", action="deployment.load_failed")
        assert failed and "registered without a trust decision" in failed[0].after["error"]
        assert "model legacy:1" in failed[0].after["error"]
    assert not marker.exists()


def test_a_ray_replica_refuses_a_version_without_a_trust_record(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    from mlpilot.blobs import BlobStore
    from mlpilot.executors.replica import ReplicaSpec, VariantReplica

    path, marker = _evil_pickle(tmp_path)
    blobs = BlobStore(tmp_path / "blobs")
    digest, _ = blobs.put_file(path)
    spec = ReplicaSpec("d", "v", digest, "sklearn", {"format": "pickle"}, 1, None, blobs)
    with pytest.raises(FailedPrecondition, match="the model of d/v"):
        VariantReplica(spec)
    forged = {"format": "pickle", "requires_trust": True}  # a record needs who trusted it
    with pytest.raises(FailedPrecondition):
        VariantReplica(ReplicaSpec("d", "v", digest, "sklearn", forged, 1, None, blobs))
    assert not marker.exists()


def test_the_cli_asks_for_trust_pickle(tmp_path: Path) -> None:
    path, home = _joblib_file(tmp_path), tmp_path / "home"
    refused = run_cli("models", "register", "m", str(path), home=home, check=False)
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: model.joblib is a sklearn model in joblib format"), refused.stderr
    assert "--trust-pickle" in refused.stderr
    run_cli("models", "register", "m", str(path), "--trust-pickle", home=home)
    shown = run_cli("models", "show", "m:1", home=home).stdout
    assert "trusted" in shown and "(request)" in shown
    help_text = CliRunner().invoke(cli_app, ["models", "register", "--help"], env={"COLUMNS": "200"}).stdout
    assert "--trust-pickle" in help_text and "runs code" in help_text
