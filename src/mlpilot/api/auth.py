"""API keys (``mlpilot auth …``): create, list, revoke — admin only — and who the caller is."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from mlpilot.api.scopes import Scope, actor, platform, route
from mlpilot.app import Platform
from mlpilot.auth.authorizer import Authorizer, credentials, issue_key
from mlpilot.auth.keys import ApiKey, CreatedApiKey

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
P = Annotated[Platform, Depends(platform)]
Actor = Annotated[str, Depends(actor)]


class NewKey(BaseModel):
    name: str = Field(description="unique, 1-64 letters, digits, '.', '_' or '-'")
    scopes: list[str] = Field(description="read, predict, write, deploy, admin (docs/security.md)")
    deployments: list[str] = Field(default_factory=list, description="deployments granted; empty = every one")


class WhoAmI(BaseModel):
    auth: bool = Field(description="whether this server checks credentials")
    key: str | None = Field(None, description="the name of the API key the request carried")
    kind: str | None = Field(None, description="the credential: `key` (an API key) or `oidc` (a bearer JWT)")
    actor: str | None = Field(None, description="what events record for this caller: `key:<name>`, `oidc:<sub>`")
    scopes: list[str] = Field(default_factory=list)
    deployments: list[str] = Field(default_factory=list, description="deployments granted; empty = every one")


@route(router, "POST", "/keys", Scope.ADMIN, status_code=201)
def create_key(body: NewKey, p: P, who: Actor) -> CreatedApiKey:
    """Create a key; the answer holds the key itself, shown this once (only its hash is stored)."""
    return issue_key(p.store, body.name, body.scopes, body.deployments, who)


@route(router, "GET", "/keys", Scope.ADMIN)
def list_keys(p: P, include_revoked: bool = Query(False, description="list revoked keys too")) -> list[ApiKey]:
    return p.store.list_api_keys(include_revoked=include_revoked)


@route(router, "DELETE", "/keys/{key_name}", Scope.ADMIN)
def revoke_key(key_name: str, p: P, who: Actor, request: Request) -> ApiKey:
    """Revoke a key now (this process forgets it at once, other server processes within ``auth.cache_s``)."""
    revoked = p.store.revoke_api_key(key_name, who)
    authorizer: Authorizer | None = getattr(request.app.state, "authorizer", None)
    if authorizer is not None:
        authorizer.forget(key_name)
    return revoked


@route(router, "GET", "/whoami", Scope.PUBLIC)
def whoami(request: Request) -> WhoAmI:
    """Whether auth is on and, if the request carries a credential, whose it is and what it may do (401 for an
    unknown or revoked key or an invalid token). Remote data planes verify keys with it (docs/security.md)."""
    authorizer: Authorizer | None = getattr(request.app.state, "authorizer", None)
    if authorizer is None:
        return WhoAmI(auth=False)
    key = credentials(request.headers.get)
    if key is None:
        return WhoAmI(auth=True)
    principal = authorizer.authenticate(key)
    return WhoAmI(
        auth=True,
        key=principal.name if principal.kind == "key" else None,
        kind=principal.kind,
        actor=principal.actor,
        scopes=list(principal.scopes),
        deployments=list(principal.deployments),
    )
