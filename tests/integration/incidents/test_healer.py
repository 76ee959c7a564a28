"""The healer on a real embedded platform (SQLite store, deployments, request log, the real actuator), driven on a
virtual clock: suggest → approve → verify; auto → not helped → undone and escalated; reject; reconsider a suggestion
that only lacked confidence; an impossible action; verification that waits for measurements.

The diagnoses are given (the RCA engine has its own tests and the end-to-end loop in tests/e2e runs it for real);
everything after the diagnosis is the production path."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from mlpilot.app import Platform, build_platform
from mlpilot.clock import VirtualClock
from mlpilot.errors import FailedPrecondition, InvalidArgument
from mlpilot.incidents.actuator import PlatformActuator
from mlpilot.incidents.evidence import Diagnosis, Hypothesis, Suggestion
from mlpilot.incidents.healer import Healer
from mlpilot.incidents.healing import HealingPolicy
from mlpilot.monitors.alerts import AlertChange
from mlpilot.records import Alert, Incident, IncidentStatus
from mlpilot.serving.dataplane import InferenceRecord
from mlpilot.settings import Settings
from mlpilot.telemetry.reqlog import RequestLog
from tests.factories import iris_frame
from tests.helpers import run_cli

START = datetime(2026, 12, 6, 8, 0, tzinfo=timezone.utc)


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    from sklearn.linear_model import LogisticRegression

    from mlpilot import Client

    home = tmp_path / "home"
    X, y = iris_frame()
    with Client(home=home, actor="tester") as c:
        for C in (1.0, 0.5):
            c.register_model("iris", LogisticRegression(C=C, max_iter=300).fit(X, y), sample=X.head(3))
    # the service places incidents only; this test drives the healer itself
    p = build_platform(Settings(home=home, incidents={"rca": False}), clock=VirtualClock(START))
    p.deployments.deploy("iris", "iris:1", "tester", variant="stable")
    p.deployments.deploy("iris", "iris:2", "tester", variant="canary")
    p.deployments.set_traffic("iris", {"stable": 80, "canary": 20}, "tester")
    try:
        yield p
    finally:
        p.close()


def healer(p: Platform, **policy: object) -> Healer:
    h = Healer(
        p.store,
        p.feedback,
        PlatformActuator(p.store, p.deployments, p.rollouts, p.registry, p.clock),
        p.clock,
        defaults=HealingPolicy(verify_after=timedelta(minutes=5), cooldown=timedelta(0), **policy),  # type: ignore[arg-type]
        move=p.incidents.move,
        notify=p.incidents.notify,
    )
    return h


def log_rows(p: Platform, start: datetime, minutes: float, n: int, error_share: float, variant: str = "canary") -> None:
    """``n`` requests spread over ``minutes`` from ``start``; ``error_share`` of them failed."""
    log = RequestLog(p.settings.log_root())
    log.start()
    X, _ = iris_frame()
    for i in range(n):
        ts = start.timestamp() + i * minutes * 60 / n
        failed = i < round(error_share * n)
        log.append(InferenceRecord(ts=ts, request_id=uuid.uuid4().hex, deployment="iris", variant=variant,
                                   model="iris:2", status="error" if failed else "ok", latency_s=0.01,
                                   error="boom" if failed else None, inputs=X.iloc[[i % len(X)]],
                                   outputs=None if failed else {"predict": np.array([0])}))  # fmt: skip
    log.stop()


def open_incident(p: Platform) -> Incident:
    at = p.clock.now()
    alert = Alert(
        id=1, deployment="iris", slo="availability", severity="ticket", status="firing", fired_at=at, updated_at=at,
        summary="availability burning",
    )  # fmt: skip
    [inc] = p.incidents.on_alerts([AlertChange("fired", alert)])
    return inc


def diagnosis(
    action: str, target: str, confidence: float, onset: datetime, params: dict[str, object] | None = None
) -> Diagnosis:
    sug = Suggestion(action, target, params or {})
    top = Hypothesis("bad_variant", "variant:canary", confidence, ("variant:canary",), "the canary fails", sug)
    return Diagnosis("diagnosed", (top,), (), onset, f"canary fails ({confidence:.0%})")


def remediate(h: Healer, inc: Incident, d: Diagnosis) -> dict[str, object] | None:
    """What ``Healer.handle`` does after its own diagnosis: record it (the symptom's kind and onset), remediate."""
    assert d.onset is not None
    h.record(inc, d, "errors", "availability", d.onset)
    return h.remediate(inc, d)


def advance(p: Platform, minutes: float) -> None:
    assert isinstance(p.clock, VirtualClock)
    p.clock.advance(minutes * 60)


def test_suggest_then_approve_then_verified(platform: Platform) -> None:
    p = platform
    log_rows(p, START - timedelta(minutes=60), 50, 200, 0.0)  # a healthy baseline
    log_rows(p, START - timedelta(minutes=10), 10, 100, 0.6)  # the canary fails
    inc = open_incident(p)
    h = healer(p)  # suggest mode (the default)
    d = diagnosis("disable_variant", "variant:canary", 0.9, START - timedelta(minutes=10))
    first = remediate(h, inc, d)
    assert first is not None and first["state"] == "suggested"
    assert remediate(h, inc, d) is None  # one open remediation at a time
    [r] = h.remediations(inc.id)
    assert r["state"] == "suggested" and r["decision"]["checks"]["mode_auto"] is False
    assert r["decision"]["reason"].startswith("waits for approval: mode_auto")
    assert p.store.get_deployment("iris").spec.traffic == {"stable": 80, "canary": 20}  # nothing changed yet

    done = h.approve(inc.id, "alice")
    assert done == {"id": r["id"], "state": "executed"}
    assert p.store.get_deployment("iris").spec.traffic == {"stable": 100, "canary": 0}
    assert p.store.get_incident(inc.id).status is IncidentStatus.MITIGATING
    with pytest.raises(FailedPrecondition, match="no suggested remediation waiting"):
        h.approve(inc.id, "alice")

    log_rows(p, START + timedelta(minutes=1), 5, 100, 0.0, variant="stable")  # after the action: healthy
    advance(p, 2)
    assert h.verify_due() == []  # not due before verify_after
    advance(p, 4)
    [v] = h.verify_due()
    assert v["state"] == "verified" and v["helped"] is True, v
    [r] = h.remediations(inc.id)
    assert [x["state"] for x in r["history"]] == ["suggested", "approved", "executed", "verified"]
    assert [x["actor"] for x in r["history"]][1:3] == ["alice", "alice"] and r["decision"]["approved_by"] == "alice"
    assert r["during"] > r["baseline"] and r["inverse"]["kind"] == "shift_traffic"
    assert p.store.get_incident(inc.id).status is IncidentStatus.MITIGATED


def test_an_auto_action_that_did_not_help_is_undone_and_escalated(platform: Platform) -> None:
    p = platform
    log_rows(p, START - timedelta(minutes=60), 50, 200, 0.0)
    log_rows(p, START - timedelta(minutes=10), 10, 100, 0.6)
    inc = open_incident(p)
    h = healer(p, mode="auto", min_confidence=0.7)
    out = remediate(h, inc, diagnosis("disable_variant", "variant:canary", 0.9, START - timedelta(minutes=10)))
    assert out is not None and out["state"] == "executed"
    assert p.store.get_deployment("iris").spec.traffic == {"stable": 100, "canary": 0}
    log_rows(p, START + timedelta(minutes=1), 5, 100, 0.6, variant="stable")  # the wrong culprit: still failing
    advance(p, 6)
    [v] = h.verify_due()
    assert v["state"] == "reverted" and v["helped"] is False and "closed" in v["reason"]
    assert p.store.get_deployment("iris").spec.traffic == {"stable": 80, "canary": 20}  # undone
    cur = p.store.get_incident(inc.id)
    assert cur.status is IncidentStatus.OPEN and cur.severity == "page"  # escalated
    actions = [e.action for e in p.store.list_events(subject=f"incident:{inc.id}", limit=100)]
    assert "remediation.reverted" in actions and "incident.escalated" in actions


def test_verification_waits_for_measurements_then_gives_up(platform: Platform) -> None:
    p = platform
    log_rows(p, START - timedelta(minutes=60), 50, 200, 0.0)
    log_rows(p, START - timedelta(minutes=10), 10, 100, 0.6)
    inc = open_incident(p)
    h = healer(p, mode="auto")
    remediate(h, inc, diagnosis("disable_variant", "variant:canary", 0.9, START - timedelta(minutes=10)))
    advance(p, 6)  # no request since the action
    [w] = h.verify_due()
    assert w["state"] == "executed" and "no measurement" in w["waiting"]
    assert p.store.get_deployment("iris").spec.traffic == {"stable": 100, "canary": 0}  # kept while waiting
    advance(p, 15)  # 4 x verify_after without a measurement: undone
    [v] = h.verify_due()
    assert v["state"] == "reverted" and v["reason"] == "no measurements since the action"
    assert p.store.get_deployment("iris").spec.traffic == {"stable": 80, "canary": 20}


def test_reject_and_impossible(platform: Platform) -> None:
    p = platform
    inc = open_incident(p)
    h = healer(p)
    with pytest.raises(FailedPrecondition, match="no suggested remediation"):
        h.reject(inc.id, "bob")
    remediate(h, inc, diagnosis("disable_variant", "variant:canary", 0.9, START))
    assert h.reject(inc.id, "bob", "the canary is fine") == {"id": h.remediations(inc.id)[0]["id"], "state": "rejected"}
    assert p.store.get_deployment("iris").spec.traffic == {"stable": 80, "canary": 20}
    with pytest.raises(FailedPrecondition):
        h.approve(inc.id, "bob")

    assert remediate(h, inc, diagnosis("disable_variant", "variant:ghost", 0.9, START)) is None
    [impossible] = p.store.list_events(subject=f"incident:{inc.id}", action="remediation.impossible", limit=10)
    assert "ghost" in impossible.after["error"]  # type: ignore[index]
    [imp] = [r for r in h.remediations(inc.id) if r["state"] == "impossible"]
    assert imp["action"] == {"kind": "disable_variant", "target": "variant:ghost", "params": {}}
    shown = run_cli("incidents", "show", str(inc.id), home=p.settings.home).stdout
    assert "impossible" in shown and "variant:ghost" in shown and "rejected" in shown
    with pytest.raises(InvalidArgument, match="healing mode must be one of"):
        h.set_policy("iris", {"mode": "yolo"}, "bob")


def test_reconsider_runs_a_suggestion_once_the_diagnosis_is_confident(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = platform
    log_rows(p, START - timedelta(minutes=60), 50, 200, 0.0)
    log_rows(p, START - timedelta(minutes=10), 10, 100, 0.6)
    inc = open_incident(p)
    h = healer(p, mode="auto", min_confidence=0.8)
    onset = START - timedelta(minutes=10)
    first = remediate(h, inc, diagnosis("disable_variant", "variant:canary", 0.6, onset))
    assert first is not None and first["state"] == "suggested"
    [r] = h.remediations(inc.id)
    assert [k for k, ok in r["decision"]["checks"].items() if not ok] == ["confident"]

    later = iter([diagnosis("disable_variant", "variant:canary", 0.65, onset),
                  diagnosis("disable_variant", "variant:canary", 0.92, onset)])  # fmt: skip
    monkeypatch.setattr(h, "diagnose", lambda incident, now=None: next(later))
    assert h.reconsider(inc) is None  # still not confident: still waiting
    assert h.remediations(inc.id)[0]["state"] == "suggested"
    out = h.reconsider(inc)
    assert out == {"id": r["id"], "state": "executed"}  # the same remediation, now executed
    [r] = h.remediations(inc.id)
    assert r["decision"]["reconsidered"] is True and r["decision"]["confidence"] == 0.92
    assert p.store.get_deployment("iris").spec.traffic == {"stable": 100, "canary": 0}
    assert h.reconsider(inc) is None  # nothing waits any more


def test_reconsider_supersedes_with_a_different_action_and_leaves_approvals_alone(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = platform
    inc = open_incident(p)
    h = healer(p, mode="auto", min_confidence=0.8)
    remediate(h, inc, diagnosis("disable_variant", "variant:canary", 0.6, START))
    shift = diagnosis("shift_traffic", "variant:canary", 0.9, START, {"traffic": {"stable": 95, "canary": 5}})
    monkeypatch.setattr(h, "diagnose", lambda incident, now=None: shift)
    out = h.reconsider(inc)
    assert out is not None and out["state"] == "executed"
    old, new = h.remediations(inc.id)
    assert old["state"] == "superseded" and new["action"]["kind"] == "shift_traffic"
    assert p.store.get_deployment("iris").spec.traffic == {"stable": 95, "canary": 5}


def test_reconsider_leaves_a_suggestion_that_waits_for_a_person_alone(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = platform
    inc = open_incident(p)
    h = healer(p, mode="auto", min_confidence=0.8)
    h.set_policy("iris", {"mode": "auto", "min_confidence": 0.8, "approval": ["disable_variant"]}, "bob")
    remediate(h, inc, diagnosis("disable_variant", "variant:canary", 0.6, START))
    confident = diagnosis("disable_variant", "variant:canary", 0.9, START)
    monkeypatch.setattr(h, "diagnose", lambda incident, now=None: confident)
    assert h.reconsider(inc) is None  # it waits for approval too, not only for confidence
    assert h.remediations(inc.id)[-1]["state"] == "suggested"
    assert p.store.get_deployment("iris").spec.traffic == {"stable": 80, "canary": 20}


def test_a_sent_notification_does_not_hold_back_the_next_remediation(platform: Platform) -> None:
    p = platform
    inc = open_incident(p)
    h = healer(p, mode="auto")
    sent = remediate(h, inc, diagnosis("notify", "variant:canary", 0.9, START))
    assert sent is not None and sent["state"] == "executed"
    assert p.store.get_incident(inc.id).status is IncidentStatus.OPEN  # telling people mitigates nothing
    acted = remediate(h, inc, diagnosis("disable_variant", "variant:canary", 0.9, START))
    assert acted is not None and acted["state"] == "executed"
    assert p.store.get_incident(inc.id).status is IncidentStatus.MITIGATING
