"""Permission scopes. Every route declares the scope it needs (``x-mlpilot-scope`` in the OpenAPI spec) and a
dependency checks it: with an :class:`~mlpilot.auth.authorizer.Authorizer` on ``app.state.authorizer`` (auth on),
the request's API key must hold the scope (401 without a valid key, 403 without the scope), and a route about one
deployment (a ``{name}`` under ``/deployments/``) needs a key granted that deployment. Without one (auth off:
loopback, embedded mode) nothing is checked. See docs/security.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request

from mlpilot.api.errors import ERROR_RESPONSES
from mlpilot.app import Platform
from mlpilot.auth.authorizer import Authorizer, Principal, credentials
from mlpilot.auth.keys import Scope

SCOPE_KEY = "x-mlpilot-scope"
_DEPLOYMENT_ROUTES = ("/api/v1/deployments/{name}", "/api/v1/ui/deployments/{name}")


def deployment_param(path: str) -> str | None:
    """The path parameter naming a deployment in route ``path``, if it has one."""
    return "name" if path.startswith(_DEPLOYMENT_ROUTES) else None


def _require(scope: Scope, deployment: str | None = None) -> Callable[[Request], None]:
    def check(request: Request) -> None:  # sync: FastAPI runs it on a worker thread (a key's first check hashes)
        request.state.scope = scope
        authorizer: Authorizer | None = getattr(request.app.state, "authorizer", None)
        if authorizer is None or scope is Scope.PUBLIC:
            return
        principal = authorizer.authenticate(credentials(request.headers.get))
        authorizer.authorize(principal, scope, request.path_params.get(deployment) if deployment else None)
        request.state.principal = principal

    return check


def route(router: APIRouter, method: str, path: str, scope: Scope, **kwargs: Any) -> Callable[..., Any]:
    """``router.<method>(path)`` with the scope declared in the spec and checked by a dependency."""
    full = (router.prefix or "") + path
    responses = {**ERROR_RESPONSES, **kwargs.pop("responses", {})}
    return router.api_route(
        path,
        methods=[method],
        openapi_extra={SCOPE_KEY: scope.value},
        dependencies=[Depends(_require(scope, deployment_param(full)))],
        responses=responses,
        **kwargs,
    )


def platform(request: Request) -> Platform:
    p: Platform = request.app.state.platform
    return p


def actor(request: Request) -> str:
    """Who is acting, recorded on events: ``key:<name>`` of the request's API key when auth is on (an admin key
    may name someone else with ``X-Mlpilot-Actor``); without auth the header, else the platform's default actor."""
    principal: Principal | None = getattr(request.state, "principal", None)
    header = request.headers.get("x-mlpilot-actor")
    if principal is not None:
        return header if header and principal.admin else principal.actor
    p: Platform = request.app.state.platform
    return header or p.default_actor


__all__ = ["SCOPE_KEY", "Scope", "actor", "platform", "route"]
