"""Streaming chat on the event loop: the async twin of :meth:`OpenAIBackend.stream_chat`.

The data plane's OpenAI edge streams a remote backend's tokens through this path, so the request never leaves the
event loop (no hand-off to a worker thread and back for every chunk). Same payload, retry policy (before the first
chunk), fallback chain and error messages as the sync client; the async connection pool is made on first use, on
the loop that uses it, and closed with :func:`aclose`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import httpx
import orjson

from mlpilot.errors import InferenceError
from mlpilot.llm.backends import (
    SSE_DONE,
    OpenAIBackend,
    _chat_payload,
    _chunk,
    _describe_transport,
    _Exhausted,
    _merge_tool_deltas,
    _reserved,
    _Retryable,
    _TruncatedStream,
    all_failed,
    backoff_delay,
    sse_event,
    stream_broke,
)
from mlpilot.llm.streams import AsyncChatStream, ChatChunk

__all__ = ["aclose", "astream_chat"]

T = TypeVar("T")
_PATH = "chat/completions"


def _client(backend: OpenAIBackend) -> httpx.AsyncClient:
    client: httpx.AsyncClient | None = getattr(backend, "_aclient", None)
    if client is None:
        client = httpx.AsyncClient(
            base_url=backend.spec.base_url + "/",
            timeout=httpx.Timeout(backend.spec.timeout_s),
            headers={"Accept": "text/event-stream", "Content-Type": "application/json", **backend.spec.headers},
            follow_redirects=False,
        )
        backend._aclient = client  # type: ignore[attr-defined]
    return client


async def aclose(backend: OpenAIBackend | None) -> None:
    """Close the async connection pools of a backend and its fallbacks (the sync ones: ``backend.close()``)."""
    while backend is not None:
        client: httpx.AsyncClient | None = getattr(backend, "_aclient", None)
        if client is not None:
            backend._aclient = None  # type: ignore[attr-defined]
            await client.aclose()
        backend = backend.fallback


async def _events(lines: AsyncIterator[str]) -> AsyncIterator[dict[str, Any]]:
    async for line in lines:
        event = sse_event(line)
        if event is SSE_DONE:
            async for _ in lines:  # to the end of the body: the connection goes back to the pool
                pass
            return
        if event is not None:
            yield event
    raise _TruncatedStream("the event stream ended without 'data: [DONE]'")


async def _retrying(backend: OpenAIBackend, op: Callable[[OpenAIBackend], Awaitable[T]]) -> tuple[T, int]:
    attempts = backend.spec.max_retries + 1
    last = "no attempt made"
    for attempt in range(attempts):
        try:
            return await op(backend), attempt + 1
        except _Retryable as exc:
            last, wait = exc.message, exc.retry_after
        except httpx.TransportError as exc:
            last, wait = _describe_transport(exc), None
        if attempt + 1 < attempts:
            await asyncio.sleep(
                wait if wait is not None else backoff_delay(attempt, backend.spec.backoff_s, backend._rng)
            )
    raise _Exhausted(backend.spec.name, attempts, last)


async def _run(backend: OpenAIBackend, op: Callable[[OpenAIBackend], Awaitable[T]]) -> tuple[T, OpenAIBackend, int]:
    failures: list[_Exhausted] = []
    current: OpenAIBackend | None = backend
    while current is not None:
        try:
            value, attempts = await _retrying(current, op)
        except _Exhausted as exc:
            failures.append(exc)
            current = current.fallback
            continue
        return value, current, attempts + sum(f.attempts for f in failures)
    raise all_failed(failures)


def astream_chat(
    backend: OpenAIBackend,
    messages: Sequence[Mapping[str, Any]],
    *,
    tools: Sequence[Mapping[str, Any]] | None = None,
    tool_choice: str | Mapping[str, Any] | None = None,
    **params: Any,
) -> AsyncChatStream:
    """``POST /chat/completions`` with ``stream: true`` from the event loop: ``async for chunk in stream``."""
    _reserved(params, ("model", "messages", "stream"))
    payload = _chat_payload(messages, tools, tool_choice, params)
    options = dict(payload.get("stream_options") or {})
    options.setdefault("include_usage", True)
    payload["stream"] = True
    payload["stream_options"] = options
    started = time.perf_counter()
    holder: list[AsyncChatStream] = []
    stream = AsyncChatStream(_chunks(backend, payload, started, holder), started)
    holder.append(stream)
    return stream


async def _chunks(
    backend: OpenAIBackend, payload: dict[str, Any], started: float, holder: list[AsyncChatStream]
) -> AsyncIterator[ChatChunk]:
    async def open_stream(b: OpenAIBackend) -> tuple[httpx.Response, AsyncIterator[dict[str, Any]], dict[str, Any]]:
        client = _client(b)
        body = orjson.dumps({"model": b.spec.model, **payload})
        resp = await client.send(
            client.build_request("POST", _PATH, content=body, headers=b._auth_headers()), stream=True
        )
        try:
            if resp.status_code >= 400:
                await resp.aread()
                b._check(resp, _PATH)
            events = _events(resp.aiter_lines())
            try:
                first = await events.__anext__()
            except StopAsyncIteration:
                first = {}
            except _TruncatedStream as exc:
                raise _Retryable(f"/{_PATH}: {exc} before its first chunk") from exc
            except InferenceError as exc:
                raise InferenceError(f"backend {b.spec.name!r}: {exc.message}") from exc
        except BaseException:
            await resp.aclose()
            raise
        return resp, events, first

    (resp, events, first), used, attempts = await _run(backend, open_stream)
    stream = holder[0]
    stream.backend, stream.attempts = used.spec.name, attempts
    count = 0
    try:
        event: dict[str, Any] | None = first or None
        while event is not None:
            stream.model = event.get("model", stream.model)
            chunk = _chunk(event, time.perf_counter() - started)
            _merge_tool_deltas(stream.tool_calls, chunk.tool_calls)
            count += 1
            yield chunk
            try:
                event = await events.__anext__()
            except StopAsyncIteration:
                event = None
    except (httpx.TransportError, _TruncatedStream) as exc:
        raise stream_broke(used.spec.name, count, exc) from exc
    except InferenceError as exc:
        raise InferenceError(f"backend {used.spec.name!r}: {exc.message}") from exc
    finally:
        await resp.aclose()
