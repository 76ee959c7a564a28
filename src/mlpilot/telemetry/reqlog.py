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
  turned into segments afterwards, and on start any spill left by a crash is replayed first.
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

from mlpilot.telemetry.columns import COMPRESSION, COMPRESSION_LEVEL, dictionary_columns, partition_tables

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
        on_segment: called with each new :class:`Segment` once it is renamed into place (the catalog), from the
            segment thread.
        on_drop: called with the number of records dropped since the last call (metrics, events).
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
    ) -> None:
        if durability not in ("fast", "strict"):
            raise ValueError("durability is 'fast' or 'strict'")
        self.root = Path(root)
        self.capacity = capacity
        self.flush_interval_s = flush_interval_s
        self.durability = durability
        self._on_segment = on_segment
        self._on_drop = on_drop
        self._queue: deque[Any] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.dropped = 0
        self.written = 0
        self._seq = 0
        # segments handed to the segment thread, oldest first (the writer thread builds the next meanwhile)
        self._pool: ThreadPoolExecutor | None = None
        self._writes: deque[Future[None]] = deque()
        self._write_failed = False
        # strict mode: records waiting for the next group commit, with their completion callbacks
        self._pending: list[tuple[Any, Callable[[], None]]] = []
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

    def append_durable(self, record: Any, done: Callable[[], None]) -> None:
        """Strict mode: ``done`` is called (from the writer thread) once the record is fsynced to the spill."""
        with self._cond:
            self._pending.append((record, done))
            self._cond.notify()

    # ------------------------------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="mlpilot-reqlog-segment")
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
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

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
                if self._on_drop is not None and self.dropped:
                    n, self.dropped = self.dropped, 0
                    self._on_drop(n)
            except Exception:  # the writer must survive a bad record or a full disk; it logs and retries
                log.exception("request-log writer failed; will retry")
                time.sleep(0.5)
            if stopping:
                return

    # ------------------------------------------------------------------------------------------ writing

    def _group_commit(self, pending: list[tuple[Any, Callable[[], None]]]) -> None:
        self._spill_dir.mkdir(parents=True, exist_ok=True)
        path = self._spill_dir / f"spill-{os.getpid()}-{threading.get_ident()}.jsonl"
        with open(path, "ab") as f:
            for record, _ in pending:
                f.write(_to_json_line(record))
            f.flush()
            os.fsync(f.fileno())
        for record, done in pending:
            self._queue.append(record)
            done()

    def _flush(self) -> None:
        q = self._queue
        batch = list(starmap(q.popleft, repeat((), len(q))))  # a C loop; appends racing with it stay queued
        if batch:
            self._write(batch)
        if self.durability == "strict":
            if not self._wait_writes():
                raise OSError("a request-log segment could not be written; its records stay in the spill")
            # everything spilled is now in segments
            for spill in self._spill_dir.glob(f"spill-{os.getpid()}-*.jsonl"):
                with contextlib.suppress(OSError):
                    spill.unlink()

    def _write(self, records: Sequence[Any]) -> None:
        # Chunk by chunk in arrival order: every pass over a chunk's records finds them in the CPU cache, and
        # the GIL goes back to the event loop between chunks. A partition that reaches _SEGMENT_ROWS is handed
        # to the segment thread right away, so encoding it (which releases the GIL) overlaps the next chunks.
        parts: dict[tuple[str, int], list[Any]] = {}
        rows: dict[tuple[str, int], int] = {}
        for i in range(0, len(records), _CHUNK):
            for key, built in partition_tables(records[i : i + _CHUNK]).items():
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
            self._collect(self._writes.popleft())
        self._writes.append(self._pool.submit(self._write_segment, key, table))

    def _collect(self, write: Future[None]) -> None:
        """Wait for one handed-over segment; a failed one is logged here (its records are lost in fast mode, kept
        in the spill in strict mode), so it never takes down the batch being built."""
        try:
            write.result()
        except Exception:
            self._write_failed = True
            log.exception("request-log segment write failed")

    def _wait_writes(self) -> bool:
        """Wait until every handed-over segment is renamed into place. False if one failed since the last call."""
        while self._writes:
            self._collect(self._writes.popleft())
        ok, self._write_failed = not self._write_failed, False
        return ok

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
            write_segment(table, tmp)
        except FileNotFoundError:  # the shipper removed the (empty, old) partition directory meanwhile
            folder.mkdir(parents=True, exist_ok=True)
            write_segment(table, tmp)
        os.replace(tmp, folder / name)
        self.written += table.num_rows
        if self._on_segment is not None:
            lo, hi = ts_span(table)
            self._on_segment(Segment(dep, folder / name, table.num_rows, lo, hi, (folder / name).stat().st_size))

    def _remove_torn_segments(self) -> None:
        """Delete half-written segments (``.seg-….tmp``) of processes that died while writing them."""
        for tmp in self.root.glob("*/dt=*/hour=*/.seg-*.tmp"):
            if not pid_alive(pid_of(tmp.name, 2)):
                with contextlib.suppress(OSError):
                    tmp.unlink()

    def _replay_spills(self) -> None:
        """Turn spill files left by a crashed process into segments (strict mode's recovery). Spills of live
        processes (other workers) are theirs."""
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
                        break  # a torn last line from the crash: everything before it was fsynced
            if records:
                self._write(records)
                if not self._wait_writes():
                    continue  # keep the spill: replayed by the next start
            spill.unlink()


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


def _to_json_line(r: Any) -> bytes:
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
