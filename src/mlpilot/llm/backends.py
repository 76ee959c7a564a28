"""LLM backends that speak the OpenAI API over HTTP: any provider, vLLM, Ollama, the llama.cpp server.

A backend is described by a :class:`BackendSpec` (where, which model, how patient) and called through an
:class:`OpenAIBackend`::

    spec = BackendSpec(
        name="openai", base_url="https://api.openai.com/v1", model="gpt-4o-mini", api_key_env="OPENAI_API_KEY",
        fallback=BackendSpec(name="local", base_url="http://127.0.0.1:8000/v1", model="qwen2.5-7b"),
    )
    with OpenAIBackend(spec) as llm:
        answer = llm.chat([{"role": "user", "content": "Hi"}])
        answer.text, answer.backend, answer.input_tokens

Failure policy, in order:

* connection errors, timeouts and HTTP 408/409/429/5xx are retried up to ``max_retries`` times, sleeping
  ``uniform(0, min(8, backoff_s * 2**n))`` before retry ``n`` (exponential backoff with full jitter), or exactly
  the ``Retry-After`` seconds of a 429/503 answer (capped at 30 s);
* any other 4xx is the caller's mistake: :class:`~mlpilot.errors.InvalidArgument` at once, quoting the provider's
  message, with no retry and no fallback (the fallback would refuse the same request);
* when the retries are spent, the ``fallback`` spec (if any) is tried with the same policy; when nothing is left,
  :class:`~mlpilot.errors.Unavailable` names every backend tried, its attempts and its last error;
* a missing ``api_key_env`` variable is :class:`~mlpilot.errors.FailedPrecondition` (a configuration error is
  reported, never papered over by a fallback);
* a stream that breaks after its first chunk has been handed out is not retried: it raises ``Unavailable``;
* a 2xx answer that is not the OpenAI shape is :class:`~mlpilot.errors.InferenceError`.

The key is never part of the spec: ``api_key_env`` names the environment variable, read at each call.
"""

from __future__ import annotations

import base64
import email.utils
import itertools
import json
import os
import random
import re
import struct
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from types import TracebackType
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mlpilot.errors import FailedPrecondition, InferenceError, InvalidArgument, Unavailable
from mlpilot.llm.streams import ChatChunk, ChatResult, ChatStream

__all__ = [
    "MAX_BACKOFF_S",
    "MAX_RETRY_AFTER_S",
    "BackendSpec",
    "ChatChunk",
    "ChatResult",
    "ChatStream",
    "OpenAIBackend",
    "backoff_delay",
    "is_retryable_status",
    "parse_retry_after",
]

#: The longest jittered backoff between two attempts.
MAX_BACKOFF_S = 8.0
#: The longest ``Retry-After`` honoured; a server asking for more gets this much.
MAX_RETRY_AFTER_S = 30.0
#: How much of a failing answer's body is quoted in an error.
_BODY_EXCERPT = 300
#: How many fallbacks one spec may chain.
_MAX_CHAIN = 5

_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_HEADER_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "api-key", "x-api-key", "openai-api-key"})

T = TypeVar("T")


# --------------------------------------------------------------------------------------------------- the spec


class BackendSpec(BaseModel):
    """Where an OpenAI-compatible backend is and how patiently to call it.

    Args:
        name: a short label (``[A-Za-z0-9_.-]``, up to 64), reported as :attr:`ChatResult.backend`.
        base_url: the API root including the version, e.g. ``http://127.0.0.1:8080/v1`` (http or https, no
            credentials, no query).
        model: the model name sent with every request.
        api_key_env: the NAME of the environment variable that holds the key (sent as ``Authorization: Bearer``),
            read at call time; ``None`` for servers without authentication.
        timeout_s: per-attempt timeout (connect, each read, write).
        max_retries: retries after the first attempt on retryable failures.
        backoff_s: the base of the exponential backoff (full jitter, capped at :data:`MAX_BACKOFF_S`).
        headers: extra non-secret headers; credentials belong in ``api_key_env``.
        fallback: a backend tried when this one is still failing after its retries.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    base_url: str
    model: str = Field(min_length=1, max_length=256)
    api_key_env: str | None = None
    timeout_s: float = Field(default=30.0, gt=0, le=3600)
    max_retries: int = Field(default=2, ge=0, le=10)
    backoff_s: float = Field(default=0.5, ge=0, le=MAX_BACKOFF_S)
    headers: dict[str, str] = Field(default_factory=dict)
    fallback: BackendSpec | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError(f"backend name {value!r} must be 1-64 characters of letters, digits, '_', '.' or '-'")
        return value

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        try:
            url = httpx.URL(value)
        except (httpx.InvalidURL, TypeError) as exc:
            raise ValueError(f"base_url {value!r} is not a URL: {exc}") from exc
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"base_url {value!r} must be an http:// or https:// URL with a host")
        if url.userinfo:
            raise ValueError("base_url must not carry credentials; name the key's environment variable in api_key_env")
        if url.query or url.fragment:
            raise ValueError(f"base_url {value!r} must not have a query or a fragment")
        return value.rstrip("/")

    @field_validator("api_key_env")
    @classmethod
    def _check_env(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_RE.match(value):
            raise ValueError(
                "api_key_env is the NAME of an environment variable (e.g. OPENAI_API_KEY), not the key itself"
            )
        return value

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for key, val in value.items():
            if key.lower() in _SECRET_HEADERS:
                raise ValueError(
                    f"header {key!r} carries a credential: put the key in an environment variable "
                    "and name that variable in api_key_env"
                )
            if not _HEADER_RE.match(key):
                raise ValueError(f"header name {key!r} is not a valid HTTP header name")
            if "\r" in val or "\n" in val:
                raise ValueError(f"header {key!r} has a line break in its value")
        return value

    @model_validator(mode="after")
    def _check_chain(self) -> BackendSpec:
        names: list[str] = []
        spec: BackendSpec | None = self
        while spec is not None:
            if spec.name in names:
                raise ValueError(f"backend name {spec.name!r} appears twice in the fallback chain")
            names.append(spec.name)
            spec = spec.fallback
        if len(names) > _MAX_CHAIN + 1:
            raise ValueError(f"a fallback chain may hold at most {_MAX_CHAIN} fallbacks, got {len(names) - 1}")
        return self


# ----------------------------------------------------------------------------------------- the retry policy


def is_retryable_status(status: int) -> bool:
    """Whether an HTTP status is worth another attempt: 408, 409, 429 and every 5xx."""
    return status in (408, 409, 429) or 500 <= status <= 599


def backoff_delay(retry: int, base_s: float, rng: random.Random) -> float:
    """The sleep before retry number ``retry`` (0 for the first retry): full jitter over ``base_s * 2**retry``.

    The ceiling is capped at :data:`MAX_BACKOFF_S`, so no single wait is longer than that.
    """
    ceiling = min(MAX_BACKOFF_S, base_s * (2.0 ** min(retry, 30)))
    return rng.uniform(0.0, ceiling)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), capped at 30 s.

    Returns ``None`` when the header is absent or unreadable.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(MAX_RETRY_AFTER_S, max(0.0, seconds))


class _Retryable(Exception):
    """One attempt failed in a way another attempt may fix."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class _Exhausted(Exception):
    """A backend is still failing after all its attempts."""

    def __init__(self, name: str, attempts: int, last: str) -> None:
        super().__init__(f"{name!r} failed {attempts} attempts: {last}")
        self.name = name
        self.attempts = attempts
        self.last = last


class _TruncatedStream(Exception):
    """The event stream ended without ``data: [DONE]``."""


# ---------------------------------------------------------------------------------------------- the results


def _usage(data: Mapping[str, Any]) -> tuple[int | None, int | None]:
    usage = data.get("usage")
    if not isinstance(usage, Mapping):
        return None, None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return (prompt if isinstance(prompt, int) else None, completion if isinstance(completion, int) else None)


def _merge_tool_deltas(calls: list[dict[str, Any]], deltas: Sequence[Any]) -> None:
    """Fold streamed tool-call deltas (keyed by ``index``) into whole OpenAI tool-call dicts."""
    for delta in deltas:
        if not isinstance(delta, Mapping):
            continue
        index = delta.get("index", len(calls))
        while len(calls) <= index:
            calls.append({"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
        call = calls[index]
        if delta.get("id"):
            call["id"] = delta["id"]
        fn = delta.get("function") or {}
        call["function"]["name"] += fn.get("name") or ""
        call["function"]["arguments"] += fn.get("arguments") or ""


# --------------------------------------------------------------------------------------------- the backend


def _error_message(resp: httpx.Response) -> str:
    """The provider's own error message if the body has one (OpenAI, vLLM, Ollama shapes), else a body excerpt."""
    try:
        body = resp.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    if isinstance(body, Mapping):
        err = body.get("error")
        if isinstance(err, Mapping) and isinstance(err.get("message"), str):
            return err["message"]
        for key in ("error", "message", "detail"):
            if isinstance(body.get(key), str):
                return str(body[key])
    text = resp.text.strip()
    return (text[:_BODY_EXCERPT] + "…") if len(text) > _BODY_EXCERPT else (text or resp.reason_phrase)


def _describe_transport(exc: httpx.TransportError) -> str:
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "connection failed"
    return f"{kind} ({type(exc).__name__}: {exc or 'no detail'})"


_DRAIN_LINES = 64
SSE_DONE = object()


def sse_event(line: str) -> Any:
    """One line of an OpenAI event stream: its JSON payload (a dict), :data:`SSE_DONE` at ``data: [DONE]``, or None
    for lines without one (comments, ``event:``, ``id:``, blank separators). Raises ``InferenceError`` for a
    malformed payload or an error event."""
    if not line.startswith("data:"):
        return None
    payload = line[5:].strip()
    if payload == "[DONE]":
        return SSE_DONE
    if not payload:
        return None
    try:
        event = json.loads(payload)
    except ValueError as exc:
        raise InferenceError(f"malformed stream event {payload[:_BODY_EXCERPT]!r}: {exc}") from exc
    if isinstance(event, Mapping) and "error" in event and "choices" not in event:
        err = event["error"]
        msg = err.get("message") if isinstance(err, Mapping) else err
        raise InferenceError(f"the backend reported an error mid-stream: {msg}")
    return event if isinstance(event, dict) else None


def _sse_events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """The JSON payloads of an OpenAI event stream's ``data:`` lines, up to ``data: [DONE]``.

    Raises :class:`_TruncatedStream` if the stream ends without ``[DONE]``.
    """
    for line in lines:
        event = sse_event(line)
        if event is SSE_DONE:
            # read to the end of the body (a server sends nothing more of use), so the connection goes back to the
            # pool instead of being dropped: a new TCP (and TLS) handshake per streamed call otherwise
            for _ in itertools.islice(lines, _DRAIN_LINES):
                pass
            return
        if event is not None:
            yield event
    raise _TruncatedStream("the event stream ended without 'data: [DONE]'")


def all_failed(failures: Sequence[_Exhausted]) -> Unavailable:
    """The error when a backend and every fallback gave up."""
    return Unavailable(
        "; ".join(f"backend {f.name!r} unavailable after {f.attempts} attempts: {f.last}" for f in failures),
        detail={"backends": [{"name": f.name, "attempts": f.attempts, "last_error": f.last} for f in failures]},
    )


def stream_broke(backend: str, count: int, exc: Exception) -> Unavailable:
    """The error when a stream fails after its first chunk (never retried: the caller has seen part of it)."""
    reason = _describe_transport(exc) if isinstance(exc, httpx.TransportError) else str(exc)
    return Unavailable(
        f"backend {backend!r}: the stream broke after {count} chunks (not retried): {reason}",
        detail={"backend": backend, "chunks": count},
    )


def _reserved(params: Mapping[str, Any], keys: Sequence[str]) -> None:
    taken = sorted(k for k in keys if k in params)
    if taken:
        raise InvalidArgument(f"{', '.join(taken)} cannot be passed as extra parameters; the backend sets them")


class OpenAIBackend:
    """A client of one OpenAI-compatible backend and, through ``spec.fallback``, of its fallbacks.

    Args:
        spec: the backend.
        transport: an ``httpx`` transport (tests pass ``httpx.MockTransport``); shared with the fallbacks.
        sleep: how to wait between attempts (tests pass a recorder).
        rng: the jitter source; a fresh ``random.Random()`` if not given.

    Holds a connection pool: use it as a context manager or call :meth:`close`.
    """

    def __init__(
        self,
        spec: BackendSpec,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.spec = spec
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()
        self._client = httpx.Client(
            base_url=spec.base_url + "/",
            timeout=httpx.Timeout(spec.timeout_s),
            transport=transport,
            headers={"Accept": "application/json", **spec.headers},
            follow_redirects=False,
        )
        self.fallback = (
            OpenAIBackend(spec.fallback, transport=transport, sleep=sleep, rng=self._rng) if spec.fallback else None
        )

    # -------------------------------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """Close the connection pools of this backend and its fallbacks."""
        self._client.close()
        if self.fallback is not None:
            self.fallback.close()

    def __enter__(self) -> OpenAIBackend:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"OpenAIBackend(name={self.spec.name!r}, base_url={self.spec.base_url!r}, model={self.spec.model!r})"

    # ---------------------------------------------------------------------------------- plumbing

    def _auth_headers(self) -> dict[str, str]:
        env = self.spec.api_key_env
        if env is None:
            return {}
        key = os.environ.get(env, "").strip()
        if not key:
            raise FailedPrecondition(
                f"backend {self.spec.name!r}: environment variable {env} (its api_key_env) is not set or empty",
                detail={"backend": self.spec.name, "api_key_env": env},
            )
        return {"Authorization": f"Bearer {key}"}

    def _check(self, resp: httpx.Response, path: str) -> None:
        """Raise :class:`_Retryable` or :class:`InvalidArgument` for an error status; return on success."""
        if resp.status_code < 400:
            return
        resp.read()
        status = resp.status_code
        message = f"{status} from /{path}: {_error_message(resp)}"
        if is_retryable_status(status):
            retry_after = parse_retry_after(resp.headers.get("Retry-After")) if status in (429, 503) else None
            raise _Retryable(message, retry_after)
        raise InvalidArgument(
            f"backend {self.spec.name!r}: {message}",
            detail={"backend": self.spec.name, "status": status, "path": f"/{path}"},
        )

    def _retrying(self, op: Callable[[OpenAIBackend], T]) -> tuple[T, int]:
        """Run ``op`` against this backend with the retry policy; return its value and the attempts used."""
        attempts = self.spec.max_retries + 1
        last = "no attempt made"
        for attempt in range(attempts):
            try:
                return op(self), attempt + 1
            except _Retryable as exc:
                last, wait = exc.message, exc.retry_after
            except httpx.TransportError as exc:
                last, wait = _describe_transport(exc), None
            if attempt + 1 < attempts:
                self._sleep(wait if wait is not None else backoff_delay(attempt, self.spec.backoff_s, self._rng))
        raise _Exhausted(self.spec.name, attempts, last)

    def _run(self, op: Callable[[OpenAIBackend], T]) -> tuple[T, OpenAIBackend, int]:
        """Run ``op`` on this backend, then on each fallback in turn; raise :class:`Unavailable` if all fail."""
        failures: list[_Exhausted] = []
        backend: OpenAIBackend | None = self
        while backend is not None:
            try:
                value, attempts = backend._retrying(op)
            except _Exhausted as exc:
                failures.append(exc)
                backend = backend.fallback
                continue
            return value, backend, attempts + sum(f.attempts for f in failures)
        raise all_failed(failures)

    def _post_json(self, path: str, body: Callable[[BackendSpec], dict[str, Any]]) -> Callable[[OpenAIBackend], Any]:
        def op(backend: OpenAIBackend) -> Any:
            resp = backend._client.post(path, json=body(backend.spec), headers=backend._auth_headers())
            backend._check(resp, path)
            return backend._json(resp, path)

        return op

    def _json(self, resp: httpx.Response, path: str) -> dict[str, Any]:
        try:
            data = resp.json()
        except (ValueError, UnicodeDecodeError) as exc:
            raise InferenceError(
                f"backend {self.spec.name!r}: /{path} answered {resp.status_code} with a body that is not JSON: "
                f"{resp.text[:_BODY_EXCERPT]!r}"
            ) from exc
        if not isinstance(data, dict):
            raise InferenceError(f"backend {self.spec.name!r}: /{path} answered a JSON {type(data).__name__}")
        return data

    def _malformed(self, path: str, what: str, data: Any) -> InferenceError:
        excerpt = json.dumps(data)[:_BODY_EXCERPT]
        return InferenceError(f"backend {self.spec.name!r}: /{path} answer has no {what}: {excerpt}")

    # ---------------------------------------------------------------------------------- the API

    def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        **params: Any,
    ) -> ChatResult:
        """``POST /chat/completions``: one answer, with its tool calls, finish reason and token usage.

        ``params`` are passed through (``temperature``, ``max_tokens``, ``response_format`` …).
        """
        _reserved(params, ("model", "messages", "stream"))
        started = time.perf_counter()
        payload = _chat_payload(messages, tools, tool_choice, params)
        data, backend, attempts = self._run(
            self._post_json("chat/completions", lambda s: {"model": s.model, **payload})
        )
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
            raise backend._malformed("chat/completions", "choices", data)
        message = choices[0].get("message")
        if not isinstance(message, Mapping):
            raise backend._malformed("chat/completions", "message", data)
        tool_calls = message.get("tool_calls") or []
        input_tokens, output_tokens = _usage(data)
        return ChatResult(
            text=message.get("content") or "",
            tool_calls=[dict(c) for c in tool_calls if isinstance(c, Mapping)],
            finish_reason=choices[0].get("finish_reason"),
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            latency_s=time.perf_counter() - started,
            backend=backend.spec.name,
            attempts=attempts,
            model=data.get("model"),
        )

    def stream_chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        **params: Any,
    ) -> ChatStream:
        """``POST /chat/completions`` with ``stream: true``: the answer as :class:`ChatChunk` s.

        ``stream_options.include_usage`` is set unless the caller sets it, so the last chunk carries the usage.
        Failures before the first chunk follow the retry and fallback policy; after it, they raise
        :class:`~mlpilot.errors.Unavailable`.
        """
        _reserved(params, ("model", "messages", "stream"))
        payload = _chat_payload(messages, tools, tool_choice, params)
        options = dict(payload.get("stream_options") or {})
        options.setdefault("include_usage", True)
        payload["stream"] = True
        payload["stream_options"] = options
        started = time.perf_counter()
        holder: list[ChatStream] = []
        stream = ChatStream(self._stream_chunks(payload, started, holder), started)
        holder.append(stream)
        return stream

    def _stream_chunks(self, payload: dict[str, Any], started: float, holder: list[ChatStream]) -> Iterator[ChatChunk]:
        path = "chat/completions"

        def open_stream(backend: OpenAIBackend) -> tuple[httpx.Response, Iterator[dict[str, Any]], dict[str, Any]]:
            request = backend._client.build_request(
                "POST",
                path,
                json={"model": backend.spec.model, **payload},
                headers={**backend._auth_headers(), "Accept": "text/event-stream"},
            )
            resp = backend._client.send(request, stream=True)
            try:
                backend._check(resp, path)
                events = _sse_events(resp.iter_lines())
                try:
                    first = next(events)
                except StopIteration:
                    first = {}
                except _TruncatedStream as exc:
                    raise _Retryable(f"/{path}: {exc} before its first chunk") from exc
                except InferenceError as exc:
                    raise InferenceError(f"backend {backend.spec.name!r}: {exc.message}") from exc
            except BaseException:
                resp.close()
                raise
            return resp, events, first

        (resp, events, first), backend, attempts = self._run(open_stream)
        stream = holder[0]
        stream.backend, stream.attempts = backend.spec.name, attempts
        count = 0
        try:
            event: dict[str, Any] | None = first or None
            while event is not None:
                stream.model = event.get("model", stream.model)
                chunk = _chunk(event, time.perf_counter() - started)
                _merge_tool_deltas(stream.tool_calls, chunk.tool_calls)
                count += 1
                yield chunk
                event = next(events, None)
        except (httpx.TransportError, _TruncatedStream) as exc:
            raise stream_broke(backend.spec.name, count, exc) from exc
        except InferenceError as exc:
            raise InferenceError(f"backend {backend.spec.name!r}: {exc.message}") from exc
        finally:
            resp.close()

    def complete(self, prompt: str | Sequence[str], **params: Any) -> ChatResult:
        """``POST /completions`` (legacy text completion): the first choice's text, finish reason and usage."""
        _reserved(params, ("model", "prompt", "stream"))
        if not isinstance(prompt, str) and not (
            isinstance(prompt, Sequence) and prompt and all(isinstance(p, str) for p in prompt)
        ):
            raise InvalidArgument("prompt must be a string or a non-empty list of strings")
        started = time.perf_counter()
        body = {"prompt": prompt if isinstance(prompt, str) else list(prompt), **params}
        data, backend, attempts = self._run(self._post_json("completions", lambda s: {"model": s.model, **body}))
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
            raise backend._malformed("completions", "choices", data)
        input_tokens, output_tokens = _usage(data)
        return ChatResult(
            text=choices[0].get("text") or "",
            tool_calls=[],
            finish_reason=choices[0].get("finish_reason"),
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            latency_s=time.perf_counter() - started,
            backend=backend.spec.name,
            attempts=attempts,
            model=data.get("model"),
        )

    def embed(self, inputs: Sequence[str], **params: Any) -> list[list[float]]:
        """``POST /embeddings`` with ``encoding_format="float"``: one vector per input, in input order.

        A server that answers base64 anyway (little-endian float32) is decoded too.
        """
        _reserved(params, ("model", "input", "encoding_format"))
        if isinstance(inputs, str) or not inputs or not all(isinstance(i, str) for i in inputs):
            raise InvalidArgument("inputs must be a non-empty list of strings")
        body = {"input": list(inputs), "encoding_format": "float", **params}
        data, backend, _ = self._run(self._post_json("embeddings", lambda s: {"model": s.model, **body}))
        rows = data.get("data")
        if not isinstance(rows, list) or len(rows) != len(inputs):
            raise backend._malformed("embeddings", f"'data' list of {len(inputs)} embeddings", data)
        vectors: list[list[float] | None] = [None] * len(inputs)
        for position, row in enumerate(rows):
            if not isinstance(row, Mapping) or "embedding" not in row:
                raise backend._malformed("embeddings", "embedding in every row", data)
            index = row.get("index", position)
            if not isinstance(index, int) or not 0 <= index < len(inputs) or vectors[index] is not None:
                raise backend._malformed("embeddings", "distinct valid indexes", data)
            vectors[index] = _vector(row["embedding"], backend.spec.name)
        return [v for v in vectors if v is not None]

    def models(self) -> list[str]:
        """``GET /models``: the ids of the models the backend serves."""

        def op(backend: OpenAIBackend) -> dict[str, Any]:
            resp = backend._client.get("models", headers=backend._auth_headers())
            backend._check(resp, "models")
            return backend._json(resp, "models")

        data, backend, _ = self._run(op)
        rows = data.get("data")
        if not isinstance(rows, list):
            raise backend._malformed("models", "'data' list", data)
        return [str(row["id"]) for row in rows if isinstance(row, Mapping) and "id" in row]


def _chat_payload(
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None,
    tool_choice: str | Mapping[str, Any] | None,
    params: Mapping[str, Any],
) -> dict[str, Any]:
    if isinstance(messages, (str, bytes)) or not messages:
        raise InvalidArgument("messages must be a non-empty list of {'role': …, 'content': …} objects")
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise InvalidArgument(f"messages[{i}] must be an object with a string 'role'")
    payload: dict[str, Any] = {"messages": [dict(m) for m in messages], **params}
    if tools is not None:
        payload["tools"] = [dict(t) for t in tools]
    if tool_choice is not None:
        payload["tool_choice"] = tool_choice if isinstance(tool_choice, str) else dict(tool_choice)
    return payload


def _chunk(event: Mapping[str, Any], elapsed_s: float) -> ChatChunk:
    text, tool_calls, finish = "", [], None
    choices = event.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], Mapping):
        delta = choices[0].get("delta") or {}
        text = (delta.get("content") or "") if isinstance(delta, Mapping) else ""
        if isinstance(delta, Mapping) and isinstance(delta.get("tool_calls"), list):
            tool_calls = [dict(c) for c in delta["tool_calls"] if isinstance(c, Mapping)]
        finish = choices[0].get("finish_reason")
    input_tokens, output_tokens = _usage(event)
    return ChatChunk(text, tool_calls, finish, input_tokens, output_tokens, elapsed_s)


def _vector(value: Any, name: str) -> list[float]:
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except ValueError as exc:
            raise InferenceError(f"backend {name!r}: an embedding is neither a list nor base64") from exc
        if len(raw) % 4:
            raise InferenceError(f"backend {name!r}: a base64 embedding is not a whole number of float32")
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))
    if isinstance(value, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value):
        return [float(x) for x in value]
    raise InferenceError(f"backend {name!r}: an embedding is not a list of numbers")
