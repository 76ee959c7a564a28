"""Authentication on a remote data plane (``mlpilot serve --control-url``), which has no store to verify keys with:
it asks its control plane (``GET /api/v1/auth/whoami`` with the presented key) and caches the answer like a local
check (``auth.cache_s``). When the control plane cannot answer, a key not verified recently enough is refused with
503 — closed, never open (``auth.offline_grace_s`` lets recently verified keys through for longer). Bearer JWTs
are validated locally with the data plane's own ``auth.oidc`` settings, with no round trip.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from mlpilot.auth.authorizer import UNKNOWN_KEY, Authorizer
from mlpilot.auth.keys import split_key
from mlpilot.auth.oidc import build_validator
from mlpilot.auth.principal import Principal
from mlpilot.errors import Unavailable
from mlpilot.settings import Settings

WHOAMI = "/api/v1/auth/whoami"


class RemoteKeys:
    """Verifies API keys by asking the control plane at ``control_url`` who they are (thread-safe).

    Args:
        timeout_s: longest wait for one answer (a data plane's request waits for it on a cache miss).
        down_s: after the control plane could not be reached, how long questions fail at once without trying
            (requests with uncached keys do not each wait for a connect timeout while it is away).
    """

    def __init__(
        self,
        control_url: str,
        *,
        timeout_s: float = 5.0,
        down_s: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.control_url = control_url.rstrip("/")
        self._http = httpx.Client(base_url=self.control_url, timeout=httpx.Timeout(timeout_s, connect=2.0))
        self.down_s = down_s
        self._now = monotonic
        self._down: tuple[float, str] | None = None  # (since, why) while the control plane is away
        self.asked = 0  # questions sent to the control plane

    def close(self) -> None:
        self._http.close()

    def __call__(self, key: str, previous: Principal | None) -> tuple[Principal | None, str]:
        if split_key(key) is None:  # never worth a round trip
            return None, UNKNOWN_KEY
        if self._down is not None and self._now() - self._down[0] < self.down_s:
            raise Unavailable(self._down[1], retry_after_s=self.down_s)
        self.asked += 1
        try:
            response = self._http.get(WHOAMI, headers={"authorization": f"Bearer {key}"})
        except httpx.HTTPError as exc:
            why = (
                f"cannot verify the API key: the control plane at {self.control_url} is unreachable "
                f"({type(exc).__name__}); retry shortly"
            )
            self._down = (self._now(), why)
            raise Unavailable(why, retry_after_s=self.down_s) from exc
        self._down = None
        body = _json(response)
        if response.status_code == 401:
            message = body.get("error") if isinstance(body, dict) else None
            return None, str(message or UNKNOWN_KEY)
        if response.status_code != 200 or not isinstance(body, dict):
            raise Unavailable(
                f"cannot verify the API key: the control plane at {self.control_url} answered HTTP "
                f"{response.status_code}",
                retry_after_s=1.0,
            )
        if not body.get("auth"):
            raise Unavailable(
                f"cannot verify API keys: the control plane at {self.control_url} does not check them (its auth is "
                "off); turn auth on there (auth.mode on) or off on this data plane"
            )
        name = body.get("key")
        if not isinstance(name, str) or not name:
            return None, UNKNOWN_KEY
        return (
            Principal(
                name=name,
                scopes=tuple(str(s) for s in body.get("scopes") or ()),
                deployments=tuple(str(d) for d in body.get("deployments") or ()),
                key_id=0,
            ),
            "",
        )


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def remote_authorizer(settings: Settings, control_url: str) -> Authorizer:
    """The authorizer of a remote data plane following ``control_url`` (keys asked there, tokens checked here)."""
    a = settings.auth
    return Authorizer(
        keys=RemoteKeys(control_url),
        oidc=build_validator(a.oidc),
        cache_s=a.cache_s,
        offline_grace_s=a.offline_grace_s,
    )
