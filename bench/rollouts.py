"""Rollout gates side by side with what peers do, on simulated canaries; and the bandits against a uniform split.

Run from the repository root with mlpilot's virtualenv::

    .venv/bin/python bench/rollouts.py              # 200 seeds per scenario, 50 per bandit setting
    .venv/bin/python bench/rollouts.py --seeds 400  # more seeds (every scenario)
    .venv/bin/python bench/rollouts.py --quick      # smoke run: 20 seeds, 5 per bandit setting

Traffic (virtual clock): 100 requests/s, a canary of 10 -> 25 -> 50 -> 100 % with 2 minutes minimum per step, a label
for every request. Baseline: accuracy 0.92, 0.5% errors, latency lognormal (median 20 ms, sigma 0.25). The requests
of look ``k`` of seed ``s`` come from ``default_rng([s, k])`` and are routed by a uniform draw, so every gate sees
the same requests (common random numbers); only the split differs with the step each gate has reached. Scenarios:
A no difference; B candidate accuracy 0.90; C accuracy 0.50 on a 10% segment (0.878 overall); D the slowest 3% of
the candidate's requests (above the baseline's p97) x1.3, so its p97..p100 quantiles, p99 included, are exactly +30%;
E the candidate has 5% errors.

Gates (each a function below; all roll back on failure and advance after 2 minutes per step):

- ``mlpilot``: the real ``policy.decide`` + ``analyses.run_analysis`` (error_rate, latency, performance required,
  Bonferroni 0.05/3, min_samples 300 per step: tests/unit/rollouts/test_false_rollbacks.py), a look every 30 s on
  everything since the rollout began. It advances only when every required gate passes (else holds, up to the step's
  max_duration of 20 min, then on_inconclusive=advance).
- ``naive peeking``: at every 30 s look, on everything since the start, two-proportion z-tests of accuracy and of
  the error rate and a two-sided Mann-Whitney of latency, each at alpha 0.05 (no correction): the first look with a
  significant difference in the bad direction rolls back.
- ``Flagger/Argo``: every 1-minute interval, the candidate alone: fail if its error rate in the interval > 1%
  (Flagger's request-success-rate min 99) or its p99 latency > 500 ms (request-duration max 500). As Flagger's
  scheduler: a failed check adds to a counter that never resets and holds the weight; rollback when the counter
  reaches the threshold 5 (Argo: failureLimit); a step needs 2 passing checks. No quality metric.
- ``Kayenta``: at the end of each step, Netflix's ACA judge on that step's 2 minutes as 10 s data points per arm
  (error rate and p99 latency, ``direction: increase``): outliers dropped (IQR x3, reduced sensitivity), a metric is
  High when the 98% Mann-Whitney (Hodges-Lehmann) interval's lower bound exceeds 0.25 x |estimate| and the mean ratio
  is >= 1; score = 100 x share of metrics not High; rollback when score < 75 (the marginal threshold). At 100% the
  baseline gets no traffic: its last 2 minutes (the 50% step) are the control. (The 10 s step is ours: at a 60 s step
  an interval would have 2 points per arm, too few for any 98% interval.)

Bandits: ``bandits.simulate`` on Bernoulli arms p = 0.04, 0.05, 0.07, 100 requests per round, 200 rounds, feedback
delays of 0 and 3 rounds: mean cumulative (pseudo-)regret and its ratio to a uniform split.

Output: markdown tables, printed and written to bench/results/rollouts.md. Deterministic for given seeds.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from scipy import stats as sps

from mlpilot.records import Rollout, RolloutPhase, RolloutSpec
from mlpilot.rollouts.analyses import ArmData, Comparison, run_analysis
from mlpilot.rollouts.bandits import SIMULATED, simulate
from mlpilot.rollouts.policy import Context, Gate, alpha_per_analysis, decide

RESULTS = Path(__file__).resolve().parent / "results"
RPS, LOOK_S, BUCKET_S = 100, 30, 10
PER_LOOK, BUCKETS = RPS * LOOK_S, LOOK_S // BUCKET_S
STEPS = (10, 25, 50, 100)
STEP_LOOKS = 4  # 2 minutes
MAX_LOOKS = 200  # 100 minutes; mlpilot's longest path is 4 steps x 20 min
BASE_ACC, BASE_ERR, LAT_MEDIAN, LAT_SIGMA = 0.92, 0.005, 0.020, 0.25
P97 = LAT_MEDIAN * math.exp(LAT_SIGMA * float(sps.norm.ppf(0.97)))
SCENARIOS = {
    "A": "no true difference",
    "B": "accuracy 0.90 everywhere (-2 points)",
    "C": "accuracy 0.50 on a 10% segment (-4.2 points overall)",
    "D": "p99 latency +30% (slowest 3% x1.3)",
    "E": "5% errors (baseline 0.5%)",
}
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
BANDIT_PROBS, BANDIT_ROUNDS, BANDIT_PER_ROUND = (0.04, 0.05, 0.07), 200, 100


@dataclass
class Chunk:
    """One arm's requests in one 30 s look."""

    n: int
    errors: int
    latency: np.ndarray  # seconds, ok requests
    correct: np.ndarray  # bool, ok requests (every request is labelled)
    bucket_n: np.ndarray  # per 10 s bucket: requests ...
    bucket_err: np.ndarray  # ... errors ...
    bucket_p99: np.ndarray  # ... p99 latency of the ok requests (NaN when none)


def _chunk(arm: np.ndarray, err: np.ndarray, lat: np.ndarray, correct: np.ndarray, bucket: np.ndarray) -> Chunk:
    ok = arm & ~err
    p99 = [np.quantile(lat[ok & (bucket == j)], 0.99) if (ok & (bucket == j)).any() else np.nan for j in range(BUCKETS)]
    per_bucket = [np.bincount(bucket[m], minlength=BUCKETS) for m in (arm, arm & err)]
    return Chunk(int(arm.sum()), int((arm & err).sum()), lat[ok], correct[ok], *per_bucket, np.asarray(p99))


def look(seed: int, k: int, weight: int, sc: str) -> tuple[Chunk, Chunk]:
    """Baseline and candidate requests of look ``k``: the same draws whatever the weight (common random numbers)."""
    rng = np.random.default_rng([seed, k])
    u, z = rng.random((4, PER_LOOK)), rng.standard_normal(PER_LOOK)
    cand = u[0] < weight / 100
    err = u[1] < np.where(cand, 0.05 if sc == "E" else BASE_ERR, BASE_ERR)
    acc = 0.90 if sc == "B" else np.where(u[3] < 0.10, 0.50, BASE_ACC) if sc == "C" else BASE_ACC
    correct = u[2] < np.where(cand, acc, BASE_ACC)
    lat = LAT_MEDIAN * np.exp(LAT_SIGMA * z)
    if sc == "D":  # a monotone map of the tail: every quantile above p97 is exactly 1.3x
        lat = np.where(cand & (lat > P97), 1.3 * lat, lat)
    bucket = np.arange(PER_LOOK) // (RPS * BUCKET_S)
    return _chunk(~cand, err, lat, correct, bucket), _chunk(cand, err, lat, correct, bucket)


@dataclass
class Cumulative:
    """One arm's evidence since the rollout began."""

    n: int = 0
    errors: int = 0
    chunks: list[Chunk] = field(default_factory=list)

    def add(self, c: Chunk) -> None:
        self.n, self.errors = self.n + c.n, self.errors + c.errors
        self.chunks.append(c)

    def latency(self) -> np.ndarray:
        return np.concatenate([c.latency for c in self.chunks])

    def correct(self) -> np.ndarray:
        return np.concatenate([c.correct for c in self.chunks])

    def arm_data(self, name: str) -> ArmData:
        correct = self.correct()
        arm = ArmData(variant=name, requests=self.n, errors=self.errors, latency_s=self.latency())
        arm.labels, arm.labelled_predictions = np.ones(correct.size, dtype=np.int8), correct.astype(np.int8)
        return arm


Result = tuple[str, float, bool]  # (rollback | promote | hold, simulated minutes to it, reached 100 %)


def _minutes(k: int) -> float:
    return (k + 1) * LOOK_S / 60.0


# ------------------------------------------------------------------------------------------------ the gates


def _rollout() -> Rollout:
    steps = [{"weight": w, "min_duration": "2m", "min_samples": 300} for w in STEPS]
    analyses = [{"kind": "error_rate"}, {"kind": "latency"}, {"kind": "performance", "required": True}]
    spec = RolloutSpec.model_validate({"candidate": "m:2", "steps": steps, "analyses": analyses})
    times = dict.fromkeys(("started_at", "phase_started_at", "step_started_at", "updated_at"), T0)
    fields = {"id": 1, "deployment": "d", "phase": RolloutPhase.CANARY, "baseline": "a", "candidate": "b"}
    return Rollout(spec=spec, revision=1, created_by="bench", state={"original": {"a": 100}}, **fields, **times)


def gate_mlpilot(sc: str, seed: int) -> Result:
    """mlpilot's policy and analyses, unchanged, looking every 30 s at everything since the rollout began, cut into
    the steps (the controller's evidence strata: difference gates compare the arms within each step)."""
    r = _rollout()
    specs = list(r.spec.analyses)
    alpha = alpha_per_analysis(r.spec.alpha, [a.kind for a in specs])
    base, cand = Cumulative(), Cumulative()
    steps: list[tuple[Cumulative, Cumulative]] = [(Cumulative(), Cumulative())]
    step_samples, full = 0, False
    for k in range(MAX_LOOKS):
        b, c = look(seed, k, STEPS[r.step], sc)
        base.add(b), cand.add(c)
        steps[-1][0].add(b), steps[-1][1].add(c)
        step_samples += c.n
        now = T0 + timedelta(seconds=LOOK_S * (k + 1))
        data = Comparison(baseline=base.arm_data("a"), candidate=cand.arm_data("b"), task="classification")
        if len(steps) > 1:
            data.strata = [Comparison(baseline=x.arm_data("a"), candidate=y.arm_data("b")) for x, y in steps]
        gates = [Gate(a.label, a.kind, run_analysis(a, data, alpha).verdict, a.required) for a in specs]
        d = decide(Context(r, now, gates, step_samples))
        if d.action in ("rollback", "promote"):
            return d.action, _minutes(k), full
        if d.action == "advance":
            r = r.model_copy(update={"step": d.step, "step_started_at": now})
            step_samples, full = 0, full or STEPS[d.step] == 100
            steps.append((Cumulative(), Cumulative()))
    return "hold", _minutes(MAX_LOOKS - 1), full


def _z_worse(x_c: int, n_c: int, x_b: int, n_b: int, *, higher_is_worse: bool, z_crit: float) -> bool:
    """Pooled two-proportion z-test, two-sided at z_crit, significant in the bad direction."""
    if n_c == 0 or n_b == 0:
        return False
    p = (x_c + x_b) / (n_c + n_b)
    se = math.sqrt(p * (1 - p) * (1 / n_c + 1 / n_b))
    z = (x_c / n_c - x_b / n_b) / se if se > 0 else 0.0
    return (z if higher_is_worse else -z) > z_crit


def gate_naive(sc: str, seed: int, alpha: float = 0.05) -> Result:
    """Fixed-horizon tests re-run at every look: the first significant worse look rolls back."""
    z_crit = float(sps.norm.ppf(1 - alpha / 2))
    base, cand = Cumulative(), Cumulative()
    step, full = 0, False
    for k in range(MAX_LOOKS):
        b, c = look(seed, k, STEPS[step], sc)
        base.add(b), cand.add(c)
        cb, cc, lb, lc = base.correct(), cand.correct(), base.latency(), cand.latency()
        worse = _z_worse(int(cc.sum()), cc.size, int(cb.sum()), cb.size, higher_is_worse=False, z_crit=z_crit)
        worse |= _z_worse(cand.errors, cand.n, base.errors, base.n, higher_is_worse=True, z_crit=z_crit)
        if lc.size and lb.size:
            mw = sps.mannwhitneyu(lc, lb, alternative="two-sided")
            worse |= bool(mw.pvalue < alpha and mw.statistic > lc.size * lb.size / 2)
        if worse:
            return "rollback", _minutes(k), full
        if (k + 1) % STEP_LOOKS == 0:
            if step == len(STEPS) - 1:
                return "promote", _minutes(k), full
            step += 1
            full = full or STEPS[step] == 100
    return "hold", _minutes(MAX_LOOKS - 1), full


def gate_flagger(sc: str, seed: int, threshold: int = 5) -> Result:
    """Flagger's built-in checks per 1-minute interval on the candidate alone, with its failed-checks counter."""
    step, passes, failed, full = 0, 0, 0, False
    for m in range(MAX_LOOKS // 2):
        chunks = [look(seed, 2 * m + i, STEPS[step], sc)[1] for i in range(2)]
        n, errors = sum(c.n for c in chunks), sum(c.errors for c in chunks)
        lat = np.concatenate([c.latency for c in chunks])
        bad = n > 0 and (errors / n > 0.01 or (lat.size > 0 and float(np.quantile(lat, 0.99)) > 0.5))
        if bad:
            failed += 1  # Flagger: FailedChecks+1 and return (the weight is held); never reset during a rollout
            if failed >= threshold:
                return "rollback", _minutes(2 * m + 1), full
            continue
        passes += 1
        if passes == 2:
            if step == len(STEPS) - 1:
                return "promote", _minutes(2 * m + 1), full
            step, passes = step + 1, 0
            full = full or STEPS[step] == 100
    return "hold", _minutes(MAX_LOOKS - 1), full


def _drop_outliers(x: np.ndarray) -> np.ndarray:
    """Kayenta's IQRDetector(factor=3, reduceSensitivity=true): fences at the wider of Q1/Q3 -/+ 3 IQR and p1/p99."""
    x = x[np.isfinite(x)]
    if x.size == 0:
        return x
    q1, q3, p1, p99 = np.percentile(x, [25, 75, 1, 99], method="weibull")  # commons-math's estimator
    lo, hi = min(p1, q1 - 3 * (q3 - q1)), max(p99, q3 + 3 * (q3 - q1))
    return x[(x >= lo) & (x <= hi)]


def kayenta_high(control: np.ndarray, experiment: np.ndarray, tolerance: float = 0.25, conf: float = 0.98) -> bool:
    """NetflixACAJudge's MannWhitneyClassifier, direction ``increase``: True when the metric is classified High."""
    ctrl, exp = _drop_outliers(control), _drop_outliers(experiment)
    if ctrl.size == 0 or exp.size == 0:
        return False  # Nodata: not a failure unless the metric is marked mustHaveData
    if np.array_equal(np.sort(ctrl), np.sort(exp)) or np.unique(np.r_[ctrl, exp]).size == 1:
        return False
    diffs = np.sort(np.subtract.outer(exp, ctrl).ravel())  # Hodges-Lehmann: all experiment - control differences
    nm = diffs.size
    c = math.floor(nm / 2 - float(sps.norm.ppf(0.5 + conf / 2)) * math.sqrt(nm * (exp.size + ctrl.size + 1) / 12))
    if c < 0:
        return False  # too few points for a 98% interval: the lower bound is -inf
    ratio = 1.0 if ctrl.mean() == 0 else exp.mean() / ctrl.mean()
    return bool(diffs[c] > tolerance * abs(float(np.median(diffs))) and ratio >= 1.0)


def _series(chunks: list[Chunk]) -> tuple[np.ndarray, np.ndarray]:
    """(error rate, p99 latency) per 10 s data point; a point without requests is NaN (removed, nanStrategy)."""
    n = np.concatenate([c.bucket_n for c in chunks]).astype(float)
    errors = np.concatenate([c.bucket_err for c in chunks])
    rate = np.divide(errors, n, out=np.full(n.size, np.nan), where=n > 0)
    return rate, np.concatenate([c.bucket_p99 for c in chunks])


def gate_kayenta(sc: str, seed: int, marginal: float = 75.0) -> Result:
    """Kayenta's judge once per step (the analysis interval) on the step's own data; fail below ``marginal``."""
    full, control = False, None
    for step, weight in enumerate(STEPS):
        looks = [look(seed, k, weight, sc) for k in range(STEP_LOOKS * step, STEP_LOOKS * (step + 1))]
        experiment = _series([c for _, c in looks])
        if weight < 100:
            control = _series([b for b, _ in looks])
        assert control is not None
        score = 100.0 * np.mean([not kayenta_high(cm, em) for cm, em in zip(control, experiment, strict=True)])
        k = STEP_LOOKS * (step + 1) - 1
        if score < marginal:
            return "rollback", _minutes(k), full
        full = full or (step + 1 < len(STEPS) and STEPS[step + 1] == 100)
    return "promote", _minutes(STEP_LOOKS * len(STEPS) - 1), full


GATES = {"mlpilot": gate_mlpilot, "naive peeking": gate_naive, "Flagger/Argo": gate_flagger, "Kayenta": gate_kayenta}


# ------------------------------------------------------------------------------------------------ running, tables


def _gate_task(task: tuple[str, str, int]) -> tuple[str, str, int, Result, float]:
    gate, sc, seed = task
    t0 = time.process_time()
    result = GATES[gate](sc, seed)
    return gate, sc, seed, result, time.process_time() - t0


def _bandit_task(task: tuple[str, int, int]) -> tuple[str, int, int, float, float]:
    algorithm, delay, seed = task
    size = {"rounds": BANDIT_ROUNDS, "per_round": BANDIT_PER_ROUND}
    out = simulate(algorithm, BANDIT_PROBS, **size, seed=seed, delay_rounds=delay)
    return algorithm, delay, seed, out["regret"], out["pulls"][-1] / sum(out["pulls"])


def _wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p, d = k / n, 1 + z * z / n
    mid, half = (p + z * z / (2 * n)) / d, z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, mid - half), min(1.0, mid + half)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _q(values: list[float], q: float) -> str:
    return f"{np.quantile(values, q):.1f}" if values else "-"


def gate_table(results: list[tuple[str, str, int, Result, float]]) -> str:
    rows = [
        "| scenario | gate | runs | rolled back (95% CI) | min to rollback: median | p90 | reached 100% | promoted "
        "| min to promote: median | p90 | CPU s/run |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for sc, what in SCENARIOS.items():
        for gate in GATES:
            runs = [(res, cpu) for g, s, _, res, cpu in results if g == gate and s == sc]
            if not runs:
                continue
            n = len(runs)
            back = [res[1] for res, _ in runs if res[0] == "rollback"]
            promoted = [res[1] for res, _ in runs if res[0] == "promote"]
            lo, hi = _wilson(len(back), n)
            full = sum(res[2] for res, _ in runs) / n
            cpu = sum(c for _, c in runs) / n
            label = f"{sc}: {what}" if gate == next(iter(GATES)) else ""
            rows.append(
                f"| {label} | {gate} | {n} | **{_pct(len(back) / n)}** ({_pct(lo)} to {_pct(hi)}) | "
                f"{_q(back, 0.5)} | {_q(back, 0.9)} | {_pct(full)} | {_pct(len(promoted) / n)} | "
                f"{_q(promoted, 0.5)} | {_q(promoted, 0.9)} | {cpu:.2f} |"
            )
    return "\n".join(rows)


def bandit_table(results: list[tuple[str, int, int, float, float]]) -> str:
    head = "| delay (rounds) | algorithm | seeds | mean regret (± s.e.) | vs uniform | requests to the best arm |"
    rows = [head, "|---:|---|---:|---:|---:|---:|"]
    for delay in sorted({d for _, d, _, _, _ in results}):
        uniform = np.mean([r for a, d, _, r, _ in results if a == "uniform" and d == delay])
        for algorithm in SIMULATED:
            regret = np.array([r for a, d, _, r, _ in results if a == algorithm and d == delay])
            best = np.mean([b for a, d, _, _, b in results if a == algorithm and d == delay])
            se = regret.std(ddof=1) / math.sqrt(regret.size) if regret.size > 1 else math.nan
            rows.append(
                f"| {delay} | {algorithm} | {regret.size} | {regret.mean():.1f} (± {se:.1f}) | "
                f"{regret.mean() / uniform:.2f} | {_pct(best)} |"
            )
    return "\n".join(rows)


def _machine() -> str:
    model = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
    cpu = model.group(1).strip() if model else platform.processor()
    load = os.getloadavg()[0]
    return f"{cpu} ({os.cpu_count()} CPUs), Python {platform.python_version()}, load average at start {load:.2f}"


def _commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=200, help="runs per gate and scenario (default 200)")
    parser.add_argument("--bandit-seeds", type=int, default=50, help="seeds per bandit setting (default 50)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 seeds, 5 per bandit setting")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=RESULTS / "rollouts.md")
    args = parser.parse_args(argv)
    seeds, bandit_seeds = (20, 5) if args.quick else (args.seeds, args.bandit_seeds)
    command = " ".join([".venv/bin/python bench/rollouts.py", *(sys.argv[1:] if argv is None else argv)])
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    gate_tasks = [(g, sc, s) for sc in SCENARIOS for g in GATES for s in range(seeds)]
    bandit_tasks = [(a, d, s) for d in (0, 3) for a in SIMULATED for s in range(bandit_seeds)]
    with ProcessPoolExecutor(args.workers) as pool:
        gates = sorted(pool.map(_gate_task, gate_tasks, chunksize=4), key=lambda r: r[:3])
        bandits = sorted(pool.map(_bandit_task, bandit_tasks, chunksize=8), key=lambda r: r[:3])
    wall, cpu = time.perf_counter() - t0, sum(r[4] for r in gates)
    probs = ", ".join(map(str, BANDIT_PROBS))
    text = f"""# Rollout gates vs peers

- date: {started}; commit `{_commit()}`; machine: {_machine()}
- command: `{command}`
- seeds: {seeds} per gate and scenario; {bandit_seeds} per bandit setting; {args.workers} worker processes
- wall time: {wall:.0f} s (the gates: {cpu:.0f} CPU s)

## Canary gates (10 → 25 → 50 → 100 %, 2 min minimum per step, 100 requests/s)

A: 'rolled back' is the false-rollback rate; B-E: the detection power. 'reached 100%' in B-E: a bad candidate
served all traffic (before a rollback, or promoted). Minutes are simulated time since the rollout began.

{gate_table(gates)}

## Bandits: Bernoulli arms p = {probs}; {BANDIT_PER_ROUND} requests per round, {BANDIT_ROUNDS} rounds

{bandit_table(bandits)}
"""
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
