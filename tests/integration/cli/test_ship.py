"""`mlpilot ship` in embedded mode (typer's CliRunner, a real home) and the SDK pipeline under it: each gate's
verdict and numbers, where the pipeline stops, and that nothing after a failed gate changes anything."""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from mlpilot import Client
from mlpilot.cli.main import app
from mlpilot.client.ship import Gate, gate_from_event, is_classification, model_input, rollout_body, ship
from mlpilot.errors import InvalidArgument
from mlpilot.records import Event, RolloutSpec
from tests.factories import iris_frame

GATE = re.compile(r"^([✔✘–]) (.+?) +(pass|fail|skip)  (.*)$", re.MULTILINE)  # noqa: RUF001 - the skip mark


@dataclass
class Files:
    v1: Path  # LogisticRegression, the champion
    v2: Path  # LogisticRegression(C=2): as good or better, same inputs
    worse: Path  # DummyClassifier: always the most frequent class
    narrow: Path  # trained on two of the four inputs
    narrow_sample: Path
    garbage: Path
    sample: Path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    import joblib
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegression

    d = tmp_path_factory.mktemp("ship-files")
    X, y = iris_frame()
    narrow_cols = ["sepal_length", "sepal_width"]
    models = {
        "v1": LogisticRegression(max_iter=300).fit(X, y),
        "v2": LogisticRegression(C=2.0, max_iter=500).fit(X, y),
        "worse": DummyClassifier(strategy="most_frequent").fit(X, y),
        "narrow": LogisticRegression(max_iter=300).fit(X[narrow_cols], y),
    }
    for name, m in models.items():
        joblib.dump(m, d / f"{name}.joblib")
    X[narrow_cols].head(5).to_csv(d / "narrow.csv", index=False)
    X.head(5).to_csv(d / "sample.csv", index=False)
    (d / "garbage.joblib").write_bytes(b"this is not a model" * 20)
    return Files(
        v1=d / "v1.joblib",
        v2=d / "v2.joblib",
        worse=d / "worse.joblib",
        narrow=d / "narrow.joblib",
        narrow_sample=d / "narrow.csv",
        garbage=d / "garbage.joblib",
        sample=d / "sample.csv",
    )


@pytest.fixture
def home(tmp_path: Path, files: Files) -> Path:
    """A home where deployment ``iris`` serves iris:1 (registered from ``files.v1``) with a labelled reference."""
    X, y = iris_frame()
    home = tmp_path / "home"
    with Client(home=home) as c:
        v = c.register_model("iris", files.v1, sample=X.head(3), trust_pickle=True)
        c.register_dataset("iris-ref", X.assign(target=y.values), bind_to=v.ref)
        c.deploy("iris", v.ref)
    return home


def cli(home: Path, *args: str) -> tuple[int, str, str]:
    if args[:1] == ("ship",):
        args = (*args, "--trust-pickle")  # the test's own joblib files
    result = CliRunner().invoke(app, ["--home", str(home), *args], env={"MLPILOT_URL": None, "COLUMNS": "200"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def gates(out: str) -> list[tuple[str, str, str]]:
    """(name, verdict, message) of every gate line."""
    return [(name, verdict, message) for _, name, verdict, message in GATE.findall(out)]


def state(home: Path) -> tuple[dict[str, int], int, int, list[int]]:
    """The deployment's split and revision, how many rollouts it had, and the versions of model iris."""
    with Client(home=home) as c:
        dep = c.get_deployment("iris")
        return (
            dict(dep.spec.traffic),
            dep.revision,
            len(c.rollouts("iris")),
            [v.version for v in c.list_versions("iris")],
        )


# ---------------------------------------------------------------------------------------------- the command


def test_the_first_ship_creates_the_deployment(tmp_path: Path, files: Files) -> None:
    home = tmp_path / "fresh"
    code, out, _ = cli(home, "ship", str(files.v1), "-d", "iris", "--name", "iris", "--sample", str(files.sample))
    assert code == 0, out
    assert [(n, v) for n, v, _ in gates(out)] == [
        ("register", "pass"), ("signature", "skip"), ("smoke", "pass"), ("offline", "skip"), ("deploy", "pass")
    ]  # fmt: skip
    smoke = gates(out)[2][2]
    assert smoke.startswith("5 rows of the sample sample.csv in ") and "ms/row" in smoke
    assert out.strip().splitlines()[-1] == "shipped iris:1: deployment iris created"
    assert state(home) == ({"iris-v1": 100}, 1, 0, [1])


def test_a_compatible_better_model_passes_every_gate_and_starts_a_rollout(home: Path, files: Files) -> None:
    code, out, _ = cli(home, "ship", str(files.v2), "--deployment", "iris", "--no-wait")
    assert code == 0, out
    found = gates(out)
    assert [(n, v) for n, v, _ in found] == [
        ("register", "pass"), ("signature", "pass"), ("smoke", "pass"), ("offline", "pass"), ("rollout", "pass")
    ]  # fmt: skip
    msg = dict((n, m) for n, _, m in found)
    assert msg["register"].startswith("registered iris:2 (sklearn, ") and "signature of 4 inputs" in msg["register"]
    assert msg["signature"].startswith("iris:2 accepts the requests of iris:1 (4 inputs: sepal_length FP64")
    assert msg["smoke"].startswith("50 rows of the reference iris-ref:1 in ")
    offline = re.match(
        r"candidate accuracy ([\d.]+) vs champion ([\d.]+) \(\+([\d.]+) points, margin 2\.0\)", msg["offline"]
    )
    assert offline is not None, msg["offline"]
    assert (
        float(offline[1]) >= float(offline[2])
        and "agreement" in msg["offline"]
        and "on 150 labelled rows" in msg["offline"]
    )
    assert msg["rollout"].startswith("rollout 1 started (phase shadow; shadow 1m, then canary 10% → 50% → 100%)")
    assert "`mlpilot up`" in out.strip().splitlines()[-1]

    code, status, _ = cli(home, "rollout", "status", "iris", "--json")
    assert code == 0
    r = json.loads(status)
    assert (r["phase"], r["baseline"], r["candidate"], r["active"]) == ("shadow", "iris-v1", "iris-v2", True)
    spec = RolloutSpec.model_validate(r["spec"])
    assert [s.weight for s in spec.steps] == [10, 50, 100] and {s.min_samples for s in spec.steps} == {100}
    kinds = {a.kind.value: a for a in spec.analyses}
    assert set(kinds) == {"error_rate", "latency", "agreement", "performance"}
    assert not kinds["performance"].required and kinds["performance"].params["margin"] == 0.02
    # the live agreement floor follows what the offline gate measured (5 points of slack, at most 0.95)
    assert 0.9 <= kinds["agreement"].params["min_agreement"] <= 0.95
    traffic, _, rollouts, versions = state(home)
    assert traffic == {"iris-v1": 100, "iris-v2": 0} and rollouts == 1 and versions == [1, 2]


def test_an_incompatible_signature_stops_at_signature(home: Path, files: Files) -> None:
    before = state(home)
    code, out, err = cli(home, "ship", str(files.narrow), "-d", "iris", "--sample", str(files.narrow_sample))
    assert code == 1
    found = gates(out)
    assert [(n, v) for n, v, _ in found] == [("register", "pass"), ("signature", "fail")]
    assert "input 'petal_length' is missing; input 'petal_width' is missing" in found[1][2]
    assert err.strip().splitlines()[-1].startswith("error: stopped at signature: iris:2 does not accept the requests")
    traffic, revision, rollouts, versions = state(home)
    assert (traffic, revision, rollouts) == before[:3]  # no rollout, the deployment untouched
    assert versions == [1, 2]  # registered: the registry keeps what was tried


def test_without_a_sample_a_model_that_cannot_read_the_champions_inputs_fails_at_signature(
    home: Path, files: Files
) -> None:
    code, out, _ = cli(home, "ship", str(files.narrow), "-d", "iris")
    assert code == 1
    found = gates(out)
    assert [(n, v) for n, v, _ in found] == [("register", "pass"), ("signature", "fail")]
    assert "no signature" in found[0][2]
    assert "cannot predict on the sample" in found[1][2]
    assert state(home)[2:] == (0, [1, 2])
    # the same bytes again reuse the unsigned version; with --sample they get a signature (a new version)
    assert "is already iris:2" in gates(cli(home, "ship", str(files.narrow), "-d", "iris")[1])[0][2]
    code, out, _ = cli(home, "ship", str(files.narrow), "-d", "iris", "--sample", str(files.narrow_sample))
    found = gates(out)
    assert code == 1 and found[0][2].startswith("registered iris:3") and "input 'petal_width' is missing" in found[1][2]


def test_a_much_worse_model_stops_at_offline(home: Path, files: Files) -> None:
    code, out, err = cli(home, "ship", str(files.worse), "-d", "iris")
    assert code == 1
    found = gates(out)
    assert [(n, v) for n, v, _ in found] == [("register", "pass"), ("signature", "pass"), ("smoke", "pass"),
                                             ("offline", "fail")]  # fmt: skip
    assert re.match(r"candidate accuracy 0\.333 vs champion 0\.9\d\d \(−6\d\.\d points, margin 2\.0\)", found[3][2])  # noqa: RUF001
    assert "stopped at offline" in err
    assert state(home)[:3] == ({"iris-v1": 100}, 1, 0)


def test_a_wider_margin_lets_a_worse_model_through_offline(home: Path, files: Files) -> None:
    code, out, _ = cli(home, "ship", str(files.worse), "-d", "iris", "--margin", "0.9", "--shadow", "0", "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["ok"] and report["outcome"] == "rollout_started"
    offline = next(g for g in report["gates"] if g["name"] == "offline")
    assert offline["verdict"] == "pass" and offline["numbers"]["candidate"] == pytest.approx(1 / 3)
    with Client(home=home) as c:
        spec = c.rollout("iris").spec
    assert spec.shadow is None and "agreement" not in {a.kind.value for a in spec.analyses}


@pytest.mark.parametrize("which", ["garbage", "missing"])
def test_an_unreadable_file_stops_at_register(home: Path, files: Files, which: str) -> None:
    path = files.garbage if which == "garbage" else files.garbage.with_name("nope.joblib")
    code, out, err = cli(home, "ship", str(path), "-d", "iris")
    assert code == 1
    found = gates(out)
    assert [(n, v) for n, v, _ in found] == [("register", "fail")]
    assert ("cannot tell which kind of model" if which == "garbage" else "does not exist") in found[0][2]
    assert "upload-" not in found[0][2] and "/tmp/" not in found[0][2].replace(str(path), "")  # the user's file name
    assert "stopped at register" in err
    assert state(home) == ({"iris-v1": 100}, 1, 0, [1])


def test_the_same_bytes_reuse_their_version_and_the_champion_is_left_alone(home: Path, files: Files) -> None:
    code, out, _ = cli(home, "ship", str(files.v1), "-d", "iris")
    assert code == 0, out
    found = gates(out)
    assert [(n, v) for n, v, _ in found] == [("register", "pass"), ("rollout", "skip")]
    assert "is already iris:1 (same sha256" in found[0][2] and "already serves" in found[1][2]
    assert state(home) == ({"iris-v1": 100}, 1, 0, [1])


def test_a_second_ship_during_a_rollout_fails_at_the_rollout_gate(home: Path, files: Files) -> None:
    assert cli(home, "ship", str(files.v2), "-d", "iris")[0] == 0
    code, out, _ = cli(home, "ship", str(files.worse), "-d", "iris", "--margin", "0.9")
    assert code == 1
    name, verdict, message = gates(out)[-1]
    assert (name, verdict) == ("rollout", "fail") and "already has rollout 1" in message
    assert state(home)[2] == 1


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ((), "Missing option '--deployment'"),
        (("-d", "iris", "--steps", "50,10"), "must increase"),
        (("-d", "iris", "--steps", "ten"), "comma-separated"),
        (("-d", "iris", "--step-duration", "soon"), "bad duration"),
        (("-d", "iris", "--sample", "/no/such.csv"), "does not exist"),
    ],
)
def test_usage_errors_exit_2_and_register_nothing(home: Path, files: Files, args: tuple[str, ...], needle: str) -> None:
    code, out, err = cli(home, "ship", str(files.v2), *args)
    assert code == 2, out
    assert needle in " ".join(err.split()), err
    assert state(home)[3] == [1]


# ---------------------------------------------------------------------------------------------- the SDK pipeline


def test_ship_waits_and_reports_a_manual_promotion_as_the_last_gates(home: Path, files: Files) -> None:
    """``wait=True`` follows the rollout: an operator promotes it from another process while ship waits."""

    def operator() -> None:
        with Client(home=home, actor="operator") as c:
            deadline = time.monotonic() + 30
            while not c.rollouts("iris", active=True) and time.monotonic() < deadline:
                time.sleep(0.1)
            c.promote_rollout(c.rollouts("iris", active=True)[0].id)

    seen: list[Gate] = []
    thread = threading.Thread(target=operator)
    with Client(home=home) as c:
        thread.start()
        report = ship(
            c, files.v2, "iris", shadow="10m", wait=True, timeout_s=60, on_gate=seen.append, trust_pickle=True
        )
        thread.join(30)
        assert report.ok and report.outcome == "promoted" and report.version == "iris:2"
        assert [g.name for g in report.gates] == ["register", "signature", "smoke", "offline", "rollout", "shadow",
                                                  "promote"]  # fmt: skip
        assert seen == report.gates  # reported as they happened, in order
        assert "promoted by operator" in report.gates[5].message
        assert report.gates[6].message.endswith(": iris-v2 100%")  # the controller's reason, then the split
        assert c.get_deployment("iris").spec.traffic == {"iris-v2": 100}


def test_ship_waits_and_an_abort_fails_the_phase_it_happened_in(home: Path, files: Files) -> None:
    def operator() -> None:
        with Client(home=home, actor="operator") as c:
            deadline = time.monotonic() + 30
            while not c.rollouts("iris", active=True) and time.monotonic() < deadline:
                time.sleep(0.1)
            c.abort_rollout(c.rollouts("iris", active=True)[0].id)

    thread = threading.Thread(target=operator)
    with Client(home=home) as c:
        thread.start()
        report = ship(c, files.v2, "iris", shadow="0", steps="25,100", wait=True, timeout_s=60, trust_pickle=True)
        thread.join(30)
        assert not report.ok and report.outcome == "aborted"
        failed = report.failed_gate
        assert failed is not None and failed.name == "canary 25%" and failed.message.startswith("aborted by operator")
        assert report.gates[-1] is failed
        assert c.get_deployment("iris").spec.traffic == {"iris-v1": 100}


def test_ship_times_out_with_the_rollout_still_running(home: Path, files: Files) -> None:
    with Client(home=home) as c:
        report = ship(c, files.v2, "iris", shadow="10m", wait=True, timeout_s=1, trust_pickle=True)
        assert report.outcome == "timed_out" and not report.ok
        last = report.gates[-1]
        assert last.name == "shadow" and last.failed and "the rollout goes on" in last.message
        assert c.rollout("iris").active  # nobody aborted it


def test_offline_compares_regressors_by_relative_mae(tmp_path: Path) -> None:
    import joblib
    from sklearn.dummy import DummyRegressor
    from sklearn.linear_model import LinearRegression, Ridge

    X, _ = iris_frame()
    features, target = X.drop(columns="petal_width"), X["petal_width"]
    for name, m in {"lr": LinearRegression(), "ridge": Ridge(alpha=0.01), "mean": DummyRegressor()}.items():
        joblib.dump(m.fit(features, target), tmp_path / f"{name}.joblib")
    with Client(home=tmp_path / "home") as c:
        v = c.register_model("petal", tmp_path / "lr.joblib", sample=features.head(3), trust_pickle=True)
        c.register_dataset("petal-ref", features.assign(target=target), bind_to=v.ref)
        c.deploy("petal", v.ref)
        good = ship(c, tmp_path / "ridge.joblib", "petal", wait=False, trust_pickle=True)
        bad = ship(c, tmp_path / "mean.joblib", "petal", wait=False, trust_pickle=True)
    offline = next(g for g in good.gates if g.name == "offline")
    assert offline.verdict == "pass" and offline.numbers["metric"] == "mae", offline
    assert abs(offline.numbers["relative_difference"]) < 0.02
    assert bad.failed_gate is not None and bad.failed_gate.name == "offline"
    assert bad.failed_gate.message.startswith("candidate MAE ") and bad.failed_gate.numbers["relative_difference"] > 1
    perf = next(
        a for a in RolloutSpec.model_validate(good.gates[-1].numbers["spec"]).analyses if a.kind.value == "performance"
    )
    assert perf.params["metric"] == "mae" and 0 < perf.params["margin"] < 0.02  # 2% of the champion's MAE


# ---------------------------------------------------------------------------------------------- pure parts


def _event(action: str, before: dict[str, Any] | None, after: dict[str, Any]) -> Event:
    now = datetime.now(timezone.utc)
    return Event(id=1, ts=now, actor="mlpilot-rollouts", action=f"rollout.{action}", subject="rollout:1",
                 before=before, after=after)  # fmt: skip


def test_rollout_transitions_become_gates() -> None:
    spec = RolloutSpec.model_validate(rollout_body("iris:2", shadow="1m", steps="10,50", step_duration="1m",
                                                   step_samples=5))  # fmt: skip
    analyses = [{"name": "latency", "verdict": "fail", "message": "p99 1.9x", "statistics": {"ratio": 1.9}}]
    inputs = {"step_samples": 42, "elapsed_s": 61.5, "baseline": {"requests": 400}}
    after = {"reason": "latency failed: p99 1.9x", "analyses": analyses, "inputs": inputs}
    rollback = gate_from_event(_event("rollback", {"phase": "canary", "step": 1}, after), spec)
    assert rollback == Gate(
        "canary 50%",
        "fail",
        "latency failed: p99 1.9x — latency fail — 42 candidate requests in 61.5 s",
        {"action": "rollback", "reason": "latency failed: p99 1.9x", "candidate_requests": 42,
         "baseline_requests": 400, "elapsed_s": 61.5, "analyses": analyses},
    )  # fmt: skip
    advance = gate_from_event(
        _event("advance", {"phase": "shadow", "step": 0}, {"reason": "the shadow phase passed"}), spec
    )
    assert advance is not None and (advance.name, advance.verdict) == ("shadow", "pass")
    assert gate_from_event(_event("begin", {"phase": "pending", "step": 0}, {"reason": "started"}), spec) is None
    assert gate_from_event(_event("started", None, {"spec": {}}), spec) is None
    after = {"reason": "served", "phase": "promoted", "traffic": {"a": 0, "b": 100}}
    done = gate_from_event(_event("complete", {"phase": "promoting", "step": 1}, after), spec)
    assert done is not None and (done.name, done.verdict, done.message) == ("promote", "pass", "served: b 100%")


def test_rollout_body_validates_options_and_drops_the_shadow_when_disabled() -> None:
    body = rollout_body("iris:2", shadow="0", steps="5,100", step_duration="30s", step_samples=0)
    assert "shadow" not in body and [a["kind"] for a in body["analyses"]] == ["error_rate", "latency", "performance"]
    for bad in ({"steps": "0,100"}, {"steps": "10,101"}, {"step_duration": "-1m"}):
        kwargs = {"shadow": "1m", "steps": "10,100", "step_duration": "1m", "step_samples": 10, **bad}
        with pytest.raises(InvalidArgument):
            rollout_body("iris:2", **kwargs)  # type: ignore[arg-type]


def test_task_detection_and_model_inputs() -> None:
    assert is_classification([0, 1, 2], [0.0, 1.0, 2.0]) and is_classification(["a", "b"], ["a", "a"])
    assert not is_classification([0.5, 1.5], [0.4, 1.6]) and not is_classification([1, 2, 3], [1.1, 2.0, 2.9])
    frame = pd.DataFrame({"b": [1.0, 2.0], "a": [3.0, 4.0]})
    columnar = {"inputs": [{"name": "a", "datatype": "FP64", "shape": [-1]}, {"name": "b", "datatype": "FP64",
                "shape": [-1]}], "columnar": True}  # fmt: skip
    assert list(model_input(frame, columnar).columns) == ["a", "b"]
    tensor = {"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [-1, 2]}]}
    arr = model_input(frame, tensor)
    assert arr.dtype.name == "float32" and arr.shape == (2, 2)
    with pytest.raises(InvalidArgument, match=r"lacks the model's inputs \['c'\]"):
        model_input(frame, {**columnar, "inputs": [{"name": "c", "datatype": "FP64", "shape": [-1]}]})
