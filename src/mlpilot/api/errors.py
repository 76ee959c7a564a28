"""The REST edge of the error tree: ``MlpilotError`` → status from its kind, body ``{"error": …, "kind": …}``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mlpilot.errors import ErrorKind, MlpilotError

log = logging.getLogger("mlpilot.api")


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
        headers = {"WWW-Authenticate": 'Bearer realm="mlpilot"'} if exc.kind is ErrorKind.UNAUTHENTICATED else None
        return JSONResponse(exc.to_dict(), status_code=exc.http_status, headers=headers)

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
