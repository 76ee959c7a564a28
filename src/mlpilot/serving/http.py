"""Open Inference Protocol v2 over HTTP: a raw ASGI app (no framework on the hot path), orjson, pure ASGI.

Paths it owns: ``/v2…``, the OpenAI API ``/v1…`` (``serving/openai.py``) and ``/metrics``; everything else goes
to ``fallback`` (the control API, the dashboard).
Errors are ``{"error": "…"}`` with the status of the error's kind; every response carries ``x-request-id``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from mlpilot.errors import HTTP_STATUS, InvalidArgument, MlpilotError, NotFound
from mlpilot.serving.codec import HEADER, decode_request, encode_response
from mlpilot.serving.dataplane import DataPlane
from mlpilot.serving.limits import CALLER
from mlpilot.serving.openai import OpenAIEdge, error_body, sse
from mlpilot.serving.quarantine import Quarantined
from mlpilot.serving.tracing import RequestTracer

log = logging.getLogger("mlpilot.serving")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_JSON = b"application/json"
_OCTET = b"application/octet-stream"


class PayloadTooLarge(InvalidArgument):
    pass


class MethodNotAllowed(InvalidArgument):
    pass


def _new_id() -> str:
    return os.urandom(12).hex()


class InferenceApp:
    """The OIP v2 REST edge of a :class:`DataPlane`.

    Args:
        dataplane: what serves.
        fallback: ASGI app for every other path (404 JSON when absent).
        max_body_bytes: larger request bodies get 413 before being read fully.
        server_name / server_version: reported by ``GET /v2``.
    """

    def __init__(
        self,
        dataplane: DataPlane,
        fallback: ASGIApp | None = None,
        max_body_bytes: int = 64 * 1024**2,
        server_name: str = "mlpilot",
        server_version: str = "",
        tracer: RequestTracer | None = None,
    ) -> None:
        self.dp = dataplane
        self.tracer = tracer
        self.openai = OpenAIEdge(dataplane, tracer)
        self.fallback = fallback
        self.max_body = max_body_bytes
        self._server_meta = orjson.dumps(
            {
                "name": server_name,
                "version": server_version,
                "extensions": ["binary_tensor_data", "model_repository_readonly"],
            }
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if self.fallback is not None:
                await self.fallback(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith("/v2"):
            await self._v2(scope, receive, send, path)
        elif path.startswith("/v1/") or path == "/v1":
            await self._v1(scope, receive, send, path)
        elif path == "/metrics":
            if scope["method"] not in ("GET", "HEAD"):
                body = orjson.dumps({"error": f"{scope['method']} is not allowed on /metrics; use GET"})
                await _respond(send, 405, body, _JSON, None, [(b"allow", b"GET, HEAD")])
                return
            body, ctype = self.dp.metrics.render()
            await _respond(send, 200, body, ctype.encode(), None)
        elif self.fallback is not None:
            await self.fallback(scope, receive, send)
        else:
            await _respond(send, 404, b'{"error":"not found"}', _JSON, None)

    async def _v2(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        request_id = _header(scope, b"x-request-id") or _new_id()
        method = scope["method"]
        parts = path.rstrip("/").split("/")[2:]  # after "", "v2"
        try:
            if method == "POST" and parts and parts[-1] == "infer":
                if self.dp.limiter.caller_rate is not None:
                    CALLER.set(_caller(scope))
                inflight = self.dp.metrics.inflight
                inflight.inc()
                try:
                    await self._infer(scope, receive, send, parts, request_id)
                finally:
                    inflight.dec()
                return
            if method not in ("GET", "HEAD"):
                raise MethodNotAllowed(f"{method} is not allowed on {path}")
            await self._get(send, parts, request_id, path)
        except MlpilotError as exc:
            reason = "not_found" if isinstance(exc, NotFound) else "bad_request"
            if isinstance(exc, PayloadTooLarge):
                reason = "too_large"
            if isinstance(exc, Quarantined):  # routed, then refused: counted by the data plane
                status = 422
            elif exc.retry_after_s is not None:  # refused by a limit: counted by the data plane
                status = HTTP_STATUS[exc.kind]
            else:
                self.dp.metrics.unmatched[reason].inc()
                status = (
                    413 if isinstance(exc, PayloadTooLarge) else 405 if isinstance(exc, MethodNotAllowed) else (
                        HTTP_STATUS[exc.kind])
                )  # fmt: skip
            await _respond(send, status, orjson.dumps({"error": exc.message}), _JSON, request_id, _retry(exc))
        except Exception:
            log.exception("unexpected error on %s", path)
            self.dp.metrics.unmatched["internal"].inc()
            await _respond(send, 500, b'{"error":"internal error; this is a bug"}', _JSON, request_id)

    async def _v1(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        """The OpenAI API (``serving/openai.py``); errors in OpenAI's shape."""
        t0 = time.perf_counter()
        request_id = _header(scope, b"x-request-id") or _new_id()
        method = scope["method"]
        route = path.rstrip("/")
        started = False

        async def respond(status: int, body: bytes, ctype: bytes, extra: list[tuple[bytes, bytes]] | None) -> None:
            nonlocal started
            started = True
            await _respond(send, status, body, ctype, request_id, extra)

        async def stream_out(extra: list[tuple[bytes, bytes]]) -> tuple[Any, Any]:
            nonlocal started
            started = True
            headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
                       (b"x-request-id", request_id.encode()), *extra]  # fmt: skip
            await send({"type": "http.response.start", "status": 200, "headers": headers})

            async def event(data: Any) -> None:
                """One server-sent event, or several in one write (a list of payloads)."""
                body = b"".join(sse(d) for d in data) if isinstance(data, list) else sse(data)
                await send({"type": "http.response.body", "body": body, "more_body": True})

            async def close() -> None:
                await send({"type": "http.response.body", "body": b"", "more_body": False})

            return event, close

        def sticky(header: str | None) -> str | None:
            return _header(scope, header.lower().encode()) if header else None

        if self.dp.limiter.caller_rate is not None:
            CALLER.set(_caller(scope))
        inflight = self.dp.metrics.inflight
        inflight.inc()
        try:
            if method == "GET" and route == "/v1/models":
                await respond(200, self.openai.models(), _JSON, None)
            elif method == "GET" and route.startswith("/v1/models/"):
                await respond(200, self.openai.model(route.removeprefix("/v1/models/")), _JSON, None)
            elif method == "POST" and route in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
                body = await self._read_body(scope, receive)
                if route == "/v1/embeddings":
                    await self.openai.embeddings(body, request_id, sticky, respond, t0)
                elif route == "/v1/chat/completions":
                    await self.openai.chat(body, request_id, sticky, respond, stream_out, t0)
                else:
                    await self.openai.completion(body, request_id, sticky, respond, stream_out, t0)
            elif route in ("/v1/models", "/v1/chat/completions", "/v1/completions", "/v1/embeddings") or (
                route.startswith("/v1/models/")
            ):
                raise MethodNotAllowed(f"{method} is not allowed on {path}")
            else:
                raise NotFound(f"no such endpoint: {path}; the OpenAI API here serves /v1/models, "
                               "/v1/chat/completions, /v1/completions and /v1/embeddings")  # fmt: skip
        except MlpilotError as exc:
            if started:
                log.warning("error after the response started on %s: %s", path, exc.message)
                return
            status = 413 if isinstance(exc, PayloadTooLarge) else 405 if isinstance(exc, MethodNotAllowed) else (
                HTTP_STATUS[exc.kind])  # fmt: skip
            reason = "not_found" if status == 404 else "too_large" if status == 413 else "bad_request"
            if exc.retry_after_s is None:  # refusals by a limit are counted by the data plane
                self.dp.metrics.unmatched["internal" if status >= 500 else reason].inc()
            param = (exc.detail or {}).get("param") if isinstance(exc.detail, dict) else None
            await _respond(send, status, error_body(status, exc.message, param), _JSON, request_id, _retry(exc))
        except Exception:
            log.exception("unexpected error on %s", path)
            self.dp.metrics.unmatched["internal"].inc()
            if not started:
                await _respond(send, 500, error_body(500, "internal error; this is a bug"), _JSON, request_id)
        finally:
            inflight.dec()

    async def _get(self, send: Send, parts: list[str], request_id: str, path: str) -> None:
        n = len(parts)
        if n == 0:
            await _respond(send, 200, self._server_meta, _JSON, request_id)
            return
        if parts[0] == "health" and n == 2 and parts[1] in ("live", "ready"):
            ok = parts[1] == "live" or self.dp.ready()
            await _respond(send, 200 if ok else 503, b"{}" if ok else b'{"error":"not ready"}', _JSON, request_id)
            return
        if parts[0] == "models" and n >= 2:
            name, rest = parts[1], parts[2:]
            version = None
            if len(rest) >= 2 and rest[0] == "versions":
                version, rest = rest[1], rest[2:]
            if not rest:
                body = orjson.dumps(self.dp.metadata(name, version))
                await _respond(send, 200, body, _JSON, request_id)
                return
            if rest == ["ready"]:
                ok = self.dp.model_ready(name, version)
                await _respond(
                    send, 200 if ok else 503, b"{}" if ok else b'{"error":"model not ready"}', _JSON, request_id
                )
                return
        raise NotFound(f"no such endpoint: {path}")

    async def _infer(self, scope: Scope, receive: Receive, send: Send, parts: list[str], request_id: str) -> None:
        t0 = time.perf_counter()
        if len(parts) == 3 and parts[0] == "models":
            name, version = parts[1], None
        elif len(parts) == 5 and parts[0] == "models" and parts[2] == "versions":
            name, version = parts[1], parts[3]
        else:
            raise NotFound(f"no such endpoint: {scope['path']}")
        d = self.dp.deployment(name)  # 404 before reading a body for an unknown model
        sticky_header = d.route.sticky_header
        sticky = _header(scope, sticky_header.lower().encode()) if sticky_header else None
        body = await self._read_body(scope, receive)
        header_len_raw = _header(scope, HEADER.encode())
        header_len = None
        if header_len_raw is not None:
            try:
                header_len = int(header_len_raw)
            except ValueError:
                raise InvalidArgument(f"Inference-Header-Content-Length {header_len_raw!r} is not an integer") from None
        decoded = decode_request(body, header_len)
        t1 = time.perf_counter()
        d, lv = self.dp.choose(name, version, sticky)
        if d.quarantine is not None:
            lv = self.dp.screen(d, lv, decoded, request_id, sticky)
        vm = lv.metrics
        root, trace_id = (
            self.tracer.begin(name, request_id, t0, _header(scope, b"traceparent"))
            if self.tracer is not None
            else (None, None)
        )
        try:
            result = await self.dp.infer(d, lv, decoded, request_id, sticky, trace_id=trace_id, arrived=t0)
            t2 = time.perf_counter()
            wanted = decoded.outputs
            outputs = result.outputs
            if wanted is None:
                selected = [(k, v, decoded.binary_output) for k, v in outputs.items()]
            else:
                selected = []
                for o in wanted:
                    if o.name not in outputs:
                        raise InvalidArgument(f"unknown output {o.name!r}; the model returns {list(outputs)}")
                    selected.append((o.name, outputs[o.name], o.binary or decoded.binary_output))
            payload, json_len = encode_response(name, lv.version, selected, decoded.id)
        except MlpilotError as exc:
            vm.requests["server_error" if HTTP_STATUS[exc.kind] >= 500 else "client_error"].inc()
            if root is not None and self.tracer is not None:
                self.tracer.finish(
                    root,
                    lv.route.name,
                    f"{lv.route.model.name}:{lv.route.model.version}",
                    [("decode", t0, t1), ("predict", t1, time.perf_counter())],
                    "error",
                )
            raise
        t3 = time.perf_counter()
        if root is not None and self.tracer is not None:
            t_log = t2 - result.log_s
            t_pred = t_log - result.predict_s
            self.tracer.finish(
                root,
                lv.route.name,
                f"{lv.route.model.name}:{lv.route.model.version}",
                [
                    ("decode", t0, t1),
                    ("route", t1, t_pred),
                    ("predict", t_pred, t_log),
                    ("log", t_log, t2),
                    ("encode", t2, t3),
                ],
                "ok",
            )
        stages = vm.stages
        stages["decode"].observe(t1 - t0)
        stages["predict"].observe(result.predict_s)
        stages["encode"].observe(t3 - t2)
        stages["total"].observe(t3 - t0)
        vm.requests["ok"].inc()
        extra = [(b"inference-header-content-length", str(json_len).encode())] if json_len is not None else []
        extra.append((b"x-mlpilot-variant", lv.route.name.encode()))
        await _respond(send, 200, payload, _OCTET if json_len is not None else _JSON, request_id, extra)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            raise PayloadTooLarge(f"request body of {declared} bytes exceeds the limit of {self.max_body} bytes")
        chunks = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise InvalidArgument("the client disconnected before sending the whole body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise PayloadTooLarge(f"request body exceeds the limit of {self.max_body} bytes")
            chunks.append(chunk)
            more = message.get("more_body", False)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _caller(scope: Scope) -> str | None:
    """Who sends the request: the API key the auth gate checked, else the client's address."""
    principal = scope.get("state", {}).get("principal")
    if principal is not None:
        return str(principal.actor)  # key:<name> or oidc:<subject>
    client = scope.get("client")
    return f"addr:{client[0]}" if client else None


def _retry(exc: MlpilotError) -> list[tuple[bytes, bytes]] | None:
    after = exc.retry_after_header()
    return [(b"retry-after", after.encode())] if after is not None else None


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope["headers"]:
        if k == name:
            return str(v.decode("latin-1"))
    return None


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    request_id: str | None,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if request_id is not None:
        headers.append((b"x-request-id", request_id.encode()))
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
