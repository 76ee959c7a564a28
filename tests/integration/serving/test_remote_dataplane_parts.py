"""The parts of a remote data plane against real HTTP servers: ``HttpBlobSource`` (download, verify, cache, every
failure), ``RemoteFeed`` (apply, keep, restore, outages logged once, bad answers) and ``DataServer`` (ready only
once a snapshot is loaded, no control API). The control plane is a real ``mlpilot up``; the misbehaving servers
are real HTTP servers on 127.0.0.1 that answer what the test tells them."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from mlpilot import Client, IntegrityError, InvalidArgument, NotFound, Unavailable
from mlpilot.blobs import BlobStore, HttpBlobSource, sha256_file
from mlpilot.dataserver import DataServer
from mlpilot.serving.dataplane import DataPlane
from mlpilot.serving.remote_feed import RemoteFeed
from mlpilot.serving.snapshot import RoutingSnapshot
from mlpilot.settings import LogSettings, ServerSettings, Settings
from tests.factories import iris_frame
from tests.helpers import ServerProcess, free_port


class CannedServer:
    """A real HTTP server on 127.0.0.1 that answers every request with the status and body it is told."""

    def __init__(self, status: int = 200, body: bytes = b"") -> None:
        # one (status, body) pair, replaced whole by ``answer``: a request reads it once, so a change of answer
        # while it is being sent cannot pair one answer's length with another's body
        self.canned, self.requests = (status, body), 0
        canned = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, with_body: bool) -> None:
                canned.requests += 1
                status, body = canned.canned
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                if with_body:
                    self.wfile.write(body)

            def do_GET(self) -> None:
                self._answer(True)

            def do_HEAD(self) -> None:
                self._answer(False)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, status: int, body: Any) -> None:
        self.canned = (status, body if isinstance(body, bytes) else orjson.dumps(body))

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


@pytest.fixture
def canned() -> Iterator[CannedServer]:
    server = CannedServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    from sklearn.linear_model import LogisticRegression

    X, y = iris_frame()
    home = tmp_path_factory.mktemp("remote-parts") / "home"
    proc = ServerProcess(home, args=("--no-grpc",), extra_env={"MLPILOT_MONITORS__ENABLED": "0"})
    try:
        with Client(proc.url) as c:
            c.register_model("iris", LogisticRegression(max_iter=300).fit(X, y), sample=X.head(3))
            c.deploy("iris", "iris:1")
        yield proc
    finally:
        proc.stop()


def _digest(control: ServerProcess, ref: str = "iris:1") -> str:
    with Client(control.url) as c:
        return c.get_version(ref).digest


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


DEAD = f"http://127.0.0.1:{free_port()}"  # nothing listens there


# ---------------------------------------------------------------------------------------------- HttpBlobSource


def test_blob_source_downloads_verifies_and_serves_from_its_cache(control: ServerProcess, tmp_path: Path) -> None:
    digest = _digest(control)
    cache = tmp_path / "cache"
    with HttpBlobSource(control.url, cache) as blobs:
        assert not blobs.cached(digest) and blobs.exists(digest)
        blob = blobs.open_verified(digest)
        assert blob.digest == digest and blob.path.is_relative_to(cache) and sha256_file(blob.path) == digest
        assert blobs.cached(digest)
        assert b"".join(blobs.read_chunks(digest)) == blob.path.read_bytes()
    with HttpBlobSource(DEAD, cache) as offline:  # the control plane away: cached blobs still load, verified
        assert offline.open_verified(digest).path == blob.path and offline.exists(digest)
        with pytest.raises(Unavailable, match="unreachable"):
            offline.exists("sha256:" + "1" * 64)
        with pytest.raises(Unavailable, match="failed"):
            offline.open_verified("sha256:" + "1" * 64)


def test_unknown_and_malformed_digests(control: ServerProcess, tmp_path: Path) -> None:
    with HttpBlobSource(control.url, tmp_path / "cache") as blobs:
        unknown = "sha256:" + "0" * 64
        assert blobs.exists(unknown) is False
        with pytest.raises(NotFound, match=unknown):
            blobs.open_verified(unknown)
        for bad in ("sha256:xyz", "nothing"):
            with pytest.raises(InvalidArgument, match="malformed digest"):
                blobs.open_verified(bad)
            with pytest.raises(InvalidArgument, match="malformed digest"):
                blobs.exists(bad)
        with pytest.raises(InvalidArgument, match="read-only"):
            blobs.put_bytes(b"x")
    assert _files(tmp_path / "cache") == []


def test_a_blob_corrupt_at_the_control_plane_is_refused(control: ServerProcess, tmp_path: Path) -> None:
    with Client(control.url) as c:
        digest = c.register_prompt("to-corrupt", {"template": "Hello {{name}}."}).digest
    stored = next(p for p in _files(control.log.parent / "home" / "artifacts") if p.name == digest[9:])
    stored.write_bytes(b"tampered")
    with HttpBlobSource(control.url, tmp_path / "cache") as blobs, pytest.raises(IntegrityError, match="corrupt"):
        blobs.open_verified(digest)
    assert _files(tmp_path / "cache") == []


def test_bytes_that_do_not_match_the_digest_are_not_cached(canned: CannedServer, tmp_path: Path) -> None:
    canned.answer(200, b"these are not the bytes you asked for")
    digest = "sha256:" + "ab" * 32
    with HttpBlobSource(canned.url, tmp_path / "cache") as blobs, pytest.raises(IntegrityError) as err:
        blobs.open_verified(digest)
    assert err.value.detail["expected"] == digest and canned.url in err.value.message
    assert _files(tmp_path / "cache") == []  # no blob, no temporary file
    canned.answer(503, {"error": "overloaded", "kind": "unavailable"})
    with HttpBlobSource(canned.url, tmp_path / "cache") as blobs, pytest.raises(Unavailable, match="overloaded"):
        blobs.open_verified(digest)
    canned.answer(500, b"<html>proxy error</html>")
    with HttpBlobSource(canned.url, tmp_path / "cache") as blobs, pytest.raises(Exception, match="HTTP 500"):
        blobs.open_verified(digest)


def test_a_bad_cached_copy_is_dropped_and_downloaded_again(control: ServerProcess, tmp_path: Path) -> None:
    digest = _digest(control)
    with HttpBlobSource(control.url, tmp_path / "cache") as blobs:
        path = blobs.open_verified(digest).path
        good = path.read_bytes()
        path.write_bytes(b"bit rot")
        assert blobs.open_verified(digest).path == path
        assert path.read_bytes() == good


def test_a_limit_on_blob_size_stops_the_download(control: ServerProcess, tmp_path: Path) -> None:
    digest = _digest(control)
    blobs = HttpBlobSource(control.url, tmp_path / "cache", max_bytes=10)
    with blobs, pytest.raises(InvalidArgument, match="limit of 10 bytes"):
        blobs.open_verified(digest)
    assert _files(tmp_path / "cache") == []


# ---------------------------------------------------------------------------------------------- RemoteFeed


def test_feed_applies_keeps_and_restores_without_the_control_plane(control: ServerProcess, tmp_path: Path) -> None:
    state = tmp_path / "snapshot.json"

    async def run() -> None:
        blobs = HttpBlobSource(control.url, tmp_path / "cache")
        dp = DataPlane(blobs)
        feed = RemoteFeed(control.url, dp.apply, lambda: dp.snapshot_version, state_file=state)
        try:
            assert not feed.loaded
            assert await feed.sync_once() is True
            assert feed.loaded and dp.status()["deployments"] == ["iris"] and dp.ready()
            kept = RoutingSnapshot.from_json(state.read_bytes())
            assert kept.version == dp.snapshot_version and set(kept.deployments) == {"iris"}
            assert await feed.sync_once() is False  # nothing new
        finally:
            await feed.aclose()
            await dp.close()
            blobs.close()
        # a restart with the control plane unreachable: the kept snapshot, the models from the blob cache
        offline = HttpBlobSource(DEAD, tmp_path / "cache")
        dp2 = DataPlane(offline)
        feed2 = RemoteFeed(DEAD, dp2.apply, lambda: dp2.snapshot_version, state_file=state)
        try:
            assert await feed2.restore() is True
            assert feed2.loaded and dp2.snapshot_version == kept.version
            assert dp2.status() == {"snapshot_version": kept.version, "deployments": ["iris"], "errors": {}}
            with pytest.raises(httpx.ConnectError):
                await feed2.sync_once()
        finally:
            await feed2.aclose()
            await dp2.close()
            offline.close()

    asyncio.run(run())


def test_an_unreadable_kept_snapshot_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = tmp_path / "snapshot.json"
    state.write_bytes(b"{half a snap")

    async def run() -> None:
        dp = DataPlane(BlobStore(tmp_path / "blobs"))
        feed = RemoteFeed(DEAD, dp.apply, lambda: dp.snapshot_version, state_file=state)
        try:
            assert await feed.restore() is False
            assert not feed.loaded and dp.snapshot_version == 0
        finally:
            await feed.aclose()
            await dp.close()

    with caplog.at_level(logging.ERROR, "mlpilot.feed"):
        asyncio.run(run())
    assert "cannot read the kept snapshot" in caplog.text


def _wait(cond: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_feed_outages_and_bad_answers_are_logged_once_and_it_recovers(
    canned: CannedServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    snapshot = RoutingSnapshot(version=5)

    def lines(text: str) -> int:
        return sum(text in r.getMessage() for r in caplog.records)

    async def run() -> None:
        dp = DataPlane(BlobStore(tmp_path / "blobs"))
        await dp.apply(RoutingSnapshot(version=1))
        feed = RemoteFeed(canned.url, dp.apply, lambda: dp.snapshot_version, wait_s=0.2, backoff_s=(0.005, 0.02))
        task = asyncio.get_running_loop().create_task(feed.run())

        async def until(cond: Any, what: str) -> None:
            await asyncio.to_thread(_wait, cond, what)

        try:
            canned.answer(503, {"error": "control plane busy", "kind": "unavailable"})
            n = canned.requests
            await until(lambda: canned.requests > n + 5, "retries")
            canned.answer(200, {"schema_version": 99, "version": 6, "changed": True})  # a malformed snapshot
            n = canned.requests
            await until(lambda: canned.requests > n + 5, "retries")
            assert dp.snapshot_version == 1  # still serving the last snapshot
            assert lines("unreachable") == 1 and "HTTP 503" in caplog.text and "control plane busy" in caplog.text
            canned.answer(200, {**snapshot.to_dict(), "changed": True})
            await until(lambda: dp.snapshot_version == 5, "the snapshot")
            await until(lambda: lines("reachable again") == 1, "the log line")
            canned.answer(200, {"version": 2, "changed": False})  # a control plane behind us (a new store?)
            n = canned.requests
            await until(lambda: canned.requests > n + 10, "polls")
            assert dp.snapshot_version == 5
            assert lines("behind this data plane's 5") == 1
            assert lines("unreachable") == 1 and lines("reachable again") == 1
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await feed.aclose()
            await dp.close()

    with caplog.at_level(logging.WARNING, "mlpilot.feed"):
        asyncio.run(run())


# ---------------------------------------------------------------------------------------------- DataServer


def test_data_server_is_ready_only_with_a_snapshot_and_serves_no_control_api(
    canned: CannedServer, tmp_path: Path
) -> None:
    canned.answer(503, {"error": "starting", "kind": "unavailable"})
    settings = Settings(home=tmp_path / "dp", server=ServerSettings(grpc=False), logs=LogSettings(enabled=False))

    async def run() -> None:
        server = DataServer(settings, canned.url)
        await server.start()
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=server), base_url="http://t") as http:
                assert (await http.get("/v2/health/live")).status_code == 200
                assert (await http.get("/v2/health/ready")).status_code == 503
                for path in ("/api/v1/deployments", "/ui/", "/docs"):
                    r = await http.get(path)
                    assert r.status_code == 404 and canned.url in r.json()["error"], path
                canned.answer(200, {**RoutingSnapshot(version=3).to_dict(), "changed": True})
                deadline = time.monotonic() + 20
                while (await http.get("/v2/health/ready")).status_code != 200:
                    assert time.monotonic() < deadline, "not ready after the control plane answered"
                    await asyncio.sleep(0.02)
                assert server.dataplane.snapshot_version == 3
                assert (tmp_path / "dp" / "snapshot.json").is_file()
        finally:
            await server.stop()
            server.close()

    asyncio.run(run())
