"""What the request log keeps of an LLM app's request: typed ``in.*`` / ``out.*`` columns, one row per request.

Inputs: ``in.query`` (the question retrieval used, or the last user message) and ``in.messages`` (how many).
Outputs: the answer (``out.text``, ``out.finish_reason``), the versions it used (``out.prompt``, ``out.index``; the
app version is the record's ``model``), the backend that answered (``out.backend``, ``out.llm_model``), tokens
(``out.input_tokens``, ``out.output_tokens``), ``out.cost`` (NaN without a price), ``out.ttft_s`` (NaN when
nothing streamed), latency per stage (``out.retrieve_s``, ``out.render_s``, ``out.generate_s``, ``out.tool_s``),
retrieval (``out.doc_ids`` and ``out.doc_scores`` as JSON, ``out.top_score``, ``out.topic`` = the best document),
tool calls (``out.tool_calls`` JSON, ``out.tool_errors``), quality signals computed on the answer
(``out.groundedness``, ``out.cited``, ``out.refusal``, ``out.empty``, ``out.answer_tokens``), and ``out.qproj[j]``:
an 8-dimensional random projection of the query embedding, enough for query-drift tests without storing vectors.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from mlpilot.llm.evals import groundedness, has_citation, is_empty, is_refusal
from mlpilot.llm.pipeline import QUERY_PROJECTION_DIMS, AppAnswer, ChatRequest

__all__ = ["answer_outputs", "chat_inputs"]

_NAN = float("nan")


def _s(value: str | None) -> np.ndarray:
    return np.array([value or ""], dtype=object)


def _f(value: float | None) -> np.ndarray:
    return np.array([_NAN if value is None else float(value)], dtype=np.float64)


def _i(value: int) -> np.ndarray:
    return np.array([int(value)], dtype=np.int64)


def chat_inputs(request: ChatRequest, answer: AppAnswer | None) -> dict[str, np.ndarray]:
    if answer is not None:
        query = answer.query
    else:
        query = next((m.get("content") or "" for m in reversed(request.messages) if m.get("role") == "user"), "")
    return {"query": _s(query if isinstance(query, str) else json.dumps(query)), "messages": _i(len(request.messages))}


def answer_outputs(answer: AppAnswer, app: Any) -> dict[str, np.ndarray]:
    stage_s: dict[str, float] = {}
    for stage in answer.stages:
        key = "retrieve" if stage.name in ("embed", "retrieve") else stage.name
        stage_s[key] = stage_s.get(key, 0.0) + stage.seconds
    doc_ids = [h.doc_id for h in answer.hits]
    text = answer.text
    grounded = groundedness(text, answer.contexts) if answer.contexts and text else _NAN
    projection = answer.query_projection or [_NAN] * QUERY_PROJECTION_DIMS
    out: dict[str, np.ndarray] = {
        "text": _s(text),
        "finish_reason": _s(answer.finish_reason),
        "prompt": _s(getattr(app, "prompt_ref", None)),
        "index": _s(getattr(app, "index_ref", None)),
        "backend": _s(answer.backend),
        "llm_model": _s(answer.model),
        "input_tokens": _i(answer.input_tokens),
        "output_tokens": _i(answer.output_tokens),
        "cost": _f(answer.cost),
        "ttft_s": _f(answer.ttft_s),
        "retrieve_s": _f(stage_s.get("retrieve", 0.0)),
        "render_s": _f(stage_s.get("render", 0.0)),
        "generate_s": _f(stage_s.get("generate", 0.0)),
        "tool_s": _f(stage_s.get("tool_call", 0.0)),
        "doc_ids": _s(json.dumps(doc_ids)),
        "doc_scores": _s(json.dumps([round(h.score, 6) for h in answer.hits])),
        "top_score": _f(answer.hits[0].score if answer.hits else None),
        "topic": _s(doc_ids[0] if doc_ids else ""),
        "tool_calls": _s(
            json.dumps(answer.tool_log + [{"name": c["function"]["name"], "client": True} for c in answer.tool_calls])
        ),
        "tool_errors": _i(sum(1 for t in answer.tool_log if t.get("error"))),
        "groundedness": _f(grounded if not (isinstance(grounded, float) and math.isnan(grounded)) else None),
        "cited": _i(int(bool(doc_ids) and has_citation(text, doc_ids))),
        "refusal": _i(int(is_refusal(text))),
        "empty": _i(int(is_empty(text))),
        "answer_tokens": _i(len(text.split())),
        "qproj": np.array([projection], dtype=np.float64),
    }
    return out
