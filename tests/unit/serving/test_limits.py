"""The data plane's limits as pure state machines on a fake clock: token buckets per deployment and per caller,
and the circuit breaker's closed → open → half-open → closed cycle."""

from __future__ import annotations

import pytest

from mlpilot.errors import MlpilotError, ResourceExhausted
from mlpilot.serving.limits import BreakerState, CircuitBreaker, Limiter, Rate, TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_starts_full_refills_at_its_rate_and_caps_at_burst() -> None:
    b = TokenBucket(rate=2.0, burst=3.0, stamp=0.0)
    for _ in range(3):
        assert b.wait_s(0.0) == 0.0
        b.take()
    assert b.wait_s(0.0) == pytest.approx(0.5)  # one token every 0.5 s
    assert b.wait_s(0.25) == pytest.approx(0.25)
    assert b.wait_s(0.5) == 0.0
    assert b.wait_s(100.0) == 0.0 and b.tokens == 3.0  # never more than the burst


def test_rate_defaults_burst_to_one_second_and_at_least_one() -> None:
    assert Rate.of(None, 5) is None
    assert Rate.of(10, None) == Rate(10, 10)
    assert Rate.of(0.2, None) == Rate(0.2, 1.0)
    assert Rate.of(10, 3) == Rate(10, 3)


def test_deployment_limit_refuses_with_retry_after_then_admits_again() -> None:
    clock = FakeClock()
    limiter = Limiter(clock=clock)
    rate = Rate(per_s=5.0, burst=2.0)
    limiter.admit("iris", rate, None)
    limiter.admit("iris", rate, None)
    with pytest.raises(ResourceExhausted) as info:
        limiter.admit("iris", rate, None)
    exc = info.value
    assert exc.http_status == 429
    assert exc.retry_after_s == pytest.approx(0.2)
    assert exc.retry_after_header() == "1"  # whole seconds, rounded up
    assert "deployment 'iris'" in exc.message and "5 requests/s" in exc.message
    assert exc.detail["limit"] == "deployment"
    limiter.admit("other", rate, None)  # buckets are per deployment
    clock.now += 0.2
    limiter.admit("iris", rate, None)


def test_a_changed_deployment_limit_starts_a_full_bucket_and_none_removes_it() -> None:
    clock = FakeClock()
    limiter = Limiter(clock=clock)
    limiter.admit("iris", Rate(1.0, 1.0), None)
    with pytest.raises(ResourceExhausted):
        limiter.admit("iris", Rate(1.0, 1.0), None)
    limiter.admit("iris", Rate(2.0, 1.0), None)  # new limit: a new, full bucket
    for _ in range(50):
        limiter.admit("iris", None, None)  # no limit any more


def test_caller_limit_is_per_caller_and_a_refusal_takes_no_deployment_token() -> None:
    clock = FakeClock()
    limiter = Limiter(caller_rate=Rate(1.0, 1.0), clock=clock)
    deployment = Rate(100.0, 2.0)
    limiter.admit("iris", deployment, "key:alice")
    with pytest.raises(ResourceExhausted) as info:
        limiter.admit("iris", deployment, "key:alice")
    assert info.value.detail["limit"] == "caller" and "caller 'key:alice'" in info.value.message
    # alice's refusal took nothing from the deployment's bucket: bob still gets its last token
    limiter.admit("iris", deployment, "key:bob")
    with pytest.raises(ResourceExhausted) as again:
        limiter.admit("iris", deployment, "key:carol")
    assert again.value.detail["limit"] == "deployment"
    limiter.admit("iris", None, None)  # no caller: only the deployment's limit applies (none here)


def test_caller_buckets_are_bounded_least_recently_seen_dropped() -> None:
    clock = FakeClock()
    limiter = Limiter(caller_rate=Rate(1.0, 1.0), max_callers=2, clock=clock)
    limiter.admit("d", None, "a")
    limiter.admit("d", None, "b")
    limiter.admit("d", None, "c")  # drops a
    assert list(limiter._callers) == ["b", "c"]
    limiter.admit("d", None, "a")  # a starts again with a full bucket
    with pytest.raises(ResourceExhausted):
        limiter.admit("d", None, "c")


def test_breaker_opens_after_consecutive_failures_only() -> None:
    clock = FakeClock()
    b = CircuitBreaker(failures=3, open_s=10.0, clock=clock)
    b.failure()
    b.failure()
    b.success()  # not consecutive any more
    b.failure()
    b.failure()
    assert b.state is BreakerState.CLOSED and b.allow()
    b.failure()
    assert b.state is BreakerState.OPEN and b.trips == 1
    assert not b.allow()
    assert b.retry_after_s() == pytest.approx(10.0)


def test_breaker_half_open_lets_one_probe_and_closes_on_success() -> None:
    clock = FakeClock()
    seen: list[BreakerState] = []
    b = CircuitBreaker(failures=1, open_s=5.0, clock=clock)
    b.on_change(seen.append)
    b.failure()
    clock.now += 5.0
    assert b.allow()  # the probe
    assert b.state is BreakerState.HALF_OPEN
    assert not b.allow()  # one probe at a time
    b.success()
    assert b.state is BreakerState.CLOSED and b.allow() and b.allow()
    assert seen == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]


def test_breaker_failed_probe_reopens_for_a_full_period() -> None:
    clock = FakeClock()
    b = CircuitBreaker(failures=2, open_s=5.0, clock=clock)
    b.failure()
    b.failure()
    clock.now += 6.0
    assert b.allow()
    b.failure()  # one failed probe is enough
    assert b.state is BreakerState.OPEN and b.trips == 2
    clock.now += 4.9
    assert not b.allow()
    clock.now += 0.1
    assert b.allow()


def test_a_probe_that_never_reports_frees_its_slot_after_open_s() -> None:
    clock = FakeClock()
    b = CircuitBreaker(failures=1, open_s=5.0, clock=clock)
    b.failure()
    clock.now += 5.0
    assert b.allow()
    clock.now += 4.0
    assert not b.allow()
    clock.now += 1.0
    assert b.allow()  # the first probe was lost (e.g. re-routed): another one may go
    b.release()
    assert b.allow()  # a released probe (a client error) frees the slot at once


def test_errors_carry_retry_after() -> None:
    assert MlpilotError("x").retry_after_header() is None
    assert MlpilotError("x", retry_after_s=0.01).retry_after_header() == "1"
    assert MlpilotError("x", retry_after_s=2.2).retry_after_header() == "3"
