"""How the cost of the platform grows with the number of deployments: 10, 100, 1,000.

    .venv/bin/python bench/deployments_scale.py [--counts 10,100,1000] [--flips 5] [--json FILE.json]

For each count N, a fresh home holds one small scikit-learn model (logistic regression on iris, registered once) and N
deployments of it; the first, ``d0000``, has two variants (``a`` and ``b``). Then, on loopback:

* a real ``mlpilot up`` (control plane + its own in-process data plane) starts on that home — **ready** is the time
  until its data plane answers the *last* deployment;
* ``GET /api/v1/snapshot`` — the compiled routing snapshot remote data planes fetch: its **size** in bytes and the
  time of a request (**compile**: the first, uncached; **cached**: the median of the next five);
* a real ``mlpilot serve --control-url`` (a remote data plane, its own home) starts — **ready** is the time until it
  answers the last deployment (it fetches the snapshot and every model's bytes over the control API, then loads);
* **RSS** of each process (with its children), read from ``/proc`` once both are ready;
* **propagation**: ``--flips`` times, d0000's traffic is flipped between ``a`` and ``b`` through the API and the time
  is measured from the API's answer until *both* data planes answer with the new variant (polled every 5 ms).

Every deployment serves the same model file, so the model bytes are fetched once per data plane (blobs are
content-addressed) but loaded once per deployment. Prints a table; ``--json`` writes the numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MLPILOT = str(Path(sys.executable).with_name("mlpilot"))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants, in MiB."""
    parents: dict[int, int] = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError, StopIteration):
            ppid = next(ln.split()[1] for ln in status.read_text().splitlines() if ln.startswith("PPid:"))
            parents[int(status.parent.name)] = int(ppid)
    tree, frontier = [pid], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        tree += kids
        frontier += kids
    kb = 0
    for p in tree:
        with contextlib.suppress(OSError, StopIteration):
            line = next(ln for ln in Path(f"/proc/{p}/status").read_text().splitlines() if ln.startswith("VmRSS:"))
            kb += int(line.split()[1])
    return kb / 1024


class _Proc:
    def __init__(self, args: list[str], home: Path, work: Path, name: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "MLPILOT_HOME": str(home), "MLPILOT_SERVER__GRPC": "0"}
        env.update({"MLPILOT_MONITORS__ENABLED": "0", "MLPILOT_ROLLOUTS__ENABLED": "0"})
        env.pop("MLPILOT_URL", None)
        self.log_path = work / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [MLPILOT, *args, "--port", str(self.port)], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


def _variant(client: Any, url: str, deployment: str, body: bytes) -> str | None:
    import httpx

    try:
        r = client.post(f"{url}/v2/models/{deployment}/infer", content=body, timeout=10)
    except httpx.TransportError:
        return None
    return r.headers.get("x-mlpilot-variant") if r.status_code == 200 else None


def _wait_serving(p: _Proc, client: Any, deployment: str, body: bytes, timeout: float) -> float:
    t0 = time.monotonic()
    while _variant(client, p.url, deployment, body) is None:
        if p.proc.poll() is not None or time.monotonic() - t0 > timeout:
            raise RuntimeError(f"{p.url} did not serve {deployment}: {p.log_path.read_text()[-3000:]}")
        time.sleep(0.05)
    return time.monotonic() - t0


def bench_one(n: int, flips: int, timeout: float) -> dict[str, Any]:
    import httpx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from mlpilot import Client

    X, y = load_iris(return_X_y=True)
    body = json.dumps(
        {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 4], "data": X[0].tolist()}]}
    ).encode()
    work = Path(tempfile.mkdtemp(prefix=f"deployments-{n}-"))
    home = work / "control"
    t0 = time.monotonic()
    with Client(home=home) as c:
        v = c.register_model("iris", LogisticRegression(max_iter=300).fit(X, y), sample=X[:2])
        for i in range(n):
            c.deploy(f"d{i:04d}", v.ref, variant="a")
        c.deploy("d0000", v.ref, variant="b")
    setup_s = time.monotonic() - t0
    last = f"d{n - 1:04d}"
    started: list[_Proc] = []
    try:
        control = _Proc(["up"], home, work, "control")
        started.append(control)
        with httpx.Client() as http:
            control_ready = _wait_serving(control, http, last, body, timeout)
            times = []
            size = 0
            for _ in range(6):
                t = time.perf_counter()
                r = http.get(f"{control.url}/api/v1/snapshot", timeout=60)
                times.append((time.perf_counter() - t) * 1000)
                r.raise_for_status()
                size = len(r.content)
            remote = _Proc(["serve", "--control-url", control.url, "--no-grpc"], work / "remote", work, "remote")
            started.append(remote)
            remote_ready = _wait_serving(remote, http, last, body, timeout)
            rss_control, rss_remote = _rss_mb(control.proc.pid), _rss_mb(remote.proc.pid)
            props = []
            current = "a"
            with Client(control.url) as c:
                for _ in range(flips):
                    target = "b" if current == "a" else "a"
                    c.set_traffic("d0000", {target: 100})
                    t = time.monotonic()
                    pending = {control.url, remote.url}
                    while pending:
                        pending = {u for u in pending if _variant(http, u, "d0000", body) != target}
                        if time.monotonic() - t > 30:
                            raise RuntimeError(f"no propagation to {pending} in 30 s")
                        if pending:
                            time.sleep(0.005)
                    props.append((time.monotonic() - t) * 1000)
                    current = target
    finally:
        for p in reversed(started):
            p.stop()
    return {
        "deployments": n,
        "setup_s": round(setup_s, 1),
        "control_ready_s": round(control_ready, 2),
        "remote_ready_s": round(remote_ready, 2),
        "rss_control_mb": round(rss_control, 1),
        "rss_remote_mb": round(rss_remote, 1),
        "snapshot_bytes": size,
        "snapshot_compile_ms": round(times[0], 1),
        "snapshot_cached_ms": round(statistics.median(times[1:]), 1),
        "propagation_ms": [round(x, 1) for x in props],
        "propagation_median_ms": round(statistics.median(props), 1),
        "propagation_max_ms": round(max(props), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--counts", default="10,100,1000", help="numbers of deployments, comma-separated")
    ap.add_argument("--flips", type=int, default=5, help="traffic changes timed per count")
    ap.add_argument("--timeout", type=float, default=600.0, help="longest wait for a process to serve, in seconds")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args()
    results = []
    for n in (int(x) for x in args.counts.split(",")):
        res = bench_one(n, args.flips, args.timeout)
        results.append(res)
        print(json.dumps(res), flush=True)
    print()
    print(
        "| deployments | control RSS MiB | remote data plane RSS MiB | snapshot KiB | snapshot compile / cached ms "
        "| control ready s | remote ready s | propagation median / max ms |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['deployments']:,} | {r['rss_control_mb']:.0f} | {r['rss_remote_mb']:.0f} "
            f"| {r['snapshot_bytes'] / 1024:.1f} | {r['snapshot_compile_ms']:.0f} / {r['snapshot_cached_ms']:.1f} "
            f"| {r['control_ready_s']:.1f} | {r['remote_ready_s']:.1f} "
            f"| {r['propagation_median_ms']:.0f} / {r['propagation_max_ms']:.0f} |"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "bench": "deployments_scale",
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "results": results,
        }
        args.json.write_text(json.dumps(report, indent=2))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
