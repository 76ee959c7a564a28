"""Ray for tests: one local Ray per test session (started once, shut down at the end, every Ray process it left
behind killed by PID), and finding the processes of Serve replicas."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children …), from /proc."""
    parents: dict[int, int] = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        ppid = next((ln.split()[1] for ln in text.splitlines() if ln.startswith("PPid:")), None)
        if ppid is not None:
            parents[int(status.parent.name)] = int(ppid)
    out: list[int] = []
    frontier = [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        out += kids
        frontier += kids
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        state = next(
            (ln.split()[1] for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith("State:")),
            "",
        )
    except OSError:
        return False
    return state != "Z"


def replica_pids(root: int, app_prefix: str) -> list[int]:
    """Processes under process ``root`` of the running Serve replicas of the applications whose name starts with
    ``app_prefix`` (Ray names a replica's worker process ``ray::ServeReplica:<app>:<deployment>``)."""
    return sorted(p for p in descendants(root) if f"ray::ServeReplica:{app_prefix}" in cmdline(p) and alive(p))


def kill_all(pids: list[int], grace_s: float = 10.0) -> list[int]:
    """Wait up to ``grace_s`` for ``pids`` to exit, then SIGKILL the rest; returns the ones that had to be killed."""
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.2)
    killed = [p for p in pids if alive(p)]
    for p in killed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    return killed


def session_processes(server_pid: int) -> set[int]:
    """Every live process of the Ray session the server started (``ps aux | grep ray``, narrowed to this session:
    other Ray sessions may run on the machine), found by the session directory Ray names after its driver's PID
    (``/tmp/ray/session_<time>_<pid>``) in a process's command line or open files, even once reparented to init."""
    session = re.compile(rf"/session_[0-9_-]+_{server_pid}(/|\s|$)")
    found = set()
    for proc in Path("/proc").glob("[0-9]*"):
        pid = int(proc.name)
        if pid == server_pid or not alive(pid):
            continue
        try:
            seen = [cmdline(pid)] + [os.readlink(fd) for fd in (proc / "fd").iterdir()]
        except OSError:  # gone meanwhile
            continue
        if any(session.search(text) for text in seen):
            found.add(pid)
    return found


@contextlib.contextmanager
def local_ray(num_cpus: int = 2) -> Iterator[Any]:
    """A local Ray in this process (with Serve started by the executors), shut down at exit."""
    from mlpilot.executors.ray import ray, serve

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, namespace="mlpilot-tests")
    try:
        yield ray
    finally:
        started = descendants(os.getpid())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with contextlib.suppress(Exception):
                serve.shutdown()
            ray.shutdown()
        kill_all(started)
