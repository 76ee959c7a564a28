"""The SDK's API-key methods (``mlpilot auth …``), mixed into :class:`~mlpilot.client.Client` (admin scope when the
server checks keys; embedded mode checks nothing)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mlpilot.auth.keys import ApiKey, CreatedApiKey


class AuthKeys:
    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        raise NotImplementedError

    def create_api_key(self, name: str, scopes: Sequence[str], deployments: Sequence[str] = ()) -> CreatedApiKey:
        """Create key ``name`` with ``scopes`` (read, predict, write, deploy, admin), granted ``deployments`` (empty:
        every one). The returned ``key`` is the only copy of the secret: keep it."""
        body = {"name": name, "scopes": list(scopes), "deployments": list(deployments)}
        return CreatedApiKey.model_validate(self._json("POST", "/auth/keys", json=body))

    def list_api_keys(self, include_revoked: bool = False) -> list[ApiKey]:
        rows = self._json("GET", "/auth/keys", params={"include_revoked": include_revoked})
        return [ApiKey.model_validate(r) for r in rows]

    def revoke_api_key(self, name: str) -> ApiKey:
        """Revoke key ``name`` now (idempotent)."""
        return ApiKey.model_validate(self._json("DELETE", f"/auth/keys/{name}"))

    def whoami(self) -> dict[str, Any]:
        """Whether the server checks keys, and the name, scopes and grants of the key this client sends."""
        result: dict[str, Any] = self._json("GET", "/auth/whoami")
        return result
