"""An app on the offline models, served by the data plane: RAG with MiniLM retrieval and SmolLM2 streaming from a
worker thread (the path remote backends do not take)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from mlpilot.client import Client
from mlpilot.demo_llm.tour import data_dir


def test_local_rag_app_streams_and_is_logged(tmp_path: Path) -> None:
    with Client(home=tmp_path / "home") as c:
        c.build_index("kb", data_dir() / "kb.jsonl")
        c.register_prompt("p", data_dir() / "prompt-v2.json")
        c.register_app(
            "local",
            {
                "prompt": "p",
                "retriever": {"index": "kb", "k": 2},
                "generator": {"local": "smollm2"},
                "parameters": {"temperature": 0, "max_tokens": 12},
            },
        )
        c.deploy("local", "local:1")
        body = {
            "model": "local",
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "How much does the Plus plan cost?"}],
        }
        deadline = time.monotonic() + 60
        while True:
            r = c._http.post("/v1/chat/completions", json=body)
            if r.status_code != 404 or time.monotonic() > deadline:
                break
            time.sleep(0.5)  # the app is still loading its models
        assert r.status_code == 200, r.text
        events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        text = "".join(ch["choices"][0]["delta"].get("content") or "" for ch in chunks if ch["choices"])
        assert len(text.split()) >= 3 and sum(1 for ch in chunks if ch["choices"]) > 4  # token by token
        usage = chunks[-1]["usage"]
        assert usage["completion_tokens"] == 12 and usage["prompt_tokens"] > 50  # exact counts from the tokenizer
        deadline = time.monotonic() + 15
        while len(rows := c.logs("local", limit=10)) == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        row = rows.iloc[0]
        assert json.loads(row["out.doc_ids"])[0] == "plans" and row["out.ttft_s"] > 0
        assert row["out.backend"] == "local" and row["out.finish_reason"] == "length"
