"""What the request log (:mod:`mlpilot.telemetry.reqlog`) does when writing fails or its process died.

* :class:`WriteFailures` reports failed writes (a full disk, a read-only directory …) once when they start, then
  once per ``every_s`` while they last, and once when writes succeed again — never once per record or flush.
* :class:`Notifier` runs the callbacks that reach the control-plane store (cataloguing each segment, reporting
  dropped records) on a thread of its own, so a slow, locked or unreachable store never holds up the writer — nor,
  in ``strict`` mode, the responses waiting for it. Segments are catalogued in order and retried with backoff
  while the store fails (the catalogue is bookkeeping: queries read the files); drop counts are summed and reported
  at most once per ``drop_every_s``.
* :func:`written_keys` finds which records of a crashed process's spill already reached a segment (a ``kill -9``
  between renaming a segment into place and deleting the spill it came from), so a replay writes each record once.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("mlpilot.reqlog")

#: how often an ongoing write failure is reported again, in seconds.
REPORT_EVERY_S = 60.0
#: a segment written up to this long before a record's timestamp may still hold it (wall clocks can step back).
_CLOCK_SLACK_NS = 60 * 10**9


def reason(exc: BaseException) -> str:
    """A failure in a few words: ``No space left on device`` rather than a traceback."""
    if isinstance(exc, OSError) and exc.errno:  # pyarrow's carry the errno, with a long strerror
        return os.strerror(exc.errno)
    return str(exc) or type(exc).__name__


class WriteFailures:
    """Failed writes of the request log, logged once per ``every_s`` rather than once per record or flush.

    Args:
        consequence: what a failure means for records in this durability mode (ends the first message).
        not_written: the total of records dropped or refused so far (monotonic); the reports give its increase.
        every_s: how often a failure that goes on is reported again.
    """

    def __init__(self, consequence: str, not_written: Callable[[], int], every_s: float = REPORT_EVERY_S) -> None:
        self.consequence = consequence
        self.every_s = every_s
        self.since: float | None = None  # monotonic time of the first failure of the ongoing outage
        self._not_written = not_written
        self._last_report = 0.0
        self._failures = 0  # failed writes since the last report
        self._base = self._last_base = 0  # not_written() when the outage began, and at the last report
        self._lock = threading.Lock()

    @property
    def failing(self) -> bool:
        return self.since is not None

    def failed(self, what: str, exc: BaseException) -> None:
        """A write of ``what`` failed with ``exc``."""
        now = time.monotonic()
        with self._lock:
            self._failures += 1
            if self.since is None:
                self.since = self._last_report = now
                self._failures = 0
                self._base = self._last_base = self._not_written()
                log.error(
                    "request log: cannot write %s (%s); %s. Reported every %.0f s until it can write again.",
                    what,
                    reason(exc),
                    self.consequence,
                    self.every_s,
                )
            elif now - self._last_report >= self.every_s:
                total = self._not_written()
                log.error(
                    "request log: still cannot write (%s) after %.0f s: %d failed writes, %d records not written in "
                    "the last %.0f s",
                    reason(exc),
                    now - self.since,
                    self._failures,
                    total - self._last_base,
                    now - self._last_report,
                )
                self._last_report = now
                self._failures = 0
                self._last_base = total

    def ok(self) -> None:
        """A write succeeded: ends an ongoing failure (and says so once)."""
        if self.since is None:
            return
        with self._lock:
            if self.since is None:
                return
            log.warning(
                "request log: writing again after %.0f s of failures (%d records were not written meanwhile)",
                time.monotonic() - self.since,
                self._not_written() - self._base,
            )
            self.since = None
            self._failures = 0


class Notifier:
    """Runs ``on_segment`` and ``on_drop`` off the writer thread (see the module docstring).

    Args:
        on_segment: catalogues a segment (the store); retried on failure until it succeeds.
        on_drop: told how many records were dropped since its last call (metrics, an event); never retried (the
            metric it increments first would count twice).
        drops: the total of records dropped so far (monotonic); polled every ``drop_every_s`` seconds.
        max_pending: segments waiting to be catalogued beyond this many are not catalogued (oldest first; logged).
        max_backoff_s: a failed catalogue call is retried after 1 s, doubling up to this many seconds.
    """

    def __init__(
        self,
        on_segment: Callable[[Any], None] | None,
        on_drop: Callable[[int], None] | None,
        drops: Callable[[], int],
        *,
        drop_every_s: float = 1.0,
        max_pending: int = 100_000,
        max_backoff_s: float = 5.0,
    ) -> None:
        self._on_segment = on_segment
        self._on_drop = on_drop
        self._drops = drops
        self.drop_every_s = drop_every_s
        self.max_pending = max_pending
        self.max_backoff_s = max_backoff_s
        self._segments: deque[Any] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._reported = 0
        self._backoff = 0.0  # > 0 while cataloguing fails
        self._retry_at = 0.0
        self._drop_failing = False
        self.uncatalogued = 0  # segments given up on (max_pending exceeded, or the store down at stop)

    def start(self) -> None:
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="mlpilot-reqlog-notify", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Catalogue what is waiting (one more attempt if the store fails) and report the last drops."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def segment(self, seg: Any) -> None:
        """Catalogue ``seg`` soon (from the segment thread); synchronously when the notifier is not running."""
        if self._on_segment is None:
            return
        if self._thread is None:
            self._on_segment(seg)
            return
        with self._cond:
            self._segments.append(seg)
            if len(self._segments) > self.max_pending:
                self._segments.popleft()
                self.uncatalogued += 1
                if self.uncatalogued == 1 or self.uncatalogued % 10_000 == 0:
                    log.error(
                        "request log: %d segments were not catalogued (the store is unreachable); queries still "
                        "read them (they list the files)",
                        self.uncatalogued,
                    )
            self._cond.notify()

    def _run(self) -> None:
        next_drops = time.monotonic() + self.drop_every_s
        while True:
            with self._cond:
                now = time.monotonic()
                wake = next_drops
                if self._segments:
                    wake = min(wake, self._retry_at)
                if not self._stopping and wake > now:
                    self._cond.wait(wake - now)
                stopping = self._stopping
            now = time.monotonic()
            if stopping or now >= next_drops:
                self._report_drops()
                next_drops = now + self.drop_every_s
            if stopping or now >= self._retry_at:
                self._catalog(final=stopping)
            if stopping:
                return

    def _report_drops(self) -> None:
        total = self._drops()
        n, self._reported = total - self._reported, total
        if n <= 0 or self._on_drop is None:
            return
        try:
            self._on_drop(n)
            self._drop_failing = False
        except Exception as exc:  # the store is down: the metric was counted; the event is lost, said once
            if not self._drop_failing:
                log.error("request log: cannot record dropped records in the store (%s)", reason(exc))
            self._drop_failing = True

    def _catalog(self, final: bool) -> None:
        while True:
            with self._cond:
                if not self._segments:
                    return
                seg = self._segments[0]
            assert self._on_segment is not None
            try:
                self._on_segment(seg)
            except Exception as exc:
                if self._backoff == 0:
                    log.error(
                        "request log: cannot catalogue segments in the store (%s); retrying with backoff — queries "
                        "are not affected (they list the files)",
                        reason(exc),
                    )
                self._backoff = min(self.max_backoff_s, max(1.0, self._backoff * 2))
                self._retry_at = time.monotonic() + self._backoff
                if final:
                    with self._cond:
                        self.uncatalogued += len(self._segments)
                        self._segments.clear()
                    log.error("request log: %d segments left uncatalogued at stop", self.uncatalogued)
                return
            with self._cond:
                self._segments.popleft()
            if self._backoff:
                log.warning("request log: cataloguing segments in the store again")
                self._backoff = 0.0
                self._retry_at = 0.0


def written_keys(root: Path, records: Iterable[Any]) -> set[tuple[str, int]]:
    """``(request_id, ts in µs)`` of the ``records``' rows already in segments under ``root``.

    Only the hour partitions of the records are looked at, and there only segments written after the earliest
    record was made (their names start with the time they were written, in ns): a crashed process's last segments,
    or those of an interrupted earlier replay — whichever process wrote them.
    """
    import pyarrow.parquet as pq

    hours: dict[tuple[str, int], int] = {}
    for r in records:
        key = (r.deployment, int(r.ts // 3600))
        ns = int(r.ts * 1e9)
        hours[key] = min(hours.get(key, ns), ns)
    seen: set[tuple[str, int]] = set()
    for (dep, hour), first_ns in hours.items():
        start = time.gmtime(hour * 3600)
        folder = root / dep / time.strftime("dt=%Y-%m-%d", start) / time.strftime("hour=%H", start)
        for f in folder.glob("seg-*.parquet"):
            try:
                written_ns = int(f.name.split("-")[1])
            except (IndexError, ValueError):
                continue
            if written_ns < first_ns - _CLOCK_SLACK_NS:
                continue
            try:
                table = pq.read_table(f, columns=["request_id", "ts"])
            except FileNotFoundError:  # merged away meanwhile: its rows are in the merged file, also listed
                continue
            ids = table.column("request_id").to_pylist()
            us = np.concatenate([c.to_numpy().view(np.int64) for c in table.column("ts").chunks] or [np.empty(0)])
            seen.update(zip(ids, us.tolist(), strict=True))
    return seen


def record_key(record: Any) -> tuple[str, int]:
    """A record's key in :func:`written_keys` (its ts in µs, truncated as the segment's column is)."""
    return (record.request_id, int(record.ts * 1e6))
