"""How symptoms become incidents, and how an incident's status may move. Pure functions: no store, no clock.

* **Placement** (:func:`place`): a signal (an alert that fired, escalated or re-fired) carries a dedup ``key``
  (e.g. ``slo:fraud/availability``). A signal whose key an unresolved incident already holds is a *duplicate*
  (it refreshes the incident); otherwise it *joins* the unresolved incident of the same deployment whose last signal
  is at most ``group_window`` old (one incident per deployment and time: the symptoms of one cause arrive together),
  raising its severity if higher; a signal for a *mitigated* incident of the same deployment within the window
  *reopens* it (a relapse: the fix did not hold); anything else *opens* a new incident. Resolved incidents take no
  signal. When several incidents qualify, the most recent one wins.
* **Lifecycle** (:func:`transition`): ``open`` → ``mitigating`` (an action started) → ``mitigated`` (its
  verification passed) → ``resolved``; a failed verification goes back to ``open`` (escalated), a relapse moves
  ``mitigated`` back to ``open``; a person may resolve an incident in any unresolved status. Acknowledging is a flag,
  not a status.
* **Auto-resolution** (:func:`quiet_enough`): a mitigated incident whose signals have all stopped for ``quiet``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from mlpilot.errors import InvalidArgument
from mlpilot.records import IncidentStatus

__all__ = [
    "SEVERITIES",
    "IncidentState",
    "IncidentStatus",
    "Placement",
    "Signal",
    "higher",
    "place",
    "quiet_enough",
    "transition",
]

#: severities, lowest first
SEVERITIES = ("info", "ticket", "page")


#: (from, event) -> to
_MOVES: dict[tuple[IncidentStatus, str], IncidentStatus] = {
    (IncidentStatus.OPEN, "mitigate"): IncidentStatus.MITIGATING,
    (IncidentStatus.MITIGATING, "verified"): IncidentStatus.MITIGATED,
    (IncidentStatus.MITIGATING, "verification_failed"): IncidentStatus.OPEN,
    (IncidentStatus.MITIGATED, "relapse"): IncidentStatus.OPEN,
    (IncidentStatus.MITIGATED, "quiet"): IncidentStatus.RESOLVED,
    (IncidentStatus.OPEN, "resolve"): IncidentStatus.RESOLVED,
    (IncidentStatus.MITIGATING, "resolve"): IncidentStatus.RESOLVED,
    (IncidentStatus.MITIGATED, "resolve"): IncidentStatus.RESOLVED,
}
EVENTS = tuple(sorted({event for _, event in _MOVES}))


def transition(status: IncidentStatus, event: str) -> IncidentStatus:
    """The status after ``event`` (``mitigate``, ``verified``, ``verification_failed``, ``relapse``, ``quiet``,
    ``resolve``). Raises ``InvalidArgument`` for a move the lifecycle does not allow (it names the allowed ones)."""
    if event not in EVENTS:
        raise InvalidArgument(f"unknown incident event {event!r}; known: {list(EVENTS)}")
    to = _MOVES.get((status, event))
    if to is None:
        allowed = sorted(e for (s, e) in _MOVES if s is status)
        raise InvalidArgument(
            f"an incident that is {status.value} cannot take {event!r}"
            + (f"; it can take {allowed}" if allowed else "; it is closed")
        )
    return to


def higher(a: str, b: str) -> str:
    """The more severe of two severities."""
    for s in (a, b):
        if s not in SEVERITIES:
            raise InvalidArgument(f"unknown severity {s!r}; known: {list(SEVERITIES)}")
    return a if SEVERITIES.index(a) >= SEVERITIES.index(b) else b


@dataclass(frozen=True)
class Signal:
    """A symptom that may open or join an incident. ``key`` deduplicates (one alert, one key)."""

    key: str
    deployment: str
    severity: str
    at: datetime
    summary: str = ""


@dataclass(frozen=True)
class IncidentState:
    """What placement needs to know of an incident."""

    id: int
    deployment: str
    status: IncidentStatus
    severity: str
    last_signal_at: datetime
    keys: frozenset[str]


@dataclass(frozen=True)
class Placement:
    """``open`` a new incident, ``join``/``reopen`` incident ``incident``, or ``duplicate`` (refresh it).
    ``severity`` is the incident's severity after the signal."""

    action: Literal["open", "join", "reopen", "duplicate"]
    incident: int | None
    severity: str
    reason: str
    escalated: bool = False  # the incident's severity went up


def place(signal: Signal, incidents: Iterable[IncidentState], group_window: timedelta) -> Placement:
    """Where ``signal`` goes (see the module docstring)."""
    if group_window <= timedelta(0):
        raise InvalidArgument(f"group_window must be positive, got {group_window}")
    higher(signal.severity, signal.severity)  # validates
    live = sorted(
        (i for i in incidents if i.status is not IncidentStatus.RESOLVED and i.deployment == signal.deployment),
        key=lambda i: (i.last_signal_at, i.id),
        reverse=True,
    )
    for inc in live:
        if signal.key in inc.keys:
            reason = f"{signal.key} is already part of incident {inc.id}"
            severity = higher(inc.severity, signal.severity)
            return Placement("duplicate", inc.id, severity, reason, escalated=severity != inc.severity)
    for inc in live:
        if signal.at - inc.last_signal_at > group_window:
            continue
        action: Literal["join", "reopen"] = "reopen" if inc.status is IncidentStatus.MITIGATED else "join"
        gap = max(timedelta(0), signal.at - inc.last_signal_at)
        reason = (
            f"{signal.key} on {signal.deployment} {gap.total_seconds():.0f} s after incident {inc.id}'s last symptom"
            + (" (a relapse after mitigation)" if action == "reopen" else "")
        )
        severity = higher(inc.severity, signal.severity)
        return Placement(action, inc.id, severity, reason, escalated=severity != inc.severity)
    reason = f"no unresolved incident of {signal.deployment} within {group_window} of {signal.key}"
    return Placement("open", None, signal.severity, reason)


def quiet_enough(state: IncidentState, firing: int, now: datetime, quiet: timedelta) -> bool:
    """A mitigated incident resolves itself when none of its alerts fires and its last signal is ``quiet`` old."""
    return state.status is IncidentStatus.MITIGATED and firing == 0 and now - state.last_signal_at >= quiet
