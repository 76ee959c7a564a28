"""The real ``mlpilot`` console script, embedded and against a real server (remote mode)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.factories import iris_frame, sklearn_case
from tests.helpers import ServerProcess, run_cli


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    case = sklearn_case()
    model = case.save(tmp_path)
    sample = tmp_path / "sample.csv"
    case.X.head(5).to_csv(sample, index=False)
    X, y = iris_frame()
    ref = tmp_path / "ref.parquet"
    X.assign(target=y).to_parquet(ref)
    return {"model": model, "sample": sample, "ref": ref}


def _workflow(home: Path, files: dict[str, Path], url: str | None = None) -> None:
    def cli(*a: str, check: bool = True):  # type: ignore[no-untyped-def]
        return run_cli(*a, home=home, url=url, check=check)

    out = json.loads(
        cli(
            "models",
            "register",
            "iris",
            str(files["model"]),
            "--sample",
            str(files["sample"]),
            "--meta",
            "accuracy=0.97",
            "--tag",
            "team=ml",
            "--trust-pickle",
            "--json",
        ).stdout
    )
    assert (out["version"], out["flavor"], out["metadata"]["accuracy"], out["tags"]) == (
        1,
        "sklearn",
        0.97,
        {"team": "ml"},
    )
    cli("models", "register", "iris", str(files["model"]), "--sample", str(files["sample"]), "--trust-pickle")
    assert [m["name"] for m in json.loads(cli("models", "list", "--json").stdout)] == ["iris"]
    shown = json.loads(cli("models", "show", "iris:1", "--json").stdout)
    assert shown["signature"]["inputs"][0]["name"] == "sepal_length"
    assert "sepal_length:FP64" in cli("models", "show", "iris").stdout
    cli("aliases", "set", "iris", "champion", "2")
    assert json.loads(cli("models", "show", "iris@champion", "--json").stdout)["version"] == 2
    ds = json.loads(cli("datasets", "register", "iris-ref", str(files["ref"]), "--bind-to", "iris:2", "--json").stdout)
    assert ds["metadata"]["rows"] == 150
    dep = json.loads(cli("deploy", "iris", "--model", "iris@champion", "--json").stdout)
    assert dep["spec"]["variants"][0]["model"] == "iris:2"
    cli("deploy", "iris", "--model", "iris:1", "--variant", "old", "--max-batch-size", "8")
    dep = json.loads(cli("traffic", "set", "iris", "iris-v2=70", "old=30", "--json").stdout)
    assert dep["spec"]["traffic"] == {"iris-v2": 70, "old": 30}
    listed = cli("deployments", "list").stdout
    assert "iris-v2=70%" in listed and "old=30%" in listed
    assert json.loads(cli("deployments", "show", "iris", "--json").stdout)["revision"] == 3
    events = json.loads(cli("events", "--json", "--limit", "100").stdout)
    actions = [e["action"] for e in events]
    for a in ("version.created", "alias.moved", "version.bound", "deployment.created", "deployment.updated"):
        assert a in actions

    # User mistakes: one line on stderr, exit 1, no traceback.
    for args, needle in [
        (("traffic", "set", "iris", "iris-v2=70", "old=20"), "sum to 100"),
        (("deploy", "iris", "--model", "iris:9"), "no version 9"),
        (("models", "show", "nope"), "no artifact named 'nope'"),
        (("models", "register", "x", str(files["sample"]), "--flavor", "keras"), "unknown model flavor"),
        (("aliases", "set", "iris", "champion", "1", "--expect", "1"), "expected version 1"),
        (("traffic", "set", "iris", "iris-v2"), "VARIANT=INTEGER"),
    ]:
        r = cli(*args, check=False)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert needle in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_cli_embedded(tmp_path: Path, files: dict[str, Path]) -> None:
    _workflow(tmp_path / "home", files)


def test_cli_remote_against_a_real_server(tmp_path: Path, files: dict[str, Path]) -> None:
    server = ServerProcess(tmp_path / "server-home")
    try:
        _workflow(tmp_path / "client-home", files, url=server.url)
        assert not (tmp_path / "client-home" / "mlpilot.db").exists()  # everything went to the server
        assert (tmp_path / "server-home" / "mlpilot.db").exists()
    finally:
        server.stop()


def test_cli_unreachable_server(tmp_path: Path) -> None:
    r = run_cli("models", "list", home=tmp_path, url="http://127.0.0.1:9", check=False)
    assert r.returncode == 1 and "cannot reach" in r.stderr and "Traceback" not in r.stderr


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    r = run_cli("deploy", home=tmp_path, check=False)
    assert r.returncode == 2 and "Missing argument" in r.stderr


def test_python_dash_m_mlpilot_is_the_same_command(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    import mlpilot

    env = {**os.environ, "MLPILOT_HOME": str(tmp_path / "home")}
    out = subprocess.run([sys.executable, "-m", "mlpilot", "--version"], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"mlpilot {mlpilot.__version__}"
    bad = subprocess.run(
        [sys.executable, "-m", "mlpilot", "rollout", "status", "ghost"], env=env, capture_output=True, text=True
    )
    assert bad.returncode == 1 and "no deployment named 'ghost'" in bad.stderr
