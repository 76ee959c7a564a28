"""RCA agent mode with a replayed model: tools run and feed back, grounding keeps only hypotheses whose refs exist,
the step budget stops a model that only calls tools, bad tool calls go back to the model, tools are MCP tools."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from itertools import repeat
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from openai.types.chat import ChatCompletion

from mlpilot.incidents import rca
from mlpilot.incidents.agent import MAX_RESULT_CHARS, AgentReport, merge, openai_tools, run_agent, tools
from mlpilot.incidents.collectors import COLLECTORS
from mlpilot.incidents.evidence import Case, Change, Diagnosis, Symptom
from mlpilot.llm.tools import ToolSpec

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)
ONSET = T0 + timedelta(minutes=40)
FIXTURE = Path(__file__).parent / "fixtures" / "agent_transcript.json"


def synthetic_case(metric: str = "fraud/availability", extra_features: int = 0, seed: int = 0) -> Case:
    """An hour of traffic of deployment ``fraud``: a canary (20%) that errors 30% of the time from minute 40,
    right after its rollout (``event:7``); an old config change (``event:3``, before the engine's window)."""
    rng = np.random.default_rng(seed)
    n = 3600
    ts = T0 + pd.to_timedelta(np.sort(rng.uniform(0, 3600, n)), unit="s")
    variant = rng.choice(["stable", "canary"], n, p=[0.8, 0.2])
    failing = rng.random(n) < np.where((ts >= pd.Timestamp(ONSET)) & (variant == "canary"), 0.3, 0.01)
    message = np.where(variant == "canary", "ValueError: shape mismatch (got 12, expected 11)", "timeout")
    frame = pd.DataFrame(
        {
            "ts": ts,
            "variant": variant,
            "status": np.where(failing, "error", "ok"),
            "error": [m if f else None for m, f in zip(message, failing, strict=True)],
            "latency_s": rng.gamma(4.0, 0.01, n),
            "in.amount": rng.lognormal(3.0, 1.0, n),
            "in.country": rng.choice(["US", "DE", "BR"], n),
            **{f"in.f{i:02d}": rng.normal(0.0, 1.0, n) for i in range(extra_features)},
        }
    )
    changes = [
        Change(ONSET - timedelta(hours=3), "config", "config:fraud", "batch size 8 → 16", "event:3"),
        Change(ONSET - timedelta(minutes=2), "rollout", "variant:canary", "canary fraud:2 at 20%", "event:7"),
    ]
    symptom = Symptom("errors", ONSET + timedelta(minutes=3), metric)
    return Case("fraud", symptom, T0 + timedelta(minutes=60), frame, changes, stable_variant="stable",
                rollout_variants=["canary"])  # fmt: skip


class ReplayClient:
    """Stands in for ``openai.OpenAI``: ``chat.completions.create`` returns the next recorded response (parsed as
    the openai package's own ``ChatCompletion``) and keeps a copy of each request."""

    def __init__(self, responses: Iterable[Mapping[str, Any] | Exception]) -> None:
        self.responses = iter(responses)
        self.requests: list[dict[str, Any]] = []
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self.create))

    def create(self, **kwargs: Any) -> ChatCompletion:
        self.requests.append(copy.deepcopy(kwargs))
        item = next(self.responses)
        if isinstance(item, Exception):
            raise item
        return ChatCompletion.model_validate(item)


def completion(content: str | None = None, calls: Iterable[tuple[str, str]] = ()) -> dict[str, Any]:
    """A chat.completion object with ``content`` or tool calls ``(name, arguments JSON)``."""
    tool_calls = [
        {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": args}}
        for i, (name, args) in enumerate(calls)
    ]
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    finish = "tool_calls" if tool_calls else "stop"
    return {"id": "c", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}]}  # fmt: skip


@pytest.fixture(scope="module")
def case() -> Case:
    return synthetic_case()


@pytest.fixture(scope="module")
def diagnosis(case: Case) -> Diagnosis:
    d = rca.diagnose(case)
    assert d.verdict == "diagnosed" and d.top is not None and d.top.component == "variant:canary"
    return d


@pytest.fixture(scope="module")
def recorded(case: Case, diagnosis: Diagnosis) -> tuple[AgentReport, ReplayClient]:
    responses = json.loads(FIXTURE.read_text())["responses"]
    client = ReplayClient(responses)
    report = run_agent(case, diagnosis, client, "recorded-model")
    return report, client


# ------------------------------------------------------------------------------------------------ the loop


def test_tool_calls_run_and_their_results_go_back_as_tool_messages(recorded: tuple[AgentReport, ReplayClient]) -> None:
    report, client = recorded
    assert report.stopped == "answered" and report.steps == 2
    assert [c["name"] for c in report.tool_calls] == ["variant_comparison"]
    assert report.tool_calls[0]["arguments"] == {} and report.tool_calls[0]["error"] is None
    assert report.tool_calls[0]["evidence_refs"] == ["variant:canary", "variant:stable"]
    first, second = client.requests
    assert first["model"] == "recorded-model" and first["temperature"] == 0.0
    assert first["tools"] == openai_tools(synthetic_case())
    assert [m["role"] for m in first["messages"]] == ["system", "user"]
    assert "[variant:canary]" in first["messages"][1]["content"]  # the engine's evidence, citable
    assert [m["role"] for m in second["messages"]] == ["system", "user", "assistant", "tool"]
    assert second["messages"][2]["tool_calls"][0]["function"]["name"] == "variant_comparison"
    tool_message = second["messages"][3]
    assert tool_message["tool_call_id"] == "call_variant_1"
    result = json.loads(tool_message["content"])
    assert result["onset"] == ONSET.isoformat()  # default: the engine's onset
    canary = next(e for e in result["evidence"] if e["ref"] == "variant:canary")
    assert canary["data"]["z"] > 5
    assert [m["role"] for m in report.transcript] == ["system", "user", "assistant", "tool", "assistant"]
    assert json.loads(json.dumps(report.transcript)) == list(report.transcript)


def test_only_grounded_hypotheses_are_kept(recorded: tuple[AgentReport, ReplayClient]) -> None:
    report, _ = recorded
    assert report.narrative.startswith("Errors come from the canary [variant:canary]")
    kept = {h.component: h for h in report.hypotheses}
    assert list(kept) == ["variant:canary", "config:fraud"]
    canary = kept["variant:canary"]
    assert canary.source == "agent" and canary.cause == "bad_variant"
    assert canary.evidence == ("variant:canary", "change:event:7")  # "[change:event:7]" read as the ref
    assert canary.confidence == 0.95  # 1.4 clamped
    assert kept["config:fraud"].evidence == ("errors:2",)
    why = {json.dumps(r.get("hypothesis", {}).get("component")): r["why"] for r in report.rejected if "why" in r}
    assert "drift:ghost" in why['"feature:amount"']
    assert why['"canary"'].startswith("bad component")
    assert why['"variant:stable"'] == "no evidence ref"
    assert any(r["why"] == "unknown cause 'gremlins'" for r in report.rejected if "why" in r)
    assert [r for r in report.rejected if "narrative_ref" in r] == [{"narrative_ref": "cache:warm"}]


def test_merge_appends_new_components_and_keeps_the_verdict(
    diagnosis: Diagnosis, recorded: tuple[AgentReport, ReplayClient]
) -> None:
    report, _ = recorded
    merged = merge(diagnosis, report)
    assert merged.verdict == diagnosis.verdict and merged.summary == diagnosis.summary
    assert merged.hypotheses[: len(diagnosis.hypotheses)] == diagnosis.hypotheses  # engine first, unchanged
    added = merged.hypotheses[len(diagnosis.hypotheses) :]
    assert [(h.component, h.source) for h in added] == [("config:fraud", "agent")]  # variant:canary already named
    refs = {e.ref for e in merged.evidence}
    assert all(r in refs for h in merged.hypotheses for r in h.evidence)


def test_refs_returned_only_by_a_tool_count_once_the_tool_ran(case: Case, diagnosis: Diagnosis) -> None:
    answer = json.dumps({"narrative": "An old batching change [change:event:3].", "hypotheses": [
        {"cause": "bad_config", "component": "config:fraud", "confidence": 0.2, "evidence": ["change:event:3"],
         "rationale": "old change"}]})  # fmt: skip
    assert "change:event:3" not in {e.ref for e in diagnosis.evidence}  # before the engine's look-back
    blind = run_agent(case, diagnosis, ReplayClient([completion(answer)]), "m")
    assert blind.hypotheses == () and {"narrative_ref": "change:event:3"} in blind.rejected
    looked = run_agent(
        case, diagnosis, ReplayClient([completion(calls=[("list_changes", "{}")]), completion(answer)]), "m"
    )
    assert [h.evidence for h in looked.hypotheses] == [("change:event:3",)]
    assert not any("narrative_ref" in r for r in looked.rejected)
    assert [e.ref for e in looked.evidence] == ["change:event:3"]  # beyond the engine's evidence
    assert merge(diagnosis, looked).evidence[-1].ref == "change:event:3"


def test_the_step_budget_stops_a_model_that_only_calls_tools(case: Case, diagnosis: Diagnosis) -> None:
    client = ReplayClient(repeat(completion("thinking", [("get_symptom", "{}")])))
    report = run_agent(case, diagnosis, client, "m", max_steps=3)
    assert report.stopped == "step_budget" and report.steps == 3 and len(client.requests) == 3
    assert [c["name"] for c in report.tool_calls] == ["get_symptom"] * 3
    assert report.hypotheses == () and report.narrative == "thinking"
    assert report.transcript[-1]["role"] == "tool"


def test_bad_tool_calls_go_back_to_the_model_as_errors(case: Case, diagnosis: Diagnosis) -> None:
    bad = [
        ("variant_comparison", '{"onset": "yesterday"}'),
        ("variant_comparison", '{"bogus": 1}'),
        ("feature_drift", "not json"),
        ("feature_drift", '{"onset": "2020-01-01T00:00:00Z"}'),
        ("get_evidence", "{}"),
        ("get_evidence", '{"ref": "nothing:here"}'),
        ("rm_rf", "{}"),
        ("slices", '{"onset": "2026-03-02T12:30:00"}'),  # fine: a naive time is read in the case's time zone
    ]
    client = ReplayClient([completion(calls=bad), completion("no idea")])
    report = run_agent(case, diagnosis, client, "m")
    assert report.stopped == "answered" and report.steps == 2
    tool_messages = [m for m in client.requests[1]["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_messages] == [f"call_{i}" for i in range(len(bad))]
    errors = [json.loads(m["content"]).get("error") for m in tool_messages]
    assert "not an ISO date-time" in errors[0]
    assert "'bogus' was unexpected" in errors[1]
    assert "not valid JSON" in errors[2]
    assert "outside the incident's data" in errors[3]
    assert "ref is a required property" in errors[4]
    assert "unknown evidence ref 'nothing:here'" in errors[5]
    assert "unknown tool 'rm_rf'" in errors[6]
    assert errors[7] is None
    assert [c["error"] is not None for c in report.tool_calls] == [True] * 7 + [False]
    assert report.narrative == "no idea" and report.hypotheses == ()


def test_answers_without_json_and_endpoint_failures(case: Case, diagnosis: Diagnosis) -> None:
    plain = run_agent(case, diagnosis, ReplayClient([completion("The canary broke [variant:canary] {oops")]), "m")
    assert plain.narrative == "The canary broke [variant:canary] {oops" and plain.hypotheses == ()
    assert plain.rejected == ()
    failing = run_agent(case, diagnosis, ReplayClient([ConnectionError("refused")]), "m")
    assert failing.stopped == "error: ConnectionError: refused" and failing.steps == 0
    assert failing.narrative == "" and failing.transcript[0]["role"] == "system"


class Refused(Exception):
    status_code = 400


def test_a_backend_without_tools_is_asked_again_without_them(case: Case, diagnosis: Diagnosis) -> None:
    hypothesis = {
        "cause": "bad_variant",
        "component": "variant:canary",
        "confidence": 0.7,
        "evidence": ["variant:canary"],
    }
    answer = json.dumps({"narrative": "[variant:canary] fails.", "hypotheses": [hypothesis]})
    client = ReplayClient([Refused("the local generator does not support tool calls"), completion(answer)])
    report = run_agent(case, diagnosis, client, "m", max_steps=1)
    assert "tools" in client.requests[0] and "tools" not in client.requests[1]
    assert report.stopped == "answered" and report.steps == 1 and "refused tools" in report.notes[0]
    assert [h.component for h in report.hypotheses] == ["variant:canary"]


# ------------------------------------------------------------------------------------------------ the tools


def test_tools_are_valid_mcp_tools_and_openai_functions(case: Case) -> None:
    found = tools(case)
    names = [t["name"] for t in found]
    assert len(set(names)) == len(names)
    assert set(names) == {*COLLECTORS, "get_symptom", "list_changes", "get_evidence", "engine_diagnosis"}
    for tool in found:
        assert set(tool) == {"name", "description", "inputSchema"} and tool["description"].strip()
        assert tool["inputSchema"]["type"] == "object"
        ToolSpec.from_dict(tool)  # MCP name rules and a valid JSON Schema (meta-schema checked)
    assert found[names.index("get_evidence")]["inputSchema"]["required"] == ["ref"]
    assert "onset" in found[names.index("feature_drift")]["inputSchema"]["properties"]
    for tool, fn in zip(found, openai_tools(case), strict=True):
        assert fn == {"type": "function", "function": {"name": tool["name"], "description": tool["description"],
                                                       "parameters": tool["inputSchema"]}}  # fmt: skip


def test_tool_results_are_capped() -> None:
    wide = synthetic_case(extra_features=40)
    d = rca.diagnose(wide)
    every = [(name, "{}") for name in COLLECTORS] + [(n, "{}") for n in ("get_symptom", "engine_diagnosis")]
    client = ReplayClient([completion(calls=every), completion("done")])
    report = run_agent(wide, d, client, "m")
    contents = {c["name"]: m["content"] for c, m in zip(report.tool_calls, report.transcript[3:-1], strict=True)}
    assert all(len(text) <= MAX_RESULT_CHARS for text in contents.values())
    drift = json.loads(contents["feature_drift"])
    assert drift["omitted"] > 0 and len(drift["evidence"]) + drift["omitted"] == 42
    shown = next(c["evidence_refs"] for c in report.tool_calls if c["name"] == "feature_drift")
    assert shown == [e["ref"] for e in drift["evidence"]]  # only what the model saw counts as returned
    assert "series" in json.loads(contents["get_symptom"])["evidence"][0]["data"]
