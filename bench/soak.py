"""Soak benchmark: a real ``mlpilot up`` under steady open-loop load for minutes: does memory stay flat, does latency
stay stable, and is every acknowledged request in the request log?

Run from the repository root with mlpilot's virtualenv::

    .venv/bin/python bench/soak.py                  # 10 minutes at 80 % of the measured maximum (~20 minutes)
    .venv/bin/python bench/soak.py --minutes 1      # a quick check of the whole procedure

One scikit-learn LogisticRegression (the serving benchmark's: ``make_classification(2000, 20)``) is registered and
deployed with the SDK into a fresh home, then served by ``mlpilot up`` with its defaults (adaptive batching, the
request log on in its default ``fast`` durability), pinned to CPU 0; the load generator (asyncio on uvloop, raw
HTTP/1.1 keep-alive connections) runs in this process on CPU 1.

1. **Maximum**: a closed-loop ramp (``--ramp-s``, 20 s: three equal steps at 4, 16 and 64 connections) gives the
   peak; then the **sustainable maximum**: open-loop steps (``--search-step-s``, 60 s) at 100 %, 90 %, 80 % … of
   the peak until one is kept up with, then one step 5 % higher. Kept up with (``--search p99``, the default): >=
   97 % answered and the p99 latency of the step (its first tenth aside) <= 100 ms — MLPerf Inference's server
   scenario, the highest rate whose tail meets a latency bound, over a step long enough to include the machine's
   slow seconds. ``--search p50 --search-step-s 20`` is the earlier rule (runs 5-8 in BENCHMARKS.md): the median of
   a 20 s step's last quarter <= 50 ms, which measures the capacity of a good 20 s. Closed-loop clients send in
   lockstep and fill every batch; open-loop arrivals are spread out and batch less, so the peak overstates what an
   open loop can be served at.
2. **Soak**: open loop at ``--load`` (80 %) of the sustainable maximum for ``--minutes``: request *i* is scheduled at
   ``t0 + i / rate`` whatever happened to earlier ones, and its latency is measured from that scheduled time, so a
   stall of the server (or of the client) shows as latency, never as a silently lower rate (no coordinated
   omission). Every request is OIP v2 JSON with a unique id (``x-request-id`` header, which the server records, and
   the body's ``id``); the ids of the HTTP 200 answers whose ``x-request-id`` echo matches are kept.
3. **Samples**: the server's RSS (sum of ``VmRSS`` over its process tree, from ``/proc``; psutil is not needed)
   every 5 s, and p50/p99 per window (30 s; runs shorter than 3 minutes use a sixth of the run).
4. **End**: SIGTERM, which must stop the server cleanly (within 60 s, exit 0 or uvicorn's re-raised SIGTERM, no
   traceback in its log: a graceful shutdown flushes the request log), then the request log's segments are read
   with DuckDB (``mlpilot.telemetry.query.read_records``) and every acknowledged id is looked up: missing ones are
   lost records (must be 0), ids logged more than once are duplicates (must be 0).

Bars (exit status 1 when one fails): no lost or duplicated record, a clean shutdown, no error, the target rate
sustained (answers/s, the drain after the last send included, >= 97 % of it: below, the "maximum" was not
sustainable and the run measured a growing queue), RSS growth < 5 % — the floor (lowest sample) of the last minute
against that of the first minute of the steady state (after the warm-up: 60 s, at most a quarter of the run): a leak
raises the floor, a scheduled job's working memory comes and goes (the peak is reported beside it) — and no p99
drift: the median of the window p99s of the steady state's second half <= 1.5 x its first half's (a trend — a leak,
a growing queue — not one window at the mercy of one hiccup of the machine; the best and worst windows are reported
beside it), compared over the windows in which the hypervisor took <= 2 % of the server's CPU (steal time, sampled
every second; the drift over all windows is reported too). Results: ``--json``
(default ``bench/results/soak.json``) and a markdown summary beside it (``.md``, also printed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import json
import math
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from machine import RSS_EVERY_S, RssSampler, StealSampler, machine_speed
from serving import (
    LOAD_CPU,
    LOGS_DIR,
    MLPILOT_VENV,
    RESULTS,
    SERVER_CPU,
    Launch,
    Running,
    cpu_model,
    free_port,
    http,
    pinning_available,
    predicted_class,
    tree_cpu_ticks,
    wait_quiet,
    wait_ready,
)

DEPLOYMENT = "lr"
RAMP_CONNECTIONS = (4, 16, 64)
MAX_WARMUP_S = 60.0
RSS_GROWTH_BAR = 0.05
RSS_FLOOR_S = 60.0  # RSS growth compares the lowest sample of the first and of the last minute of the steady state
P99_RATIO_BAR = 1.5
#: a window in which the hypervisor took at most this share of the server's CPU (steal time) is "clean": the p99 bar
#: compares clean windows, and needs at least ``MIN_CLEAN_WINDOWS`` of them in each half of the steady state
STEAL_CLEAN = 0.02
MIN_CLEAN_WINDOWS = 3
SUSTAINED = 0.97  # the achieved rate (answers / s, the final drain included) must be at least this share of the target
STOP_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 30.0
READY_TIMEOUT_S = 120.0
#: the search for the sustainable maximum: shares of the closed-loop peak tried in turn (then 5 % above the first
#: sustained one), the median-latency bar of a step's last quarter, and a rest after each step
SEARCH_SHARES = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)
SEARCH_P50_BAR_MS = 50.0
#: ``--search p99`` (MLPerf's server scenario: the highest rate whose p99 meets a latency bound): the bound, over the
#: whole step but its first tenth
SEARCH_P99_BAR_MS = 100.0
SEARCH_REST_S = 5.0

# --------------------------------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Payloads:
    rows: np.ndarray  # the input rows the requests cycle through
    expected: np.ndarray  # model.predict of each row
    inputs: list[bytes]  # each row's ``"inputs":[...]`` member of the V2 JSON body, encoded once


def setup_home(home: Path) -> tuple[Payloads, dict[str, Any]]:
    """Train the serving benchmark's LR, register it (the in-memory object) and deploy it with the SDK."""
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    from mlpilot import Client

    x, y = make_classification(n_samples=2000, n_features=20, random_state=0)
    model = LogisticRegression(max_iter=1000).fit(x, y)
    with Client(home=home) as client:
        version = client.register_model(DEPLOYMENT, model, sample=x[:5])
        deployment = client.deploy(DEPLOYMENT, version.ref)
        runtime = deployment.spec.variants[0].runtime.model_dump(mode="json")
    rows = x[:256]
    inputs = [
        b'"inputs":'
        + json.dumps(
            [{"name": "input-0", "datatype": "FP64", "shape": [1, len(row)], "data": row.tolist()}],
            separators=(",", ":"),
        ).encode()
        for row in rows
    ]
    info = {"model": version.ref, "runtime": runtime}
    return Payloads(rows=rows, expected=model.predict(rows), inputs=inputs), info


def request_bytes(host: str, rid: str, inputs: bytes) -> bytes:
    """One OIP v2 infer request with the id ``rid`` in the body and in ``x-request-id`` (what the server logs)."""
    body = b'{"id":"' + rid.encode() + b'",' + inputs + b"}"
    head = (
        f"POST /v2/models/{DEPLOYMENT}/infer HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"x-request-id: {rid}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


# --------------------------------------------------------------------------------------------------- HTTP client


class Connection:
    """One keep-alive HTTP/1.1 connection: one request in flight at a time."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def exchange(self, payload: bytes) -> tuple[int, bytes, bytes]:
        """Send ``payload``, return (status, the x-request-id echoed, body); raises OSError/IncompleteReadError."""
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(payload)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length, echoed = 0, b""
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"x-request-id":
                echoed = value.strip()
        body = await self.reader.readexactly(length) if length else b""
        return status, echoed, body

    def reset(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclass
class Log:
    """Per-request outcome arrays of the open-loop run, indexed by request number."""

    sched: np.ndarray  # scheduled send time, s from the run's start
    latency: np.ndarray  # answer time - scheduled time, s (NaN: no answer)
    lag: np.ndarray  # send time - scheduled time, s: waiting for a free connection or for the client's CPU
    status: np.ndarray  # HTTP status; 0 = connection error, -1 = never sent, -2 = answer with another request id
    t0: float = 0.0  # time.monotonic() of the run's start (time.monotonic, not uvloop's millisecond loop clock)
    t0_wall: float = 0.0  # the same moment as time.time() (to match the server's log)

    @classmethod
    def empty(cls, n: int) -> Log:
        return cls(
            sched=np.full(n, np.nan),
            latency=np.full(n, np.nan),
            lag=np.full(n, np.nan),
            status=np.full(n, -1, dtype=np.int16),
        )


async def closed_loop(port: int, host: str, payloads: Payloads, connections: int, seconds: float) -> float:
    """Completed requests/s with ``connections`` each sending its next request when the previous answer arrives."""
    deadline = time.monotonic() + seconds
    done = [0]

    async def worker(w: int) -> None:
        conn, i = Connection(port), 0
        while time.monotonic() < deadline:
            payload = request_bytes(host, f"ramp-c{connections}-{w}-{i}", payloads.inputs[i % len(payloads.inputs)])
            i += 1
            try:
                if (await conn.exchange(payload))[0] == 200:
                    done[0] += 1
            except (OSError, asyncio.IncompleteReadError):
                conn.reset()
        conn.reset()

    start = time.monotonic()
    await asyncio.gather(*(worker(w) for w in range(connections)))
    return done[0] / (time.monotonic() - start)


async def open_loop(
    port: int, host: str, payloads: Payloads, rate: float, seconds: float, connections: int, prefix: str = "soak"
) -> Log:
    """Send ``rate`` requests/s for ``seconds`` on schedule over ``connections`` connections (requests wait in a
    queue when all are busy; their latency still counts from their scheduled time). Request ids are
    ``<prefix>-<n>``."""
    n = int(rate * seconds)
    log = Log.empty(n)
    queue: asyncio.Queue[int | None] = asyncio.Queue()
    t0 = log.t0 = time.monotonic() + 0.1
    log.t0_wall = time.time() + 0.1
    inputs = payloads.inputs

    async def worker() -> None:
        conn = Connection(port)
        while True:
            i = await queue.get()
            if i is None:
                break
            rid = f"{prefix}-{i:09d}"
            payload = request_bytes(host, rid, inputs[i % len(inputs)])
            sched = t0 + i / rate
            log.lag[i] = time.monotonic() - sched
            try:
                status, echoed, _ = await conn.exchange(payload)
                log.latency[i] = time.monotonic() - sched
                log.status[i] = status if echoed == rid.encode() else -2
            except (OSError, asyncio.IncompleteReadError):
                log.status[i] = 0
                conn.reset()
        conn.reset()

    workers = [asyncio.ensure_future(worker()) for _ in range(connections)]
    i = 0
    while i < n:
        due = min(n, int((time.monotonic() - t0) * rate) + 1)
        while i < due:
            log.sched[i] = i / rate
            queue.put_nowait(i)
            i += 1
        # at least 1 ms: the event loop's timers have millisecond resolution (uvloop rounds a shorter sleep to 0, and
        # the loop would spin, eating the client's core); a request leaves at most ~1 ms after its scheduled time,
        # and that delay is in its latency (the report's send delay)
        await asyncio.sleep(max(0.001, t0 + i / rate - time.monotonic()))
    for _ in workers:
        queue.put_nowait(None)
    _, pending = await asyncio.wait(workers, timeout=DRAIN_TIMEOUT_S)
    for w in pending:
        w.cancel()
    return log


def sustainable_maximum(
    port: int, host: str, payloads: Payloads, peak: float, plan: Plan, steal: StealSampler
) -> dict[str, Any]:
    """The highest open-loop rate the server keeps up with: steps of ``plan.search_step_s`` at 100 %, 90 %, …
    of the closed-loop ``peak`` until one is sustained, then one step halfway back up. A step is sustained when
    its answers keep pace (>= 97 % of the rate, the drain included) and its latency stays bounded: with
    ``plan.search == "p99"`` its p99 (the first tenth aside) <= ``SEARCH_P99_BAR_MS``, a tail bound as in
    MLPerf's server scenario; with ``"p50"`` the median of its last quarter <= ``SEARCH_P50_BAR_MS`` (a growing
    queue moves the median; a hiccup moves only the tail). Closed-loop connections send in lockstep and fill every
    batch; spread-out arrivals make smaller batches, so the closed-loop peak overstates what an open loop can be
    served at."""
    steps: list[dict[str, Any]] = []

    def step(rate: float) -> bool:
        prefix = f"search{len(steps)}"
        log = asyncio.run(open_loop(port, host, payloads, rate, plan.search_step_s, plan.connections, prefix))
        load_s = time.monotonic() - log.t0
        ok = log.status == 200
        if plan.search == "p99":
            name, bar, q, since = "p99", SEARCH_P99_BAR_MS, 99, 0.1
        else:
            name, bar, q, since = "last-quarter p50", SEARCH_P50_BAR_MS, 50, 0.75
        value = percentile_ms(log.latency[ok & (log.sched >= since * plan.search_step_s)], q)
        achieved = int(ok.sum()) / load_s
        kept = achieved >= SUSTAINED * rate and value is not None and value <= bar
        stolen = steal.share(log.t0, log.t0 + plan.search_step_s)
        steps.append({"rps": round(rate, 1), "achieved_rps": round(achieved, 1), "latency": name, "latency_ms": value,
                      "bar_ms": bar, "sustained": kept, "steal": stolen})  # fmt: skip
        print(f"  open loop {rate:,.0f} req/s: {achieved:,.0f} answered/s, {name} {value} ms (bar {bar:.0f}), "
              f"steal {stolen}: {'sustained' if kept else 'not sustained'}", flush=True)  # fmt: skip
        time.sleep(SEARCH_REST_S)  # the queue of a failed step drains before the next one
        return kept

    best = None
    for share in SEARCH_SHARES:
        if step(share * peak):
            best = share
            break
    if best is None:
        raise RuntimeError(f"no open-loop rate down to {SEARCH_SHARES[-1]:.0%} of the peak was sustained")
    if best < SEARCH_SHARES[0] and step((best + 0.05) * peak):
        best += 0.05
    return {"max_rps": round(best * peak, 1), "share_of_peak": round(best, 3), "steps": steps}


def metric_value(metrics: str, name: str) -> float | None:
    total, seen = 0.0, False
    for line in metrics.splitlines():
        if line.startswith(name) and (len(line) == len(name) or line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
            seen = True
    return total if seen else None


def gc_pauses(metrics: str) -> dict[str, dict[str, float]]:
    """Per generation of the server's garbage collector: collections, their total seconds and how many took more
    than 50 ms (``mlpilot_gc_pause_seconds``)."""
    out: dict[str, dict[str, float]] = {}
    for line in metrics.splitlines():
        if not line.startswith("mlpilot_gc_pause_seconds_") or "generation=" not in line:
            continue
        name, value = line.rsplit(" ", 1)
        gen = name.split('generation="', 1)[1].split('"', 1)[0]
        g = out.setdefault(gen, {"count": 0.0, "sum_s": 0.0, "upto_50ms": 0.0})
        if name.startswith("mlpilot_gc_pause_seconds_count"):
            g["count"] = float(value)
        elif name.startswith("mlpilot_gc_pause_seconds_sum"):
            g["sum_s"] = round(float(value), 3)
        elif 'le="0.05"' in name:
            g["upto_50ms"] = float(value)
    for g in out.values():
        g["over_50ms"] = g["count"] - g.pop("upto_50ms")
    return out


# --------------------------------------------------------------------------------------------------- analysis


def percentile_ms(values: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values, q)) * 1000, 2) if len(values) else None


def windows(log: Log, window_s: float, warmup_s: float, seconds: float) -> list[dict[str, Any]]:
    """p50/p99 (of answered requests, by scheduled time) and counts per window."""
    out = []
    for k in range(math.ceil(seconds / window_s - 1e-9)):
        lo, hi = k * window_s, min((k + 1) * window_s, seconds)
        sel = (log.sched >= lo) & (log.sched < hi)
        lat = log.latency[sel & (log.status == 200)]
        out.append(
            {
                "start_s": round(lo, 1),
                "end_s": round(hi, 1),
                "warmup": lo < warmup_s,
                "requests": int(sel.sum()),
                "ok": len(lat),
                "errors": int((sel & (log.status != 200)).sum()),
                "p50_ms": percentile_ms(lat, 50),
                "p99_ms": percentile_ms(lat, 99),
                "max_ms": round(float(lat.max()) * 1000, 2) if len(lat) else None,
                "client_lag_p99_ms": percentile_ms(log.lag[sel & ~np.isnan(log.lag)], 99),
            }
        )
    return out


def check_log(home: Path, log: Log) -> dict[str, Any]:
    """Look up every acknowledged id in the request log's segments (the server has stopped: all are sealed)."""
    from mlpilot.telemetry.query import read_records

    logged = read_records(home / "logs", DEPLOYMENT, columns=["request_id"])["request_id"]
    ours = logged[logged.str.startswith("soak-")]
    numbers = ours.str.slice(5).astype(np.int64).to_numpy()
    counts = np.bincount(numbers, minlength=len(log.status))
    acked = log.status == 200
    return {
        "log_rows": len(logged),
        "log_rows_of_the_soak": len(ours),
        "acknowledged": int(acked.sum()),
        "lost": int((acked & (counts[: len(acked)] == 0)).sum()),
        "duplicates": int((counts > 1).sum()),
        "logged_not_acknowledged": int((~acked & (counts[: len(acked)] > 0)).sum()),
        "lost_examples": [f"soak-{i:09d}" for i in np.flatnonzero(acked & (counts[: len(acked)] == 0))[:10]],
    }


# --------------------------------------------------------------------------------------------------- run


@dataclass
class Plan:
    minutes: float
    load: float
    ramp_s: float
    connections: int
    pin: bool
    search_step_s: float = 60.0
    search: str = "p99"
    max_rps: float | None = None
    server_env: dict[str, str] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.minutes * 60

    @property
    def window_s(self) -> float:
        return 30.0 if self.seconds >= 180 else self.seconds / 6

    @property
    def warmup_s(self) -> float:
        """60 s (at most a quarter of the run), rounded up to whole windows."""
        return math.ceil(min(MAX_WARMUP_S, self.seconds / 4) / self.window_s - 1e-9) * self.window_s


def soak(plan: Plan, workdir: Path) -> dict[str, Any]:
    report: dict[str, Any] = {"plan": {**plan.__dict__, "window_s": plan.window_s, "warmup_s": plan.warmup_s}}
    home = workdir / "home"
    payloads, info = setup_home(home)
    report["server_info"] = info
    port = free_port()
    host = f"127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLPILOT_")}
    env.update(plan.server_env)  # --server-env: settings of the server under test (a diagnostic run)
    env["PYTHONUNBUFFERED"] = "1"
    argv = [str(MLPILOT_VENV / "bin" / "mlpilot"), "--home", str(home), "up", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--no-grpc"]
    LOGS_DIR.mkdir(parents=True, exist_ok=True)
    running = Running(Launch(argv=argv, ready_path="/v2/health/ready", env=env), LOGS_DIR / "soak-server.log",
                      SERVER_CPU if plan.pin else None)  # fmt: skip
    sampler: RssSampler | None = None
    steal = StealSampler({SERVER_CPU} if plan.pin else None)
    stopped = False
    try:
        base = f"http://{host}"
        report["startup_s"] = round(wait_ready(running, base + "/v2/health/ready", READY_TIMEOUT_S), 2)
        print(f"  server ready (pid {running.pid})", flush=True)
        probe = request_bytes(host, "probe-0", payloads.inputs[0]).split(b"\r\n\r\n", 1)[1]
        got = predicted_class(*http("POST", f"{base}/v2/models/{DEPLOYMENT}/infer", probe, timeout=30.0))
        if got != int(payloads.expected[0]):
            raise RuntimeError(f"wrong prediction: got class {got}, model.predict says {payloads.expected[0]}")
        if plan.pin:
            os.sched_setaffinity(0, {LOAD_CPU})
        sampler = RssSampler(running.pid)
        sampler.start()
        steal.start()

        ramp = []
        step_s = plan.ramp_s / len(RAMP_CONNECTIONS)
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        wall0 = time.monotonic()
        for c in RAMP_CONNECTIONS:
            rps = asyncio.run(closed_loop(port, host, payloads, c, step_s))
            ramp.append({"connections": c, "rps": round(rps, 1)})
            print(f"  ramp c{c}: {rps:,.0f} req/s", flush=True)
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        client_cpu = (cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime) / (time.monotonic() - wall0)
        peak = max(r["rps"] for r in ramp)
        report["ramp"] = {"steps": ramp, "max_rps": peak, "client_cpu_share": round(client_cpu, 2)}
        print(f"  closed-loop peak {peak:,.0f} req/s (client used {client_cpu:.0%} of a core)", flush=True)
        if plan.max_rps is None:
            search = sustainable_maximum(port, host, payloads, peak, plan, steal)
        else:  # --max-rps: a diagnostic run at a known rate
            search = {"max_rps": plan.max_rps, "share_of_peak": round(plan.max_rps / peak, 3), "steps": []}
        max_rps = search["max_rps"]
        rate = plan.load * max_rps
        report["sustainable"] = search
        report["target_rps"] = round(rate, 1)
        print(f"  sustainable maximum {max_rps:,.0f} req/s ({max_rps / peak:.0%} of the peak); open loop at "
              f"{rate:,.0f} req/s for {plan.seconds:.0f} s", flush=True)  # fmt: skip

        gc.collect()
        gc.freeze()  # the arrays and the setup are permanent: keep the collector's pauses out of the latencies
        server_ticks = tree_cpu_ticks(running.pid)
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        log = asyncio.run(open_loop(port, host, payloads, rate, plan.seconds, plan.connections))
        load_s = time.monotonic() - log.t0
        server_cpu = (tree_cpu_ticks(running.pid) - server_ticks) / os.sysconf("SC_CLK_TCK") / load_s
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        soak_client_cpu = (cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime) / load_s
        metrics = http("GET", f"{base}/metrics", timeout=10.0)[1].decode()
        sampler.stop()
        steal.stop()

        t_stop = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(running.pid, signal.SIGTERM)
        try:
            code: int | None = running.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            code = None
        shutdown_s = round(time.monotonic() - t_stop, 2)
        running.stop()  # SIGKILLs whatever is left (nothing after a clean exit)
        stopped = True
        server_log = running.log.read_text(errors="replace")
        # uvicorn re-raises the SIGTERM it caught once its graceful shutdown is done: exit -15 is a clean stop too
        clean = code in (0, -signal.SIGTERM) and "Traceback" not in server_log
        report["shutdown"] = {"exit_code": code, "seconds": shutdown_s, "clean": clean}

        sent = int((log.status != -1).sum())
        ok = log.status == 200
        errors = {
            "http": int(((log.status >= 300) | ((log.status > 0) & (log.status < 200))).sum()),
            "connection": int((log.status == 0).sum()),
            "wrong_request_id": int((log.status == -2).sum()),
            "unanswered": int((np.isnan(log.latency) & (log.status != 0)).sum()),
        }
        wins = windows(log, plan.window_s, plan.warmup_s, plan.seconds)
        for w in wins:
            w["steal"] = steal.share(log.t0 + w["start_s"], log.t0 + w["end_s"])
        steady = [w for w in wins if not w["warmup"] and w["p99_ms"] is not None]
        samples = sampler.samples(log.t0)
        during = [s for s in samples if 0 <= s["t_s"] <= plan.seconds + RSS_EVERY_S / 2]
        at_steady = next((s for s in during if s["t_s"] >= plan.warmup_s), None)
        # growth = what stays: the floor (lowest sample) of the first and of the last RSS_FLOOR_S of the steady
        # state. A leak or a cache that keeps growing raises the floor; a scheduled job's working memory (a monitor
        # reading its sample) comes and goes, and shows as the peak, reported beside it
        first = [s["rss_mb"] for s in during if plan.warmup_s <= s["t_s"] < plan.warmup_s + RSS_FLOOR_S]
        last = [s["rss_mb"] for s in during if s["t_s"] >= max(plan.seconds - RSS_FLOOR_S, plan.warmup_s)]
        rss_start, rss_end = (min(first) if first else None), (min(last) if last else None)
        growth = (rss_end - rss_start) / rss_start if rss_start and rss_end else None
        steady_rss = [s for s in during if s["t_s"] >= plan.warmup_s]
        rss_peak = max(steady_rss, key=lambda s: s["rss_mb"]) if steady_rss else None
        # stability = no drift: the median window p99 of the steady state's second half against its first half's
        # (a single window is at the mercy of one hiccup of the machine; a leak or a growing queue is a trend)
        half = len(steady) // 2
        p99s = [w["p99_ms"] for w in steady]
        first_half = float(np.median(p99s[:half])) if half else None
        second_half = float(np.median(p99s[half:])) if half else None
        ratio = second_half / first_half if first_half and second_half is not None else None
        # the same over the clean windows (the hypervisor took <= STEAL_CLEAN of the server's CPU): what the
        # software does when it gets the CPU it was measured with; the halves split the steady state by time
        clean_wins = [w for w in steady if w["steal"] is not None and w["steal"] <= STEAL_CLEAN]
        mid = (steady[0]["start_s"] + steady[-1]["end_s"]) / 2 if steady else 0.0
        c1 = [w["p99_ms"] for w in clean_wins if w["start_s"] < mid]
        c2 = [w["p99_ms"] for w in clean_wins if w["start_s"] >= mid]
        enough = min(len(c1), len(c2)) >= MIN_CLEAN_WINDOWS
        clean_ratio = float(np.median(c2)) / float(np.median(c1)) if enough else None
        lat_ok = log.latency[ok]
        report["soak"] = {
            "seconds": round(load_s, 1),
            "scheduled": len(log.status),
            "sent": sent,
            "ok": int(ok.sum()),
            "achieved_rps": round(int(ok.sum()) / load_s, 1),
            "errors": errors,
            "p50_ms": percentile_ms(lat_ok, 50),
            "p99_ms": percentile_ms(lat_ok, 99),
            "p999_ms": percentile_ms(lat_ok, 99.9),
            "client_lag_p50_ms": percentile_ms(log.lag[~np.isnan(log.lag)], 50),
            "client_lag_p99_ms": percentile_ms(log.lag[~np.isnan(log.lag)], 99),
            "server_cpu_share": round(server_cpu, 2),
            "client_cpu_share": round(soak_client_cpu, 2),
            "log_dropped_metric": metric_value(metrics, "mlpilot_log_dropped_total"),
            "gc_pauses": gc_pauses(metrics),
            "windows": wins,
            "t0_unix": round(log.t0_wall, 3),
            "p99_per_second_ms": [
                percentile_ms(log.latency[ok & (log.sched >= k) & (log.sched < k + 1)], 99)
                for k in range(math.ceil(plan.seconds))
            ],
            "steal_per_second": [steal.share(log.t0 + k, log.t0 + k + 1) for k in range(math.ceil(plan.seconds))],
            "steal": steal.share(log.t0, log.t0 + plan.seconds),
        }
        report["rss"] = {
            "samples": samples,
            "steady_start_mb": rss_start,
            "steady_start_t_s": at_steady["t_s"] if at_steady else None,
            "end_mb": rss_end,
            "growth": round(growth, 4) if growth is not None else None,
            "steady_peak_mb": rss_peak["rss_mb"] if rss_peak else None,
            "steady_peak_t_s": rss_peak["t_s"] if rss_peak else None,
        }
        report["log"] = check_log(home, log)
        report["p99_stability"] = {
            "first_steady_p99_ms": steady[0]["p99_ms"] if steady else None,
            "last_steady_p99_ms": steady[-1]["p99_ms"] if steady else None,
            "first_half_median_p99_ms": round(first_half, 2) if first_half is not None else None,
            "second_half_median_p99_ms": round(second_half, 2) if second_half is not None else None,
            "ratio": round(ratio, 3) if ratio is not None else None,
            "best_window_p99_ms": min(p99s) if p99s else None,
            "worst_window_p99_ms": max(p99s) if p99s else None,
            "clean_windows": [len(c1), len(c2)],
            "clean_first_half_median_p99_ms": round(float(np.median(c1)), 2) if c1 else None,
            "clean_second_half_median_p99_ms": round(float(np.median(c2)), 2) if c2 else None,
            "clean_ratio": round(clean_ratio, 3) if clean_ratio is not None else None,
            "worst_clean_window_p99_ms": max(c1 + c2) if c1 + c2 else None,
        }
        achieved = report["soak"]["achieved_rps"]
        report["bars"] = {
            "rate_sustained": achieved >= SUSTAINED * rate,
            "no_lost_records": report["log"]["lost"] == 0,
            "no_duplicates": report["log"]["duplicates"] == 0,
            "clean_shutdown": report["shutdown"]["clean"],
            "no_errors": sum(errors.values()) == 0,
            "rss_growth_below_5pct": growth is not None and growth < RSS_GROWTH_BAR,
            "p99_stable": clean_ratio is not None and clean_ratio <= P99_RATIO_BAR,
        }
        report["status"] = "ok" if all(report["bars"].values()) else "bar failed"
    except Exception as exc:  # recorded in the report; the server is stopped below either way
        report["status"] = f"failed: {exc}"
        print(f"  FAILED: {exc}", flush=True)
    finally:
        gc.unfreeze()
        if sampler is not None and sampler.is_alive():
            sampler.stop()
        if steal.is_alive():
            steal.stop()
        if not stopped:
            running.stop()
    return report


# --------------------------------------------------------------------------------------------------- report


def _f(value: Any, fmt: str = "{:,.1f}") -> str:
    return "-" if value is None else fmt.format(value)


def render_markdown(report: dict[str, Any]) -> str:
    meta, plan = report["meta"], report["plan"]
    lines = [
        "# Soak benchmark",
        "",
        f"- date: {meta['date']}; machine: {meta['cpu']} ({meta['cpus']} CPUs), Python {meta['python']}",
        f"- pinning: {meta['pinning']}; status: **{report.get('status')}**",
        "- server: `mlpilot up` defaults (adaptive batching, request log on, durability fast)"
        + "".join(f", {k}={v}" for k, v in plan.get("server_env", {}).items())
        + f"; model {_f(report.get('server_info', {}).get('model'), '{}')}",
        f"- run: {plan['minutes']:g} min open loop at {plan['load']:.0%} of the sustainable maximum over "
        f"{plan['connections']} connections; windows of {plan['window_s']:g} s, the first {plan['warmup_s']:g} s "
        "are warm-up; latency from the scheduled send time",
    ]
    if "soak" not in report:
        return "\n".join([*lines, ""])
    s, rss, log, st = report["soak"], report["rss"], report["log"], report["p99_stability"]
    ramp = ", ".join(f"c{r['connections']} {r['rps']:,.0f}" for r in report["ramp"]["steps"])
    growth = _f(rss["growth"] * 100 if rss["growth"] is not None else None, "{:+.2f} %")
    lines += [
        "",
        "| measure | value | bar |",
        "|---|---:|---|",
        f"| closed-loop peak (ramp: {ramp} req/s) | {report['ramp']['max_rps']:,.0f} req/s | |",
        f"| sustainable maximum (open loop, {_search(report['sustainable'], plan)}) | "
        f"{report['sustainable']['max_rps']:,.0f} req/s ({report['sustainable']['share_of_peak']:.0%} of the peak) | |",
        f"| target rate | {report['target_rps']:,.0f} req/s | |",
        f"| achieved rate (HTTP 200 / s, the drain after the last send included) | {s['achieved_rps']:,.0f} req/s | "
        f">= 97 % of the target: {_ok(report['bars']['rate_sustained'])} |",
        f"| requests scheduled / answered 200 | {s['scheduled']:,} / {s['ok']:,} | |",
        f"| latency p50 / p99 / p99.9 | {_f(s['p50_ms'], '{:.2f}')} / {_f(s['p99_ms'], '{:.2f}')} / "
        f"{_f(s['p999_ms'], '{:.2f}')} ms | |",
        f"| RSS floor (lowest sample), first → last minute of the steady state | {_f(rss['steady_start_mb'])} → "
        f"{_f(rss['end_mb'])} MB ({growth}) | < +5 %: {_ok(report['bars']['rss_growth_below_5pct'])} |",
        f"| RSS peak in the steady state (a scheduled job's working memory comes and goes) | "
        f"{_f(rss.get('steady_peak_mb'))} MB at t={_f(rss.get('steady_peak_t_s'), '{:g}')} s | |",
        f"| p99 drift, every steady window: median window p99, first → second half | "
        f"{_f(st.get('first_half_median_p99_ms'), '{:.2f}')} → {_f(st.get('second_half_median_p99_ms'), '{:.2f}')} ms"
        f" (x{_f(st['ratio'], '{:.2f}')}) | |",
        f"| p99 drift, clean windows (steal <= {STEAL_CLEAN:.0%}; {st['clean_windows'][0]} + "
        f"{st['clean_windows'][1]} of them, worst {_f(st.get('worst_clean_window_p99_ms'), '{:.0f}')} ms) | "
        f"{_f(st.get('clean_first_half_median_p99_ms'), '{:.2f}')} → "
        f"{_f(st.get('clean_second_half_median_p99_ms'), '{:.2f}')} ms (x{_f(st.get('clean_ratio'), '{:.2f}')}) | "
        f"<= x1.5, >= {MIN_CLEAN_WINDOWS} per half: {_ok(report['bars']['p99_stable'])} |",
        f"| steal: share of the server's CPU the hypervisor took during the soak (max of a second) | "
        f"{_f(_pct(s.get('steal')), '{}')} ({_f(_pct(_max(s.get('steal_per_second', []))), '{}')}) | |",
        f"| p99 spread: best / worst steady window (first → last: {_f(st['first_steady_p99_ms'], '{:.0f}')} → "
        f"{_f(st['last_steady_p99_ms'], '{:.0f}')} ms) | {_f(st.get('best_window_p99_ms'), '{:.0f}')} / "
        f"{_f(st.get('worst_window_p99_ms'), '{:.0f}')} ms | |",
        f"| acknowledged ids missing from the request log | {log['lost']:,} of {log['acknowledged']:,} | 0: "
        f"{_ok(report['bars']['no_lost_records'])} |",
        f"| ids logged more than once | {log['duplicates']:,} | 0: {_ok(report['bars']['no_duplicates'])} |",
        f"| errors (HTTP / connection / wrong id / unanswered) | {s['errors']['http']} / {s['errors']['connection']}"
        f" / {s['errors']['wrong_request_id']} / {s['errors']['unanswered']} | 0: {_ok(report['bars']['no_errors'])} |",
        f"| shutdown (SIGTERM) | exit {report['shutdown']['exit_code']} in {report['shutdown']['seconds']} s | "
        f"clean: {_ok(report['bars']['clean_shutdown'])} |",
        f"| request-log records dropped (server metric) | {_f(s['log_dropped_metric'], '{:,.0f}')} | |",
        f"| CPU speed of the server's core before the run, per second relative to its median (min / p10; "
        f"seconds < 0.8) | {_speed(report.get('machine_speed'))} | |",
        f"| full garbage collections in the server (count, total, > 50 ms; since its start) | "
        f"{_gc(s.get('gc_pauses', {}).get('2'))} | |",
        f"| CPU of the server / of the load generator (soak; ramp: {report['ramp']['client_cpu_share']:.0%}) | "
        f"{s['server_cpu_share']:.0%} / {s['client_cpu_share']:.0%} of a core | |",
        f"| send delay p50 / p99 (waiting for a free connection or the client; in the latency) | "
        f"{_f(s['client_lag_p50_ms'], '{:.2f}')} / {_f(s['client_lag_p99_ms'], '{:.2f}')} ms | |",
        "",
        "| window | requests | 200 | errors | p50 ms | p99 ms | max ms | steal |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for w in s["windows"]:
        label = f"{w['start_s']:g}-{w['end_s']:g} s" + (" (warm-up)" if w["warmup"] else "")
        lines.append(
            f"| {label} | {w['requests']:,} | {w['ok']:,} | {w['errors']} | {_f(w['p50_ms'], '{:.2f}')} | "
            f"{_f(w['p99_ms'], '{:.2f}')} | {_f(w['max_ms'], '{:.2f}')} | {_f(_pct(w.get('steal')), '{}')} |"
        )
    lines += ["", "RSS samples (s: MB): " + ", ".join(f"{x['t_s']:g}: {x['rss_mb']:.0f}" for x in rss["samples"]), ""]
    return "\n".join(lines)


def _max(xs: list[float | None]) -> float | None:
    return max((x for x in xs if x is not None), default=None)


def _pct(x: float | None) -> str | None:
    return None if x is None else f"{x:.1%}"


def _speed(speed: dict[str, Any] | None) -> str:
    if not speed:
        return "-"
    return (f"{speed['relative_min']:.2f} / {speed['relative_p10']:.2f}; {speed['seconds_below_80pct']} of "
            f"{speed['seconds']} s")  # fmt: skip


def _search(search: dict[str, Any], plan: dict[str, Any]) -> str:
    if not search["steps"]:
        return "not searched: given with --max-rps"
    rule = "p99 <= 100 ms" if plan.get("search", "p50") == "p99" else "last-quarter p50 <= 50 ms"
    steps = ", ".join(f"{st['rps']:,.0f} {'ok' if st['sustained'] else 'no'}" for st in search["steps"])
    return f"{plan.get('search_step_s', 20):g} s steps, sustained when {rule}: {steps}"


def _gc(g: dict[str, float] | None) -> str:
    return "-" if not g else f"{g['count']:,.0f}, {g['sum_s']:.2f} s, {g['over_50ms']:,.0f}"


def _ok(flag: bool) -> str:
    return "pass" if flag else "**FAIL**"


# --------------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0, help="length of the open-loop run (default 10)")
    p.add_argument("--load", type=float, default=0.8, help="open-loop rate as a fraction of the maximum (0.8)")
    p.add_argument("--ramp-s", type=float, default=20.0, help="length of the closed-loop ramp (20 s)")
    p.add_argument("--connections", type=int, default=64, help="connections of the open-loop run (64)")
    p.add_argument("--search", choices=("p99", "p50"), default="p99",
                   help=f"what a sustained search step is: p99 <= {SEARCH_P99_BAR_MS:.0f} ms (default) or the last "
                   f"quarter's p50 <= {SEARCH_P50_BAR_MS:.0f} ms (runs 5-8)")  # fmt: skip
    p.add_argument("--search-step-s", type=float, default=60.0, help="length of each step of the search (60 s)")
    p.add_argument("--max-rps", type=float, default=None,
                   help="skip the search and take this as the sustainable maximum (a diagnostic run)")  # fmt: skip
    p.add_argument("--server-env", action="append", default=[], metavar="MLPILOT_X=V",
                   help="a server setting, e.g. MLPILOT_MONITORS__ENABLED=0 (repeatable)")  # fmt: skip
    p.add_argument("--speed-probe-s", type=float, default=60.0,
                   help="seconds of the CPU-steadiness probe before the run (60; 0: none)")  # fmt: skip
    p.add_argument("--json", type=Path, default=RESULTS / "soak.json", help="report JSON (the .md goes beside)")
    p.add_argument("--no-pin", action="store_true", help="do not pin the server and the client to separate CPUs")
    args = p.parse_args(argv)
    if any("=" not in e or not e.startswith("MLPILOT_") for e in args.server_env):
        p.error("--server-env takes MLPILOT_NAME=VALUE")
    if not 0 < args.load <= 1 or args.minutes <= 0 or args.ramp_s <= 0 or args.connections < 1:
        p.error("--load must be in (0, 1], --minutes and --ramp-s > 0, --connections >= 1")
    return args


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_exit)  # so `finally` stops the server
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    pin = pinning_available() and not args.no_pin
    server_env = dict(e.split("=", 1) for e in args.server_env)
    plan = Plan(minutes=args.minutes, load=args.load, ramp_s=args.ramp_s, connections=args.connections, pin=pin,
                search_step_s=args.search_step_s, search=args.search, max_rps=args.max_rps,
                server_env=server_env)  # fmt: skip
    background = wait_quiet()
    speed = machine_speed(SERVER_CPU if pin else None, args.speed_probe_s) if args.speed_probe_s > 0 else None
    if speed is not None:
        print(f"  CPU speed over {speed['seconds']} s (per second, relative to the median): min "
              f"{speed['relative_min']:.2f}, p10 {speed['relative_p10']:.2f}, {speed['seconds_below_80pct']} s "
              "below 0.8", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        report = soak(plan, Path(tmp))
    report["machine_speed"] = speed
    report["meta"] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "pinning": f"server on CPU {SERVER_CPU}, load generator on CPU {LOAD_CPU}" if pin else "none",
        "background_cpu_pct": background,
        "command": " ".join(["bench/soak.py", *(argv if argv is not None else sys.argv[1:])]),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    md = render_markdown(report)
    args.json.with_suffix(".md").write_text(md)
    print()
    print(md)
    print(f"wrote {args.json} and {args.json.with_suffix('.md')}")
    return 0 if report.get("status") == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
