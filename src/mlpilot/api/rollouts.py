"""Rollouts (progressive delivery with analyses), their decision records, and releases."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from mlpilot.api.params import Id
from mlpilot.api.scopes import Scope, actor, platform, route
from mlpilot.app import Platform
from mlpilot.records import Event, Release, Rollout, RolloutSpec

router = APIRouter(prefix="/api/v1", tags=["rollouts"])
P = Annotated[Platform, Depends(platform)]
Actor = Annotated[str, Depends(actor)]


@route(router, "GET", "/rollouts", Scope.READ)
def list_rollouts(
    p: P, deployment: str | None = None, active: bool | None = None, limit: int = Query(100, ge=1, le=10_000)
) -> list[Rollout]:
    """Rollouts, newest first (``active=true``: only those still running)."""
    return p.store.list_rollouts(deployment, active=active, limit=limit)


@route(router, "POST", "/deployments/{name}/rollouts", Scope.DEPLOY, status_code=201)
def start_rollout(p: P, who: Actor, name: str, spec: RolloutSpec) -> Rollout:
    """Start a rollout of a candidate model (or a release) on deployment ``name``. Its first transition happens
    at once; the controller advances it on every tick of ``mlpilot up``."""
    return p.rollouts.start(name, spec, who)


@route(router, "GET", "/deployments/{name}/rollout", Scope.READ)
def current_rollout(p: P, name: str) -> Rollout:
    """The deployment's active rollout, or its latest one."""
    return p.rollouts.current(name)


@route(router, "GET", "/rollouts/{rollout_id}", Scope.READ)
def get_rollout(p: P, rollout_id: Id) -> Rollout:
    return p.rollouts.get(rollout_id)


@route(router, "GET", "/rollouts/{rollout_id}/decisions", Scope.READ)
def rollout_decisions(p: P, rollout_id: Id) -> list[Event]:
    """Every transition of the rollout with its decision record (inputs, statistics, thresholds, policy)."""
    return p.rollouts.decisions(rollout_id)


@route(router, "POST", "/rollouts/{rollout_id}/pause", Scope.DEPLOY)
def pause_rollout(p: P, who: Actor, rollout_id: Id) -> Rollout:
    return p.rollouts.pause(rollout_id, who)


@route(router, "POST", "/rollouts/{rollout_id}/resume", Scope.DEPLOY)
def resume_rollout(p: P, who: Actor, rollout_id: Id) -> Rollout:
    return p.rollouts.resume(rollout_id, who)


@route(router, "POST", "/rollouts/{rollout_id}/promote", Scope.DEPLOY)
def promote_rollout(p: P, who: Actor, rollout_id: Id) -> Rollout:
    """Promote now, skipping the remaining gates."""
    return p.rollouts.promote(rollout_id, who)


@route(router, "POST", "/rollouts/{rollout_id}/abort", Scope.DEPLOY)
def abort_rollout(p: P, who: Actor, rollout_id: Id) -> Rollout:
    """Abort: the split from before the rollout comes back and the candidate is removed."""
    return p.rollouts.abort(rollout_id, who)


@route(router, "POST", "/rollouts/tick", Scope.ADMIN)
def tick_rollouts(p: P) -> list[Rollout]:
    """Reconcile every active rollout now (what ``mlpilot up`` does every ``rollouts.tick_s``)."""
    return p.rollouts.tick()


@route(router, "GET", "/deployments/{name}/releases", Scope.READ)
def list_releases(p: P, name: str) -> list[Release]:
    p.store.get_deployment(name)
    return p.store.list_releases(name)


@route(router, "POST", "/deployments/{name}/releases/rollback", Scope.DEPLOY)
def rollback_release(p: P, who: Actor, name: str, to: int | None = Query(None, ge=1)) -> Rollout:
    """Go back to an earlier release (default: the one before the live one) as one unit, at once."""
    return p.rollouts.rollback_release(name, who, to)
