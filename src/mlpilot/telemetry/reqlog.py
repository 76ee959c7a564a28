"""The request log: every served request as rows of zstd Parquet segments, written off the request path.

Request path: ``log(record)`` (or ``append``) puts the record in a bounded in-memory queue (O(1), never blocks,
never does I/O, allocates nothing but the deque slot). When the queue is full the record is dropped and counted —
never silently. A background writer thread drains the queue (one C loop), turns records into columns 2,048 at a
time (:mod:`mlpilot.telemetry.columns`: one row per input row, typed columns from the inputs and outputs, numpy
calls per column rather than Python work per record), and hands each partition's table to a segment thread that
writes it to ``<root>/<deployment>/dt=YYYY-MM-DD/hour=HH/seg-<t>-<pid>-<n>.parquet`` — to a temporary name first,
then renamed, so a reader never sees a partial file. Parquet encoding releases the GIL, so it overlaps the
column building of the next records (a partition past ``_SEGMENT_ROWS`` rows is handed over right away).

Durability:

* ``fast``: records are written every ``flush_interval_s`` (default 1 s); a hard crash (``kill -9``) loses at
  most the records of the last interval plus what was being written. A graceful ``stop()`` loses nothing.
* ``strict``: ``append_durable`` returns only after the record is in the write-ahead spill file and that file
  is fsynced; the writer group-commits (one fsync for every record that arrived meanwhile). Spill files are
  turned into segments afterwards, and on start any spill left by a crash is replayed first — each record once:
  records a crashed process had already written to a segment are left out (:func:`~mlpilot.telemetry.recovery.
  written_keys`).

Failures (a full disk, a read-only directory): a segment that cannot be written is kept in memory and written
again at the next flush (oldest first), up to ``capacity`` rows; while that many wait, the queue is not drained
either, so new records fill it and are then dropped and counted. In ``strict`` mode a record is acknowledged only
once it is in the spill: when the spill cannot be written, or ``capacity`` rows already wait, ``append_durable``
fails the record (``Unavailable``: the server answers 503) instead; spills are deleted only once everything in them
is in segments. Every record not written is counted (``dropped``, reported through ``on_drop``), and the failure is
logged when it starts, every minute while it lasts and when it ends (:class:`~mlpilot.telemetry.recovery.
WriteFailures`). The store callbacks run on their own thread (:class:`~mlpilot.telemetry.recovery.Notifier`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import repeat, starmap
from pathlib import Path
from typing import Any

import numpy as np

from mlpilot.errors import Unavailable
from mlpilot.telemetry.columns import COMPRESSION, COMPRESSION_LEVEL, dictionary_columns, partition_tables
from mlpilot.telemetry.recovery import Notifier, WriteFailures, reason, record_key, written_keys
from mlpilot.telemetry.redact import Redactor

log = logging.getLogger("mlpilot.reqlog")

SCHEMA_VERSION = 1
_CHUNK = 2048  # records turned into columns between two GIL hand-offs (and that stay in the CPU cache)
_SEGMENT_ROWS = 131_072  # a partition this big is written while the next records are turned into columns


@dataclass(frozen=True)
class Segment:
    """A written segment, as catalogued by the control plane."""

    deployment: str
    path: Path
    rows: int
    min_ts: float
    max_ts: float
    bytes: int


class RequestLog:
    """Bounded queue → writer thread → Parquet segments.

    Args:
        root: directory of the segments (one subdirectory per deployment).
        capacity: most records waiting to be written; beyond it ``append`` drops and counts.
        flush_interval_s: how often the writer writes in ``fast`` mode (the bounded loss window on a crash).
        durability: ``fast`` or ``strict`` (see the module docstring).
        on_segment: called with each new :class:`Segment` once it is renamed into place (the catalog), from a
            thread of its own (retried while it fails); every call is made before ``stop`` returns.
        on_drop: called with the number of records dropped or not written since the last call (metrics, events),
            at most once a second, from the same thread.
        redactor: redacts fields and secrets in every row and spill line (:mod:`mlpilot.telemetry.redact`).
    """

    def __init__(
        self,
        root: Path,
        *,
        capacity: int = 100_000,
        flush_interval_s: float = 1.0,
        durability: str = "fast",
        on_segment: Callable[[Segment], None] | None = None,
        on_drop: Callable[[int], None] | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        if durability not in ("fast", "strict"):
            raise ValueError("durability is 'fast' or 'strict'")
        self.root = Path(root)
        self.capacity = capacity
        self.flush_interval_s = flush_interval_s
        self.durability = durability
        self.redactor = redactor  # applied where rows are made and to spill lines (mlpilot.telemetry.redact)
        self._notifier = Notifier(on_segment, on_drop, lambda: self.dropped + self.lost)
        self._queue: deque[Any] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.dropped = 0  # records dropped because the queue was full (since creation)
        self.lost = 0  # records not written for a write failure, or refused in strict mode (since creation)
        self.written = 0
        self._seq = 0
        # segments handed to the segment thread, oldest first (the writer thread builds the next meanwhile)
        self._pool: ThreadPoolExecutor | None = None
        self._writes: deque[tuple[Future[None], tuple[str, int], Any]] = deque()
        # segments whose write failed, written again at the next flush (oldest first), and their rows
        self._retry: list[tuple[tuple[str, int], Any]] = []
        self._retry_rows = 0
        self._replay_at: float | None = None  # when to try again to replay a dead process's spill
        self.failures = WriteFailures(
            "inference answers 503 until it can (acknowledged records stay in the spill)"
            if durability == "strict"
            else f"records are kept in memory and written later, up to {capacity} rows; beyond that they are dropped "
            "and counted (mlpilot_log_dropped_total)",
            lambda: self.dropped + self.lost,
        )
        # strict mode: records waiting for the next group commit, with their completion callbacks
        self._pending: list[tuple[Any, Callable[..., None]]] = []
        self._spill_dir = self.root / "_spill"

    # ------------------------------------------------------------------------------------------ request path

    def append(self, record: Any) -> bool:
        """Queue a record (fast mode). Returns False when the queue was full and the record was dropped."""
        q = self._queue
        if len(q) >= self.capacity:
            self.dropped += 1
            return False
        q.append(record)
        return True

    def __call__(self, record: Any) -> None:
        """The data plane's sink: ``append`` inlined (one Python call per request, not two)."""
        q = self._queue
        if len(q) < self.capacity:
            q.append(record)
        else:
            self.dropped += 1

    def append_durable(self, record: Any, done: Callable[..., None]) -> None:
        """Strict mode: ``done()`` is called (from the writer thread) once the record is fsynced to the spill, or
        ``done(error)`` with an :class:`~mlpilot.errors.Unavailable` when it cannot be (see the module docstring)."""
        with self._cond:
            self._pending.append((record, done))
            self._cond.notify()

    # ------------------------------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="mlpilot-reqlog-segment")
        self._notifier.start()
        self._remove_torn_segments()
        self._replay_spills()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="mlpilot-reqlog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Write everything queued, then stop the writer (a graceful shutdown loses nothing)."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
        self._flush()
        self._wait_writes()
        left = len(self._queue) + sum(_records(t) for _, t in self._retry)
        if left:  # the disk is still failing: strict mode keeps them in the spill for the next start
            kept = "kept in the spill for the next start" if self.durability == "strict" else "lost"
            log.error("request log: %d records could not be written before stopping (%s)", left, kept)
            self._queue.clear()
            self._retry, self._retry_rows = [], 0
            if self.durability == "fast":
                self.lost += left
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        self._notifier.stop()

    def _run(self) -> None:
        next_flush = time.monotonic() + self.flush_interval_s
        while True:
            with self._cond:
                if not self._stopping and not self._pending:
                    self._cond.wait(timeout=max(0.0, min(0.05, next_flush - time.monotonic())))
                stopping = self._stopping
                pending, self._pending = self._pending, []
            try:
                if pending:
                    self._group_commit(pending)
                if stopping or time.monotonic() >= next_flush or len(self._queue) >= 50_000:
                    self._flush()
                    next_flush = time.monotonic() + self.flush_interval_s
                if self._replay_at is not None and time.monotonic() >= self._replay_at:
                    self._wait_writes()
                    self._replay_spills()
            except Exception:  # a bug (I/O failures are handled where they happen): logged, and the writer goes on
                log.exception("request-log writer failed; will retry")
                time.sleep(0.5)
            if stopping:
                return

    # ------------------------------------------------------------------------------------------ writing

    def _group_commit(self, pending: list[tuple[Any, Callable[..., None]]]) -> None:
        if self._retry_rows >= self.capacity:
            self._refuse(pending, f"{self._retry_rows} rows wait for their segments to be written")
            return
        path = self._spill_dir / f"spill-{os.getpid()}-{threading.get_ident()}.jsonl"
        try:
            _append_synced(path, b"".join(_to_json_line(record, self.redactor) for record, _ in pending))
        except OSError as exc:
            self.failures.failed("its write-ahead spill", exc)
            self._refuse(pending, reason(exc))
            return
        for record, done in pending:
            self._queue.append(record)
            done()

    def _refuse(self, pending: list[tuple[Any, Callable[..., None]]], why: str) -> None:
        """Strict mode: fail records that cannot be made durable (the data plane answers 503)."""
        self.lost += len(pending)
        message = (
            f"the request log cannot write ({why}); with strict durability no request is answered before it is "
            "logged: retry later"
        )
        for _, done in pending:
            done(Unavailable(message, retry_after_s=1))

    def _flush(self) -> None:
        if self._retry:
            self._write_again()
        q = self._queue
        drained = self._retry_rows < self.capacity  # else the queue waits (and drops beyond its capacity, counted)
        if drained:
            batch = list(starmap(q.popleft, repeat((), len(q))))  # a C loop; appends racing with it stay queued
            if batch:
                self._write(batch)
        if self.durability == "strict":
            self._wait_writes()
            if drained and not self._retry:  # everything spilled is now in segments
                for spill in self._spill_dir.glob(f"spill-{os.getpid()}-*.jsonl"):
                    with contextlib.suppress(OSError):
                        spill.unlink()

    def _write_again(self) -> None:
        """Write the segments that failed before: the oldest first, and the others only if it succeeds."""
        self._wait_writes()
        retry, self._retry, self._retry_rows = self._retry, [], 0
        self._emit(retry[0][0], [retry[0][1]])
        self._wait_writes()
        if self._retry:  # still failing: keep the rest as it was, in order
            self._retry.extend(retry[1:])
            self._retry_rows += sum(t.num_rows for _, t in retry[1:])
            return
        for key, table in retry[1:]:
            self._emit(key, [table])

    def _write(self, records: Sequence[Any]) -> None:
        # Chunk by chunk in arrival order: every pass over a chunk's records finds them in the CPU cache, and
        # the GIL goes back to the event loop between chunks. A partition that reaches _SEGMENT_ROWS is handed
        # to the segment thread right away, so encoding it (which releases the GIL) overlaps the next chunks.
        parts: dict[tuple[str, int], list[Any]] = {}
        rows: dict[tuple[str, int], int] = {}
        redact = self.redactor.table if self.redactor is not None else None
        for i in range(0, len(records), _CHUNK):
            for key, built in partition_tables(records[i : i + _CHUNK], redact).items():
                parts.setdefault(key, []).extend(built)
                rows[key] = rows.get(key, 0) + sum(t.num_rows for t in built)
                if rows[key] >= _SEGMENT_ROWS:
                    self._emit(key, parts.pop(key))
                    del rows[key]
            time.sleep(0)
        for key, tables in parts.items():
            self._emit(key, tables)

    def _emit(self, key: tuple[str, int], tables: list[Any]) -> None:
        """Hand a partition's tables to the segment thread (at most two waiting: back-pressure on memory)."""
        import pyarrow as pa

        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="permissive")
        if self._pool is None:
            self._write_segment(key, table)
            return
        while len(self._writes) >= 2:
            self._collect(*self._writes.popleft())
        self._writes.append((self._pool.submit(self._write_segment, key, table), key, table))

    def _collect(self, write: Future[None], key: tuple[str, int], table: Any) -> None:
        """Wait for one handed-over segment. One that failed for an I/O error is kept to be written again; any
        other failure (a bug) loses its records, counted — it never takes down the batch being built."""
        try:
            write.result()
        except OSError as exc:
            self.failures.failed("a segment", exc)
            self._retry.append((key, table))
            self._retry_rows += table.num_rows
            return
        except Exception as exc:
            n = _records(table)
            self.lost += n
            self.failures.failed("a segment", exc)
            log.exception("request-log segment write failed; %d records lost", n)
            return
        self.failures.ok()

    def _wait_writes(self) -> None:
        """Wait until every handed-over segment is renamed into place (or failed, see :meth:`_collect`)."""
        while self._writes:
            self._collect(*self._writes.popleft())

    def _write_segment(self, key: tuple[str, int], table: Any) -> None:
        dep, hour = key
        table = table.replace_schema_metadata({"mlpilot_schema_version": str(SCHEMA_VERSION)})
        start = datetime.fromtimestamp(hour * 3600, tz=timezone.utc)
        folder = self.root / dep / f"dt={start:%Y-%m-%d}" / f"hour={start:%H}"
        folder.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        name = f"seg-{time.time_ns()}-{os.getpid()}-{self._seq}.parquet"
        tmp = folder / f".{name}.tmp"
        try:
            try:
                write_segment(table, tmp)
            except FileNotFoundError:  # the shipper removed the (empty, old) partition directory meanwhile
                folder.mkdir(parents=True, exist_ok=True)
                write_segment(table, tmp)
            size = tmp.stat().st_size
            os.replace(tmp, folder / name)
        except BaseException:
            with contextlib.suppress(OSError):  # a half-written file would keep a full disk full
                tmp.unlink()
            raise
        self.written += table.num_rows
        lo, hi = ts_span(table)
        self._notifier.segment(Segment(dep, folder / name, table.num_rows, lo, hi, size))

    def _remove_torn_segments(self) -> None:
        """Delete half-written segments (``.seg-….tmp``) of processes that died while writing them."""
        for tmp in self.root.glob("*/dt=*/hour=*/.seg-*.tmp"):
            if not pid_alive(pid_of(tmp.name, 2)):
                with contextlib.suppress(OSError):
                    tmp.unlink()

    def _replay_spills(self) -> None:
        """Turn spill files left by a crashed process into segments (strict mode's recovery), leaving out records
        that already reached a segment. Spills of live processes (other workers) are theirs. A spill whose segments
        cannot be written (a full disk) is kept and replayed again a few seconds later."""
        self._replay_at = None
        if not self._spill_dir.is_dir():
            return
        for spill in sorted(self._spill_dir.glob("spill-*.jsonl")):
            if pid_alive(pid_of(spill.name, 1)):
                continue
            records = []
            with open(spill, "rb") as f:
                for line in f:
                    try:
                        records.append(_from_json_line(line))
                    except (ValueError, KeyError):
                        continue  # a torn line from the crash: every other line was fsynced
            if records:
                seen = written_keys(self.root, records)
                records = [r for r in records if record_key(r) not in seen]
            if records:
                first = len(self._retry)
                self._write(records)
                self._wait_writes()
                if len(self._retry) > first:  # keep the spill: written again (what is missing) shortly
                    self._retry_rows -= sum(t.num_rows for _, t in self._retry[first:])
                    del self._retry[first:]
                    self._replay_at = time.monotonic() + 5.0
                    continue
            spill.unlink()


def _append_synced(path: Path, data: bytes) -> None:
    """Append ``data`` to ``path`` and fsync it; on failure the file is cut back to where it was, so a later append
    never follows half a line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        start = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)


def _records(table: Any) -> int:
    """How many records a segment table holds (each has a row 0)."""
    rows = table.column("row").to_numpy()
    return int(np.count_nonzero(rows == 0))


def write_segment(table: Any, path: Path, **options: Any) -> None:
    """Write ``table`` as a request-log segment file (zstd; dictionary pages only where values repeat)."""
    import pyarrow.parquet as pq

    pq.write_table(
        table,
        path,
        compression=COMPRESSION,
        compression_level=COMPRESSION_LEVEL,
        use_dictionary=dictionary_columns(table.schema),
        **options,
    )


def ts_span(table: Any) -> tuple[float, float]:
    """Earliest and latest ``ts`` of a segment table, in epoch seconds (numpy only: no ``pyarrow.compute``, whose
    import alone holds the GIL for half a second)."""
    us = [c.to_numpy().view(np.int64) for c in table.column("ts").chunks if len(c)]
    return min(int(u.min()) for u in us) / 1e6, max(int(u.max()) for u in us) / 1e6


def pid_of(name: str, index: int) -> int:
    """The pid field of a segment (``.seg-<ns>-<pid>-<n>…``) or spill (``spill-<pid>-<thread>…``) name."""
    try:
        return int(name.lstrip(".").split("-")[index])
    except (IndexError, ValueError):
        return -1


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if pid == os.getpid():
        return False  # our own leftovers from before a restart in the same pid are stale too
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class _Replayed:
    ts: float
    request_id: str
    deployment: str
    variant: str
    model: str
    status: str
    latency_s: float
    shadow: bool
    sticky_key: str | None
    error: str | None
    inputs: Any
    outputs: dict[str, np.ndarray] | None
    trace_id: str | None = None
    decode_s: float = 0.0


def _jsonable(value: Any) -> Any:
    if value is None:
        return None
    if hasattr(value, "columns"):
        return {"__frame__": {str(c): value[c].tolist() for c in value.columns}}
    if isinstance(value, dict):
        return {"__dict__": {k: np.asarray(v).tolist() for k, v in value.items()}}
    return np.asarray(value).tolist()


def _to_json_line(r: Any, redactor: Redactor | None = None) -> bytes:
    body = {
        "ts": r.ts,
        "request_id": r.request_id,
        "deployment": r.deployment,
        "variant": r.variant,
        "model": r.model,
        "status": r.status,
        "latency_s": r.latency_s,
        "shadow": r.shadow,
        "sticky_key": r.sticky_key,
        "error": r.error,
        "trace_id": getattr(r, "trace_id", None),
        "decode_s": getattr(r, "decode_s", 0.0),
        "inputs": _jsonable(r.inputs),
        "outputs": {k: np.asarray(v).tolist() for k, v in (r.outputs or {}).items()},
    }
    if redactor is not None:
        body = redactor.spill(body)
    return json.dumps(body, default=str).encode() + b"\n"


def _from_json_line(line: bytes) -> _Replayed:
    d = json.loads(line)
    inputs = d["inputs"]
    if isinstance(inputs, dict) and "__frame__" in inputs:
        import pandas as pd

        inputs = pd.DataFrame(inputs["__frame__"])
    elif isinstance(inputs, dict) and "__dict__" in inputs:
        inputs = {k: np.asarray(v) for k, v in inputs["__dict__"].items()}
    elif inputs is not None:
        inputs = np.asarray(inputs)
    return _Replayed(
        ts=d["ts"],
        request_id=d["request_id"],
        deployment=d["deployment"],
        variant=d["variant"],
        model=d["model"],
        status=d["status"],
        latency_s=d["latency_s"],
        shadow=d["shadow"],
        sticky_key=d["sticky_key"],
        error=d["error"],
        inputs=inputs,
        outputs={k: np.asarray(v) for k, v in d["outputs"].items()},
        trace_id=d.get("trace_id"),
        decode_s=float(d.get("decode_s", 0.0)),  # spills written before the field existed have none
    )
