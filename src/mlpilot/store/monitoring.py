"""Store methods for scheduled monitors, their result time series, SLOs and alerts."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mlpilot.errors import Conflict, NotFound
from mlpilot.records import Alert, Monitor, MonitorResult, MonitorSpec, MonitorStatus, SLODefinition, SLOSpec
from mlpilot.store import tables as t
from mlpilot.store.mixin import StoreMixin, utc


def _monitor(row: Any) -> Monitor:
    return Monitor(
        name=row.name,
        deployment=row.deployment,
        spec=MonitorSpec.model_validate(row.spec["spec"]),
        created_at=utc(row.created_at),
        created_by=row.created_by,
        next_run=utc(row.next_run),
        last_run=utc(row.last_run),
        last_status=row.last_status,
    )


def _alert(row: Any) -> Alert:
    return Alert(
        id=row.id,
        deployment=row.deployment,
        slo=row.slo,
        severity=row.severity,
        status=row.status,
        fired_at=utc(row.fired_at),
        updated_at=utc(row.updated_at),
        resolved_at=utc(row.resolved_at),
        summary=row.summary,
        detail=row.detail or {},
    )


class MonitoringMixin(StoreMixin):
    """Mixed into :class:`~mlpilot.store.Store`; uses its transaction helpers."""

    # ------------------------------------------------------------------------------------------ monitors

    def _put_named(
        self,
        table: sa.Table,
        kind: str,
        noun: str,
        deployment: str,
        name: str,
        spec: dict[str, Any],
        actor: str,
        replace: bool,
        **values: Any,
    ) -> Any:
        """Insert (or with ``replace`` update) a named spec of a deployment with its ``<kind>.created|updated``
        event on subject ``<kind>:<deployment>/<name>``; returns the row."""
        doc: dict[str, Any] = {"schema_version": 1, "spec": spec}
        key = (table.c.deployment == deployment) & (table.c.name == name)
        with self._write() as conn:
            cur = conn.execute(sa.select(table).where(key)).first()
            if cur is not None and not replace:
                raise Conflict(f"deployment {deployment!r} already has {noun} {name!r}")
            if cur is None:
                conn.execute(
                    table.insert().values(
                        deployment=deployment,
                        name=name,
                        spec=doc,
                        created_at=self.clock.now(),
                        created_by=actor,
                        **values,
                    )
                )
            else:
                conn.execute(table.update().where(table.c.id == cur.id).values(spec=doc, **values))
            action = f"{kind}.updated" if cur is not None else f"{kind}.created"
            before = cur.spec["spec"] if cur is not None else None
            self._event(conn, actor, action, f"{kind}:{deployment}/{name}", before, spec)
            return conn.execute(sa.select(table).where(key)).one()

    def put_monitor(
        self, deployment: str, name: str, spec: MonitorSpec, actor: str, next_run: datetime, replace: bool = False
    ) -> Monitor:
        """Create a monitor (or replace its spec when ``replace``). Raises ``Conflict`` if it exists."""
        row = self._put_named(
            t.monitors,
            "monitor",
            "a monitor",
            deployment,
            name,
            spec.model_dump(mode="json"),
            actor,
            replace,
            next_run=next_run,
        )
        return _monitor(row)

    def _monitor_row(self, conn: Connection, deployment: str, name: str) -> Any:
        m = t.monitors
        row = conn.execute(sa.select(m).where((m.c.deployment == deployment) & (m.c.name == name))).first()
        if row is None:
            raise NotFound(f"deployment {deployment!r} has no monitor {name!r}")
        return row

    def get_monitor(self, deployment: str, name: str) -> Monitor:
        with self._read() as conn:
            return _monitor(self._monitor_row(conn, deployment, name))

    def list_monitors(self, deployment: str | None = None) -> list[Monitor]:
        m = t.monitors
        stmt = sa.select(m)
        if deployment is not None:
            stmt = stmt.where(m.c.deployment == deployment)
        with self._read() as conn:
            return [_monitor(r) for r in conn.execute(stmt.order_by(m.c.deployment, m.c.name)).all()]

    def due_monitors(self, now: datetime) -> list[Monitor]:
        """Enabled monitors whose next run is at or before ``now``, soonest first."""
        m = t.monitors
        with self._read() as conn:
            rows = conn.execute(sa.select(m).where(m.c.next_run <= now).order_by(m.c.next_run, m.c.id)).all()
        return [mon for mon in map(_monitor, rows) if mon.spec.enabled]

    def claim_monitor(self, deployment: str, name: str, expected_next_run: datetime, next_run: datetime) -> bool:
        """Move a due monitor's next run from ``expected_next_run`` to ``next_run``; ``False`` if another process
        claimed it first (compare-and-set, so several schedulers never run the same monitor twice)."""
        m = t.monitors
        with self._write() as conn:
            res = conn.execute(
                m.update()
                .where((m.c.deployment == deployment) & (m.c.name == name) & (m.c.next_run == expected_next_run))
                .values(next_run=next_run)
            )
            return bool(res.rowcount == 1)

    def delete_monitor(self, deployment: str, name: str, actor: str) -> None:
        with self._write() as conn:
            row = self._monitor_row(conn, deployment, name)
            conn.execute(t.monitor_results.delete().where(t.monitor_results.c.monitor_id == row.id))
            conn.execute(t.monitors.delete().where(t.monitors.c.id == row.id))
            self._event(conn, actor, "monitor.deleted", f"monitor:{deployment}/{name}", row.spec["spec"], None)

    def record_monitor_result(
        self,
        deployment: str,
        name: str,
        *,
        ts: datetime,
        window_start: datetime,
        window_end: datetime,
        rows: int,
        status: MonitorStatus,
        value: float | None,
        message: str,
        detail: Mapping[str, Any],
    ) -> MonitorResult:
        """Append one point to the monitor's time series (and its last run and status), in one transaction."""
        with self._write() as conn:
            mon = self._monitor_row(conn, deployment, name)
            rid = conn.execute(
                t.monitor_results.insert()
                .values(
                    monitor_id=mon.id,
                    ts=ts,
                    window_start=window_start,
                    window_end=window_end,
                    rows=rows,
                    status=status.value,
                    value=value,
                    message=message[:2048],
                    detail=dict(detail),
                )
                .returning(t.monitor_results.c.id)
            ).scalar_one()
            conn.execute(
                t.monitors.update().where(t.monitors.c.id == mon.id).values(last_run=ts, last_status=status.value)
            )
            if status is not MonitorStatus.OK and mon.last_status != status.value:
                self._event(
                    conn,
                    "mlpilot",
                    f"monitor.{status.value}",
                    f"monitor:{deployment}/{name}",
                    {"status": mon.last_status},
                    {"status": status.value, "value": value, "message": message[:500]},
                )
        return MonitorResult(
            id=int(rid),
            deployment=deployment,
            monitor=name,
            ts=ts,
            window_start=window_start,
            window_end=window_end,
            rows=rows,
            status=status,
            value=value,
            message=message[:2048],
            detail=dict(detail),
        )

    def list_monitor_results(
        self,
        deployment: str,
        name: str,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
        with_detail: bool = True,
    ) -> list[MonitorResult]:
        """The monitor's results in time order (the newest ``limit`` of the window)."""
        r = t.monitor_results
        with self._read() as conn:
            mon = self._monitor_row(conn, deployment, name)
            stmt = sa.select(r).where(r.c.monitor_id == mon.id)
            if since is not None:
                stmt = stmt.where(r.c.ts >= since)
            if until is not None:
                stmt = stmt.where(r.c.ts <= until)
            rows = conn.execute(stmt.order_by(r.c.ts.desc(), r.c.id.desc()).limit(max(1, min(limit, 100_000)))).all()
        return [
            MonitorResult(
                id=row.id,
                deployment=deployment,
                monitor=name,
                ts=utc(row.ts),
                window_start=utc(row.window_start),
                window_end=utc(row.window_end),
                rows=row.rows,
                status=MonitorStatus(row.status),
                value=row.value,
                message=row.message,
                detail=(row.detail or {}) if with_detail else {},
            )
            for row in reversed(rows)
        ]

    # ------------------------------------------------------------------------------------------ SLOs

    def put_slo(self, deployment: str, name: str, spec: SLOSpec, actor: str, replace: bool = False) -> SLODefinition:
        """Create an SLO (or replace its spec when ``replace``). Raises ``Conflict`` if it exists."""
        return self._slo(
            self._put_named(t.slos, "slo", "an SLO", deployment, name, spec.model_dump(mode="json"), actor, replace)
        )

    @staticmethod
    def _slo(row: Any) -> SLODefinition:
        return SLODefinition(
            name=row.name,
            deployment=row.deployment,
            spec=SLOSpec.model_validate(row.spec["spec"]),
            created_at=utc(row.created_at),
            created_by=row.created_by,
        )

    def get_slo(self, deployment: str, name: str) -> SLODefinition:
        s = t.slos
        with self._read() as conn:
            row = conn.execute(sa.select(s).where((s.c.deployment == deployment) & (s.c.name == name))).first()
        if row is None:
            raise NotFound(f"deployment {deployment!r} has no SLO {name!r}")
        return self._slo(row)

    def list_slos(self, deployment: str | None = None) -> list[SLODefinition]:
        s = t.slos
        stmt = sa.select(s) if deployment is None else sa.select(s).where(s.c.deployment == deployment)
        with self._read() as conn:
            return [self._slo(r) for r in conn.execute(stmt.order_by(s.c.deployment, s.c.name)).all()]

    def delete_slo(self, deployment: str, name: str, actor: str) -> None:
        s = t.slos
        with self._write() as conn:
            row = conn.execute(sa.select(s).where((s.c.deployment == deployment) & (s.c.name == name))).first()
            if row is None:
                raise NotFound(f"deployment {deployment!r} has no SLO {name!r}")
            conn.execute(s.delete().where(s.c.id == row.id))
            self._event(conn, actor, "slo.deleted", f"slo:{deployment}/{name}", row.spec["spec"], None)

    # ------------------------------------------------------------------------------------------ alerts

    def active_alert(self, deployment: str, slo: str) -> Alert | None:
        a = t.alerts
        with self._read() as conn:
            row = conn.execute(sa.select(a).where(a.c.active_key == f"{deployment}/{slo}")).first()
        return None if row is None else _alert(row)

    def open_alert(
        self, deployment: str, slo: str, severity: str, summary: str, detail: Mapping[str, Any], actor: str
    ) -> Alert:
        """Open the SLO's alert. Raises ``Conflict`` when one is already firing (deduplication across processes)."""
        a = t.alerts
        now = self.clock.now()
        with self._write() as conn:
            aid = conn.execute(
                a.insert()
                .values(
                    deployment=deployment,
                    slo=slo,
                    active_key=f"{deployment}/{slo}",
                    severity=severity,
                    status="firing",
                    fired_at=now,
                    updated_at=now,
                    summary=summary[:2048],
                    detail=dict(detail),
                )
                .returning(a.c.id)
            ).scalar_one()
            self._event(
                conn,
                actor,
                "alert.fired",
                f"deployment:{deployment}",
                None,
                {"alert": int(aid), "slo": slo, "severity": severity, "summary": summary[:500]},
            )
            return _alert(conn.execute(sa.select(a).where(a.c.id == aid)).one())

    def update_alert(
        self, alert_id: int, *, severity: str | None, summary: str, detail: Mapping[str, Any], actor: str
    ) -> Alert:
        """Escalate (``severity`` given) or resolve (``severity=None``) a firing alert, with its event."""
        a = t.alerts
        now = self.clock.now()
        with self._write() as conn:
            cur = conn.execute(self._lock(sa.select(a).where(a.c.id == alert_id))).first()
            if cur is None or cur.status != "firing":
                raise NotFound(f"no firing alert {alert_id}")
            if severity is None:
                values: dict[str, Any] = {"status": "resolved", "resolved_at": now, "active_key": None}
                action = "alert.resolved"
            else:
                values = {"severity": severity}
                action = "alert.escalated"
            conn.execute(
                a.update()
                .where(a.c.id == alert_id)
                .values(updated_at=now, summary=summary[:2048], detail=dict(detail), **values)
            )
            self._event(
                conn,
                actor,
                action,
                f"deployment:{cur.deployment}",
                {"alert": alert_id, "severity": cur.severity},
                {"alert": alert_id, "slo": cur.slo, "severity": severity or cur.severity, "summary": summary[:500]},
            )
            return _alert(conn.execute(sa.select(a).where(a.c.id == alert_id)).one())

    def list_alerts(self, deployment: str | None = None, status: str | None = None, limit: int = 100) -> list[Alert]:
        a = t.alerts
        stmt = sa.select(a)
        if deployment is not None:
            stmt = stmt.where(a.c.deployment == deployment)
        if status is not None:
            stmt = stmt.where(a.c.status == status)
        with self._read() as conn:
            rows = conn.execute(stmt.order_by(a.c.id.desc()).limit(max(1, min(limit, 10_000)))).all()
        return [_alert(r) for r in rows]

    def get_alert(self, alert_id: int) -> Alert:
        a = t.alerts
        with self._read() as conn:
            row = conn.execute(sa.select(a).where(a.c.id == alert_id)).first()
        if row is None:
            raise NotFound(f"no alert {alert_id}")
        return _alert(row)
