"""Running an LLM app on one request: retrieve → render → generate (→ tool calls → generate …), timed per stage.

:class:`AppPipeline` is synchronous and transport-free: the data plane runs it on a worker thread and hands text
deltas to the client through ``on_text`` as the generator produces them (streaming). Every stage is a
:class:`Stage` (name, start/end on ``perf_counter``, attributes in the OpenTelemetry GenAI vocabulary), so the
caller can emit spans and log latency per stage.

Decisions:

* The conversation sent to the model is: the app prompt's system messages, the request's own system messages,
  the request's history (everything before its last user message), the prompt's other messages rendered with
  the request's last user message as ``question`` and the retrieved chunks as ``context``, then whatever follows
  the last user message (assistant tool calls and tool results of a client-side tool loop).
* Tools registered with the app run here (arguments checked against their ``inputSchema``; a bad call or a failing
  tool is reported *to the model* as the tool's result, never as an HTTP error — the caller did nothing wrong).
  Tools sent by the client in the request are the client's: a turn that calls any of them ends the request with
  ``finish_reason="tool_calls"`` and only those calls, as the OpenAI API does.
* A request whose prompt plus ``max_tokens`` exceeds the app's ``context_window`` is refused before any model call
  (``InvalidArgument`` with both numbers). Local models count tokens exactly; for remote backends the prompt's
  tokens are estimated as ⌈UTF-8 bytes / 4⌉ + 4 per message (the provider's own refusal still comes back as a
  4xx if the estimate was low).
"""

from __future__ import annotations

import asyncio
import collections.abc as cabc
import json
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import numpy as np

from mlpilot.errors import InvalidArgument, MlpilotError
from mlpilot.llm.apps import AppSpec
from mlpilot.llm.prompts import Prompt, to_openai_messages
from mlpilot.llm.streams import ChatResult
from mlpilot.llm.tools import ToolRunner, ToolSpec, check_arguments, to_openai_tool

__all__ = ["AppAnswer", "AppPipeline", "ChatRequest", "Hit", "Stage", "estimate_tokens", "format_context"]

#: Dimensions of the random projection of query embeddings kept in the request log (for query drift).
QUERY_PROJECTION_DIMS = 8
_DEFAULT_MAX_TOKENS = 256


class Generator(Protocol):
    def chat(self, messages: Sequence[Mapping[str, Any]], **params: Any) -> Any: ...
    def stream_chat(self, messages: Sequence[Mapping[str, Any]], **params: Any) -> Any: ...


class Embedder(Protocol):
    name: str
    fingerprint: str

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class Hit:
    chunk_id: str
    doc_id: str
    text: str
    score: float


@dataclass
class Stage:
    name: str
    start: float
    end: float
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass
class ChatRequest:
    """A validated chat request (the OpenAI edge builds it)."""

    messages: list[dict[str, Any]]
    variables: dict[str, Any] = field(default_factory=dict)
    tools: list[dict[str, Any]] | None = None  # the client's tools, OpenAI shape
    tool_choice: Any = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class AppAnswer:
    text: str
    tool_calls: list[dict[str, Any]]
    finish_reason: str
    input_tokens: int
    output_tokens: int
    stages: list[Stage]
    started: float
    ttft_s: float | None = None  # from ``started`` to the first text delta
    hits: list[Hit] = field(default_factory=list)
    query: str = ""
    query_projection: list[float] | None = None
    backend: str = ""
    model: str | None = None
    cost: float | None = None
    tool_log: list[dict[str, Any]] = field(default_factory=list)
    contexts: list[str] = field(default_factory=list)


def estimate_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """⌈UTF-8 bytes / 4⌉ + 4 per message: the estimate used for remote backends (no tokenizer download)."""
    total = 0
    for m in messages:
        content = m.get("content")
        text = content if isinstance(content, str) else json.dumps(content) if content is not None else ""
        if m.get("tool_calls"):
            text += json.dumps(m["tool_calls"])
        total += math.ceil(len(text.encode("utf-8")) / 4) + 4
    return total


def format_context(hits: Sequence[Hit], max_chars: int) -> str:
    """One paragraph per chunk, ``[doc-id] text``, best first, cut at ``max_chars``."""
    parts: list[str] = []
    used = 0
    for h in hits:
        piece = f"[{h.doc_id}] {' '.join(h.text.split())}"
        if used + len(piece) > max_chars:
            if not parts:
                parts.append(piece[:max_chars])
            break
        parts.append(piece)
        used += len(piece) + 2
    return "\n\n".join(parts)


def _text_of(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, Mapping) and p.get("type") == "text")
    return ""


def _projection(dims: int, out: int) -> np.ndarray:
    rng = np.random.default_rng(20261204 + dims)
    return (rng.standard_normal((dims, out)) / math.sqrt(out)).astype(np.float32)


class AppPipeline:
    """One deployed app version with its bound prompt, index, embedder, generator and tools (all loaded).

    Args:
        index: an object with ``search(vector, k=…, min_score=…) -> [hit]`` (hits have ``chunk_id``, ``doc_id``,
            ``text``, ``score``).
        count_tokens: exact token counting for ``messages`` (local models); the estimate otherwise.
    """

    def __init__(
        self,
        spec: AppSpec,
        *,
        generator: Generator | None,
        embedder: Embedder | None = None,
        prompt: Prompt | None = None,
        index: Any = None,
        tools: Mapping[str, tuple[ToolSpec, ToolRunner]] | None = None,
        count_tokens: Callable[[Sequence[Mapping[str, Any]]], int] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.spec = spec
        self.generator = generator
        self.embedder = embedder
        self.prompt = prompt
        self.index = index
        self.tools = dict(tools or {})
        self._count = count_tokens or estimate_tokens
        self._clock = clock
        self._projections: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------------ retrieve

    def _query(self, request: ChatRequest) -> str:
        var = self.spec.retriever.query_variable if self.spec.retriever else "question"
        value = request.variables.get(var)
        if isinstance(value, str) and value.strip():
            return value
        for m in reversed(request.messages):
            if m.get("role") == "user":
                return _text_of(m)
        return ""

    def retrieve(self, query: str, stages: list[Stage]) -> tuple[list[Hit], list[float] | None]:
        r = self.spec.retriever
        if r is None or self.index is None or self.embedder is None:
            return [], None
        if not query.strip():
            raise InvalidArgument("this app retrieves context for a question: send a user message with text")
        t0 = self._clock()
        vector = np.asarray(self.embedder.embed([query]), dtype=np.float32)[0]
        t1 = self._clock()
        raw = self.index.search(vector, k=r.k, min_score=r.min_score)
        t2 = self._clock()
        hits = [Hit(h.chunk_id, h.doc_id, h.text, float(h.score)) for h in raw]
        stages.append(
            Stage("embed", t0, t1, {"gen_ai.operation.name": "embeddings", "gen_ai.request.model": self.embedder.name})
        )
        stages.append(
            Stage(
                "retrieve",
                t1,
                t2,
                {"db.operation.name": "search", "mlpilot.retrieval.k": r.k, "mlpilot.retrieval.hits": len(hits),
                 "mlpilot.retrieval.top_score": hits[0].score if hits else None},
            )
        )  # fmt: skip
        proj = self._projections.get(len(vector))
        if proj is None:
            proj = self._projections[len(vector)] = _projection(len(vector), QUERY_PROJECTION_DIMS)
        return hits, [float(x) for x in vector @ proj]

    # ------------------------------------------------------------------------------------------- render

    def render(self, request: ChatRequest, query: str, hits: Sequence[Hit]) -> list[dict[str, Any]]:
        msgs = request.messages
        last_user = max((i for i, m in enumerate(msgs) if m.get("role") == "user"), default=None)
        before = msgs[:last_user] if last_user is not None else list(msgs)
        after = msgs[last_user + 1 :] if last_user is not None else []
        req_system = [m for m in before if m.get("role") in ("system", "developer")]
        history = [m for m in before if m.get("role") not in ("system", "developer")]
        r = self.spec.retriever
        context = format_context(hits, r.max_context_chars) if r else ""
        if self.prompt is None:
            out = [*req_system, *history]
            if r is not None:
                out.insert(0, {"role": "system", "content": f"Use this context to answer:\n\n{context}"})
            if last_user is not None:
                out.append(msgs[last_user])
            return [*out, *after]
        values: dict[str, Any] = dict(request.variables)
        qvar = r.query_variable if r else "question"
        if qvar in self.prompt.variables and qvar not in values and last_user is not None:
            values[qvar] = query
        if r is not None:
            values[r.context_variable] = context
        rendered = to_openai_messages(self.prompt.render(values))
        p_system = [m for m in rendered if m["role"] == "system"]
        p_rest = [m for m in rendered if m["role"] != "system"]
        return [*p_system, *req_system, *history, *p_rest, *after]

    # ----------------------------------------------------------------------------------------- generate

    def _params(self, request: ChatRequest) -> dict[str, Any]:
        config = dict(self.prompt.config) if self.prompt is not None else {}
        params: dict[str, Any] = {
            k: config[k] for k in ("temperature", "top_p", "max_tokens", "stop", "seed") if k in config
        }
        params.update(self.spec.parameters)
        params.update({k: v for k, v in request.params.items() if v is not None})
        return params

    def _check_window(self, messages: list[dict[str, Any]], params: Mapping[str, Any]) -> int:
        prompt_tokens = self._count(messages)
        wanted = int(params.get("max_tokens") or _DEFAULT_MAX_TOKENS)
        limit = self.spec.context_window
        if prompt_tokens + wanted > limit:
            raise InvalidArgument(
                f"the request needs {prompt_tokens} prompt tokens + {wanted} completion tokens (max_tokens) = "
                f"{prompt_tokens + wanted}, over this app's context window of {limit} tokens; shorten the messages "
                "or lower max_tokens",
                detail={"prompt_tokens": prompt_tokens, "max_tokens": wanted, "context_window": limit},
            )
        return prompt_tokens

    def run(self, request: ChatRequest, on_text: Callable[[str], None] | None = None) -> AppAnswer:
        """Answer ``request``. With ``on_text``, the generator streams and every text delta is handed to it (an empty
        string first, when the generator's stream opens)."""
        steps = self._steps(request)
        step = next(steps)
        while True:
            kind, arg, answer = step
            value = (
                self._generate(arg[0], arg[1], answer, on_text) if kind == "generate" else self._run_tool(arg, answer)
            )
            try:
                step = steps.send(value)
            except StopIteration as stop:
                return cast(AppAnswer, stop.value)

    async def arun(self, request: ChatRequest, on_text: Callable[[str], None], executor: Executor) -> AppAnswer:
        """:meth:`run` with the generator streamed on the event loop (``astream_chat``); retrieval, token counting
        and tools, which are CPU or blocking work, still run on ``executor``."""
        loop = asyncio.get_running_loop()
        steps = self._steps(request)
        heavy = self.index is not None or self._count is not estimate_tokens
        step = await loop.run_in_executor(executor, next, steps) if heavy else next(steps)
        while True:
            kind, arg, answer = step
            if kind == "generate":
                value: Any = await self._agenerate(arg[0], arg[1], answer, on_text)
            else:
                value = await loop.run_in_executor(executor, self._run_tool, arg, answer)
            try:
                step = steps.send(value)
            except StopIteration as stop:
                return cast(AppAnswer, stop.value)

    def _steps(self, request: ChatRequest) -> cabc.Generator[tuple[str, Any, AppAnswer], Any, AppAnswer]:
        """The request as steps: yields ``("generate", (messages, kwargs), answer)`` and receives ``(text, calls)``,
        yields ``("tool", call, answer)`` and receives the tool message; returns the answer. :meth:`run` and
        :meth:`arun` drive it, each running the steps its way."""
        if self.generator is None:
            raise InvalidArgument(f"this is an {self.spec.type} app: it does not chat")
        started = self._clock()
        self._check_history(request)
        stages: list[Stage] = []
        query = self._query(request)
        hits, projection = self.retrieve(query, stages)
        t0 = self._clock()
        messages = self.render(request, query, hits)
        params = self._params(request)
        self._check_window(messages, params)
        stages.append(Stage("render", t0, self._clock(), {"mlpilot.prompt.messages": len(messages)}))
        client_tools = list(request.tools or [])
        client_names = {t["function"]["name"] for t in client_tools}
        server_tools = [to_openai_tool(spec) for name, (spec, _) in self.tools.items() if name not in client_names]
        answer = AppAnswer("", [], "stop", 0, 0, stages, started, hits=hits, query=query, query_projection=projection)
        answer.contexts = [h.text for h in hits]
        rounds = 0
        while True:
            offer = [*server_tools, *client_tools] if rounds < self.spec.max_tool_rounds else client_tools
            kwargs: dict[str, Any] = dict(params)
            if offer:
                kwargs["tools"] = offer
                if request.tool_choice is not None:
                    kwargs["tool_choice"] = request.tool_choice
            text, calls = yield "generate", (messages, kwargs), answer
            if not calls:
                answer.text += text
                break
            theirs = [c for c in calls if c["function"]["name"] in client_names]
            unknown = [c for c in calls if c["function"]["name"] not in client_names | set(self.tools)]
            if theirs or unknown:
                answer.text += text
                answer.tool_calls = theirs or unknown
                answer.finish_reason = "tool_calls"
                break
            rounds += 1
            messages = [*messages, {"role": "assistant", "content": text or None, "tool_calls": calls}]
            for call in calls:
                messages.append((yield "tool", call, answer))
        if answer.cost is None and self.spec.pricing is not None:
            answer.cost = self.spec.pricing.cost(answer.input_tokens, answer.output_tokens)
        return answer

    def _generate(
        self,
        messages: list[dict[str, Any]],
        kwargs: dict[str, Any],
        answer: AppAnswer,
        on_text: Callable[[str], None] | None,
    ) -> tuple[str, list[dict[str, Any]]]:
        assert self.generator is not None
        t0 = self._clock()
        if on_text is None:
            result = self.generator.chat(messages, **kwargs)
            text = result.text
            if answer.ttft_s is None and text:
                answer.ttft_s = self._clock() - answer.started
        else:
            stream = self.generator.stream_chat(messages, **kwargs)
            pieces: list[str] = []
            try:
                for i, chunk in enumerate(stream):
                    if i == 0:
                        on_text("")  # the stream is open: the caller may start its answer (headers, role)
                    if chunk.text:
                        if answer.ttft_s is None:
                            answer.ttft_s = self._clock() - answer.started
                        pieces.append(chunk.text)
                        on_text(chunk.text)
            finally:
                stream.close()
            result = stream.result()
            text = "".join(pieces)
        return self._generated(text, result, answer, t0)

    async def _agenerate(
        self, messages: list[dict[str, Any]], kwargs: dict[str, Any], answer: AppAnswer, on_text: Callable[[str], None]
    ) -> tuple[str, list[dict[str, Any]]]:
        from mlpilot.llm.astream import astream_chat

        t0 = self._clock()
        stream = astream_chat(self.generator, messages, **kwargs)  # type: ignore[arg-type]
        pieces: list[str] = []
        opened = False
        try:
            async for chunk in stream:
                if not opened:
                    opened = True
                    on_text("")  # the stream is open: the caller may start its answer (headers, role)
                if chunk.text:
                    if answer.ttft_s is None:
                        answer.ttft_s = self._clock() - answer.started
                    pieces.append(chunk.text)
                    on_text(chunk.text)
        finally:
            await stream.aclose()
        return self._generated("".join(pieces), stream.result(), answer, t0)

    def _generated(
        self, text: str, result: ChatResult, answer: AppAnswer, t0: float
    ) -> tuple[str, list[dict[str, Any]]]:
        """Account for one generation in the answer (tokens, backend, finish reason, its span)."""
        calls, finish = list(result.tool_calls), result.finish_reason
        inp, out, backend, model = result.input_tokens, result.output_tokens, result.backend, result.model
        t1 = self._clock()
        answer.input_tokens += inp or 0
        answer.output_tokens += out or 0
        answer.backend, answer.model = backend, model
        answer.finish_reason = finish or "stop"
        answer.stages.append(
            Stage(
                "generate",
                t0,
                t1,
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.system": backend,
                    "gen_ai.request.model": model or "",
                    "gen_ai.usage.input_tokens": inp or 0,
                    "gen_ai.usage.output_tokens": out or 0,
                    "gen_ai.response.finish_reasons": [finish or "stop"],
                },
            )
        )
        return text, [c for c in calls if isinstance(c.get("function"), Mapping)]

    def _check_history(self, request: ChatRequest) -> None:
        """Tool calls of this app's own tools in the conversation must carry arguments their schema accepts."""
        for i, message in enumerate(request.messages):
            for j, call in enumerate(message.get("tool_calls") or []):
                fn = call.get("function") or {}
                if fn.get("name") not in self.tools:
                    continue
                spec = self.tools[fn["name"]][0]
                try:
                    args = json.loads(fn.get("arguments") or "{}")
                    if not isinstance(args, dict):
                        raise InvalidArgument("the arguments must be a JSON object")
                    check_arguments(spec, args)
                except (json.JSONDecodeError, InvalidArgument) as exc:
                    why = exc.message if isinstance(exc, InvalidArgument) else f"not valid JSON ({exc.msg})"
                    raise InvalidArgument(f"messages[{i}].tool_calls[{j}] ({fn['name']}): {why}") from None

    def _run_tool(self, call: dict[str, Any], answer: AppAnswer) -> dict[str, Any]:
        name = call["function"]["name"]
        spec, runner = self.tools[name]
        t0 = self._clock()
        error = False
        try:
            args = json.loads(call["function"].get("arguments") or "{}")
            if not isinstance(args, dict):
                raise InvalidArgument("tool arguments must be a JSON object")
            check_arguments(spec, args)
            result = runner.call(args)
            content, error = result.text or json.dumps(result.structured_content), bool(result.is_error)
        except json.JSONDecodeError as exc:
            content, error = f"error: the arguments are not valid JSON ({exc.msg})", True
        except MlpilotError as exc:
            content, error = f"error: {exc.message}", True
        t1 = self._clock()
        answer.stages.append(
            Stage(
                "tool_call", t0, t1, {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name, "error": error}
            )
        )
        answer.tool_log.append({"name": name, "arguments": call["function"].get("arguments"), "error": error})
        return {"role": "tool", "tool_call_id": call.get("id") or name, "content": content}

    # --------------------------------------------------------------------------------------- embeddings

    def embed(self, texts: Sequence[str]) -> tuple[np.ndarray, int]:
        """Vectors for ``texts`` and the tokens they used (estimated as ⌈bytes/4⌉ when the embedder has no count)."""
        if self.embedder is None:
            raise InvalidArgument("this app has no embedder")
        vectors = np.asarray(self.embedder.embed(list(texts)), dtype=np.float32)
        counter = getattr(self.embedder, "count_tokens", None)
        tokens = int(counter(list(texts))) if callable(counter) else sum(math.ceil(len(t.encode()) / 4) for t in texts)
        return vectors, tokens
