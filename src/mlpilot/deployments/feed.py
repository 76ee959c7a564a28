"""The snapshot feed: keeps a data plane on the newest routing snapshot of the store.

It polls the store's snapshot counter (one indexed read) every ``interval_s`` and, when it moved, compiles and
pushes the snapshot. It sees changes from any process that writes to the same store (the CLI in embedded mode,
other control-plane processes). If the store is unavailable the data plane keeps serving its last snapshot;
the feed logs and retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from mlpilot.deployments.service import Deployments
from mlpilot.serving.snapshot import RoutingSnapshot

log = logging.getLogger("mlpilot.feed")


class SnapshotFeed:
    def __init__(
        self,
        deployments: Deployments,
        apply: Callable[[RoutingSnapshot], Awaitable[bool]],
        current_version: Callable[[], int],
        interval_s: float = 0.2,
    ) -> None:
        self._deployments = deployments
        self._apply = apply
        self._current = current_version
        self.interval_s = interval_s
        self._wake = asyncio.Event()
        self._failing = False

    def poke(self) -> None:
        """Check now instead of at the next tick (after a change made through this process's API)."""
        self._wake.set()

    async def sync_once(self) -> bool:
        """Push the store's snapshot if it is newer than the data plane's. Returns True if one was applied."""
        version = await asyncio.to_thread(self._deployments.store.snapshot_version)
        if version <= self._current():
            return False
        snapshot = await asyncio.to_thread(self._deployments.snapshot)
        return await self._apply(snapshot)

    async def run(self) -> None:
        while True:
            try:
                await self.sync_once()
                if self._failing:
                    log.warning("control-plane store reachable again; snapshot feed resumed")
                self._failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep serving the last snapshot; say so once, not every tick
                if not self._failing:
                    log.error("snapshot feed cannot reach the store (%s); serving the last snapshot", exc)
                self._failing = True
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
