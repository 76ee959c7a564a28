"""An in-process server with authentication on (the whole ASGI app: control API, data plane, dashboard) and keys."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from mlpilot.app import Platform, build_platform
from mlpilot.auth.authorizer import Authorizer, issue_key
from mlpilot.client.transport import InProcessTransport
from mlpilot.server import PlatformServer
from mlpilot.settings import Settings


@dataclass
class AuthServer:
    platform: Platform
    server: PlatformServer
    http: httpx.Client
    keys: dict[str, str] = field(default_factory=dict)

    def key(self, name: str, scopes: list[str], deployments: list[str] | None = None) -> str:
        if name not in self.keys:
            self.keys[name] = issue_key(self.platform.store, name, scopes, deployments or [], "test").key
        return self.keys[name]

    def call(self, method: str, path: str, key: str | None = None, **kw: object) -> httpx.Response:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        headers.update(kw.pop("headers", {}))  # type: ignore[arg-type]
        return self.http.request(method, path, headers=headers, **kw)  # type: ignore[arg-type]


def make_server(home: Path, **auth: object) -> tuple[AuthServer, InProcessTransport]:
    settings = Settings(home=home, logs={"enabled": False}, auth={"mode": "on", **auth})  # type: ignore[arg-type]
    platform = build_platform(settings)
    server = PlatformServer(platform, authorizer=Authorizer(platform.store, cache_s=settings.auth.cache_s))
    transport = InProcessTransport(server, on_close=server.stop)
    return AuthServer(platform, server, httpx.Client(base_url="http://test", transport=transport)), transport


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    s, _ = make_server(tmp_path_factory.mktemp("auth") / "home", open_deployments=["open-dep"])
    try:
        yield s
    finally:
        s.http.close()
        s.platform.close()
