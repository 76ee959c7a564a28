"""Service-level objectives with multi-window, multi-burn-rate alerting (the SRE workbook's method). Pure.

An SLO says what share of events must be good over a window (e.g. 99.9% of requests succeed over 30 days).
The *error budget* is ``1 - objective``; the *burn rate* over a window is ``bad share / budget`` (1 = spending
the budget exactly over the SLO window). A rule fires when the burn rate exceeds its threshold over a long
window *and* a short window: the long window gives significance, the short one makes the alert stop soon after
the problem stops. Defaults, for a 30-day SLO:

=========  ======  =======  =========  ======================
severity   long    short    burn rate  budget spent when fired
=========  ======  =======  =========  ======================
page       1 h     5 min    14.4       2% in 1 h
page       6 h     30 min   6          5% in 6 h
ticket     1 d     2 h      3          10% in 1 d
ticket     3 d     6 h      1          10% in 3 d
=========  ======  =======  =========  ======================

Everything here is a pure function of its inputs (counts and ``now``): no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from mlpilot.errors import InvalidArgument


@dataclass(frozen=True)
class BurnRateRule:
    long: timedelta
    short: timedelta
    burn_rate: float
    severity: str  # "page" or "ticket"

    @property
    def name(self) -> str:
        return f"{self.severity}:{_fmt(self.long)}/{_fmt(self.short)}@{self.burn_rate:g}"


def _fmt(d: timedelta) -> str:
    s = int(d.total_seconds())
    if s % 60:  # a window under a minute, or not whole minutes (30s, 90s): "0m" said nothing
        return f"{s}s"
    return f"{s // 86400}d" if s % 86400 == 0 else f"{s // 3600}h" if s % 3600 == 0 else f"{s // 60}m"


DEFAULT_RULES: tuple[BurnRateRule, ...] = (
    BurnRateRule(timedelta(hours=1), timedelta(minutes=5), 14.4, "page"),
    BurnRateRule(timedelta(hours=6), timedelta(minutes=30), 6.0, "page"),
    BurnRateRule(timedelta(days=1), timedelta(hours=2), 3.0, "ticket"),
    BurnRateRule(timedelta(days=3), timedelta(hours=6), 1.0, "ticket"),
)


@dataclass(frozen=True)
class SLO:
    """An objective on an indicator: the share of good events (``objective`` in (0, 1))."""

    name: str
    objective: float
    window: timedelta = timedelta(days=30)
    rules: tuple[BurnRateRule, ...] = DEFAULT_RULES

    def __post_init__(self) -> None:
        if not 0 < self.objective < 1:
            raise InvalidArgument(f"SLO {self.name!r}: objective must be in (0, 1), e.g. 0.999; got {self.objective}")
        if not self.rules:
            raise InvalidArgument(f"SLO {self.name!r} needs at least one burn-rate rule")
        for r in self.rules:
            if r.short >= r.long or r.burn_rate <= 0:
                raise InvalidArgument(f"SLO {self.name!r}: rule {r.name} needs short < long and burn rate > 0")

    @property
    def budget(self) -> float:
        return 1.0 - self.objective


@dataclass
class EventCounts:
    """Good/total event counts in fixed time buckets (e.g. one per minute), oldest first."""

    bucket: timedelta
    starts: list[datetime] = field(default_factory=list)
    good: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    _cache: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, repr=False, compare=False)

    def add(self, start: datetime, good: float, total: float) -> None:
        if good < 0 or total < 0 or good > total:
            raise InvalidArgument(f"bad counts good={good}, total={total}: need 0 <= good <= total")
        if self.starts and start <= self.starts[-1]:
            raise InvalidArgument("buckets must be added in time order")
        self.starts.append(start)
        self.good.append(good)
        self.total.append(total)

    def bad_share(self, now: datetime, window: timedelta) -> tuple[float, float]:
        """``(bad share, total events)`` over the buckets that end after ``now - window`` and start before ``now``
        (the bucket in progress counts with the events it has so far)."""
        if not self.starts:
            return 0.0, 0.0
        if self._cache is None or len(self._cache[0]) != len(self.starts):
            ends = np.asarray([s.timestamp() for s in self.starts]) + self.bucket.total_seconds()
            cum_total = np.concatenate([[0.0], np.cumsum(self.total)])
            cum_good = np.concatenate([[0.0], np.cumsum(self.good)])
            self._cache = (ends, cum_total, cum_good)
        ends, cum_total, cum_good = self._cache
        i = int(np.searchsorted(ends, (now - window).timestamp(), side="right"))
        j = int(np.searchsorted(ends - self.bucket.total_seconds(), now.timestamp(), side="left"))
        total = float(cum_total[j] - cum_total[i])
        if total <= 0:
            return 0.0, 0.0
        return (total - float(cum_good[j] - cum_good[i])) / total, total


@dataclass(frozen=True)
class BurnRate:
    rule: BurnRateRule
    long_burn: float
    short_burn: float
    firing: bool


@dataclass(frozen=True)
class Evaluation:
    slo: str
    now: datetime
    rates: tuple[BurnRate, ...]

    @property
    def firing(self) -> tuple[BurnRate, ...]:
        return tuple(r for r in self.rates if r.firing)

    @property
    def severity(self) -> str | None:
        sev = {r.rule.severity for r in self.firing}
        return "page" if "page" in sev else "ticket" if sev else None


def evaluate(slo: SLO, counts: EventCounts, now: datetime, min_events: float = 1.0) -> Evaluation:
    """Burn rates of every rule at ``now``; a rule fires when both windows burn faster than its rate.

    Args:
        min_events: windows with fewer events never fire (no alert on one failed request at 3 a.m.).
    """
    rates = []
    for rule in slo.rules:
        long_share, long_n = counts.bad_share(now, rule.long)
        short_share, short_n = counts.bad_share(now, rule.short)
        long_burn, short_burn = long_share / slo.budget, short_share / slo.budget
        firing = (
            long_n >= min_events
            and short_n >= min_events
            and long_burn >= rule.burn_rate
            and short_burn >= rule.burn_rate
        )
        rates.append(BurnRate(rule, long_burn, short_burn, firing))
    return Evaluation(slo.name, now, tuple(rates))


@dataclass(frozen=True)
class AlertTransition:
    """What an alert tracker decided at one evaluation: ``fire``, ``resolve``, or ``None`` (no change)."""

    action: str | None
    severity: str | None
    evaluation: Evaluation


class AlertTracker:
    """Deduplicates evaluations into alerts: fire once when a rule starts firing (or escalates from ticket to
    page), resolve once when nothing fires; repeated firing evaluations are not new alerts."""

    def __init__(self) -> None:
        self.active: str | None = None

    def step(self, evaluation: Evaluation) -> AlertTransition:
        sev = evaluation.severity
        if sev is not None and (self.active is None or (self.active == "ticket" and sev == "page")):
            self.active = sev
            return AlertTransition("fire", sev, evaluation)
        if sev is None and self.active is not None:
            self.active = None
            return AlertTransition("resolve", None, evaluation)
        return AlertTransition(None, self.active, evaluation)


def replay(slo: SLO, counts: EventCounts, times: Sequence[datetime]) -> list[AlertTransition]:
    """Evaluate at each time in order and return the alert transitions (for tests and backtests)."""
    tracker = AlertTracker()
    return [t for now in times if (t := tracker.step(evaluate(slo, counts, now))).action is not None]
