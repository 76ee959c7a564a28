"""Diagnose, remediate, verify: the incident loop on the real platform.

For an incident, :meth:`Healer.diagnose` gathers the case (:mod:`mlpilot.incidents.gather`), runs the RCA engine and
records the diagnosis as an ``incident.diagnosed`` event; :meth:`Healer.remediate` asks the pure policy
(:func:`mlpilot.incidents.healing.decide`) what to do under the deployment's healing policy and either executes the
action through the :class:`~mlpilot.incidents.actuator.PlatformActuator` (``remediation.executed``, the incident
moves to *mitigating*) or records a suggestion that waits for ``mlpilot incidents approve``
(``remediation.suggested``). :meth:`Healer.verify_due` checks executed actions once ``verify_after`` has passed:
the symptom since the action against its baseline (:func:`mlpilot.incidents.healing.verify`); an action that
helped moves the incident to *mitigated* (``remediation.verified``), one that did not is undone with its inverse
(``remediation.reverted``), the incident goes back to *open* and is escalated to a page.

Everything is an event on ``incident:<id>`` whose ``after`` is the decision record; remediations are read back
from those events (``remediations``), so a restart loses nothing and any process can verify.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from mlpilot.clock import Clock
from mlpilot.errors import FailedPrecondition, InvalidArgument, MlpilotError
from mlpilot.incidents import healing, rca
from mlpilot.incidents.collectors import nanmean, symptom_values
from mlpilot.incidents.evidence import Diagnosis
from mlpilot.incidents.gather import frame_of, gather
from mlpilot.incidents.healing import Action, HealingPolicy, PastAction
from mlpilot.monitors.feedback import FeedbackService
from mlpilot.records import Event, Incident, IncidentStatus
from mlpilot.store import Store

log = logging.getLogger("mlpilot.incidents")

ACTOR = "mlpilot-healer"
#: the first seconds after an action are not judged (the data plane picks the change up within a snapshot poll);
#: a quarter of ``verify_after`` when that is shorter
GRACE = timedelta(seconds=20)
#: with no measurement since the action (no traffic, labels not in yet), verification waits up to this many
#: ``verify_after`` periods before it gives up and undoes the action
MAX_WAIT = 4


class Healer:
    def __init__(
        self,
        store: Store,
        feedback: FeedbackService,
        actuator: Any,
        clock: Clock,
        *,
        defaults: HealingPolicy | None = None,
        move: Callable[[int, str, str, str], Incident] | None = None,
        notify: Callable[[str, Incident, str], None] | None = None,
    ) -> None:
        self.store = store
        self.feedback = feedback
        self.actuator = actuator
        self.clock = clock
        self.defaults = defaults or HealingPolicy()
        self._move = move
        self._notify = notify or (lambda action, incident, detail: None)

    # ------------------------------------------------------------------------------------------ policy

    def policy(self, deployment: str) -> HealingPolicy:
        body = self.store.get_healing_policy(deployment)
        return HealingPolicy.from_dict(body) if body is not None else self.defaults

    def set_policy(self, deployment: str, body: dict[str, Any] | None, actor: str) -> HealingPolicy:
        """Replace the deployment's policy (validated completely first); ``None`` restores the defaults."""
        self.store.get_deployment(deployment)
        if body is None:
            self.store.set_healing_policy(deployment, None, actor)
            return self.defaults
        merged = {**self.defaults.to_dict(), **body}
        policy = HealingPolicy.from_dict(merged)
        self.store.set_healing_policy(deployment, policy.to_dict(), actor)
        return policy

    # ------------------------------------------------------------------------------------------ diagnosis

    def diagnose(self, incident: Incident, now: datetime | None = None) -> Diagnosis:
        now = now or self.clock.now()
        case = gather(self.store, self.feedback, incident, now)
        if len(case.frame) < 20:
            d = Diagnosis(
                "inconclusive", (), (), case.symptom.onset, f"only {len(case.frame)} logged requests to look at"
            )
        else:
            d = rca.diagnose(case, min_confidence=0.5)
        self.record(incident, d, case.symptom.kind, case.symptom.metric, case.symptom.onset)
        return d

    def record(self, incident: Incident, d: Diagnosis, kind: str, metric: str, onset: datetime) -> None:
        """Record ``d`` as the incident's latest diagnosis (``incident.diagnosed``) with its symptom: remediations
        measure that symptom from ``onset`` on."""
        body = d.to_dict()
        body["symptom"] = {"kind": kind, "metric": metric, "onset": onset.isoformat()}
        self.store.append_event(ACTOR, "incident.diagnosed", f"incident:{incident.id}", None, body)

    def diagnosis(self, incident_id: int) -> dict[str, Any] | None:
        """The latest recorded diagnosis of the incident (``None`` before the first)."""
        events = self.store.list_events(subject=f"incident:{incident_id}", action="incident.diagnosed", limit=10_000)
        return dict(events[-1].after or {}) if events else None

    # ------------------------------------------------------------------------------------------ remediation

    def remediations(self, incident_id: int) -> list[dict[str, Any]]:
        """Each remediation of the incident (suggested or executed) with its current state, oldest first."""
        out: dict[int, dict[str, Any]] = {}
        for e in self.store.list_events(subject=f"incident:{incident_id}", action="remediation.*", limit=10_000):
            after = dict(e.after or {})
            rid = int(after.get("remediation", e.id))
            state = e.action.split(".", 1)[1]
            cur = out.setdefault(rid, {"id": rid, "created_at": e.ts.isoformat()})
            cur.update({k: v for k, v in after.items() if k != "remediation"})
            cur["state"] = state
            cur.setdefault("history", []).append({"state": state, "at": e.ts.isoformat(), "actor": e.actor})
        return sorted(out.values(), key=lambda r: r["id"])

    def _history(self, deployment: str, now: datetime) -> list[PastAction]:
        out = []
        for inc in self.store.list_incidents(deployment, None, 200):
            if inc.updated_at < now - timedelta(hours=1):
                continue
            for e in self.store.list_events(subject=f"incident:{inc.id}", action="remediation.executed", limit=1000):
                kind = (e.after or {}).get("action", {}).get("kind")
                if kind:
                    out.append(PastAction(e.ts, str(kind)))
        return out

    def remediate(self, incident: Incident, d: Diagnosis, now: datetime | None = None) -> dict[str, Any] | None:
        """Decide and act (or suggest) for ``d``; returns the remediation record, ``None`` when nothing to do."""
        now = now or self.clock.now()
        if any(
            r["state"] in ("executed", "suggested", "approved") and r["action"]["kind"] != "notify"
            for r in self.remediations(incident.id)
        ):
            return None  # one open remediation at a time (a notification, once sent, is done)
        decided = self._decide(incident, d, now)
        if decided is None:
            return None
        decision, plan, radius = decided
        if decision.action is None or decision.outcome == "record":
            return None
        top = d.top
        hyp = top.to_dict() if top else None
        if decision.outcome == "suggest":
            eid = self.store.append_event(
                ACTOR,
                "remediation.suggested",
                f"incident:{incident.id}",
                None,
                {
                    "action": decision.action.to_dict(),
                    "decision": decision.to_dict(),
                    "hypothesis": hyp,
                    "blast_radius": radius,
                    "plan": plan.description if plan else "",
                },
            )
            self._notify("remediation_suggested", incident, decision.action.describe())
            return {"id": eid, "state": "suggested"}
        return self._execute(incident, decision.action, decision.to_dict(), hyp, ACTOR, None)

    def _decide(self, incident: Incident, d: Diagnosis, now: datetime) -> tuple[healing.Decision, Any, float] | None:
        """The policy's decision on ``d`` with the actuator's plan (``None`` when the action is impossible: recorded
        as ``remediation.impossible``)."""
        policy = self.policy(incident.deployment)
        top = d.top
        radius = 1.0
        plan = None
        if top is not None and top.suggestion is not None and d.verdict == "diagnosed":
            s = top.suggestion
            try:
                plan = self.actuator.plan(incident.deployment, Action(s.action, s.target, dict(s.params)))
                radius = float(plan.blast_radius)
            except MlpilotError as e:
                self.store.append_event(
                    ACTOR,
                    "remediation.impossible",
                    f"incident:{incident.id}",
                    None,
                    {"action": Action(s.action, s.target, dict(s.params)).to_dict(), "error": e.message},
                )
                return None
        decision = healing.decide(d, policy, self._history(incident.deployment, now), now, blast_radius=radius)
        return decision, plan, radius

    def reconsider(self, incident: Incident, now: datetime | None = None) -> dict[str, Any] | None:
        """Look again at a suggestion that waits *only* because its diagnosis was not confident enough (in auto
        mode, everything else within the guardrails): diagnose with the data that arrived since, and if the policy
        now says execute, run it — the same action under its own remediation id, or a different one after marking
        the old suggestion ``superseded``. Suggestions that wait for a person (approval, cooldown, blast radius,
        suggest mode) are left to that person."""
        now = now or self.clock.now()
        waiting = [r for r in self.remediations(incident.id) if r["state"] == "suggested"]
        if not waiting:
            return None
        r = waiting[-1]
        failed = [k for k, ok in r.get("decision", {}).get("checks", {}).items() if not ok]
        if failed != ["confident"]:
            return None
        d = self.diagnose(incident, now)
        decided = self._decide(incident, d, now)
        if decided is None or decided[0].outcome != "execute" or decided[0].action is None:
            return None
        decision = decided[0]
        assert decision.action is not None
        hyp = d.top.to_dict() if d.top else None
        body = {**decision.to_dict(), "reconsidered": True}
        if decision.action.to_dict() == r["action"]:
            return self._execute(incident, decision.action, body, hyp, ACTOR, int(r["id"]))
        self.store.append_event(
            ACTOR,
            "remediation.superseded",
            f"incident:{incident.id}",
            None,
            {"remediation": r["id"], "reason": f"a newer, confident diagnosis: {decision.action.describe()}"},
        )
        return self._execute(incident, decision.action, body, hyp, ACTOR, None)

    def _execute(
        self,
        incident: Incident,
        action: Action,
        decision: dict[str, Any],
        hyp: dict[str, Any] | None,
        actor: str,
        remediation: int | None,
    ) -> dict[str, Any]:
        now = self.clock.now()
        diag = self.diagnosis(incident.id) or {}
        onset = datetime.fromisoformat(
            diag.get("onset") or diag.get("symptom", {}).get("onset") or incident.opened_at.isoformat()
        )
        kind = diag.get("symptom", {}).get("kind", "errors")
        baseline, during = (
            self._symptom(incident.deployment, kind, onset - timedelta(minutes=60), onset),
            self._symptom(incident.deployment, kind, onset, now),
        )
        applied = self.actuator.apply(incident.deployment, action, actor)
        if action.kind == "notify":
            self._notify("remediation_notify", incident, action.describe())
        body = {
            "action": action.to_dict(),
            "decision": decision,
            "hypothesis": hyp,
            "before": applied.before,
            "inverse": applied.inverse.to_dict() if applied.inverse else None,
            "events": list(applied.event_ids),
            "symptom": kind,
            "baseline": baseline,
            "during": during,
            "verify_at": (now + self.policy(incident.deployment).verify_after).isoformat(),
        }
        if remediation is not None:
            body["remediation"] = remediation
        eid = self.store.append_event(actor, "remediation.executed", f"incident:{incident.id}", None, body)
        if action.kind != "notify" and self._move is not None and incident.status is IncidentStatus.OPEN:
            self._move(incident.id, "mitigate", actor, action.describe())
        return {"id": remediation or eid, "state": "executed"}

    def approve(self, incident_id: int, actor: str) -> dict[str, Any]:
        """Execute the incident's waiting suggestion (a person's approval is its decision record)."""
        incident = self.store.get_incident(incident_id)
        waiting = [r for r in self.remediations(incident_id) if r["state"] == "suggested"]
        if not waiting:
            raise FailedPrecondition(f"incident {incident_id} has no suggested remediation waiting for approval")
        if incident.status is IncidentStatus.RESOLVED:
            raise FailedPrecondition(f"incident {incident_id} is resolved; its suggestions can no longer run")
        r = waiting[-1]
        action = Action.from_dict(r["action"])
        self.store.append_event(
            actor, "remediation.approved", f"incident:{incident_id}", None, {"remediation": r["id"]}
        )
        return self._execute(
            incident, action, {**r.get("decision", {}), "approved_by": actor}, r.get("hypothesis"), actor, int(r["id"])
        )

    def reject(self, incident_id: int, actor: str, reason: str = "") -> dict[str, Any]:
        waiting = [r for r in self.remediations(incident_id) if r["state"] == "suggested"]
        if not waiting:
            raise FailedPrecondition(f"incident {incident_id} has no suggested remediation waiting for approval")
        r = waiting[-1]
        self.store.append_event(
            actor, "remediation.rejected", f"incident:{incident_id}", None, {"remediation": r["id"], "reason": reason}
        )
        return {"id": r["id"], "state": "rejected"}

    # ------------------------------------------------------------------------------------------ verification

    def _symptom(self, deployment: str, kind: str, since: datetime, until: datetime) -> float:
        frame = frame_of(self.feedback, deployment, since, until)
        if frame.empty:
            return float("nan")
        vals = symptom_values(frame, kind if kind != "drift" else "errors")
        return float(nanmean(vals)) if np.isfinite(vals).any() else float("nan")

    def verify_due(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Verify every executed remediation whose ``verify_at`` has passed."""
        now = now or self.clock.now()
        out = []
        for inc in self.store.list_incidents(status=IncidentStatus.MITIGATING):
            for r in self.remediations(inc.id):
                if r["state"] != "executed" or datetime.fromisoformat(r["verify_at"]) > now:
                    continue
                try:
                    out.append(self._verify(inc, r, now))
                except MlpilotError:
                    log.exception("verifying remediation %s of incident %s", r["id"], inc.id)
        return out

    def _verify(self, incident: Incident, r: dict[str, Any], now: datetime) -> dict[str, Any]:
        executed_at = datetime.fromisoformat(r["history"][-1]["at"])
        grace = min(GRACE, self.policy(incident.deployment).verify_after / 4)
        after = self._symptom(incident.deployment, r["symptom"], executed_at + grace, now)
        base, during = _num(r.get("baseline")), _num(r.get("during"))
        rid = int(r["id"])
        if after != after and now < executed_at + MAX_WAIT * self.policy(incident.deployment).verify_after:
            return {"id": rid, "state": "executed", "waiting": "no measurement of the symptom since the action yet"}
        v = healing.verify(base, during, after)
        if v.helped:
            self.store.append_event(
                ACTOR,
                "remediation.verified",
                f"incident:{incident.id}",
                None,
                {"remediation": rid, "verification": v.to_dict()},
            )
            if self._move is not None:
                self._move(incident.id, "verified", ACTOR, f"{r['action']['kind']} helped: {v.reason}")
            return {"id": rid, "state": "verified", **v.to_dict()}
        inverse = r.get("inverse")
        undo_error = None
        if inverse:
            try:
                self.actuator.apply(incident.deployment, Action.from_dict(inverse), ACTOR)
            except MlpilotError as e:  # recorded; the incident escalates either way
                undo_error = e.message
        self.store.append_event(
            ACTOR,
            "remediation.reverted",
            f"incident:{incident.id}",
            None,
            {"remediation": rid, "verification": v.to_dict(), "undo_error": undo_error},
        )
        if self._move is not None:
            self._move(incident.id, "verification_failed", ACTOR, f"{r['action']['kind']} did not help: {v.reason}")
        self._escalate(incident, f"remediation {r['action']['kind']} did not help and was undone")
        return {"id": rid, "state": "reverted", **v.to_dict()}

    def _escalate(self, incident: Incident, reason: str) -> None:
        cur = self.store.get_incident(incident.id)
        if cur.severity != "page":
            cur = self.store.update_incident(
                cur.id, cur.revision, ACTOR, "incident.escalated", {"reason": reason}, severity="page"
            )
        self._notify("escalated", cur, reason)

    def recent_events(self, incident_id: int) -> list[Event]:
        return self.store.list_events(subject=f"incident:{incident_id}", limit=10_000)


def _num(x: Any) -> float:
    try:
        return float(x) if x is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def check_policy_body(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidArgument('a healing policy is a JSON object, e.g. {"mode": "auto"}')
    return body


__all__ = ["Healer", "check_policy_body"]
