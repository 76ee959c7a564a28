"""Leader election over a lease in the store: of the server processes that run the scheduler, one leads.

:class:`Leadership` is stepped every third of the lease's time to live (``step``): a follower tries to take the
lease, the leader renews it. The scheduler asks :meth:`Leadership.leading` before each job — a local check, no I/O:
the process leads while it holds the lease *and* its local deadline (the start of the last successful acquire or
renewal plus the time to live, on the monotonic clock) has not passed. The local deadline is never later than the
lease's expiry in the store, so a leader cut off from the store (an outage, a stalled process) stops acting before
another process may take over; it does not act on a stale lease.

Failover: a leader that dies renewed at most a third of the time to live before; its lease expires within the time
to live, and a follower tries every third of it, so the next leader acts within 4/3 of the time to live (8 s for
the default 6 s). A graceful stop releases the lease: the next step of a follower takes it at once.

Every change of leader is an event on ``lease:<name>`` (``leader.acquired`` with the previous holder, and
``leader.lost`` with why: ``released``, ``taken`` or ``expired``), so an operator sees who leads and since when.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from typing import Any

from mlpilot.clock import Clock
from mlpilot.errors import MlpilotError
from mlpilot.store.sql import Store

log = logging.getLogger("mlpilot.leader")

#: The lease the scheduler's leader holds (rollout ticks, monitor ticks, request-log maintenance).
SCHEDULER_LEASE = "scheduler"


def holder_id() -> str:
    """``hostname:pid:random`` — unique per process start, readable by an operator."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Leadership:
    """One process's part in the election for lease ``name``.

    Args:
        store: the shared store holding the lease.
        ttl_s: the lease's time to live, in seconds; :meth:`step` should run every :attr:`interval_s` (a third).
        holder: this process's identity (default :func:`holder_id`).
        clock: the local deadline's clock (default the store's).

    Thread safety: :meth:`step` and :meth:`release` are serialised; :meth:`leading` may be called from any thread.
    """

    def __init__(
        self,
        store: Store,
        *,
        name: str = SCHEDULER_LEASE,
        ttl_s: float = 6.0,
        holder: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.store = store
        self.name = name
        self.ttl_s = ttl_s
        self.holder = holder or holder_id()
        self.clock = clock or store.clock
        self._epoch: int | None = None
        self._deadline = 0.0
        self._closed = False
        self._state = threading.Lock()
        self._step = threading.Lock()

    @property
    def interval_s(self) -> float:
        """How often :meth:`step` should run: a third of the time to live."""
        return self.ttl_s / 3

    @property
    def epoch(self) -> int | None:
        """The epoch (fencing token) of the lease while this process holds it."""
        with self._state:
            return self._epoch

    def leading(self) -> bool:
        """Whether this process leads now: it holds the lease and its local deadline has not passed."""
        with self._state:
            return self._epoch is not None and self.clock.monotonic() < self._deadline

    def step(self) -> bool:
        """Take the lease if free, renew it if held; returns :meth:`leading`. Store errors are logged, never raised:
        the process keeps leading until its local deadline, then stops."""
        with self._step:
            if self._closed:
                return False
            start = self.clock.monotonic()
            with self._state:
                epoch = self._epoch
                expired = epoch is not None and start >= self._deadline
            if expired:  # could not renew in time (store outage, stalled process): the lease may be someone else's
                self._lose("expired")
                epoch = None
            if epoch is None:
                self._acquire(start)
            else:
                self._renew(start, epoch)
            return self.leading()

    def _acquire(self, start: float) -> None:
        try:
            before = self.store.get_lease(self.name)
            lease = self.store.acquire_lease(self.name, self.holder, self.ttl_s)
        except MlpilotError as exc:
            log.warning("cannot reach the store to take lease %s: %s", self.name, exc.message)
            return
        if lease is None:
            return
        with self._state:
            self._epoch, self._deadline = lease.epoch, start + self.ttl_s
        previous = (
            {"holder": before.holder, "epoch": before.epoch, "expired_at": before.expires_at.isoformat()}
            if before is not None and before.epoch != lease.epoch
            else None
        )
        log.warning("this process (%s) leads the scheduler (epoch %d)", self.holder, lease.epoch)
        self._event("leader.acquired", previous, {"holder": self.holder, "epoch": lease.epoch, "ttl_s": self.ttl_s})

    def _renew(self, start: float, epoch: int) -> None:
        try:
            renewed = self.store.renew_lease(self.name, self.holder, epoch, self.ttl_s)
        except MlpilotError as exc:
            with self._state:
                left = self._deadline - self.clock.monotonic()
            log.warning("cannot renew lease %s (%s): leading for %.1f s more at most", self.name, exc.message, left)
            return
        if renewed:
            with self._state:
                self._deadline = start + self.ttl_s
        else:
            self._lose("taken")

    def _lose(self, reason: str) -> None:
        with self._state:
            epoch, self._epoch = self._epoch, None
        if epoch is None:
            return
        log.warning("this process (%s) no longer leads the scheduler (epoch %d): %s", self.holder, epoch, reason)
        self._event("leader.lost", None, {"holder": self.holder, "epoch": epoch, "reason": reason})

    def open(self) -> None:
        """Take part in the election again after :meth:`release` (a server started again)."""
        with self._step:
            self._closed = False

    def release(self) -> None:
        """Stop (a graceful shutdown): give the lease up so another process takes over at once. Waits for a
        :meth:`step` in flight; later steps do nothing until :meth:`open`."""
        with self._step:
            self._closed = True
            epoch = self.epoch
            if epoch is None:
                return
            try:
                self.store.release_lease(self.name, self.holder, epoch)
            except MlpilotError as exc:  # it expires by itself
                log.warning("cannot release lease %s: %s", self.name, exc.message)
            self._lose("released")

    def _event(self, action: str, before: dict[str, Any] | None, after: dict[str, Any]) -> None:
        try:
            self.store.append_event(self.holder, action, f"lease:{self.name}", before, after)
        except MlpilotError as exc:  # the election must not depend on the audit write
            log.warning("cannot record %s: %s", action, exc.message)
