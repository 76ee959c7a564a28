"""The scheduler's jobs run at a lower CPU priority than serving (``server.jobs_nice``), and so do the threads they
start (DuckDB's): a monitor reading an hour of requests must not stall inference (found by bench/soak.py)."""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from mlpilot.server import _lower_priority

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="nice per thread is Linux's")


def _nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_the_jobs_thread_and_the_threads_it_starts_run_nicer() -> None:
    base = _nice()
    seen: dict[str, int] = {}

    def job() -> None:
        seen["job"] = _nice()
        child = threading.Thread(target=lambda: seen.__setitem__("child", _nice()))
        child.start()
        child.join()

    with ThreadPoolExecutor(1, initializer=_lower_priority, initargs=(10,)) as jobs:
        jobs.submit(job).result()
    assert seen == {"job": min(19, base + 10), "child": min(19, base + 10)}
    assert _nice() == base  # the serving threads keep theirs


def test_nice_zero_changes_nothing() -> None:
    base = _nice()
    with ThreadPoolExecutor(1, initializer=_lower_priority, initargs=(0,)) as jobs:
        assert jobs.submit(_nice).result() == base
