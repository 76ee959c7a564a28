"""Test helpers (factories, processes): plain functions, imported explicitly by tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
MLPILOT = str(Path(sys.executable).with_name("mlpilot"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """A real ``mlpilot up`` (or another serving ``command``: ``serve`` with ``ready_path="/v2/health/ready"``) in a
    subprocess, stopped by PID (SIGTERM, then SIGKILL)."""

    def __init__(
        self,
        home: Path,
        port: int | None = None,
        extra_env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        command: str = "up",
        ready_path: str = "/api/v1/health",
    ) -> None:
        self.ready_path = ready_path
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = home.parent / f"server-{self.port}.log"
        env = {**os.environ, "MLPILOT_HOME": str(home), **(extra_env or {})}
        env.pop("MLPILOT_URL", None)
        self._log = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [MLPILOT, command, "--port", str(self.port), *args], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early: {self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}{self.ready_path}", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server not ready in {timeout}s: {self.log.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()


def run_cli(
    *args: str, home: Path, url: str | None = None, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MLPILOT_HOME": str(home), "COLUMNS": "200"}
    env.pop("MLPILOT_URL", None)
    if url:
        env["MLPILOT_URL"] = url
    result = subprocess.run([MLPILOT, *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(
            f"mlpilot {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


class FakeLLMProcess:
    """``python -m mlpilot.testing.fake_llm`` in a subprocess (a real OpenAI-compatible HTTP server), stopped by PID."""

    def __init__(self, port: int | None = None, token_delay_ms: float = 0.0) -> None:
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        cmd = [sys.executable, "-m", "mlpilot.testing.fake_llm", "--port", str(self.port)]
        self.proc = subprocess.Popen([*cmd, "--token-delay-ms", str(token_delay_ms)])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("the fake LLM server exited early")
            try:
                if httpx.get(f"{self.base_url}/models", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("the fake LLM server did not start in 20 s")

    def seen(self) -> list[dict[str, object]]:
        """The request bodies the server received, oldest first (its last 100)."""
        return list(httpx.get(f"{self.base_url}/_seen", timeout=5).json())

    def seen_system(self) -> str:
        """The system message of the last chat request it received."""
        chats = [b for b in self.seen() if "messages" in b]
        messages = chats[-1]["messages"] if chats else []
        assert isinstance(messages, list)
        return " ".join(str(m.get("content")) for m in messages if m.get("role") == "system")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
