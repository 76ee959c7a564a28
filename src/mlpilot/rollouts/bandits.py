"""Multi-armed bandit traffic weights (pure): how to split the next batch of requests between arms.

The controller re-weights every ``update_every`` from each arm's ``successes`` (the sum of rewards in ``[0, 1]``)
and ``trials`` (rewarded requests), so all three algorithms are *batched*: one integer weight vector per update.

- ``thompson``: batched Thompson sampling. Each arm's weight is proportional to the posterior probability that
  it is the best arm, estimated by Monte Carlo from ``Beta(1 + s, 1 + t - s)`` (uniform prior; fractional
  rewards are used as fractional successes).
- ``epsilon_greedy``: ``1 - epsilon`` of the free weight to the arm with the best empirical mean, ``epsilon``
  spread evenly over all arms; arms never tried take the greedy share first (split evenly).
- ``ucb``: UCB1-Tuned (Auer et al. 2002): all free weight to the arm with the highest variance-scaled upper bound;
  untried arms first.

Every arm keeps ``min_weight`` (the exploration floor); the rest (``total - arms * min_weight``) is split by the
algorithm and rounded with the largest-remainder method, so the weights are integers summing exactly to
``total``. Ties split evenly.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from mlpilot.errors import InvalidArgument
from mlpilot.records import BanditAlgorithm

#: The algorithms :func:`simulate` accepts: the bandits plus a uniform split for comparison.
SIMULATED = (*(a.value for a in BanditAlgorithm), "uniform")


def largest_remainder(shares: ArrayLike, total: int) -> np.ndarray:
    """Integers proportional to ``shares`` that sum exactly to ``total`` (Hamilton's method).

    Each gets the floor of its exact quota; the units left go to the largest fractional remainders (ties to
    the lower index). All-zero shares are split evenly.
    """
    s = np.asarray(shares, dtype=np.float64)
    if s.sum() <= 0:
        s = np.ones_like(s)
    quota = s / s.sum() * total
    base = np.floor(quota).astype(np.int64)
    left = int(np.clip(total - int(base.sum()), 0, s.size))
    order = np.argsort(-(quota - base), kind="stable")
    base[order[:left]] += 1
    return base


def _counts(successes: ArrayLike, trials: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    try:
        s, t = np.asarray(successes, dtype=np.float64), np.asarray(trials, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"successes and trials must be numbers: {exc}") from exc
    if s.ndim != 1 or t.ndim != 1 or s.shape != t.shape:
        raise InvalidArgument(f"successes and trials must be 1-D of the same length, got {s.shape} and {t.shape}")
    if s.size == 0:
        raise InvalidArgument("a bandit needs at least one arm")
    if not (np.isfinite(s).all() and np.isfinite(t).all()) or (s < 0).any() or (t < 0).any():
        raise InvalidArgument("successes and trials must be finite and non-negative")
    if (s > t + 1e-9 * np.maximum(t, 1.0)).any():
        raise InvalidArgument(f"successes exceed trials for arm(s) {np.flatnonzero(s > t).tolist()}")
    return np.minimum(s, t), t


def _even(mask: np.ndarray) -> np.ndarray:
    return mask.astype(np.float64) / mask.sum()


def _best(values: np.ndarray) -> np.ndarray:
    """Even shares over the arms tied at the maximum."""
    return _even(np.isclose(values, values.max(), rtol=0.0, atol=1e-12))


def _shares(
    algorithm: str, s: np.ndarray, t: np.ndarray, epsilon: float, rng: np.random.Generator, draws: int
) -> np.ndarray:
    k = s.size
    untried = t == 0
    if algorithm == "uniform":
        return np.full(k, 1.0 / k)
    if algorithm == BanditAlgorithm.THOMPSON.value:
        samples = rng.beta(1.0 + s, 1.0 + t - s, size=(draws, k))
        return np.bincount(samples.argmax(axis=1), minlength=k) / draws
    if algorithm == BanditAlgorithm.EPSILON_GREEDY.value:
        greedy = _even(untried) if untried.any() else _best(s / t)
        return (1.0 - epsilon) * greedy + epsilon / k
    # UCB1-Tuned (Auer, Cesa-Bianchi, Fischer 2002): the exploration bonus scaled by the arm's variance — for
    # rewards in [0, 1] with mean mu at most mu(1 - mu) — so that low success rates (a few %) are not drowned by a
    # bonus sized for rewards spread over [0, 1], as plain UCB1's sqrt(2 ln N / n) is.
    if untried.any():
        return _even(untried)
    mean, log_n = s / t, math.log(t.sum())
    variance = mean * (1.0 - mean) + np.sqrt(2.0 * log_n / t)
    return _best(mean + np.sqrt(log_n / t * np.minimum(0.25, variance)))


def _check(epsilon: float, min_weight: int, total: int, k: int, draws: int) -> None:
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not 0.0 <= epsilon <= 1.0:
        raise InvalidArgument(f"epsilon must be a number in [0, 1], got {epsilon!r}")
    for name, value, least in (("min_weight", min_weight, 0), ("total", total, 1), ("draws", draws, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise InvalidArgument(f"{name} must be an integer >= {least}, got {value!r}")
    if min_weight * k > total:
        raise InvalidArgument(f"min_weight {min_weight} x {k} arms exceeds the total weight {total}")


def _algorithm(algorithm: Any, allowed: Sequence[str]) -> str:
    name = algorithm.value if isinstance(algorithm, BanditAlgorithm) else algorithm
    if name not in allowed:
        raise InvalidArgument(f"unknown bandit algorithm {algorithm!r}; use one of {list(allowed)}")
    return str(name)


def bandit_weights(
    algorithm: BanditAlgorithm | str,
    successes: ArrayLike,
    trials: ArrayLike,
    *,
    epsilon: float = 0.1,
    min_weight: int = 1,
    rng: np.random.Generator,
    total: int = 100,
    draws: int = 2000,
) -> list[int]:
    """Integer traffic weights for the arms, summing exactly to ``total``, each at least ``min_weight``.

    Args:
        algorithm: ``thompson``, ``epsilon_greedy`` or ``ucb`` (a :class:`~mlpilot.records.BanditAlgorithm`
            or its value).
        successes: per arm, the sum of rewards in ``[0, 1]`` (fractional rewards allowed).
        trials: per arm, the number of rewarded requests (``successes <= trials``).
        epsilon: the exploration share of ``epsilon_greedy``.
        min_weight: the floor every arm keeps.
        rng: the random generator (Thompson sampling draws from it).
        total: the weights' sum (100 = percent).
        draws: Monte Carlo draws of Thompson sampling.

    Returns:
        one integer weight per arm, in the input order.

    Raises:
        InvalidArgument: an unknown algorithm, lengths that differ, no arm, negative or non-finite counts,
            successes above trials, ``epsilon`` outside ``[0, 1]``, or ``min_weight * arms > total``.
    """
    name = _algorithm(algorithm, [a.value for a in BanditAlgorithm])
    s, t = _counts(successes, trials)
    _check(epsilon, min_weight, total, s.size, draws)
    free = total - min_weight * s.size
    return (min_weight + largest_remainder(_shares(name, s, t, epsilon, rng, draws), free)).tolist()


def simulate(
    algorithm: BanditAlgorithm | str,
    probs: Sequence[float],
    *,
    rounds: int,
    per_round: int,
    seed: int,
    epsilon: float = 0.1,
    min_weight: int = 1,
    delay_rounds: int = 0,
    total: int = 100,
    draws: int = 2000,
) -> dict[str, Any]:
    """Simulate a batched bandit on Bernoulli arms with (optionally) delayed feedback.

    Each round routes ``per_round`` requests by the current weights (multinomial), draws Bernoulli rewards with
    the arms' ``probs``, and makes them visible ``delay_rounds`` rounds later (0: before the next round's
    weights); weights are recomputed every round from the visible rewards. Regret is the expected (pseudo-)
    regret ``sum over requests of (max(probs) - probs[arm])``.

    Args:
        algorithm: one of :data:`SIMULATED` (``uniform`` splits evenly, for comparison).
        probs: each arm's success probability.
        rounds: number of re-weighting rounds.
        per_round: requests per round.
        seed: seed of the simulation's own generator.
        epsilon: see :func:`bandit_weights`.
        min_weight: see :func:`bandit_weights`.
        delay_rounds: rounds before a reward becomes visible.
        total: see :func:`bandit_weights`.
        draws: see :func:`bandit_weights`.

    Returns:
        ``{"algorithm", "regret", "regret_per_round", "pulls", "rewards", "final_weights"}``: cumulative regret
        (float), the regret of each round, requests and rewards per arm, and the last weights.

    Raises:
        InvalidArgument: an unknown algorithm, probabilities outside ``[0, 1]``, or non-positive sizes.
    """
    name = _algorithm(algorithm, SIMULATED)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 1 or p.size == 0 or not ((p >= 0) & (p <= 1)).all():
        raise InvalidArgument(f"probs must be a non-empty list of probabilities, got {list(probs)}")
    for label, value, least in (("rounds", rounds, 1), ("per_round", per_round, 1), ("delay_rounds", delay_rounds, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise InvalidArgument(f"{label} must be an integer >= {least}, got {value!r}")
    _check(epsilon, min_weight, total, p.size, draws)
    rng = np.random.default_rng(seed)
    k, gap = p.size, p.max() - p
    successes, trials = np.zeros(k), np.zeros(k)
    pulls_total, rewards_total = np.zeros(k, dtype=np.int64), np.zeros(k, dtype=np.int64)
    pending: deque[tuple[np.ndarray, np.ndarray]] = deque()
    regret = np.zeros(rounds)
    weights = np.zeros(k, dtype=np.int64)
    free = total - min_weight * k
    for r in range(rounds):
        weights = min_weight + largest_remainder(_shares(name, successes, trials, epsilon, rng, draws), free)
        pulls = rng.multinomial(per_round, weights / weights.sum())
        rewards = rng.binomial(pulls, p)
        pending.append((rewards, pulls))
        while len(pending) > delay_rounds:
            got, tried = pending.popleft()
            successes += got
            trials += tried
        pulls_total += pulls
        rewards_total += rewards
        regret[r] = float(pulls @ gap)
    return {
        "algorithm": name,
        "regret": float(regret.sum()),
        "regret_per_round": regret.tolist(),
        "pulls": pulls_total.tolist(),
        "rewards": rewards_total.tolist(),
        "final_weights": weights.tolist(),
    }
