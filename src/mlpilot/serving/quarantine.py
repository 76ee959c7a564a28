"""Input quarantine on the hot path: a deployment's rules (``RoutingSnapshot`` ``quarantine``) compiled once per
snapshot, checked on the decoded input arrays of every request with vectorised numpy (no Python loop per row).

A request breaks a rule when any of its rows does: a value outside ``[low, high]``, a value not ``allowed``, or a
missing value (``nulls``: NaN, an empty string or None). The first rule a request breaks decides: ``reject`` (the
edges answer HTTP 422 / gRPC INVALID_ARGUMENT with a message naming the feature, the value and the reason) or
``route`` (the whole request goes to the rule's variant). Inputs absent from the request, or of a datatype the rule
cannot apply to, are left to signature validation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlpilot.errors import InvalidArgument
from mlpilot.serving.snapshot import QuarantineRoute

__all__ = ["Quarantine", "Quarantined", "Verdict", "breaking"]

_SHOW_ALLOWED = 8


class Quarantined(InvalidArgument):
    """A request an input quarantine rejected (HTTP 422 at the REST edge, INVALID_ARGUMENT over gRPC)."""


def _fmt(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (float, np.floating)):
        if value != value:
            return "NaN"
        return np.format_float_positional(value, trim="-")
    if isinstance(value, (np.bool_, bool)):
        return str(bool(value)).lower()
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return repr(value)


@dataclass(frozen=True)
class Verdict:
    """The rule a request broke, how many of its rows broke it, and the first offending value."""

    rule: QuarantineRoute
    rows: int
    total: int
    value: Any

    def message(self) -> str:
        r = self.rule
        if r.nulls:
            what = f"input quarantined: feature {r.feature!r} has a missing value"
        elif r.allowed is not None:
            shown = ", ".join(repr(a) for a in r.allowed[:_SHOW_ALLOWED])
            more = f", … ({len(r.allowed)} values)" if len(r.allowed) > _SHOW_ALLOWED else ""
            what = f"input quarantined: feature {r.feature!r} value {_fmt(self.value)} is not one of [{shown}{more}]"
        elif r.low is not None and r.high is not None:
            what = f"input quarantined: feature {r.feature!r} value {_fmt(self.value)} outside [{_fmt(r.low)}, {_fmt(r.high)}]"  # noqa: E501
        elif r.low is not None:
            what = f"input quarantined: feature {r.feature!r} value {_fmt(self.value)} below {_fmt(r.low)}"
        else:
            what = f"input quarantined: feature {r.feature!r} value {_fmt(self.value)} above {_fmt(r.high)}"
        if self.total > 1:
            what += f" in {self.rows} of {self.total} rows"
        return what + (f" ({r.reason})" if r.reason else "")


class _Rule:
    """One rule, compiled: ``bad(arr)`` is the elementwise mask of values that break it (None: not applicable)."""

    __slots__ = ("numbers", "route", "texts")

    def __init__(self, route: QuarantineRoute) -> None:
        self.route = route
        self.texts: frozenset[Any] = frozenset()
        self.numbers: np.ndarray = np.empty(0)
        if route.allowed is not None:
            allowed = [str(a) for a in route.allowed]
            self.texts = frozenset([*allowed, *(a.encode() for a in allowed)])
            nums = []
            for a in allowed:
                try:
                    nums.append(float(a))
                except ValueError:
                    continue
            self.numbers = np.asarray(sorted(nums), dtype=np.float64)

    def bad(self, arr: np.ndarray) -> np.ndarray | None:
        r = self.route
        kind = arr.dtype.kind
        if r.nulls:
            if kind in "fc":
                return np.isnan(arr)
            if kind == "O":
                return np.equal(arr, "") | np.equal(arr, b"") | (arr == None)  # noqa: E711 - elementwise
            if kind in "US":
                return arr == arr.dtype.type()
            return None  # integers and booleans cannot be missing
        if r.allowed is not None:
            if kind in "biuf":
                return ~np.isin(arr, self.numbers)
            if kind in "OUS":
                flat = arr.ravel()
                if len(self.texts) <= 16:
                    ok = np.zeros(flat.shape, dtype=bool)
                    for a in self.texts:
                        ok |= np.equal(flat, a)
                else:
                    import pandas as pd

                    ok = pd.Series(flat, dtype=object).isin(self.texts).to_numpy()
                return ~ok.reshape(arr.shape)
            return None
        if kind not in "biuf":
            return None  # bounds need numbers; validation refuses the request anyway
        bad = np.zeros(arr.shape, dtype=bool)
        if r.low is not None:
            bad |= arr < r.low
        if r.high is not None:
            bad |= arr > r.high
        return bad


class Quarantine:
    """A deployment's rules, compiled once per snapshot; ``check(inputs)`` per request."""

    __slots__ = ("_rules",)

    def __init__(self, rules: Sequence[QuarantineRoute]) -> None:
        self._rules = [_Rule(r) for r in rules]

    def __bool__(self) -> bool:
        return bool(self._rules)

    def check(self, inputs: Mapping[str, np.ndarray]) -> Verdict | None:
        """The first rule the request breaks, or None."""
        for rule in self._rules:
            arr = inputs.get(rule.route.feature)
            if arr is None:
                continue
            arr = np.asarray(arr)
            bad = rule.bad(arr)
            if bad is None or not bad.any():
                continue
            if bad.ndim == 0:
                return Verdict(rule.route, 1, 1, arr.item())
            rows = bad.reshape(bad.shape[0], -1).any(axis=1) if bad.ndim > 1 else bad
            first = int(bad.ravel().argmax())
            return Verdict(rule.route, int(rows.sum()), int(bad.shape[0]), arr.ravel()[first])
        return None


def breaking(rule: QuarantineRoute, values: Any) -> np.ndarray | None:
    """Which of ``values`` (one per row) break ``rule``; None when the rule does not apply to their datatype. For
    estimates over logged inputs (how much traffic a rule would take)."""
    return _Rule(rule).bad(np.asarray(values))
