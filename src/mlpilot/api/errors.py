"""The REST edge of the error tree: ``MlpilotError`` → status from its kind, body ``{"error": …, "kind": …}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from mlpilot.errors import ErrorKind, MlpilotError

log = logging.getLogger("mlpilot.api")


class ErrorBody(BaseModel):
    """Every error response of the control API (``MlpilotError.to_dict``)."""

    error: str
    kind: ErrorKind
    type: str | None = None
    detail: dict[str, Any] | None = None


#: the error responses every route declares in the OpenAPI spec: a bad request is a 400 (never FastAPI's 422),
#: an unknown name a 404 … — any 4xx has this body; 503 when the store or another dependency is unavailable
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorBody, "description": "The request is wrong; `error` says what and how to fix it"},
    503: {"model": ErrorBody, "description": "A dependency (the store, the leader …) is unavailable: retry"},
}


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",))
        parts.append(f"{loc or 'body'}: {err.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(MlpilotError)
    async def _mlpilot(_request: Request, exc: MlpilotError) -> JSONResponse:
        if exc.http_status >= 500:
            log.error("%s: %s", type(exc).__name__, exc.message)
        headers = {"WWW-Authenticate": 'Bearer realm="mlpilot"'} if exc.kind is ErrorKind.UNAUTHENTICATED else {}
        after = exc.retry_after_header()
        if after is not None:
            headers["Retry-After"] = after
        return JSONResponse(exc.to_dict(), status_code=exc.http_status, headers=headers or None)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        body = {
            "error": _validation_message(exc),
            "kind": ErrorKind.INVALID_ARGUMENT.value,
            "type": "InvalidArgument",
        }
        return JSONResponse(body, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = ErrorKind.NOT_FOUND if exc.status_code == 404 else ErrorKind.INVALID_ARGUMENT
        return JSONResponse({"error": str(exc.detail), "kind": kind.value}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(
            {
                "error": f"internal error ({type(exc).__name__}); this is a bug, please report it",
                "kind": ErrorKind.INTERNAL.value,
            },
            status_code=500,
        )
