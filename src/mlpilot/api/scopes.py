"""Permission scopes. Every route declares the scope it needs (``x-mlpilot-scope`` in the OpenAPI spec);
enforcement is added with authentication, without touching the routes."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request

from mlpilot.app import Platform

SCOPE_KEY = "x-mlpilot-scope"


class Scope(str, enum.Enum):
    PUBLIC = "public"  # health and discovery: no credentials ever needed
    READ = "read"
    PREDICT = "predict"
    WRITE = "write"
    DEPLOY = "deploy"
    ADMIN = "admin"


def _require(scope: Scope) -> Callable[[Request], None]:
    def check(request: Request) -> None:
        request.state.scope = scope  # the authorizer (a later issue) checks the caller's grants against this

    return check


def route(router: APIRouter, method: str, path: str, scope: Scope, **kwargs: Any) -> Callable[..., Any]:
    """``router.<method>(path)`` with the scope declared in the spec and checked by a dependency."""
    return router.api_route(
        path,
        methods=[method],
        openapi_extra={SCOPE_KEY: scope.value},
        dependencies=[Depends(_require(scope))],
        **kwargs,
    )


def platform(request: Request) -> Platform:
    p: Platform = request.app.state.platform
    return p


def actor(request: Request) -> str:
    """Who is acting: the ``X-Mlpilot-Actor`` header until authentication supplies the identity."""
    p: Platform = request.app.state.platform
    return request.headers.get("x-mlpilot-actor") or p.default_actor
