"""What remote data planes (``mlpilot serve --control-url``, no store access) fetch: the routing snapshot and blobs.

``GET /api/v1/snapshot`` answers at once with the compiled snapshot. With ``after=N`` it is a long-poll: it answers
at once when the store's snapshot version is past ``N``, otherwise it holds the request until the version moves or
``wait_s`` passes, then answers ``200 {"version": V, "changed": false}`` (``V`` the current version). A 200 rather
than a 304: it carries the current version (a data plane sees a control plane whose store is older than its
snapshot) and needs no conditional-request headers through proxies.

Waiting costs no thread: one :class:`SnapshotWatch` per API app reads the store's counter (one indexed read) every
``server.snapshot_poll_s`` while anyone waits, and wakes every waiter when it moves. The compiled snapshot of the
newest version is cached, so data planes waking together compile it once.

``GET /api/v1/blobs/{digest}`` streams a blob's bytes (models, prompts, indexes, by the digests in the snapshot),
verified against the digest before the first byte; the data plane verifies them again (``blobs/http.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse

from mlpilot.api.scopes import Scope, platform, route
from mlpilot.app import Platform
from mlpilot.errors import NotFound

router = APIRouter(prefix="/api/v1", tags=["deployments"])
P = Annotated[Platform, Depends(platform)]

#: longest a long-poll is held, in seconds (larger ``wait_s`` values are capped to it).
MAX_WAIT_S = 60.0


class SnapshotWatch:
    """Wakes long-polls when the store's routing-snapshot version moves (one poller task for all waiters).

    Args:
        exiting: when it returns True (the server is stopping), every waiter is answered at once so a graceful
            stop does not wait for open long-polls.
    """

    def __init__(self, p: Platform, poll_s: float, exiting: Callable[[], bool] | None = None) -> None:
        self._platform = p
        self.loop = asyncio.get_running_loop()
        self.poll_s = max(0.01, poll_s)
        self.exiting = exiting or (lambda: False)
        self._version = -1
        self._moved = asyncio.Event()
        self._waiters = 0
        self._poller: asyncio.Task[None] | None = None
        self._compile_lock = asyncio.Lock()
        self._cached: tuple[int, bytes] | None = None

    async def current(self) -> int:
        version = await asyncio.to_thread(self._platform.store.snapshot_version)
        self._observe(version)
        return version

    def _observe(self, version: int) -> None:
        if version != self._version:
            self._version = version
            self._wake()

    def _wake(self) -> None:
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()

    async def wait_past(self, after: int, timeout_s: float) -> int:
        """The store's snapshot version once it is past ``after``, or the current one after ``timeout_s``."""
        version = await self.current()
        if version > after or timeout_s <= 0:
            return version
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        self._waiters += 1
        try:
            if self._poller is None or self._poller.done():
                self._poller = loop.create_task(self._poll(), name="mlpilot-snapshot-watch")
            while self._version <= after and not self.exiting():
                left = deadline - loop.time()
                if left <= 0:
                    break
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._moved.wait(), left)
            return self._version
        finally:
            self._waiters -= 1

    async def _poll(self) -> None:
        while self._waiters > 0:
            await asyncio.sleep(self.poll_s)
            if self.exiting():
                self._wake()
                continue
            with contextlib.suppress(Exception):  # a store outage: waiters time out; the next read retries
                self._observe(await asyncio.to_thread(self._platform.store.snapshot_version))

    async def compiled(self, at_least: int) -> bytes:
        """The JSON body of a snapshot whose version is at least ``at_least`` (compiled once per version)."""
        async with self._compile_lock:
            if self._cached is None or self._cached[0] < at_least:
                snapshot = await asyncio.to_thread(self._platform.deployments.snapshot)
                self._cached = (snapshot.version, orjson.dumps({**snapshot.to_dict(), "changed": True}))
            return self._cached[1]


def _watch(request: Request, p: Platform) -> SnapshotWatch:
    state = request.app.state
    watch: SnapshotWatch | None = getattr(state, "snapshot_watch", None)
    if watch is None or watch.loop is not asyncio.get_running_loop():  # one per event loop serving the app
        exiting = getattr(state, "exiting", None)
        watch = state.snapshot_watch = SnapshotWatch(p, p.settings.server.snapshot_poll_s, exiting)
    return watch


@route(router, "GET", "/snapshot", Scope.READ, response_class=Response)
async def routing_snapshot(
    request: Request,
    p: P,
    after: Annotated[
        int | None,
        Query(ge=0, description="long-poll: answer when the snapshot version is past this one (omit: at once)"),
    ] = None,
    wait_s: Annotated[
        float,
        Query(ge=0, allow_inf_nan=False, description=f"longest wait with `after`, seconds (capped at {MAX_WAIT_S:g})"),
    ] = 30.0,
) -> Response:
    """The compiled routing snapshot (what data planes serve), or a long-poll for the next one.

    Read scope: it is what ``GET /deployments`` already shows, compiled, plus the model digests that
    ``GET /blobs/{digest}`` (read) serves; a data plane needs no right to change anything.
    """
    watch = _watch(request, p)
    if after is None:
        body = await watch.compiled(0)
    else:
        version = await watch.wait_past(after, min(wait_s, MAX_WAIT_S))
        if version <= after:
            body = orjson.dumps({"version": version, "changed": False})
        else:
            body = await watch.compiled(version)
    return Response(body, media_type="application/json", headers={"cache-control": "no-store"})


_CHUNK = 1 << 20


def _verified(p: Platform, digest: str) -> tuple[Path, dict[str, str]]:
    blob = p.blobs.open_verified(digest)  # 400 malformed, 404 unknown, 500 (data_loss) corrupt
    size = blob.path.stat().st_size
    return blob.path, {"x-mlpilot-digest": digest, "content-length": str(size), "cache-control": "no-store"}


@route(router, "GET", "/blobs/{digest}", Scope.READ, response_class=StreamingResponse)
def get_blob(p: P, digest: str) -> StreamingResponse:
    """A blob's bytes by digest (``sha256:<hex>``), checked against it before the first byte is sent."""
    path, headers = _verified(p, digest)

    def chunks() -> Iterator[bytes]:
        with open(path, "rb") as f:
            yield from iter(lambda: f.read(_CHUNK), b"")

    return StreamingResponse(chunks(), media_type="application/octet-stream", headers=headers)


@route(router, "HEAD", "/blobs/{digest}", Scope.READ, response_class=Response)
def head_blob(p: P, digest: str) -> Response:
    """Whether the blob exists (200) or not (404); not verified (``GET`` verifies)."""
    if not p.blobs.exists(digest):  # InvalidArgument (400) when malformed
        raise NotFound(f"no blob {digest} in the artifact store")
    return Response(media_type="application/octet-stream", headers={"x-mlpilot-digest": digest})
