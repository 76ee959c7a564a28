"""`mlpilot rollout …` and `mlpilot releases` against a real home (CLI processes; the controller ticked by
`mlpilot rollout tick`, as `mlpilot up` would)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mlpilot import Client
from tests.factories import iris_frame
from tests.helpers import run_cli


@pytest.fixture
def home(tmp_path: Path) -> Path:
    from sklearn.linear_model import LogisticRegression

    X, y = iris_frame()
    home = tmp_path / "home"
    with Client(home=home) as c:
        for C in (1.0, 0.5):
            c.register_model("iris", LogisticRegression(C=C, max_iter=300).fit(X, y), sample=X.head(3))
        c.register_dataset("iris-ref", X.assign(target=y.values))
        c.deploy("iris", "iris:1")
    return home


def _traffic(home: Path, n: int = 60) -> None:
    X, _ = iris_frame()
    with Client(home=home) as c:
        for i in range(n):
            c.predict("iris", X.iloc[[i % 150]])
        deadline = time.monotonic() + 10
        while len(c.logs("iris", limit=100_000)) < n and time.monotonic() < deadline:
            time.sleep(0.2)


def test_start_status_tick_pause_resume_promote(home: Path) -> None:
    out = run_cli(
        "rollout",
        "start",
        "iris",
        "iris:2",
        "--steps",
        "20,100",
        "--step-duration",
        "4s",
        "--step-samples",
        "5",
        "--analysis",
        "error_rate:min_samples=5,tolerance=0.9",
        "--promote-alias",
        "champion",
        home=home,
    ).stdout
    assert "iris-v1 → iris-v2" in out and "canary step 1/2 (20%)" in out
    status = json.loads(run_cli("rollout", "status", "iris", "--json", home=home).stdout)
    assert status["phase"] == "canary" and status["spec"]["steps"][0]["weight"] == 20

    out = run_cli("rollout", "pause", "iris", home=home).stdout
    assert "paused (in canary)" in out
    out = run_cli("rollout", "resume", "iris", home=home).stdout
    assert "canary step 1/2" in out
    _traffic(home, 100)
    time.sleep(4.1)  # the step's minimum duration
    out = run_cli("rollout", "tick", home=home).stdout
    assert "1 rollout(s) moved" in out and "canary step 2/2 (100%)" in out, run_cli(
        "rollout", "status", "iris", "--json", home=home
    ).stdout
    out = run_cli("rollout", "status", "iris", "--decisions", home=home).stdout
    assert "advance" in out and "error_rate" in out and "pass" in out

    out = run_cli("rollout", "promote", "iris", home=home).stdout
    assert "promoted" in out
    with Client(home=home) as c:
        assert c.get_deployment("iris").spec.traffic == {"iris-v2": 100}
        assert "champion" in c.get_version("iris:2").aliases
    listed = run_cli("rollout", "list", home=home).stdout
    assert "promoted" in listed and "iris-v2" in listed


def test_abort_restores_the_split_and_a_release_is_listed(home: Path) -> None:
    run_cli("rollout", "start", "iris", "iris:2", "--reference", "iris-ref:1", "--shadow", "1m", home=home)
    with Client(home=home) as c:
        assert c.get_deployment("iris").spec.shadows == ["iris-v2"]
    out = run_cli("releases", "list", "iris", home=home).stdout
    assert "candidate" in out and "model=iris:2" in out and "reference=iris-ref:1" in out
    out = run_cli("rollout", "abort", "iris", home=home).stdout
    assert "aborted" in out
    with Client(home=home) as c:
        dep = c.get_deployment("iris")
        assert dep.spec.traffic == {"iris-v1": 100} and dep.spec.shadows == []
        assert [r.status for r in c.releases("iris")] == ["rolled_back"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("iris", "iris:2", "--steps", "50,10"), "must increase"),
        (("iris", "iris:2", "--steps", "five"), "comma-separated percentages"),
        (("iris", "iris:9"), "has no version 9"),
        (("ghost", "iris:2"), "no deployment named 'ghost'"),
        (("iris", "iris:2", "--strategy", "zigzag"), "'canary', 'blue_green', 'ab' or 'bandit'"),
        (("iris", "iris:2", "--analysis", "latency:bogus=1"), "bogus"),
        (("iris", "iris:2", "--analysis", "latency:max_ratio"), "KIND:KEY=VALUE"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_1(home: Path, args: tuple[str, ...], message: str) -> None:
    result = run_cli("rollout", "start", *args, home=home, check=False)
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr
    with Client(home=home) as c:
        assert c.rollouts("iris") == []


def test_a_second_rollout_is_refused(home: Path) -> None:
    run_cli("rollout", "start", "iris", "iris:2", home=home)
    result = run_cli("rollout", "start", "iris", "iris:2", "--variant", "again", home=home, check=False)
    assert result.returncode == 1 and "already has rollout 1" in result.stderr
    result = run_cli("rollout", "status", "nowhere", home=home, check=False)
    assert result.returncode == 1 and "no deployment named 'nowhere'" in result.stderr
