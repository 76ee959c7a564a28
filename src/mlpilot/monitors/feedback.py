"""Feedback: labels, scores and rewards for logged predictions, arriving any time later.

Invariants:

* A batch is validated completely before anything is stored (all or nothing): the deployment exists, every item
  names a request id (and row) that is in the deployment's request log, labels have the type the model
  predicts (numbers for numeric predictions, strings for string classes), scores and rewards are numbers.
* A later value for the same (request, row, kind) replaces the earlier one (a corrected label).
* The join is by event time: a window of predictions gets the labels known *now*; predictions without a label
  are kept and marked ``has_label = False`` — never silently dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from mlpilot.errors import InvalidArgument, NotFound
from mlpilot.store import Store
from mlpilot.telemetry.query import read_records, with_segment_files
from mlpilot.telemetry.segments import LogRoot, as_store

KINDS = ("label", "score", "reward")


def _parse_ts(value: Any, now: datetime) -> datetime:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return now
    if isinstance(value, (int, float)):
        try:
            return datetime.fromtimestamp(float(value), timezone.utc)
        except (OverflowError, ValueError, OSError) as exc:  # beyond the years datetime holds (1 … 9999)
            raise InvalidArgument(f"bad timestamp {value!r}: epoch seconds out of range") from exc
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(f"bad timestamp {value!r}: use ISO 8601 or epoch seconds") from exc
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).to_pydatetime()


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


class FeedbackService:
    def __init__(self, store: Store, log_root: LogRoot) -> None:
        self.store = store
        self.log_root = as_store(log_root)

    def normalise(self, items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Turn user items (``request_id``, ``row``, one of ``label``/``score``/``reward``, ``ts``) into rows."""
        if not items:
            raise InvalidArgument("no feedback items given")
        now = self.store.clock.now()
        out = []
        for i, it in enumerate(items):
            rid = it.get("request_id")
            if not isinstance(rid, str) or not rid:
                raise InvalidArgument(f"item {i}: request_id is required (the x-request-id of the prediction)")
            row = it.get("row", 0)
            if row is None or (isinstance(row, float) and np.isnan(row)):
                row = 0
            if not isinstance(row, (int, np.integer)) or isinstance(row, bool) or int(row) < 0:
                raise InvalidArgument(f"item {i}: row must be a non-negative integer, got {row!r}")
            given = [
                k for k in KINDS if k in it and it[k] is not None and not (isinstance(it[k], float) and np.isnan(it[k]))
            ]
            if len(given) != 1:
                raise InvalidArgument(f"item {i} (request {rid}): give exactly one of label, score or reward")
            kind = given[0]
            value = it[kind]
            if isinstance(value, (np.integer, np.floating, np.bool_)):
                value = value.item()
            if kind != "label" and not _is_number(value):
                raise InvalidArgument(f"item {i} (request {rid}): {kind} must be a number, got {value!r}")
            if kind == "label" and not isinstance(value, (str, int, float, bool)):
                raise InvalidArgument(f"item {i} (request {rid}): a label is a number, string or boolean")
            out.append(
                {"request_id": rid, "row": int(row), "kind": kind, "value": value, "ts": _parse_ts(it.get("ts"), now)}
            )
        return out

    def submit(self, deployment: str, items: Sequence[Mapping[str, Any]], actor: str) -> int:
        """Validate and store a batch of feedback. Raises ``NotFound`` for unknown request ids and
        ``InvalidArgument`` for values of the wrong type; nothing is stored then."""
        self.store.get_deployment(deployment)
        rows = self.normalise(items)
        logged = self._logged(deployment, sorted({r["request_id"] for r in rows}))
        missing = sorted({r["request_id"] for r in rows if (r["request_id"], r["row"]) not in logged})
        if missing:
            raise NotFound(
                f"{len(missing)} request id(s) not in the request log of {deployment!r}: {missing[:10]}"
                + (" …" if len(missing) > 10 else "")
                + " (predictions reach the log within about a second of being served)",
                detail={"missing": missing[:100]},
            )
        for r in rows:
            if r["kind"] != "label":
                continue
            predicted = logged[(r["request_id"], r["row"])]
            if predicted is None:
                continue
            if isinstance(predicted, str) != isinstance(r["value"], str):
                want = "a string" if isinstance(predicted, str) else "a number"
                raise InvalidArgument(
                    f"label {r['value']!r} for request {r['request_id']} must be {want}, like the model's "
                    f"prediction {predicted!r}"
                )
        return self.store.put_feedback(deployment, rows, actor)

    def _logged(self, deployment: str, request_ids: list[str]) -> dict[tuple[str, int], Any]:
        def run(files: list[str]) -> list[Any]:
            if not files:
                return []
            con = self.log_root.connect()
            try:
                cols = set(con.read_parquet(files, union_by_name=True).columns)
                pred = '"out.predict"' if "out.predict" in cols else "NULL"
                return con.execute(
                    f"SELECT request_id, row, {pred} FROM read_parquet(?, union_by_name=true) "
                    "WHERE NOT shadow AND request_id IN (SELECT unnest(?))",
                    [files, request_ids],
                ).fetchall()
            finally:
                con.close()

        found = with_segment_files(self.log_root, deployment, None, None, run)
        return {(rid, int(row)): (p.item() if hasattr(p, "item") else p) for rid, row, p in found}

    def joined(
        self, deployment: str, since: datetime | None = None, until: datetime | None = None, variant: str | None = None
    ) -> pd.DataFrame:
        """Predictions in the window (shadows excluded) with the labels known now: ``label``, ``label_ts`` and
        ``has_label`` columns; unlabelled predictions are kept with ``has_label = False``."""
        records = read_records(self.log_root, deployment, since=since, until=until, variant=variant, shadow=False)
        labels = pd.DataFrame(self.store.list_feedback(deployment, kind="label"))
        if labels.empty:
            records["label"] = None
            records["label_ts"] = pd.NaT
            records["has_label"] = False
            return records
        labels = labels.rename(columns={"value": "label", "ts": "label_ts"})[["request_id", "row", "label", "label_ts"]]
        out = records.merge(labels, on=["request_id", "row"], how="left")
        out["has_label"] = out["label_ts"].notna()
        return out
