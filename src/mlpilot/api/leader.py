"""Who leads the control plane's reconcile loops (the ``scheduler`` lease, see ``mlpilot.store.leader``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from mlpilot.api.scopes import Scope, platform, route
from mlpilot.app import Platform
from mlpilot.store.leader import SCHEDULER_LEASE

router = APIRouter(prefix="/api/v1", tags=["leader"])
P = Annotated[Platform, Depends(platform)]


class LeaderStatus(BaseModel):
    lease: str = Field(description="the lease's name")
    election: bool = Field(description="whether server processes elect a leader (server.leader_election)")
    leader: str | None = Field(description="hostname:pid:random of the process that leads now; null if none does")
    holder: str | None = Field(description="the last holder of the lease (the leader while it is active)")
    epoch: int | None = Field(description="the fencing token: +1 at every new tenure")
    acquired_at: datetime | None
    renewed_at: datetime | None
    expires_at: datetime | None
    this_process: str | None = Field(description="the answering process's identity, if it takes part")
    this_process_leads: bool


@route(router, "GET", "/leader", Scope.READ)
def leader(p: P, request: Request) -> LeaderStatus:
    """The ``scheduler`` lease as stored, and whether the process that answers leads."""
    lease = p.store.get_lease(SCHEDULER_LEASE)
    mine = getattr(request.app.state, "leadership", None)
    return LeaderStatus(
        lease=SCHEDULER_LEASE,
        election=p.settings.server.leader_election,
        leader=lease.holder if lease is not None and lease.active else None,
        holder=lease.holder if lease is not None else None,
        epoch=lease.epoch if lease is not None else None,
        acquired_at=lease.acquired_at if lease is not None else None,
        renewed_at=lease.renewed_at if lease is not None else None,
        expires_at=lease.expires_at if lease is not None else None,
        this_process=mine.holder if mine is not None else None,
        this_process_leads=mine.leading() if mine is not None else False,
    )
