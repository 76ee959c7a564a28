"""What mlpilot adds to an LLM call: the OpenAI API through mlpilot vs the same backend called directly, one run.

Run from the repository root with mlpilot's virtualenv::

    .venv/bin/python bench/llm_overhead.py                    # 1,000 rounds per mode (~3-4 minutes)
    .venv/bin/python bench/llm_overhead.py --requests 200     # a shorter run

Processes (each its own, stopped by PID at the end):

- the backend: ``python -m mlpilot.testing.fake_llm --token-delay-ms 2`` (a real OpenAI-compatible HTTP server on
  uvicorn; a streamed answer is the role chunk at once, then one chunk per word, 2 ms apart);
- mlpilot: ``mlpilot up`` with its own temporary ``MLPILOT_HOME``, ``MLPILOT_SERVER__GRPC=0`` and otherwise the
  defaults (request log on, metrics on, tracing at its default sample ratio). A chat prompt (one system message and
  ``{{question}}``) and an app whose generator is the fake backend are registered with
  :class:`mlpilot.client.Client` and deployed as ``bench-chat``;
- a reference peer, the floor of any Python proxy: a bare ASGI app on uvicorn (uvloop + httptools, like mlpilot)
  that forwards the body to the backend with one keep-alive ``httpx.AsyncClient`` and streams the backend's bytes
  back as they arrive (this file, ``--serve-proxy``). No parsing, no prompt, no logging;
- the load: this process, one request at a time (closed loop, concurrency 1).

Paths, with the same client code (a raw ``httpx.Client`` with keep-alive per path; only the base URL and the body
differ): ``direct`` posts to the fake backend exactly the body mlpilot sends it (captured from the backend's
``/v1/_seen`` after the warm-up, so the backend does identical work), ``proxy`` posts that same body through the
bare proxy, ``mlpilot`` posts the user's message to the app. Each round sends one request on every path, the order
rotating from round to round, after a warm-up of 50 rounds. Modes: non-streaming chat (total latency) and streaming
chat with ``stream_options.include_usage`` (time to the first non-empty content delta, and to the end of the
stream). Every answer is checked (the same text on every path). The added time of a path is reported two ways: the
median of the paired differences (path - direct, round by round) and the difference of the medians.

One extra, shorter run uses the official ``openai`` client on every path (``--openai-requests``, 0 to skip).

The server's own view is read from ``/metrics`` before and after each mode (mean server time per request from the
``mlpilot_request_duration_seconds`` histograms: ``total`` from the request's arrival to the end of the response,
``predict`` the app's part of it).

Results: markdown tables printed and written to ``bench/results/llm_overhead.md``, raw numbers to
``bench/results/llm_overhead.json``.

Caveat: on a 2-core machine the client, mlpilot (event loop + worker thread + request-log threads) and the backend
share the CPUs; at concurrency 1 at most two of them are busy at once, but every hop is a cross-process wake-up,
and the mlpilot and proxy paths have one hop more than the direct path.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
MLPILOT = str(Path(sys.executable).with_name("mlpilot"))
APP = "bench-chat"
QUESTION = "please tell me where my order went and when it will arrive at my home address this week"
WARMUP = 50
PATHS = ("direct", "proxy", "mlpilot")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    """A subprocess with its output in a log file, stopped by PID (SIGTERM, then SIGKILL)."""

    def __init__(self, cmd: list[str], env: dict[str, str], log: Path, ready_url: str) -> None:
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{cmd[0]} exited early:\n{log.read_text()}")
            try:
                if httpx.get(ready_url, timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{' '.join(cmd)} not ready in 60 s:\n{log.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()


# ------------------------------------------------------------------------------------------------ the bare proxy


class BareProxy:
    """ASGI: ``/v1/...`` forwarded to ``backend/...`` with one keep-alive AsyncClient, the answer streamed back."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.client: httpx.AsyncClient | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                kind = (await receive())["type"]
                if kind == "lifespan.startup":
                    self.client = httpx.AsyncClient(base_url=self.backend, timeout=30)
                    await send({"type": "lifespan.startup.complete"})
                elif kind == "lifespan.shutdown":
                    if self.client is not None:
                        await self.client.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        assert self.client is not None
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        request = self.client.build_request(
            scope["method"], scope["path"].removeprefix("/v1"), content=body or None,
            headers={"content-type": "application/json"},
        )  # fmt: skip
        resp = await self.client.send(request, stream=True)
        try:
            ctype = resp.headers.get("content-type", "application/json").encode()
            await send({"type": "http.response.start", "status": resp.status_code,
                        "headers": [(b"content-type", ctype)]})  # fmt: skip
            async for chunk in resp.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await resp.aclose()


def serve_proxy(port: int, backend: str) -> None:
    import uvicorn

    uvicorn.run(BareProxy(backend), host="127.0.0.1", port=port, log_level="warning", access_log=False,
                lifespan="on", loop="uvloop", http="httptools")  # fmt: skip


# ------------------------------------------------------------------------------------------------ one request


def chat_once(client: httpx.Client, body: bytes) -> tuple[float, str]:
    """Non-streaming chat: ``(seconds, answer text)``."""
    t = time.perf_counter()
    r = client.post("/chat/completions", content=body)
    data = orjson.loads(r.content)
    elapsed = time.perf_counter() - t
    if r.status_code != 200:
        raise RuntimeError(f"HTTP {r.status_code}: {r.text[:300]}")
    return elapsed, data["choices"][0]["message"]["content"]


def stream_once(client: httpx.Client, body: bytes) -> tuple[float, float, str]:
    """Streaming chat: ``(seconds to the first content delta, seconds to the end of the stream, text)``."""
    t = time.perf_counter()
    ttft = None
    pieces: list[str] = []
    usage = done = False
    with client.stream("POST", "/chat/completions", content=body) as r:
        if r.status_code != 200:
            r.read()
            raise RuntimeError(f"HTTP {r.status_code}: {r.text[:300]}")
        for line in r.iter_lines():  # read to the end of the body so the connection is kept alive
            if not line.startswith("data: "):
                continue
            payload = line[6:]
            if payload == "[DONE]":
                done = True
                continue
            event = orjson.loads(payload)
            choices = event.get("choices") or []
            if choices and (choices[0].get("delta") or {}).get("content"):
                if ttft is None:
                    ttft = time.perf_counter() - t
                pieces.append(choices[0]["delta"]["content"])
            if event.get("usage"):
                usage = True
    total = time.perf_counter() - t
    if ttft is None or not done or not usage:
        raise RuntimeError(f"incomplete stream (content={ttft is not None}, usage={usage}, [DONE]={done})")
    return ttft, total, "".join(pieces)


def openai_once(client: Any, kwargs: dict[str, Any], stream: bool) -> tuple[float, float, str]:
    """The official client: ``(first token or whole answer seconds, total seconds, text)``."""
    t = time.perf_counter()
    if not stream:
        r = client.chat.completions.create(**kwargs)
        elapsed = time.perf_counter() - t
        return elapsed, elapsed, r.choices[0].message.content
    ttft = None
    pieces = []
    for chunk in client.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True}):
        if chunk.choices and chunk.choices[0].delta.content:
            if ttft is None:
                ttft = time.perf_counter() - t
            pieces.append(chunk.choices[0].delta.content)
    if ttft is None:
        raise RuntimeError("no content in the stream")
    return ttft, time.perf_counter() - t, "".join(pieces)


# ------------------------------------------------------------------------------------------------ measuring

Probe = Callable[[], tuple[float, ...]]


def rounds(n: int, probes: dict[str, Probe]) -> dict[str, np.ndarray]:
    """``n`` rounds of one request per path, the order rotating; ``{path: array[round, metric]}`` in ms."""
    names = list(probes)
    out: dict[str, list[tuple[float, ...]]] = {k: [] for k in names}
    gc.collect()
    gc.disable()
    try:
        for i in range(n):
            for k in names[i % len(names) :] + names[: i % len(names)]:
                out[k].append(probes[k]())
    finally:
        gc.enable()
    return {k: np.asarray(v) * 1000 for k, v in out.items()}


def summary(direct: np.ndarray, path: np.ndarray, added: bool = True) -> dict[str, float]:
    p = np.percentile(path, [50, 90, 99])
    s = {"p50": float(p[0]), "p90": float(p[1]), "p99": float(p[2])}
    if added:
        d = np.percentile(direct, [50, 90])
        s.update(added_p50_paired=float(np.median(path - direct)), added_p50_of_p50s=float(p[0] - d[0]),
                 added_p90_of_p90s=float(p[1] - d[1]))  # fmt: skip
    return s


def summarize(r: dict[str, np.ndarray], col: int) -> dict[str, dict[str, float]]:
    return {k: summary(r["direct"][:, col], v[:, col], k != "direct") for k, v in r.items()}


_STAGE = re.compile(r"^mlpilot_request_duration_seconds_(sum|count)\{([^}]*)\} ([0-9.e+-]+)$", re.M)


def stage_sums(base_url: str) -> dict[str, tuple[float, float]]:
    """``{stage: (sum seconds, count)}`` of the bench app's stage histograms in ``/metrics``."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    out: dict[str, list[float]] = {}
    for kind, labels, value in _STAGE.findall(text):
        stage = re.search(r'stage="([^"]+)"', labels)
        if APP not in labels or stage is None:
            continue
        slot = out.setdefault(stage.group(1), [0.0, 0.0])
        slot[0 if kind == "sum" else 1] += float(value)
    return {k: (v[0], v[1]) for k, v in out.items()}


def stage_means(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Mean ms per request of each server stage between two scrapes."""
    out = {}
    for stage, (s1, c1) in after.items():
        s0, c0 = before.get(stage, (0.0, 0.0))
        if c1 > c0:
            out[stage] = (s1 - s0) / (c1 - c0) * 1000
    return out


# ------------------------------------------------------------------------------------------------ main


def setup(server_url: str, backend_url: str) -> None:
    from mlpilot.client import Client

    with Client(server_url) as c:
        c.register_prompt(
            "bench-prompt",
            {
                "type": "chat",
                "template": [
                    {"role": "system", "content": "You are the support assistant of {{shop}}. Answer briefly."},
                    {"role": "user", "content": "{{question}}"},
                ],
                "variables": {"shop": {"default": "Acme"}},
            },
        )
        c.register_app(APP, {"prompt": "bench-prompt", "generator": {"base_url": backend_url, "model": "fake-llm"}})
        c.deploy(APP, f"{APP}:1")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if APP in {m["id"] for m in httpx.get(f"{server_url}/v1/models", timeout=5).json()["data"]}:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{APP} not served after 30 s")


LABELS = {"direct": "direct to the backend", "proxy": "bare Python proxy", "mlpilot": "**via mlpilot**"}


def fmt_table(rows: list[tuple[str, dict[str, dict[str, float]]]]) -> str:
    lines = [
        "| measure | path | p50 | p90 | p99 | added p50 (paired) | added (p50 - p50) | added (p90 - p90) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, per_path in rows:
        for path, s in per_path.items():
            added = (
                f"**{s['added_p50_paired']:.2f}** | {s['added_p50_of_p50s']:.2f} | {s['added_p90_of_p90s']:.2f}"
                if "added_p50_paired" in s
                else " | | "
            )
            lines.append(
                f"| {label if path == 'direct' else ''} | {LABELS[path]} | {s['p50']:.2f} | {s['p90']:.2f} "
                f"| {s['p99']:.2f} | {added} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="measured rounds per mode (a request per path)")
    parser.add_argument("--openai-requests", type=int, default=200, help="the same with the openai client (0: skip)")
    parser.add_argument("--token-delay-ms", type=float, default=2.0, help="the fake backend's pause between chunks")
    parser.add_argument("--serve-proxy", nargs=2, metavar=("PORT", "BACKEND_URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_proxy:
        serve_proxy(int(args.serve_proxy[0]), args.serve_proxy[1])
        return

    work = Path(tempfile.mkdtemp(prefix="mlpilot-llm-bench-"))
    env = {k: v for k, v in os.environ.items() if k != "MLPILOT_URL"}
    load_start = os.getloadavg()
    wall = time.perf_counter()
    procs: list[Proc] = []
    try:
        port, pport, sport = free_port(), free_port(), free_port()
        backend = f"http://127.0.0.1:{port}/v1"
        server_url = f"http://127.0.0.1:{sport}"
        procs.append(Proc(
            [sys.executable, "-m", "mlpilot.testing.fake_llm", "--port", str(port),
             "--token-delay-ms", str(args.token_delay_ms)],
            env, work / "fake.log", f"{backend}/models",
        ))  # fmt: skip
        procs.append(Proc([sys.executable, __file__, "--serve-proxy", str(pport), backend], env, work / "proxy.log",
                          f"http://127.0.0.1:{pport}/v1/models"))  # fmt: skip
        procs.append(Proc(
            [MLPILOT, "up", "--port", str(sport)],
            {**env, "MLPILOT_HOME": str(work / "home"), "MLPILOT_SERVER__GRPC": "0"},
            work / "server.log", f"{server_url}/api/v1/health",
        ))  # fmt: skip
        setup(server_url, backend)
        print(f"pids: backend {procs[0].proc.pid}, proxy {procs[1].proc.pid}, mlpilot {procs[2].proc.pid}", flush=True)

        headers = {"content-type": "application/json"}
        clients = {
            "direct": httpx.Client(base_url=backend, headers=headers, timeout=30),
            "proxy": httpx.Client(base_url=f"http://127.0.0.1:{pport}/v1", headers=headers, timeout=30),
            "mlpilot": httpx.Client(base_url=f"{server_url}/v1", headers=headers, timeout=30),
        }
        user = [{"role": "user", "content": QUESTION}]
        m_plain = orjson.dumps({"model": APP, "messages": user})
        m_stream = orjson.dumps({"model": APP, "messages": user, "stream": True,
                                 "stream_options": {"include_usage": True}})  # fmt: skip
        # What mlpilot sends the backend, captured from the backend, is the body of the direct and proxy paths.
        chat_once(clients["mlpilot"], m_plain)
        d_plain = orjson.dumps(httpx.get(f"{backend}/_seen", timeout=5).json()[-1])
        stream_once(clients["mlpilot"], m_stream)
        d_stream = orjson.dumps(httpx.get(f"{backend}/_seen", timeout=5).json()[-1])
        print(f"backend bodies:\n  {d_plain.decode()}\n  {d_stream.decode()}", flush=True)
        bodies = {k: (m_plain, m_stream) if k == "mlpilot" else (d_plain, d_stream) for k in PATHS}
        expected = f"You said: {QUESTION}"

        def plain(k: str) -> Probe:
            def go() -> tuple[float]:
                s, text = chat_once(clients[k], bodies[k][0])
                if text != expected:
                    raise RuntimeError(f"{k}: unexpected answer {text!r}")
                return (s,)

            return go

        def streamed(k: str) -> Probe:
            def go() -> tuple[float, float]:
                ttft, total, text = stream_once(clients[k], bodies[k][1])
                if text != expected:
                    raise RuntimeError(f"{k}: unexpected answer {text!r}")
                return ttft, total

            return go

        rounds(WARMUP, {k: plain(k) for k in PATHS})
        rounds(WARMUP, {k: streamed(k) for k in PATHS})
        rows: list[tuple[str, dict[str, dict[str, float]]]] = []
        server_view: dict[str, dict[str, float]] = {}
        t = time.perf_counter()
        before = stage_sums(server_url)
        r = rounds(args.requests, {k: plain(k) for k in PATHS})
        server_view["non-streaming"] = stage_means(before, stage_sums(server_url))
        rows.append(("non-streaming chat, total", summarize(r, 0)))
        print(f"non-streaming: {time.perf_counter() - t:.0f} s", flush=True)
        t = time.perf_counter()
        before = stage_sums(server_url)
        r = rounds(args.requests, {k: streamed(k) for k in PATHS})
        server_view["streaming"] = stage_means(before, stage_sums(server_url))
        rows.append(("streaming chat, time to first token", summarize(r, 0)))
        rows.append(("streaming chat, total", summarize(r, 1)))
        print(f"streaming: {time.perf_counter() - t:.0f} s", flush=True)
        for c in clients.values():
            c.close()

        oai_rows: list[tuple[str, dict[str, dict[str, float]]]] = []
        if args.openai_requests:
            import openai

            t = time.perf_counter()
            base = {"direct": backend, "proxy": f"http://127.0.0.1:{pport}/v1", "mlpilot": f"{server_url}/v1"}
            oai = {k: openai.OpenAI(base_url=base[k], api_key="unused", max_retries=0) for k in PATHS}
            kw = {k: {"model": APP, "messages": user} if k == "mlpilot" else
                  {"model": "fake-llm", "messages": orjson.loads(d_plain)["messages"]} for k in PATHS}  # fmt: skip

            def oai_probe(k: str, stream: bool) -> Probe:
                def go() -> tuple[float, float]:
                    first, total, text = openai_once(oai[k], kw[k], stream)
                    if text != expected:
                        raise RuntimeError(f"{k}: unexpected answer {text!r}")
                    return first, total

                return go

            rounds(WARMUP // 2, {k: oai_probe(k, False) for k in PATHS})
            rounds(WARMUP // 2, {k: oai_probe(k, True) for k in PATHS})
            r = rounds(args.openai_requests, {k: oai_probe(k, False) for k in PATHS})
            oai_rows.append(("non-streaming chat, total", summarize(r, 0)))
            r = rounds(args.openai_requests, {k: oai_probe(k, True) for k in PATHS})
            oai_rows.append(("streaming chat, time to first token", summarize(r, 0)))
            oai_rows.append(("streaming chat, total", summarize(r, 1)))
            for c in oai.values():
                c.close()
            print(f"openai client: {time.perf_counter() - t:.0f} s", flush=True)
    finally:
        for p in reversed(procs):
            p.stop()
        shutil.rmtree(work, ignore_errors=True)

    load_end = os.getloadavg()
    result: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python bench/llm_overhead.py", *sys.argv[1:]]),
        "machine": f"{platform.processor() or platform.machine()} ({os.cpu_count()} CPUs), Python "
        f"{platform.python_version()}",
        "load_average": {"start": load_start[0], "end": load_end[0]},
        "requests": args.requests,
        "openai_requests": args.openai_requests,
        "token_delay_ms": args.token_delay_ms,
        "answer_words": len(expected.split()),
        "httpx": dict(rows),
        "openai": dict(oai_rows),
        "server_stage_means_ms": server_view,
        "wall_s": time.perf_counter() - wall,
    }
    md = [
        f"Command: `{result['command']}`; {result['date']}; machine: {result['machine']}; load average "
        f"{load_start[0]:.1f} at the start, {load_end[0]:.1f} at the end; wall time {result['wall_s']:.0f} s. "
        f"Backend: fake_llm, {args.token_delay_ms:g} ms between streamed chunks, answers of {result['answer_words']} "
        f"words. Concurrency 1, {args.requests} rounds per mode (a request per path, order rotating), raw httpx "
        "with keep-alive. Times in ms; added = path - direct.",
        "",
        fmt_table(rows),
    ]
    if oai_rows:
        md += ["", f"Official `openai` client ({args.openai_requests} rounds per mode):", "", fmt_table(oai_rows)]
    md += ["", "mlpilot's own view, mean ms per request from its `/metrics` (`total`: arrival to the end of the "
           "response; `predict`: the app's part): "
           + "; ".join(f"{mode}: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(view.items()))
                       for mode, view in server_view.items())]  # fmt: skip
    text = "\n".join(md) + "\n"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "llm_overhead.md").write_text(text)
    (RESULTS / "llm_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    print("\n" + text)


if __name__ == "__main__":
    main()
