"""Incidents from alerts through the service, the API (SDK) and the CLI: opened, joined, acknowledged, mitigated,
auto-resolved when quiet, resolved by hand; each with a timeline of related events."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sklearn.linear_model import LogisticRegression

from mlpilot.client import Client
from mlpilot.clock import VirtualClock
from mlpilot.errors import InvalidArgument
from mlpilot.incidents.service import IncidentService
from mlpilot.monitors.alerts import AlertChange
from mlpilot.monitors.notify import WebhookNotifier
from mlpilot.records import Alert, IncidentStatus
from mlpilot.store import Store
from tests.factories import iris_frame
from tests.helpers import run_cli
from tests.integration.monitors.test_alerts import Receiver

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc)


def alert(id: int, slo: str, minutes: float, severity: str = "ticket", deployment: str = "iris") -> Alert:
    at = T0 + timedelta(minutes=minutes)
    return Alert(
        id=id,
        deployment=deployment,
        slo=slo,
        severity=severity,
        status="firing",
        fired_at=at,
        updated_at=at,
        summary=f"{slo} burning",
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()  # a real webhook endpoint on 127.0.0.1
    yield r
    r.close()


def test_service_groups_alerts_and_resolves_quiet_mitigated_incidents(tmp_path: Path, receiver: Receiver) -> None:
    clock = VirtualClock(T0)
    store = Store.from_url(f"sqlite:///{tmp_path / 's.db'}", clock)
    store.migrate()
    notifier = WebhookNotifier(timeout_s=5)
    svc = IncidentService(store, clock, notifier=notifier, webhooks=[receiver.url])
    opened = svc.on_alerts(
        [
            AlertChange("fired", alert(1, "availability", 0)),
            AlertChange("escalated", alert(2, "latency", 5, "page")),
            AlertChange("resolved", alert(3, "drift", 6)),
        ]
    )
    assert len({i.id for i in opened}) == 1 and len(opened) == 2  # the resolved alert placed nothing
    inc = opened[-1]
    assert (inc.severity, inc.alerts) == ("page", [1, 2])
    with pytest.raises(InvalidArgument, match="cannot take 'verified'"):
        svc.move(inc.id, "verified", "bob")
    svc.move(inc.id, "mitigate", "mlpilot-healer", "rolled back the candidate")
    svc.move(inc.id, "verified", "mlpilot-healer", "the error rate is back under its objective")
    clock.advance(600)
    assert svc.tick() == []  # not quiet long enough (15 min after the last symptom)
    clock.advance(900)
    [done] = svc.tick()
    assert done.status is IncidentStatus.RESOLVED and done.resolved_at == clock.now()
    assert [e.action for e in svc.timeline(inc.id)][-3:] == [
        "incident.mitigating",
        "incident.mitigated",
        "incident.resolved",
    ]
    store.close()


def test_api_and_cli(tmp_path: Path) -> None:
    home = tmp_path / "home"
    X, y = iris_frame()
    with Client(home=home) as c:
        c.register_model("iris", LogisticRegression(max_iter=300).fit(X.to_numpy(), y), sample=X.to_numpy()[:2])
        c.deploy("iris", "iris:1")
        c._platform.incidents.on_alerts([AlertChange("fired", alert(1, "availability", 0))])
        [inc] = c.incidents("iris")
        assert inc.status is IncidentStatus.OPEN and inc.title == "availability burning"
        assert c.incidents(status="resolved") == []
        with pytest.raises(InvalidArgument, match="incident status must be one of"):
            c.incidents(status="burning")
        assert c.ack_incident(inc.id).acknowledged_by is not None
        timeline = [e.action for e in c.incident_timeline(inc.id)]
        assert "incident.opened" in timeline and "incident.acknowledged" in timeline
    listed = json.loads(run_cli("incidents", "list", "--json", home=home).stdout)
    assert [i["id"] for i in listed] == [inc.id]
    shown = run_cli("incidents", "show", str(inc.id), home=home).stdout
    assert "availability burning" in shown and "incident.opened" in shown
    done = json.loads(
        run_cli("incidents", "resolve", str(inc.id), "--reason", "false alarm", "--json", home=home).stdout
    )
    assert done["status"] == "resolved"
    again = run_cli("incidents", "resolve", str(inc.id), home=home, check=False)
    assert again.returncode != 0 and "it is closed" in again.stdout + again.stderr
    missing = run_cli("incidents", "show", "999", home=home, check=False)
    assert missing.returncode != 0 and "no incident 999" in missing.stdout + missing.stderr


def test_checking_an_slo_by_hand_places_its_alert_into_an_incident(tmp_path: Path) -> None:
    from mlpilot.errors import MlpilotError
    from mlpilot.testing.faulty import FailsAbove

    X, y = iris_frame()
    cut = float(X["petal_length"].quantile(0.05))  # 95% of the rows make this model fail
    model = FailsAbove(LogisticRegression(max_iter=300).fit(X, y), "petal_length", cut)
    with Client(home=tmp_path / "home") as c:
        c.register_model("iris", model, sample=X[X["petal_length"] <= cut].head(3))
        c.deploy("iris", "iris:1")
        failed = 0
        for i in range(40):
            try:
                c.predict("iris", X.iloc[[i * 3]])
            except MlpilotError:
                failed += 1
        assert failed >= 30
        rules = [{"long": "5m", "short": "1m", "burn_rate": 2, "severity": "page"}]
        c.create_slo("iris", "avail-fast", {"indicator": "availability", "objective": 0.99, "rules": rules,
                                            "min_events": 10})  # fmt: skip
        deadline = time.monotonic() + 10
        while not (out := c.check_slo("iris", "avail-fast"))["changes"] and time.monotonic() < deadline:
            time.sleep(0.3)  # until the request log has flushed the failures
        assert [ch["action"] for ch in out["changes"]] == ["fired"]
        [inc] = c.incidents("iris")
        assert inc.alerts == [out["changes"][0]["alert"]["id"]] and inc.severity == "page"
        assert c.incident_diagnosis(inc.id)["symptom"]["kind"] == "errors"  # diagnosed on open


def test_a_failure_placing_incidents_does_not_stop_the_slo_evaluation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from mlpilot.app import build_platform
    from mlpilot.settings import Settings

    platform = build_platform(Settings(home=tmp_path / "home"))
    try:

        def broken(changes: object) -> list[object]:
            raise RuntimeError("incident store down")

        monkeypatch.setattr(platform.incidents, "on_alerts", broken)
        assert platform.monitors.evaluate_slos is not None
        assert platform.monitors.evaluate_slos(datetime.now(timezone.utc)) == []  # no SLOs: no changes, no raise
        assert "placing alerts into incidents" in caplog.text and "incident store down" in caplog.text
    finally:
        platform.close()
