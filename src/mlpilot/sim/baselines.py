"""Baselines for the incident benchmark, run on the same case as the engine (same rows, changes, onset):

* ``random`` — the candidate components in a seeded random order;
* ``baro`` — BARO-style (Pham et al., FSE 2024) robust z-score: every metric series the case offers (per-feature
  mean / null share / top-category share, per-variant error rate, per-stage latency, request rate, memory, LLM
  signals, label rate), scored ``|median(after) - median(before)| / IQR(before)`` and mapped to its component;
* ``nearest_change`` — recorded changes ordered by distance in time to the onset;
* ``drift`` — features ordered by their drift statistic;
* ``sliceline`` — the components named by SliceLine's top slices of the symptom.

Each returns a ranked list of components; the remaining candidates follow in random order so every baseline
ranks the same universe (Avg@5 is comparable).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import numpy as np
import pandas as pd

from mlpilot.incidents import collectors
from mlpilot.incidents.evidence import Case

__all__ = ["BASELINES", "all_baselines", "candidates"]


def candidates(case: Case) -> list[str]:
    """Every component a ranking may name for this case."""
    dep = case.deployment
    out = [f"feature:{c[3:]}" for c in case.frame.columns if str(c).startswith("in.")]
    out += [f"variant:{v}" for v in sorted(case.frame["variant"].dropna().unique())] if "variant" in case.frame else []
    out += sorted(set(case.stage_components.values()))
    out += [c.component.split("@", 1)[0] for c in case.changes]
    out += [f"release:{dep}", f"config:{dep}", f"traffic:{dep}"]
    if "label" in case.frame:
        out += [f"labels:{dep}", f"concept:{dep}"]
    if "llm.prompt" in case.frame:
        out += ["prompt:support", "index:kb", "tool:order_status", "provider:primary"]
    return list(dict.fromkeys(out))


def _fill(ranked: list[str], case: Case, seed: int) -> list[str]:
    rest = [c for c in candidates(case) if c not in ranked]
    np.random.default_rng(seed).shuffle(rest)
    return list(dict.fromkeys([*ranked, *rest]))


def random_baseline(case: Case, onset: datetime, seed: int) -> list[str]:
    return _fill([], case, seed)


def _series(case: Case) -> dict[str, pd.Series]:
    """Per-minute metric series, keyed by ``component|metric``."""
    f = case.frame.copy()
    f["minute"] = f["ts"].dt.floor("min")
    g = f.groupby("minute")
    out: dict[str, pd.Series] = {}
    for c in f.columns:
        if not str(c).startswith("in."):
            continue
        comp = f"feature:{c[3:]}"
        if pd.api.types.is_numeric_dtype(f[c].dtype):
            out[f"{comp}|mean"] = g[c].mean()
            out[f"{comp}|null"] = g[c].apply(lambda s: s.isna().mean())
        else:
            top = f[c].mode().iloc[0] if f[c].notna().any() else None
            out[f"{comp}|top"] = g[c].apply(lambda s, t=top: (s == t).mean())
    err = f["status"] == "error"
    for v, sub in f.assign(err=err).groupby("variant"):
        out[f"variant:{v}|errors"] = sub.groupby("minute")["err"].mean()
    for c in f.columns:
        if str(c).startswith("stage.") and str(c).endswith("_s"):
            stage = str(c)[6:-2]
            out[f"{case.stage_components.get(stage, 'dependency:' + stage)}|latency"] = g[c].mean()
    out[f"traffic:{case.deployment}|rate"] = g.size().astype(float)
    for col, comp in (
        ("llm.groundedness", "prompt:support"),
        ("llm.top_score", "index:kb"),
        ("llm.tool_errors", "tool:order_status"),
        ("llm.refusal", "prompt:support"),
    ):
        if col in f:
            out[f"{comp}|{col[4:]}"] = g[col].mean()
    if "llm.backend" in f:
        out["provider:primary|errors"] = g.apply(lambda s: (s["status"] == "error").mean())
    if "label" in f:
        out[f"labels:{case.deployment}|rate"] = g["label"].mean()
    if case.resources is not None and not case.resources.empty:
        r = case.resources.assign(minute=case.resources["ts"].dt.floor("min"))
        for metric, sub in r.groupby("metric"):
            if metric in ("rss_mb", "restarts"):
                out[f"release:{case.deployment}|{metric}"] = sub.groupby("minute")["value"].mean()
    return out


def baro(case: Case, onset: datetime, seed: int) -> list[str]:
    scores: dict[str, float] = {}
    cut = pd.Timestamp(onset)
    for key, s in _series(case).items():
        s = s.dropna()
        before, after = s[s.index < cut], s[s.index >= cut]
        if len(before) < 5 or len(after) < 2:
            continue
        q1, q3 = np.quantile(before, [0.25, 0.75])
        iqr = max(float(q3 - q1), 1e-6 * max(abs(float(np.median(before))), 1.0), 1e-9)
        z = abs(float(np.median(after)) - float(np.median(before))) / iqr
        comp = key.split("|", 1)[0]
        scores[comp] = max(scores.get(comp, 0.0), z)
    return _fill(sorted(scores, key=lambda c: -scores[c]), case, seed)


def nearest_change(case: Case, onset: datetime, seed: int) -> list[str]:
    ch = [c for c in case.changes if c.ts <= case.now]
    ch.sort(key=lambda c: abs((onset - c.ts).total_seconds()))
    return _fill([c.component.split("@", 1)[0] for c in ch], case, seed)


def drift_ranking(case: Case, onset: datetime, seed: int) -> list[str]:
    ev = collectors.feature_drift(case, onset)
    ev.sort(key=lambda e: -e.effect)
    return _fill([e.component for e in ev], case, seed)


def sliceline(case: Case, onset: datetime, seed: int) -> list[str]:
    ev = collectors.slices(case, onset, k=5)
    return _fill([e.component for e in ev], case, seed)


BASELINES: dict[str, Callable[[Case, datetime, int], list[str]]] = {
    "random": random_baseline,
    "baro": baro,
    "nearest_change": nearest_change,
    "drift": drift_ranking,
    "sliceline": sliceline,
}


def all_baselines(case: Case, onset: datetime, seed: int) -> dict[str, list[str]]:
    return {name: fn(case, onset, seed) for name, fn in BASELINES.items()}
