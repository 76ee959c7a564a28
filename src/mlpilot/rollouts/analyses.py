"""The rollout analyses: each a pure function of both arms' evidence that says pass, fail or inconclusive.

The controller fills a :class:`Comparison` (baseline and candidate :class:`ArmData`) from the request log and the
feedback, and calls :func:`run_analysis` per :class:`~mlpilot.records.AnalysisSpec` with that analysis' share of
the family-wise ``alpha`` (it Bonferroni-splits). Every statistical rule is on a time-uniform confidence sequence
(:mod:`mlpilot.rollouts.stats`) or on a test gated by an effect-size floor, so evaluating at every tick is safe.

Rules (``CS`` = the confidence sequence of ``candidate - baseline`` at ``alpha``):

- ``error_rate`` (``tolerance`` 0.01, ``max_rate`` None): FAIL if CS lower > 0, or the candidate's own rate has
  its CS lower bound above ``max_rate``; PASS if CS upper < ``tolerance``.
- ``latency`` (``quantile`` 0.99, ``max_ratio`` 1.2): FAIL if the one-sided Mann-Whitney p < alpha/2 and the
  median ratio > ``max_ratio`` (the body is slower), or the exceedance of the baseline's ``quantile`` has its CS
  (at alpha/2) lower bound above ``1 - quantile`` and the quantile ratio > ``max_ratio`` (the tail is slower).
- ``input_drift`` / ``output_drift``: a feature (output) drifts when its test rejects at ``alpha`` after the
  multiple-testing correction **and** its Jensen-Shannon distance (10 baseline-quantile bins, or categories) is at
  least ``min_effect`` = 0.1 (about a 0.3-standard-deviation mean shift of a normal feature), so significant but
  negligible shifts at large volumes do not fail a rollout. Outputs: chi-square on classes, KS on values.
- ``agreement`` (``min_agreement`` 0.95): share of paired rows with the same answer; FAIL if its CS upper <
  ``min_agreement``, PASS if its CS lower >= ``min_agreement``.
- ``performance`` / ``estimated_performance`` / ``reward`` (``margin``): per-row scores where higher is better;
  FAIL if CS upper < 0 (significantly worse), PASS if CS lower > -``margin`` (non-inferior).
- ``custom`` (``expression``): a boolean expression over per-arm aggregates (:data:`ATTRIBUTES`), evaluated by a
  small AST walker (never ``eval``): True → PASS, False → FAIL, a value the evidence lacks → INCONCLUSIVE.

An arm below ``spec.min_samples`` relevant samples makes the analysis INCONCLUSIVE.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlpilot.errors import InvalidArgument
from mlpilot.records import AnalysisKind, AnalysisSpec, Verdict
from mlpilot.rollouts import stats
from mlpilot.rollouts.expressions import ATTRIBUTES, MissingValue, evaluate, parse_expression
from mlpilot.rollouts.stats import Interval, Moments


def _empty() -> np.ndarray:
    return np.empty(0, dtype=np.float64)


@dataclass
class ArmData:
    """One arm's evidence in the analysis window.

    Attributes:
        variant: the variant's name.
        requests: logged requests in the window (not rows).
        errors: requests whose status is not ``ok``.
        latency_s: one latency (seconds) per ok request.
        predictions: 1-D, one per ok row: the primary output (class label or value).
        proba: 2-D ``(rows, classes)`` class probabilities, or None.
        inputs: one row per ok row, the feature columns.
        labels: ``y_true`` of the rows that have a label ...
        labelled_predictions: ... and the prediction for the same rows (aligned with ``labels``).
        rewards: one per rewarded request.
        llm: an LLM app's signals per answered request (``groundedness``, ``cost`` … see ``rollouts.llm``).
        evals: what ``mlpilot eval`` recorded on the arm's app version, per eval dataset ``NAME:VERSION``.
    """

    variant: str
    requests: int = 0
    errors: int = 0
    latency_s: np.ndarray = field(default_factory=_empty)
    predictions: np.ndarray | None = None
    proba: np.ndarray | None = None
    inputs: pd.DataFrame | None = None
    labels: np.ndarray | None = None
    labelled_predictions: np.ndarray | None = None
    rewards: np.ndarray | None = None
    llm: pd.DataFrame | None = None
    evals: dict[str, Any] = field(default_factory=dict)


@dataclass
class Comparison:
    """Baseline vs candidate evidence; ``paired`` holds both answers to the same rows (shadow); ``task`` is
    ``classification``, ``regression`` or None (inferred, see :func:`infer_task`); ``strata`` see below."""

    baseline: ArmData
    candidate: ArmData
    paired: tuple[np.ndarray, np.ndarray] | None = None
    task: str | None = None
    #: the same evidence cut into periods in which the split was constant (a canary's steps). The difference
    #: analyses (error rate, performance, estimated performance, reward) then compare the arms within each period
    #: (:func:`~mlpilot.rollouts.stats.stratified_diff_cs`), so a change both arms share over time is not read as
    #: a difference between them; the others use the pooled evidence.
    strata: list[Comparison] | None = None
    #: shadow phase of an LLM app: the judge's verdict on each paired answer ("a" baseline, "b" candidate,
    #: "tie", "invalid"), collected by the controller
    judgments: list[str] | None = None


@dataclass(frozen=True)
class AnalysisResult:
    """One analysis' verdict with the numbers behind it (the rollout's decision record).

    ``statistics`` and ``thresholds`` hold JSON-ready values only (plain floats/ints/str/bool/None, lists, dicts).
    """

    name: str
    kind: str
    verdict: Verdict
    message: str
    statistics: dict[str, Any]
    thresholds: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: name, kind, verdict (its value), message, statistics, thresholds."""
        stats_, thresholds = json_safe(self.statistics), json_safe(self.thresholds)
        return {"name": self.name, "kind": self.kind, "verdict": self.verdict.value, "message": self.message,
                "statistics": stats_, "thresholds": thresholds}  # fmt: skip


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON types: numpy scalars unwrapped, NaN/inf as None, intervals as dicts."""
    if isinstance(value, Interval):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


# ------------------------------------------------------------------------------------------------ parameters

_REQUIRED = object()
_Check = Callable[[str, Any], None]


def _number(low: float | None = None, high: float | None = None, *, strict: bool = False, none: bool = False) -> _Check:
    """A validator of a number in ``[low, high]`` (``(low, high)`` when ``strict``), or None when ``none``."""

    def check(name: str, value: Any) -> None:
        if value is None and none:
            return
        ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
        if ok and low is not None:
            ok = value > low if strict else value >= low
        if ok and high is not None:
            ok = value < high if strict else value <= high
        if not ok:
            lo, hi = ("(", ")") if strict else ("[", "]")
            bounds = f"{lo}{low if low is not None else '-inf'}, {high if high is not None else 'inf'}{hi}"
            raise InvalidArgument(
                f"parameter {name}={value!r} must be a number in {bounds}{' or null' if none else ''}"
            )

    return check


def _choice(*allowed: Any) -> _Check:
    def check(name: str, value: Any) -> None:
        if value not in allowed:
            raise InvalidArgument(f"parameter {name}={value!r} must be one of {list(allowed)}")

    return check


def _expression(name: str, value: Any) -> None:
    parse_expression(value)


def _text(name: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument(f"parameter {name} must be a non-empty string, got {value!r}")


def _llm_metric(name: str, value: Any) -> None:
    from mlpilot.rollouts.llm import LLM_METRICS

    _choice(*LLM_METRICS)(name, value)


def _eval_metric(name: str, value: Any) -> None:
    from mlpilot.llm.evals import METRICS

    _choice(*METRICS)(name, value)


def _judge(name: str, value: Any) -> None:
    """An OpenAI-compatible endpoint: ``{"base_url", "model", "api_key_env"?, "timeout_s"?}``."""
    from mlpilot.llm.backends import BackendSpec

    if not isinstance(value, Mapping):
        raise InvalidArgument(f'parameter {name} must be {{"base_url": …, "model": …}}, got {value!r}')
    try:
        BackendSpec.model_validate({"name": "judge", **value})
    except ValueError as exc:
        raise InvalidArgument(f"parameter {name}: {exc}") from None


_CORRECTION = ("holm", _choice("holm", "bonferroni", "fdr_bh", "none"))
_EFFECT = (0.1, _number(0.0, 1.0))

#: Per kind: parameter -> (default, validator).
PARAMS: dict[AnalysisKind, dict[str, tuple[Any, _Check]]] = {
    AnalysisKind.ERROR_RATE: {"tolerance": (0.01, _number(0.0, 1.0)), "max_rate": (None, _number(0.0, 1.0, none=True))},
    AnalysisKind.LATENCY: {"quantile": (0.99, _number(0.0, 1.0, strict=True)), "max_ratio": (1.2, _number(1.0))},
    AnalysisKind.INPUT_DRIFT: {
        "threshold": (None, _number(0.0, 1.0, none=True)),
        "test": ("ks", _choice("ks", "wasserstein", "psi", "jensenshannon")),
        "categorical_test": ("chi2", _choice("chi2", "jensenshannon", "psi", "unseen")),
        "correction": _CORRECTION,
        "min_effect": _EFFECT,
    },
    AnalysisKind.OUTPUT_DRIFT: {"correction": _CORRECTION, "min_effect": _EFFECT},
    AnalysisKind.AGREEMENT: {"min_agreement": (0.95, _number(0.0, 1.0)), "tolerance": (1e-6, _number(0.0))},
    AnalysisKind.PERFORMANCE: {
        "metric": (None, _choice(None, "accuracy", "mae", "rmse")),
        "margin": (0.02, _number(0.0)),
    },
    AnalysisKind.ESTIMATED_PERFORMANCE: {"margin": (0.02, _number(0.0, 1.0))},
    AnalysisKind.REWARD: {"margin": (0.0, _number(0.0))},
    AnalysisKind.CUSTOM: {"expression": (_REQUIRED, _expression)},
    AnalysisKind.LLM_METRIC: {"metric": (_REQUIRED, _llm_metric), "margin": (0.02, _number(0.0))},
    AnalysisKind.EVAL: {
        "dataset": (_REQUIRED, _text),
        "metric": (_REQUIRED, _eval_metric),
        "min": (None, _number(none=True)),
        "max_drop": (None, _number(0.0, none=True)),
    },
    AnalysisKind.WIN_RATE: {
        "judge": (_REQUIRED, _judge),
        "min_win_rate": (0.5, _number(0.0, 1.0)),
        "criteria": ("Which answer is more helpful, correct and faithful to the question?", _text),
        "max_pairs": (50, _number(1, 1000)),
    },
}


def check_params(spec: AnalysisSpec) -> dict[str, Any]:
    """Validate an analysis' params (the controller calls it when a rollout starts).

    Returns:
        the params with defaults filled in.

    Raises:
        InvalidArgument: an unknown parameter (the message names the known ones), a bad value, a missing
            ``expression`` for ``custom``, or an expression with a syntax error or a forbidden construct.
    """
    known = PARAMS[spec.kind]
    where = f"analysis {spec.label!r} ({spec.kind.value})"
    unknown = sorted(set(spec.params) - set(known))
    if unknown:
        raise InvalidArgument(f"{where} has unknown parameter(s) {unknown}; known: {sorted(known)}")
    out: dict[str, Any] = {}
    for name, (default, check) in known.items():
        if name not in spec.params and default is _REQUIRED:
            raise InvalidArgument(f"{where} needs parameter {name!r}")
        out[name] = spec.params.get(name, default)
        try:
            check(name, out[name])
        except InvalidArgument as exc:
            raise InvalidArgument(f"{where}: {exc}") from exc
    return out


# ------------------------------------------------------------------------------------------------ helpers


def infer_task(values: Any) -> str:
    """``classification`` for non-float outputs (labels, bools, text) and for floats that take at most 20
    distinct integer values; ``regression`` for other floats. Object arrays are judged by their values."""
    array = np.asarray(values)
    if array.dtype.kind == "O":
        try:
            array = array.astype(np.float64)
        except (TypeError, ValueError):
            return "classification"
    if array.dtype.kind != "f":
        return "classification"
    finite = array[np.isfinite(array)]
    few_integers = finite.size and np.all(finite == np.round(finite)) and np.unique(finite).size <= 20
    return "classification" if few_integers else "regression"


def _task(data: Comparison, *samples: Any) -> str:
    if data.task is not None:
        return data.task
    return next((infer_task(s) for s in samples if s is not None and len(s)), "classification")


def _level(alpha: float) -> str:
    return f"{100.0 * (1.0 - alpha):.3g}%"


def _fmt(x: float | None, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if x is not None and math.isfinite(x) else "n/a"


def _iv(iv: Interval) -> str:
    return f"[{_fmt(iv.lower)}, {_fmt(iv.upper)}]"


def _result(
    spec: AnalysisSpec, verdict: Verdict, message: str, statistics: dict[str, Any], p: dict[str, Any], alpha: float
) -> AnalysisResult:
    thresholds = {**p, "alpha": alpha, "min_samples": spec.min_samples}
    return AnalysisResult(spec.label, spec.kind.value, verdict, message, json_safe(statistics), json_safe(thresholds))


def _too_few(
    spec: AnalysisSpec, what: str, n_b: int, n_c: int, p: dict[str, Any], alpha: float
) -> AnalysisResult | None:
    if n_b >= spec.min_samples and n_c >= spec.min_samples:
        return None
    message = f"inconclusive: candidate has {n_c} {what}, baseline {n_b}; need at least {spec.min_samples} per arm"
    statistics = {"n_baseline": int(n_b), "n_candidate": int(n_c), "reason": "too_few_samples"}
    return _result(spec, Verdict.INCONCLUSIVE, message, statistics, p, alpha)


def _equal(a: Any, b: Any) -> np.ndarray:
    """Elementwise equality of two label arrays; with object or mixed dtypes, values that differ only in type
    (1 vs "1") count as equal."""
    a, b = np.asarray(a), np.asarray(b)
    same = np.asarray(a == b, dtype=bool) if a.shape == b.shape else np.zeros(0, dtype=bool)
    if same.shape != a.shape:
        raise InvalidArgument(f"cannot compare answers of shapes {a.shape} and {b.shape}")
    if (a.dtype != b.dtype or a.dtype.kind == "O") and not same.all():
        same |= a.astype(str) == b.astype(str)
    return same


def _msprt(sb: Any, sc: Any, alpha: float) -> float:
    """The always-valid p-value with the same mixture as the confidence sequence at ``alpha`` (dual to it)."""
    return stats.msprt_pvalue(sb, sc, rho=math.sqrt(stats.default_rho2(alpha)))


# ------------------------------------------------------------------------------------------------ analyses


def _error_rate(spec: AnalysisSpec, data: Comparison, alpha: float, p: dict[str, Any]) -> AnalysisResult:
    b, c = data.baseline, data.candidate
    if few := _too_few(spec, "requests", b.requests, c.requests, p, alpha):
        return few
    mb, mc = Moments.of_counts(b.errors, b.requests), Moments.of_counts(c.errors, c.requests)
    own = stats.mean_cs(mc, alpha)
    if data.strata:
        cells = [
            (
                Moments.of_counts(x.baseline.errors, x.baseline.requests),
                Moments.of_counts(x.candidate.errors, x.candidate.requests),
            )
            for x in data.strata
        ]
        cs = stats.stratified_diff_cs(cells, alpha)
    else:
        cs = stats.diff_cs(mb, mc, alpha)
    head = (
        f"candidate error rate {_fmt(mc.mean)} ({c.errors}/{c.requests}) vs baseline {_fmt(mb.mean)} "
        f"({b.errors}/{b.requests}): difference {cs.estimate:+.3f}{_within(data)}, {_level(alpha)} confidence sequence "
        f"{_iv(cs)}"
    )
    tolerance, max_rate = p["tolerance"], p["max_rate"]
    if cs.lower > 0:
        verdict, message = Verdict.FAIL, head + " is above 0 → worse"
    elif max_rate is not None and own.lower > max_rate:
        verdict = Verdict.FAIL
        message = head + f"; the candidate's own rate {_iv(own)} is above max_rate {max_rate:g} → fail"
    elif cs.upper < tolerance:
        verdict, message = Verdict.PASS, head + f" is below the tolerance {tolerance:g} → pass"
    else:
        verdict, message = Verdict.INCONCLUSIVE, head + f" includes 0 or the tolerance {tolerance:g} → inconclusive"
    statistics = {
        "n_baseline": b.requests, "n_candidate": c.requests, "errors_baseline": b.errors, "errors_candidate": c.errors,
        "rate_baseline": mb.mean, "rate_candidate": mc.mean, "difference": cs, "candidate_rate": own,
        "strata": len(data.strata) if data.strata else 1,
        "msprt_p_value": None if data.strata else _msprt(mb, mc, alpha),
    }  # fmt: skip
    return _result(spec, verdict, message, statistics, p, alpha)


def _ratio(c: float, b: float) -> float:
    return c / b if b > 0 else (math.inf if c > 0 else 1.0)


def _latency(spec: AnalysisSpec, data: Comparison, alpha: float, p: dict[str, Any]) -> AnalysisResult:
    b, c = _concurrent(data, lambda arm: np.asarray(arm.latency_s, dtype=np.float64))
    if few := _too_few(spec, "ok requests with a latency", b.size, c.size, p, alpha):
        return few
    q, max_ratio = float(p["quantile"]), float(p["max_ratio"])
    u, mw_p = stats.mann_whitney_greater(b, c)
    med_b, med_c, q_b, q_c = (float(np.quantile(x, v)) for v in (0.5, q) for x in (b, c))
    tail = stats.exceedance(b, c, q, alpha / 2.0)
    tail_cs: Interval = tail["cs"]
    body_slow = mw_p < alpha / 2.0 and _ratio(med_c, med_b) > max_ratio
    tail_slow = tail_cs.lower > 1.0 - q and _ratio(q_c, q_b) > max_ratio
    pq = f"p{100 * q:g}"
    message = (
        f"candidate median {1000 * med_c:.1f} ms vs {1000 * med_b:.1f} ms{_both_served(data)} "
        f"(ratio {_ratio(med_c, med_b):.2f}, "
        f"Mann-Whitney p={mw_p:.2g}); {pq} {1000 * q_c:.1f} ms vs {1000 * q_b:.1f} ms (ratio {_ratio(q_c, q_b):.2f}), "
        f"{_fmt(tail['share'])} of candidate requests above the baseline's {pq} (expected {1 - q:.3g}, "
        f"{_level(alpha / 2)} confidence sequence {_iv(tail_cs)})"
    )
    if body_slow or tail_slow:
        which = " and ".join(w for w, bad in (("body", body_slow), ("tail", tail_slow)) if bad)
        verdict, message = Verdict.FAIL, message + f" → {which} slower than {max_ratio:g}x"
    else:
        verdict, message = Verdict.PASS, message + f" → within {max_ratio:g}x"
    statistics = {
        "n_baseline": b.size, "n_candidate": c.size, "median_baseline": med_b, "median_candidate": med_c,
        "median_ratio": _ratio(med_c, med_b), "quantile_baseline": q_b, "quantile_candidate": q_c,
        "quantile_ratio": _ratio(q_c, q_b), "mann_whitney_u": u, "mann_whitney_p_value": mw_p, "exceedance": tail,
        "body_slower": body_slow, "tail_slower": tail_slow, "alpha_per_test": alpha / 2.0,
    }  # fmt: skip
    return _result(spec, verdict, message, statistics, p, alpha)


def _drift(
    spec: AnalysisSpec, alpha: float, p: dict[str, Any], frames: tuple[pd.DataFrame, pd.DataFrame], **kw: Any
) -> AnalysisResult:
    """Per-column test (TableDrift, corrected) gated by the Jensen-Shannon effect floor ``min_effect``."""
    from mlpilot.monitoring import TableDrift

    reference, current = frames
    what, test, cat_test = kw.pop("what"), kw.pop("test"), kw.pop("categorical_test")
    base = {"n_baseline": len(reference), "n_candidate": len(current), **kw.pop("extra", {})}
    try:
        detector = TableDrift(test, cat_test, alpha=alpha, correction=p["correction"], **kw).fit(reference)
        tested = detector.predict(current)
        cols: dict[str, Any] = {"numeric_columns": detector.numeric_columns_}
        cols["categorical_columns"] = detector.categorical_columns_
        effects = TableDrift("jensenshannon", "jensenshannon", **cols).fit(reference).score(current)
    except InvalidArgument as exc:
        return _result(spec, Verdict.INCONCLUSIVE, f"inconclusive: cannot compare the {what}: {exc}",
                       {**base, "reason": str(exc)}, p, alpha)  # fmt: skip
    rows: list[dict[str, Any]] = [
        {"feature": f.feature, "test": f.test, "statistic": f.statistic, "p_value": f.p_value,
         "jensen_shannon": effects[f.feature], "drifted": bool(f.is_drift and effects[f.feature] >= p["min_effect"])}
        for f in tested.features
    ]  # fmt: skip
    drifted = [r for r in rows if r["drifted"]]
    share = len(drifted) / len(rows) if rows else 0.0
    threshold = p.get("threshold")
    rule = f"{tested.correction}-adjusted {tested.test} at {alpha:.3g} and Jensen-Shannon >= {p['min_effect']:g}"
    if drifted:
        shown = drifted[:5]
        pv = ["" if r["p_value"] is None else f"p={r['p_value']:.2g}, " for r in shown]
        listed = ", ".join(f"{r['feature']} ({q}JS {r['jensen_shannon']:.3f})" for r, q in zip(shown, pv, strict=True))
        message = f"{len(drifted)} of {len(rows)} {what} drift ({rule}): {listed}"
    else:
        top = max(rows, key=lambda r: r["jensen_shannon"])
        message = f"0 of {len(rows)} {what} drift ({rule}); largest Jensen-Shannon {top['jensen_shannon']:.3f}"
        message += f" ({top['feature']})"
    if share > threshold if threshold is not None else bool(drifted):
        limit = f" (share {share:.2f} > {threshold:g})" if threshold is not None else ""
        verdict, message = Verdict.FAIL, message + limit + " → drift"
    else:
        verdict, message = Verdict.PASS, message + " → no material drift"
    statistics = {
        **base, "n_features": len(rows), "n_drifted": len(drifted), "share_drifted": share,
        "correction": tested.correction, "features": rows,
        "ignored_columns": [str(c) for c in detector.ignored_columns_],
    }  # fmt: skip
    return _result(spec, verdict, message, statistics, p, alpha)


def _input_drift(spec: AnalysisSpec, data: Comparison, alpha: float, p: dict[str, Any]) -> AnalysisResult:
    b, c = data.baseline.inputs, data.candidate.inputs
    n_b, n_c = (len(x) if x is not None else 0 for x in (b, c))
    if few := _too_few(spec, "rows with inputs", n_b, n_c, p, alpha):
        return few
    assert b is not None and c is not None
    common = [col for col in b.columns if col in c.columns]
    if not common:
        statistics = {"n_baseline": n_b, "n_candidate": n_c, "reason": "no common column"}
        return _result(
            spec, Verdict.INCONCLUSIVE, "inconclusive: the arms' inputs share no column", statistics, p, alpha
        )
    return _drift(spec, alpha, p, (b[common], c[common]), what="features", test=p["test"],
                  categorical_test=p["categorical_test"])  # fmt: skip


def _output_drift(spec: AnalysisSpec, data: Comparison, alpha: float, p: dict[str, Any]) -> AnalysisResult:
    b, c = data.baseline.predictions, data.candidate.predictions
    n_b, n_c = (len(x) if x is not None else 0 for x in (b, c))
    if few := _too_few(spec, "predictions", n_b, n_c, p, alpha):
        return few
    task = _task(data, b, c)
    if task == "regression":
        frames = tuple(pd.DataFrame({"prediction": pd.to_numeric(pd.Series(x), errors="coerce")}) for x in (b, c))
        columns: dict[str, list[str]] = {"numeric_columns": ["prediction"], "categorical_columns": []}
    else:
        frames = tuple(pd.DataFrame({"prediction": pd.Series(np.asarray(x), dtype=object)}) for x in (b, c))
        columns = {"numeric_columns": [], "categorical_columns": ["prediction"]}
    return _drift(spec, alpha, p, (frames[0], frames[1]), what="outputs", test="ks", categorical_test="chi2",
                  extra={"task": task}, **columns)  # fmt: skip


def _agreement(spec: AnalysisSpec, data: Comparison, alpha: float, p: dict[str, Any]) -> AnalysisResult:
    n = len(data.paired[0]) if data.paired is not None else 0
    if few := _too_few(spec, "paired rows", n, n, p, alpha):
        return few
    assert data.paired is not None
    b, c = (np.asarray(x) for x in data.paired)
    if b.shape != c.shape:
        raise InvalidArgument(f"paired answers differ in length: {b.shape} vs {c.shape}")
    task = _task(data, b, c)
    agree: np.ndarray | None = None
    if task == "regression":
        with contextlib.suppress(TypeError, ValueError):
            fb, fc = b.astype(np.float64), c.astype(np.float64)
            agree = (fb == fc) | (np.abs(fb - fc) <= p["tolerance"] * np.maximum(np.abs(fb), np.abs(fc)))
    if agree is None:
        task, agree = "classification", _equal(b, c)
    cs = stats.mean_cs(agree.astype(np.float64), alpha)
    target = float(p["min_agreement"])
    message = f"candidate agrees with the baseline on {_fmt(cs.estimate)} of {n} paired rows, "
    message += f"{_level(alpha)} confidence sequence {_iv(cs)}"
    if cs.upper < target:
        verdict, message = Verdict.FAIL, message + f" is below {target:g} → disagrees"
    elif cs.lower >= target:
        verdict, message = Verdict.PASS, message + f" is at least {target:g} → agrees"
    else:
        verdict, message = Verdict.INCONCLUSIVE, message + f" includes {target:g} → inconclusive"
    statistics = {"n_baseline": n, "n_candidate": n, "n_paired": n, "agreement": cs, "task": task}
    return _result(spec, verdict, message, statistics, p, alpha)


def _scores(arm: ArmData, metric: str) -> np.ndarray:
    """Per labelled row, higher is better: correct (0/1), ``-|error|`` (mae) or ``-error²`` (rmse)."""
    if arm.labels is None or arm.labelled_predictions is None:
        return _empty()
    labels, preds = np.asarray(arm.labels), np.asarray(arm.labelled_predictions)
    if labels.shape != preds.shape:
        raise InvalidArgument(f"{arm.variant}: {labels.shape} labels but {preds.shape} labelled predictions")
    if metric == "accuracy":
        return _equal(preds, labels).astype(np.float64)
    error = preds.astype(np.float64) - labels.astype(np.float64)
    score = -np.abs(error) if metric == "mae" else -(error**2)
    return score[np.isfinite(score)]  # rows with a missing label or prediction do not count


def _compare_scores(
    spec: AnalysisSpec, alpha: float, p: dict[str, Any], sb: np.ndarray, sc: np.ndarray, what: str, **kw: Any
) -> AnalysisResult:
    """The non-inferiority rule on per-row scores (higher is better). ``values=(b, c)`` and ``flip`` report a
    lower-is-better metric (mae, mse) whose difference is the negated score difference."""
    sb, sc = sb[np.isfinite(sb)], sc[np.isfinite(sc)]
    if few := _too_few(spec, kw.pop("unit"), sb.size, sc.size, p, alpha):
        return few
    flip = kw.pop("flip", False)
    v_b, v_c = kw.pop("values", (float(sb.mean()), float(sc.mean())))
    strata = kw.pop("strata", None)
    if strata:
        cs = stats.stratified_diff_cs([(x[np.isfinite(x)], y[np.isfinite(y)]) for x, y in strata], alpha)
    else:
        cs = stats.diff_cs(sb, sc, alpha)
    margin = float(p["margin"])
    verdict = Verdict.FAIL if cs.upper < 0 else Verdict.PASS if cs.lower > -margin else Verdict.INCONCLUSIVE
    lo, hi = (-cs.upper, -cs.lower) if flip else (cs.lower, cs.upper)
    message = (
        f"candidate {what} {_fmt(v_c)} vs baseline {_fmt(v_b)}: difference "
        f"{(-cs.estimate if flip else cs.estimate):+.3f}{' within periods' if strata else ''}, "
        f"{_level(alpha)} confidence sequence [{_fmt(lo)}, {_fmt(hi)}]"
    )
    bound = f"{'+' if flip else '-'}{margin:g} (the margin)"
    if verdict is Verdict.FAIL:
        message += f" is {'above' if flip else 'below'} 0 → worse"
    elif verdict is Verdict.PASS:
        message += f" lies {'below' if flip else 'above'} {bound} → not worse"
    else:
        message += f" reaches both 0 and {bound} → inconclusive"
    key = what.replace(" ", "_")
    statistics = {"n_baseline": sb.size, "n_candidate": sc.size, f"{key}_baseline": v_b, f"{key}_candidate": v_c,
                  **kw, "score_difference": cs, "strata": len(strata) if strata else 1,
                  "msprt_p_value": None if strata else _msprt(sb, sc, alpha)}  # fmt: skip
    return _result(spec, verdict, message, statistics, p, alpha)


def _performance(spec: AnalysisSpec, data: Comparison, alpha: float, p: dict[str, Any]) -> AnalysisResult:
    b, c = data.baseline, data.candidate
    metric = p["metric"] or ("accuracy" if _task(data, b.labels, c.labels) == "classification" else "mae")
    p = {**p, "metric": metric}
    try:
        sb, sc = _scores(b, metric), _scores(c, metric)
        strata = _strata(data, lambda arm: _scores(arm, metric))
    except (TypeError, ValueError) as exc:
        message = f"inconclusive: {metric} needs numeric labels and predictions ({exc})"
        n_b, n_c = (0 if a.labels is None else len(a.labels) for a in (b, c))
        statistics = {"n_baseline": n_b, "n_candidate": n_c, "metric": metric, "reason": str(exc)}
        return _result(spec, Verdict.INCONCLUSIVE, message, statistics, p, alpha)
    if metric == "accuracy":
        return _compare_scores(spec, alpha, p, sb, sc, "accuracy", unit="labelled rows", metric=metric, strata=strata)
    values = (-float(sb.mean()) if sb.size else math.nan, -float(sc.mean()) if sc.size else math.nan)
    if metric == "mae":
        return _compare_scores(spec, alpha, p, sb, sc, "mae", unit="labelled rows", values=values, flip=True,
                               metric=metric, strata=strata)  # fmt: skip
    rmse = {"rmse_baseline": math.sqrt(values[0]), "rmse_candidate": math.sqrt(values[1])}  # CS on the mean sq. error
    return _compare_scores(spec, alpha, p, sb, sc, "mse", unit="labelled rows", values=values, flip=True,
                           metric=metric, strata=strata, **rmse)  # fmt: skip


def _confidence(arm: ArmData) -> np.ndarray:
    if arm.proba is None:
        return _empty()
    proba = np.asarray(arm.proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[0] == 0 or proba.shape[1] == 0:
        return _empty()
    top = proba.max(axis=1)
    return top[np.isfinite(top)]


def _estimated_performance(spec: AnalysisSpec, data: Comparison, alpha: float, p: dict[str, Any]) -> AnalysisResult:
    cb, cc = _confidence(data.baseline), _confidence(data.candidate)
    if data.baseline.proba is None or data.candidate.proba is None:
        message = "inconclusive: estimated performance needs class probabilities from both arms"
        statistics = {"n_baseline": cb.size, "n_candidate": cc.size, "reason": "no_proba"}
        return _result(spec, Verdict.INCONCLUSIVE, message, statistics, p, alpha)
    return _compare_scores(
        spec, alpha, p, cb, cc, "mean confidence", unit="rows with probabilities", strata=_strata(data, _confidence)
    )


def _reward(spec: AnalysisSpec, data: Comparison, alpha: float, p: dict[str, Any]) -> AnalysisResult:
    rb, rc = (
        _empty() if a.rewards is None else np.asarray(a.rewards, np.float64) for a in (data.baseline, data.candidate)
    )
    return _compare_scores(
        spec, alpha, p, rb, rc, "mean reward", unit="rewarded requests", strata=_strata(data, _rewards)
    )


def _rewards(arm: ArmData) -> np.ndarray:
    return _empty() if arm.rewards is None else np.asarray(arm.rewards, np.float64)


def _strata(data: Comparison, score: Callable[[ArmData], np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Per-period scores of both arms, when the evidence comes in periods."""
    if not data.strata:
        return None
    return [(score(x.baseline), score(x.candidate)) for x in data.strata]


def _concurrent(data: Comparison, score: Callable[[ArmData], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Both arms' finite values, pooled over the periods in which *both* served when the evidence comes in periods.

    A period only the candidate served (the 100% step) has no concurrent baseline: its values would be compared with
    the baseline's from earlier, when the machine, the load or the time of day may differ. Latency is where that
    shows: on a machine whose load changed between steps, an identical candidate measured 1.27x slower."""

    def finite(arm: ArmData) -> np.ndarray:
        x = score(arm)
        return x[np.isfinite(x)]

    if not data.strata:
        return finite(data.baseline), finite(data.candidate)
    both = [(b, c) for b, c in ((finite(x.baseline), finite(x.candidate)) for x in data.strata) if b.size and c.size]
    if not both:
        return _empty(), _empty()
    return np.concatenate([b for b, _ in both]), np.concatenate([c for _, c in both])


def _both_served(data: Comparison) -> str:
    return " in the periods both arms served" if data.strata else ""


def _within(data: Comparison) -> str:
    return " within periods" if data.strata else ""


def _custom(spec: AnalysisSpec, data: Comparison, alpha: float, p: dict[str, Any]) -> AnalysisResult:
    b, c = data.baseline, data.candidate
    if few := _too_few(spec, "requests", b.requests, c.requests, p, alpha):
        return few
    tree = parse_expression(p["expression"])
    task = _task(data, b.labels, c.labels, b.predictions, c.predictions)
    values = {"baseline": arm_values(b, task), "candidate": arm_values(c, task)}
    statistics: dict[str, Any] = {"n_baseline": b.requests, "n_candidate": c.requests, "values": values}
    try:
        outcome = evaluate(tree, values)
    except MissingValue as exc:
        return _result(spec, Verdict.INCONCLUSIVE, f"inconclusive: {p['expression']} needs {exc}", statistics, p, alpha)
    verdict = Verdict.PASS if outcome else Verdict.FAIL
    return _result(
        spec, verdict, f"{p['expression']} is {str(outcome).lower()} → {verdict.value}", statistics, p, alpha
    )


def arm_values(arm: ArmData, task: str = "classification") -> dict[str, float | None]:
    """The per-arm aggregates a custom expression can use (None where the evidence lacks them): accuracy for a
    classification task with labels, mae for numeric labels, latency quantiles in seconds."""
    lat = np.asarray(arm.latency_s, dtype=np.float64)
    lat = lat[np.isfinite(lat)]
    rows = arm.predictions if arm.predictions is not None else arm.inputs
    rewards = np.asarray(arm.rewards if arm.rewards is not None else [], dtype=np.float64)
    out: dict[str, float | None] = dict.fromkeys(ATTRIBUTES)
    out.update(requests=float(arm.requests), errors=float(arm.errors), rows=float(len(rows) if rows is not None else 0))
    out["error_rate"] = arm.errors / arm.requests if arm.requests else None
    if lat.size:
        out["latency_mean"] = float(lat.mean())
        out.update({f"latency_p{q}": float(np.quantile(lat, q / 100)) for q in (50, 90, 95, 99)})
    if arm.labels is not None and arm.labelled_predictions is not None and len(arm.labels):
        if task == "classification":
            out["accuracy"] = float(_scores(arm, "accuracy").mean())
        with contextlib.suppress(TypeError, ValueError):
            out["mae"] = float(-_scores(arm, "mae").mean())
    if rewards.size:
        out["mean_reward"] = float(rewards.mean())
    if arm.predictions is not None and len(arm.predictions):
        with contextlib.suppress(TypeError, ValueError):
            out["prediction_mean"] = float(np.asarray(arm.predictions, dtype=np.float64).mean())
    if (confidence := _confidence(arm)).size:
        out["confidence_mean"] = float(confidence.mean())
    if arm.llm is not None:
        from mlpilot.rollouts.llm import arm_llm_values

        out.update(arm_llm_values(arm))
    return {k: (v if v is None or math.isfinite(v) else None) for k, v in out.items()}


_ANALYSES: dict[AnalysisKind, Callable[[AnalysisSpec, Comparison, float, dict[str, Any]], AnalysisResult]] = {
    AnalysisKind.ERROR_RATE: _error_rate,
    AnalysisKind.LATENCY: _latency,
    AnalysisKind.INPUT_DRIFT: _input_drift,
    AnalysisKind.OUTPUT_DRIFT: _output_drift,
    AnalysisKind.AGREEMENT: _agreement,
    AnalysisKind.PERFORMANCE: _performance,
    AnalysisKind.ESTIMATED_PERFORMANCE: _estimated_performance,
    AnalysisKind.REWARD: _reward,
    AnalysisKind.CUSTOM: _custom,
}


def _llm_analyses() -> None:
    from mlpilot.rollouts import llm

    _ANALYSES[AnalysisKind.LLM_METRIC] = llm.llm_metric_analysis
    _ANALYSES[AnalysisKind.EVAL] = llm.eval_analysis
    _ANALYSES[AnalysisKind.WIN_RATE] = llm.win_rate_analysis


def run_analysis(spec: AnalysisSpec, data: Comparison, alpha: float = 0.05) -> AnalysisResult:
    """Run one analysis on the evidence.

    Args:
        spec: the analysis (kind, params, ``min_samples``).
        data: both arms' evidence.
        alpha: this analysis' error probability over all looks (the caller's Bonferroni share).

    Returns:
        an :class:`AnalysisResult` (pass, fail or inconclusive) with its statistics and thresholds.

    Raises:
        InvalidArgument: bad params (see :func:`check_params`), ``alpha`` outside ``(0, 1)``, or malformed
            evidence (labels and predictions of different lengths …).
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 < alpha < 1.0:
        raise InvalidArgument(f"alpha must be a number in (0, 1), got {alpha!r}")
    if spec.kind not in _ANALYSES:
        _llm_analyses()
    return _ANALYSES[spec.kind](spec, data, float(alpha), check_params(spec))
