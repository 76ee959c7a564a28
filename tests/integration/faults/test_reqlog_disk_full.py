"""The request log on a full disk (a real 2 MB tmpfs that fills up): it degrades — fast mode keeps what it can in
memory and drops and counts the rest, strict mode refuses what it cannot make durable — reports the failure once,
not per record, leaves no half-written file behind, and writes again by itself once space is freed: every record
that was accepted (acknowledged) ends up in the log exactly once."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mlpilot.errors import Unavailable
from mlpilot.telemetry.query import read_records
from mlpilot.telemetry.reqlog import RequestLog
from tests.faults import fill, log_record, small_filesystem


@pytest.fixture
def small(tmp_path: Path) -> Iterator[Path]:
    with small_filesystem(tmp_path / "small") as path:
        yield path


def _until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _logged(root: Path) -> Counter[str]:
    return Counter(read_records(root, "d", columns=["request_id"]).request_id)


def _messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "mlpilot.reqlog" and text in r.getMessage()]


def test_fast_mode_keeps_drops_counts_and_recovers(small: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "mlpilot.reqlog")
    drops: list[int] = []
    log = RequestLog(small / "logs", capacity=200, flush_interval_s=0.05, on_drop=drops.append)
    log.start()
    try:
        for i in range(50):
            log.append(log_record(i))
        _until(lambda: log.written == 50)
        filler = fill(small)
        accepted = []
        for i in range(50, 1050):
            if log.append(log_record(i)):
                accepted.append(i)
            time.sleep(0.001)  # the writer flushes meanwhile: its failed segments are kept, up to 200 rows
        assert log.failures.failing
        assert log.dropped == 1000 - len(accepted) > 0  # then the queue fills up and drops, counted
        assert not list(small.rglob(".seg-*.tmp"))  # failed segments leave no half-written file on the full disk
        assert len(_messages(caplog, "cannot write a segment (No space left on device)")) == 1  # not per flush
        _until(lambda: sum(drops) == log.dropped)  # reported (metric, event) within a second
        filler.unlink()
        _until(lambda: log.written == 50 + len(accepted))  # by itself, no restart
        assert not log.failures.failing
        for i in range(2000, 2050):
            log.append(log_record(i))
    finally:
        log.stop()
    logged = _logged(small / "logs")
    assert max(logged.values()) == 1  # exactly once
    expected = {f"r{i}" for i in [*range(50), *accepted, *range(2000, 2050)]}
    assert set(logged) == expected  # every accepted record: kept in memory while the disk was full, then written
    assert len(_messages(caplog, "writing again after")) == 1
    assert sum(drops) == log.dropped + log.lost == 1000 - len(accepted)


def test_strict_mode_refuses_what_it_cannot_make_durable_and_recovers(
    small: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "mlpilot.reqlog")
    log = RequestLog(small / "logs", durability="strict", flush_interval_s=0.05)
    outcome: dict[int, BaseException | None] = {}

    def append(i: int) -> None:
        log.append_durable(log_record(i), lambda error=None, i=i: outcome.__setitem__(i, error))

    log.start()
    try:
        for i in range(20):
            append(i)
        _until(lambda: len(outcome) == 20 and log.written == 20)
        filler = fill(small)
        for i in range(20, 220):
            append(i)
            if i % 20 == 0:
                time.sleep(0.02)
        _until(lambda: len(outcome) == 220)
        refused = {i for i, e in outcome.items() if e is not None}
        assert refused and all(isinstance(outcome[i], Unavailable) for i in refused)
        assert "request log cannot write (No space left on device)" in str(outcome[max(refused)])
        assert log.lost == len(refused)
        assert not list(small.rglob(".seg-*.tmp"))
        assert len(_messages(caplog, "cannot write")) == 1
        filler.unlink()
        for i in range(300, 320):
            append(i)
        _until(lambda: len(outcome) == 240)
        assert all(outcome[i] is None for i in range(300, 320))  # acknowledged again, without a restart
    finally:
        log.stop()
    acked = {f"r{i}" for i, e in outcome.items() if e is None}
    logged = _logged(small / "logs")
    assert max(logged.values()) == 1
    assert set(logged) == acked  # every acknowledged record, exactly once; no refused one
    assert not list((small / "logs" / "_spill").glob("*.jsonl"))  # all in segments: the spill is gone


@pytest.mark.parametrize("restart", [False, True], ids=["recovers-in-place", "replayed-after-restart"])
def test_strict_mode_keeps_the_spill_while_segments_fail(tmp_path: Path, restart: bool) -> None:
    """Only the segments' directory is full (the spill is on another disk): records are acknowledged from the spill;
    a failed segment is written again once there is space, or — stopped before that — replayed by the next start,
    each record once."""
    root = tmp_path / "logs"
    root.mkdir()
    with small_filesystem(root / "d") as segments:
        log = RequestLog(root, durability="strict", flush_interval_s=0.05, capacity=100)
        outcome: dict[int, BaseException | None] = {}
        log.start()
        try:
            filler = fill(segments)
            for i in range(150):
                log.append_durable(log_record(i), lambda error=None, i=i: outcome.__setitem__(i, error))
                time.sleep(0.002)
            _until(lambda: len(outcome) == 150)
            acked = {i for i, e in outcome.items() if e is None}
            assert 100 <= len(acked) < 150  # acknowledged from the spill until `capacity` rows wait, then refused
            assert list((root / "_spill").glob("*.jsonl"))
            if not restart:
                filler.unlink()
                _until(lambda: log.written >= len(acked))
        finally:
            log.stop()
        if restart:
            assert log.written == 0 and list((root / "_spill").glob("*.jsonl"))  # kept for the next start
            filler.unlink()
            again = RequestLog(root, durability="strict")
            again.start()
            again.stop()
        logged = _logged(root)
        assert max(logged.values()) == 1
        assert set(logged) == {f"r{i}" for i in acked}
        assert not list((root / "_spill").glob("*.jsonl"))
