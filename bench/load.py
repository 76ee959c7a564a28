"""Thin wrapper around ``wrk``: run one closed-loop load test that POSTs a fixed JSON body and parse its summary.

The Lua script (``wrk_post.lua``) sets the body and prints one ``BENCH_JSON {...}`` line from wrk's ``done``
hook, so nothing here scrapes wrk's human-readable output.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

LUA_SCRIPT = Path(__file__).resolve().parent / "wrk_post.lua"
MARKER = "BENCH_JSON "


class LoadError(RuntimeError):
    """wrk is missing, failed, or printed no summary."""


@dataclass(frozen=True)
class Level:
    """One load level: wrk threads and open connections (each connection keeps one request in flight)."""

    threads: int
    connections: int

    @property
    def label(self) -> str:
        return f"c{self.connections}"


@dataclass(frozen=True)
class LoadResult:
    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    mean_ms: float
    max_ms: float
    errors_status: int  # responses with HTTP status >= 400 (wrk's own rule)
    errors_socket: int  # connect + read + write + timeout

    @property
    def errors(self) -> int:
        return self.errors_status + self.errors_socket

    def to_dict(self) -> dict[str, float | int]:
        return {**asdict(self), "errors": self.errors}


def find_wrk(install: bool) -> str:
    """Return the wrk executable, installing Debian's ``wrk`` package with apt-get if allowed and we are root."""
    path = shutil.which("wrk")
    if path:
        return path
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk not found: installing it with `apt-get install -y wrk` ...", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        cmd = ["apt-get", "install", "-y", "-q", "wrk"]
        if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=False).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL, check=False)
            subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=False)
        path = shutil.which("wrk")
        if path:
            return path
    raise LoadError("wrk is not installed: run `apt-get install -y wrk` (Debian/Ubuntu) and try again")


def run_wrk(
    wrk: str,
    url: str,
    body_file: Path,
    level: Level,
    duration_s: float,
    *,
    cpu: int | None = None,
    timeout_s: float = 10.0,
) -> LoadResult:
    """Run wrk for ``duration_s`` seconds at ``level`` against ``url``; pin it to ``cpu`` with taskset if given."""
    argv = [
        wrk,
        f"-t{level.threads}",
        f"-c{level.connections}",
        f"-d{duration_s:g}s",
        f"--timeout={timeout_s:g}s",
        "-s",
        str(LUA_SCRIPT),
        url,
        "--",
        str(body_file),
    ]
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu), *argv]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + timeout_s + 30, check=False)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(MARKER)), None)
    if proc.returncode != 0 or line is None:
        raise LoadError(f"wrk failed (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()[-500:]}")
    raw = json.loads(line[len(MARKER) :])
    duration = raw["duration_us"] / 1e6
    return LoadResult(
        requests=raw["requests"],
        duration_s=round(duration, 3),
        rps=round(raw["requests"] / duration, 1) if duration > 0 else 0.0,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        p999_ms=raw["p999_us"] / 1000,
        mean_ms=round(raw["latency_mean_us"] / 1000, 3),
        max_ms=raw["latency_max_us"] / 1000,
        errors_status=raw["errors_status"],
        errors_socket=raw["errors_connect"] + raw["errors_read"] + raw["errors_write"] + raw["errors_timeout"],
    )
