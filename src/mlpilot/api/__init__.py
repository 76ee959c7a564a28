"""The control-plane REST API (FastAPI; OpenAPI at ``/openapi.json``)."""

from __future__ import annotations

import threading

from fastapi import FastAPI

from mlpilot import __version__
from mlpilot.api import (
    artifacts,
    auth,
    deployments,
    events,
    incidents,
    leader,
    monitors,
    observe,
    rollouts,
    snapshot,
    ui,
    ui_registry,
)
from mlpilot.api.errors import install_error_handlers
from mlpilot.api.uploads import UploadLimit
from mlpilot.app import Platform


def create_api(platform: Platform) -> FastAPI:
    """A FastAPI app serving the control API of ``platform``."""
    app = FastAPI(
        title="mlpilot control API",
        version=__version__,
        description="Registry, deployments and events of mlpilot. Every route declares its scope in x-mlpilot-scope.",
    )
    app.state.platform = platform
    app.state.authorizer = None  # set by the server when auth is on (docs/security.md)
    install_error_handlers(app)
    app.add_middleware(UploadLimit, limit_of=lambda: platform.settings.artifacts.max_upload_bytes)
    modules = (
        artifacts,
        deployments,
        snapshot,
        events,
        leader,
        observe,
        monitors,
        rollouts,
        incidents,
        ui,
        ui_registry,
        auth,
    )
    for module in modules:
        app.include_router(module.router)
    _build_routes(app)
    return app


_ROUTES_LOCK = threading.Lock()


def _build_routes(app: FastAPI) -> None:
    """Have FastAPI build every route's parameter models now, one app at a time.

    FastAPI (0.16x) builds them at a route's first request and, as it goes, sets the aliases of the parameters'
    ``Query``/``Path`` objects — module-level objects every app of the process shares. Two apps serving their first
    requests at once in two threads (two embedded clients) raced there: pydantic saw a half-set alias, warned, and
    the request failed with a 500. A request path that matches no route visits them all."""
    scope = {"type": "http", "method": "GET", "path": "/\x00", "root_path": "", "headers": [], "query_string": b""}
    with _ROUTES_LOCK:
        for route in app.router.routes:
            route.matches(dict(scope))


__all__ = ["create_api"]
