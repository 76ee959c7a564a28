"""What observability costs: serving throughput with the request log, metrics and tracing all on vs all off.

    .venv/bin/python bench/observability.py [--quick] [--rounds 3] [--models lr]

Side by side in one run, interleaved (off, on-fast, on-strict, off, …) so drift of the machine hits every
configuration alike. Each configuration is the real ``mlpilot up`` process from ``bench/serving.py``'s harness
(server pinned to CPU 0, wrk on CPU 1, 8 connections, one-row V2 JSON requests):

- ``off``: request log off, tracing off, per-request metrics off (``server.metrics=false``);
- ``on-fast``: request log (``fast`` durability), Prometheus metrics, OpenTelemetry tracing exported over OTLP/HTTP
  to a local collector stand-in that accepts and counts every export;
- ``on-strict``: the same with ``strict`` durability (every record on disk before its response is sent);
- ``all-traced``: ``on-fast`` with every request traced (``tracing.sample_ratio=1``; the default traces 1%).

After each run the server is stopped gracefully and the bench checks that nothing was dropped: the records on
disk are at least the requests the server had counted as served when scraped right after the load
(``mlpilot_requests_total{status="ok"}``; requests in flight when wrk stopped finish later and are logged too),
and the ``mlpilot_log_dropped_total`` counter is 0. Results go to ``bench/results/observability.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import serving as sb
from load import Level

LEVEL = Level(threads=2, connections=8)


class Collector:
    """An OTLP/HTTP trace endpoint on 127.0.0.1 that answers 200 and counts exports and bytes."""

    def __init__(self) -> None:
        self.exports = 0
        self.bytes = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                self.rfile.read(n)
                outer.exports += 1
                outer.bytes += n
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class Config(sb.Mlpilot):
    def __init__(self, key: str, label: str, env: dict[str, str]) -> None:
        super().__init__()
        self.key, self.label, self.env = key, label, env

    def launch(self, case: sb.ModelCase, port: int, workdir: Path, sample_path: Path) -> sb.Launch:
        launch = super().launch(case, port, workdir, sample_path)
        launch.env.update(self.env)
        return launch


def configs(collector: Collector) -> list[Config]:
    on = {"MLPILOT_LOGS__ENABLED": "true", "MLPILOT_SERVER__METRICS": "true", "MLPILOT_TRACING__ENABLED": "true"}
    on["MLPILOT_TRACING__OTLP_ENDPOINT"] = collector.url
    return [
        Config(
            "off",
            "all off",
            {"MLPILOT_LOGS__ENABLED": "false", "MLPILOT_SERVER__METRICS": "false", "MLPILOT_TRACING__ENABLED": "false"},
        ),
        Config("on-fast", "log (fast) + metrics + tracing", {**on, "MLPILOT_LOGS__DURABILITY": "fast"}),
        Config("on-strict", "log (strict) + metrics + tracing", {**on, "MLPILOT_LOGS__DURABILITY": "strict"}),
        Config(
            "all-traced", "log (fast) + metrics + tracing every request", {**on, "MLPILOT_TRACING__SAMPLE_RATIO": "1"}
        ),
    ]


def scrape(base: str) -> dict[str, float]:
    status, raw = sb.http("GET", base + "/metrics")
    if status != 200:
        raise RuntimeError(f"/metrics returned {status}")
    out = {"ok": 0.0, "dropped": 0.0}
    for line in raw.decode().splitlines():
        if line.startswith("mlpilot_requests_total{") and 'status="ok"' in line:
            out["ok"] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("mlpilot_log_dropped_total"):
            out["dropped"] += float(line.rsplit(" ", 1)[1])
    return out


def run_config(cfg: Config, case: sb.ModelCase, bench: sb.Config, duration_s: float) -> dict[str, Any]:
    from mlpilot.telemetry.query import count_records

    sb.LOGS_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"obs-{cfg.key}-") as tmp:
        port = sb.free_port()
        launch = cfg.launch(case, port, Path(tmp), bench.sample_path)
        running = sb.Running(
            launch, sb.LOGS_DIR / f"obs-{cfg.key}-{case.name}.log", sb.SERVER_CPU if bench.pin else None
        )
        base = f"http://127.0.0.1:{port}"
        try:
            sb.wait_ready(running, base + launch.ready_path, sb.READY_TIMEOUT_S)
            infer = f"{base}/v2/models/{case.name}/infer"
            got = sb.predicted_class(*sb.http("POST", infer, bench.body_path.read_bytes(), timeout=30.0))
            if got != case.expected:
                raise RuntimeError(f"wrong prediction {got}, expected {case.expected}")
            cpu = sb.LOAD_CPU if bench.pin else None
            sb.run_wrk(bench.wrk, infer, bench.body_path, LEVEL, 3.0, cpu=cpu)  # warm-up
            probe = sb.Interference(running.pid)
            ticks0 = sb.tree_cpu_ticks(running.pid)
            result = sb.run_wrk(bench.wrk, infer, bench.body_path, LEVEL, duration_s, cpu=cpu)
            cpu_s = (sb.tree_cpu_ticks(running.pid) - ticks0) / os.sysconf("SC_CLK_TCK")
            other = probe.other_pct()
            served = scrape(base) if cfg.key != "off" else {"ok": float("nan"), "dropped": 0.0}
        finally:
            running.stop()  # SIGTERM: graceful shutdown writes every queued record
        logged = count_records(Path(tmp) / "home" / "logs", case.name) if cfg.key != "off" else None
    row = {"config": cfg.key, "model": case.name, **result.to_dict(), "other_cpu_pct": other}
    row["cpu_us_per_request"] = cpu_s / max(1, result.requests) * 1e6
    row.update({"served_ok": served["ok"], "dropped": served["dropped"], "logged": logged})
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="3 s runs instead of 10 s")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--models", default="lr")
    p.add_argument("--out", type=Path, default=sb.RESULTS / "observability.json")
    args = p.parse_args(argv)
    pin = sb.pinning_available()
    bench = sb.Config(
        duration_s=3.0 if args.quick else 10.0,
        warmup_s=3.0,
        pin=pin,
        wrk=sb.find_wrk(install=True),
        body_path=sb.MODELS_DIR / "payload.json",
        sample_path=sb.MODELS_DIR / "sample.npy",
    )
    cases = [c for c in sb.train_models(bench.sample_path, bench.body_path) if c.name in args.models.split(",")]
    collector = Collector()
    cfgs = configs(collector)
    rows: list[dict[str, Any]] = []
    failures: list[str] = []
    for case in cases:
        for rnd in range(1, args.rounds + 1):
            for cfg in cfgs:
                sb.wait_quiet()
                row = run_config(cfg, case, bench, bench.duration_s)
                row["round"] = rnd
                rows.append(row)
                lost = "" if row["logged"] is None else f"  served {row['served_ok']:.0f} logged {row['logged']}"
                print(
                    f"{case.name} round {rnd} {cfg.key:<9} {row['rps']:8.1f} req/s  p99 {row['p99_ms']:6.2f} ms"
                    f"  errors {row['errors_status'] + row['errors_socket']}{lost}  dropped {row['dropped']:.0f}"
                    f"  CPU {row['cpu_us_per_request']:.0f} us/req  other CPU {row['other_cpu_pct']:.0f}%",
                    flush=True,
                )
                # requests still in flight when wrk stopped may finish after the scrape: logged >= served
                if row["logged"] is not None and (row["logged"] < row["served_ok"] or row["dropped"]):
                    failures.append(
                        f"{case.name}/{cfg.key}/round {rnd}: served {row['served_ok']}, logged {row['logged']}"
                    )
    summary: dict[str, Any] = {}
    for case in cases:

        def of(key: str, field: str, model: str = case.name) -> list[float]:
            return [r[field] for r in rows if r["config"] == key and r["model"] == model]

        # The machine's speed drifts between runs (shared host): compare each round's runs with that round's
        # "off" run, and report the median over rounds; CPU per request is the steadier measure.
        ratio = {
            c.key: statistics.median(a / b for a, b in zip(of(c.key, "rps"), of("off", "rps"), strict=True))
            for c in cfgs
        }
        cpu = {c.key: statistics.median(of(c.key, "cpu_us_per_request")) for c in cfgs}
        summary[case.name] = {
            "median_rps": {c.key: statistics.median(of(c.key, "rps")) for c in cfgs},
            "throughput_cost": {c.key: 1 - ratio[c.key] for c in cfgs},
            "cpu_us_per_request": cpu,
            "cpu_cost": {c.key: 1 - cpu["off"] / cpu[c.key] for c in cfgs},
        }
    report = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "pinning": pin,
        "duration_s": bench.duration_s,
        "rounds": args.rounds,
        "connections": LEVEL.connections,
        "collector": {"exports": collector.exports, "bytes": collector.bytes},
        "rows": rows,
        "summary": summary,
        "failures": failures,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    lines = [
        "| model | configuration | median req/s | throughput cost (median of per-round ratios) "
        "| server CPU µs / request | cost in CPU per request |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for model, s in summary.items():
        for c in cfgs:
            off = c.key == "off"
            lines.append(
                f"| {model} | {c.label} | {s['median_rps'][c.key]:.0f} | "
                f"{'' if off else format(s['throughput_cost'][c.key], '.1%')} | {s['cpu_us_per_request'][c.key]:.0f} | "
                f"{'' if off else format(s['cpu_cost'][c.key], '.1%')} |"
            )
    table = "\n".join(lines)
    args.out.with_suffix(".md").write_text(table + "\n")
    print(table)
    print(f"OTLP exports received: {collector.exports} ({collector.bytes / 1e6:.1f} MB)")
    for f in failures:
        print(f"LOST RECORDS: {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
