"""Multi-window multi-burn-rate alerting on synthetic error streams, on virtual time (table-driven)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest

from mlpilot.errors import InvalidArgument
from mlpilot.monitors.slo import SLO, BurnRateRule, EventCounts, evaluate, replay

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
MIN = timedelta(minutes=1)


def stream(error_rate: Callable[[int], float], minutes: int, per_minute: int = 100) -> EventCounts:
    counts = EventCounts(bucket=MIN)
    for m in range(minutes):
        total = per_minute
        counts.add(T0 + m * MIN, good=total * (1 - error_rate(m)), total=total)
    return counts


def times(minutes: int, step: int = 1) -> list[datetime]:
    return [T0 + (m + 1) * MIN for m in range(0, minutes, step)]


SLO999 = SLO("availability", objective=0.999)

CASES = [
    # id, error rate by minute, minutes simulated, expected transitions (action, severity, minute)
    ("healthy", lambda m: 0.0, 600, []),
    ("within-budget", lambda m: 0.0005, 600, []),  # burn 0.5: never alerts
    # 30 min outage: pages in its first minute; the ticket rules keep it open until the 3d/6h rule's short
    # window has passed the outage (150 + 360 minutes) -- one alert, no flapping, then resolved.
    (
        "outage-pages-fast-and-resolves",
        lambda m: 1.0 if 120 <= m < 150 else 0.0,
        600,
        [("fire", "page", 121), ("resolve", None, 510)],
    ),
    # burn 4: the 1d/2h ticket rule (3) fires, the page rules (6, 14.4) never do
    ("slow-burn-tickets-never-pages", lambda m: 0.004, 3 * 24 * 60, [("fire", "ticket", 1)]),
    # 20 bad requests in one minute: the 5 m window burns at 40 but the hour only at 3.3 -> no page
    ("brief-blip-stays-quiet", lambda m: 0.2 if m == 300 else 0.0, 600, []),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_burn_rate_alerts(case: tuple) -> None:  # type: ignore[type-arg]
    _, rate, minutes, expected = case
    counts = stream(rate, minutes)
    got = [(t.action, t.severity, round((t.evaluation.now - T0) / MIN)) for t in replay(SLO999, counts, times(minutes))]
    assert got == expected


def test_escalation_from_ticket_to_page_is_a_new_alert() -> None:
    counts = stream(lambda m: 0.004 if m < 1500 else 0.5, 1520)
    actions = [(t.action, t.severity) for t in replay(SLO999, counts, times(1520))]
    assert actions == [("fire", "ticket"), ("fire", "page")]


def test_no_traffic_never_fires_and_windows_are_exact() -> None:
    counts = EventCounts(bucket=MIN)
    assert evaluate(SLO999, counts, T0).severity is None
    counts.add(T0, good=0, total=1)  # one failed request, then silence
    ev = evaluate(SLO999, counts, T0 + MIN, min_events=10)
    assert ev.severity is None and ev.rates[0].long_burn == pytest.approx(1000.0)


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"objective": 1.0}, "objective"),
        ({"objective": 0.0}, "objective"),
        ({"objective": 0.99, "rules": ()}, "rule"),
    ],
    ids=["objective-1", "objective-0", "no-rules"],
)
def test_bad_slo_definitions(kwargs: dict, needle: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(InvalidArgument, match=needle):
        SLO("x", **kwargs)


def test_bad_counts() -> None:
    counts = EventCounts(bucket=MIN)
    with pytest.raises(InvalidArgument):
        counts.add(T0, good=5, total=3)
    counts.add(T0, good=1, total=1)
    with pytest.raises(InvalidArgument, match="time order"):
        counts.add(T0, good=1, total=1)


def test_a_rule_is_named_by_its_windows_to_the_second() -> None:
    """A 30 s short window read "0m" in alert summaries (``page:2m/0m@3``)."""

    def name(long: timedelta, short: timedelta) -> str:
        return BurnRateRule(long=long, short=short, burn_rate=3, severity="page").name

    assert name(timedelta(minutes=2), timedelta(seconds=30)) == "page:2m/30s@3"
    assert name(timedelta(seconds=90), timedelta(seconds=10)) == "page:90s/10s@3"
    assert name(timedelta(hours=1), timedelta(minutes=5)) == "page:1h/5m@3"
    assert name(timedelta(days=3), timedelta(hours=6)) == "page:3d/6h@3"
