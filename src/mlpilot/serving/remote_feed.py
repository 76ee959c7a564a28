"""The remote snapshot feed: keeps a data plane on the newest routing snapshot of a control plane it reaches only
over HTTP (``GET /api/v1/snapshot?after=N&wait_s=…``, a long-poll), for data planes on other hosts.

* The control plane answers at once when its snapshot is past ours, else when it moves or after ``wait_s``; the
  feed applies each new snapshot to the data plane and writes it to ``state_file`` (temp file, fsync, rename).
* A restarted data plane first loads ``state_file`` (:meth:`RemoteFeed.restore`), so it serves its last snapshot
  even when the control plane is unreachable (the models come from the blob cache).
* When the control plane is unreachable (or answers errors) the data plane keeps serving its last snapshot; the feed
  logs once when it goes away and once when it is back, and retries with exponential backoff (with jitter).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from mlpilot.serving.snapshot import RoutingSnapshot

log = logging.getLogger("mlpilot.feed")


class FeedError(Exception):
    """The control plane answered, but not with a snapshot (an error status, a malformed body)."""


class FeedRefused(FeedError):
    """The control plane refused this data plane's credentials (401, 403)."""


#: where a data plane's key comes from (``mlpilot serve``)
KEY_HINT = "the key in $MLPILOT_API_KEY (or the variable --api-key-env names), which needs the read scope"


class RemoteFeed:
    """Follow the control plane at ``control_url``.

    Args:
        apply: the data plane's ``apply`` (returns False for a snapshot that is not newer).
        current_version: the data plane's snapshot version (what ``after`` asks past).
        state_file: where the last applied snapshot is kept (None: not kept).
        headers: sent with every request (the data plane's key: ``Authorization: Bearer …``).
        wait_s: how long the control plane may hold one request.
        backoff_s: first and longest pause between attempts while the control plane is unreachable.
    """

    def __init__(
        self,
        control_url: str,
        apply: Callable[[RoutingSnapshot], Awaitable[bool]],
        current_version: Callable[[], int],
        *,
        state_file: Path | None = None,
        headers: Mapping[str, str] | None = None,
        wait_s: float = 30.0,
        backoff_s: tuple[float, float] = (0.2, 2.0),
    ) -> None:
        self.control_url = control_url.rstrip("/")
        self._apply = apply
        self._current = current_version
        self.state_file = state_file
        self.wait_s = wait_s
        self.backoff_s = backoff_s
        self._http = httpx.AsyncClient(
            base_url=self.control_url,
            headers=dict(headers or {}),
            timeout=httpx.Timeout(wait_s + 10.0, connect=5.0),
        )
        #: a snapshot is loaded (from the control plane, or from ``state_file``): the data plane may report ready.
        self.loaded = False
        self.failing = False
        self._behind_warned = False

    async def aclose(self) -> None:
        await self._http.aclose()

    # ------------------------------------------------------------------------------------------ state file

    async def restore(self) -> bool:
        """Apply the snapshot kept in ``state_file``, if any. Returns True if one was loaded.

        A missing file is normal (first start); an unreadable one is logged and ignored (the control plane's
        snapshot replaces it as soon as it is reachable).
        """
        if self.state_file is None or not self.state_file.is_file():
            return False
        try:
            snapshot = RoutingSnapshot.from_json(await asyncio.to_thread(self.state_file.read_bytes))
        except (OSError, ValueError) as exc:
            log.error("cannot read the kept snapshot %s (%s); waiting for the control plane", self.state_file, exc)
            return False
        await self._apply(snapshot)
        self.loaded = True
        log.warning("serving the kept snapshot version %d from %s", snapshot.version, self.state_file)
        return True

    def _keep(self, snapshot: RoutingSnapshot) -> None:
        if self.state_file is None:
            return
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.state_file.parent, prefix=".snapshot-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(snapshot.to_json())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.state_file)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    # ------------------------------------------------------------------------------------------ feed

    async def sync_once(self, wait_s: float = 0.0) -> bool:
        """Ask the control plane for a snapshot past ours (waiting up to ``wait_s``) and apply it.

        Returns True if a new snapshot was applied.

        Raises:
            httpx.HTTPError: the control plane cannot be reached. FeedError: it answered without a snapshot
            (FeedRefused: it refused this data plane's key).
        """
        current = self._current()
        response = await self._http.get("/api/v1/snapshot", params={"after": current, "wait_s": wait_s})
        body = _json(response)
        if response.status_code != 200 or body is None:
            message = body.get("error") if isinstance(body, dict) else None
            text = f"HTTP {response.status_code} from {self.control_url}: {message or response.text[:200]}"
            if response.status_code in (401, 403):
                sent = "sent" if "authorization" in self._http.headers else "did not send"
                raise FeedRefused(f"{text} (this data plane {sent} {KEY_HINT})")
            raise FeedError(text)
        if not body.get("changed", True):
            self.loaded = True
            self._check_behind(int(body.get("version", 0)), current)
            return False
        try:
            snapshot = RoutingSnapshot.from_dict(body)
        except (ValueError, TypeError) as exc:
            raise FeedError(f"the control plane at {self.control_url} sent a malformed snapshot: {exc}") from exc
        applied = await self._apply(snapshot)
        self.loaded = True
        if applied:
            await asyncio.to_thread(self._keep, snapshot)
        else:
            self._check_behind(snapshot.version, current)
        return applied

    def _check_behind(self, theirs: int, ours: int) -> None:
        if theirs < ours and not self._behind_warned:
            log.warning(
                "the control plane at %s is at snapshot version %d, behind this data plane's %d (a new store?); "
                "serving %d until it moves past it",
                self.control_url,
                theirs,
                ours,
                ours,
            )
        self._behind_warned = theirs < ours

    async def run(self) -> None:
        """Follow the control plane until cancelled; never raises while it is away."""
        pause = self.backoff_s[0]
        while True:
            try:
                # after a failure, a quick question first: the return is noticed (and logged) at once
                await self.sync_once(0.0 if self.failing else self.wait_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # unreachable, an error answer, a bad snapshot: keep serving, retry
                if not self.failing:
                    log.error(
                        "control plane %s %s (%s); serving the last snapshot (version %d)",
                        self.control_url,
                        "refused this data plane" if isinstance(exc, FeedRefused) else "unreachable",
                        _describe(exc),
                        self._current(),
                    )
                self.failing = True
                await asyncio.sleep(pause * random.uniform(0.8, 1.2))
                pause = min(pause * 2, self.backoff_s[1])
                continue
            if self.failing:
                log.warning(
                    "control plane %s reachable again; snapshot feed resumed at version %d",
                    self.control_url,
                    self._current(),
                )
            self.failing = False
            pause = self.backoff_s[0]


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
