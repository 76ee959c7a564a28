"""The OpenAI API on the data plane: ``/v1/models``, ``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``.

Served by the same ASGI app, router and deployments as OIP v2: ``model`` in a request is a deployment name (or
``DEPLOYMENT:VARIANT`` to pin a variant, as ``/v2/models/{name}/versions/{v}`` does), and the deployment's traffic
split, sticky header and shadows apply. Deployments of LLM apps answer here; classic models answer on ``/v2``.

Errors have OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, with the status of the error's
kind, so the official clients raise their usual exceptions (``BadRequestError`` …). Streaming is server-sent
events: a ``chat.completion.chunk`` per text delta, the tool calls and the finish reason, a usage chunk when
``stream_options.include_usage`` is set, then ``data: [DONE]``. A failure before the first token is a plain HTTP
error; after it, an ``error`` event ends the stream.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

from mlpilot.errors import HTTP_STATUS, InvalidArgument, MlpilotError, NotFound
from mlpilot.llm.pipeline import AppAnswer, ChatRequest
from mlpilot.runtimes.app import AppRuntime
from mlpilot.serving.dataplane import DataPlane, LoadedDeployment, LoadedVariant
from mlpilot.serving.llmlog import answer_outputs, chat_inputs
from mlpilot.serving.openai_schema import parse_chat, parse_completion, parse_embeddings
from mlpilot.serving.tracing import RequestTracer

log = logging.getLogger("mlpilot.serving")

_JSON = b"application/json"
_SSE = b"text/event-stream"
_DONE = object()
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> bytes:
    kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return orjson.dumps({"error": {"message": message, "type": kind, "param": param, "code": code}})


class _ClientGone(Exception):
    pass


class OpenAIEdge:
    """The ``/v1`` routes of :class:`~mlpilot.serving.http.InferenceApp` (it owns reading bodies and headers)."""

    def __init__(self, dataplane: DataPlane, tracer: RequestTracer | None = None) -> None:
        self.dp = dataplane
        self.tracer = tracer
        self.created = int(time.time())

    # ------------------------------------------------------------------------------------------ routing

    def _app(self, model: str, sticky: str | None) -> tuple[LoadedDeployment, LoadedVariant, AppRuntime]:
        name, _, pin = model.partition(":")
        d, lv = self.dp.choose(name, pin or None, sticky)
        if not isinstance(lv.runtime, AppRuntime):
            raise InvalidArgument(
                f"deployment {name!r} serves a model, not an LLM app: call it with /v2/models/{name}/infer"
            )
        return d, lv, lv.runtime

    def models(self) -> bytes:
        data = [
            {"id": name, "object": "model", "created": self.created, "owned_by": "mlpilot", "mlpilot_kind": kind}
            for name, kind in self.dp.apps()
        ]
        return orjson.dumps({"object": "list", "data": data})

    def model(self, name: str) -> bytes:
        for app, kind in self.dp.apps():
            if app == name:
                return orjson.dumps(
                    {"id": app, "object": "model", "created": self.created, "owned_by": "mlpilot", "mlpilot_kind": kind}
                )
        raise NotFound(f"unknown model {name!r}; the LLM apps served here are {[a for a, _ in self.dp.apps()]}")

    # ------------------------------------------------------------------------------------------ chat

    async def chat(self, body: bytes, request_id: str, header: Any, respond: Any, stream_out: Any, t0: float) -> None:
        """Answer a chat (``completions=False``) request. ``respond(status, body, ctype, extra)`` sends a whole
        response; ``stream_out`` opens an SSE response and returns ``(send_event, close)``."""
        parsed = parse_chat(_json(body))
        await self._run(parsed.model, parsed.request, parsed.stream, parsed.include_usage, "chat", request_id,
                        header, respond, stream_out, t0)  # fmt: skip

    async def completion(
        self, body: bytes, request_id: str, header: Any, respond: Any, stream_out: Any, t0: float
    ) -> None:
        parsed = parse_completion(_json(body))
        await self._run(parsed.model, parsed.request, parsed.stream, parsed.include_usage, "text", request_id,
                        header, respond, stream_out, t0)  # fmt: skip

    async def _run(
        self,
        model: str,
        request: ChatRequest,
        stream: bool,
        include_usage: bool,
        mode: str,
        request_id: str,
        header: Any,
        respond: Any,
        stream_out: Any,
        t0: float,
    ) -> None:
        d = self.dp.deployment(model.partition(":")[0])
        sticky = header(d.route.sticky_header)
        d, lv, app = self._app(model, sticky)
        vm = lv.metrics
        oid = ("chatcmpl-" if mode == "chat" else "cmpl-") + request_id
        created = int(time.time())
        extra = [(b"x-mlpilot-variant", lv.route.name.encode())]
        t1 = time.perf_counter()
        if not stream:
            try:
                answer = await app.chat(request)
            except MlpilotError as exc:
                self._failed(d, lv, request_id, sticky, exc, t1, t0, request)
                raise
            body = orjson.dumps(_whole(answer, oid, created, model, mode, app))
            t_answer = time.perf_counter()
            await respond(200, body, _JSON, extra)  # the answer first; recording it is not on the caller's clock
            self._done(d, lv, request_id, sticky, answer, request, t0, t1, traceparent=header("traceparent"),
                       t_end=t_answer)  # fmt: skip
            vm.stages["total"].observe(time.perf_counter() - t0)
            self._mirror(d, request, request_id, sticky)
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        gone = False

        loop_thread = threading.get_ident()

        def on_text(text: str) -> None:
            if gone:
                raise _ClientGone
            if threading.get_ident() == loop_thread:  # a remote backend streams on the loop itself
                queue.put_nowait(text)
            else:  # a local model streams from a worker thread
                loop.call_soon_threadsafe(queue.put_nowait, text)

        task = asyncio.ensure_future(app.chat(request, on_text))
        task.add_done_callback(lambda _: queue.put_nowait(_DONE))
        first = await queue.get()
        if first is _DONE and task.exception() is not None:
            early = task.exception()
            if isinstance(early, MlpilotError):
                self._failed(d, lv, request_id, sticky, early, t1, t0, request)
            raise early  # type: ignore[misc]
        send_event, close = await stream_out(extra)
        chunk = _chunker(oid, created, model, mode, include_usage)
        try:
            # the generator's stream is open (an empty first item) or has its first tokens: answer at once, so
            # the headers and the role chunk are not on the path of the first token
            item = first
            if mode == "chat":
                await send_event(chunk({"role": "assistant", "content": ""}))
            while item is not _DONE:
                if item:
                    await send_event(chunk({"content": item} if mode == "chat" else item))
                item = await queue.get()
            late = task.exception()
            if late is not None:
                known = isinstance(late, MlpilotError)
                message = late.message if isinstance(late, MlpilotError) else "internal error; this is a bug"
                if not known:
                    log.error("stream failed", exc_info=late)
                self._failed(d, lv, request_id, sticky, late, t1, t0, request)
                status = late.http_status if isinstance(late, MlpilotError) else 500
                await send_event(orjson.loads(error_body(status, message)))
                await close()
                return
            answer = task.result()
            if answer.tool_calls and mode == "chat":
                await send_event(chunk({"tool_calls": _tool_calls(answer, indexed=True)}))
            await send_event(chunk({} if mode == "chat" else "", finish=answer.finish_reason))
            if include_usage:
                await send_event(_usage_chunk(oid, created, model, mode, answer))
            await send_event(None)
            await close()
        except (OSError, _ClientGone, asyncio.CancelledError):
            gone = True
            raise
        self._done(d, lv, request_id, sticky, answer, request, t0, t1, traceparent=header("traceparent"))
        vm.stages["total"].observe(time.perf_counter() - t0)
        self._mirror(d, request, request_id, sticky)

    # ------------------------------------------------------------------------------------------ embeddings

    async def embeddings(self, body: bytes, request_id: str, header: Any, respond: Any, t0: float) -> None:
        parsed = parse_embeddings(_json(body))
        d = self.dp.deployment(parsed.model.partition(":")[0])
        d, lv, app = self._app(parsed.model, header(d.route.sticky_header))
        t1 = time.perf_counter()
        try:
            vectors, tokens = await app.embed(parsed.inputs)
        except MlpilotError as exc:
            self.dp._record(d, lv, request_id, "error", time.perf_counter() - t1, None, exc, decode_s=t1 - t0)
            raise
        if parsed.dimensions is not None and parsed.dimensions != vectors.shape[1]:
            raise InvalidArgument(
                f"dimensions={parsed.dimensions} is not supported: this model's embeddings have {vectors.shape[1]}"
            )
        rows = []
        for i, v in enumerate(vectors):
            emb: Any = (
                base64.b64encode(np.ascontiguousarray(v, dtype="<f4").tobytes()).decode()
                if parsed.encoding_format == "base64"
                else v.tolist()
            )
            rows.append({"object": "embedding", "index": i, "embedding": emb})
        out = {
            "object": "list",
            "data": rows,
            "model": parsed.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        self.dp._record(
            d, lv, request_id, "ok", time.perf_counter() - t1, None, None,
            {"input_tokens": np.array([tokens]), "vectors": np.array([len(vectors)])},
            {"inputs": np.array([len(parsed.inputs)])}, decode_s=t1 - t0,
        )  # fmt: skip
        lv.metrics.requests["ok"].inc()
        self.dp.metrics.llm_tokens.labels(d.route.name, lv.route.name, "input").inc(tokens)
        await respond(200, orjson.dumps(out), _JSON, [(b"x-mlpilot-variant", lv.route.name.encode())])

    # ------------------------------------------------------------------------------------------ records

    def _price(self, answer: AppAnswer) -> float | None:
        if answer.cost is not None:
            return answer.cost
        price = self.dp.llm_prices.get(answer.model or "") or self.dp.llm_prices.get(answer.backend)
        if not price:
            return None
        return (answer.input_tokens * price.get("input_per_million", 0.0)
                + answer.output_tokens * price.get("output_per_million", 0.0)) / 1e6  # fmt: skip

    def _done(
        self,
        d: LoadedDeployment,
        lv: LoadedVariant,
        request_id: str,
        sticky: str | None,
        answer: AppAnswer,
        request: ChatRequest,
        t0: float,
        t1: float,
        shadow: bool = False,
        traceparent: str | None = None,
        t_end: float | None = None,
    ) -> None:
        app = lv.runtime
        assert isinstance(app, AppRuntime)
        answer.cost = self._price(answer)
        t_end = time.perf_counter() if t_end is None else t_end
        latency = t_end - t1
        root, trace_id = (None, None)
        if self.tracer is not None and not shadow:
            root, trace_id = self.tracer.begin(d.route.name, request_id, t0, traceparent)
        self.dp._record(
            d, lv, request_id, "ok", latency, sticky, None,
            answer_outputs(answer, app), chat_inputs(request, answer), shadow=shadow, trace_id=trace_id,
            decode_s=t1 - t0,
        )  # fmt: skip
        if root is not None and self.tracer is not None:
            stages: list[tuple[Any, ...]] = [("decode", t0, t1)]
            for st in answer.stages:
                label = st.name
                if st.name == "generate":
                    label = f"chat {st.attrs.get('gen_ai.request.model') or answer.backend}"
                elif st.name == "tool_call":
                    label = f"execute_tool {st.attrs.get('gen_ai.tool.name')}"
                elif st.name == "embed":
                    label = f"embeddings {st.attrs.get('gen_ai.request.model')}"
                stages.append((label, st.start, st.end, st.attrs))
            self.tracer.finish(root, lv.route.name, f"{lv.route.model.name}:{lv.route.model.version}", stages, "ok")
        vm = lv.metrics
        vm.requests["ok"].inc()
        vm.stages["predict"].observe(latency)
        m = self.dp.metrics
        m.llm_tokens.labels(d.route.name, lv.route.name, "input").inc(answer.input_tokens)
        m.llm_tokens.labels(d.route.name, lv.route.name, "output").inc(answer.output_tokens)
        if answer.cost:
            m.llm_cost.labels(d.route.name, lv.route.name).inc(answer.cost)
        if answer.ttft_s is not None:
            m.llm_ttft.labels(d.route.name, lv.route.name).observe(answer.ttft_s)

    def _failed(
        self,
        d: LoadedDeployment,
        lv: LoadedVariant,
        request_id: str,
        sticky: str | None,
        exc: BaseException,
        t1: float,
        t0: float,
        request: ChatRequest,
        shadow: bool = False,
    ) -> None:
        err = exc if isinstance(exc, MlpilotError) else MlpilotError(f"{type(exc).__name__}: {exc}")
        client = HTTP_STATUS[err.kind] < 500
        lv.metrics.requests["client_error" if client else "server_error"].inc()
        self.dp._record(
            d, lv, request_id, "error", time.perf_counter() - t1, sticky, err,
            None, chat_inputs(request, None), shadow=shadow, decode_s=t1 - t0,
        )  # fmt: skip

    # ------------------------------------------------------------------------------------------ shadows

    def _mirror(self, d: LoadedDeployment, request: ChatRequest, request_id: str, sticky: str | None) -> None:
        for lv in d.shadows:
            if not isinstance(lv.runtime, AppRuntime):
                continue
            if self.dp._shadow_slots <= 0:
                self.dp.metrics.shadow_dropped.labels(d.route.name, lv.route.name).inc()
                continue
            self.dp._shadow_slots -= 1
            self.dp._spawn(self._shadow(d, lv, request, request_id, sticky))

    async def _shadow(
        self, d: LoadedDeployment, lv: LoadedVariant, request: ChatRequest, request_id: str, sticky: str | None
    ) -> None:
        """The shadow answers the same request after the primary did; its answer is logged (``shadow=True``, same
        ``request_id``) so the pair can be compared and scored."""
        t0 = time.perf_counter()
        try:
            assert isinstance(lv.runtime, AppRuntime)
            answer = await lv.runtime.chat(request)
            self._done(d, lv, request_id, sticky, answer, request, t0, t0, shadow=True)
        except MlpilotError as exc:
            self._failed(d, lv, request_id, sticky, exc, t0, t0, request, shadow=True)
        except Exception as exc:  # a shadow never takes anything down
            log.warning("shadow %s/%s failed: %r", d.route.name, lv.route.name, exc)
            lv.metrics.requests["server_error"].inc()
        finally:
            self.dp._shadow_slots += 1


# ---------------------------------------------------------------------------------------------- responses


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument(f"the request body is not valid JSON: {exc}") from None


def _tool_calls(answer: AppAnswer, indexed: bool = False) -> list[dict[str, Any]]:
    out = []
    for i, call in enumerate(answer.tool_calls):
        fn = call.get("function") or {}
        item = {
            "id": call.get("id") or f"call_{os.urandom(12).hex()}",
            "type": "function",
            "function": {"name": fn.get("name", ""), "arguments": fn.get("arguments") or "{}"},
        }
        out.append({"index": i, **item} if indexed else item)
    return out


def _usage(answer: AppAnswer) -> dict[str, int]:
    return {
        "prompt_tokens": answer.input_tokens,
        "completion_tokens": answer.output_tokens,
        "total_tokens": answer.input_tokens + answer.output_tokens,
    }


def _fingerprint(app: AppRuntime) -> str:
    return "|".join(x for x in (app.prompt_ref, app.index_ref) if x) or "mlpilot"


def _whole(answer: AppAnswer, oid: str, created: int, model: str, mode: str, app: AppRuntime) -> dict[str, Any]:
    if mode == "chat":
        message: dict[str, Any] = {"role": "assistant", "content": answer.text or None, "refusal": None}
        if answer.tool_calls:
            message["tool_calls"] = _tool_calls(answer)
        choice: dict[str, Any] = {
            "index": 0,
            "message": message,
            "finish_reason": answer.finish_reason,
            "logprobs": None,
        }
        kind = "chat.completion"
    else:
        choice = {"index": 0, "text": answer.text, "finish_reason": answer.finish_reason, "logprobs": None}
        kind = "text_completion"
    return {
        "id": oid,
        "object": kind,
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": _usage(answer),
        "system_fingerprint": _fingerprint(app),
    }


def _chunker(oid: str, created: int, model: str, mode: str, include_usage: bool) -> Any:
    kind = "chat.completion.chunk" if mode == "chat" else "text_completion"

    def chunk(delta: Any, finish: str | None = None) -> dict[str, Any]:
        choice = (
            {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
            if mode == "chat"
            else {"index": 0, "text": delta, "finish_reason": finish, "logprobs": None}
        )
        body: dict[str, Any] = {"id": oid, "object": kind, "created": created, "model": model, "choices": [choice]}
        if include_usage:
            body["usage"] = None
        return body

    return chunk


def _usage_chunk(oid: str, created: int, model: str, mode: str, answer: AppAnswer) -> dict[str, Any]:
    kind = "chat.completion.chunk" if mode == "chat" else "text_completion"
    return {"id": oid, "object": kind, "created": created, "model": model, "choices": [], "usage": _usage(answer)}


def sse(event: Mapping[str, Any] | None) -> bytes:
    if event is None:
        return b"data: [DONE]\n\n"
    return b"data: " + orjson.dumps(event) + b"\n\n"
