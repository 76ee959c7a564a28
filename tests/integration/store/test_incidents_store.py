"""The store's incident methods on SQLite and the real PostgreSQL: placement in one transaction (open, join,
duplicate, reopen), compare-and-set lifecycle moves, events on ``incident:<id>``."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from mlpilot.clock import VirtualClock
from mlpilot.errors import Conflict, NotFound
from mlpilot.incidents.policy import Signal
from mlpilot.records import IncidentStatus
from tests.conftest import StoreMaker

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc)
W = timedelta(minutes=30)


def sig(key: str, minutes: float, severity: str = "ticket", deployment: str = "fraud") -> Signal:
    return Signal(key, deployment, severity, T0 + timedelta(minutes=minutes), f"{key} fired")


def test_placement_and_lifecycle(store_factory: StoreMaker) -> None:
    store = store_factory(VirtualClock(T0))
    a, p = store.place_signal(sig("alert:fraud/availability", 0), W, "mlpilot", alert_id=7)
    assert p.action == "open" and (a.status, a.severity, a.alerts, a.revision) == (
        IncidentStatus.OPEN,
        "ticket",
        [7],
        1,
    )
    b, p = store.place_signal(sig("alert:fraud/latency", 10, "page"), W, "mlpilot", alert_id=8)
    assert (p.action, b.id, b.severity, b.alerts) == ("join", a.id, "page", [7, 8])
    assert b.keys == ["alert:fraud/availability", "alert:fraud/latency"] and b.revision == 2
    c, p = store.place_signal(sig("alert:fraud/latency", 12, "page"), W, "mlpilot", alert_id=8)
    assert (p.action, c.id, c.alerts) == ("duplicate", a.id, [7, 8])
    other, p = store.place_signal(sig("alert:iris/latency", 12, deployment="iris"), W, "mlpilot")
    assert p.action == "open" and other.id != a.id
    assert [i.id for i in store.list_incidents("fraud")] == [a.id]
    assert [i.id for i in store.list_incidents(status=IncidentStatus.OPEN)] == [other.id, a.id]

    m = store.update_incident(
        a.id,
        c.revision,
        "bob",
        "incident.mitigated",
        {"event": "verified"},
        status=IncidentStatus.MITIGATED,
        mitigated_at=T0,
    )
    assert m.status is IncidentStatus.MITIGATED and m.revision == c.revision + 1
    with pytest.raises(Conflict, match="changed"):
        store.update_incident(a.id, c.revision, "bob", "incident.resolved", {}, status=IncidentStatus.RESOLVED)
    again, p = store.place_signal(sig("alert:fraud/drift", 20), W, "mlpilot", alert_id=9)
    assert (p.action, again.id, again.status, again.mitigated_at) == ("reopen", a.id, IncidentStatus.OPEN, None)
    actions = [e.action for e in store.list_events(subject=f"incident:{a.id}")]
    assert actions == [
        "incident.opened",
        "incident.joined",
        "incident.signal",
        "incident.mitigated",
        "incident.reopened",
    ]
    with pytest.raises(NotFound):
        store.get_incident(999)
