"""The size limit of artifact uploads (``artifacts.max_upload_bytes``), enforced before the body is stored.

FastAPI parses a multipart body completely (spooling files to disk) before a route runs, so the route's own check
(:func:`mlpilot.api.artifacts` ``_save``) would come after the whole upload was written to a temporary file.
:class:`UploadLimit` answers **413** at once when ``Content-Length`` says the body is too big, and stops reading a
body without one (chunked) as soon as it passes the limit; nothing is kept either way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: routes that take uploads
UPLOAD_PATH = re.compile(r"^/api/v1/artifacts/[^/]+/versions/?$")
#: room for the form's other parts (fields, a sample) and multipart framing, beyond the file's own limit
FORM_SLACK = 16 * 1024**2


def too_large(limit: int, what: str = "the upload") -> str:
    return f"{what} exceeds artifacts.max_upload_bytes ({limit} bytes); nothing was stored"


class UploadLimit:
    """Pure ASGI middleware: POSTs to :data:`UPLOAD_PATH` may carry at most ``limit + FORM_SLACK`` bytes.

    Args:
        app: the control API.
        limit_of: ``artifacts.max_upload_bytes`` (asked per upload: the API is built before its platform is used).
    """

    def __init__(self, app: ASGIApp, limit_of: Callable[[], int]) -> None:
        self.app = app
        self.limit_of = limit_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or not UPLOAD_PATH.match(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        limit = self.limit_of()
        max_body = limit + FORM_SLACK
        length = _content_length(scope)
        if length is not None and length > max_body:
            await _refuse(send, too_large(limit, f"the request body ({length} bytes)"))
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > max_body:  # FastAPI re-raises an HTTPException from body parsing: a 413 answer
                    raise HTTPException(413, too_large(limit, "the request body"))
            return message

        await self.app(scope, counted, send)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(send: Send, message: str) -> None:
    body = json.dumps({"error": message, "kind": "invalid_argument", "type": "InvalidArgument"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
