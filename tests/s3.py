"""A real S3 API for tests: moto's server in a subprocess on 127.0.0.1 (killed by PID at the end of the session),
one bucket per session, one prefix per test.

Credentials are dummies passed explicitly in the storage options, so no AWS credentials of the environment are
read or sent anywhere. The server runs in its own process so that what a test measures in its own process (memory,
threads) is the client's only.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import free_port

BUCKET = "mlpilot-test"


def _start_moto(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``moto.server`` on a free port; retried when another process took the port first."""
    problem = ""
    for _ in range(3):
        port = free_port()
        out = open(log, "wb")  # noqa: SIM115 - closed below
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
        out.close()
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"{url}/moto-api/", timeout=1).status_code == 200:
                    return proc, url
            except httpx.TransportError:
                time.sleep(0.1)
        problem = log.read_text(errors="replace")[-2000:]
        _stop(proc)
    raise RuntimeError(f"moto server did not start: {problem}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.fixture(scope="session")
def s3_storage_options(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Storage options (endpoint, dummy key and secret) of a moto S3 server running for the session."""
    pytest.importorskip("s3fs", reason="mlpilot[s3] is not installed")
    pytest.importorskip("moto.server", reason="moto[server] is not installed")
    proc, endpoint = _start_moto(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        options: dict[str, Any] = {
            "endpoint_url": endpoint,
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"region_name": "us-east-1"},
        }
        import s3fs

        # in us-east-1 (s3fs would send the region as a location constraint, which us-east-1 refuses)
        s3fs.S3FileSystem(skip_instance_cache=True, **options).call_s3("create_bucket", Bucket=BUCKET)
        yield options
    finally:
        _stop(proc)


def option_args(options: dict[str, Any]) -> list[str]:
    """Storage options as ``mlpilot up --artifacts-option`` arguments: strings as KEY=VALUE, the rest as KEY:=JSON."""
    out: list[str] = []
    for key, value in options.items():
        pair = f"{key}={value}" if isinstance(value, str) else f"{key}:={json.dumps(value)}"
        out += ["--artifacts-option", pair]
    return out


@pytest.fixture(scope="session")
def s3_url(s3_storage_options: dict[str, Any]) -> str:
    """``s3://<bucket>`` of the session's moto server (the bucket exists)."""
    return f"s3://{BUCKET}"


@pytest.fixture
def s3_root(s3_url: str) -> str:
    """A fresh prefix in the session's bucket, so tests never see each other's objects."""
    return f"{s3_url}/t-{uuid.uuid4().hex[:12]}"
