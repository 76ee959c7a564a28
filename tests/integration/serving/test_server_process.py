"""A real ``mlpilot up`` tunes its own process: once ready, what is alive is frozen out of the garbage collector's
reach (``server.gc_freeze``), and the collector's pauses are in /metrics by generation."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.helpers import ServerProcess

pytestmark = pytest.mark.slow


def _metric(text: str, name: str) -> float:
    [value] = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " ")]
    return value


@pytest.mark.parametrize("freeze", [True, False])
def test_the_server_freezes_its_startup_heap_and_reports_gc_pauses(tmp_path: Path, freeze: bool) -> None:
    env = {"MLPILOT_SERVER__GC_FREEZE": "1" if freeze else "0"}
    server = ServerProcess(tmp_path / "home", extra_env=env, args=("--no-grpc",))
    try:
        for _ in range(20):  # some work, so that young collections run
            assert httpx.get(f"{server.url}/api/v1/deployments", timeout=10).status_code == 200
        text = httpx.get(f"{server.url}/metrics", timeout=10).text
    finally:
        server.stop()
    frozen = _metric(text, "mlpilot_gc_frozen_objects")
    if freeze:
        assert frozen > 10_000  # the interpreter, the libraries and the app: far more than this
    else:
        assert frozen == 0
    assert _metric(text, 'mlpilot_gc_pause_seconds_count{generation="0"}') > 0
    assert 'mlpilot_gc_pause_seconds_bucket{generation="2",le="0.05"}' in text
