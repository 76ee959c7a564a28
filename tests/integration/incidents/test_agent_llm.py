"""RCA agent mode over real HTTP with the official ``openai`` client: against the deterministic fake LLM (which
calls tools) and against the offline SmolLM2-135M app served by a real ``mlpilot up`` (which does not).

A 135M model rarely writes the JSON answer; these tests check the loop and the grounding, not the model's insight.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from mlpilot.client import Client
from mlpilot.incidents import rca
from mlpilot.incidents.agent import AgentReport, run_agent
from mlpilot.incidents.evidence import Case, Diagnosis
from tests.helpers import FakeLLMProcess, ServerProcess
from tests.unit.incidents.test_agent import ONSET, synthetic_case


def assert_grounded(report: AgentReport, diagnosis: Diagnosis) -> None:
    known = {e.ref for e in diagnosis.evidence} | {e.ref for e in report.evidence}
    for h in report.hypotheses:
        assert h.source == "agent" and h.evidence and set(h.evidence) <= known
        assert 0.0 <= h.confidence <= 0.95
    json.dumps(report.transcript)  # recordable
    json.dumps(report.tool_calls)
    json.dumps(report.rejected)


def test_the_fake_llm_calls_a_tool_and_reads_its_result() -> None:
    # the fake model calls tool NAME when the last user message says "call:NAME {arguments}": the metric does
    case = synthetic_case(metric=f'call:variant_comparison {{"onset": "{ONSET.isoformat()}"}}')
    diagnosis = rca.diagnose(case)
    fake = FakeLLMProcess()
    try:
        with openai.OpenAI(base_url=fake.base_url, api_key="x", max_retries=0, timeout=30) as oai:
            report = run_agent(case, diagnosis, oai, "fake-llm", max_steps=4)
        seen: list[dict[str, Any]] = [b for b in fake.seen() if "messages" in b]
    finally:
        fake.stop()
    assert report.stopped == "answered" and report.steps == 2
    assert [(c["name"], c["arguments"], c["error"]) for c in report.tool_calls] == [
        ("variant_comparison", {"onset": ONSET.isoformat()}, None)
    ]
    assert {"variant:canary", "variant:stable"} <= set(report.tool_calls[0]["evidence_refs"])
    assert len(seen) == 2 and {t["function"]["name"] for t in seen[0]["tools"]} >= {"slices", "get_evidence"}
    tool_message = seen[1]["messages"][-1]
    assert tool_message["role"] == "tool" and "variant:canary" in tool_message["content"]
    assert report.narrative.startswith("The tool returned: ")  # no JSON answer: the text is the narrative
    assert report.hypotheses == ()
    assert_grounded(report, diagnosis)


@pytest.fixture(scope="module")
def smollm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``mlpilot up`` serving the app ``rca`` on the offline SmolLM2-135M; yields the ``/v1`` base URL."""
    home = tmp_path_factory.mktemp("agent") / "home"
    server = ServerProcess(home, extra_env={"MLPILOT_SERVER__GRPC": "0"})
    try:
        with Client(server.url) as c:
            c.register_app("rca", {"generator": {"local": "smollm2"}, "parameters": {"max_tokens": 120}})
            c.deploy("rca", "rca:1")
        body = {"model": "rca", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
        deadline = time.monotonic() + 90
        while True:  # served once the model is loaded (404 until then)
            r = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=60)
            if r.status_code != 404 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert r.status_code == 200, r.text
        yield f"{server.url}/v1"
    finally:
        server.stop()


@pytest.mark.slow
def test_the_offline_smollm2_app_runs_the_loop_and_stays_grounded(smollm: str) -> None:
    case: Case = synthetic_case()
    diagnosis = rca.diagnose(case)
    with openai.OpenAI(base_url=smollm, api_key="x", max_retries=0, timeout=300) as oai:  # closes its sockets
        started = time.monotonic()
        report = run_agent(case, diagnosis, oai, "rca", max_steps=2)
        elapsed = time.monotonic() - started
    assert isinstance(report, AgentReport)
    assert report.steps <= 2 and not report.stopped.startswith("error"), report.stopped
    assert report.stopped in ("answered", "step_budget")
    assert "refused tools" in report.notes[0]  # the local generator does not do tool calls: asked without tools
    assert report.tool_calls == ()
    assert report.transcript[-1]["role"] == "assistant" and report.transcript[-1]["content"]
    assert_grounded(report, diagnosis)
    known = {e.ref for e in diagnosis.evidence}
    assert all(r["narrative_ref"] not in known for r in report.rejected if "narrative_ref" in r)
    assert elapsed < 240
