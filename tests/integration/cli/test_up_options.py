"""``mlpilot up --store URL --artifacts URL-or-DIR --artifacts-option KEY=VALUE --ray-address A``: bad values are
usage errors (exit 2) that say what is wrong before anything starts; good ones reach the settings; a real server
keeps its store and artifacts where the flags say."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import typer

from mlpilot import Client
from mlpilot.blobs.local import digest_key
from mlpilot.cli.server import apply_up_options
from mlpilot.settings import Settings
from tests.factories import sklearn_case
from tests.helpers import ServerProcess, free_port, run_cli


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--store", "mysql://db/x"), "use sqlite:///PATH or postgresql+psycopg://"),
        (("--store", "postgresql://u@db/x"), "the driver is psycopg 3: postgresql+psycopg://"),
        (("--store", "sqlite:///"), "use sqlite:///PATH"),
        (("--artifacts", "nosuch://bucket/x"), "unknown scheme 'nosuch'"),
        (("--artifacts", "gs://bucket/x"), "install gcsfs"),
        (("--artifacts-option", "endpoint_url=http://x"), "storage options apply to an object-storage root"),
        (("--artifacts", "s3://b/x", "--artifacts-option", "endpoint_url"), "must be KEY=VALUE or KEY:=JSON"),
        (
            ("--artifacts", "s3://b/x", "--artifacts-option", "client_kwargs:={region"),
            "the value after := must be JSON",
        ),
        (("--ray-address", "auto"), "the Ray address needs --executor ray"),
    ],
)
def test_bad_scale_out_options_are_usage_errors(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    r = run_cli("up", "--port", str(free_port()), *args, home=tmp_path / "home", check=False, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in " ".join((r.stdout + r.stderr).split())  # rich wraps the usage box
    assert not (tmp_path / "home").exists()  # nothing started, nothing written


@pytest.mark.parametrize(
    ("blocked", "args", "message"),
    [
        ("s3fs", ("--artifacts", "s3://bucket/x"), 'pip install "mlpilot[s3]"'),
        ("psycopg", ("--store", "postgresql+psycopg://u@db/x"), 'pip install "mlpilot[postgres]"'),
    ],
)
def test_a_missing_extra_is_named_with_its_pip_command(
    tmp_path: Path, blocked: str, args: tuple[str, ...], message: str
) -> None:
    """The extra's package made unimportable in the CLI's process (as on an install without the extra)."""
    code = (
        f"import sys; sys.modules[{blocked!r}] = None; sys.argv = ['mlpilot', 'up', *sys.argv[1:]];"
        "from mlpilot.cli.main import main; main()"
    )
    env = {**os.environ, "MLPILOT_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    env.pop("MLPILOT_URL", None)
    r = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in " ".join(r.stderr.split())


def test_good_values_reach_the_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLPILOT_ARTIFACTS__STORAGE_OPTIONS", '{"key": "from-env", "secret": "s"}')
    settings = apply_up_options(
        Settings(home=tmp_path),
        executor="ray",
        ray_address="ray-head:6379",
        store="postgresql+psycopg://mlpilot@db:5432/mlpilot",
        artifacts="s3://models/mlpilot",
        artifact_options=[
            "endpoint_url=http://minio:9000",
            "key=AKIA123",
            'client_kwargs:={"region_name": "eu-west-1"}',
            "use_ssl:=false",
            "secret=12345",
        ],
    )
    assert settings.executor.kind == "ray" and settings.executor.ray_address == "ray-head:6379"
    assert settings.store_url() == "postgresql+psycopg://mlpilot@db:5432/mlpilot"
    assert settings.artifact_root() == "s3://models/mlpilot"
    assert settings.artifacts.storage_options == {
        "key": "AKIA123",  # the command line wins over the environment, option by option
        "secret": "12345",  # KEY=VALUE is always a string
        "endpoint_url": "http://minio:9000",
        "client_kwargs": {"region_name": "eu-west-1"},
        "use_ssl": False,
    }
    local = apply_up_options(Settings(home=tmp_path), store="sqlite:///x.db", artifacts=str(tmp_path / "a"))
    assert local.store_url() == "sqlite:///x.db" and local.artifact_root() == tmp_path / "a"
    untouched = apply_up_options(Settings(home=tmp_path))
    assert untouched.store.url == "" and untouched.artifacts.root == "" and untouched.executor.kind == "inprocess"
    with pytest.raises(typer.BadParameter, match="unknown scheme"):
        apply_up_options(Settings(home=tmp_path), artifacts="nosuch://x")


def test_a_server_keeps_its_store_and_artifacts_where_the_flags_say(tmp_path: Path) -> None:
    db, artifacts, home = tmp_path / "state" / "control.db", tmp_path / "blobs", tmp_path / "home"
    db.parent.mkdir()
    server = ServerProcess(home, args=("--no-grpc", "--store", f"sqlite:///{db}", "--artifacts", str(artifacts)))
    try:
        assert httpx.get(f"{server.url}/api/v1/deployments", timeout=10).json() == []
        case = sklearn_case()
        with Client(server.url) as c:
            v = c.register_model("iris", case.save(tmp_path), sample=case.X.head(3), trust_pickle=True)
            c.deploy("iris", v.ref)
        assert [d["name"] for d in httpx.get(f"{server.url}/api/v1/deployments", timeout=10).json()] == ["iris"]
    finally:
        server.stop()
    assert (artifacts / digest_key(v.digest)).is_file()
    assert db.is_file() and not (home / "mlpilot.db").exists() and not (home / "artifacts").exists()
    with Client(settings=Settings(home=tmp_path / "other", store={"url": f"sqlite:///{db}"})) as c:
        assert c.get_deployment("iris").spec.variants[0].model == "iris:1"  # the state is in that database
