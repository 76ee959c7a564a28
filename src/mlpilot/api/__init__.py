"""The control-plane REST API (FastAPI; OpenAPI at ``/openapi.json``)."""

from __future__ import annotations

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
    return app


__all__ = ["create_api"]
