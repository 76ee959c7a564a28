"""Traffic routing (pure): weighted split, sticky keys, shadows. Compiled once per snapshot."""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Mapping, Sequence


def sticky_point(key: str) -> float:
    """A stable point in [0, 1) for a sticky key (the same key always lands on the same variant)."""
    h = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2.0**64


class SplitTable:
    """Choose a live variant by weight. ``choose(point)`` for ``point`` in [0, 1)."""

    __slots__ = ("_bounds", "_names")

    def __init__(self, weights: Mapping[str, int], order: Sequence[str]) -> None:
        live = [(n, weights.get(n, 0)) for n in order if weights.get(n, 0) > 0]
        total = sum(w for _, w in live)
        if total <= 0:
            raise ValueError("no live variant")
        acc = 0
        self._bounds: list[float] = []
        self._names: list[str] = []
        for name, w in live:
            acc += w
            self._bounds.append(acc / total)
            self._names.append(name)
        self._bounds[-1] = 1.0

    def choose(self, point: float) -> str:
        if len(self._names) == 1:
            return self._names[0]
        return self._names[min(bisect.bisect_right(self._bounds, point), len(self._names) - 1)]

    def route(self, sticky_key: str | None, rng: random.Random | None = None) -> str:
        point = sticky_point(sticky_key) if sticky_key else (rng or random).random()
        return self.choose(point)
