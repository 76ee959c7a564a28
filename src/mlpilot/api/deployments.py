"""Deployment routes (desired state); the routing snapshot is served by ``api/snapshot.py``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from mlpilot.api.scopes import Scope, actor, platform, route
from mlpilot.app import Platform
from mlpilot.records import Deployment, DeploymentSpec, RuntimeOptions

router = APIRouter(prefix="/api/v1", tags=["deployments"])
P = Annotated[Platform, Depends(platform)]
Actor = Annotated[str, Depends(actor)]


@route(router, "GET", "/deployments", Scope.READ)
def list_deployments(p: P) -> list[Deployment]:
    return p.store.list_deployments()


@route(router, "GET", "/deployments/{name}", Scope.READ)
def get_deployment(p: P, name: str) -> Deployment:
    return p.store.get_deployment(name)


class ApplyBody(BaseModel):
    spec: DeploymentSpec
    expect_revision: int | None = Field(None, description="compare-and-set on the current revision (0 = new)")


@route(router, "PUT", "/deployments/{name}", Scope.DEPLOY)
def apply_deployment(p: P, who: Actor, name: str, body: ApplyBody) -> Deployment:
    """Create or replace a deployment's whole spec (declarative apply)."""
    return p.deployments.apply(name, body.spec, who, expect_revision=body.expect_revision)


class DeployBody(BaseModel):
    model: str = Field(description="NAME:VERSION, NAME@ALIAS or NAME (latest)")
    variant: str | None = None
    runtime: RuntimeOptions = Field(default_factory=RuntimeOptions)
    shadow: bool = False
    replace: bool = False
    sticky_header: str | None = None


@route(router, "POST", "/deployments/{name}/variants", Scope.DEPLOY)
def deploy_variant(p: P, who: Actor, name: str, body: DeployBody) -> Deployment:
    """Deploy a model as a variant (new deployment: weight 100; existing: weight 0 or shadow; or replace)."""
    return p.deployments.deploy(
        name,
        body.model,
        who,
        variant=body.variant,
        runtime=body.runtime,
        shadow=body.shadow,
        replace=body.replace,
        sticky_header=body.sticky_header,
    )


class TrafficBody(BaseModel):
    weights: dict[str, int] = Field(description="variant -> weight; unnamed variants get 0; the sum must be 100")
    shadows: list[str] | None = None
    expect_revision: int | None = None


@route(router, "PUT", "/deployments/{name}/traffic", Scope.DEPLOY)
def set_traffic(p: P, who: Actor, name: str, body: TrafficBody) -> Deployment:
    return p.deployments.set_traffic(
        name, body.weights, who, shadows=body.shadows, expect_revision=body.expect_revision
    )


@route(router, "GET", "/deployments/{name}/revisions", Scope.READ)
def list_revisions(p: P, name: str) -> list[dict[str, Any]]:
    return [{"revision": r, "spec": s.model_dump(mode="json")} for r, s in p.store.deployment_revisions(name)]


@route(router, "DELETE", "/deployments/{name}", Scope.DEPLOY, status_code=204)
def delete_deployment(p: P, who: Actor, name: str) -> None:
    p.store.delete_deployment(name, who)
