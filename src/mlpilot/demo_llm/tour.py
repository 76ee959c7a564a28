"""Chapter 12 of ``mlpilot demo``: a support-assistant RAG app on the offline models, evaluated, then a second
prompt version rolled out by canary behind an eval gate. Public SDK only, like the rest of the tour."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime, timezone
from importlib.resources import files
from pathlib import Path
from typing import Any

import pandas as pd

from mlpilot.client import Client
from mlpilot.demo import abort_earlier_rollouts
from mlpilot.errors import NotFound

DEPLOYMENT = "support"
APP = "support-assistant"
PROMPT = "support-prompt"
INDEX = "support-kb"
EVALS = "support-eval"
QUESTIONS = [
    "I forgot my password. How long does the reset link work?",
    "How much is the Plus plan?",
    "Can I protect a share link with a password?",
]


def data_dir() -> Path:
    return Path(str(files("mlpilot.demo_llm") / "data"))


def _once(client: Client, name: str, source: Any, register: Any) -> str:
    """Register ``source`` as the next version of ``name`` unless a version came from the same source (a tag keeps
    the source's hash): a re-run of the tour reuses its versions, its evals and its index."""
    raw = source.read_bytes() if isinstance(source, Path) else json.dumps(source, sort_keys=True).encode()
    digest = hashlib.sha256(raw).hexdigest()[:16]
    try:
        for v in client.list_versions(name):
            if v.tags.get("demo-source") == digest:
                return v.ref
    except NotFound:
        pass
    return str(register(name, source, tags={"demo-source": digest}).ref)


def _index(client: Client, corpus: Path) -> str:
    """Build the index once per corpus version: a re-run reuses the version built from the same dataset."""
    docs_ref = _once(
        client,
        f"{INDEX}-docs",
        corpus,
        lambda n, src, tags: client.register_dataset(n, pd.read_json(src, lines=True), tags=tags),
    )
    dataset = client.get_version(docs_ref)
    try:
        for v in reversed(client.list_versions(INDEX)):
            if (v.metadata.get("index") or {}).get("corpus") == dataset.ref:
                return v.ref
    except NotFound:
        pass
    return client.build_index(INDEX, dataset.ref).ref


def _app(client: Client, prompt: str, index: str) -> str:
    spec = {
        "description": "Answers Acme Drive support questions from the knowledge base",
        "prompt": prompt,
        "retriever": {"index": index, "k": 2},
        "generator": {"local": "smollm2"},
        "parameters": {"temperature": 0, "max_tokens": 40},
        "pricing": {"input_per_million": 0.05, "output_per_million": 0.2},
    }
    return _once(client, APP, spec, client.register_app)


def _latest(client: Client, n: int, since: datetime) -> pd.DataFrame:
    deadline = time.monotonic() + 20
    while True:
        rows = client.logs(DEPLOYMENT, since=since.isoformat(), limit=1000)
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def _ask(client: Client, question: str, wait_s: float = 0.0) -> str:
    """The app's answer; with ``wait_s``, waits that long for a just-deployed app to be loaded and served."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return str(client.chat(DEPLOYMENT, question)["choices"][0]["message"]["content"])
        except NotFound:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _evaluate(client: Client, app: str, dataset: str) -> str:
    """Run the eval once per app version (its summary is recorded on the version; a re-run reads it back)."""
    recorded = client.get_version(app).tags.get(f"eval/{dataset}")
    if recorded is None:
        client.evaluate_app(app, dataset, metrics=["hit_rate", "mrr", "token_f1", "groundedness"])
        recorded = client.get_version(app).tags[f"eval/{dataset}"]
    summary = json.loads(recorded)
    parts = [f"{summary['rows']} questions"]
    for name in ("hit_rate", "token_f1", "groundedness"):
        m = summary["metrics"].get(name) or {}
        if m.get("mean") is not None:
            parts.append(f"{name} {m['mean']:.2f} [{m['ci_low']:.2f}, {m['ci_high']:.2f}]")
    return ", ".join(parts)


def run_llm_chapter(client: Client, say: Any) -> None:
    data = data_dir()
    say(
        "\n[bold]12. An LLM app[/bold]: a support assistant that answers from a knowledge base (RAG) — prompt, "
        "vector index and app are registry artifacts; the generator (SmolLM2-135M) and the embeddings (MiniLM) "
        "run offline, in-process."
    )
    index = _index(client, data / "kb.jsonl")
    client.set_alias(INDEX, "prod", int(index.rsplit(":", 1)[1]))
    info = client.get_version(index).metadata["index"]
    say(
        f"   index [bold]{index}[/bold]: {info['chunks']} chunks of {info['documents']} documents, embedded with "
        f"{info['embedding']['name']} ({info['embedding']['dimensions']}-d), built from {info['corpus']} (lineage)."
    )
    p1 = _once(client, PROMPT, data / "prompt-v1.json", client.register_prompt)
    app1 = _app(client, p1, f"{INDEX}@prod")
    client.deploy(DEPLOYMENT, app1, variant="v1", replace=True)
    say(f"   {app1} ({p1} + {INDEX}@prod + local:smollm2) deployed as [bold]{DEPLOYMENT}[/bold] on /v1 (OpenAI API).")
    since = datetime.now(timezone.utc)
    for q in QUESTIONS:
        answer = _ask(client, q, wait_s=120)
        say(f"   Q: {q}\n   A: {' '.join(answer.split())}")
    rows = _latest(client, len(QUESTIONS), since)
    if len(rows):
        row = rows.iloc[0]
        say(
            f"   logged per request: prompt {row['out.prompt']}, index {row['out.index']}, documents "
            f"{json.loads(row['out.doc_ids'])} (top similarity {row['out.top_score']:.2f}), tokens "
            f"{row['out.input_tokens']}→{row['out.output_tokens']}, generation {row['out.generate_s'] * 1000:.0f} ms, "
            f"groundedness {row['out.groundedness']:.2f}, cost {row['out.cost']:.8f}."
        )
    evals = _once(
        client,
        EVALS,
        data / "eval.jsonl",
        lambda n, src, tags: client.register_dataset(n, pd.read_json(src, lines=True), tags=tags),
    )
    say(f"   eval of {app1} on {evals}: {_evaluate(client, app1, evals)}")

    p2 = _once(client, PROMPT, data / "prompt-v2.json", client.register_prompt)
    app2 = _app(client, p2, f"{INDEX}@prod")
    say(f"   prompt v2 ({p2}: one short sentence, facts only) → {app2}; eval: {_evaluate(client, app2, evals)}")
    abort_earlier_rollouts(client, DEPLOYMENT, say)
    r = client.start_rollout(
        DEPLOYMENT,
        candidate=app2,
        variant="v2",
        # the offline LLM answers in seconds on a busy machine: a minute for each step's 3 answers
        steps=[{"weight": w, "min_duration": "1s", "min_samples": 3, "max_duration": "60s"} for w in (50, 100)],
        analyses=[{"kind": "eval", "params": {"dataset": evals, "metric": "token_f1", "max_drop": 0.05}}],
    )
    say(f"   canary of {app2} behind an eval gate (token F1 may not drop more than 0.05): rollout {r.id}")
    questions = list(pd.read_json(data / "eval.jsonl", lines=True)["input"])
    i = 0
    deadline = time.monotonic() + 240
    while r.active and r.phase.value != "paused" and time.monotonic() < deadline:
        for _ in range(4):
            _ask(client, questions[i % len(questions)], wait_s=120)
            i += 1
        time.sleep(1.1)
        client.tick_rollouts()
        r = client.rollout(rollout_id=r.id)
    gate = next((a for a in (r.last_decision or {}).get("analyses", []) if a.get("kind") == "eval"), None)
    colour = "green" if r.phase.value == "promoted" else "red"
    say(f"   → [bold {colour}]{r.phase.value.replace('_', ' ')}[/bold {colour}] after {i} requests: {r.message}")
    if gate:
        say(f"     eval gate: {gate['verdict']} — {gate['message']}")
    say(
        "   Try: mlpilot apps ask support-assistant 'How do I turn on two-factor authentication?' · "
        "mlpilot eval support-assistant support-eval:1 · mlpilot indexes search support-assistant 'refund' · "
        "the openai client at http://127.0.0.1:8000/v1"
    )
