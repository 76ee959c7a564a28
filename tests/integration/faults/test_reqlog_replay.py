"""Strict mode's crash recovery writes every acknowledged record exactly once: a process killed (SIGKILL) after a
segment was renamed into place but before its spill was deleted leaves both; the next start replays the spill and
leaves out what the segment already holds. A torn line in a spill costs only that line."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

from mlpilot.telemetry.query import read_records
from mlpilot.telemetry.reqlog import RequestLog, _to_json_line
from tests.faults import log_record

_DIES_AFTER_THE_RENAME = """
import os, signal, sys, time
from pathlib import Path
import numpy as np
from mlpilot.serving.dataplane import InferenceRecord
from mlpilot.telemetry.reqlog import RequestLog


class DiesAfterTheRename(RequestLog):
    def _write_segment(self, key, table):
        super()._write_segment(key, table)
        os.kill(os.getpid(), signal.SIGKILL)  # the segment is in place; its spill is not deleted yet


log = DiesAfterTheRename(Path(sys.argv[1]), durability="strict", flush_interval_s=3600)
log.start()
acked = []
for i in range(int(sys.argv[2])):
    record = InferenceRecord(
        ts=time.time(), request_id=f"r{i}", deployment="d", variant="v", model="m:1", status="ok", latency_s=0.001,
        inputs=np.full((1, 4), float(i)), outputs={"p": np.array([i])},
    )
    log.append_durable(record, lambda error=None, i=i: acked.append(i) if error is None else None)
while len(acked) < int(sys.argv[2]):
    time.sleep(0.01)
print(" ".join(f"r{i}" for i in acked), flush=True)  # acknowledged: fsynced in the spill
log.stop()  # the flush writes the segment, and the process dies right after the rename
print("survived", flush=True)
"""


def _logged(root: Path) -> Counter[str]:
    return Counter(read_records(root, "d", columns=["request_id"]).request_id)


def test_a_kill_between_segment_and_spill_deletion_replays_each_record_once(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    child = subprocess.run(
        [sys.executable, "-c", _DIES_AFTER_THE_RENAME, str(root), "300"], capture_output=True, text=True, timeout=60
    )
    assert child.returncode == -9, child.stderr  # SIGKILL, in the window
    acked = set(child.stdout.split()) - {"survived"}
    assert len(acked) == 300
    assert len(_logged(root)) == 300 and list((root / "_spill").glob("*.jsonl"))  # both: segment and spill
    log = RequestLog(root, durability="strict")
    log.start()  # replays the dead process's spill
    log.stop()
    logged = _logged(root)
    assert set(logged) == acked
    assert max(logged.values()) == 1  # no record twice
    assert not list((root / "_spill").glob("*.jsonl"))


def test_a_torn_line_in_a_spill_loses_only_that_line(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lines = [_to_json_line(log_record(i, width=2)) for i in range(6)]
    lines[2] = lines[2][:25]  # half a line, no newline: the next record's line is glued to it and unreadable too
    spill = root / "_spill" / f"spill-{dead.pid}-1.jsonl"
    spill.parent.mkdir(parents=True)
    spill.write_bytes(b"".join(lines))
    log = RequestLog(root, durability="strict")
    log.start()
    log.stop()
    assert set(_logged(root)) == {"r0", "r1", "r4", "r5"}
    assert not spill.exists()
