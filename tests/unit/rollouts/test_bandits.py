"""Bandit traffic weights: exact integer splits with floors, the algorithms' rules, and regret by simulation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mlpilot.errors import InvalidArgument
from mlpilot.records import BanditAlgorithm
from mlpilot.rollouts.bandits import bandit_weights, largest_remainder, simulate

ALGORITHMS = list(BanditAlgorithm)


def weights(algorithm: BanditAlgorithm | str, s: list[float], t: list[float], seed: int = 0, **kw: Any) -> list[int]:
    return bandit_weights(algorithm, s, t, rng=np.random.default_rng(seed), **kw)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize(
    ("successes", "trials", "min_weight", "total"),
    [
        ([0, 0, 0], [0, 0, 0], 1, 100),
        ([3, 9, 1], [100, 100, 100], 1, 100),
        ([2.5, 40.25], [10, 50], 5, 100),  # fractional rewards
        ([1, 2, 3, 4, 5, 6, 7], [10, 10, 10, 10, 10, 10, 10], 3, 100),
        ([50, 0], [50, 0], 0, 7),
        ([0, 0, 0], [5, 5, 5], 33, 100),  # the floor takes almost everything
        ([4], [10], 1, 100),
    ],
)
def test_weights_are_integers_summing_to_total_with_floors(
    algorithm: BanditAlgorithm, successes: list[float], trials: list[float], min_weight: int, total: int
) -> None:
    w = weights(algorithm, successes, trials, min_weight=min_weight, total=total)
    assert all(isinstance(x, int) for x in w)
    assert sum(w) == total
    assert len(w) == len(successes)
    assert min(w) >= min_weight


@pytest.mark.parametrize(
    ("shares", "total", "expected"),
    [
        ([1, 1, 1], 100, [34, 33, 33]),
        ([0.5, 0.5], 7, [4, 3]),
        ([0.0, 0.0], 10, [5, 5]),
        ([0.7, 0.2, 0.1], 97, [68, 19, 10]),  # quotas 67.9, 19.4, 9.7: remainders .9 > .7 > .4
        ([1, 0, 0], 50, [50, 0, 0]),
    ],
)
def test_largest_remainder(shares: list[float], total: int, expected: list[int]) -> None:
    assert largest_remainder(shares, total).tolist() == expected


def test_largest_remainder_always_sums_exactly() -> None:
    rng = np.random.default_rng(0)
    for _ in range(500):
        k, total = int(rng.integers(1, 12)), int(rng.integers(1, 1000))
        shares = rng.dirichlet(np.ones(k)) ** 3
        got = largest_remainder(shares, total)
        assert got.sum() == total and (got >= 0).all()
        assert np.abs(got - shares / shares.sum() * total).max() < 1.0


def test_thompson_follows_the_posterior_probability_of_being_best() -> None:
    assert weights("thompson", [10, 50], [100, 100])[1] >= 98  # arm 1 is best with certainty → 99 (floor 1)
    even = weights("thompson", [30, 30], [100, 100], draws=20_000)
    assert abs(even[0] - even[1]) <= 2  # equal evidence → about half each
    assert weights("thompson", [5, 9], [10, 10], seed=3) == weights("thompson", [5, 9], [10, 10], seed=3)


def test_epsilon_greedy_rule() -> None:
    # free = 97; quotas 0.9 * 97 + 97 * 0.1 / 3 = 90.53 for the best arm, 3.23 each for the others
    assert weights("epsilon_greedy", [1, 5, 2], [10, 10, 10], epsilon=0.1) == [4, 92, 4]
    # untried arms take the greedy share first, split evenly
    assert weights("epsilon_greedy", [9, 0, 0], [10, 0, 0], epsilon=0.1) == [4, 48, 48]
    assert weights("epsilon_greedy", [1, 5, 2], [10, 10, 10], epsilon=1.0, min_weight=0) == [34, 33, 33]


def test_ucb1_rule() -> None:
    s, t = np.array([60.0, 4.0]), np.array([100.0, 10.0])
    ucb = s / t + np.sqrt(2 * np.log(t.sum()) / t)
    assert ucb.argmax() == 1 and (s / t).argmax() == 0  # the little-tried arm has the higher bound, not mean
    assert weights("ucb", s.tolist(), t.tolist()) == [1, 99]
    assert weights("ucb", [90, 9], [100, 100]) == [99, 1]
    assert weights("ucb", [90, 0, 0], [100, 0, 0]) == [1, 50, 49]  # untried arms first


@pytest.mark.parametrize(
    ("successes", "trials", "kw"),
    [
        ([1, 2], [10], {}),  # mismatched lengths
        ([], [], {}),
        ([-1, 2], [10, 10], {}),
        ([1, 2], [10, -10], {}),
        ([11, 2], [10, 10], {}),  # successes > trials
        ([1, float("nan")], [10, 10], {}),
        ([1, 2, 3], [10, 10, 10], {"min_weight": 34}),  # 3 x 34 > 100
        ([1, 2], [10, 10], {"min_weight": -1}),
        ([1, 2], [10, 10], {"epsilon": 1.5}),
        ([1, 2], [10, 10], {"total": 0}),
        ([[1, 2]], [[10, 10]], {}),
    ],
)
def test_bad_input_is_invalid_argument(successes: Any, trials: Any, kw: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        weights("thompson", successes, trials, **kw)


def test_unknown_algorithm_is_invalid_argument() -> None:
    with pytest.raises(InvalidArgument, match="thompson"):
        weights("softmax", [1], [2])
    with pytest.raises(InvalidArgument):
        weights("uniform", [1], [2])  # a simulation baseline, not a bandit
    with pytest.raises(InvalidArgument):
        simulate("thompson", [0.5, 1.5], rounds=1, per_round=1, seed=0)


# ------------------------------------------------------------------------------------------------ simulation

PROBS = [0.04, 0.05, 0.07]
SEEDS = range(20)


def mean_regret(algorithm: str, delay: int) -> float:
    return float(np.mean([
        simulate(algorithm, PROBS, rounds=200, per_round=100, seed=seed, delay_rounds=delay)["regret"]
        for seed in SEEDS
    ]))  # fmt: skip


@pytest.mark.parametrize("delay", [0, 3])
def test_thompson_has_less_regret_than_uniform_and_epsilon_greedy(delay: int) -> None:
    regret = {a: mean_regret(a, delay) for a in ("thompson", "epsilon_greedy", "uniform")}
    # measured (mean of 20 seeds): delay 0: thompson 40.2, epsilon_greedy 47.7, uniform 336.4;
    #                              delay 3: thompson 45.1, epsilon_greedy 57.2, uniform 336.4 (ucb: ~218, batched
    #                              UCB1 sends all free weight to one arm per round)
    assert regret["thompson"] < regret["epsilon_greedy"] < regret["uniform"]
    assert regret["thompson"] < 0.25 * regret["uniform"]


def test_simulate_accounts_every_request() -> None:
    out = simulate("epsilon_greedy", PROBS, rounds=50, per_round=80, seed=1)
    assert sum(out["pulls"]) == 50 * 80 and len(out["regret_per_round"]) == 50
    gap = max(PROBS) - np.array(PROBS)
    assert out["regret"] == pytest.approx(float(np.dot(out["pulls"], gap)))
    assert sum(out["final_weights"]) == 100
    assert all(0 <= r <= p for r, p in zip(out["rewards"], out["pulls"], strict=True))
    # uniform: a third of the traffic to each arm, so regret ~ requests x mean gap
    uniform = simulate("uniform", PROBS, rounds=50, per_round=80, seed=1)
    assert uniform["regret"] == pytest.approx(4000 * gap.mean(), rel=0.05)


def test_feedback_that_never_arrives_leaves_thompson_uniform() -> None:
    blind = simulate("thompson", PROBS, rounds=30, per_round=100, seed=2, delay_rounds=30)
    informed = simulate("thompson", PROBS, rounds=30, per_round=100, seed=2, delay_rounds=0)
    gap = max(PROBS) - np.mean(PROBS)
    assert blind["regret"] == pytest.approx(3000 * gap, rel=0.1)  # it never saw a reward: uniform routing
    assert informed["regret"] < blind["regret"]
