"""Deployment routes (desired state); the routing snapshot is served by ``api/snapshot.py``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from mlpilot.api.scopes import Scope, actor, platform, route
from mlpilot.app import Platform
from mlpilot.blobs import is_url
from mlpilot.deployments.kserve import kserve_export
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


@route(router, "GET", "/deployments/{name}/kserve", Scope.READ, response_model=None)
def export_kserve(
    p: P,
    name: str,
    namespace: str | None = Query(None, description="the manifests' Kubernetes namespace"),
    storage_uri_prefix: str | None = Query(
        None, description="where KServe reads the models (s3://bucket/prefix); default <artifact URL>/kserve"
    ),
    cpu: float | None = Query(None, gt=0, description="CPUs requested and limited per predictor pod"),
    memory: str | None = Query(None, description="memory requested and limited per predictor pod, e.g. 2Gi"),
    fmt: Literal["yaml", "json"] = Query(
        "yaml", alias="format", description="a YAML stream, or JSON with the same content"
    ),
) -> Response:
    """KServe InferenceService manifests of a deployment, the model files to copy for them, and what KServe cannot
    express (see docs/deploy.md, "Exporting to KServe")."""
    d = p.store.get_deployment(name)
    versions = {v.name: p.store.get_version(v.model) for v in d.spec.variants if d.spec.traffic.get(v.name, 0) > 0}
    location = p.blobs.location
    export = kserve_export(
        d,
        versions,
        artifact_url=location if is_url(location) else None,
        local_root=None if is_url(location) else location,
        storage_uri_prefix=storage_uri_prefix,
        namespace=namespace,
        cpu=cpu,
        memory=memory,
    )
    if fmt == "json":
        return JSONResponse(export.to_json())
    return Response(export.to_yaml(), media_type="application/yaml")
