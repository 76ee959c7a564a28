"""`mlpilot monitors …`, `mlpilot slos …` and `mlpilot alerts` against a real home (SDK + CLI processes)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mlpilot import Client
from mlpilot.errors import InvalidArgument
from tests.factories import iris_frame
from tests.helpers import run_cli


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sklearn.linear_model import LogisticRegression

    X, y = iris_frame()
    home = tmp_path_factory.mktemp("monitors-cli") / "home"
    with Client(home=home) as c:
        v = c.register_model("iris", LogisticRegression(max_iter=300).fit(X, y), sample=X.head(3))
        c.register_dataset("iris-ref", X.assign(target=y.values), bind_to=v.ref)
        c.deploy("iris", v.ref)
        for i in range(0, 150, 5):
            c.predict("iris", X.iloc[i : i + 5])
        deadline = time.monotonic() + 10
        while len(c.logs("iris", limit=1000)) < 150 and time.monotonic() < deadline:
            time.sleep(0.2)
    return home


def test_default_monitors_are_listed(home: Path) -> None:
    out = run_cli("monitors", "list", "iris", home=home).stdout
    assert "traffic" in out and "drift" in out and "never run" in out
    data = json.loads(run_cli("monitors", "list", "--json", home=home).stdout)
    assert {m["name"] for m in data} == {"traffic", "drift"}


def test_create_run_and_show_a_monitor(home: Path) -> None:
    run_cli(
        "monitors",
        "create",
        "iris",
        "drift-ks",
        "--kind",
        "drift",
        "--window",
        "1d",
        "--every",
        "5m",
        "--param",
        "numeric_test=ks",
        "--param",
        "alpha=0.01",
        "--feature",
        "petal_width",
        "--feature",
        "sepal_width",
        home=home,
    )
    out = run_cli("monitors", "run", "iris", "drift-ks", home=home).stdout
    assert "ok" in out and "0 of 2 features drifted" in out and "petal_width" in out
    shown = json.loads(run_cli("monitors", "show", "iris", "drift-ks", "--json", home=home).stdout)
    assert shown["monitor"]["spec"]["params"] == {"numeric_test": "ks", "alpha": 0.01}
    assert [r["status"] for r in shown["results"]] == ["ok"] and shown["results"][0]["rows"] == 150
    text = run_cli("monitors", "show", "iris", "drift-ks", home=home).stdout
    assert "time series" in text and "per feature" in text


def test_slo_alert_and_listing(home: Path) -> None:
    run_cli(
        "slos",
        "create",
        "iris",
        "instant",
        "--indicator",
        "latency",
        "--threshold",
        "0.0001",
        "--objective",
        "0.99",
        "--rule",
        "1d/1h@2:ticket",
        home=home,
    )
    out = run_cli("slos", "check", "iris", "instant", home=home).stdout
    assert "alert fired" in out and "ticket" in out
    assert "alert fired" not in run_cli("slos", "check", "iris", "instant", home=home).stdout  # deduplicated
    alerts = json.loads(run_cli("alerts", "--status", "firing", "--json", home=home).stdout)
    assert [(a["slo"], a["severity"]) for a in alerts] == [("instant", "ticket")]
    listed = run_cli("slos", "list", "iris", home=home).stdout
    assert "availability" in listed and "instant" in listed and "100.0000%" in listed  # every request succeeded
    with Client(home=home) as c:
        assert [e.action for e in c.events(action="alert.*")] == ["alert.fired"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("monitors", "create", "iris", "x", "--kind", "drift", "--feature", "nope"), "feature 'nope' is not an input"),
        (("monitors", "create", "iris", "x", "--kind", "magic"), "kind"),
        (("monitors", "create", "iris", "x", "--kind", "drift", "--every", "soon"), "bad duration"),
        (("monitors", "create", "iris", "x", "--kind", "drift", "--segment", "oops"), "KEY=VALUE"),
        (("monitors", "run", "iris", "nope"), "no monitor 'nope'"),
        (("monitors", "list", "nope"), "nope"),
        (("slos", "create", "iris", "s", "--indicator", "latency", "--objective", "0.9"), "threshold"),
        (("slos", "create", "iris", "s", "--indicator", "availability", "--objective", "2"), "objective"),
        (
            ("slos", "create", "iris", "s", "--indicator", "availability", "--objective", "0.9", "--rule", "1h"),
            "LONG/SHORT",
        ),
        (("alerts", "--status", "open"), "firing or resolved"),
    ],
)
def test_bad_input_is_one_clear_line(home: Path, args: tuple[str, ...], message: str) -> None:
    result = run_cli(*args, home=home, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.startswith("error:") and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_sdk_monitor_roundtrip(home: Path) -> None:
    with Client(home=home) as c:
        mon = c.create_monitor("iris", "traffic-1m", {"kind": "traffic", "every": "1m", "window": "1d"})
        assert mon.spec.every.total_seconds() == 60
        res = c.run_monitor("iris", "traffic-1m")
        assert res.detail["requests"] == 30 and res.value == 0.0
        assert [r.id for r in c.monitor_results("iris", "traffic-1m")] == [res.id]
        with pytest.raises(InvalidArgument):
            c.create_monitor("iris", "bad", {"kind": "traffic", "window_rows": 1})
        c.delete_monitor("iris", "traffic-1m")
        assert "traffic-1m" not in {m.name for m in c.list_monitors("iris")}
