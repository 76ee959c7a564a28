"""Multiple-testing corrections against hand-computed adjusted p-values."""

from __future__ import annotations

import numpy as np
import pytest

from mlpilot.errors import InvalidArgument
from mlpilot.monitoring import adjust_p_values

P = [0.01, 0.04, 0.03, 0.005]  # sorted: 0.005, 0.01, 0.03, 0.04 (m = 4)

CASES = [
    # Bonferroni: min(1, 4p)
    ("bonferroni", P, [0.04, 0.16, 0.12, 0.02]),
    # Holm: sorted 4*0.005=0.02, 3*0.01=0.03, 2*0.03=0.06, 1*0.04=0.04 -> cummax 0.02, 0.03, 0.06, 0.06
    ("holm", P, [0.03, 0.06, 0.06, 0.02]),
    # BH: sorted 4/1*0.005=0.02, 4/2*0.01=0.02, 4/3*0.03=0.04, 4/4*0.04=0.04 -> cummin from the top: same
    ("fdr_bh", P, [0.02, 0.04, 0.04, 0.02]),
    ("none", P, P),
    # BH where the step-up minimum matters: 3/1*0.02=0.06, 3/2*0.03=0.045, 3/3*0.04=0.04 -> 0.04 for all
    ("fdr_bh", [0.02, 0.03, 0.04], [0.04, 0.04, 0.04]),
    # clipping at 1 and ties: Holm 3*0.5=1.5 -> 1
    ("holm", [0.5, 0.5, 0.9], [1.0, 1.0, 1.0]),
    ("bonferroni", [0.6], [0.6]),
    ("holm", [], []),
]


@pytest.mark.parametrize(("method", "p", "expected"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_adjusted_p_values(method: str, p: list[float], expected: list[float]) -> None:
    np.testing.assert_allclose(adjust_p_values(p, method), expected, rtol=1e-12)


def test_adjusted_values_never_below_raw() -> None:
    p = np.random.default_rng(0).uniform(size=50)
    for method in ("holm", "bonferroni", "fdr_bh"):
        adjusted = adjust_p_values(p, method)
        assert (adjusted >= p).all() and (adjusted <= 1).all()


@pytest.mark.parametrize(
    ("p", "method", "message"),
    [
        pytest.param([0.1], "sidak", "unknown", id="unknown-method"),
        pytest.param([1.5], "holm", r"\[0, 1\]", id="above-one"),
        pytest.param([float("nan")], "holm", "NaN", id="nan"),
    ],
)
def test_bad_input(p: list[float], method: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        adjust_p_values(p, method)
