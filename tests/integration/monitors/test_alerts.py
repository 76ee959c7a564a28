"""SLOs and burn-rate alerts over logged traffic on the virtual clock: fire, deduplicate, escalate, resolve, notify."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from mlpilot.errors import Conflict, InvalidArgument, NotFound
from mlpilot.records import BurnRateRuleSpec, Indicator, MonitorKind, MonitorSpec, SLOSpec
from tests.integration.monitors.conftest import World, shifted


class Receiver:
    """A real webhook endpoint on 127.0.0.1 that records every JSON body (and can be told to fail)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.fail = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                if outer.fail:
                    self.send_response(503)
                else:
                    outer.bodies.append(json.loads(body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def traffic(world: World, minutes: float, per_minute: int = 2, error_every: int = 0) -> None:
    n = max(1, int(minutes * per_minute))
    frame = world.X.sample(n, replace=True, random_state=int(world.clock.monotonic()) % 10_000)
    world.log(frame, minutes=minutes, batch=1, error_every=error_every)


def evaluate_every(world: World, minutes: float, step: float = 5, **kw: Any) -> list[Any]:
    """Traffic for ``minutes`` in steps, evaluating the SLOs after each step like the scheduler; the changes."""
    changes: list[Any] = []
    for _ in range(int(minutes / step)):
        traffic(world, step, **kw)
        changes.extend(world.platform.alerts.evaluate_all())
    return changes


def test_availability_alert_fires_once_notifies_and_resolves(world: World, receiver: Receiver) -> None:
    p = world.platform
    p.alerts.create(
        "iris",
        "availability",
        SLOSpec(indicator=Indicator.AVAILABILITY, objective=0.999, webhooks=[receiver.url]),
        "t",
        replace=True,
    )
    assert evaluate_every(world, 60) == []  # an hour of clean traffic: quiet
    fired = evaluate_every(world, 20, error_every=5)  # 20% errors for 20 minutes
    assert [c.action for c in fired] == ["fired"]  # once, although every evaluation since fires
    alert = fired[0].alert
    assert alert.severity == "page" and alert.status == "firing" and "availability" in alert.summary
    assert p.store.active_alert("iris", "availability") is not None
    st = p.alerts.status("iris", "availability")
    assert st.budget_remaining is not None and st.budget_remaining < 0  # 20 minutes at 20% blew a 30-day budget
    # healthy again: the page rule's 5-minute window clears at once, but slower rules keep it open for hours
    quiet = evaluate_every(world, 60, step=10)
    assert quiet == []
    resolved = evaluate_every(world, 7 * 60, step=30)
    assert [c.action for c in resolved] == ["resolved"]
    assert p.store.get_alert(alert.id).resolved_at is not None
    assert p.notifier.flush(10)
    assert [b["type"] for b in receiver.bodies] == ["alert.fired", "alert.resolved"]
    assert receiver.bodies[0]["alert"]["id"] == alert.id and receiver.bodies[0]["severity"] == "page"
    actions = [e.action for e in p.store.list_events(subject="deployment:iris", action="alert.*")]
    assert actions == ["alert.fired", "alert.resolved"]


def test_ticket_escalates_to_page(world: World) -> None:
    p = world.platform
    rules = [
        BurnRateRuleSpec(long="1h", short="5m", burn_rate=20, severity="page"),
        BurnRateRuleSpec(long="1h", short="5m", burn_rate=2, severity="ticket"),
    ]
    p.alerts.create("iris", "avail99", SLOSpec(indicator=Indicator.AVAILABILITY, objective=0.99, rules=rules), "t")
    changes = evaluate_every(world, 20, per_minute=4)
    changes += evaluate_every(world, 30, per_minute=4, error_every=20)  # 5% errors: burn ≥ 2 -> ticket
    assert [(c.action, c.alert.severity) for c in changes if c.alert.slo == "avail99"] == [("fired", "ticket")]
    changes = evaluate_every(world, 30, per_minute=4, error_every=2)  # 50% errors: burn ≥ 20 -> page
    assert [(c.action, c.alert.severity) for c in changes if c.alert.slo == "avail99"] == [("escalated", "page")]
    assert len(p.store.list_alerts("iris", status="firing")) >= 1
    assert [a.slo for a in p.store.list_alerts("iris") if a.slo == "avail99"] == ["avail99"]  # one alert, escalated


def test_latency_slo_counts_slow_requests(world: World) -> None:
    p = world.platform
    rules = [BurnRateRuleSpec(long="30m", short="5m", burn_rate=2)]
    p.alerts.create("iris", "fast", SLOSpec(indicator=Indicator.LATENCY, objective=0.9, threshold=1, rules=rules), "t")
    p.alerts.create("iris", "ok", SLOSpec(indicator=Indicator.LATENCY, objective=0.9, threshold=5, rules=rules), "t")
    changes = evaluate_every(world, 30)  # every request takes 2 ms
    assert {c.alert.slo for c in changes} == {"fast"}
    assert p.alerts.status("iris", "ok").good == p.alerts.status("iris", "ok").total > 0


def test_drift_slo_fires_from_monitor_results(world: World, receiver: Receiver) -> None:
    p = world.platform
    p.monitors.create(
        "iris",
        "drift10",
        MonitorSpec(kind=MonitorKind.DRIFT, window=timedelta(minutes=10), every=timedelta(minutes=5)),
        "t",
    )
    rules = [BurnRateRuleSpec(long="30m", short="5m", burn_rate=10)]
    spec = SLOSpec(indicator=Indicator.DRIFT, objective=0.99, monitor="drift10", rules=rules, webhooks=[receiver.url])
    p.alerts.create("iris", "no-drift", spec, "t")
    changes: list[Any] = []
    for _ in range(6):
        world.log(world.X.sample(60, random_state=int(world.clock.monotonic())), minutes=5)
        changes += p.monitors.tick().alerts
    assert [c for c in changes if c.alert.slo == "no-drift"] == []
    for _ in range(3):
        world.log(shifted(world.X, int(world.clock.monotonic())).head(60), minutes=5)
        changes += p.monitors.tick().alerts
    mine = [c for c in changes if c.alert.slo == "no-drift"]
    assert [c.action for c in mine] == ["fired"]
    assert p.notifier.flush(10) and receiver.bodies[0]["slo"] == "no-drift"
    for _ in range(9):
        world.log(world.X.sample(60, random_state=int(world.clock.monotonic())), minutes=5)
        changes += p.monitors.tick().alerts
    assert [c.action for c in changes if c.alert.slo == "no-drift"] == ["fired", "resolved"]
    with pytest.raises(Conflict, match="no-drift"):
        p.monitors.delete("iris", "drift10", "t")  # an SLO counts its runs
    p.store.delete_slo("iris", "no-drift", "t")
    p.monitors.delete("iris", "drift10", "t")


def test_accuracy_slo_counts_labelled_predictions(world: World) -> None:
    p = world.platform
    rules = [BurnRateRuleSpec(long="1h", short="10m", burn_rate=2)]
    p.alerts.create("iris", "acc", SLOSpec(indicator=Indicator.ACCURACY, objective=0.9, rules=rules), "t")
    frame = world.X.sample(120, random_state=11)
    ids = world.log(frame, minutes=30, batch=1)
    assert p.alerts.evaluate_all() == []  # no labels yet: no events, no alert
    wrong = [(int(lbl) + 1) % 3 for lbl in world.model.predict(frame)]  # the label pipeline says: all wrong
    p.feedback.submit("iris", [{"request_id": r, "label": w} for r, w in zip(ids, wrong, strict=True)], "t")
    st = p.alerts.status("iris", "acc")
    assert st.total == 120 and st.good == 0
    assert [c.action for c in p.alerts.evaluate_all() if c.alert.slo == "acc"] == ["fired"]


def test_accuracy_slo_with_some_predictions_unlabelled_compares_numbers_as_numbers(world: World) -> None:
    """A label column with gaps comes back from the join as floats: ``2.0`` must count as equal to ``2``."""
    p = world.platform
    rules = [BurnRateRuleSpec(long="1h", short="10m", burn_rate=2)]
    p.alerts.create("iris", "acc", SLOSpec(indicator=Indicator.ACCURACY, objective=0.9, rules=rules), "t")
    frame = world.X.sample(120, random_state=12)
    ids = world.log(frame, minutes=30, batch=1)
    right = [int(lbl) for lbl in world.model.predict(frame)]
    p.feedback.submit("iris", [{"request_id": r, "label": w} for r, w in list(zip(ids, right, strict=True))[:100]], "t")
    st = p.alerts.status("iris", "acc")
    assert st.total == 100 and st.good == 100
    assert p.alerts.evaluate_all() == []


def test_failed_webhook_is_retried_then_recorded(world: World, receiver: Receiver) -> None:
    p = world.platform
    p.notifier.backoff_s = 0.01
    receiver.fail = True
    rules = [BurnRateRuleSpec(long="30m", short="5m", burn_rate=2)]
    p.alerts.create(
        "iris",
        "strict",
        SLOSpec(indicator=Indicator.AVAILABILITY, objective=0.99, rules=rules, webhooks=[receiver.url]),
        "t",
    )
    evaluate_every(world, 15, error_every=2)
    assert p.notifier.flush(10)
    failed = p.store.list_events(action="alert.notify_failed")
    assert len(failed) == 1 and failed[0].after is not None and "503" in failed[0].after["error"]
    assert p.notifier.failed == 1


def test_bad_slo_input(world: World) -> None:
    p = world.platform
    with pytest.raises(InvalidArgument, match="threshold"):
        SLOSpec(indicator=Indicator.LATENCY, objective=0.99)
    with pytest.raises(InvalidArgument, match="needs monitor"):
        SLOSpec(indicator=Indicator.DRIFT, objective=0.99)
    with pytest.raises(InvalidArgument, match="short < long"):
        SLOSpec(
            indicator=Indicator.AVAILABILITY,
            objective=0.9,
            rules=[BurnRateRuleSpec(long="5m", short="1h", burn_rate=2)],
        )
    with pytest.raises(InvalidArgument, match="can never fire"):
        SLOSpec(
            indicator=Indicator.AVAILABILITY,
            objective=0.9,
            rules=[BurnRateRuleSpec(long="1h", short="5m", burn_rate=14.4)],
        )
    with pytest.raises(InvalidArgument, match="http"):
        SLOSpec(indicator=Indicator.AVAILABILITY, objective=0.9, webhooks=["ftp://x"])
    with pytest.raises(NotFound):
        p.alerts.create("iris", "d", SLOSpec(indicator=Indicator.DRIFT, objective=0.9, monitor="nope"), "t")
    with pytest.raises(InvalidArgument, match="counts a drift monitor"):
        p.alerts.create("iris", "d", SLOSpec(indicator=Indicator.DRIFT, objective=0.9, monitor="traffic"), "t")
    with pytest.raises(NotFound):
        p.alerts.create("nope", "d", SLOSpec(indicator=Indicator.AVAILABILITY, objective=0.9), "t")
    with pytest.raises(InvalidArgument, match="firing or resolved"):
        p.alerts.list_alerts(status="open")
    assert [s.name for s in p.store.list_slos("iris")] == ["availability"]


def test_settled_buckets_are_reused_and_give_the_same_counts(world: World) -> None:
    from mlpilot.monitors import AlertService

    p = world.platform
    p.alerts.create("iris", "lat", SLOSpec(indicator=Indicator.LATENCY, objective=0.99, threshold=5), "t")
    for _ in range(6):
        traffic(world, 10, per_minute=3, error_every=7)
        cached = p.alerts.status("iris", "availability")
        fresh = AlertService(p.store, p.feedback, world.root, world.clock).status("iris", "availability")
        assert (cached.good, cached.total) == (fresh.good, fresh.total) and cached.total > 0
        assert [r.long_burn for r in cached.evaluation.rates] == [r.long_burn for r in fresh.evaluation.rates]
    assert len(p.alerts._settled) == 1
    assert p.alerts.status("iris", "lat").total == 6 * 30 - 6 * (30 // 7)  # successful requests only
    assert len(p.alerts._settled) == 2  # each request-based SLO keeps its final buckets
