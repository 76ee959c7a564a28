"""Shipping sealed request-log segments to object storage (``logs.remote``).

The writer (:mod:`mlpilot.telemetry.reqlog`) keeps writing segments to the local directory: appends stay fast and
its durability modes are unchanged. A segment is *sealed* once it is renamed into place (it never changes after).
Every ``every_s`` a :class:`SegmentShipper` thread ships the sealed segments of every deployment and hour partition
(those sealed at least :data:`SEAL_GRACE_S` ago, so the writer has catalogued them; the last round at stop, after
the writer stopped, takes all):

1. it merges a partition's sealed segments into one (at most ``target_rows`` rows; the crash-safe local merge of
   :mod:`mlpilot.telemetry.compaction`, which names the sources in the merged file), so the object store gets one
   object per partition and round rather than one per flush;
2. uploads it to the same relative path under the remote URL and reads its size back (:func:`~mlpilot.telemetry.
   remote.upload`);
3. catalogues it under its URL in place of its local path (one store transaction; the catalogue is optional);
4. deletes the local copy — only now: until then, queries read the local file (:class:`SegmentStore` lists one entry
   per file name, so a segment both local and shipped is read once).

A failure (the object store unreachable, a bucket missing, refused credentials, the store down) leaves the segment
where it is; the round is retried with exponential backoff (1 s doubling to ``max_backoff_s``) and counted
(:attr:`SegmentShipper.failures`, the ``mlpilot_log_ship_failures`` counter of ``/metrics``) — nothing is lost. A
restart ships what the last process left (any sealed local segment is pending). Several processes sharing a log
directory (``--workers``) ship in turn: a partition's shipping holds the deployment's maintenance lock.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from mlpilot.errors import Conflict
from mlpilot.telemetry.compaction import (
    DEFAULT_TARGET_ROWS,
    SegmentCatalog,
    _bins,
    _exclusive,
    _merge,
    _partitions,
    _segments,
    _small,
    live_files,
    recover,
)
from mlpilot.telemetry.remote import local_facts, upload
from mlpilot.telemetry.segments import SegmentStore, partition_dirs

log = logging.getLogger("mlpilot.reqlog")

#: an empty local partition directory older than this is removed (the writer re-creates one it needs)
_EMPTY_DIR_AGE = timedelta(hours=2)
#: after this many failed partitions a round stops (the object store is most likely down)
_FAILURES_PER_ROUND = 3
#: background rounds leave segments sealed this recently (seconds) to the next round: the writer catalogues a segment
#: right after renaming it into place, and shipping must replace that row, not precede it
SEAL_GRACE_S = 2.0


@dataclass(frozen=True)
class ShipReport:
    """One shipping round."""

    shipped: int = 0  # segments uploaded (their local copies deleted)
    bytes: int = 0
    merged: int = 0  # local segments merged into the shipped ones first
    failures: int = 0  # partitions that failed (their segments stay local and are retried)
    pending: int = 0  # sealed local segments still waiting after the round
    error: str | None = None  # the last failure


class SegmentShipper:
    """Ships the sealed segments under ``store.local`` to ``store.remote`` (see the module docstring).

    Args:
        store: the log's segments; its ``remote`` must be set.
        every_s: seconds between rounds (the delay before a shipped segment is visible to other hosts).
        catalog: kept in step (a shipped segment is catalogued under its URL); None: files only.
        target_rows: most rows of a merged segment.
        on_report: told of every round (metrics), from the shipper's thread.
        max_backoff_s: longest wait between two rounds after failures.
    """

    def __init__(
        self,
        store: SegmentStore,
        *,
        every_s: float = 30.0,
        catalog: SegmentCatalog | None = None,
        target_rows: int = DEFAULT_TARGET_ROWS,
        on_report: Callable[[ShipReport], None] | None = None,
        max_backoff_s: float = 60.0,
    ) -> None:
        if not store.remote:
            raise ValueError("a shipper needs a store with a remote URL")
        self.store = store
        self.every_s = every_s
        self.catalog = catalog
        self.target_rows = target_rows
        self.on_report = on_report
        self.max_backoff_s = max_backoff_s
        self.shipped = 0  # segments shipped by this shipper
        self.failures = 0  # failed partitions, in total
        self.pending = 0  # sealed local segments waiting, after the last round
        self.last_error: str | None = None
        self._failed_rounds = 0  # in a row
        self._round = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Ship in a background thread: a first round at once (what a previous process left), then every
        ``every_s``."""
        self.pending = self._count_pending()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="mlpilot-reqlog-ship", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """A last round (call after the writer's last flush), then stop. What cannot be shipped within
        ``timeout_s`` stays local and is shipped by the next start."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning(
                    "request-log shipping to %s did not finish in %.0f s; %d segment(s) stay local for the next start",
                    self.store.remote,
                    timeout_s,
                    self.pending,
                )
            self._thread = None

    def _run(self) -> None:
        delay = 0.0
        while True:
            stopping = self._stopping.wait(delay)
            try:
                report = self.ship(0.0 if stopping else SEAL_GRACE_S)  # stopping: the writer has stopped
            except Exception:  # a bug, not an outage (those are in the report): logged, and the thread goes on
                log.exception("request-log shipping failed")
                report = ShipReport(failures=1, error="internal error")
            if stopping:
                return
            if report.failures:
                self._failed_rounds += 1
                delay = min(self.max_backoff_s, 2.0 ** (self._failed_rounds - 1)) * random.uniform(0.8, 1.2)
            else:
                self._failed_rounds = 0
                delay = self.every_s

    # ------------------------------------------------------------------------------------------ a round

    def ship(self, grace_s: float = 0.0) -> ShipReport:
        """One round over every deployment and partition (one round at a time; safe from any thread), leaving
        segments sealed less than ``grace_s`` seconds ago."""
        with self._round:
            report = self._ship_all(time.time() - grace_s)
        self.shipped += report.shipped
        self.failures += report.failures
        self.pending = report.pending
        self._log(report)
        if self.on_report is not None:
            try:
                self.on_report(report)
            except Exception:
                log.exception("request-log shipping report failed")
        return report

    def _ship_all(self, sealed_before: float) -> ShipReport:
        root = self.store.local
        shipped = size = merged = failures = 0
        error: str | None = None
        deployments = sorted(d for d in root.iterdir() if d.is_dir() and d.name[0] not in "._") if root.is_dir() else []
        for base in deployments:
            if failures >= _FAILURES_PER_ROUND:
                break
            try:
                with _exclusive(base):
                    recover(root, base.name, catalog=self.catalog)  # local merges a crash interrupted
                    for start, hour_dir in _partitions(base):
                        try:
                            n, b, m = self._ship_partition(base.name, start, hour_dir, sealed_before)
                        except Exception as exc:  # the segments stay local; the next round retries
                            failures += 1
                            error = f"{type(exc).__name__}: {exc}"
                            if failures >= _FAILURES_PER_ROUND:
                                break
                            continue
                        shipped, size, merged = shipped + n, size + b, merged + m
            except Conflict:
                continue  # another process ships or maintains this deployment right now
            except Exception as exc:  # recovery could not reach the catalogue
                failures += 1
                error = f"{type(exc).__name__}: {exc}"
        return ShipReport(shipped, size, merged, failures, self._count_pending(), error)

    def _ship_partition(
        self, deployment: str, start: datetime, hour_dir: Path, sealed_before: float
    ) -> tuple[int, int, int]:
        files = live_files(_segments(hour_dir))
        if not files:
            if start + _EMPTY_DIR_AGE < datetime.now(timezone.utc):
                for d in (hour_dir, hour_dir.parent):
                    with contextlib.suppress(OSError):
                        d.rmdir()  # only when empty
            return 0, 0, 0
        ready = [f for f in files if f.stat().st_mtime <= sealed_before]
        merged = 0
        if len(ready) > 1:
            for group in _bins(_small(ready, 2**62), self.target_rows):
                *_, out = _merge(deployment, hour_dir, group, self.catalog)
                ready = [f for f in ready if f not in group] + [out]
                merged += len(group)
        shipped = size = 0
        for f in sorted(ready):
            rows, nbytes, lo, hi = local_facts(f)
            url = upload(self.store, f, f"{deployment}/{partition_dirs(start)}/{f.name}")
            if self.catalog is not None:
                self.catalog.replace_segments(deployment, [str(f)], url, rows, nbytes, lo, hi)
            f.unlink()
            shipped += 1
            size += nbytes
        return shipped, size, merged

    def _count_pending(self) -> int:
        root = self.store.local
        return sum(1 for f in root.glob("*/dt=*/hour=*/seg-*.parquet") if f.parts[-4][0] not in "._")

    def _log(self, report: ShipReport) -> None:
        if report.failures:
            self.last_error = report.error
            if self._failed_rounds == 0:
                log.warning(
                    "shipping request-log segments to %s failed (%s); %d segment(s) stay local and are retried",
                    self.store.remote,
                    report.error,
                    report.pending,
                )
            else:
                log.debug("shipping to %s failed again: %s", self.store.remote, report.error)
        elif self._failed_rounds:
            log.info("shipping request-log segments to %s works again (%d shipped)", self.store.remote, report.shipped)
