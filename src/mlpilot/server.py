"""``serve``: run the platform's HTTP server in the foreground (what ``mlpilot up`` and the demo call)."""

from __future__ import annotations

import logging

from mlpilot.app import build_api, build_platform
from mlpilot.settings import Settings

log = logging.getLogger("mlpilot.server")


def serve(settings: Settings) -> None:
    """Serve the control API on ``settings.server`` until interrupted; the store is closed on the way out."""
    import uvicorn

    platform = build_platform(settings)
    try:
        app = build_api(platform)
        host, port = settings.server.host, settings.server.port
        print(
            f"mlpilot serving on http://{host}:{port}  (home {settings.home.resolve()}, "
            f"store {platform.store.engine.url.render_as_string(hide_password=True)})"
        )
        print(f"  control API  http://{host}:{port}/api/v1   OpenAPI http://{host}:{port}/docs")
        if host not in ("127.0.0.1", "localhost", "::1"):
            print("  WARNING: no authentication yet — anyone who can reach this address can change deployments")
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        platform.close()
