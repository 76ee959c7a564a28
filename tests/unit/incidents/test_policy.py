"""Grouping symptoms into incidents and the incident lifecycle (pure policy)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from mlpilot.errors import InvalidArgument
from mlpilot.incidents.policy import (
    IncidentState,
    IncidentStatus,
    Signal,
    higher,
    place,
    quiet_enough,
    transition,
)

S = IncidentStatus
T0 = datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc)
WINDOW = timedelta(minutes=30)


def sig(
    key: str = "slo:fraud/availability", deployment: str = "fraud", severity: str = "ticket", minutes: float = 0
) -> Signal:
    return Signal(key, deployment, severity, T0 + timedelta(minutes=minutes))


def inc(
    id: int = 1,
    deployment: str = "fraud",
    status: S = S.OPEN,
    severity: str = "ticket",
    minutes: float = 0,
    keys: tuple[str, ...] = ("slo:fraud/availability",),
) -> IncidentState:
    return IncidentState(id, deployment, status, severity, T0 + timedelta(minutes=minutes), frozenset(keys))


def test_a_first_signal_opens_an_incident() -> None:
    p = place(sig(), [], WINDOW)
    assert (p.action, p.incident, p.severity) == ("open", None, "ticket")


def test_the_same_alert_again_is_a_duplicate_and_may_escalate() -> None:
    p = place(sig(severity="page", minutes=90), [inc()], WINDOW)  # a duplicate however late
    assert (p.action, p.incident, p.severity, p.escalated) == ("duplicate", 1, "page", True)
    assert not place(sig(minutes=1), [inc()], WINDOW).escalated


def test_another_symptom_of_the_same_deployment_joins_within_the_window() -> None:
    p = place(sig("slo:fraud/latency", minutes=20), [inc()], WINDOW)
    assert (p.action, p.incident) == ("join", 1)
    later = place(sig("slo:fraud/latency", minutes=31), [inc()], WINDOW)
    assert later.action == "open"


def test_other_deployments_and_resolved_incidents_take_nothing() -> None:
    assert place(sig("slo:iris/latency", "iris"), [inc()], WINDOW).action == "open"
    assert place(sig(), [inc(status=S.RESOLVED)], WINDOW).action == "open"  # a resolved incident's key is free again


def test_a_symptom_after_mitigation_reopens_and_the_newest_incident_wins() -> None:
    p = place(sig("slo:fraud/drift", minutes=10), [inc(status=S.MITIGATED)], WINDOW)
    assert (p.action, p.incident) == ("reopen", 1) and "relapse" in p.reason
    newest = place(
        sig("slo:fraud/drift", minutes=10), [inc(1, minutes=0, keys=("a",)), inc(2, minutes=5, keys=("b",))], WINDOW
    )
    assert newest.incident == 2


@pytest.mark.parametrize(
    ("status", "event", "to"),
    [
        (S.OPEN, "mitigate", S.MITIGATING),
        (S.MITIGATING, "verified", S.MITIGATED),
        (S.MITIGATING, "verification_failed", S.OPEN),
        (S.MITIGATED, "relapse", S.OPEN),
        (S.MITIGATED, "quiet", S.RESOLVED),
        (S.OPEN, "resolve", S.RESOLVED),
        (S.MITIGATING, "resolve", S.RESOLVED),
    ],
)
def test_lifecycle_moves(status: S, event: str, to: S) -> None:
    assert transition(status, event) is to


@pytest.mark.parametrize(
    ("status", "event", "needle"),
    [
        (S.RESOLVED, "resolve", "it is closed"),
        (S.OPEN, "verified", "it can take ['mitigate', 'resolve']"),
        (S.OPEN, "explode", "unknown incident event"),
    ],
)
def test_moves_the_lifecycle_refuses(status: S, event: str, needle: str) -> None:
    with pytest.raises(InvalidArgument, match=needle.replace("[", r"\[").replace("]", r"\]")):
        transition(status, event)


def test_severity_order_and_validation() -> None:
    assert higher("ticket", "page") == "page" and higher("page", "info") == "page"
    with pytest.raises(InvalidArgument, match="unknown severity"):
        place(sig(severity="sev0"), [], WINDOW)
    with pytest.raises(InvalidArgument, match="group_window"):
        place(sig(), [], timedelta(0))


def test_quiet_enough_only_for_a_mitigated_incident_with_nothing_firing() -> None:
    mitigated = inc(status=S.MITIGATED)
    assert quiet_enough(mitigated, firing=0, now=T0 + timedelta(minutes=16), quiet=timedelta(minutes=15))
    assert not quiet_enough(mitigated, firing=1, now=T0 + timedelta(hours=2), quiet=timedelta(minutes=15))
    assert not quiet_enough(mitigated, firing=0, now=T0 + timedelta(minutes=5), quiet=timedelta(minutes=15))
    assert not quiet_enough(inc(), firing=0, now=T0 + timedelta(hours=2), quiet=timedelta(minutes=15))
