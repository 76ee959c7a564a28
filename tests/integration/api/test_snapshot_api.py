"""The routes remote data planes use, on a real ``mlpilot up``: the routing snapshot (at once, or a long-poll that
answers at once when behind, waits and times out, wakes on a change made by another process, rejects bad
parameters) and blobs by digest."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlpilot import Client
from mlpilot.app import build_platform
from mlpilot.serving.snapshot import RoutingSnapshot
from mlpilot.settings import Settings
from tests.factories import iris_frame
from tests.helpers import ServerProcess

SNAPSHOT = "/api/v1/snapshot"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    from sklearn.linear_model import LogisticRegression

    X, y = iris_frame()
    home = tmp_path_factory.mktemp("snapshot-api") / "home"
    proc = ServerProcess(home, args=("--no-grpc",), extra_env={"MLPILOT_MONITORS__ENABLED": "0"})
    try:
        with Client(proc.url) as c:
            for C in (1.0, 0.01):
                c.register_model("iris", LogisticRegression(C=C, max_iter=300).fit(X, y), sample=X.head(3))
            d = c.deploy("iris", "iris:1", variant="a")
            c.deploy("iris", "iris:2", variant="b", shadow=True, sticky_header="x-user")
            spec = c.get_deployment("iris").spec.model_dump(mode="json")
            spec["quarantine"] = [
                {"feature": "sepal_length", "low": 0.0, "high": 20.0},
                {"feature": "petal_width", "nulls": True, "action": "route", "variant": "a", "reason": "gaps"},
            ]
            c.apply_deployment("iris", spec)
            c.deploy("other", "iris:2", variant="only")
            assert d.revision == 1
        yield proc
    finally:
        proc.stop()


def _home(server: ServerProcess) -> Path:
    return server.log.parent / "home"


def _version(server: ServerProcess) -> int:
    body = httpx.get(f"{server.url}{SNAPSHOT}", params={"after": 0, "wait_s": 0}, timeout=10).json()
    return int(body["version"])


def _change(server: ServerProcess, weights: dict[str, int]) -> None:
    """A change made by another process than the server (an embedded client on the same store)."""
    with Client(home=_home(server)) as c:
        c.set_traffic("other", weights)


def test_the_snapshot_at_once_is_the_compiled_one_and_round_trips(server: ServerProcess) -> None:
    r = httpx.get(f"{server.url}{SNAPSHOT}", timeout=10)
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["changed"] is True
    snap = RoutingSnapshot.from_dict(body)
    platform = build_platform(Settings(home=_home(server)), migrate=False)
    try:
        compiled = platform.deployments.snapshot()
    finally:
        platform.close()
    assert snap == compiled  # lossless over HTTP, on a real snapshot with shadows, sticky header, quarantine
    iris = snap.deployments["iris"]
    assert iris.shadows == ("b",) and iris.sticky_header == "x-user" and len(iris.quarantine) == 2
    assert RoutingSnapshot.from_json(snap.to_json()) == snap
    with Client(server.url) as c:  # the SDK's snapshot() reads the same route
        assert RoutingSnapshot.from_dict(c.snapshot()) == snap


def test_long_poll_answers_at_once_when_the_data_plane_is_behind(server: ServerProcess) -> None:
    version = _version(server)
    r = httpx.get(f"{server.url}{SNAPSHOT}", params={"after": version - 1, "wait_s": 30}, timeout=10)
    assert r.status_code == 200
    assert r.json()["changed"] is True and r.json()["version"] == version
    assert set(RoutingSnapshot.from_dict(r.json()).deployments) == {"iris", "other"}


def test_long_poll_waits_then_says_unchanged(server: ServerProcess) -> None:
    version = _version(server)
    t0 = time.monotonic()
    r = httpx.get(f"{server.url}{SNAPSHOT}", params={"after": version, "wait_s": 0.5}, timeout=10)
    waited = time.monotonic() - t0
    assert r.status_code == 200
    assert r.json() == {"version": version, "changed": False}
    assert waited >= 0.5  # it held the request for wait_s (a lower bound, not a latency assertion)
    r = httpx.get(f"{server.url}{SNAPSHOT}", params={"after": version + 100, "wait_s": 0}, timeout=10)
    assert r.json() == {"version": version, "changed": False}  # a data plane ahead learns the current version


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no thread count")


def test_long_polls_wake_on_a_change_from_another_process_without_a_thread_each(server: ServerProcess) -> None:
    version = _version(server)
    before = _threads(server.proc.pid)
    results: list[Any] = []

    def poll() -> None:  # wait_s beyond the cap is accepted (capped), not a 400
        r = httpx.get(f"{server.url}{SNAPSHOT}", params={"after": version, "wait_s": 1e9}, timeout=90)
        results.append((r.status_code, r.json()))

    pollers = [threading.Thread(target=poll) for _ in range(24)]
    for t in pollers:
        t.start()
    time.sleep(1.0)  # let every request reach the server and wait there
    assert not results, "long-polls answered before any change"
    during = _threads(server.proc.pid)
    _change(server, {"only": 100})
    for t in pollers:
        t.join(60)
    assert len(results) == 24
    for status, body in results:
        assert status == 200 and body["changed"] is True and body["version"] > version
    assert during < before + 24, (before, during)  # waiting costs no thread per waiter


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"after": -1}, "after"),
        ({"after": "x"}, "after"),
        ({"after": 1.5}, "after"),
        ({"after": 0, "wait_s": -1}, "wait_s"),
        ({"after": 0, "wait_s": "nan"}, "wait_s"),
        ({"after": 0, "wait_s": "inf"}, "wait_s"),
        ({"after": 0, "wait_s": "soon"}, "wait_s"),
    ],
)
def test_bad_parameters_are_400s_naming_the_parameter(
    server: ServerProcess, params: dict[str, Any], field: str
) -> None:
    r = httpx.get(f"{server.url}{SNAPSHOT}", params=params, timeout=10)
    assert r.status_code == 400, r.text
    assert f"query.{field}" in r.json()["error"]


def test_blobs_by_digest(server: ServerProcess) -> None:
    with Client(server.url) as c:
        digest = c.get_version("iris:1").digest
    r = httpx.get(f"{server.url}/api/v1/blobs/{digest}", timeout=10)
    assert r.status_code == 200 and r.headers["x-mlpilot-digest"] == digest
    assert f"sha256:{hashlib.sha256(r.content).hexdigest()}" == digest
    assert int(r.headers["content-length"]) == len(r.content)
    assert httpx.head(f"{server.url}/api/v1/blobs/{digest}", timeout=10).status_code == 200
    unknown = "sha256:" + "0" * 64
    r = httpx.get(f"{server.url}/api/v1/blobs/{unknown}", timeout=10)
    assert r.status_code == 404 and unknown in r.json()["error"]
    assert httpx.head(f"{server.url}/api/v1/blobs/{unknown}", timeout=10).status_code == 404
    for bad in ("sha256:xyz", "md5:" + "0" * 32, "nothing"):
        r = httpx.get(f"{server.url}/api/v1/blobs/{bad}", timeout=10)
        assert r.status_code == 400 and "malformed digest" in r.json()["error"], r.text
        assert httpx.head(f"{server.url}/api/v1/blobs/{bad}", timeout=10).status_code == 400


def test_a_stopping_control_plane_answers_open_long_polls_instead_of_holding_its_shutdown(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path / "home", args=("--no-grpc",), extra_env={"MLPILOT_MONITORS__ENABLED": "0"})
    answers: list[httpx.Response] = []
    try:
        version = _version(proc)
        poller = threading.Thread(
            target=lambda: answers.append(
                httpx.get(f"{proc.url}{SNAPSHOT}", params={"after": version, "wait_s": 60}, timeout=90)
            )
        )
        poller.start()
        time.sleep(0.5)  # the request waits in the server
        assert not answers
    finally:
        proc.stop()  # SIGTERM; uvicorn would otherwise wait for the long-poll up to its graceful timeout (10 s)
    poller.join(30)
    assert len(answers) == 1 and answers[0].status_code == 200
    assert answers[0].json() == {"version": version, "changed": False}
    assert b"timeout graceful shutdown exceeded" not in proc.log.read_bytes()
