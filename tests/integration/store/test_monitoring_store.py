"""The store's monitor, SLO and alert methods on SQLite and the real PostgreSQL: compare-and-set claims, ordered
time series, one firing alert per SLO, every transition an event."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from mlpilot.clock import VirtualClock
from mlpilot.errors import Conflict, NotFound
from mlpilot.records import Indicator, MonitorKind, MonitorSpec, MonitorStatus, SLOSpec
from tests.conftest import StoreMaker

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)


def test_monitor_claims_and_time_series(store_factory: StoreMaker) -> None:
    clock = VirtualClock(T0)
    store = store_factory(clock)
    spec = MonitorSpec(kind=MonitorKind.DRIFT, every=timedelta(minutes=5))
    mon = store.put_monitor("iris", "drift", spec, "ann", next_run=T0)
    assert mon.spec == spec and mon.next_run == T0 and mon.last_status is None
    with pytest.raises(Conflict):
        store.put_monitor("iris", "drift", spec, "ann", next_run=T0)
    assert [m.name for m in store.due_monitors(T0)] == ["drift"]
    assert store.claim_monitor("iris", "drift", T0, T0 + timedelta(minutes=5)) is True
    assert store.claim_monitor("iris", "drift", T0, T0 + timedelta(minutes=5)) is False  # the loser of the race
    assert store.due_monitors(T0) == []
    for i, status in enumerate([MonitorStatus.OK, MonitorStatus.ALERT, MonitorStatus.ALERT, MonitorStatus.OK]):
        ts = T0 + timedelta(minutes=5 * i)
        store.record_monitor_result(
            "iris",
            "drift",
            ts=ts,
            window_start=ts - timedelta(hours=1),
            window_end=ts,
            rows=100 + i,
            status=status,
            value=0.1 * i,
            message=f"run {i}",
            detail={"features": [{"feature": "x", "i": i}]},
        )
    series = store.list_monitor_results("iris", "drift")
    assert [r.rows for r in series] == [100, 101, 102, 103] and series[1].detail["features"][0]["i"] == 1
    assert [r.rows for r in store.list_monitor_results("iris", "drift", limit=2)] == [102, 103]  # the newest two
    assert [r.rows for r in store.list_monitor_results("iris", "drift", since=T0 + timedelta(minutes=10))] == [102, 103]
    assert store.get_monitor("iris", "drift").last_status == "ok"
    # one event per change of status into a non-ok state, not per run
    assert [e.action for e in store.list_events(subject="monitor:iris/drift")] == ["monitor.created", "monitor.alert"]
    store.put_monitor("iris", "drift", spec.model_copy(update={"threshold": 0.3}), "bob", next_run=T0, replace=True)
    assert store.get_monitor("iris", "drift").spec.threshold == 0.3
    store.delete_monitor("iris", "drift", "bob")
    with pytest.raises(NotFound):
        store.list_monitor_results("iris", "drift")


def test_one_firing_alert_per_slo(store_factory: StoreMaker) -> None:
    store = store_factory(VirtualClock(T0))
    store.put_slo("iris", "availability", SLOSpec(indicator=Indicator.AVAILABILITY, objective=0.999), "ann")
    with pytest.raises(Conflict):
        store.put_slo("iris", "availability", SLOSpec(indicator=Indicator.AVAILABILITY, objective=0.99), "ann")
    assert store.get_slo("iris", "availability").spec.objective == 0.999
    alert = store.open_alert("iris", "availability", "ticket", "burning", {"rules": []}, "mlpilot")
    with pytest.raises(Conflict):  # a second process opening the same alert
        store.open_alert("iris", "availability", "page", "burning", {}, "mlpilot")
    assert store.active_alert("iris", "availability") == alert
    escalated = store.update_alert(alert.id, severity="page", summary="worse", detail={}, actor="mlpilot")
    assert (escalated.severity, escalated.status) == ("page", "firing")
    resolved = store.update_alert(alert.id, severity=None, summary="fine", detail={}, actor="mlpilot")
    assert resolved.status == "resolved" and resolved.resolved_at is not None
    with pytest.raises(NotFound):
        store.update_alert(alert.id, severity=None, summary="again", detail={}, actor="mlpilot")
    assert store.active_alert("iris", "availability") is None
    again = store.open_alert("iris", "availability", "page", "burning again", {}, "mlpilot")  # a new alert
    assert again.id != alert.id
    assert [a.id for a in store.list_alerts("iris")] == [again.id, alert.id]
    assert [a.id for a in store.list_alerts(status="resolved")] == [alert.id]
    actions = [e.action for e in store.list_events(action="alert.*")]
    assert actions == ["alert.fired", "alert.escalated", "alert.resolved", "alert.fired"]
