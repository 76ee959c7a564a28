"""Authentication on the data plane, outside it: an ASGI gate in front of the inference edge (OIP v2 REST, the
OpenAI API, ``/metrics``) and the check the gRPC servicer calls. Paths the data plane does not own pass through
(the control API checks its own routes; the dashboard's files are public).

Scopes come from :mod:`mlpilot.serving.spec`. Deployments in ``auth.open_deployments`` answer inference without a
key. The OpenAI API names its deployment in the body (``model``): the gate reads the body (within the data plane's
size limit), then hands it on unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

import orjson

from mlpilot.auth.authorizer import Authorizer, Principal, credentials
from mlpilot.auth.keys import Scope
from mlpilot.errors import ErrorKind, InvalidArgument, MlpilotError
from mlpilot.serving.spec import GRPC_METHODS, UNMATCHED_SCOPE, match, owns

ASGIScope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[ASGIScope, Receive, Send], Awaitable[None]]


async def authenticate(authorizer: Authorizer, key: str | None) -> Principal:
    """:meth:`Authorizer.authenticate` without blocking the event loop when the key is cached (the usual case)."""
    principal = authorizer.cached(key)
    if principal is not None:
        return principal
    return await asyncio.to_thread(authorizer.authenticate, key)


class InferenceGate:
    """ASGI middleware checking keys on the paths the data plane owns."""

    def __init__(
        self, app: ASGIApp, authorizer: Authorizer, open_deployments: Iterable[str] = (), max_body_bytes: int = 0
    ) -> None:
        self.app = app
        self.authorizer = authorizer
        self.open = frozenset(open_deployments)
        self.max_body = max_body_bytes

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not owns(scope["path"]):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        found = match(scope["method"], path)
        needed = Scope(found[0].scope if found else UNMATCHED_SCOPE)
        if needed is Scope.PUBLIC:
            await self.app(scope, receive, send)
            return
        deployment: str | None = None
        if found is not None and found[0].deployment == "path":
            deployment = found[1].get("name")
        elif found is not None and found[0].deployment == "body":
            try:
                body = await self._read_body(receive)
            except InvalidArgument as exc:
                await _refuse(send, path, 413, exc.message)
                return
            deployment = _model_of(body)
            receive = _replay(body, receive)
        if deployment is not None and deployment in self.open and needed is Scope.PREDICT:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        try:
            principal = await authenticate(self.authorizer, credentials(headers.get))
            self.authorizer.authorize(principal, needed, deployment)
        except MlpilotError as exc:
            await _refuse(send, path, exc.http_status, exc.message)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)

    async def _read_body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if self.max_body and size > self.max_body:
                raise InvalidArgument(f"request body exceeds the limit of {self.max_body} bytes")
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    async def authorize_grpc(self, method: str, model: str | None, metadata: Mapping[str, str]) -> Principal | None:
        """The gRPC servicer's check (raises ``Unauthenticated`` / ``PermissionDenied``); the caller's principal, or
        None when the call needs no key."""
        needed = Scope(GRPC_METHODS.get(method, (UNMATCHED_SCOPE, False))[0])
        if needed is Scope.PUBLIC or (model and model in self.open and needed is Scope.PREDICT):
            return None
        principal = await authenticate(self.authorizer, credentials(lambda n: metadata.get(n)))
        self.authorizer.authorize(principal, needed, model or None)
        return principal


def _model_of(body: bytes) -> str | None:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    model = doc.get("model") if isinstance(doc, dict) else None
    return model if isinstance(model, str) else None


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def again() -> MutableMapping[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


async def _refuse(send: Send, path: str, status: int, message: str) -> None:
    if path.startswith("/v1"):  # the OpenAI API's error shape
        kind = {401: "authentication_error", 403: "permission_error", 503: "server_error"}.get(
            status, "invalid_request_error"
        )
        body = orjson.dumps({"error": {"message": message, "type": kind, "param": None, "code": None}})
    else:
        kind = {401: ErrorKind.UNAUTHENTICATED, 403: ErrorKind.PERMISSION_DENIED, 503: ErrorKind.UNAVAILABLE}.get(
            status, ErrorKind.INVALID_ARGUMENT
        )
        body = orjson.dumps({"error": message, "kind": kind.value})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="mlpilot"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
