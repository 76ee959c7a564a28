"""Who is calling: the principal an API key or a bearer token speaks for, and the credential a request carries."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mlpilot.auth.keys import Scope


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a key's name (or a token's subject), scopes and granted deployments (empty = all).

    ``kind`` is ``key`` (an mlpilot API key; ``key_id`` its row) or ``oidc`` (a provider's bearer token).
    """

    name: str
    scopes: tuple[str, ...]
    deployments: tuple[str, ...]
    key_id: int
    kind: str = "key"

    @property
    def actor(self) -> str:
        """What events record: ``key:<name>`` or ``oidc:<subject>``."""
        return f"{self.kind}:{self.name}"

    @property
    def admin(self) -> bool:
        return Scope.ADMIN.value in self.scopes

    def __str__(self) -> str:
        return f"the API key {self.name!r}" if self.kind == "key" else f"the {self.kind} token of {self.name!r}"


def credentials(header: Callable[[str], str | None]) -> str | None:
    """The key a request carries: ``Authorization: Bearer <key>``, else ``X-Api-Key``; ``header(name)`` reads one
    header (lower-case name)."""
    auth = header("authorization")
    if auth:
        kind, _, value = auth.strip().partition(" ")
        if kind.lower() == "bearer" and value.strip():
            return value.strip()
    key = header("x-api-key")
    return key.strip() if key and key.strip() else None
