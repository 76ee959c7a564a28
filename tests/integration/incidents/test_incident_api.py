"""Diagnosis, remediations and healing policies through the API: the SDK (embedded, over the whole server app) and
the CLI in a subprocess, on the same home as a platform that places the incident; bad input gets a 4xx that says
what was wrong and changes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from mlpilot import Client
from mlpilot.app import Platform, build_platform
from mlpilot.clock import VirtualClock
from mlpilot.errors import FailedPrecondition, InvalidArgument, NotFound
from mlpilot.incidents.evidence import Diagnosis, Hypothesis, Suggestion
from mlpilot.monitors.alerts import AlertChange
from mlpilot.records import Alert, Incident
from mlpilot.settings import Settings
from tests.factories import iris_frame
from tests.helpers import run_cli

START = datetime(2026, 12, 6, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    from sklearn.linear_model import LogisticRegression

    home = tmp_path / "home"
    X, y = iris_frame()
    with Client(home=home, actor="tester") as c:
        for C in (1.0, 0.5):
            c.register_model("iris", LogisticRegression(C=C, max_iter=300).fit(X, y), sample=X.head(3))
        c.deploy("iris", "iris:1", variant="stable")
        c.deploy("iris", "iris:2", variant="canary")
        c.set_traffic("iris", {"stable": 80, "canary": 20})
    return home


@pytest.fixture
def platform(home: Path) -> Iterator[Platform]:
    p = build_platform(Settings(home=home), clock=VirtualClock(START))
    try:
        yield p
    finally:
        p.close()


def _incident(p: Platform) -> Incident:
    alert = Alert(id=1, deployment="iris", slo="availability", severity="page", status="firing", fired_at=START,
                  updated_at=START, summary="availability burning")  # fmt: skip
    [inc] = p.incidents.on_alerts([AlertChange("fired", alert)])
    return inc


def test_healing_policy_api_and_cli(home: Path) -> None:
    with Client(home=home, actor="ops") as c:
        defaults = c.healing_policy("iris")
        assert (defaults["mode"], defaults["min_confidence"]) == ("suggest", 0.7)
        set_ = c.set_healing_policy("iris", mode="auto", approval=["disable_variant"], verify_after_s=60)
        assert set_["mode"] == "auto" and set_["approval"] == ["disable_variant"] and set_["verify_after_s"] == 60
        assert c.healing_policy("iris") == set_
        for fields, message in (
            ({"mode": "yolo"}, "healing mode must be one of"),
            ({"allowed": ["explode"]}, "unknown actions ['explode']"),
            ({"min_confidence": 2}, "min_confidence"),
            ({"verify_after_s": 0}, "verify_after_s"),
            ({"colour": "red"}, "colour"),
        ):
            with pytest.raises(InvalidArgument, match=message.replace("[", r"\[").replace("]", r"\]")):
                c.set_healing_policy("iris", **fields)
        assert c.healing_policy("iris") == set_  # nothing written by a refused change
        with pytest.raises(NotFound, match="ghost"):
            c.healing_policy("ghost")
        with pytest.raises(NotFound, match="ghost"):
            c.set_healing_policy("ghost", mode="auto")

    def policy(*args: str) -> dict[str, object]:
        out = run_cli("incidents", "policy", "iris", *args, "--json", home=home).stdout
        return dict(json.loads(out))

    p = policy("--min-confidence", "0.9")  # the other fields keep their values
    assert (p["mode"], p["min_confidence"], p["verify_after_s"]) == ("auto", 0.9, 60)
    assert p["approval"] == ["disable_variant"]
    p = policy("--allowed", "notify", "--allowed", "disable_variant")
    assert sorted(p["allowed"]) == ["disable_variant", "notify"] and p["min_confidence"] == 0.9  # type: ignore[arg-type]
    p = policy("--no-approval")
    assert p["approval"] == [] and sorted(p["allowed"]) == ["disable_variant", "notify"]  # type: ignore[arg-type]
    bad = run_cli("incidents", "policy", "iris", "--mode", "yolo", home=home, check=False)
    assert bad.returncode == 1 and "healing mode must be one of" in bad.stderr + bad.stdout
    p = policy("--reset")
    assert (p["mode"], p["min_confidence"], p["approval"]) == ("suggest", 0.7, [])
    assert "shift_traffic" in p["allowed"]  # type: ignore[operator]


def test_diagnosis_and_remediations_through_the_api_and_cli(home: Path, platform: Platform) -> None:
    p = platform
    inc = _incident(p)  # placed and diagnosed on open: no logged requests → inconclusive
    with Client(home=home, actor="ops") as c:
        d = c.incident_diagnosis(inc.id)
        assert d["verdict"] == "inconclusive" and "logged requests" in d["summary"]
        again = c.diagnose_incident(inc.id)
        assert again["verdict"] == "inconclusive" and again["symptom"]["kind"] == "errors"
        assert c.incident_remediations(inc.id) == []
        with pytest.raises(FailedPrecondition, match="no suggested remediation waiting"):
            c.approve_remediation(inc.id)
        with pytest.raises(FailedPrecondition, match="no suggested remediation waiting"):
            c.reject_remediation(inc.id, "nothing to reject")
        with pytest.raises(NotFound):
            c.incident_diagnosis(999)
        with pytest.raises(NotFound):
            c.diagnose_incident(999)

        # a diagnosis with a suggestion (suggest mode, the default): it waits for a person
        top = Hypothesis("bad_variant", "variant:canary", 0.9, ("variant:canary",), "the canary fails",
                         Suggestion("disable_variant", "variant:canary"))  # fmt: skip
        healer = p.incidents.healer
        assert healer is not None
        healer.record(inc, Diagnosis("diagnosed", (top,), (), START, "the canary fails"), "errors", "avail", START)
        assert healer.remediate(inc, Diagnosis("diagnosed", (top,), (), START, "the canary fails")) is not None
        [r] = c.incident_remediations(inc.id)
        assert r["state"] == "suggested" and r["action"]["kind"] == "disable_variant"

        shown = run_cli("incidents", "show", str(inc.id), home=home).stdout
        assert "bad_variant" in shown and "disable_variant" in shown and "suggested" in shown
        out = run_cli("incidents", "approve", str(inc.id), home=home).stdout
        assert "executed" in out
        assert c.get_deployment("iris").spec.traffic == {"stable": 100, "canary": 0}
        [r] = c.incident_remediations(inc.id)
        assert r["state"] == "executed" and r["history"][1]["state"] == "approved"
        assert c.incident(inc.id).status.value == "mitigating"
        again = run_cli("incidents", "approve", str(inc.id), home=home, check=False)
        assert again.returncode == 1 and "no suggested remediation" in again.stderr + again.stdout
        listed = run_cli("incidents", "diagnose", str(inc.id), "--json", home=home).stdout
        assert json.loads(listed)["verdict"] == "inconclusive"
