"""Serving benchmark: mlpilot against MLServer, BentoML, a bare FastAPI app and a bare ASGI app, side by side.

Run from the repository root with mlpilot's virtualenv::

    .venv/bin/python bench/serving.py            # full run (~15 minutes on 2 cores)
    .venv/bin/python bench/serving.py --quick    # 3 s measurement runs instead of 10 s

Every server serves one scikit-learn model (the same joblib file) on 127.0.0.1, pinned to CPU 0, while wrk runs on
CPU 1. Each server is checked to predict the same class as ``model.predict`` before it is measured. See
bench/README.md for what is measured and how.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from load import Level, LoadResult, find_wrk, run_wrk

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PEERS = BENCH / "peers"
VENVS = BENCH / ".venvs"
RESULTS = BENCH / "results"
MODELS_DIR = RESULTS / "models"
LOGS_DIR = RESULTS / "logs"
MLPILOT_VENV = REPO / ".venv"

LEVELS = (Level(threads=1, connections=1), Level(threads=2, connections=8), Level(threads=2, connections=64))
RUNS = 2
WARMUP_LEVEL = Level(threads=2, connections=8)
WARMUP_S = 5.0
SERVER_CPU = 0
LOAD_CPU = 1
READY_TIMEOUT_S = 180.0
SUMMARY_CONNECTIONS = 8
NOISY_PCT = 10.0  # other processes' CPU use during a run above which the table flags it
NOISY_MARK = "†"


# --------------------------------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelCase:
    name: str  # the model/deployment name, also in the URL
    title: str
    path: Path
    expected: int  # model.predict on the payload row
    batching: bool  # mlpilot deploys it with adaptive batching


def train_models(sample_path: Path, body_path: Path) -> list[ModelCase]:
    """Train the two models once, save them with joblib, and write the shared request body and SDK sample."""
    import joblib
    import numpy as np
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    MODELS_DIR.mkdir(parents=True, exist_ok=True)
    x, y = make_classification(n_samples=2000, n_features=20, random_state=0)
    row = x[:1]
    body = {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 20], "data": row[0].tolist()}]}
    body_path.write_bytes(json.dumps(body, separators=(",", ":")).encode())
    np.save(sample_path, x[:5])
    cases = []
    specs: list[tuple[str, str, Any, bool]] = [
        ("lr", "LogisticRegression", LogisticRegression(max_iter=1000), False),
        ("rf", "RandomForest(50)", RandomForestClassifier(n_estimators=50, random_state=0), True),
    ]
    for name, title, estimator, batching in specs:
        estimator.fit(x, y)
        path = MODELS_DIR / f"{name}.joblib"
        joblib.dump(estimator, path)
        expected = int(estimator.predict(row)[0])
        cases.append(ModelCase(name=name, title=title, path=path, expected=expected, batching=batching))
    return cases


# --------------------------------------------------------------------------------------------------- venvs


def ensure_venv(name: str, requirements: list[str]) -> Path:
    """Create (or reuse) ``bench/.venvs/NAME`` with ``requirements``; a stamp file makes the second run a no-op."""
    venv = VENVS / name
    python = venv / "bin" / "python"
    stamp = venv / ".bench-requirements.json"
    if python.exists() and stamp.exists() and json.loads(stamp.read_text()) == requirements:
        return venv
    LOGS_DIR.mkdir(parents=True, exist_ok=True)
    log = LOGS_DIR / f"venv-{name}.log"
    print(f"  setting up {venv.relative_to(REPO)}: pip install {' '.join(requirements)} (log: {log.name})", flush=True)
    with log.open("w") as out:
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], stdout=out, stderr=out, check=True)
        cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", *requirements]
        if subprocess.run(cmd, stdout=out, stderr=out, check=False).returncode != 0:
            raise RuntimeError(f"pip install failed for {name}: see {log}")
    stamp.write_text(json.dumps(requirements))
    return venv


def package_versions(python: Path, packages: list[str]) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys\n"
        "def v(p):\n"
        "    try:\n        return m.version(p)\n"
        "    except m.PackageNotFoundError:\n        return None\n"
        "print(json.dumps({p: v(p) for p in sys.argv[1:]}))"
    )
    proc = subprocess.run([str(python), "-c", code, *packages], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {}
    return {k: v for k, v in json.loads(proc.stdout).items() if v}


# --------------------------------------------------------------------------------------------------- servers


@dataclass
class Launch:
    argv: list[str]
    ready_path: str
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = REPO
    info: dict[str, Any] = field(default_factory=dict)  # recorded with the results (e.g. effective options)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env(venv: Path, case: ModelCase) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    env["PYTHONUNBUFFERED"] = "1"
    env["BENCH_MODEL_PATH"] = str(case.path)
    env["BENCH_MODEL_NAME"] = case.name
    return env


class Server(ABC):
    key: str  # short id used in results
    label: str  # shown in the table
    venv: Path
    versions_of: list[str]

    @abstractmethod
    def setup(self, sklearn_version: str) -> None:
        """Make the server runnable (create its venv); called once per benchmark run."""

    @abstractmethod
    def launch(self, case: ModelCase, port: int, workdir: Path, sample_path: Path) -> Launch:
        """Prepare ``workdir`` and return how to start the server for ``case`` on ``port``."""

    def versions(self) -> dict[str, str]:
        return package_versions(self.venv / "bin" / "python", self.versions_of)


class Mlpilot(Server):
    venv = MLPILOT_VENV
    versions_of = ["mlpilot", "fastapi", "uvicorn", "scikit-learn", "numpy"]

    def __init__(self, batching: bool = True, request_log: bool = True) -> None:
        # Defaults are what a user gets: adaptive batching and the request log on. The other configurations
        # isolate their cost/benefit: batching off is like-for-like with peers that call predict per request;
        # log off measures what the request log costs.
        self.batching = batching
        self.request_log = request_log
        self.key = "mlpilot" + ("" if batching else "-nobatch") + ("" if request_log else "-nolog")
        notes = [n for n, on in (("batching off", batching), ("request log off", request_log)) if not on]
        self.label = "mlpilot" + (f" ({', '.join(notes)})" if notes else "")

    def setup(self, sklearn_version: str) -> None:
        if not (self.venv / "bin" / "mlpilot").exists():
            raise RuntimeError(f"{self.venv / 'bin' / 'mlpilot'} not found: install mlpilot into .venv first")

    def launch(self, case: ModelCase, port: int, workdir: Path, sample_path: Path) -> Launch:
        home = workdir / "home"
        argv = [str(self.venv / "bin" / "python"), str(PEERS / "mlpilot_setup.py")]
        argv += [str(home), case.name, str(case.path), str(sample_path)]
        if not self.batching:
            argv.append("--no-batching")
        elif case.batching:
            argv.append("--batching")
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"register/deploy failed: {_tail(proc.stderr or proc.stdout)}")
        cmd = [str(self.venv / "bin" / "mlpilot"), "--home", str(home), "up", "--host", "127.0.0.1"]
        cmd += ["--port", str(port), "--no-grpc"]
        env = base_env(self.venv, case)
        env.pop("MLPILOT_URL", None)
        env["MLPILOT_LOGS__ENABLED"] = "true" if self.request_log else "false"
        lines = proc.stdout.strip().splitlines()
        info = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
        info["request_log"] = self.request_log
        return Launch(argv=cmd, ready_path="/v2/health/ready", env=env, info=info)


class MLServer(Server):
    venv = VENVS / "mlserver"
    versions_of = ["mlserver", "mlserver-sklearn", "scikit-learn", "numpy", "fastapi", "uvicorn"]

    def __init__(self, parallel_workers: int | None) -> None:
        self.parallel_workers = parallel_workers
        if parallel_workers is None:
            self.key, self.label = "mlserver", "MLServer (default)"
        else:
            self.key = f"mlserver-pw{parallel_workers}"
            self.label = f"MLServer (parallel_workers={parallel_workers})"

    def setup(self, sklearn_version: str) -> None:
        # uvloop 0.22 made asyncio.get_event_loop() raise in MLServer's inference workers (they crash at start):
        # SeldonIO/MLServer#2286, still open for 1.7.1; pin it back as MLflow does.
        reqs = ["mlserver", "mlserver-sklearn", f"scikit-learn=={sklearn_version}", "uvloop<0.22"]
        ensure_venv("mlserver", reqs)

    def launch(self, case: ModelCase, port: int, workdir: Path, sample_path: Path) -> Launch:
        settings = json.loads((PEERS / "mlserver" / "settings.json").read_text())
        settings.update(http_port=port, grpc_port=free_port(), metrics_port=free_port())
        if self.parallel_workers is not None:
            settings["parallel_workers"] = self.parallel_workers
        model_settings = json.loads((PEERS / "mlserver" / "model-settings.json").read_text())
        model_settings["name"] = case.name
        model_settings["parameters"]["uri"] = str(case.path)
        (workdir / "settings.json").write_text(json.dumps(settings, indent=2))
        (workdir / case.name).mkdir()
        (workdir / case.name / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
        env = base_env(self.venv, case)
        for var in [k for k in env if k.startswith("MLSERVER_")]:
            del env[var]
        return Launch(
            argv=[str(self.venv / "bin" / "mlserver"), "start", str(workdir)],
            ready_path=f"/v2/models/{case.name}/ready",
            env=env,
            cwd=workdir,
        )


class BentoML(Server):
    key = "bentoml"
    label = "BentoML"
    venv = VENVS / "bentoml"
    versions_of = ["bentoml", "scikit-learn", "numpy", "starlette", "uvicorn"]

    def setup(self, sklearn_version: str) -> None:
        ensure_venv("bentoml", ["bentoml>=1.4,<1.5", f"scikit-learn=={sklearn_version}", "joblib"])

    def launch(self, case: ModelCase, port: int, workdir: Path, sample_path: Path) -> Launch:
        env = base_env(self.venv, case)
        env["BENTOML_HOME"] = str(workdir / "bentoml-home")
        env["BENTOML_DO_NOT_TRACK"] = "True"
        argv = [str(self.venv / "bin" / "bentoml"), "serve", "bentoml_service:SklearnV2"]
        argv += ["--working-dir", str(PEERS), "--host", "127.0.0.1", "--port", str(port)]
        return Launch(argv=argv, ready_path="/readyz", env=env, cwd=PEERS)


class Uvicorn(Server):
    """A bare app from bench/peers served by uvicorn with uvloop + httptools, one process, no access log."""

    venv = VENVS / "bare"
    versions_of = ["fastapi", "uvicorn", "uvloop", "httptools", "orjson", "scikit-learn", "numpy"]

    def __init__(self, key: str, label: str, app: str) -> None:
        self.key, self.label, self.app = key, label, app

    def setup(self, sklearn_version: str) -> None:
        reqs = ["fastapi", "uvicorn[standard]", "orjson", f"scikit-learn=={sklearn_version}", "joblib"]
        ensure_venv("bare", reqs)

    def launch(self, case: ModelCase, port: int, workdir: Path, sample_path: Path) -> Launch:
        argv = [str(self.venv / "bin" / "uvicorn"), self.app, "--app-dir", str(PEERS)]
        argv += ["--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop", "--http", "httptools"]
        argv += ["--no-access-log", "--log-level", "warning"]
        return Launch(argv=argv, ready_path="/v2/health/ready", env=base_env(self.venv, case))


def all_servers() -> list[Server]:
    return [
        Mlpilot(),
        Mlpilot(batching=False),
        Mlpilot(request_log=False),
        MLServer(parallel_workers=None),
        MLServer(parallel_workers=0),
        BentoML(),
        Uvicorn("fastapi", "bare FastAPI", "fastapi_app:app"),
        Uvicorn("asgi", "bare ASGI + orjson", "asgi_app:app"),
    ]


# --------------------------------------------------------------------------------------------------- processes


def _tail(text: str, n: int = 600) -> str:
    text = " ".join(text.strip().split())
    return text[-n:]


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants that are alive now."""
    children = _children_map()
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


def _cpu_times() -> tuple[int, int]:
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def background_cpu_pct(interval_s: float = 1.0) -> float:
    """Machine-wide CPU use over ``interval_s``, in percent of all CPUs (nothing of ours runs while it is read)."""
    busy0, total0 = _cpu_times()
    time.sleep(interval_s)
    busy1, total1 = _cpu_times()
    return round(100.0 * (busy1 - busy0) / max(total1 - total0, 1), 1)


def wait_quiet(limit_pct: float = 15.0, max_wait_s: float = 10.0) -> float:
    """Wait (bounded) for other work on the machine to calm down; return the last reading, warn if still busy."""
    deadline = time.monotonic() + max_wait_s
    busy = background_cpu_pct()
    while busy > limit_pct and time.monotonic() < deadline:
        busy = background_cpu_pct()
    if busy > limit_pct:
        print(f"    warning: the machine is {busy:.0f}% busy with other work; numbers will be noisy", flush=True)
    return busy


def tree_cpu_ticks(pid: int) -> int:
    """utime + stime (clock ticks) of the live process tree of ``pid``."""
    ticks = 0
    for p in process_tree(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks


def children_cpu_ticks() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * os.sysconf("SC_CLK_TCK")


class Interference:
    """CPU used on the machine during a run by anything but the server's process tree and wrk, in % of all CPUs."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.machine = _cpu_times()
        self.server = tree_cpu_ticks(server_pid)
        self.load = children_cpu_ticks()  # wrk is our child: its CPU lands here when it exits

    def other_pct(self) -> float:
        busy0, total0 = self.machine
        busy1, total1 = _cpu_times()
        ours = (tree_cpu_ticks(self.server_pid) - self.server) + (children_cpu_ticks() - self.load)
        return round(max(0.0, 100.0 * (busy1 - busy0 - ours) / max(total1 - total0, 1)), 1)


def tree_memory_mb(pid: int) -> tuple[float, float]:
    """(sum of VmRSS, sum of Pss) over the process tree, in MiB. RSS counts pages shared between workers twice."""
    rss_kb = pss_kb = 0
    for p in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss_kb += int(line.split()[1])
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss_kb += int(line.split()[1])
    return round(rss_kb / 1024, 1), round(pss_kb / 1024, 1)


class Running:
    """A server process started in its own session (so its process group id is its pid), logging to a file."""

    def __init__(self, launch: Launch, log: Path, cpu: int | None) -> None:
        argv = ["taskset", "-c", str(cpu), *launch.argv] if cpu is not None else launch.argv
        self.log = log
        self._log_file = log.open("w")
        self.proc = subprocess.Popen(
            argv,
            cwd=launch.cwd,
            env=launch.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.proc.pid

    def log_tail(self) -> str:
        self._log_file.flush()
        return _tail(self.log.read_text(errors="replace"))

    def stop(self) -> None:
        """SIGTERM the server's process group, wait, then SIGKILL whatever of its tree is left (by pid)."""
        tree = process_tree(self.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        time.sleep(0.2)
        for pid in tree[1:]:  # descendants that left the group (or outlived the parent)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        self._log_file.close()


def http(method: str, url: str, body: bytes | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def wait_ready(server: Running, url: str, timeout_s: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited with code {server.proc.returncode}: {server.log_tail()}")
        with contextlib.suppress(OSError):
            if http("GET", url, timeout=2.0)[0] == 200:
                return time.monotonic() - start
        time.sleep(0.25)
    raise RuntimeError(f"not ready after {timeout_s:.0f}s: {server.log_tail()}")


def predicted_class(status: int, raw: bytes) -> int:
    if status != 200:
        raise RuntimeError(f"infer returned HTTP {status}: {_tail(raw.decode(errors='replace'), 300)}")
    outputs = json.loads(raw)["outputs"]
    # The class labels: the output named "predict" where a server names it so (all here do), else the first one.
    data = next((o for o in outputs if o.get("name") == "predict"), outputs[0])["data"]
    while isinstance(data, list):  # tolerate nested (row-major) data
        data = data[0]
    return int(data)


# --------------------------------------------------------------------------------------------------- benchmark


@dataclass
class Config:
    duration_s: float
    warmup_s: float
    pin: bool
    wrk: str
    body_path: Path
    sample_path: Path


def bench_one(server: Server, case: ModelCase, cfg: Config) -> dict[str, Any]:
    """Start ``server`` for ``case``, verify its prediction, warm up, measure every level RUNS times, stop it."""
    record: dict[str, Any] = {"server": server.key, "label": server.label, "model": case.name, "runs": []}
    LOGS_DIR.mkdir(parents=True, exist_ok=True)
    log = LOGS_DIR / f"{server.key}-{case.name}.log"
    running: Running | None = None
    with tempfile.TemporaryDirectory(prefix=f"bench-{server.key}-") as tmp:
        try:
            record["background_cpu_pct"] = wait_quiet()
            port = free_port()
            launch = server.launch(case, port, Path(tmp), cfg.sample_path)
            if launch.info:
                record["server_info"] = launch.info
            running = Running(launch, log, SERVER_CPU if cfg.pin else None)
            base = f"http://127.0.0.1:{port}"
            record["startup_s"] = round(wait_ready(running, base + launch.ready_path, READY_TIMEOUT_S), 2)
            infer_url = f"{base}/v2/models/{case.name}/infer"
            got = predicted_class(*http("POST", infer_url, cfg.body_path.read_bytes(), timeout=30.0))
            if got != case.expected:
                raise RuntimeError(f"wrong prediction: got class {got}, model.predict says {case.expected}")
            record["rss_idle_mb"] = tree_memory_mb(running.pid)[0]
            load_cpu = LOAD_CPU if cfg.pin else None
            run_wrk(cfg.wrk, infer_url, cfg.body_path, WARMUP_LEVEL, cfg.warmup_s, cpu=load_cpu)
            for level in LEVELS:
                for run in range(1, RUNS + 1):
                    probe = Interference(running.pid)
                    result = run_wrk(cfg.wrk, infer_url, cfg.body_path, level, cfg.duration_s, cpu=load_cpu)
                    other = probe.other_pct()
                    rss, pss = tree_memory_mb(running.pid)
                    row = {"connections": level.connections, "threads": level.threads, "run": run}
                    extra = {"rss_mb": rss, "pss_mb": pss, "other_cpu_pct": other}
                    record["runs"].append({**row, **result.to_dict(), **extra})
                    note = f"  RSS {rss:.0f} MB  other CPU {other:.0f}%"
                    print(f"    {level.label} run {run}: {_fmt_result(result)}{note}", flush=True)
            record["status"] = "ok"
        except Exception as exc:  # any failure marks this server/model and the run goes on
            record["status"] = f"failed: {exc}"
            print(f"    FAILED: {_tail(str(exc), 400)}", flush=True)
        finally:
            if running is not None:
                running.stop()
    return record


def _fmt_result(r: LoadResult) -> str:
    return f"{r.rps:8.1f} req/s  p50 {r.p50_ms:7.2f} ms  p99 {r.p99_ms:7.2f} ms  errors {r.errors}"


# --------------------------------------------------------------------------------------------------- report


def mean_rps(records: list[dict[str, Any]], server: str, model: str, connections: int) -> float | None:
    for rec in records:
        if rec["server"] == server and rec["model"] == model and rec.get("status") == "ok":
            values = [r["rps"] for r in rec["runs"] if r["connections"] == connections]
            return sum(values) / len(values) if values else None
    return None


def summarize(records: list[dict[str, Any]], models: list[str]) -> dict[str, Any]:
    """Ratios at concurrency 8 (mean of the two runs): mlpilot vs the best MLServer config and vs bare ASGI."""
    summary: dict[str, Any] = {}
    c = SUMMARY_CONNECTIONS
    for model in models:
        ours = mean_rps(records, "mlpilot", model, c)
        mls = {key: mean_rps(records, key, model, c) for key in ("mlserver", "mlserver-pw0")}
        mls_ok = {k: v for k, v in mls.items() if v}
        best_key = max(mls_ok, key=lambda k: mls_ok[k]) if mls_ok else None
        asgi = mean_rps(records, "asgi", model, c)
        summary[model] = {
            "connections": c,
            "rps": {rec["server"]: mean_rps(records, rec["server"], model, c) for rec in records},
            "mlserver_best": best_key,
            "mlpilot_over_mlserver": round(ours / mls_ok[best_key], 3) if ours and best_key else None,
            "mlpilot_over_asgi": round(ours / asgi, 3) if ours and asgi else None,
            "mlserver_default_rps": mls.get("mlserver"),
        }
        nolog = mean_rps(records, "mlpilot-nolog", model, c)
        nobatch = mean_rps(records, "mlpilot-nobatch", model, c)
        summary[model]["request_log_cost"] = round(1 - ours / nolog, 3) if ours and nolog else None
        summary[model]["nobatch_over_asgi"] = round(nobatch / asgi, 3) if nobatch and asgi else None
    return summary


def render_markdown(report: dict[str, Any]) -> str:
    meta = report["meta"]
    lines = [
        "# Serving benchmark",
        "",
        f"- date: {meta['date']}; machine: {meta['cpu']} ({meta['cpus']} CPUs), Python {meta['python']}",
        f"- pinning: {meta['pinning']}",
        f"- load: wrk, closed loop, {meta['duration_s']:g} s per run, {RUNS} runs per level, "
        f"one {meta['warmup_s']:g} s warm-up at c{WARMUP_LEVEL.connections} first (discarded)",
        f"- payload: one row, {meta['body_bytes']} bytes of V2 JSON, identical for every server",
        "- RSS: sum of VmRSS over the server process and its children, read after each run",
        "",
        "| server | model | concurrency | run | req/s | p50 ms | p99 ms | errors | RSS MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    noisy = False
    for rec in report["results"]:
        if rec.get("status") != "ok" and not rec["runs"]:
            status = rec.get("status", "not run").replace("|", "/")
            lines.append(f"| {rec['label']} | {rec['model']} | - | - | **{_tail(status, 160)}** | | | | |")
            continue
        for r in rec["runs"]:
            mark = NOISY_MARK if r.get("other_cpu_pct", 0) > NOISY_PCT else ""
            noisy = noisy or bool(mark)
            lines.append(
                f"| {rec['label']} | {rec['model']} | {r['connections']} | {r['run']} | {r['rps']:.0f}{mark} "
                f"| {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} | {r['rss_mb']:.0f} |"
            )
        if rec.get("status") != "ok":
            lines.append(f"| {rec['label']} | {rec['model']} | - | - | **{_tail(rec['status'], 160)}** | | | | |")
    if noisy:
        lines += [
            "",
            f"{NOISY_MARK} other processes used more than {NOISY_PCT:g}% of the machine's CPU during that run "
            f"(`other_cpu_pct` in the JSON): treat it as noisy.",
        ]
    lines += ["", f"## Summary at concurrency {SUMMARY_CONNECTIONS} (mean req/s of the two runs)", ""]
    labels = {rec["server"]: rec["label"] for rec in report["results"]}
    models = list(report["summary"])
    lines.append("| server | " + " | ".join(f"{m} req/s | {m} vs ASGI" for m in models) + " |")
    lines.append("|---|" + "---:|---:|" * len(models))
    for key, label in labels.items():
        cells = []
        for m in models:
            rps = report["summary"][m]["rps"].get(key)
            asgi = report["summary"][m]["rps"].get("asgi")
            cells.append(f"{rps:.0f}" if rps else "-")
            cells.append(f"{rps / asgi:.2f}" if rps and asgi else "-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    for m in models:
        s = report["summary"][m]
        best = labels.get(s["mlserver_best"], "-") if s["mlserver_best"] else "-"
        over_mls = f"{s['mlpilot_over_mlserver']:.2f}" if s["mlpilot_over_mlserver"] else "n/a"
        over_asgi = f"{s['mlpilot_over_asgi']:.2f}" if s["mlpilot_over_asgi"] else "n/a"
        lines.append(f"- **{m}**: mlpilot / MLServer (best: {best}) = {over_mls}; mlpilot / bare ASGI = {over_asgi}")
        if s.get("request_log_cost") is not None:
            lines.append(f"  - throughput cost of the request log (on vs off): {s['request_log_cost']:.1%}")
        if s.get("nobatch_over_asgi") is not None:
            lines.append(f"  - mlpilot with batching off / bare ASGI = {s['nobatch_over_asgi']:.2f}")
    infos = [r for r in report["results"] if r.get("server_info")]
    if infos:
        lines += ["", "## Server notes", ""]
        lines += [f"- {r['label']} / {r['model']}: `{json.dumps(r['server_info'])}`" for r in infos]
    lines += ["", "## Versions", ""]
    for key, versions in meta["versions"].items():
        pkgs = ", ".join(f"{p} {v}" for p, v in versions.items()) or "(unknown)"
        lines.append(f"- {labels.get(key, key)}: {pkgs}")
    lines.append("")
    return "\n".join(lines)


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def pinning_available() -> bool:
    return shutil.which("taskset") is not None and {SERVER_CPU, LOAD_CPU} <= os.sched_getaffinity(0)


# --------------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    keys = [s.key for s in all_servers()]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="3 s measurement runs instead of 10 s")
    p.add_argument("--out", type=Path, default=RESULTS / "serving.json", help="raw results JSON (the .md goes beside)")
    p.add_argument("--servers", default=",".join(keys), help=f"comma-separated subset of: {','.join(keys)}")
    p.add_argument("--models", default="lr,rf", help="comma-separated subset of: lr,rf")
    p.add_argument("--no-pin", action="store_true", help="do not pin servers and wrk to separate CPUs")
    args = p.parse_args(argv)
    unknown = set(args.servers.split(",")) - set(keys)
    if unknown:
        p.error(f"unknown servers: {', '.join(sorted(unknown))}")
    return args


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_exit)  # so `finally` blocks stop the servers
    import sklearn

    wanted = args.servers.split(",")
    servers = [s for s in all_servers() if s.key in wanted]
    pin = pinning_available() and not args.no_pin
    pinning = (
        f"servers on CPU {SERVER_CPU} (taskset -c {SERVER_CPU}), wrk on CPU {LOAD_CPU} (taskset -c {LOAD_CPU})"
        if pin
        else "none (taskset missing, fewer than 2 CPUs, or --no-pin)"
    )
    cfg = Config(
        duration_s=3.0 if args.quick else 10.0,
        warmup_s=WARMUP_S,
        pin=pin,
        wrk=find_wrk(install=True),
        body_path=MODELS_DIR / "payload.json",
        sample_path=MODELS_DIR / "sample.npy",
    )
    print(f"pinning: {pinning}", flush=True)
    cases = [c for c in train_models(cfg.sample_path, cfg.body_path) if c.name in args.models.split(",")]
    for case in cases:
        print(f"model {case.name} ({case.title}): {case.path.relative_to(REPO)}, expected class {case.expected}")

    ready: list[Server] = []
    records: list[dict[str, Any]] = []
    versions: dict[str, dict[str, str]] = {}
    print("setting up servers ...", flush=True)
    for server in servers:
        try:
            server.setup(sklearn.__version__)
            ready.append(server)
            versions[server.key] = server.versions()
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            print(f"  {server.label}: setup failed: {exc}", flush=True)
            records += [
                {"server": server.key, "label": server.label, "model": c.name, "runs": [], "status": f"failed: {exc}"}
                for c in cases
            ]

    report: dict[str, Any] = {
        "meta": {
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "cpu": cpu_model(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "pinning": pinning,
            "duration_s": cfg.duration_s,
            "warmup_s": cfg.warmup_s,
            "runs": RUNS,
            "levels": [{"threads": lv.threads, "connections": lv.connections} for lv in LEVELS],
            "body_bytes": cfg.body_path.stat().st_size,
            "wrk": subprocess.run([cfg.wrk, "-v"], capture_output=True, text=True).stdout.split("\n")[0].strip(),
            "versions": versions,
            "models": {c.name: {"title": c.title, "path": str(c.path), "expected": c.expected} for c in cases},
        },
        "results": records,
        "summary": {},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    md_path = args.out.with_suffix(".md")

    def save() -> None:
        report["summary"] = summarize(records, [c.name for c in cases])
        args.out.write_text(json.dumps(report, indent=2))
        md_path.write_text(render_markdown(report))

    for case in cases:
        for server in ready:
            print(f"[{case.name}] {server.label}", flush=True)
            records.append(bench_one(server, case, cfg))
            save()
    save()
    print()
    print(render_markdown(report))
    print(f"wrote {args.out} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
