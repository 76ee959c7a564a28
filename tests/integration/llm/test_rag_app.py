"""A RAG app end to end on a real server: an index built from a registered corpus (lineage), retrieval in the
request log, an index-alias rollback without a restart, the embedder check, and ``mlpilot eval``.

Embeddings and answers come from ``mlpilot.testing.fake_llm`` (a real OpenAI-compatible HTTP server, hashed
bag-of-words vectors), so retrieval is deterministic: a question shares its distinctive words with one document.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pandas as pd
import pytest

from mlpilot.client import Client
from mlpilot.errors import InvalidArgument, NotFound
from tests.helpers import FakeLLMProcess, ServerProcess, run_cli

DOCS_V1 = [
    {
        "id": "password",
        "text": "Reset a forgotten password from the login page. Click forgot password.",
        "topic": "account",
    },
    {"id": "refund", "text": "Refunds are paid within five days to the original card.", "topic": "billing"},
    {"id": "shipping", "text": "Parcels ship from Berlin and arrive in two to four days.", "topic": "orders"},
]
DOCS_V2 = [
    {
        "id": "password-v2",
        "text": "Passwords are reset by support staff only: forgot password emails us.",
        "topic": "account",
    },
    *DOCS_V1[1:],
]
EVAL_ROWS = [
    {
        "id": "q1",
        "input": "forgot password reset",
        "expected": "Reset a forgotten password from the login page.",
        "relevant_ids": json.dumps(["password"]),
    },
    {
        "id": "q2",
        "input": "refunds paid original card",
        "expected": "Refunds are paid within five days.",
        "relevant_ids": json.dumps(["refund"]),
    },
]


class Env:
    def __init__(self, home: Path, server: ServerProcess, fake: FakeLLMProcess) -> None:
        self.home, self.server, self.fake = home, server, fake
        self.client = Client(server.url)
        self.oai = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        self.backend = {"base_url": fake.base_url, "model": "fake-llm"}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("rag")
    fake = FakeLLMProcess()
    server = ServerProcess(root / "home", extra_env={"MLPILOT_SERVER__GRPC": "0"})
    e = Env(root / "home", server, fake)
    try:
        c = e.client
        corpus = root / "docs.jsonl"
        corpus.write_text("\n".join(json.dumps(d) for d in DOCS_V1))
        c.build_index("kb", corpus, embedder=e.backend)
        c.build_index("kb", DOCS_V2, embedder=e.backend)
        c.set_alias("kb", "prod", 1)
        c.register_prompt(
            "rag-prompt",
            {
                "type": "chat",
                "template": [
                    {"role": "system", "content": "Answer from the context and cite [doc-id].\n\n{{context}}"},
                    {"role": "user", "content": "{{question}}"},
                ],
            },
        )
        c.register_app(
            "rag",
            {
                "prompt": "rag-prompt",
                "retriever": {"index": "kb@prod", "k": 2},
                "embedder": e.backend,
                "generator": e.backend,
            },
        )
        c.deploy("rag", "rag:1")
        deadline = time.monotonic() + 20
        while "rag" not in {m.id for m in e.oai.models.list()} and time.monotonic() < deadline:
            time.sleep(0.1)
        yield e
    finally:
        e.client.close()
        e.oai.close()
        server.stop()
        fake.stop()


@pytest.fixture(scope="module")
def eval_set(env: Env) -> str:
    """The eval dataset kb-eval:1, registered once for the tests that read it (whichever of them runs first)."""
    ref = env.client.register_dataset("kb-eval", pd.DataFrame(EVAL_ROWS)).ref
    assert ref == "kb-eval:1"
    return ref


def _ask(env: Env, question: str) -> str:
    r = env.oai.chat.completions.create(model="rag", messages=[{"role": "user", "content": question}])
    return r.choices[0].message.content or ""


def _log_rows(c: Client, until: Any, timeout: float = 15) -> pd.DataFrame:
    deadline = time.monotonic() + timeout
    while True:
        rows = c.logs("rag", limit=10_000)
        if (len(rows) and until(rows)) or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def test_index_versions_record_their_corpus_and_embedder(env: Env) -> None:
    c = env.client
    v1, v2 = c.get_version("kb:1"), c.get_version("kb:2")
    assert v1.parents == ["kb-docs:1"] and v2.parents == ["kb-docs:2"]
    info = v1.metadata["index"]
    assert (info["documents"], info["corpus"], info["ann"]) == (3, "kb-docs:1", "flat")
    assert info["embedding"]["name"] == "fake-llm" and info["embedding"]["dimensions"] == 64
    assert info["content_digest"] != v2.metadata["index"]["content_digest"]
    docs = c.read_dataset("kb-docs:1")
    assert list(docs["id"]) == ["password", "refund", "shipping"] and "topic" in docs.columns


def test_rag_answer_cites_the_retrieved_document_and_is_logged(env: Env) -> None:
    answer = _ask(env, "I forgot my password, how do I reset it?")
    assert answer == "According to [password], Reset a forgotten password from the login page."
    rows = _log_rows(env.client, lambda r: (r["out.topic"] == "password").any())
    row = rows[rows["out.topic"] == "password"].iloc[0]
    assert json.loads(row["out.doc_ids"])[0] == "password" and len(json.loads(row["out.doc_ids"])) == 2
    scores = json.loads(row["out.doc_scores"])
    assert scores == sorted(scores, reverse=True) and row["out.top_score"] == pytest.approx(scores[0])
    assert row["out.index"] == "kb:1" and row["out.prompt"] == "rag-prompt:1"
    assert row["out.cited"] == 1 and row["out.groundedness"] > 0.8
    assert row["out.retrieve_s"] > 0 and row["in.query"] == "I forgot my password, how do I reset it?"
    assert all(pd.notna(row[f"out.qproj[{j}]"]) for j in range(8))


def test_index_alias_move_and_rollback_take_effect_without_restart(env: Env) -> None:
    c = env.client
    question = "forgot password reset"
    assert "[password]" in _ask(env, question)
    c.set_alias("kb", "prod", 2)
    deadline = time.monotonic() + 10
    while "[password-v2]" not in _ask(env, question) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "[password-v2]" in _ask(env, question)
    c.set_alias("kb", "prod", 1)  # the rollback
    deadline = time.monotonic() + 10
    while "[password]" not in _ask(env, question) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _ask(env, question).startswith("According to [password],")
    rows = _log_rows(env.client, lambda r: {"kb:1", "kb:2"} <= set(r["out.index"]) and r.iloc[0]["out.index"] == "kb:1")
    assert {"kb:1", "kb:2"} <= set(rows["out.index"])
    assert rows.iloc[0]["out.index"] == "kb:1"  # the newest answer came from the rolled-back index


def test_an_app_whose_embedder_differs_from_the_index_is_refused(env: Env) -> None:
    other = {**env.backend, "model": "another-embedder"}
    with pytest.raises(InvalidArgument, match="fake-llm"):
        env.client.register_app(
            "bad-rag", {"retriever": {"index": "kb:1"}, "embedder": other, "generator": env.backend}
        )


@pytest.mark.usefixtures("eval_set")
def test_eval_scores_an_app_version_and_records_it(env: Env) -> None:
    c = env.client
    run = c.evaluate_app("rag:1", "kb-eval:1", metrics=["token_f1", "hit_rate", "mrr", "groundedness"])
    assert run.summary["hit_rate"].mean == 1.0 and run.summary["mrr"].mean == 1.0
    assert 0.75 < run.summary["groundedness"].mean < 1.0  # "According to" is not in the context
    assert 0.5 < run.summary["token_f1"].mean <= 1.0
    recorded = json.loads(c.get_version("rag:1").tags["eval/kb-eval:1"])
    assert recorded["metrics"]["hit_rate"]["mean"] == 1.0 and recorded["rows"] == 2


@pytest.mark.usefixtures("eval_set")
def test_eval_cli_gates_on_a_floor(env: Env) -> None:
    ok = run_cli(
        "eval",
        "rag:1",
        "kb-eval:1",
        "--metrics",
        "hit_rate,token_f1",
        "--min",
        "hit_rate=0.9",
        "--no-record",
        "--json",
        home=env.home,
        url=env.server.url,
    )
    out = json.loads(ok.stdout)
    assert out["summary"]["hit_rate"]["mean"] == 1.0 and out["failed"] == []
    assert {r["id"] for r in out["rows"]} == {"q1", "q2"}
    low = run_cli(
        "eval",
        "rag:1",
        "kb-eval:1",
        "--metrics",
        "token_f1",
        "--min",
        "token_f1=0.999",
        "--no-record",
        home=env.home,
        url=env.server.url,
        check=False,
    )
    assert low.returncode == 1 and "below its floor" in low.stdout
    bad = run_cli("eval", "rag:1", "kb-eval:1", "--min", "token_f1", home=env.home, url=env.server.url, check=False)
    assert bad.returncode != 0 and "METRIC=NUMBER" in bad.stdout + bad.stderr


def test_cli_registers_and_searches(env: Env, tmp_path: Path) -> None:
    out = run_cli(
        "indexes", "search", "rag:1", "refunds paid to my card", "-k", "1", "--json", home=env.home, url=env.server.url
    )
    assert [h["id"] for h in json.loads(out.stdout)] == ["refund"]
    app_file = tmp_path / "app.json"
    app_file.write_text(json.dumps({"prompt": "rag-prompt:1", "generator": env.backend}))
    reg = run_cli("apps", "register", "plain", str(app_file), home=env.home, url=env.server.url)
    assert "registered plain:1" in reg.stdout
    missing = run_cli("apps", "ask", "plain:1", "hello", home=env.home, url=env.server.url, check=False)
    assert missing.returncode != 0 and "missing value for variable 'context'" in missing.stdout + missing.stderr
    ask = run_cli(
        "apps", "ask", "plain:1", "hello", "--var", "context=none", "--json", home=env.home, url=env.server.url
    )
    assert json.loads(ask.stdout)["answer"] == "You said: hello"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"prompt": "nope-prompt", "generator": env.backend}))
    fail = run_cli("apps", "register", "plain", str(bad), home=env.home, url=env.server.url, check=False)
    assert fail.returncode != 0 and "nope-prompt" in fail.stdout + fail.stderr


def test_build_index_names_a_missing_corpus_file(env: Env) -> None:
    with pytest.raises(InvalidArgument, match=r"corpus file 'nope/kb\.jsonl' does not exist"):
        env.client.build_index("kb-missing", "nope/kb.jsonl", embedder=env.backend)
    with pytest.raises(NotFound):
        env.client.build_index("kb-missing", "no-such-docs:1", embedder=env.backend)


def test_an_alias_moved_to_an_index_of_another_embedder_is_refused_and_serving_goes_on(env: Env) -> None:
    c = env.client
    other = c.build_index("kb", DOCS_V1, embedder={**env.backend, "model": "another-embedder"})
    assert other.metadata["index"]["embedding"]["name"] == "another-embedder"
    ready = f"{env.server.url}/v2/health/ready"
    assert httpx.get(ready).status_code == 200
    c.set_alias("kb", "prod", other.version)  # the data plane must refuse to load the pair
    deadline = time.monotonic() + 10
    while httpx.get(ready).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert httpx.get(ready).status_code == 503  # the refusal is visible …
    assert _ask(env, "forgot password reset").startswith("According to [password],")  # … and kb:1 still answers
    c.set_alias("kb", "prod", 1)
    deadline = time.monotonic() + 10
    while httpx.get(ready).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert httpx.get(ready).status_code == 200
