"""Evidence collectors: each looks at one kind of signal in a :class:`~mlpilot.incidents.evidence.Case` and returns
:class:`~mlpilot.incidents.evidence.Evidence` (pure functions over DataFrames; no store, no clock).

* :func:`changepoint` — when the symptom started (best single mean shift of its per-minute series) and whether it
  is abrupt (a step) or gradual (a trend);
* :func:`change_timeline` — the recorded changes (releases, config, rollouts, alias moves) before the onset;
* :func:`variant_comparison` — one variant worse than the others after the onset;
* :func:`feature_drift` — per-feature drift before → after, with its kind (rescale, nulls, unseen categories,
  stale values) and its *impact*: how much worse the symptom is on rows with outlying values of that feature;
* :func:`slices` — SliceLine over segments, variants and binned features: where the symptom concentrates;
* :func:`stage_latency` — latency per stage (from traces), before → after;
* :func:`error_clusters` — error messages normalised and grouped;
* :func:`resources` — memory growth, restarts, request rate;
* :func:`llm_signals` — retrieval scores, groundedness and refusals by prompt / index / provider model version;
* :func:`labels` — label base rate vs prediction rate (a label pipeline fault vs concept drift).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from mlpilot.incidents.evidence import Case, Evidence
from mlpilot.incidents.slices import find_slices

__all__ = ["COLLECTORS", "collect", "nanmean", "split", "symptom_values"]


def _quiet(fn: Any) -> Any:
    def wrapped(x: Any, *args: Any, **kwargs: Any) -> Any:
        a = np.asarray(x, dtype=float)
        if a.size == 0 or np.isnan(a).all():
            return float("nan")
        return fn(a, *args, **kwargs)

    return wrapped


#: NaN-ignoring statistics that return NaN (instead of warning) when there is nothing to summarise
nanmean, nanstd, nanmedian, nanquantile = (_quiet(f) for f in (np.nanmean, np.nanstd, np.nanmedian, np.nanquantile))


# --------------------------------------------------------------------------------------------- the symptom


def symptom_values(frame: pd.DataFrame, kind: str) -> np.ndarray:
    """Per-row badness for a symptom kind (NaN where a row says nothing, e.g. no label yet, or a request the
    deployment's input quarantine refused)."""
    n = len(frame)
    if kind in ("errors", "drift"):  # drift: no per-row badness; errors let the collectors still see impact
        if "status" not in frame:
            return np.zeros(n)
        status = frame["status"].to_numpy()
        out = (status == "error").astype(float)
        out[status == "quarantined"] = np.nan
        return out
    if kind == "latency":
        return frame["latency_s"].to_numpy(dtype=float) if "latency_s" in frame else np.full(n, np.nan)
    if kind == "accuracy":
        if "label" not in frame or "pred" not in frame:
            return np.full(n, np.nan)
        label = frame["label"].to_numpy(dtype=object)
        wrong = (frame["pred"].to_numpy(dtype=object) != label).astype(float)
        wrong[pd.isna(label)] = np.nan
        if "status" in frame:
            wrong[frame["status"].to_numpy() != "ok"] = np.nan  # no prediction, nothing to be right or wrong about
        return wrong
    if kind == "quality":
        for col, flip in (("llm.groundedness", True), ("llm.refusal", False)):
            if col in frame:
                v = frame[col].to_numpy(dtype=float)
                return 1.0 - v if flip else v
        return np.full(n, np.nan)
    if kind == "cost":
        return frame["llm.cost"].to_numpy(dtype=float) if "llm.cost" in frame else np.full(n, np.nan)
    return symptom_values(frame, "errors")


def per_bucket(frame: pd.DataFrame, values: np.ndarray, start: datetime, n: int, width_s: float = 60.0) -> np.ndarray:
    """Mean of ``values`` per bucket of ``width_s`` seconds from ``start`` (NaN for empty buckets)."""
    ts = frame["ts"].to_numpy(dtype="datetime64[ns]")
    idx = ((ts - np.datetime64(start.replace(tzinfo=None), "ns")) // np.timedelta64(int(width_s * 1e9), "ns")).astype(
        np.int64
    )
    ok = (idx >= 0) & (idx < n) & ~np.isnan(values)
    sums = np.bincount(idx[ok], weights=values[ok], minlength=n)[:n]
    counts = np.bincount(idx[ok], minlength=n)[:n].astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def split(case: Case, onset: datetime) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows before the onset (the baseline) and from the onset on."""
    ts = case.frame["ts"]
    cut = pd.Timestamp(onset)
    return case.frame[ts < cut], case.frame[ts >= cut]


# --------------------------------------------------------------------------------------------- collectors


def bucket_seconds(span_s: float) -> float:
    """Width of the series' buckets: a minute for hours of data, down to a second for a minute of it (about 120
    buckets over the window), so the same engine works on production windows and on short tests."""
    return float(min(60.0, max(1.0, round(span_s / 120.0))))


def _span_s(case: Case) -> float:
    """Seconds from the first logged row (to the second) to the case's ``now``."""
    start = pd.Timestamp(case.frame["ts"].min()).floor("s").to_pydatetime()
    return (case.now - start).total_seconds()


def changepoint(case: Case) -> list[Evidence]:
    """The best single mean shift of the symptom's series (refines the alert's onset), how many buckets the change
    took (``abrupt`` when at most 3: a step rather than a ramp), and its size in baseline standard deviations."""
    f = case.frame
    if f.empty:
        return []
    start = pd.Timestamp(f["ts"].min()).floor("s").to_pydatetime()
    span = _span_s(case)
    width_s = bucket_seconds(span)
    n_buckets = int(span // width_s) + 1
    series = per_bucket(f, symptom_values(f, case.symptom.kind), start, n_buckets, width_s)
    ok = ~np.isnan(series)
    x = np.flatnonzero(ok)
    y = series[ok]
    if len(y) < 8:
        return []
    best_k, best = mean_shift(y)
    total_ss = float(np.sum((y - np.mean(y)) ** 2))
    before, after = y[:best_k], y[best_k:]
    sd = float(np.std(before)) or float(np.std(y)) or 1e-9
    shift = float(np.mean(after) - np.mean(before))
    at = start + timedelta(seconds=int(x[best_k]) * width_s)
    width = ramp_width(y, best_k)
    return [
        Evidence(
            "changepoint:symptom",
            "changepoint",
            f"symptom:{case.symptom.kind}",
            f"{case.symptom.kind} moved from {np.mean(before):.4g} to {np.mean(after):.4g} at {at:%H:%M:%S}",
            effect=abs(shift) / max(sd, 1e-9 + 0.05 * abs(float(np.mean(before)))),
            specificity=0.0,
            at=at,
            data={
                "before": float(np.mean(before)),
                "after": float(np.mean(after)),
                "abrupt": width <= 3,
                "ramp_buckets": width,
                "bucket_s": width_s,
                "step_r2": float(best / total_ss) if total_ss > 0 else 0.0,
                "series": [None if v != v else round(float(v), 6) for v in series[-180:]],
            },
        )
    ]


def change_timeline(case: Case, onset: datetime, lookback: timedelta = timedelta(hours=2)) -> list[Evidence]:
    """Every recorded change from ``lookback`` before the onset until now."""
    out = []
    for c in case.changes:
        if onset - lookback <= c.ts <= case.now:
            out.append(
                Evidence(
                    f"change:{c.ref}",
                    "change",
                    c.component,
                    c.summary,
                    effect=1.0,
                    specificity=0.8,
                    at=c.ts,
                    data={"change_kind": c.kind, **dict(c.data)},
                )
            )
    return out


def mean_shift(y: np.ndarray, margin: int = 3) -> tuple[int, float]:
    """The split ``k`` of ``y`` that best separates two means (``y[:k]`` vs ``y[k:]``) and its gain (the reduction
    of the squared error)."""
    n = len(y)
    if n < 2 * margin + 1:
        return n // 2, 0.0
    cs = np.cumsum(y)
    k = np.arange(margin, n - margin + 1)
    gain = cs[k - 1] ** 2 / k + (cs[-1] - cs[k - 1]) ** 2 / (n - k) - cs[-1] ** 2 / n
    i = int(np.argmax(gain))
    return int(k[i]), float(gain[i])


def ramp_width(y: np.ndarray, k: int, widths: Sequence[int] = (1, 3, 6, 10, 15, 20, 30)) -> int:
    """How many points the change around ``k`` takes: the ramp width (from ``widths``) whose piecewise-linear fit
    (flat, linear ramp ending at the new level, flat) leaves the least squared error."""
    n = len(y)
    errs: dict[int, float] = {}
    for w in widths:
        for end in range(max(k - w // 2, 1), min(k + w // 2 + 2, n + 1)):
            begin = max(end - w, 0)
            a = float(np.mean(y[:begin])) if begin > 0 else float(y[0])
            b = float(np.mean(y[end:])) if end < n else float(y[-1])  # a ramp to the last point ends at it
            fit = np.empty(n)
            fit[:begin] = a
            fit[begin:end] = np.linspace(a, b, end - begin + 1)[1:] if end > begin else b
            fit[end:] = b
            errs[w] = min(errs.get(w, np.inf), float(np.sum((y - fit) ** 2)))
    if not errs:
        return 1
    best = min(errs.values())
    # the narrowest ramp that fits about as well as the best one (a ramp can always bend to a little noise)
    return min(w for w, e in errs.items() if e <= best * 1.03 + 1e-12)


def _z_rate(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample z of means (Welch), 0 when either side is too small."""
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if len(a) < 5 or len(b) < 5:
        return 0.0
    se = np.sqrt(np.var(a) / len(a) + np.var(b) / len(b))
    return float((np.mean(a) - np.mean(b)) / max(se, 1e-9))


def variant_comparison(case: Case, onset: datetime) -> list[Evidence]:
    """Per variant, the symptom after the onset vs the other variants (z) and vs its own baseline."""
    if "variant" not in case.frame:
        return []
    before, after = split(case, onset)
    names = sorted(set(after["variant"].dropna().unique()))
    if len(names) < 2:
        return []
    vals = symptom_values(after, case.symptom.kind)
    vb = symptom_values(before, case.symptom.kind)
    var_after = after["variant"].to_numpy()
    var_before = before["variant"].to_numpy()
    out = []
    for v in names:
        mine = var_after == v
        z = _z_rate(vals[mine], vals[~mine])
        m_v, m_o = nanmean(vals[mine]) if mine.any() else np.nan, nanmean(vals[~mine])
        base = nanmean(vb[var_before == v]) if (var_before == v).any() else np.nan
        share = float(mine.mean())
        out.append(
            Evidence(
                f"variant:{v}",
                "variant",
                f"variant:{v}",
                f"variant {v}: {case.symptom.kind} {m_v:.4g} vs {m_o:.4g} on the other variants (z={z:.1f}, "
                f"{share:.0%} of traffic)",
                effect=max(z, 0.0) / 4.0,
                specificity=1.0 - share,
                data={"z": z, "mean": m_v, "others": m_o, "baseline": base, "share": share},
            )
        )
    return out


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.sort(a), np.sort(b)
    if len(a) == 0 or len(b) == 0:
        return 0.0
    grid = np.concatenate([a, b])
    return float(
        np.max(np.abs(np.searchsorted(a, grid, "right") / len(a) - np.searchsorted(b, grid, "right") / len(b)))
    )


def _features(case: Case) -> list[str]:
    if case.features is not None:
        return [f if f.startswith("in.") else f"in.{f}" for f in case.features]
    return [c for c in case.frame.columns if str(c).startswith("in.")]


def _without_far_outliers(values: np.ndarray, k: float = 20.0, most: float = 0.2) -> np.ndarray:
    """The baseline without values more than ``k`` robust standard deviations (1.4826 MAD) from its median — an
    earlier episode of the same upstream bug (a unit x1000 on a few percent of the rows) would otherwise widen the
    reference range until the bug looks normal. Leaves the values alone when that would drop more than ``most`` of
    them (or the spread is zero)."""
    med = float(np.median(values))
    mad = 1.4826 * float(np.median(np.abs(values - med)))
    if mad <= 0:
        return values
    keep = np.abs(values - med) <= k * mad
    return values[keep] if keep.mean() >= 1.0 - most else values


def feature_drift(case: Case, onset: datetime) -> list[Evidence]:
    """Per input feature: KS (numeric) or total variation (categorical) before → after, what kind of change it is,
    and the impact: the symptom on rows with outlying values minus the symptom on the others."""
    before, after = split(case, onset)
    # the onset is an estimate good to a bucket or two: rows just before it may already carry the change, and one
    # such row moves the reference range of a feature, so the reference stops two buckets short of the onset
    guard = pd.Timestamp(onset) - pd.Timedelta(seconds=2 * bucket_seconds(_span_s(case)))
    if (before["ts"] < guard).sum() >= 30:
        before = before[before["ts"] < guard]
    if len(before) < 30 or len(after) < 30:
        return []
    sym = symptom_values(after, case.symptom.kind)
    out = []
    for col in _features(case):
        if col not in case.frame:
            continue
        name = col[3:]
        b, a = before[col], after[col]
        null_b, null_a = float(b.isna().mean()), float(a.isna().mean())
        data: dict[str, object] = {"null_before": null_b, "null_after": null_a}
        numeric = pd.api.types.is_numeric_dtype(b.dtype) and not pd.api.types.is_bool_dtype(b.dtype)
        if numeric:
            bv, av = b.dropna().to_numpy(dtype=float), a.dropna().to_numpy(dtype=float)
            if len(bv) < 10 or len(av) < 10:
                continue
            stat = _ks(bv, av)
            ref = _without_far_outliers(bv)
            lo, hi = np.quantile(ref, [0.001, 0.999])
            span = max(hi - lo, 1e-9)
            lo_w, hi_w = lo - 0.05 * span, hi + 0.05 * span
            vals = a.to_numpy(dtype=float)
            flagged = (vals < lo_w) | (vals > hi_w) | np.isnan(vals)
            sd_b, sd_a = float(np.std(bv)), float(np.std(av))
            med_b, med_a = float(np.median(np.abs(ref))), float(np.median(np.abs(av)))
            uniq_b = len(np.unique(bv[-500:])) / max(min(len(bv), 500), 1)
            uniq_a = len(np.unique(av[-500:])) / max(min(len(av), 500), 1)
            out_vals = np.abs(vals[flagged & ~np.isnan(vals)])
            outlier_scale = _ratio(float(np.median(out_vals)), med_b) if len(out_vals) else 1.0
            data.update(
                outlier_scale=outlier_scale,
                ks=stat,
                low=float(lo_w),
                high=float(hi_w),
                scale_ratio=_ratio(med_a, med_b),
                std_ratio=_ratio(sd_a, sd_b),
                unique_before=uniq_b,
                unique_after=uniq_a,
                outside=float(np.mean(flagged)),
            )
        else:
            bc = b.dropna().astype(str)
            ac = a.dropna().astype(str)
            if len(bc) < 10 or len(ac) < 10:
                continue
            pb, pa = bc.value_counts(normalize=True), ac.value_counts(normalize=True)
            keys = pb.index.union(pa.index)
            stat = float(0.5 * np.abs(pb.reindex(keys, fill_value=0) - pa.reindex(keys, fill_value=0)).sum())
            known = set(pb.index)
            flagged = ~a.astype(str).isin(known).to_numpy() | a.isna().to_numpy()
            uniq_b, uniq_a = len(pb) / max(len(bc), 1), len(pa) / max(len(ac), 1)
            data.update(
                tv=stat,
                unseen=float(np.mean(~ac.isin(known))),
                allowed=sorted(known)[:50],
                allowed_truncated=len(known) > 50,  # a rule from a cut list would refuse legitimate values
                outside=float(np.mean(flagged)),
            )
        stat = max(stat, abs(null_a - null_b))
        impact, impact_z = 0.0, 0.0
        if flagged.sum() >= 5 and (~flagged).any():
            fv, nv = sym[flagged], sym[~flagged]
            if np.isfinite(fv).any() and np.isfinite(nv).any():
                impact = float(nanmean(fv) - nanmean(nv))
                impact_z = _z_rate(fv, nv)
        data["impact"] = impact
        data["impact_z"] = impact_z
        data["kind"] = _drift_kind(data, numeric)
        out.append(
            Evidence(
                f"drift:{name}",
                "drift",
                f"feature:{name}",
                f"{name}: drift {stat:.2f} ({data['kind']}), {float(data['outside']):.0%} of rows outlying, "  # type: ignore[arg-type]
                f"symptom {impact:+.3g} on them",
                effect=stat / 0.15,
                specificity=0.5,
                data=data,
            )
        )
    # specificity: one feature drifting among many points more narrowly than all of them drifting
    drifting = sum(1 for e in out if e.effect >= 1.0)
    return [
        Evidence(e.ref, e.kind, e.component, e.summary, e.effect, 1.0 / max(drifting, 1), e.at, e.data) for e in out
    ]


def _ratio(a: float, b: float) -> float:
    """``a / b`` where 0/0 is 1 (nothing changed) and x/0 is a large finite number (JSON has no infinity)."""
    if b > 0:
        return a / b
    return 1.0 if a == 0 else 1e6


def _drift_kind(d: dict[str, object], numeric: bool) -> str:
    null_jump = float(d["null_after"]) - float(d["null_before"])  # type: ignore[arg-type]
    null_before = float(d["null_before"])  # type: ignore[arg-type]
    if null_jump > 0.05 or (null_jump > 0.01 and null_jump > 2 * null_before):
        return "nulls"
    if not numeric:
        return "encoding" if float(d.get("unseen", 0.0)) > 0.05 else "distribution"  # type: ignore[arg-type]
    ratio = float(d["scale_ratio"])  # type: ignore[arg-type]
    if float(d["unique_after"]) < 0.35 * float(d["unique_before"]) or float(d["std_ratio"]) < 0.2:  # type: ignore[arg-type]
        return "stale"
    outliers = float(d.get("outside", 0.0))  # type: ignore[arg-type]
    scale = float(d.get("outlier_scale", 1.0))  # type: ignore[arg-type]
    if ratio > 2.5 or ratio < 0.4 or (outliers >= 0.02 and (scale > 5.0 or scale < 0.2)):
        return "rescale"  # all values, or the outlying share of them, are off by a factor (a unit change upstream)
    return "distribution"


def slices(case: Case, onset: datetime, k: int = 3) -> list[Evidence]:
    """Where the symptom concentrates after the onset (SliceLine over segments, variants and binned features)."""
    _, after = split(case, onset)
    if len(after) < 50:
        return []
    vals = symptom_values(after, case.symptom.kind)
    ok = ~np.isnan(vals)
    if case.symptom.kind == "latency" and ok.any():
        vals = (vals > nanquantile(vals, 0.9)).astype(float)
    cols = list(case.segments or [])
    if not cols:
        cols = [c for c in _features(case) if c in after and not pd.api.types.is_numeric_dtype(after[c].dtype)]
    if "variant" in after and after["variant"].nunique() > 1:
        cols.append("variant")
    cols = [c for c in cols if c in after]
    if not cols or not ok.any() or np.nansum(vals) <= 0:
        return []
    found = find_slices(after[ok].reset_index(drop=True), vals[ok], cols, k=k, max_level=2)
    out = []
    for i, s in enumerate(found):
        comps = [
            f"variant:{v}" if c == "variant" else f"feature:{c[3:] if c.startswith('in.') else c}"
            for c, v in s.predicates
        ]
        comp = next((c for c in comps if c.startswith("variant:")), comps[0])
        out.append(
            Evidence(
                f"slice:{i + 1}",
                "slice",
                comp,
                f"{s.describe()}: {s.size} rows, symptom {s.error_mean:.3g}, {s.error_share:.0%} of it",
                effect=max(s.score, 0.0),
                specificity=1.0 - s.size / max(int(ok.sum()), 1),
                data={"predicates": [list(p) for p in s.predicates], "size": s.size, "share": s.error_share},
            )
        )
    return out


def stage_latency(case: Case, onset: datetime) -> list[Evidence]:
    """Mean seconds per stage before → after; a stage whose time grew points at what runs it."""
    before, after = split(case, onset)
    out = []
    comps = case.stage_components
    for col in case.frame.columns:
        m = re.fullmatch(r"stage\.(.+)_s", str(col))
        if not m or len(before) < 10 or len(after) < 10:
            continue
        stage = m.group(1)
        b, a = before[col].to_numpy(dtype=float), after[col].to_numpy(dtype=float)
        mb, ma = float(nanmean(b)), float(nanmean(a))
        if not np.isfinite(mb) or not np.isfinite(ma):
            continue
        total_a = float(nanmean(after["latency_s"])) if "latency_s" in after else ma
        z = _z_rate(a, b)
        comp = comps.get(stage, f"dependency:{stage}")
        out.append(
            Evidence(
                f"stage:{stage}",
                "stage",
                comp,
                f"stage {stage}: {mb * 1000:.1f} → {ma * 1000:.1f} ms (z={z:.1f})",
                effect=max(ma - mb, 0.0) / max(mb, 1e-4) * min(max(z, 0.0) / 3.0, 1.0),
                specificity=min((ma - mb) / max(total_a, 1e-9), 1.0) if ma > mb else 0.0,
                data={"stage": stage, "before_ms": mb * 1000, "after_ms": ma * 1000, "z": z},
            )
        )
    return out


_NORMALISE = [
    (re.compile(r"0x[0-9a-f]+|\b[0-9a-f]{8,}\b"), "X"),
    (re.compile(r"\d+(\.\d+)?"), "N"),
    (re.compile(r"'[^']*'"), "'…'"),
]


def error_template(message: str) -> str:
    t = message.lower()[:300]
    for rx, rep in _NORMALISE:
        t = rx.sub(rep, t)
    return t


def error_clusters(case: Case, onset: datetime, k: int = 3) -> list[Evidence]:
    """Error messages after the onset, normalised (numbers, ids, quoted values) and grouped; new clusters first."""
    if "error" not in case.frame:
        return []
    before, after = split(case, onset)
    err_a = after["error"].dropna().astype(str)
    err_a = err_a[err_a != ""]
    if err_a.empty:
        return []
    tb = before["error"].dropna().astype(str).map(error_template).value_counts()
    templates = err_a.map(error_template)
    ta = templates.value_counts()
    out = []
    for i, (tmpl, count) in enumerate(ta.head(k).items()):
        rate_a = count / max(len(after), 1)
        rate_b = tb.get(tmpl, 0) / max(len(before), 1)
        example = str(err_a[templates == tmpl].iloc[0])  # names (a quoted column) survive in the raw message only
        comp = _error_component(str(tmpl), example, case)
        out.append(
            Evidence(
                f"errors:{i + 1}",
                "errors",
                comp,
                f"{count} errors like {tmpl!r} ({rate_b:.2%} → {rate_a:.2%} of requests)",
                effect=max(rate_a - rate_b, 0.0) / 0.02,
                specificity=float(count / max(len(err_a), 1)),
                data={
                    "template": tmpl,
                    "example": example[:300],
                    "count": int(count),
                    "rate_before": rate_b,
                    "rate_after": rate_a,
                    **_variant_of(after, templates.index[templates.to_numpy() == tmpl]),
                },
            )
        )
    return out


def _variant_of(after: pd.DataFrame, rows: pd.Index) -> dict[str, object]:
    """The variant most of an error cluster's ``rows`` come from: its share of the cluster and of all traffic."""
    counts = after.loc[rows, "variant"].value_counts(normalize=True) if "variant" in after else pd.Series(dtype=float)
    name = str(counts.index[0]) if len(counts) else None
    share = float((after["variant"] == name).mean()) if name is not None else 0.0
    return {"variant": name, "variant_errors": float(counts.iloc[0]), "variant_traffic": share} if name else {}


def _error_component(template: str, example: str, case: Case) -> str:
    if "429" in template or "rate limit" in template or "too many requests" in template:
        return "provider:" + _first(case, "llm.backend", "primary")
    if "out of memory" in template or "oom" in template or "memoryerror" in template:
        return f"release:{case.deployment}"
    raw = example.lower()
    for col in _features(case):  # a feature named as a whole word ("age" is not in "storage")
        if re.search(rf"(?<![\w.]){re.escape(col[3:].lower())}(?![\w])", raw):
            return f"feature:{col[3:]}"
    if "timeout" in template or "timed out" in template:
        return f"config:{case.deployment}"
    return f"release:{case.deployment}"


def _first(case: Case, col: str, default: str) -> str:
    if col in case.frame and len(case.frame):
        v = case.frame[col].dropna()
        return str(v.iloc[-1]) if len(v) else default
    return default


def resources(case: Case, onset: datetime) -> list[Evidence]:
    """Memory growth (slope after vs before), restarts, and the request rate around the onset."""
    out = []
    before, after = split(case, onset)
    # per minute over the windows' real lengths (a second at least): a short window is not padded to a minute
    first = pd.Timestamp(case.frame["ts"].min()).floor("us").to_pydatetime()
    mins_b = max((onset - first).total_seconds(), 1.0) / 60
    mins_a = max((case.now - onset).total_seconds(), 1.0) / 60
    if len(before) and len(after):
        rate_b, rate_a = len(before) / mins_b, len(after) / mins_a
        ratio = rate_a / max(rate_b, 1e-9)
        out.append(
            Evidence(
                "resource:request_rate",
                "resource",
                f"traffic:{case.deployment}",
                f"requests per minute {rate_b:.0f} → {rate_a:.0f} ({ratio:.2f}x)",
                effect=max(ratio - 1.0, 0.0) / 0.5,
                specificity=0.7,
                data={"before": rate_b, "after": rate_a, "ratio": ratio},
            )
        )
    r = case.resources
    if r is None or r.empty:
        return out
    for metric, g in r.groupby("metric"):
        g = g.sort_values("ts")
        t = (g["ts"] - pd.Timestamp(onset)).dt.total_seconds().to_numpy() / 60
        v = g["value"].to_numpy(dtype=float)
        pre, post = t < 0, t >= 0
        if pre.sum() < 3 or post.sum() < 3:
            continue
        if metric == "rss_mb":
            d = np.diff(v)
            drops = d < -100.0  # a restart frees the memory: not a change of the growth rate
            d = np.where(drops, np.nan, d)
            d = np.where(np.isnan(d), nanmedian(d), d)
            k, _ = mean_shift(d)
            s_pre, s_post = float(np.mean(d[:k])), float(np.mean(d[k:]))
            noise = float(np.std(d[:k])) or 1.0
            growth = (s_post - max(s_pre, 0.0)) / noise
            start = g["ts"].iloc[k + 1].to_pydatetime()
            out.append(
                Evidence(
                    "resource:rss_mb",
                    "resource",
                    f"release:{case.deployment}",
                    f"memory grows {s_post:.1f} MB/min since {start:%H:%M} (was {s_pre:.1f}), "
                    f"{int(drops.sum())} drops (restarts)",
                    effect=max(growth, 0.0) / 3.0 if s_post > 2.0 else 0.0,
                    specificity=0.8,
                    at=start,
                    data={"slope_before": s_pre, "slope_after": s_post, "kind": "memory"},
                )
            )
        elif metric == "restarts":
            n = float(v[post].max() - v[pre].max())
            if n > 0:
                out.append(
                    Evidence(
                        "resource:restarts",
                        "resource",
                        f"release:{case.deployment}",
                        f"{n:.0f} runtime restarts since the onset",
                        effect=n,
                        specificity=0.6,
                        data={"restarts": n, "kind": "restarts"},
                    )
                )
    return out


def llm_signals(case: Case, onset: datetime) -> list[Evidence]:
    """For LLM apps: which prompt / index / provider model answered, and how quality, retrieval scores and tool
    errors differ between the versions in use after the onset and the ones before."""
    before, after = split(case, onset)
    if "llm.groundedness" not in case.frame or len(before) < 20 or len(after) < 20:
        return []
    out = []
    for col, kind, metric in (
        ("llm.prompt", "prompt", "llm.groundedness"),
        ("llm.index", "index", "llm.top_score"),
        ("llm.tool", "tool", "llm.tool_errors"),
        ("llm.llm_model", "provider", "llm.groundedness"),
    ):
        if col not in case.frame or metric not in case.frame:
            continue
        old = set(before[col].dropna().astype(str).unique())
        cur = after[col].dropna().astype(str)
        new = cur[~cur.isin(old)]
        if new.empty:
            continue
        rows_new = after[col].astype(str).isin(set(new.unique()))
        mb = float(nanmean(before[metric].to_numpy(dtype=float)))
        mn = float(nanmean(after.loc[rows_new, metric].to_numpy(dtype=float)))
        worse = (mn - mb) if metric == "llm.tool_errors" else (mb - mn)
        sd = float(nanstd(before[metric].to_numpy(dtype=float))) or 0.05
        name = (
            _first(case, "llm.backend", "primary")
            if kind == "provider"
            else str(new.iloc[0]).split("@")[0].split(":")[0]
        )
        out.append(
            Evidence(
                f"llm:{kind}",
                "llm",
                f"{kind}:{name}",
                f"{kind} {sorted(set(new.unique()))[:3]} answers {float(rows_new.mean()):.0%} of requests since the "
                f"onset; {metric[4:]} {mb:.3g} → {mn:.3g}",
                effect=max(worse, 0.0) / max(sd, 0.02) / 2.0,
                specificity=0.9,
                data={"versions": sorted(set(new.unique()))[:5], "metric": metric[4:], "before": mb, "after": mn},
            )
        )
    for metric in ("llm.top_score", "llm.groundedness"):
        if metric in case.frame:
            b, a = before[metric].to_numpy(dtype=float), after[metric].to_numpy(dtype=float)
            z = -_z_rate(a, b)
            comp = "index" if metric == "llm.top_score" else "prompt"
            name = _first(case, f"llm.{comp}", comp).split("@")[0].split(":")[0]
            out.append(
                Evidence(
                    f"llm:{metric[4:]}",
                    "llm",
                    f"{comp}:{name}",
                    f"{metric[4:]} {nanmean(b):.3g} → {nanmean(a):.3g} (z={-z:.1f})",
                    effect=max(z, 0.0) / 8.0,
                    specificity=0.4,
                    data={"metric": metric[4:], "before": float(nanmean(b)), "after": float(nanmean(a)), "z": -z},
                )
            )
    return out


def labels(case: Case, onset: datetime) -> list[Evidence]:
    """Label base rate and prediction rate before → after. Labels that moved while predictions and inputs did not
    point at the label pipeline; accuracy that erodes with both stable points at the world (concept drift)."""
    if "label" not in case.frame or "pred" not in case.frame:
        return []
    before, after = split(case, onset)
    lb, la = before["label"].dropna(), after["label"].dropna()
    if len(lb) < 30 or len(la) < 30:
        return []
    pos = _positive(lb)
    lr_b, lr_a = float((lb == pos).mean()), float((la == pos).mean())
    pb, pa = before["pred"].dropna(), after["pred"].dropna()
    pr_b, pr_a = float((pb == pos).mean()), float((pa == pos).mean())
    se = np.sqrt(lr_b * (1 - lr_b) / len(la) + 1e-9)
    z_label = (lr_a - lr_b) / se
    se_p = np.sqrt(pr_b * (1 - pr_b) / max(len(pa), 1) + 1e-9)
    z_pred = (pr_a - pr_b) / se_p
    data: dict[str, Any] = {
        "label_rate_before": lr_b,
        "label_rate_after": lr_a,
        "pred_rate_before": pr_b,
        "pred_rate_after": pr_a,
    }
    het, where = _label_shift_heterogeneity(case, before, after, pos, lr_a - lr_b)
    data["shift_heterogeneity"], data["shift_feature"] = het, where
    if "score" in case.frame:
        sb, sa = before["score"].to_numpy(dtype=float), after["score"].to_numpy(dtype=float)
        data["estimated_acc_before"] = float(nanmean(np.maximum(sb, 1 - sb)))
        data["estimated_acc_after"] = float(nanmean(np.maximum(sa, 1 - sa)))
    return [
        Evidence(
            "labels:rate",
            "labels",
            f"labels:{case.deployment}",
            f"label positive rate {lr_b:.2%} → {lr_a:.2%} (z={z_label:.1f}) while predictions "
            f"{pr_b:.2%} → {pr_a:.2%} (z={z_pred:.1f})",
            effect=max(abs(z_label) - abs(z_pred), 0.0) / 4.0,
            specificity=0.8,
            data={**data, "z_label": float(z_label), "z_pred": float(z_pred)},
        )
    ]


def _label_shift_heterogeneity(
    case: Case, before: pd.DataFrame, after: pd.DataFrame, pos: object, overall: float
) -> tuple[float, str]:
    """How unevenly the label rate moved across the values of the inputs: ``(spread of the per-bin shifts) /
    |overall shift|``, maximised over features. A broken label pipeline moves labels everywhere alike (low); a
    changed world moves them where the new pattern lives (high)."""
    best, where = 0.0, ""
    for col in _features(case):
        if col not in before:
            continue
        b, a = before[col], after[col]
        if pd.api.types.is_numeric_dtype(b.dtype) and b.nunique() > 8:
            edges = np.unique(nanquantile(b.to_numpy(dtype=float), [0.25, 0.5, 0.75]))
            kb = np.digitize(b.to_numpy(dtype=float), edges)
            ka = np.digitize(a.to_numpy(dtype=float), edges)
        else:
            kb, ka = b.astype(str).to_numpy(), a.astype(str).to_numpy()
        shifts = []
        for key in np.unique(kb):
            lb = before["label"][kb == key].dropna()
            la = after["label"][ka == key].dropna()
            if len(lb) >= 40 and len(la) >= 40:
                shifts.append(float((la == pos).mean() - (lb == pos).mean()))
        if len(shifts) >= 2:
            h = (max(shifts) - min(shifts)) / (abs(overall) + 0.02)
            if h > best:
                best, where = h, col[3:]
    return best, where


def _positive(labels: pd.Series) -> object:
    vals = labels.unique()
    for cand in (1, True, "1", "yes", "fraud"):
        if cand in set(vals.tolist()):
            return cand
    return labels.value_counts().index[-1]


COLLECTORS: dict[str, Callable[..., list[Evidence]]] = {
    "change_timeline": change_timeline,
    "variant_comparison": variant_comparison,
    "feature_drift": feature_drift,
    "slices": slices,
    "stage_latency": stage_latency,
    "error_clusters": error_clusters,
    "resources": resources,
    "llm_signals": llm_signals,
    "labels": labels,
}


def collect(case: Case) -> tuple[datetime, list[Evidence]]:
    """Run every collector; returns the refined onset and all evidence (change-point first)."""
    cp = changepoint(case)
    onset = case.symptom.onset
    if cp and cp[0].at is not None and abs((cp[0].at - onset).total_seconds()) <= 3600 and cp[0].effect >= 1.0:
        onset = cp[0].at
    out: list[Evidence] = list(cp)
    for fn in COLLECTORS.values():
        out += fn(case, onset)
    return onset, out
