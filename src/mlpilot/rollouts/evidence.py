"""Evidence for the analyses: each arm's traffic in a window of the request log, with the feedback known now.

This is the controller's only reader of data; the analyses it feeds are pure (``analyses.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from mlpilot.monitors import kinds
from mlpilot.rollouts.analyses import ArmData, Comparison
from mlpilot.rollouts.llm import llm_frame
from mlpilot.telemetry.query import read_records
from mlpilot.telemetry.segments import LogRoot


@dataclass(frozen=True)
class Window:
    since: datetime
    until: datetime

    def to_dict(self) -> dict[str, str]:
        return {"since": self.since.isoformat(), "until": self.until.isoformat()}


def _feedback(feedback: pd.DataFrame | Sequence[dict[str, Any]]) -> pd.DataFrame:
    frame = feedback if isinstance(feedback, pd.DataFrame) else pd.DataFrame(list(feedback))
    if frame.empty:
        return pd.DataFrame(columns=["request_id", "row", "kind", "value"])
    # the latest value per (request, row, kind) wins: a corrected label replaces the first one
    return frame.drop_duplicates(["request_id", "row", "kind"], keep="last")


def _prediction_column(frame: pd.DataFrame) -> str | None:
    if "out.predict" in frame.columns:
        return "out.predict"
    scalar = [c for c in frame.columns if str(c).startswith("out.") and "[" not in str(c)]
    return scalar[0] if scalar else None


def with_feedback(rows: pd.DataFrame, labels: pd.DataFrame | None, rewards: pd.DataFrame | None) -> pd.DataFrame:
    """``rows`` with the feedback known now joined once: ``_label``/``_has_label`` per row, ``_reward`` per
    request (cuts of the result keep their feedback, see :func:`arm`)."""
    if rows.empty:
        return rows
    out = rows
    if labels is not None and not labels.empty:
        lab = labels[["request_id", "row", "value"]].rename(columns={"value": "_label"})
        out = out.merge(lab, on=["request_id", "row"], how="left")
        out["_has_label"] = out["_label"].notna()
    if rewards is not None and not rewards.empty:
        rew = rewards.drop_duplicates("request_id", keep="last")[["request_id", "value"]]
        out = out.merge(rew.rename(columns={"value": "_reward"}), on="request_id", how="left")
    return out


def arm(
    variant: str,
    logged: pd.DataFrame,
    labels: pd.DataFrame | None = None,
    rewards: pd.DataFrame | None = None,
    *,
    with_inputs: bool = False,
) -> ArmData:
    """One arm's :class:`ArmData` from its logged rows (one row per input row) and the feedback (given, or
    already joined by :func:`with_feedback`)."""
    if "status" in logged.columns:
        logged = logged[logged["status"] != "quarantined"]  # refused by the input policy: neither variant's doing
    if logged.empty:
        return ArmData(variant=variant)
    if labels is not None or rewards is not None:
        logged = with_feedback(logged, labels, rewards)
    per_request = logged.drop_duplicates("request_id")
    ok_requests = per_request[per_request["status"] == "ok"]
    ok = logged[logged["status"] == "ok"]
    pred_col = _prediction_column(ok)
    predictions = ok[pred_col].to_numpy() if pred_col is not None else None
    proba_cols = kinds.proba_columns(list(ok.columns))
    proba = ok[proba_cols].to_numpy(dtype=float) if proba_cols else None
    data = ArmData(
        variant=variant,
        requests=len(per_request),
        errors=int((per_request["status"] != "ok").sum()),
        latency_s=ok_requests["latency_s"].to_numpy(dtype=float),
        predictions=predictions,
        proba=proba,
        inputs=kinds.input_frame(ok).reset_index(drop=True) if with_inputs else None,
        llm=llm_frame(ok_requests),
    )
    if "_has_label" in ok.columns and pred_col is not None:
        labelled = ok[ok["_has_label"].astype(bool)]
        if len(labelled):
            data.labels = labelled["_label"].to_numpy()
            data.labelled_predictions = labelled[pred_col].to_numpy()
    if "_reward" in per_request.columns:
        got = per_request["_reward"].dropna()
        if len(got):
            data.rewards = got.to_numpy(dtype=float)
    return data


def _rows(root: LogRoot, deployment: str, variant: str, window: Window, shadow: bool) -> pd.DataFrame:
    return read_records(root, deployment, since=window.since, until=window.until, variant=variant, shadow=shadow)


def comparison(
    root: LogRoot,
    deployment: str,
    feedback: pd.DataFrame | Sequence[dict[str, Any]],
    *,
    baseline: str,
    candidate: str,
    window: Window,
    baseline_window: Window | None = None,
    shadow: bool = False,
    with_inputs: bool = False,
    periods: Sequence[datetime] = (),
) -> Comparison:
    """Baseline vs candidate over ``window`` (the baseline over ``baseline_window`` when given, e.g. before a
    blue-green switch). With ``shadow`` the candidate's rows are its shadow answers, paired with the baseline's
    answers to the same requests. ``periods`` (the start of each canary step) also cuts the evidence into
    :attr:`Comparison.strata`, one per period."""
    fb = _feedback(feedback)
    labels = fb[fb["kind"] == "label"]
    rewards = fb[fb["kind"] == "reward"]
    base_rows = with_feedback(_rows(root, deployment, baseline, baseline_window or window, False), labels, rewards)
    cand_rows = _rows(root, deployment, candidate, window, shadow)
    if not shadow:
        cand_rows = with_feedback(cand_rows, labels, rewards)
    out = Comparison(
        baseline=arm(baseline, base_rows, with_inputs=with_inputs),
        candidate=arm(candidate, cand_rows, with_inputs=with_inputs),
    )
    if len(periods) > 1 and not shadow:
        out.strata = []
        for start, end in zip(periods, [*periods[1:], None], strict=True):
            b_rows, c_rows = (_between(rows, start, end) for rows in (base_rows, cand_rows))
            out.strata.append(Comparison(baseline=arm(baseline, b_rows), candidate=arm(candidate, c_rows)))
    if shadow and not cand_rows.empty and not base_rows.empty:
        col_b, col_c = _prediction_column(base_rows), _prediction_column(cand_rows)
        if col_b is not None and col_c is not None:
            b = base_rows[base_rows["status"] == "ok"][["request_id", "row", col_b]]
            c = cand_rows[cand_rows["status"] == "ok"][["request_id", "row", col_c]]
            pairs = b.merge(c, on=["request_id", "row"], suffixes=("_b", "_c"))
            names = (f"{col_b}_b", f"{col_c}_c") if col_b == col_c else (col_b, col_c)
            out.paired = (pairs[names[0]].to_numpy(), pairs[names[1]].to_numpy())
        # the shadow's labels are the baseline's labels on the same rows: realized performance of both answers
        if not labels.empty and out.paired is not None:
            lab = pairs.merge(labels[["request_id", "row", "value"]], on=["request_id", "row"])
            if len(lab):
                out.candidate.labels = lab["value"].to_numpy()
                out.candidate.labelled_predictions = lab[names[1]].to_numpy()
    return out


def shadow_pairs(root: LogRoot, deployment: str, *, baseline: str, candidate: str, window: Window) -> pd.DataFrame:
    """An LLM app's shadow pairs: ``request_id``, ``query``, ``baseline`` and ``candidate`` answer texts of the
    requests both answered (empty when the rows are not an LLM app's)."""
    cols = ["request_id", "status", "in.query", "out.text"]
    b = read_records(root, deployment, since=window.since, until=window.until, variant=baseline, shadow=False)
    c = read_records(root, deployment, since=window.since, until=window.until, variant=candidate, shadow=True)
    if b.empty or c.empty or any(col not in frame.columns for frame in (b, c) for col in cols):
        return pd.DataFrame(columns=["request_id", "query", "baseline", "candidate"])
    b, c = (f[f["status"] == "ok"].drop_duplicates("request_id") for f in (b, c))
    pairs = b[["request_id", "in.query", "out.text"]].merge(c[["request_id", "out.text"]], on="request_id")
    return pairs.set_axis(["request_id", "query", "baseline", "candidate"], axis=1)


def _between(rows: pd.DataFrame, start: datetime, end: datetime | None) -> pd.DataFrame:
    if rows.empty:
        return rows
    ts = pd.to_datetime(rows["ts"], utc=True)
    keep = ts >= pd.Timestamp(start)
    if end is not None:
        keep &= ts < pd.Timestamp(end)
    return rows[keep]


def candidate_requests(root: LogRoot, deployment: str, candidate: str, window: Window, shadow: bool = False) -> int:
    """Requests the candidate answered in ``window`` (the step's sample guard)."""
    rows = read_records(
        root,
        deployment,
        since=window.since,
        until=window.until,
        variant=candidate,
        shadow=shadow,
        columns=["request_id"],
    )
    return int(rows["request_id"].nunique()) if len(rows) else 0


def bandit_counts(
    root: LogRoot,
    deployment: str,
    feedback: pd.DataFrame | Sequence[dict[str, Any]],
    arms: Sequence[str],
    window: Window,
    reward: str,
) -> tuple[np.ndarray, np.ndarray]:
    """(successes, trials) per arm: the sum of rewards and the number of rewarded requests (``reward="reward"``),
    or correct and labelled rows (``reward="label"``). Feedback that arrives late counts when it arrives."""
    fb = _feedback(feedback)
    successes = np.zeros(len(arms))
    trials = np.zeros(len(arms))
    for i, name in enumerate(arms):
        rows = _rows(root, deployment, name, window, False)
        if rows.empty:
            continue
        if reward == "reward":
            got = rows.drop_duplicates("request_id")[["request_id"]].merge(
                fb[fb["kind"] == "reward"][["request_id", "value"]], on="request_id"
            )
            values = np.clip(got["value"].to_numpy(dtype=float), 0.0, 1.0)
        else:
            col = _prediction_column(rows)
            if col is None:
                continue
            got = rows[rows["status"] == "ok"][["request_id", "row", col]].merge(
                fb[fb["kind"] == "label"][["request_id", "row", "value"]], on=["request_id", "row"]
            )
            values = (got[col].astype(str).to_numpy() == got["value"].astype(str).to_numpy()).astype(float)
        successes[i], trials[i] = float(values.sum()), float(len(values))
    return successes, trials
