"""Rolling out an LLM app version on a real server: the shadow phase stores paired answers and an LLM judge scores
them (win rate with a Wilson bound), the eval gate reads the evals recorded on both versions.

The judge and the generator are ``mlpilot.testing.fake_llm`` (a real OpenAI-compatible server): the candidate app
retrieves and cites a document, the baseline does not, and the fake judge prefers a cited answer — so the
candidate must win, and the numbers in the decision record say by how much.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mlpilot.client import Client
from mlpilot.llm.backends import BackendSpec, OpenAIBackend
from mlpilot.llm.judge import RubricJudge, from_backend
from tests.helpers import FakeLLMProcess, ServerProcess

DOCS = [
    {"id": "password", "text": "Reset a forgotten password from the login page."},
    {"id": "refund", "text": "Refunds are paid within five days to the original card."},
    {"id": "shipping", "text": "Parcels ship from Berlin and arrive in two to four days."},
]
QUESTIONS = ["forgot password reset", "refunds original card", "parcels ship Berlin"]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, FakeLLMProcess, Path]]:
    root = tmp_path_factory.mktemp("llm-rollouts")
    fake = FakeLLMProcess()
    server = ServerProcess(root / "home", extra_env={"MLPILOT_SERVER__GRPC": "0"})
    c = Client(server.url)
    try:
        backend = {"base_url": fake.base_url, "model": "fake-llm"}
        c.build_index("kb", DOCS, embedder=backend)
        c.register_prompt("plain", {"type": "chat", "template": [{"role": "user", "content": "{{question}}"}]})
        c.register_prompt(
            "rag",
            {
                "type": "chat",
                "template": [
                    {"role": "system", "content": "Cite [doc-id].\n{{context}}"},
                    {"role": "user", "content": "{{question}}"},
                ],
            },
        )
        c.register_app("helpdesk", {"prompt": "plain:1", "generator": backend})
        c.register_app(
            "helpdesk",
            {"prompt": "rag:1", "retriever": {"index": "kb:1", "k": 1}, "embedder": backend, "generator": backend},
        )
        c.deploy("helpdesk", "helpdesk:1", variant="v1")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                c.chat("helpdesk", "ping")
                break
            except Exception:
                time.sleep(0.2)
        # the eval dataset every test's eval gate reads (each test stands alone, whichever runs first)
        c.register_dataset("helpdesk-eval", pd.DataFrame({"id": ["q1", "q2"], "input": QUESTIONS[:2]}))
        yield c, fake, root
    finally:
        c.close()
        server.stop()
        fake.stop()


def _drive(c: Client, rollout_id: int, until: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    i = 0
    while True:
        for _ in range(6):
            c.chat("helpdesk", QUESTIONS[i % len(QUESTIONS)])
            i += 1
        time.sleep(0.3)
        c.tick_rollouts()
        r = c.rollout(rollout_id=rollout_id)
        if until(r) or time.monotonic() > deadline:
            return r


def test_eval_gate_and_judged_shadow_win_rate_promote_the_better_app(env: tuple[Client, FakeLLMProcess, Path]) -> None:
    c, fake, _ = env
    with OpenAIBackend(BackendSpec(name="judge", base_url=fake.base_url, model="fake-llm")) as judge_backend:
        judge = RubricJudge("Does it cite its source?", chat=from_backend(judge_backend, temperature=0))
        low = c.evaluate_app("helpdesk:1", "helpdesk-eval:1", metrics=["judge_score"], judge=judge)
        high = c.evaluate_app("helpdesk:2", "helpdesk-eval:1", metrics=["judge_score"], judge=judge)
    assert (low.summary["judge_score"].mean, high.summary["judge_score"].mean) == (2.0, 5.0)

    r = c.start_rollout(
        "helpdesk",
        candidate="helpdesk:2",
        variant="v2",
        shadow={"min_duration": "1s", "min_samples": 12},
        steps=[{"weight": 100, "min_duration": "1s", "min_samples": 6}],
        analyses=[
            {
                "kind": "win_rate",
                "min_samples": 12,
                "params": {"judge": {"base_url": fake.base_url, "model": "fake-llm"}, "min_win_rate": 0.6},
            },
            {"kind": "eval", "params": {"dataset": "helpdesk-eval:1", "metric": "judge_score", "max_drop": 0}},
        ],
    )
    assert r.phase.value == "shadow"
    r = _drive(c, r.id, lambda r: r.phase.value != "shadow")
    decisions = [e.after or {} for e in c.rollout_decisions(r.id)]
    advanced = next(d for d in decisions if d.get("action") == "advance" and d["from"]["phase"] == "shadow")
    gate = next(a for a in advanced["analyses"] if a["kind"] == "win_rate")
    assert gate["verdict"] == "pass", gate
    stats = gate["statistics"]
    assert stats["wins"] >= 12 and stats["losses"] == 0 and stats["low"] >= 0.6
    evals = next(a for a in advanced["analyses"] if a["kind"] == "eval")
    assert evals["verdict"] == "pass" and "candidate judge_score 5.000" in evals["message"]
    r = _drive(c, r.id, lambda r: not r.active)
    assert r.phase.value == "promoted", r.message
    assert c.chat("helpdesk", "forgot password reset")["choices"][0]["message"]["content"].startswith(
        "According to [password]"
    )


def test_the_eval_gate_holds_an_unevaluated_candidate(env: tuple[Client, FakeLLMProcess, Path]) -> None:
    c, fake, _ = env
    backend = {"base_url": fake.base_url, "model": "fake-llm"}
    v = c.register_app("helpdesk", {"prompt": "plain:1", "generator": backend, "parameters": {"max_tokens": 2}})
    r = c.start_rollout(
        "helpdesk",
        candidate=v.ref,
        variant="v3",
        steps=[{"weight": 50, "min_duration": "1s", "min_samples": 3, "max_duration": "1h"}],
        analyses=[{"kind": "eval", "params": {"dataset": "helpdesk-eval:1", "metric": "judge_score", "min": 4}}],
        on_inconclusive="rollback",
    )
    r = _drive(c, r.id, lambda r: not r.active, timeout=6)  # well past the step's minimum duration and samples
    assert r.active and r.phase.value == "canary" and r.step == 0  # waiting for its eval, neither on nor back
    c.abort_rollout(r.id)
