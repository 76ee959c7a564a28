"""Webhook notifications of alerts: a background sender with a timeout and retries, never on the caller's path.

A payload is POSTed as JSON; a 2xx answer is success. Failed attempts are retried with exponential backoff
(0.5 s, 1 s, …); when every attempt failed, ``on_failure(url, payload, error)`` is called (the platform records
an ``alert.notify_failed`` event), so a lost notification is never silent.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger("mlpilot.alerts")

FailureHook = Callable[[str, Mapping[str, Any], str], None]


class WebhookNotifier:
    def __init__(
        self,
        *,
        timeout_s: float = 5.0,
        attempts: int = 3,
        backoff_s: float = 0.5,
        on_failure: FailureHook | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.on_failure = on_failure
        self._queue: queue.Queue[tuple[str, Mapping[str, Any]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.sent = 0
        self.failed = 0

    def send(self, urls: list[str], payload: Mapping[str, Any]) -> None:
        """Queue ``payload`` for each URL (returns at once)."""
        if not urls:
            return
        self._ensure_thread()
        for url in dict.fromkeys(urls):
            self._queue.put((url, payload))

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until every queued notification was delivered or given up on; ``False`` on timeout."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        self.flush(timeout_s)
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout_s)

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="mlpilot-webhooks", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        import httpx

        with httpx.Client(timeout=self.timeout_s) as http:
            while True:
                item = self._queue.get()
                try:
                    if item is None:
                        return
                    self._deliver(http, *item)
                finally:
                    self._queue.task_done()

    def _deliver(self, http: Any, url: str, payload: Mapping[str, Any]) -> None:
        error = ""
        for attempt in range(self.attempts):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                resp = http.post(url, json=payload)
                if 200 <= resp.status_code < 300:
                    self.sent += 1
                    return
                error = f"HTTP {resp.status_code}"
            except Exception as exc:  # network errors of any kind: retried, then reported
                error = f"{type(exc).__name__}: {exc}"
        self.failed += 1
        log.warning("webhook %s failed after %d attempts: %s", url, self.attempts, error)
        if self.on_failure is not None:
            try:
                self.on_failure(url, payload, error)
            except Exception:  # the failure hook must never kill the sender
                log.exception("recording a failed webhook")
