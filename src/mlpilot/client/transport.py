"""A synchronous httpx transport that calls an ASGI app in-process (the embedded mode of the SDK and CLI).

The embedded and remote clients thus share every line of request building and response parsing; only the
transport differs. The app runs on a private event loop in one background thread, started on first use and
stopped by :meth:`close`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import httpx


class InProcessTransport(httpx.BaseTransport):
    def __init__(self, app: Any, on_close: Callable[[], Coroutine[Any, Any, None]] | None = None) -> None:
        self._app = app
        self._on_close = on_close
        self._asgi = httpx.ASGITransport(app=app)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="mlpilot-embedded", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        async_request = httpx.Request(request.method, request.url, headers=request.headers, content=body)

        async def call() -> tuple[int, httpx.Headers, bytes]:
            response = await self._asgi.handle_async_request(async_request)
            content = b"".join([chunk async for chunk in response.stream])  # type: ignore[union-attr]
            return response.status_code, response.headers, content

        status, headers, content = asyncio.run_coroutine_threadsafe(call(), self._ensure_loop()).result()
        return httpx.Response(status, headers=headers, content=content, request=request)

    def close(self) -> None:
        with self._lock:
            if self._loop is not None:
                if self._on_close is not None:
                    asyncio.run_coroutine_threadsafe(self._on_close(), self._loop).result(timeout=30)
                self._loop.call_soon_threadsafe(self._loop.stop)
                if self._thread is not None:
                    self._thread.join(timeout=5)
                self._loop.close()
                self._loop = self._thread = None
