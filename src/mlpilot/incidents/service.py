"""The incident service: alerts open or join incidents, people acknowledge and resolve them, quiet mitigated ones
resolve themselves, and each incident has a timeline of everything related that happened around it."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from mlpilot.clock import Clock
from mlpilot.errors import InvalidArgument
from mlpilot.incidents.policy import IncidentState, Signal, quiet_enough, transition
from mlpilot.monitors.notify import WebhookNotifier
from mlpilot.records import Alert, Event, Incident, IncidentStatus
from mlpilot.store import Store

log = logging.getLogger("mlpilot.incidents")

ACTOR = "mlpilot-incidents"
#: events of the deployment shown on an incident's timeline, from this long before it opened
LOOKBACK = timedelta(hours=1)


def alert_signal(alert: Alert) -> Signal:
    """An alert as a symptom: one dedup key per (deployment, SLO)."""
    return Signal(
        f"alert:{alert.deployment}/{alert.slo}",
        alert.deployment,
        alert.severity,
        alert.updated_at,
        alert.summary or f"SLO {alert.slo} of {alert.deployment}",
    )


class IncidentService:
    """Args: group_window: how close in time symptoms of one deployment must be to form one incident;
    quiet: how long a mitigated incident must stay silent to resolve itself."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        group_window: timedelta = timedelta(minutes=30),
        quiet: timedelta = timedelta(minutes=15),
        notifier: WebhookNotifier | None = None,
        webhooks: Sequence[str] = (),
    ) -> None:
        self.store = store
        self.clock = clock
        self.group_window = group_window
        self.quiet = quiet
        self.notifier = notifier
        self.webhooks = list(webhooks)
        #: the diagnose → remediate → verify loop (``None``: incidents are only grouped, not diagnosed)
        self.healer: Any = None
        self.rediagnose_after = timedelta(minutes=5)

    def notify(self, action: str, incident: Incident, detail: str = "") -> None:
        """``incident.<action>`` to the webhooks (opened, reopened, escalated, mitigating, mitigated, resolved)."""
        if self.notifier is not None and self.webhooks:
            payload = {
                "type": f"incident.{action}",
                "deployment": incident.deployment,
                "detail": detail,
                "incident": incident.model_dump(mode="json"),
            }
            self.notifier.send(self.webhooks, payload)

    def on_alerts(self, changes: Iterable[object]) -> list[Incident]:
        """Place every fired or escalated alert (``AlertChange`` s from the SLO evaluation) into an incident."""
        out = []
        for change in changes:
            action, alert = getattr(change, "action", None), getattr(change, "alert", None)
            if action in ("fired", "escalated") and isinstance(alert, Alert):
                incident, placement = self.store.place_signal(alert_signal(alert), self.group_window, ACTOR, alert.id)
                if placement.action in ("open", "reopen"):
                    self.notify("opened" if placement.action == "open" else "reopened", incident, placement.reason)
                elif placement.escalated:
                    self.notify("escalated", incident, placement.reason)
                if placement.action != "duplicate" or placement.escalated:
                    self.handle(incident)
                out.append(incident)
        return out

    def handle(self, incident: Incident) -> None:
        """Diagnose the incident and remediate under its deployment's policy (errors are logged: RCA must never
        stop alerting)."""
        if self.healer is None or incident.status not in (IncidentStatus.OPEN,):
            return
        try:
            d = self.healer.diagnose(incident)
            self.healer.remediate(self.store.get_incident(incident.id), d)
        except Exception:
            log.exception("diagnosing incident %s", incident.id)

    def diagnose(self, incident_id: int) -> dict[str, Any]:
        """Diagnose now (on request) and return the recorded diagnosis."""
        if self.healer is None:
            raise InvalidArgument("RCA is off (MLPILOT_INCIDENTS__RCA=false)")
        inc = self.store.get_incident(incident_id)
        self.healer.diagnose(inc)
        return dict(self.healer.diagnosis(incident_id) or {})

    def get(self, incident_id: int) -> Incident:
        return self.store.get_incident(incident_id)

    def list_incidents(
        self, deployment: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[Incident]:
        try:
            wanted = IncidentStatus(status) if status is not None else None
        except ValueError:
            raise InvalidArgument(
                f"incident status must be one of {[s.value for s in IncidentStatus]}, got {status!r}"
            ) from None
        if deployment is not None:
            self.store.get_deployment(deployment)
        return self.store.list_incidents(deployment, wanted, limit)

    def ack(self, incident_id: int, actor: str) -> Incident:
        """Acknowledge: someone is on it (a flag, not a status)."""
        cur = self.store.get_incident(incident_id)
        if cur.status is IncidentStatus.RESOLVED:
            raise InvalidArgument(f"incident {incident_id} is resolved; there is nothing to acknowledge")
        if cur.acknowledged_by is not None:
            return cur
        return self.store.update_incident(
            incident_id,
            cur.revision,
            actor,
            "incident.acknowledged",
            {},
            acknowledged_by=actor,
            acknowledged_at=self.clock.now(),
        )

    def move(self, incident_id: int, event: str, actor: str, reason: str = "") -> Incident:
        """A lifecycle move (``mitigate``, ``verified``, ``verification_failed``, ``relapse``, ``resolve``)."""
        cur = self.store.get_incident(incident_id)
        to = transition(cur.status, event)
        values: dict[str, object] = {"status": to}
        now = self.clock.now()
        if to is IncidentStatus.MITIGATED:
            values["mitigated_at"] = now
        if to is IncidentStatus.RESOLVED:
            values["resolved_at"] = now
        moved = self.store.update_incident(
            incident_id, cur.revision, actor, f"incident.{to.value}", {"event": event, "reason": reason}, **values
        )
        self.notify(to.value if to is not IncidentStatus.OPEN else "reopened", moved, reason)
        return moved

    def resolve(self, incident_id: int, actor: str, reason: str = "") -> Incident:
        return self.move(incident_id, "resolve", actor, reason or f"resolved by {actor}")

    def tick(self, now: datetime | None = None) -> list[Incident]:
        """Resolve the mitigated incidents whose alerts stopped firing ``quiet`` ago."""
        now = now or self.clock.now()
        if self.healer is not None:
            try:
                self.healer.verify_due(now)
                self._rediagnose(now)
            except Exception:
                log.exception("verifying remediations")
        firing = {a.id for a in self.store.list_alerts(None, "firing", 10_000)}
        out = []
        for inc in self.store.list_incidents(status=IncidentStatus.MITIGATED):
            state = IncidentState(
                inc.id, inc.deployment, inc.status, inc.severity, inc.last_signal_at, frozenset(inc.keys)
            )
            if quiet_enough(state, sum(1 for a in inc.alerts if a in firing), now, self.quiet):
                out.append(self.move(inc.id, "quiet", ACTOR, f"quiet for {self.quiet}"))
        return out

    def _rediagnose(self, now: datetime) -> None:
        """Every ``rediagnose_after``, open incidents are looked at again with the data that arrived since: one whose
        last diagnosis was inconclusive (and that has no remediation) is handled anew; one whose suggestion waits only
        for more confidence is reconsidered (:meth:`Healer.reconsider`)."""
        for inc in self.store.list_incidents(status=IncidentStatus.OPEN):
            last = self.store.list_events(subject=f"incident:{inc.id}", action="incident.diagnosed", limit=10_000)
            if not last or now - last[-1].ts < self.rediagnose_after:
                continue
            rems = self.healer.remediations(inc.id)
            if (last[-1].after or {}).get("verdict") == "inconclusive" and not rems:
                self.handle(inc)
            elif any(r["state"] == "suggested" for r in rems):
                self.healer.reconsider(inc, now)

    def timeline(self, incident_id: int) -> list[Event]:
        """The incident's own events and the deployment's (changes, rollouts, alerts) from ``LOOKBACK`` before it
        opened until it resolved, oldest first."""
        inc = self.store.get_incident(incident_id)
        since, until = inc.opened_at - LOOKBACK, inc.resolved_at or self.clock.now()
        own = self.store.list_events(subject=f"incident:{incident_id}", limit=10_000)
        related: Sequence[Event] = [
            e
            for e in self.store.list_events(subject=f"deployment:{inc.deployment}", limit=10_000)
            if since <= e.ts <= until
        ]
        rollouts = {f"rollout:{r.id}" for r in self.store.list_rollouts(inc.deployment, limit=1000)}
        rollout_events = [
            e
            for subject in rollouts
            for e in self.store.list_events(subject=subject, limit=10_000)
            if since <= e.ts <= until
        ]
        return sorted({e.id: e for e in [*own, *related, *rollout_events]}.values(), key=lambda e: e.id)
