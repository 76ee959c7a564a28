"""Throughput of one deployment on the Ray executor with 1 and 2 replicas, and on the in-process executor.

    .venv/bin/python bench/ray_scale.py [--duration 20] [--trees 150] [--json bench/results/ray_scale.json]

Each configuration is a real ``mlpilot up`` (a fresh home) serving one scikit-learn random forest whose prediction
takes real CPU (``--trees`` trees, one row per request, batching off so that replicas, not merged calls, carry the
load): ``inprocess`` (the default executor), ``ray-1`` and ``ray-2`` (``--executor ray``: a local Ray started by the
server with 2 CPUs, replicas reserving 0.5 CPU each). Load: wrk, 8 connections (one request in flight each),
single-row OIP v2 REST JSON, after a warm-up. Nothing is pinned: the server, Ray's replicas and wrk share the
machine's cores, which is what a user of this machine gets. Prints a table; ``--json`` writes the numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from load import Level, find_wrk, run_wrk  # noqa: E402

MLPILOT = str(Path(sys.executable).with_name("mlpilot"))
LEVEL = Level(threads=2, connections=8)
CONFIGS = [("inprocess", "inprocess", 1), ("ray-1", "ray", 1), ("ray-2", "ray", 2)]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _descendants(pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            ppid = next(ln.split()[1] for ln in status.read_text().splitlines() if ln.startswith("PPid:"))
        except (OSError, StopIteration):
            continue
        parents[int(status.parent.name)] = int(ppid)
    out, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        out += kids
        frontier += kids
    return out


def _train(trees: int) -> tuple[Any, Any, float]:
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    X, y = load_iris(return_X_y=True)
    model = RandomForestClassifier(n_estimators=trees, random_state=0).fit(X, y)
    model.predict_proba(X[:1])
    t0 = time.perf_counter()
    for i in range(50):
        model.predict_proba(X[i : i + 1])
    return model, X, (time.perf_counter() - t0) / 50 * 1000


def _http(url: str, body: bytes | None = None, timeout: float = 10.0) -> int:
    import httpx

    try:
        r = httpx.post(url, content=body, timeout=timeout) if body is not None else httpx.get(url, timeout=timeout)
    except httpx.TransportError:
        return 0
    return r.status_code


def bench_one(name: str, kind: str, replicas: int, model: Any, X: Any, args: argparse.Namespace, wrk: str) -> dict:
    from mlpilot import Client

    work = Path(tempfile.mkdtemp(prefix=f"ray-scale-{name}-"))
    home = work / "home"
    with Client(home=home) as c:
        v = c.register_model("forest", model, sample=X[:3])
        c.deploy("forest", v.ref, runtime={"replicas": replicas, "batching": None})
    port = _free_port()
    env = {**os.environ, "MLPILOT_HOME": str(home), "MLPILOT_SERVER__GRPC": "0", "MLPILOT_MONITORS__ENABLED": "0"}
    env.update({"MLPILOT_ROLLOUTS__ENABLED": "0", "MLPILOT_EXECUTOR__NUM_CPUS": "2", "RAY_USAGE_STATS_ENABLED": "0"})
    env.pop("MLPILOT_URL", None)
    log = open(work / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [MLPILOT, "up", "--port", str(port), "--executor", kind], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}/v2/models/forest/infer"
    body = json.dumps(
        {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 4], "data": X[7].tolist()}]}
    ).encode()
    body_path = work / "body.json"
    body_path.write_bytes(body)
    try:
        t0 = time.monotonic()
        while _http(url, body) != 200:
            if proc.poll() is not None or time.monotonic() - t0 > 180:
                raise RuntimeError(f"{name}: the server did not serve: {(work / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        ready_s = time.monotonic() - t0
        run_wrk(wrk, url, body_path, LEVEL, args.warmup)
        r = run_wrk(wrk, url, body_path, LEVEL, args.duration)
    finally:
        tree = _descendants(proc.pid)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        time.sleep(1)
        for pid in tree:  # anything of the server's Ray that outlived it
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        log.close()
    return {
        "config": name,
        "executor": kind,
        "replicas": replicas,
        "ready_s": round(ready_s, 1),
        **r.to_dict(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of measured load per configuration")
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--trees", type=int, default=150, help="trees of the random forest (its CPU per request)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--configs", default=",".join(c for c, _, _ in CONFIGS))
    args = ap.parse_args()
    wrk = find_wrk(install=True)
    model, X, predict_ms = _train(args.trees)
    print(f"random forest, {args.trees} trees: predict_proba of one row {predict_ms:.2f} ms in this process")
    chosen = set(args.configs.split(","))
    results = []
    for name, kind, replicas in CONFIGS:
        if name not in chosen:
            continue
        res = bench_one(name, kind, replicas, model, X, args, wrk)
        results.append(res)
        print(
            f"{name:10s} {res['rps']:8.1f} req/s  p50 {res['p50_ms']:7.2f} ms  p99 {res['p99_ms']:7.2f} ms  "
            f"errors {res['errors']}  (ready after {res['ready_s']} s)",
            flush=True,
        )
    print()
    print("| executor | replicas | req/s | p50 ms | p99 ms | errors |")
    print("|---|---|---|---|---|---|")
    for r in results:
        cells = [r["executor"], r["replicas"], f"{r['rps']:.1f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}"]
        cells.append(r["errors"])
        print("| " + " | ".join(str(x) for x in cells) + " |")
    report = {
        "bench": "ray_scale",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "model": {"kind": "RandomForestClassifier", "trees": args.trees, "predict_ms": round(predict_ms, 3)},
        "load": {"tool": "wrk", "connections": LEVEL.connections, "duration_s": args.duration, "rows": 1},
        "results": results,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
