"""The ``llm`` monitor kind on a real platform: an LLM app deployed, chat requests written to the request log by the
data plane's writer (``answer_outputs`` → ``InferenceRecord`` → ``RequestLog``), feedback through the feedback
service, runs on the virtual clock; an SLO counting its runs; the SDK/API and the CLI."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlpilot.app import Platform, build_platform
from mlpilot.clock import VirtualClock
from mlpilot.errors import InvalidArgument
from mlpilot.llm.evals import groundedness
from mlpilot.llm.pipeline import AppAnswer, ChatRequest, Hit, Stage
from mlpilot.records import BurnRateRuleSpec, Indicator, MonitorKind, MonitorSpec, MonitorStatus, SLOSpec
from mlpilot.serving.dataplane import InferenceRecord
from mlpilot.serving.llmlog import answer_outputs, chat_inputs
from mlpilot.settings import Settings
from mlpilot.telemetry.reqlog import RequestLog
from tests.helpers import run_cli
from tests.integration.monitors.conftest import START

DOCS = {f"doc-{i}": f"policy {i}: refunds shipping invoices warranty returns section {i}" for i in range(6)}
EVEN = [1 / 6] * 6
SKEWED = [0.02, 0.02, 0.02, 0.02, 0.12, 0.8]


class _App:
    prompt_ref = "support:1"
    index_ref = "kb:1"


@dataclass
class LLMWorld:
    platform: Platform
    clock: VirtualClock
    home: Path
    root: Path

    def chat(
        self,
        n: int,
        *,
        minutes: float,
        seed: int,
        topics: list[float] = EVEN,
        grounded: bool = True,
        qshift: float = 0.0,
        real_time: bool = False,
    ) -> list[str]:
        """``n`` answered chat requests of the ``bot`` app spread over the next ``minutes`` (of virtual time, the
        clock moving to the end; with ``real_time`` the last ``minutes`` of wall-clock time). Returns their ids."""
        rng = np.random.default_rng(seed)
        log = RequestLog(self.root)
        log.start()
        t0 = time.time() - minutes * 60 if real_time else self.clock.now().timestamp()
        step = minutes * 60 / n
        ids = []
        for k in range(n):
            doc = str(rng.choice(list(DOCS), p=topics))
            text = f"{DOCS[doc]} [{doc}]" if grounded else "bananas dance quietly under purple moons"
            answer = AppAnswer(
                text=text,
                tool_calls=[],
                finish_reason="stop",
                input_tokens=int(rng.integers(80, 120)),
                output_tokens=len(text.split()) + 2,
                stages=[Stage("retrieve", 0.0, 0.05), Stage("generate", 0.05, 0.5)],
                started=0.0,
                ttft_s=0.1,
                hits=[Hit(f"{doc}#0", doc, DOCS[doc], float(rng.uniform(0.6, 0.9)))],
                query=f"question about {doc}",
                query_projection=[float(v) for v in rng.normal([qshift] + [0.0] * 7, 1.0)],
                backend="fake",
                model="fake-llm",
                cost=0.0002,
                contexts=[DOCS[doc]],
            )
            request = ChatRequest(messages=[{"role": "user", "content": answer.query}])
            rid = uuid.uuid4().hex
            ids.append(rid)
            log.append(
                InferenceRecord(
                    ts=t0 + k * step,
                    request_id=rid,
                    deployment="bot",
                    variant="bot-v1",
                    model="bot:1",
                    status="ok",
                    latency_s=0.5,
                    outputs=answer_outputs(answer, _App()),
                    inputs=chat_inputs(request, answer),
                )
            )
        log.stop()
        if not real_time:
            self.clock.advance(minutes * 60)
        return ids


@pytest.fixture
def llm_world(tmp_path: Path) -> Iterator[LLMWorld]:
    from mlpilot import Client

    home = tmp_path / "home"
    with Client(home=home) as c:
        c.register_prompt("support", {"type": "chat", "template": [{"role": "user", "content": "{{question}}"}]})
        backend = {"base_url": "http://127.0.0.1:9/v1", "model": "fake-llm"}  # never called: records are written
        c.register_app("bot", {"prompt": "support", "generator": backend})
    clock = VirtualClock(START)
    platform = build_platform(Settings(home=home), clock=clock)
    platform.deployments.deploy("bot", "bot:1", "tester")
    try:
        yield LLMWorld(platform, clock, home, platform.settings.log_root())
    finally:
        platform.close()


def test_llm_monitor_thresholds_drift_and_feedback(llm_world: LLMWorld) -> None:
    w, p = llm_world, llm_world.platform
    params = {"min": {"groundedness_mean": 0.5, "feedback_mean": 0.6}, "max": {"cost_mean": 0.01}}
    spec = MonitorSpec(kind=MonitorKind.LLM, reference="previous:1h", params=params)
    p.monitors.create("bot", "answers", spec, "t")
    w.chat(200, minutes=60, seed=1)
    w.chat(200, minutes=60, seed=2)
    ok = p.monitors.run("bot", "answers")
    assert ok.status is MonitorStatus.OK, ok.message
    assert ok.rows == 200 and ok.detail["reference"].startswith("traffic ")
    assert ok.detail["drift"]["topic"]["drifted"] is False and ok.detail["drift"]["query"]["drifted"] is False
    assert ok.detail["metrics"]["cost_mean"] == pytest.approx(0.0002)
    expected = groundedness(f"{DOCS['doc-0']} [doc-0]", [DOCS["doc-0"]])  # the same for every document
    assert expected > 0.8 and ok.value == pytest.approx(expected) and ok.detail["value_metric"] == "groundedness_mean"
    assert ok.detail["metrics"]["feedback_n"] == 0 and "feedback_mean" in ok.detail["unevaluated"]

    ids = w.chat(200, minutes=60, seed=3, topics=SKEWED, grounded=False, qshift=1.0)
    p.feedback.submit("bot", [{"request_id": r, "label": 0} for r in ids[:20]], "user")  # thumbs down
    p.feedback.submit("bot", [{"request_id": r, "score": 0.5} for r in ids[20:30]], "user")
    bad = p.monitors.run("bot", "answers")
    assert bad.status is MonitorStatus.ALERT
    assert bad.message.startswith("groundedness_mean 0 < 0.5; feedback_mean 0.1667 < 0.6; query drift (p=")
    assert "topic drift (p=" in bad.message
    assert bad.detail["metrics"]["feedback_n"] == 30 and bad.value == 0.0
    assert {b["metric"] for b in bad.detail["breaches"]} == {"groundedness_mean", "feedback_mean"}
    assert next(iter(bad.detail["drift"]["topic"]["top_shifts"])) == "doc-5"
    stored = p.monitors.results("bot", "answers")
    assert [r.status for r in stored] == [MonitorStatus.OK, MonitorStatus.ALERT]
    assert json.loads(json.dumps(stored[-1].detail)) == bad.detail


def test_an_app_gets_an_llm_default_monitor_that_runs_without_earlier_traffic(llm_world: LLMWorld) -> None:
    p = llm_world.platform
    mons = {m.name: m.spec for m in p.monitors.list_monitors("bot")}
    assert set(mons) == {"traffic", "llm"}
    assert mons["llm"].kind is MonitorKind.LLM and mons["llm"].reference == "previous:6h"
    llm_world.chat(60, minutes=20, seed=4)
    res = p.monitors.run("bot", "llm")
    assert res.status is MonitorStatus.OK, res.message
    assert "reference window" in res.detail["drift"]["skipped"] and res.detail["reference"] is None
    assert res.detail["metrics"]["requests"] == 60 and res.detail["value_metric"] == "groundedness_mean"


def test_bad_llm_monitors_are_rejected_at_creation(llm_world: LLMWorld) -> None:
    p = llm_world.platform
    before = len(p.monitors.list_monitors("bot"))

    def create(**fields: Any) -> None:
        p.monitors.create("bot", "bad", MonitorSpec(kind=MonitorKind.LLM, **fields), "t")

    with pytest.raises(InvalidArgument, match="unknown llm metric 'latency_p99'"):
        create(params={"max": {"latency_p99": 2.0}})
    with pytest.raises(InvalidArgument, match=r"threshold bounds params\.value"):
        create(threshold=0.5)
    with pytest.raises(InvalidArgument, match="features do not apply"):
        create(features=["query"])
    assert len(p.monitors.list_monitors("bot")) == before
    from sklearn.linear_model import LogisticRegression

    from mlpilot import Client
    from tests.factories import iris_frame

    X, y = iris_frame()
    with Client(home=llm_world.home) as c:
        c.register_model("iris", LogisticRegression(max_iter=300).fit(X, y), sample=X.head(3))
    p.deployments.deploy("iris", "iris:1", "t")
    with pytest.raises(InvalidArgument, match="watches an LLM app; iris:1"):
        p.monitors.create("iris", "bad", MonitorSpec(kind=MonitorKind.LLM), "t")


def test_an_slo_counts_the_llm_monitor_runs(llm_world: LLMWorld) -> None:
    w, p = llm_world, llm_world.platform
    every, window = timedelta(minutes=5), timedelta(minutes=10)
    spec = MonitorSpec(
        kind=MonitorKind.LLM, every=every, window=window, min_rows=10, params={"min.groundedness_mean": 0.5}
    )
    p.monitors.create("bot", "grounded", spec, "t")
    rules = [BurnRateRuleSpec(long="30m", short="5m", burn_rate=10)]
    p.alerts.create(
        "bot", "grounded", SLOSpec(indicator=Indicator.MONITOR, objective=0.99, monitor="grounded", rules=rules), "t"
    )
    changes: list[Any] = []
    for k in range(6):
        w.chat(30, minutes=5, seed=10 + k)
        changes += p.monitors.tick().alerts
    assert [c for c in changes if c.alert.slo == "grounded"] == []
    for k in range(3):
        w.chat(30, minutes=5, seed=20 + k, grounded=False)
        changes += p.monitors.tick().alerts
    assert [c.action for c in changes if c.alert.slo == "grounded"] == ["fired"]
    status = p.alerts.status("bot", "grounded")
    assert 0 < status.good < status.total
    statuses = [r.status for r in p.monitors.results("bot", "grounded")]
    assert statuses.count(MonitorStatus.ALERT) >= 2 and statuses[0] is MonitorStatus.OK


def test_llm_monitor_through_the_sdk_api_and_cli(llm_world: LLMWorld) -> None:
    from mlpilot import Client

    home = llm_world.home
    llm_world.chat(40, minutes=10, seed=30, grounded=False, real_time=True)  # the SDK and CLI run on the real clock
    with Client(home=home) as c:
        spec = {"kind": "llm", "min_rows": 10, "params": {"max": {"latency_p95": 2.0}, "value": "latency_p95"}}
        mon = c.create_monitor("bot", "latency", spec)
        assert mon.spec.kind is MonitorKind.LLM and mon.spec.params["value"] == "latency_p95"
        res = c.run_monitor("bot", "latency")
        assert res.status is MonitorStatus.OK and res.value == pytest.approx(0.5)
        with pytest.raises(InvalidArgument, match="unknown llm metric"):
            c.create_monitor("bot", "typo", {"kind": "llm", "params": {"min": {"grounded": 0.5}}})
    run_cli(
        "monitors", "create", "bot", "grounded-cli", "--kind", "llm", "--min-rows", "10",
        "--param", "min.groundedness_mean=0.5", "--param", "drift=false", home=home,
    )  # fmt: skip
    out = json.loads(run_cli("monitors", "run", "bot", "grounded-cli", "--json", home=home).stdout)
    assert out["status"] == "alert" and out["message"].startswith("groundedness_mean 0 < 0.5")
    assert out["detail"]["drift"] == {"enabled": False}
    bad = run_cli("monitors", "create", "bot", "x", "--kind", "llm", "--param", "max.nope=1", home=home, check=False)
    assert bad.returncode != 0 and "unknown llm metric 'nope'" in (bad.stdout + bad.stderr)
