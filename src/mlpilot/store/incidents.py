"""Store methods for incidents: a symptom placed by the pure policy inside one write transaction, and the lifecycle
moves with compare-and-set on a revision. Every change is an event on ``incident:<id>``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mlpilot.errors import Conflict, NotFound
from mlpilot.incidents.policy import IncidentState, Placement, Signal, place
from mlpilot.records import Incident, IncidentStatus
from mlpilot.store import tables as t
from mlpilot.store.mixin import StoreMixin, utc


def _incident(row: Any) -> Incident:
    return Incident(
        id=row.id,
        deployment=row.deployment,
        status=IncidentStatus(row.status),
        severity=row.severity,
        title=row.title,
        keys=list(row.keys),
        alerts=[int(a) for a in row.alerts],
        opened_at=utc(row.opened_at),
        updated_at=utc(row.updated_at),
        last_signal_at=utc(row.last_signal_at),
        mitigated_at=utc(row.mitigated_at),
        resolved_at=utc(row.resolved_at),
        acknowledged_by=row.acknowledged_by,
        acknowledged_at=utc(row.acknowledged_at),
        revision=row.revision,
    )


class IncidentsMixin(StoreMixin):
    """Mixed into :class:`~mlpilot.store.Store`; uses its transaction helpers."""

    _pg: bool

    def place_signal(
        self, signal: Signal, group_window: timedelta, actor: str, alert_id: int | None = None
    ) -> tuple[Incident, Placement]:
        """Open, join, reopen or refresh an incident with ``signal`` (:func:`mlpilot.incidents.policy.place`), in
        one transaction that serialises the placements of the deployment: on PostgreSQL a transaction-level advisory
        lock per (schema, deployment) — row locks alone would not stop two processes from each opening the first
        incident —, on SQLite the database write lock."""
        i = t.incidents
        with self._write() as conn:
            if self._pg:
                conn.execute(
                    sa.text(
                        "SELECT pg_advisory_xact_lock(hashtext('mlpilot.incidents:' || current_schema()), hashtext(:d))"
                    ),
                    {"d": signal.deployment},
                )
            rows = conn.execute(
                self._lock(
                    sa.select(i).where(i.c.deployment == signal.deployment, i.c.status != IncidentStatus.RESOLVED.value)
                )
            ).all()
            states = [
                IncidentState(
                    r.id, r.deployment, IncidentStatus(r.status), r.severity, utc(r.last_signal_at), frozenset(r.keys)
                )
                for r in rows
            ]
            placement = place(signal, states, group_window)
            now = self.clock.now()
            if placement.action == "open":
                iid = conn.execute(
                    i.insert()
                    .values(
                        deployment=signal.deployment,
                        status=IncidentStatus.OPEN.value,
                        severity=signal.severity,
                        title=signal.summary[:512] or signal.key,
                        keys=[signal.key],
                        alerts=[alert_id] if alert_id is not None else [],
                        opened_at=signal.at,
                        updated_at=now,
                        last_signal_at=signal.at,
                        revision=1,
                    )
                    .returning(i.c.id)
                ).scalar_one()
            else:
                assert placement.incident is not None
                iid = placement.incident
                row = next(r for r in rows if r.id == iid)
                values: dict[str, Any] = {
                    "severity": placement.severity,
                    "keys": sorted({*row.keys, signal.key}),
                    "alerts": list(row.alerts)
                    + ([alert_id] if alert_id is not None and alert_id not in row.alerts else []),
                    "last_signal_at": max(utc(row.last_signal_at), signal.at),
                    "updated_at": now,
                    "revision": row.revision + 1,
                }
                if placement.action == "reopen":
                    values.update(status=IncidentStatus.OPEN.value, mitigated_at=None)
                conn.execute(i.update().where(i.c.id == iid).values(**values))
            action = {
                "open": "incident.opened",
                "join": "incident.joined",
                "reopen": "incident.reopened",
                "duplicate": "incident.signal",
            }[placement.action]
            after = {
                "key": signal.key,
                "severity": placement.severity,
                "alert": alert_id,
                "reason": placement.reason,
                "deployment": signal.deployment,
                "summary": signal.summary,
            }
            self._event(conn, actor, action, f"incident:{iid}", None, after)
            return _incident(conn.execute(sa.select(i).where(i.c.id == iid)).one()), placement

    def get_incident(self, incident_id: int) -> Incident:
        with self._read() as conn:
            return self._get_incident(conn, incident_id)

    def _get_incident(self, conn: Connection, incident_id: int) -> Incident:
        row = conn.execute(sa.select(t.incidents).where(t.incidents.c.id == incident_id)).first()
        if row is None:
            raise NotFound(f"no incident {incident_id}")
        return _incident(row)

    def list_incidents(
        self, deployment: str | None = None, status: IncidentStatus | None = None, limit: int = 100
    ) -> list[Incident]:
        """Newest first."""
        i = t.incidents
        stmt = sa.select(i)
        if deployment is not None:
            stmt = stmt.where(i.c.deployment == deployment)
        if status is not None:
            stmt = stmt.where(i.c.status == status.value)
        with self._read() as conn:
            rows = conn.execute(stmt.order_by(i.c.id.desc()).limit(max(1, min(limit, 10_000)))).all()
            return [_incident(r) for r in rows]

    def update_incident(
        self, incident_id: int, expect_revision: int, actor: str, action: str, detail: dict[str, Any], **values: Any
    ) -> Incident:
        """Change an incident (``status``, ``acknowledged_by`` …) if it is still at ``expect_revision``; the change is
        event ``action`` with ``detail``.

        Raises:
            NotFound: no such incident. Conflict: it changed since (read it again).
        """
        i = t.incidents
        with self._write() as conn:
            cur = self._get_incident(conn, incident_id)
            if cur.revision != expect_revision:
                raise Conflict(f"incident {incident_id} changed (revision {cur.revision}, expected {expect_revision})")
            stored = {k: (v.value if isinstance(v, IncidentStatus) else v) for k, v in values.items()}
            now: datetime = self.clock.now()
            conn.execute(
                i.update()
                .where(i.c.id == incident_id, i.c.revision == expect_revision)
                .values(**stored, updated_at=now, revision=expect_revision + 1)
            )
            before = {"status": cur.status.value, "revision": cur.revision}
            self._event(conn, actor, action, f"incident:{incident_id}", before, {**detail, **_jsonable(stored)})
            return self._get_incident(conn, incident_id)


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in values.items()}


class HealingPoliciesMixin(StoreMixin):
    """Per-deployment healing policies (JSON bodies validated by the caller)."""

    def get_healing_policy(self, deployment: str) -> dict[str, Any] | None:
        h = t.healing_policies
        with self._read() as conn:
            row = conn.execute(sa.select(h.c.body).where(h.c.deployment == deployment)).first()
            return dict(row.body) if row is not None else None

    def set_healing_policy(self, deployment: str, body: dict[str, Any] | None, actor: str) -> None:
        """Store ``body`` as the deployment's policy (``None`` deletes it: back to the defaults), with an event."""
        h = t.healing_policies
        with self._write() as conn:
            row = conn.execute(sa.select(h.c.body).where(h.c.deployment == deployment)).first()
            before = dict(row.body) if row is not None else None
            if row is not None:
                conn.execute(sa.delete(h).where(h.c.deployment == deployment))
            if body is not None:
                conn.execute(
                    h.insert().values(deployment=deployment, body=body, updated_at=self.clock.now(), updated_by=actor)
                )
            self._event(conn, actor, "healing.policy_set", f"deployment:{deployment}", before, body)
