"""Faults of the control-plane store under a real ``mlpilot up``.

* SQLite locked by another process (``BEGIN EXCLUSIVE``) longer than the busy timeout: control writes answer 503
  (``Unavailable``, ``Retry-After``), reads and inference go on — in strict durability too, whose responses wait for
  the request log, which must not wait for the store — and everything works again once the lock is released.
* PostgreSQL cut off (a TCP proxy that resets every connection; the machine's PostgreSQL is never touched): the
  control API answers 503, inference is served from the last snapshot, the request log is still written, the
  scheduler's leader loop survives; restored, all of it recovers by itself, and nothing acknowledged is lost.
* ``kill -9`` while versions are registered and the deployment is updated in a loop, on SQLite and PostgreSQL:
  after a restart on the same store every acknowledged write is there, the snapshot compiles, the server is ready.
  (``kill -9`` under inference load — the request log — is tests/e2e/test_crash_durability.py.)
"""

from __future__ import annotations

import io
import os
import re
import signal
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from mlpilot import Client
from mlpilot.store import Store
from mlpilot.store.migrate import alembic_config
from mlpilot.telemetry.query import count_records
from tests.factories import iris_frame
from tests.faults import SqliteWriteLock, TcpProxy
from tests.helpers import ServerProcess

pytestmark = pytest.mark.slow

BODY = orjson.dumps(
    {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]}
)
BASE_ENV = {"MLPILOT_SERVER__GRPC": "0", "MLPILOT_LOGS__FLUSH_INTERVAL_S": "0.2", "MLPILOT_INCIDENTS__RCA": "false"}


def _deploy(url: str) -> None:
    """Two versions of a model, deployed as variants ``a`` (all traffic) and ``b`` (none)."""
    from sklearn.linear_model import LogisticRegression

    X, y = iris_frame()
    Xn = X.to_numpy()
    with Client(url) as c:
        c.register_model("iris", LogisticRegression(max_iter=300).fit(Xn, y), sample=Xn[:2])
        c.register_model("iris", LogisticRegression(C=0.5, max_iter=300).fit(Xn, y), sample=Xn[:2])
        c.deploy("iris", "iris:1", variant="a")
        c.deploy("iris", "iris:2", variant="b")
    _until(lambda: httpx.get(f"{url}/v2/models/iris/ready").status_code == 200, 30, "the deployment to be served")


def _until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _traffic(http: httpx.Client, a: int) -> httpx.Response:
    return http.put("/api/v1/deployments/iris/traffic", json={"weights": {"a": a, "b": 100 - a}})


def _infer(http: httpx.Client, n: int) -> list[tuple[float, str, str]]:
    """``n`` predictions, each answered 200: (seconds it took, request id, variant that answered)."""
    out = []
    for _ in range(n):
        t0 = time.monotonic()
        r = http.post("/v2/models/iris/infer", content=BODY)
        assert r.status_code == 200, r.text
        out.append((time.monotonic() - t0, r.headers["x-request-id"], r.headers["x-mlpilot-variant"]))
    return out


def _assert_unavailable(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text  # not a 500: the store is a dependency that is away, not a bug
    body = r.json()
    assert body["kind"] == "unavailable" and body["error"].startswith("the store is unavailable"), body
    assert r.headers.get("retry-after") == "1"


def _serves_the_newest_snapshot(http: httpx.Client) -> bool:
    m = re.search(r"^mlpilot_snapshot_version (\S+)$", http.get("/metrics").text, re.M)
    return m is not None and float(m.group(1)) == http.get("/api/v1/health").json()["snapshot_version"]


def _catalogued(store: Store) -> int:
    return sum(s["rows"] for s in store.list_segments("iris"))


# ---------------------------------------------------------------------------------------------- SQLite locked


def test_sqlite_locked_by_another_process(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {
        **BASE_ENV,
        "MLPILOT_STORE__BUSY_TIMEOUT_S": "2",
        "MLPILOT_LOGS__DURABILITY": "strict",  # responses wait for the request log: it must not wait for the store
    }
    server = ServerProcess(home, extra_env=env)
    lock: SqliteWriteLock | None = None
    store = Store.from_url(f"sqlite:///{home / 'mlpilot.db'}")
    try:
        _deploy(server.url)
        with httpx.Client(base_url=server.url, timeout=30) as http:
            _infer(http, 20)
            lock = SqliteWriteLock(home / "mlpilot.db")
            t0 = time.monotonic()
            _assert_unavailable(_traffic(http, 0))
            assert 1.5 < time.monotonic() - t0 < 10  # it waited for the busy timeout, then gave up
            _assert_unavailable(http.patch("/api/v1/artifacts/iris/versions/1/tags", json={"tags": {"k": "v"}}))
            assert http.get("/api/v1/deployments/iris").status_code == 200  # reads go on (WAL)
            served = _infer(http, 60)  # a few flushes, each segment's catalogue entry waiting for the lock
            assert max(s for s, _, _ in served) < 1.0, max(s for s, _, _ in served)
            assert {v for _, _, v in served} == {"a"}
            lock.release()
            r = _traffic(http, 0)  # no restart: the next write goes through
            assert r.status_code == 200, r.text
            _until(lambda: {v for _, _, v in _infer(http, 5)} == {"b"}, 10, "the new snapshot to be served")
            # the segments written while the store was locked are catalogued once it is back
            _until(lambda: _catalogued(store) == count_records(home / "logs", "iris") >= 85, 20, "the catalogue")
    finally:
        if lock is not None:
            lock.close()
        server.stop()
        store.close()
    text = server.log.read_text()
    assert "this is a bug" not in text, text[-3000:]  # no 500
    assert (
        text.count("request log: cannot catalogue segments in the store (the store is unavailable: database is locked)")
        == 1
    ), text
    assert text.count("request log: cataloguing segments in the store again") == 1
    with sqlite3.connect(home / "mlpilot.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


# ---------------------------------------------------------------------------------------------- PostgreSQL away


@pytest.fixture
def pg_schema(pg_url: str) -> Iterator[tuple[str, str]]:
    """A fresh schema (dropped afterwards): the URL with which to reach it, and its name."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield pg_url, schema
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _schema_url(url: str, schema: str, port: int | None = None) -> str:
    u = sa.engine.make_url(url)
    if port is not None:
        u = u.set(port=port)
    sep = "&" if u.query else "?"
    return f"{u.render_as_string(hide_password=False)}{sep}options=-csearch_path%3D{schema}"


@pytest.mark.postgres
def test_postgres_cut_off_and_restored(tmp_path: Path, pg_schema: tuple[str, str]) -> None:
    url, schema = pg_schema
    u = sa.engine.make_url(url)
    proxy = TcpProxy((u.host or "127.0.0.1", u.port or 5432))
    home = tmp_path / "home"
    env = {
        **BASE_ENV,
        "MLPILOT_STORE__URL": _schema_url(url, schema, proxy.port),
        "MLPILOT_SERVER__LEADER_LEASE_S": "2",
    }
    server: ServerProcess | None = None
    store = Store.from_url(_schema_url(url, schema))  # the test's own view, around the proxy
    try:
        server = ServerProcess(home, extra_env=env)
        _deploy(server.url)
        with httpx.Client(base_url=server.url, timeout=30) as http:
            acked = [_traffic(http, a).json()["revision"] for a in (100, 90, 100)]
            _until(lambda: http.get("/api/v1/leader").json()["this_process_leads"], 10, "the server to lead")
            _until(lambda: _serves_the_newest_snapshot(http), 10, "the data plane to serve the last change")
            _infer(http, 10)
            proxy.cut()
            t0 = time.monotonic()
            _assert_unavailable(_traffic(http, 0))
            assert time.monotonic() - t0 < 5  # refused connections fail fast
            _assert_unavailable(http.get("/api/v1/deployments/iris"))
            assert http.get("/api/v1/health").status_code == 503
            served = _infer(http, 50)  # from the last snapshot
            assert {v for _, _, v in served} == {"a"}
            assert http.get("/v2/health/ready").status_code == 200
            logged = {rid for _, rid, _ in served}  # the request log is files: written while the store is away
            _until(lambda: logged <= _ids(home), 10, "the records served while PostgreSQL was away")
            time.sleep(3)  # longer than the leader's lease: it cannot renew it
            assert http.get("/api/v1/leader").status_code == 503
            proxy.restore()
            _until(lambda: _traffic(http, 0).status_code == 200, 20, "the control API to work again")
            _until(lambda: {v for _, _, v in _infer(http, 5)} == {"b"}, 10, "the new snapshot to be served")
            _until(lambda: http.get("/api/v1/leader").json().get("this_process_leads"), 15, "the server to lead again")
            revisions = [r["revision"] for r in http.get("/api/v1/deployments/iris/revisions").json()]
            assert set(acked) <= set(revisions)
            _until(
                lambda: _catalogued(store) == count_records(home / "logs", "iris"),
                20,
                "the segments written meanwhile to be catalogued",
            )
            assert server.proc.poll() is None
    finally:
        if server is not None:
            server.stop()
        proxy.close()
        store.close()
    text = server.log.read_text() if server is not None else ""
    assert "this is a bug" not in text, text[-3000:]
    assert text.count("snapshot feed cannot reach the store") == 1  # said once, not every poll
    assert "snapshot feed resumed" in text


def _ids(home: Path) -> set[str]:
    from mlpilot.telemetry.query import read_records

    return set(read_records(home / "logs", "iris", columns=["request_id"]).request_id)


# ---------------------------------------------------------------------------------------------- kill -9


class ControlWrites(threading.Thread):
    """Registers dataset versions, or moves the deployment's traffic, in a loop; keeps what was acknowledged."""

    def __init__(self, url: str, kind: str) -> None:
        super().__init__(daemon=True)
        self.url, self.kind = url, kind
        self.acked: list[dict[str, Any]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as http:
            i = 0
            while not self.stop.is_set():
                i += 1
                try:
                    if self.kind == "versions":
                        csv = f"x,y\n{i},{i * 2}\n{i + 1},{i * 3}\n".encode()
                        r = http.post(
                            "/api/v1/artifacts/data/versions",
                            files={"file": ("d.csv", io.BytesIO(csv))},
                            data={"kind": "dataset"},
                        )
                        if r.status_code == 201:
                            self.acked.append({"version": r.json()["version"], "digest": r.json()["digest"]})
                    else:
                        r = _traffic(http, i % 101)
                        if r.status_code == 200:
                            self.acked.append({"revision": r.json()["revision"], "a": i % 101})
                except httpx.HTTPError:
                    return  # the server is gone
                assert r.status_code < 500, r.text


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_kill_9_during_control_plane_writes(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    home = tmp_path / "home"
    env = dict(BASE_ENV)
    if backend == "postgres":
        url, schema = request.getfixturevalue("pg_schema")
        env["MLPILOT_STORE__URL"] = _schema_url(url, schema)
    server = ServerProcess(home, extra_env=env)
    writers: list[ControlWrites] = []
    try:
        _deploy(server.url)
        writers = [ControlWrites(server.url, "versions"), ControlWrites(server.url, "traffic")]
        for w in writers:
            w.start()
        _until(lambda: all(len(w.acked) >= 5 for w in writers), 30, "writes to be acknowledged")
        os.kill(server.proc.pid, signal.SIGKILL)  # in the middle of both loops
        server.proc.wait(10)
        for w in writers:
            w.join(15)
    finally:
        for w in writers:
            w.stop.set()
        server.stop()
    versions, traffic = writers
    restarted = ServerProcess(home, extra_env=env)  # waits until /api/v1/health answers: migrations ran, store read
    try:
        with httpx.Client(base_url=restarted.url, timeout=30) as http:
            _until(lambda: http.get("/v2/health/ready").status_code == 200, 30, "the data plane to be ready")
            stored = {v["version"]: v["digest"] for v in http.get("/api/v1/artifacts/data/versions").json()}
            assert sorted(stored) == list(range(1, len(stored) + 1))  # no gap, no duplicate
            assert all(stored.get(a["version"]) == a["digest"] for a in versions.acked)  # every acknowledged one
            assert len(stored) <= len(versions.acked) + 1  # at most the one in flight, done but not answered
            last = versions.acked[-1]["version"]
            assert http.get(f"/api/v1/artifacts/data/versions/{last}/content").status_code == 200  # bytes verified
            revisions = {r["revision"]: r["spec"] for r in http.get("/api/v1/deployments/iris/revisions").json()}
            for a in traffic.acked:
                assert revisions[a["revision"]]["traffic"] == {"a": a["a"], "b": 100 - a["a"]}
            current = http.get("/api/v1/deployments/iris").json()
            assert traffic.acked[-1]["revision"] <= current["revision"] <= traffic.acked[-1]["revision"] + 1
            snapshot = http.get("/api/v1/snapshot")
            assert snapshot.status_code == 200, snapshot.text  # compiles
            weights = current["spec"]["traffic"]
            variants = {v for _, _, v in _infer(http, 20)}  # served as the store says
            assert variants and variants <= {name for name, w in weights.items() if w > 0}
            r = _traffic(http, 100)  # and takes writes again
            assert r.status_code == 200 and r.json()["revision"] == current["revision"] + 1
    finally:
        restarted.stop()
    store = Store.from_url(env.get("MLPILOT_STORE__URL") or f"sqlite:///{home / 'mlpilot.db'}")
    try:
        with store.engine.connect() as conn:  # migrations: at the newest revision, recorded once
            versions_table = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
        assert versions_table == [ScriptDirectory.from_config(alembic_config(store.engine)).get_current_head()]
        events = store.list_events(subject="deployment:iris", limit=10_000)  # each acknowledged change has its event
        assert {a["revision"] for a in traffic.acked} <= {(e.after or {}).get("revision") for e in events}
    finally:
        store.close()
    if backend == "sqlite":
        with sqlite3.connect(home / "mlpilot.db") as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
