"""The request log: every served request as rows of zstd Parquet segments, written off the request path.

Request path: ``append(record)`` puts the record in a bounded in-memory queue (O(1), never blocks, never does
I/O). When the queue is full the record is dropped and counted — never silently. A background writer thread
drains the queue, turns records into columns (one row per input row, typed columns from the inputs and
outputs), and writes a segment per deployment and hour to ``<root>/<deployment>/dt=YYYY-MM-DD/hour=HH/
seg-<t>-<n>.parquet``: to a temporary name first, then renamed, so a reader never sees a partial file.

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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from mlpilot.telemetry.columns import records_table

log = logging.getLogger("mlpilot.reqlog")

SCHEMA_VERSION = 1
_CHUNK = 512  # records turned into columns between two GIL hand-offs


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
        on_segment: called from the writer thread with each new :class:`Segment` (the catalog).
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
        self.append(record)

    def append_durable(self, record: Any, done: Callable[[], None]) -> None:
        """Strict mode: ``done`` is called (from the writer thread) once the record is fsynced to the spill."""
        with self._cond:
            self._pending.append((record, done))
            self._cond.notify()

    # ------------------------------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
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
        batch = []
        q = self._queue
        while q:
            batch.append(q.popleft())
        if batch:
            self._write(batch)
        if self.durability == "strict":
            # everything spilled is now in segments
            for spill in self._spill_dir.glob(f"spill-{os.getpid()}-*.jsonl"):
                with contextlib.suppress(OSError):
                    spill.unlink()

    def _write(self, records: Iterable[Any]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        by_part: dict[tuple[str, str, str], list[Any]] = {}
        for r in records:
            t = datetime.fromtimestamp(r.ts, tz=timezone.utc)
            by_part.setdefault((r.deployment, t.strftime("%Y-%m-%d"), t.strftime("%H")), []).append(r)
        for (dep, day, hour), part in by_part.items():
            tables = []
            for i in range(0, len(part), _CHUNK):
                tables.append(records_table(part[i : i + _CHUNK]))
                time.sleep(0)  # hand the GIL to the event loop between chunks
            table = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="permissive")
            table = table.replace_schema_metadata({"mlpilot_schema_version": str(SCHEMA_VERSION)})
            folder = self.root / dep / f"dt={day}" / f"hour={hour}"
            folder.mkdir(parents=True, exist_ok=True)
            self._seq += 1
            name = f"seg-{time.time_ns()}-{os.getpid()}-{self._seq}.parquet"
            tmp = folder / f".{name}.tmp"
            pq.write_table(table, tmp, compression="zstd")
            os.replace(tmp, folder / name)
            self.written += table.num_rows
            if self._on_segment is not None:
                ts = [r.ts for r in part]
                size = (folder / name).stat().st_size
                self._on_segment(Segment(dep, folder / name, table.num_rows, min(ts), max(ts), size))

    def _remove_torn_segments(self) -> None:
        """Delete half-written segments (``.seg-….tmp``) of processes that died while writing them."""
        for tmp in self.root.glob("*/dt=*/hour=*/.seg-*.tmp"):
            if not _pid_alive(_pid_of(tmp.name, 2)):
                with contextlib.suppress(OSError):
                    tmp.unlink()

    def _replay_spills(self) -> None:
        """Turn spill files left by a crashed process into segments (strict mode's recovery). Spills of live
        processes (other workers) are theirs."""
        if not self._spill_dir.is_dir():
            return
        for spill in sorted(self._spill_dir.glob("spill-*.jsonl")):
            if _pid_alive(_pid_of(spill.name, 1)):
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
            spill.unlink()


def _pid_of(name: str, index: int) -> int:
    """The pid field of a segment (``.seg-<ns>-<pid>-<n>…``) or spill (``spill-<pid>-<thread>…``) name."""
    try:
        return int(name.lstrip(".").split("-")[index])
    except (IndexError, ValueError):
        return -1


def _pid_alive(pid: int) -> bool:
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
    )
