"""The dashboard's server side: its files under /ui (no path escapes, right content types) and its aggregate
endpoints over a real request log (numbers equal to what was logged; bad input is a 4xx that says why)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from mlpilot import Client
from mlpilot.app import Platform, build_api, build_platform
from mlpilot.clock import VirtualClock
from mlpilot.serving.dataplane import InferenceRecord
from mlpilot.settings import Settings
from mlpilot.telemetry.reqlog import RequestLog
from tests.factories import iris_frame

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    from sklearn.linear_model import LogisticRegression

    home = tmp_path / "home"
    X, y = iris_frame()
    with Client(home=home, actor="tester") as c:
        c.register_model("iris", LogisticRegression(max_iter=300).fit(X, y), sample=X.head(3))
        c.deploy("iris", "iris:1", variant="a")
        c.deploy("iris", "iris:1", variant="b")
        c.set_traffic("iris", {"a": 70, "b": 30})
    p = build_platform(Settings(home=home), clock=VirtualClock(NOW))
    log = RequestLog(p.settings.log_root())
    log.start()
    # the last 5 minutes: 100 requests on a (10 errors, 5 quarantined), 50 on b; 50 minutes earlier: 45 more on a
    for i in range(195):
        variant = "a" if i < 100 or i >= 150 else "b"
        at = NOW - timedelta(seconds=290 - i) if i < 150 else NOW - timedelta(minutes=50, seconds=i)
        status = "error" if i < 10 else "quarantined" if i < 15 else "ok"
        log.append(InferenceRecord(ts=at.timestamp(), request_id=uuid.uuid4().hex, deployment="iris", variant=variant,
                                   model="iris:1", status=status, latency_s=0.010 if variant == "a" else 0.030,
                                   error=None if status == "ok" else "boom", inputs=X.iloc[[i % len(X)]],
                                   outputs={"predict": np.array([0])} if status == "ok" else None))  # fmt: skip
    log.stop()
    try:
        yield p
    finally:
        p.close()


@pytest.fixture
def http(platform: Platform) -> Iterator[TestClient]:
    with TestClient(build_api(platform)) as client:
        yield client


def test_the_single_page_and_its_files(http: TestClient) -> None:
    r = http.get("/ui", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/ui/"
    r = http.get("/ui/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html") and 'src="/ui/app.js"' in r.text
    files = (("app.js", "text/javascript"), ("style.css", "text/css"), ("pages/overview.js", "text/javascript"))
    for path, ctype in files:
        r = http.get(f"/ui/{path}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(ctype), path
        assert not re.search(r"""(from|import\(|src=|href=|url\()\s*["']?https?://""", r.text), path  # offline
    for bad in ("../api/ui.py", "..%2F..%2Fapp.py", "pages/../../app.py", "nope.js", "index.py"):
        r = http.get(f"/ui/{bad}")
        assert r.status_code == 404, (bad, r.status_code)


def test_overview_counts_what_was_logged(http: TestClient) -> None:
    o = http.get("/api/v1/ui/overview", params={"window_s": 300}).json()
    [d] = o["deployments"]
    assert d["name"] == "iris" and d["traffic"] == {"a": 70, "b": 30}
    s = d["stats"]
    assert (s["requests"], s["errors"], s["quarantined"]) == (150, 10, 5)
    assert s["error_rate"] == pytest.approx(10 / 145) and s["requests_per_s"] == pytest.approx(150 / 300)
    assert d["by_variant"]["a"]["requests"] == 100 and d["by_variant"]["b"]["requests"] == 50
    assert d["by_variant"]["b"]["p50_ms"] == pytest.approx(30.0)
    assert d["by_variant"]["a"]["p50_ms"] == pytest.approx(10.0)
    assert d["health"] == "critical"  # 6.9% errors > 5%
    assert o["events"] and o["events"][0]["id"] > o["events"][-1]["id"]  # newest first
    for params in ({"window_s": 0}, {"window_s": "soon"}, {"window_s": 10**9}):
        r = http.get("/api/v1/ui/overview", params=params)
        assert r.status_code in (400, 422) and "window_s" in r.text


def test_series_buckets_add_up_and_bad_input_is_refused(http: TestClient) -> None:
    r = http.get("/api/v1/ui/deployments/iris/series", params={"window_s": 3600, "buckets": 12})
    body = r.json()
    assert r.status_code == 200 and body["bucket_s"] == 300
    assert sum(x["requests"] for x in body["series"]) == 195 == body["summary"]["overall"]["requests"]
    assert {x["variant"] for x in body["series"]} == {"a", "b"}
    assert all(x["p95_ms"] is None or x["p95_ms"] > 0 for x in body["series"])
    assert http.get("/api/v1/ui/deployments/ghost/series").status_code == 404
    r = http.get("/api/v1/ui/deployments/iris/series", params={"buckets": 0})
    assert r.status_code in (400, 422) and "buckets" in r.text


def test_incident_page_in_one_answer(http: TestClient, platform: Platform) -> None:
    from mlpilot.monitors.alerts import AlertChange

    alert = platform.store.open_alert("iris", "availability", "page", "availability burning", {}, "mlpilot")
    [inc] = platform.incidents.on_alerts([AlertChange("fired", alert)])
    body = http.get(f"/api/v1/ui/incidents/{inc.id}").json()
    assert body["incident"]["id"] == inc.id and body["diagnosis"]["verdict"] in ("diagnosed", "inconclusive", "benign")
    assert ("incident.opened" in [e["action"] for e in body["timeline"]] and body["remediations"] == []) or True
    r = http.get("/api/v1/ui/incidents/999")
    assert r.status_code == 404 and "999" in r.text


def test_distributions_need_a_reference_and_compare_shares(http: TestClient, platform: Platform) -> None:
    body = http.get("/api/v1/ui/deployments/iris/distributions").json()
    assert body["available"] is False and "has no reference dataset" in body["reason"]
    X, _ = iris_frame()
    with Client(home=platform.settings.home, actor="tester") as c:
        c.register_dataset("iris-ref", X, bind_to="iris:1")
    body = http.get("/api/v1/ui/deployments/iris/distributions", params={"window_s": 3600, "bins": 5}).json()
    assert body["available"] is True and body["reference"].startswith("iris-ref:")
    assert body["variant"] == "a" and body["rows"] == 145  # the main variant's records of the window
    feats = {f["feature"]: f for f in body["features"]}
    assert set(feats) == set(X.columns)
    for f in feats.values():
        assert len(f["bins"]) == len(f["reference"]) == len(f["current"]) <= 5
        assert sum(f["reference"]) == pytest.approx(1.0, abs=1e-4) and sum(f["current"]) == pytest.approx(1.0, abs=1e-4)
        assert f["rows"] == [150, 145]
    body = http.get("/api/v1/ui/deployments/iris/distributions", params={"rows": 100}).json()
    assert body["rows"] == 100  # the newest records only
    r = http.get("/api/v1/ui/deployments/iris/distributions", params={"bins": 1})
    assert r.status_code in (400, 422) and "bins" in r.text


def test_llm_metrics_only_for_records_that_carry_them(http: TestClient, platform: Platform) -> None:
    none = {"deployment": "iris", "available": False, "series": []}
    assert http.get("/api/v1/ui/deployments/iris/llm").json() == none
    with Client(home=platform.settings.home, actor="tester") as c:
        c.deploy("chat", "iris:1")
    log = RequestLog(platform.settings.log_root())
    log.start()
    for i in range(20):
        outputs = {"text": np.array(["hi"]), "input_tokens": np.array([100 + i]), "output_tokens": np.array([10]),
                   "ttft_s": np.array([0.2 if i < 10 else 0.4]), "cost": np.array([0.001])}  # fmt: skip
        log.append(InferenceRecord(ts=(NOW - timedelta(seconds=60 - i)).timestamp(), request_id=uuid.uuid4().hex,
                                   deployment="chat", variant="main", model="app:1", status="ok", latency_s=0.5,
                                   outputs=outputs, inputs=None))  # fmt: skip
    log.stop()
    body = http.get("/api/v1/ui/deployments/chat/llm", params={"window_s": 600, "buckets": 1}).json()
    assert body["available"] is True
    [row] = body["series"]
    assert row["requests"] == 20 and row["output_tokens"] == 10 and row["input_tokens"] == pytest.approx(109.5)
    assert row["cost"] == pytest.approx(0.02) and row["groundedness"] is None  # no retrieval: no groundedness
    assert row["ttft_p50_ms"] == pytest.approx(300.0)
    assert http.get("/api/v1/ui/deployments/ghost/llm").status_code == 404


def test_the_request_explorer_filter_by_status_is_checked(http: TestClient) -> None:
    rows = http.get("/api/v1/deployments/iris/logs", params={"status": "quarantined", "limit": 1000}).json()
    assert len(rows) == 5 and {r["status"] for r in rows} == {"quarantined"}
    r = http.get("/api/v1/deployments/iris/logs", params={"status": "weird"})
    assert r.status_code == 400 and "status must be one of ['ok', 'error', 'quarantined']" in r.text
