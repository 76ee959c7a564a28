"""Store methods for rollouts (a persisted state machine, compare-and-set on a revision) and releases."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mlpilot.errors import Conflict, NotFound
from mlpilot.records import Release, Rollout, RolloutPhase, RolloutSpec
from mlpilot.store import tables as t
from mlpilot.store.mixin import StoreMixin, utc

# Fields of a Rollout kept in the ``state`` JSON column (the rest have their own columns).
_STATE_FIELDS = (
    "baseline",
    "candidate",
    "arms",
    "paused_phase",
    "phase_started_at",
    "step_started_at",
    "message",
    "last_decision",
    "state",
)


def _rollout(row: Any) -> Rollout:
    state = dict(row.state)
    return Rollout(
        id=row.id,
        deployment=row.deployment,
        spec=RolloutSpec.model_validate(row.spec["spec"]),
        phase=RolloutPhase(row.phase),
        step=row.step,
        revision=row.revision,
        started_at=utc(row.started_at),
        updated_at=utc(row.updated_at),
        finished_at=utc(row.finished_at),
        created_by=row.created_by,
        active=row.active_key is not None,
        **{k: state[k] for k in _STATE_FIELDS if k in state},
    )


def _state(r: Rollout) -> dict[str, Any]:
    return r.model_dump(mode="json", include=set(_STATE_FIELDS))


def _release(row: Any) -> Release:
    return Release(
        deployment=row.deployment,
        number=row.number,
        artifacts=dict(row.artifacts),
        status=row.status,
        rollout_id=row.rollout_id,
        created_at=utc(row.created_at),
        created_by=row.created_by,
    )


class RolloutsMixin(StoreMixin):
    """Mixed into :class:`~mlpilot.store.Store`; uses its transaction helpers."""

    # ------------------------------------------------------------------------------------------ rollouts

    def create_rollout(self, rollout: Rollout, actor: str, decision: Mapping[str, Any]) -> Rollout:
        """Store a new active rollout (its ``id`` and ``revision`` are assigned) with a ``rollout.started`` event.

        Raises:
            Conflict: the deployment already has an active rollout.
        """
        r = t.rollouts
        with self._write() as conn:
            cur = conn.execute(sa.select(r.c.id, r.c.phase).where(r.c.active_key == rollout.deployment)).first()
            if cur is not None:
                raise Conflict(
                    f"deployment {rollout.deployment!r} already has rollout {cur.id} in phase {cur.phase}; "
                    f"abort it or wait for it to finish first",
                    detail={"rollout": int(cur.id), "phase": cur.phase},
                )
            now = self.clock.now()
            rid = conn.execute(
                r.insert()
                .values(
                    deployment=rollout.deployment,
                    active_key=rollout.deployment,
                    phase=rollout.phase.value,
                    step=rollout.step,
                    revision=1,
                    spec={"schema_version": 1, "spec": rollout.spec.model_dump(mode="json")},
                    state=_state(rollout),
                    started_at=rollout.started_at,
                    updated_at=now,
                    finished_at=None,
                    created_by=actor,
                )
                .returning(r.c.id)
            ).scalar_one()
            self._event(
                conn, actor, "rollout.started", f"rollout:{rid}", None, {**decision, "deployment": rollout.deployment}
            )
            return _rollout(conn.execute(sa.select(r).where(r.c.id == rid)).one())

    def get_rollout(self, rollout_id: int) -> Rollout:
        with self._read() as conn:
            row = conn.execute(sa.select(t.rollouts).where(t.rollouts.c.id == rollout_id)).first()
            if row is None:
                raise NotFound(f"no rollout {rollout_id}")
            return _rollout(row)

    def active_rollout(self, deployment: str) -> Rollout | None:
        with self._read() as conn:
            row = conn.execute(sa.select(t.rollouts).where(t.rollouts.c.active_key == deployment)).first()
            return _rollout(row) if row is not None else None

    def list_rollouts(
        self, deployment: str | None = None, *, active: bool | None = None, limit: int = 100
    ) -> list[Rollout]:
        """Newest first."""
        r = t.rollouts
        stmt = sa.select(r)
        if deployment is not None:
            stmt = stmt.where(r.c.deployment == deployment)
        if active is not None:
            stmt = stmt.where(r.c.active_key.is_not(None) if active else r.c.active_key.is_(None))
        with self._read() as conn:
            rows = conn.execute(stmt.order_by(r.c.id.desc()).limit(max(1, min(limit, 10_000)))).all()
            return [_rollout(row) for row in rows]

    def update_rollout(
        self,
        new: Rollout,
        *,
        expect_revision: int,
        actor: str,
        action: str | None,
        decision: Mapping[str, Any] | None = None,
        settle: bool = False,
    ) -> Rollout:
        """Compare-and-set the rollout to ``new`` (phase, step, state). ``action`` names the transition recorded as
        event ``rollout.<action>`` with ``decision`` (None: a bookkeeping update, no event). ``settle`` ends the
        rollout's activity (its deployment may start another one).

        Raises:
            NotFound: no such rollout. Conflict: its revision is no longer ``expect_revision`` (someone else moved it).
        """
        r = t.rollouts
        now = self.clock.now()
        with self._write() as conn:
            cur = conn.execute(self._lock(sa.select(r).where(r.c.id == new.id))).first()
            if cur is None:
                raise NotFound(f"no rollout {new.id}")
            if cur.revision != expect_revision:
                raise Conflict(
                    f"rollout {new.id} changed meanwhile (revision {cur.revision}, expected {expect_revision})",
                    detail={"revision": int(cur.revision)},
                )
            values: dict[str, Any] = {
                "phase": new.phase.value,
                "step": new.step,
                "revision": cur.revision + 1,
                "state": _state(new),
                "updated_at": now,
            }
            if new.phase.terminal and cur.finished_at is None:
                values["finished_at"] = now
            if settle:
                values["active_key"] = None
            conn.execute(r.update().where(r.c.id == new.id).values(**values))
            if action is not None:
                before = {"phase": cur.phase, "step": cur.step}
                self._event(
                    conn,
                    actor,
                    f"rollout.{action}",
                    f"rollout:{new.id}",
                    before,
                    {**(decision or {}), "deployment": new.deployment, "phase": new.phase.value, "step": new.step},
                )
            return _rollout(conn.execute(sa.select(r).where(r.c.id == new.id)).one())

    def settle_rollouts(self, conn: Connection, deployment: str) -> None:
        """Within a transaction: end the deployment's active rollout (the deployment is being deleted)."""
        r = t.rollouts
        conn.execute(
            r.update()
            .where(r.c.active_key == deployment)
            .values(phase=RolloutPhase.ABORTED.value, active_key=None, finished_at=self.clock.now())
        )

    # ------------------------------------------------------------------------------------------ releases

    def create_release(
        self, deployment: str, artifacts: Mapping[str, str], actor: str, rollout_id: int | None = None
    ) -> Release:
        """A new release (number = last + 1) in status ``candidate``."""
        rel = t.releases
        with self._write() as conn:
            last = conn.execute(sa.select(sa.func.max(rel.c.number)).where(rel.c.deployment == deployment)).scalar()
            number = int(last or 0) + 1
            conn.execute(
                rel.insert().values(
                    deployment=deployment,
                    number=number,
                    artifacts=dict(artifacts),
                    status="candidate",
                    rollout_id=rollout_id,
                    created_at=self.clock.now(),
                    created_by=actor,
                )
            )
            self._event(
                conn,
                actor,
                "release.created",
                f"deployment:{deployment}",
                None,
                {"release": number, "artifacts": dict(artifacts), "rollout": rollout_id},
            )
            row = conn.execute(sa.select(rel).where((rel.c.deployment == deployment) & (rel.c.number == number))).one()
            return _release(row)

    def set_release_status(self, deployment: str, number: int, status: str, actor: str) -> Release:
        """Mark a release; making one ``live`` supersedes the previously live one (one transaction)."""
        rel = t.releases
        key = (rel.c.deployment == deployment) & (rel.c.number == number)
        with self._write() as conn:
            cur = conn.execute(self._lock(sa.select(rel).where(key))).first()
            if cur is None:
                raise NotFound(f"deployment {deployment!r} has no release {number}")
            if status == "live":
                conn.execute(
                    rel.update()
                    .where((rel.c.deployment == deployment) & (rel.c.status == "live") & (rel.c.number != number))
                    .values(status="superseded")
                )
            conn.execute(rel.update().where(key).values(status=status))
            if cur.status != status:
                self._event(
                    conn,
                    actor,
                    f"release.{status}",
                    f"deployment:{deployment}",
                    {"release": number, "status": cur.status},
                    {"release": number, "status": status},
                )
            return _release(conn.execute(sa.select(rel).where(key)).one())

    def list_releases(self, deployment: str) -> list[Release]:
        rel = t.releases
        with self._read() as conn:
            rows = conn.execute(
                sa.select(rel).where(rel.c.deployment == deployment).order_by(rel.c.number.desc())
            ).all()
            return [_release(row) for row in rows]

    def get_release(self, deployment: str, number: int) -> Release:
        rel = t.releases
        with self._read() as conn:
            row = conn.execute(
                sa.select(rel).where((rel.c.deployment == deployment) & (rel.c.number == number))
            ).first()
            if row is None:
                raise NotFound(f"deployment {deployment!r} has no release {number}")
            return _release(row)
