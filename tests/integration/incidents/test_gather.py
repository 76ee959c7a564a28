"""The case RCA reads, assembled from a real store and request log (``gather``), and the diagnosis the platform
records on its own when an incident opens: a release that made the model slower is found as a latency regression
of that release, from the logged model-call time and the deployment's change timeline."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from mlpilot import Client
from mlpilot.app import build_platform
from mlpilot.clock import VirtualClock
from mlpilot.incidents.gather import gather
from mlpilot.monitors.alerts import AlertChange
from mlpilot.serving.dataplane import InferenceRecord
from mlpilot.settings import Settings
from mlpilot.telemetry.reqlog import RequestLog
from tests.factories import iris_frame

START = datetime(2026, 12, 6, 10, 0, tzinfo=timezone.utc)
RELEASE = START - timedelta(minutes=10)


def test_a_slower_release_is_diagnosed_as_its_latency_regression(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    home = tmp_path / "home"
    X, y = iris_frame()
    with Client(home=home, actor="tester") as c:
        for C in (1.0, 0.5):
            c.register_model("iris", LogisticRegression(C=C, max_iter=300).fit(X, y), sample=X.head(3))
    clock = VirtualClock(START - timedelta(minutes=70))
    p = build_platform(Settings(home=home), clock=clock)
    try:
        p.deployments.deploy("iris", "iris:1", "tester", variant="stable")
        with Client(home=home, actor="tester") as c:
            c.create_slo("iris", "latency", {"indicator": "latency", "objective": 0.99, "threshold": 20})
        rng = np.random.default_rng(0)
        log = RequestLog(p.settings.log_root())
        log.start()
        for i in range(1200):  # one request every 3 s for an hour: 10 ms before the release, 45 ms after
            ts = START - timedelta(minutes=60) + timedelta(seconds=3 * i)
            slow = ts >= RELEASE
            log.append(InferenceRecord(ts=ts.timestamp(), request_id=uuid.uuid4().hex, deployment="iris",
                                       variant="stable", model="iris:2" if slow else "iris:1", status="ok",
                                       latency_s=float(rng.normal(0.045 if slow else 0.010, 0.002)),
                                       decode_s=float(rng.normal(0.001, 0.0001)), inputs=X.iloc[[i % len(X)]],
                                       outputs={"predict": np.array([int(y.iloc[i % len(y)])])}))  # fmt: skip
        log.stop()
        clock.advance((RELEASE - clock.now()).total_seconds())
        p.deployments.deploy("iris", "iris:2", "tester", variant="stable", replace=True)  # the slower release
        clock.advance((START - clock.now()).total_seconds())

        alert = p.store.open_alert("iris", "latency", "page", "latency burning", {}, "mlpilot-alerts")
        [inc] = p.incidents.on_alerts([AlertChange("fired", alert)])

        case = gather(p.store, p.feedback, inc, START)
        assert case.symptom.kind == "latency" and len(case.frame) == 1200
        assert {"stage.predict_s", "stage.decode_s", "pred"} <= set(case.frame.columns)
        releases = [c for c in case.changes if c.component == "release:iris" and c.kind == "release"]
        assert [c.ts for c in releases] == [START - timedelta(minutes=70), RELEASE]  # created, then the new model
        assert case.stable_variant == "stable" and case.stage_components["predict"] == "release:iris"

        healer = p.incidents.healer
        assert healer is not None
        d = healer.diagnosis(inc.id)  # recorded by the platform when the incident opened
        assert d is not None and d["verdict"] == "diagnosed", d["summary"]
        top = d["hypotheses"][0]
        assert (top["cause"], top["component"]) == ("latency_regression", "release:iris"), d["summary"]
        assert top["suggestion"]["action"] == "rollback_release"
        assert "stage:predict" in top["evidence"]
        [r] = healer.remediations(inc.id)  # suggest mode (the default): it waits for a person
        assert r["state"] == "suggested" and r["action"]["kind"] == "rollback_release", r
    finally:
        p.close()
