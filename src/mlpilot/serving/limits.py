"""Limits on the data plane (docs/serving.md "Limits"): rate limits, load shedding and circuit breakers.

Pure state machines with an injectable clock (``now`` in seconds, monotonic); the data plane owns one
:class:`Limiter` and asks it before a request runs.

* **Rate limits** — token buckets: one per deployment (``DeploymentSpec.limits.rate_per_s``) and one per caller
  (``limits.key_rate_per_s``: the API key's name, or the client address when auth is off). A request takes one
  token from each bucket that applies; an empty bucket refuses it with :class:`ResourceExhausted` (HTTP 429, gRPC
  RESOURCE_EXHAUSTED) and ``retry_after_s`` = the time until a token is back. A refused request takes nothing from
  the other bucket. Caller buckets are kept for the ``max_callers`` most recent callers (least recently used
  dropped: a dropped caller starts again with a full bucket).
* **Load shedding** — a variant serves at most ``max_in_flight`` requests at once (queued for a batch included);
  one more is refused at once with :class:`Overloaded` (HTTP 503, gRPC UNAVAILABLE, ``Retry-After: 1``) instead of
  waiting behind a queue it would only make longer.
* **Circuit breakers** — per variant, when the deployment names a ``fallback`` variant: ``failures`` consecutive
  server-side failures (the model raised, timed out or was unavailable) open the breaker for ``open_s`` seconds;
  while open the variant's requests go to the fallback. Then one request at a time probes the variant (half-open):
  a success closes the breaker, a failure opens it again for ``open_s``. Client errors (bad input) do not count.
"""

from __future__ import annotations

import enum
import time
from collections import OrderedDict
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field

from mlpilot.errors import ResourceExhausted

Clock = Callable[[], float]

#: who sends the request being served (the API key's name, or ``addr:<client address>`` when no key was checked):
#: set by the transports (REST, OpenAI, gRPC) for the task serving one request; read by ``DataPlane.choose``.
CALLER: ContextVar[str | None] = ContextVar("mlpilot_caller", default=None)


@dataclass
class TokenBucket:
    """``rate`` tokens per second up to ``burst``; starts full."""

    rate: float
    burst: float
    tokens: float = -1.0
    stamp: float = 0.0

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.burst

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_s(self, now: float) -> float:
        """Seconds until one token is available (0: one is available now)."""
        self._refill(now)
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate

    def take(self) -> None:
        self.tokens -= 1.0


@dataclass(frozen=True)
class Rate:
    per_s: float
    burst: float

    @classmethod
    def of(cls, per_s: float | None, burst: float | None) -> Rate | None:
        """None when ``per_s`` is None; the burst defaults to one second's worth (at least 1)."""
        if per_s is None:
            return None
        return cls(per_s, burst if burst is not None else max(1.0, per_s))


class Limiter:
    """Token buckets per deployment and per caller.

    Args:
        caller_rate: every caller's rate (None: callers are not limited).
        max_callers: callers whose buckets are kept.
        clock: monotonic seconds.
    """

    def __init__(self, caller_rate: Rate | None = None, max_callers: int = 10_000, clock: Clock = time.monotonic):
        self.caller_rate = caller_rate
        self.max_callers = max_callers
        self.clock = clock
        self._callers: OrderedDict[str, TokenBucket] = OrderedDict()
        self._deployments: dict[str, tuple[Rate, TokenBucket]] = {}

    def _deployment_bucket(self, deployment: str, rate: Rate | None) -> TokenBucket | None:
        if rate is None:
            self._deployments.pop(deployment, None)
            return None
        known = self._deployments.get(deployment)
        if known is None or known[0] != rate:  # new, or its limit changed: start full at the new rate
            known = (rate, TokenBucket(rate.per_s, rate.burst, stamp=self.clock()))
            self._deployments[deployment] = known
        return known[1]

    def _caller_bucket(self, caller: str | None) -> TokenBucket | None:
        if self.caller_rate is None or caller is None:
            return None
        bucket = self._callers.get(caller)
        if bucket is None:
            bucket = TokenBucket(self.caller_rate.per_s, self.caller_rate.burst, stamp=self.clock())
            self._callers[caller] = bucket
            if len(self._callers) > self.max_callers:
                self._callers.popitem(last=False)
        else:
            self._callers.move_to_end(caller)
        return bucket

    def admit(self, deployment: str, rate: Rate | None, caller: str | None) -> None:
        """Take a token for ``deployment`` (limited by ``rate``) and for ``caller``.

        Raises:
            ResourceExhausted: a bucket is empty (``retry_after_s`` set; nothing was taken).
        """
        now = self.clock()
        d = self._deployment_bucket(deployment, rate)
        c = self._caller_bucket(caller)
        if d is not None:
            assert rate is not None
            _check(d, now, rate, "deployment", f"deployment {deployment!r}")
        if c is not None:
            assert self.caller_rate is not None
            _check(c, now, self.caller_rate, "caller", f"caller {caller!r}")
        if d is not None:
            d.take()
        if c is not None:
            c.take()


def _check(bucket: TokenBucket, now: float, rate: Rate, limit: str, who: str) -> None:
    """Raise :class:`ResourceExhausted` if ``bucket`` has no token at ``now``."""
    wait = bucket.wait_s(now)
    if wait > 0:
        raise ResourceExhausted(
            f"{who} is over its rate limit of {rate.per_s:g} requests/s (burst {rate.burst:g}); retry in {wait:.2f} s",
            retry_after_s=wait,
            detail={"limit": limit, "retry_after_s": round(wait, 3)},
        )


class BreakerState(str, enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class CircuitBreaker:
    """Opens after ``failures`` consecutive failures, for ``open_s`` seconds; then lets one probe through (another
    one if the probe has not reported within ``open_s``)."""

    failures: int = 5
    open_s: float = 30.0
    clock: Clock = time.monotonic
    state: BreakerState = BreakerState.CLOSED
    consecutive: int = 0
    opened_at: float = 0.0
    probing: bool = False
    probe_started: float = 0.0
    trips: int = 0
    _listeners: list[Callable[[BreakerState], None]] = field(default_factory=list)

    def allow(self) -> bool:
        """Whether a request may go to the variant now (a half-open breaker lets one probe at a time)."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            if self.clock() - self.opened_at < self.open_s:
                return False
            self._set(BreakerState.HALF_OPEN)
        now = self.clock()
        if self.probing and now - self.probe_started < self.open_s:  # a probe that never reported frees its slot
            return False
        self.probing, self.probe_started = True, now
        return True

    def retry_after_s(self) -> float:
        """Seconds until the breaker lets a probe through (0 when closed)."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self.open_s - (self.clock() - self.opened_at))

    def success(self) -> None:
        self.consecutive = 0
        self.probing = False
        if self.state is not BreakerState.CLOSED:
            self._set(BreakerState.CLOSED)

    def failure(self) -> None:
        self.consecutive += 1
        was_probe = self.probing
        self.probing = False
        if was_probe or (self.state is BreakerState.CLOSED and self.consecutive >= self.failures):
            self.opened_at = self.clock()
            self.trips += 1
            self._set(BreakerState.OPEN)

    def release(self) -> None:
        """A probe that ended without a verdict (a client error): let another request probe."""
        self.probing = False

    def on_change(self, listener: Callable[[BreakerState], None]) -> None:
        self._listeners.append(listener)

    def _set(self, state: BreakerState) -> None:
        self.state = state
        for listener in self._listeners:
            listener(state)
