"""What the machine does to a benchmark: the server's memory, how steady its CPU is, and how much of it the
hypervisor takes (steal time), sampled in threads of the load generator's process (reading ``/proc`` never stalls
its event loop). Used by ``bench/soak.py``."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import numpy as np
from serving import tree_memory_mb

RSS_EVERY_S = 5.0
STEAL_EVERY_S = 1.0


class Sampler(threading.Thread):
    """Calls :meth:`read` every ``every_s`` seconds in a thread until :meth:`stop`; ``raw`` holds
    ``(monotonic time, *reading)``."""

    def __init__(self, every_s: float) -> None:
        super().__init__(daemon=True)
        self.every_s = every_s
        self.raw: list[tuple[Any, ...]] = []
        self._done = threading.Event()

    def read(self) -> tuple[Any, ...]:
        raise NotImplementedError

    def run(self) -> None:
        while not self._done.is_set():
            self.raw.append((time.monotonic(), *self.read()))
            self._done.wait(self.every_s)

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=10)


class RssSampler(Sampler):
    """The server tree's RSS/PSS (MB) every ``RSS_EVERY_S`` seconds."""

    def __init__(self, pid: int) -> None:
        super().__init__(RSS_EVERY_S)
        self.pid = pid

    def read(self) -> tuple[float, float]:
        return tree_memory_mb(self.pid)

    def samples(self, origin: float) -> list[dict[str, float]]:
        """The samples with their time in seconds from ``origin`` (negative: before it, e.g. during the ramp)."""
        return [{"t_s": round(t - origin, 1), "rss_mb": rss, "pss_mb": pss} for t, rss, pss in self.raw]


def machine_speed(cpu: int | None, seconds: float) -> dict[str, Any]:
    """How steady the CPU is, before anything runs: a fixed amount of pure-Python work per second on ``cpu`` (the
    server's), each second's count relative to the median. On a shared virtual machine this swings by itself;
    a server loaded to 80 % cannot keep its p99 through seconds where the CPU runs at 60 %."""
    before = os.sched_getaffinity(0)
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    counts = []
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t, n = time.perf_counter(), 0
            while time.perf_counter() - t < 1.0:
                for _ in range(10_000):
                    pass
                n += 1
            counts.append(n)
    finally:
        os.sched_setaffinity(0, before)
    rel = np.asarray(counts, dtype=float) / float(np.median(counts))
    return {
        "seconds": len(counts),
        "relative_min": round(float(rel.min()), 2),
        "relative_p10": round(float(np.percentile(rel, 10)), 2),
        "relative_max": round(float(rel.max()), 2),
        "seconds_below_80pct": int((rel < 0.8).sum()),
        "per_second": counts,
    }


def cpu_ticks(cpus: set[int] | None) -> tuple[int, int]:
    """``(steal, total)`` jiffies of ``cpus`` (all when ``None``) from ``/proc/stat``: steal is the time the
    hypervisor ran something else while this virtual CPU wanted to run."""
    names = {"cpu"} if cpus is None else {f"cpu{c}" for c in cpus}
    steal = total = 0
    with open("/proc/stat") as f:
        for line in f:
            fields = line.split()
            if fields and fields[0] in names:
                ticks = [int(x) for x in fields[1:9]]  # user nice system idle iowait irq softirq steal
                steal, total = steal + ticks[7], total + sum(ticks)
    return steal, total


class StealSampler(Sampler):
    """Steal and total jiffies of ``cpus`` every ``STEAL_EVERY_S`` seconds, so that windows of a run can be told
    apart by how much of the server's CPU the machine actually gave it."""

    def __init__(self, cpus: set[int] | None) -> None:
        super().__init__(STEAL_EVERY_S)
        self.cpus = cpus

    def read(self) -> tuple[int, int]:
        return cpu_ticks(self.cpus)

    def share(self, lo: float, hi: float) -> float | None:
        """The share of the CPUs' time stolen between monotonic times ``lo`` and ``hi`` (``None``: not sampled)."""
        inside = [r for r in self.raw if lo - STEAL_EVERY_S / 2 <= r[0] <= hi + STEAL_EVERY_S / 2]
        if len(inside) < 2:
            return None
        (_, s0, t0), (_, s1, t1) = inside[0], inside[-1]
        return round((s1 - s0) / (t1 - t0), 4) if t1 > t0 else None
