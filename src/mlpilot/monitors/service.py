"""Scheduled monitors: create them, run them on the injectable clock, store their results as time series.

A monitor watches one deployment (one variant, optionally one segment) over a window of its logged traffic and
compares it with a reference. ``tick(now)`` runs every due monitor once — claimed with compare-and-set, so
several server processes never run one twice — then the alert service evaluates the SLOs. Missed runs are
skipped, not replayed: a monitor that was due three times while the server was down runs once.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from mlpilot.clock import Clock
from mlpilot.errors import Conflict, FailedPrecondition, InvalidArgument, MlpilotError, NotFound
from mlpilot.monitors import kinds
from mlpilot.monitors.feedback import FeedbackService
from mlpilot.monitors.llm import llm_outcome, llm_params
from mlpilot.protocol.signature import DATATYPES, Signature
from mlpilot.records import (
    ArtifactKind,
    Deployment,
    Monitor,
    MonitorKind,
    MonitorResult,
    MonitorSpec,
    MonitorStatus,
    check_name,
    parse_duration,
)
from mlpilot.registry import Registry
from mlpilot.store import Store
from mlpilot.telemetry.query import read_records, traffic_stats
from mlpilot.telemetry.segments import LogRoot, as_store

log = logging.getLogger("mlpilot.monitors")

TARGET_COLUMNS = kinds.TARGET_COLUMNS


def logged_features(signature: dict[str, Any] | None) -> list[str] | None:
    """The input columns the request log will hold for a model with this signature (``None`` if unknown)."""
    if not signature:
        return None
    sig = Signature.from_dict(signature)
    out: list[str] = []
    for spec in sig.inputs:
        trailing = [d for d in spec.shape[1:]] if len(spec.shape) > 1 else []
        if not trailing:
            out.append(spec.name)
        elif all(d > 0 for d in trailing):
            out.extend(f"{spec.name}[{j}]" for j in range(int(np.prod(trailing))))
        else:
            return None  # variable trailing dimensions: the columns are only known from the log
    return out


@dataclass
class TickReport:
    now: datetime
    results: list[MonitorResult] = field(default_factory=list)
    alerts: list[Any] = field(default_factory=list)


class _Reference:
    """A resolved reference: its name (pinned) and data."""

    def __init__(self, name: str, frame: pd.DataFrame, model_ref: str | None) -> None:
        self.name = name
        self.frame = frame
        self.model_ref = model_ref


class MonitorService:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        feedback: FeedbackService,
        log_root: LogRoot,
        clock: Clock,
        *,
        evaluate_slos: Callable[[datetime], list[Any]] | None = None,
        cache_size: int = 32,
        max_rows: int = 200_000,
    ) -> None:
        self.store = store
        self.registry = registry
        self.feedback = feedback
        self.log_root = as_store(log_root)
        self.clock = clock
        self.evaluate_slos = evaluate_slos
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._cache_size = cache_size
        self.max_rows = max_rows

    # ------------------------------------------------------------------------------------------ CRUD

    def create(self, deployment: str, name: str, spec: MonitorSpec, actor: str, *, replace: bool = False) -> Monitor:
        """Create (or with ``replace`` update) a monitor after checking it against the deployment.

        Raises:
            NotFound: no such deployment. InvalidArgument: an unknown variant, feature or reference dataset.
            Conflict: the monitor exists and ``replace`` is false.
        """
        check_name(name, "monitor name")
        dep = self.store.get_deployment(deployment)
        self._check(dep, spec)
        return self.store.put_monitor(deployment, name, spec, actor, next_run=self.clock.now(), replace=replace)

    def _check(self, dep: Deployment, spec: MonitorSpec) -> None:
        variants = {v.name: v for v in dep.spec.variants}
        if spec.variant is not None and spec.variant not in variants:
            raise InvalidArgument(f"deployment {dep.name!r} has no variant {spec.variant!r}; it has {list(variants)}")
        if spec.reference not in ("bound",) and not spec.reference.startswith("previous:"):
            version = self.store.get_version(spec.reference)  # NotFound if the dataset does not exist
            if version.kind.value != "dataset":
                raise InvalidArgument(f"reference {spec.reference!r} is a {version.kind.value}, not a dataset")
        checked = [variants[spec.variant]] if spec.variant else list(variants.values())
        for v in checked:
            known = logged_features(self.store.get_version(v.model).signature)
            if known is None:
                continue
            for col in spec.features or []:
                if col not in known:
                    raise InvalidArgument(
                        f"feature {col!r} is not an input of {v.model} (variant {v.name}); inputs: {known[:30]}"
                        + (" …" if len(known) > 30 else "")
                    )
            for col in spec.segment:
                if col.startswith("in.") and col[3:] not in known:
                    raise InvalidArgument(f"segment column {col!r} is not an input of {v.model}; inputs: {known[:30]}")
        if spec.kind is MonitorKind.DRIFT:
            on = spec.params.get("on", "inputs")
            if on not in ("inputs", "outputs"):
                raise InvalidArgument(f"drift params.on must be 'inputs' or 'outputs', got {on!r}")
            # bad options fail now, not at the first scheduled run: a dry run on a tiny numeric + categorical frame
            probe = pd.DataFrame({"x": np.arange(20.0), "c": ["a", "b"] * 10})
            self._drift_detector({k: v for k, v in spec.params.items() if k != "on"}).fit(probe)
        if spec.kind is MonitorKind.LLM:
            if spec.features:
                raise InvalidArgument("an llm monitor reads the app's logged outputs: features do not apply")
            for v in checked:
                kind = self.store.get_version(v.model).kind
                if kind is not ArtifactKind.APP:
                    raise InvalidArgument(
                        f"an llm monitor watches an LLM app; {v.model} (variant {v.name}) is a {kind.value}"
                    )
            llm_params(spec)

    def get(self, deployment: str, name: str) -> Monitor:
        return self.store.get_monitor(deployment, name)

    def list_monitors(self, deployment: str | None = None) -> list[Monitor]:
        if deployment is not None:
            self.store.get_deployment(deployment)
        return self.store.list_monitors(deployment)

    def delete(self, deployment: str, name: str, actor: str) -> None:
        """Delete a monitor and its results. Raises ``Conflict`` while an SLO counts its runs."""
        users = [slo.name for slo in self.store.list_slos(deployment) if slo.spec.monitor == name]
        if users:
            raise Conflict(f"SLO(s) {users} of {deployment!r} count the runs of monitor {name!r}: delete them first")
        self.store.delete_monitor(deployment, name, actor)

    def results(
        self,
        deployment: str,
        name: str,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
    ) -> list[MonitorResult]:
        return self.store.list_monitor_results(deployment, name, since, until, limit)

    def ensure_defaults(self, deployment: str, actor: str = "mlpilot") -> list[str]:
        """Create the default monitors of a new deployment if it has none: ``traffic`` (every 5 min over the last
        hour) and ``drift`` (every 15 min over the last hour, against the bound reference dataset) — for an LLM
        app ``llm`` instead of ``drift`` (every 15 min over the last hour, drift against the 6 hours before, no
        thresholds). Returns the names created."""
        if self.store.list_monitors(deployment):
            return []
        dep = self.store.get_deployment(deployment)
        apps = all(self.store.get_version(v.model).kind is ArtifactKind.APP for v in dep.spec.variants)
        quarter, hour = timedelta(minutes=15), timedelta(hours=1)
        defaults = {
            "traffic": MonitorSpec(kind=MonitorKind.TRAFFIC, every=timedelta(minutes=5), window=hour),
            **(
                {"llm": MonitorSpec(kind=MonitorKind.LLM, every=quarter, window=hour, reference="previous:6h")}
                if apps
                else {"drift": MonitorSpec(kind=MonitorKind.DRIFT, every=quarter, window=hour)}
            ),
        }
        for name, spec in defaults.items():
            self.store.put_monitor(deployment, name, spec, actor, next_run=self.clock.now() + spec.every)
        return list(defaults)

    # ------------------------------------------------------------------------------------------ running

    def tick(self, now: datetime | None = None) -> TickReport:
        """Run every due monitor once, then evaluate the SLOs (the scheduler's whole job)."""
        now = now or self.clock.now()
        report = TickReport(now)
        for mon in self.store.due_monitors(now):
            nxt = mon.next_run + mon.spec.every
            if nxt <= now:
                nxt = now + mon.spec.every  # skip missed runs
            if not self.store.claim_monitor(mon.deployment, mon.name, mon.next_run, nxt):
                continue  # another process runs it
            report.results.append(self._run(mon, now))
        if self.evaluate_slos is not None:
            report.alerts = self.evaluate_slos(now)
        return report

    def run(self, deployment: str, name: str, now: datetime | None = None) -> MonitorResult:
        """Run one monitor now (on demand) and record the result; its schedule is unchanged."""
        return self._run(self.store.get_monitor(deployment, name), now or self.clock.now())

    def _run(self, mon: Monitor, now: datetime) -> MonitorResult:
        start = now - mon.spec.window
        try:
            rows, outcome = self._compute(mon, start, now)
        except MlpilotError as exc:
            rows, outcome = 0, kinds.Outcome(MonitorStatus.ERROR, None, exc.message, {"error": exc.kind.value})
        except Exception as exc:  # a detector bug must not stop the scheduler; it is recorded, not hidden
            log.exception("monitor %s/%s failed", mon.deployment, mon.name)
            rows, outcome = 0, kinds.Outcome(MonitorStatus.ERROR, None, f"{type(exc).__name__}: {exc}", {})
        return self.store.record_monitor_result(
            mon.deployment,
            mon.name,
            ts=now,
            window_start=start,
            window_end=now,
            rows=rows,
            status=outcome.status,
            value=outcome.value,
            message=outcome.message,
            detail=outcome.detail,
        )

    def _variant(self, dep: Deployment, spec: MonitorSpec) -> tuple[str, str]:
        name = spec.variant or max(dep.spec.traffic, key=lambda k: dep.spec.traffic[k])
        v = next((v for v in dep.spec.variants if v.name == name), None)
        if v is None:
            raise NotFound(f"deployment {dep.name!r} no longer has variant {name!r}")
        return name, v.model

    def _window(self, mon: Monitor, variant: str, start: datetime, end: datetime) -> pd.DataFrame:
        spec = mon.spec
        # drift and data quality read only the inputs and outputs of their rows: every logged column of 200,000 rows
        # (ids, messages, ... as Python strings) held ~360 MB for a moment inside the server (the soak, run 11)
        # (a segment may name any logged column: then every column is read, and apply_segment says which is missing)
        narrow = spec.kind in (MonitorKind.DRIFT, MonitorKind.QUALITY) and not spec.segment
        read = functools.partial(
            read_records,
            self.log_root,
            mon.deployment,
            since=start,
            until=end,
            variant=variant,
            shadow=False,
            columns=["ts", "row", "in.*", "out.*"] if narrow else None,
        )
        if spec.window_rows is not None:
            logged = read(newest_first=True, limit=spec.window_rows if not spec.segment else None)
            logged = kinds.apply_segment(logged, spec.segment).head(spec.window_rows)
            return logged.iloc[::-1].reset_index(drop=True)
        return kinds.apply_segment(read(sample=self.max_rows), spec.segment)

    def _compute(self, mon: Monitor, start: datetime, end: datetime) -> tuple[int, kinds.Outcome]:
        spec = mon.spec
        dep = self.store.get_deployment(mon.deployment)
        variant, model_ref = self._variant(dep, spec)
        if spec.kind is MonitorKind.PERFORMANCE:
            joined = self.feedback.joined(mon.deployment, since=start, until=end, variant=variant)
            joined = kinds.apply_segment(joined, spec.segment)
            detector = self._performance_detector(mon, model_ref, joined)
            return len(joined), kinds.performance_outcome(spec, joined, detector)
        if spec.kind is MonitorKind.TRAFFIC and not spec.segment and spec.window_rows is None:
            stats = traffic_stats(self.log_root, mon.deployment, start, end, variant)  # aggregated in DuckDB
            return int(stats["rows"]), kinds.traffic_outcome_from_stats(spec, stats, (end - start).total_seconds())
        logged = self._window(mon, variant, start, end)
        if spec.kind is MonitorKind.TRAFFIC:
            return len(logged), kinds.traffic_outcome(spec, logged, (end - start).total_seconds())
        if spec.kind is MonitorKind.LLM:
            return len(logged), self._llm(mon, logged, variant, model_ref, start)
        if len(logged) < spec.min_rows:
            return len(logged), kinds.Outcome(
                MonitorStatus.NO_DATA,
                None,
                f"{len(logged)} logged rows of {mon.deployment}/{variant} in the window (fewer than {spec.min_rows})",
            )
        if spec.kind is MonitorKind.DRIFT:
            on_outputs = spec.params.get("on", "inputs") == "outputs"
            current = kinds.output_columns(logged) if on_outputs else kinds.input_frame(logged, spec.features)
            ref = self._reference(mon, model_ref, variant, start, outputs=on_outputs)
            reference, current = kinds.align_reference(ref.frame, current)
            params = {k: v for k, v in spec.params.items() if k != "on"}
            detector = self._cached(
                ("drift", mon, ref.name, tuple(reference.columns)),
                lambda: self._drift_detector(params).fit(reference),
            )
            out = kinds.drift_outcome(spec, detector, current)
            return len(current), _with_reference(out, ref, variant)
        if spec.kind is MonitorKind.QUALITY:
            from mlpilot.monitoring import DataQuality

            current = kinds.input_frame(logged, spec.features)
            ref = self._reference(mon, model_ref, variant, start)
            reference, current = kinds.align_reference(ref.frame, current)
            options = dict(spec.params)
            detector = self._cached(
                ("quality", mon, ref.name, tuple(reference.columns)),
                lambda: DataQuality(**options).fit(reference),
            )
            return len(current), _with_reference(kinds.quality_outcome(spec, detector, current, end), ref, variant)
        if spec.kind is MonitorKind.ESTIMATED_PERFORMANCE:
            from mlpilot.monitoring import CBPE

            ref = self._reference(mon, model_ref, variant, start)
            y_ref, proba_ref, classes = self._labelled_reference(mon, ref, model_ref)
            options = {k: v for k, v in spec.params.items() if k not in ("target", "proba_output")}
            estimator = self._cached(
                ("cbpe", mon, ref.name, model_ref),
                lambda: CBPE(classes=classes, **options).fit(y_ref, proba_ref),
            )
            out = kinds.estimated_performance_outcome(spec, estimator, logged)
            return len(logged), _with_reference(out, ref, variant)
        raise InvalidArgument(f"unknown monitor kind {spec.kind}")

    def _llm(self, mon: Monitor, logged: pd.DataFrame, variant: str, model_ref: str, start: datetime) -> kinds.Outcome:
        """The ``llm`` kind: the window, the feedback on its requests and, for drift, the reference rows — the
        deployment's own earlier traffic (``previous:DURATION``) or a dataset of logged columns. A reference that
        cannot be had (none bound, too little earlier traffic) skips the drift tests, with the reason in the
        detail; the thresholds are still checked."""
        spec = mon.spec
        opts = llm_params(spec)
        reference: pd.DataFrame | None = None
        ref_name, skipped = None, None
        if opts.drift and len(logged) >= spec.min_rows:
            try:
                ref = self._reference(mon, model_ref, variant, start, outputs=spec.reference.startswith("previous:"))
                reference, ref_name = ref.frame, ref.name
            except FailedPrecondition as exc:
                skipped = exc.message
        feedback = pd.DataFrame(
            [f for f in self.store.list_feedback(mon.deployment) if f["kind"] in ("label", "score")],
            columns=["request_id", "row", "kind", "value", "ts"],
        )
        out = llm_outcome(spec, logged, reference, feedback)
        detail = {**out.detail, "reference": ref_name, "variant": variant}
        if skipped and isinstance(detail.get("drift"), dict):
            detail["drift"] = {**detail["drift"], "skipped": skipped}
        return kinds.Outcome(out.status, out.value, out.message, detail)

    # ------------------------------------------------------------------------------------------ references

    @staticmethod
    def _drift_detector(params: dict[str, Any]) -> Any:
        from mlpilot.monitoring import TableDrift

        try:
            return TableDrift(**params)
        except TypeError as exc:
            raise InvalidArgument(f"bad drift options {sorted(params)}: {exc}") from exc

    def _cached(self, key: tuple[Any, ...], build: Callable[[], Any]) -> Any:
        kind, mon, *rest = key
        digest = hashlib.sha256(
            json.dumps([kind, mon.deployment, mon.name, mon.spec.model_dump(mode="json"), *map(str, rest)]).encode()
        ).hexdigest()
        if digest in self._cache:
            self._cache.move_to_end(digest)
            return self._cache[digest]
        value = build()
        self._cache[digest] = value
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return value

    def _reference(
        self, mon: Monitor, model_ref: str, variant: str, start: datetime, *, outputs: bool = False
    ) -> _Reference:
        ref = mon.spec.reference
        if ref.startswith("previous:"):
            span = parse_duration(ref.split(":", 1)[1])
            past = read_records(
                self.log_root, mon.deployment, since=start - span, until=start, variant=variant, shadow=False
            )
            past = kinds.apply_segment(past, mon.spec.segment)
            if len(past) < mon.spec.min_rows:
                raise FailedPrecondition(
                    f"the reference window ({ref}, before {start.isoformat()}) holds {len(past)} rows "
                    f"(fewer than {mon.spec.min_rows})"
                )
            frame = kinds.output_columns(past) if outputs else kinds.input_frame(past, mon.spec.features)
            return _Reference(f"traffic {(start - span).isoformat()} .. {start.isoformat()}", frame, None)
        if ref == "bound":
            model = self.store.get_version(model_ref)
            name = model.bindings.get("reference", "")
            if not name:
                raise FailedPrecondition(
                    f"{model.ref} has no reference dataset: bind one with `mlpilot datasets register NAME FILE "
                    f"--bind-to {model.ref}`, or give the monitor a reference (a dataset or previous:7d)"
                )
        else:
            name = self.store.get_version(ref).ref  # pinned: NAME@ALIAS resolves to the version it points at now
        frame = self._cached(("dataset", mon, name), lambda: self.registry.read_dataset(name))
        if outputs:
            frame = self._reference_outputs(mon, frame, model_ref, name)
        elif mon.spec.features:
            missing = [f for f in mon.spec.features if f not in frame.columns]
            if missing and not any("[" in f for f in mon.spec.features):
                raise InvalidArgument(f"reference {name} has no columns {missing}")
        return _Reference(name, frame, model_ref)

    def _model_outputs(self, mon: Monitor, frame: pd.DataFrame, model_ref: str, ref_name: str) -> dict[str, Any]:
        def build() -> dict[str, Any]:
            version, model = self.registry.load_model(model_ref)
            features = _model_inputs(frame, version.signature)
            return {k: np.asarray(v) for k, v in model.predict(features).items()}

        return dict(self._cached(("outputs", mon, ref_name, model_ref), build))

    def _reference_outputs(self, mon: Monitor, frame: pd.DataFrame, model_ref: str, ref_name: str) -> pd.DataFrame:
        outs = self._model_outputs(mon, frame, model_ref, ref_name)
        cols: dict[str, Any] = {}
        for name, arr in outs.items():
            if arr.ndim == 1:
                cols[name] = arr
            else:
                flat = arr.reshape(len(arr), -1)
                for j in range(flat.shape[1]):
                    cols[f"{name}[{j}]"] = flat[:, j]
        return pd.DataFrame(cols)

    def _labelled_reference(self, mon: Monitor, ref: _Reference, model_ref: str) -> tuple[Any, Any, list[Any]]:
        """Reference labels and the model's probabilities on the reference (for calibration)."""
        if ref.model_ref is None:
            raise FailedPrecondition(
                "performance estimation needs a labelled reference dataset (bound or named), not a traffic window"
            )
        target = mon.spec.params.get("target") or next((c for c in TARGET_COLUMNS if c in ref.frame.columns), None)
        if target is None or target not in ref.frame.columns:
            raise FailedPrecondition(
                f"reference {ref.name} has no label column (looked for params.target or {list(TARGET_COLUMNS)})"
            )
        outs = self._model_outputs(mon, ref.frame, model_ref, ref.name)
        wanted = mon.spec.params.get("proba_output")
        proba_name = next(
            (n for n in ([wanted] if wanted else ["predict_proba", "probabilities", "probability"]) if n in outs), None
        )
        if proba_name is None:
            raise FailedPrecondition(f"{model_ref} has no probability output (outputs: {sorted(outs)})")
        y = ref.frame[target].to_numpy()
        classes = sorted(pd.unique(y).tolist())
        return y, np.asarray(outs[proba_name], dtype=float), classes

    def _performance_detector(self, mon: Monitor, model_ref: str, joined: pd.DataFrame) -> Any | None:
        """A performance detector fitted on the bound/named labelled reference, or ``None`` (metrics only)."""
        if mon.spec.reference.startswith("previous:"):
            return None
        try:
            ref = self._reference(mon, model_ref, "", joined["ts"].min() if len(joined) else self.clock.now())
            y_ref, proba_ref, classes = self._labelled_reference(mon, ref, model_ref)
        except FailedPrecondition:
            return None
        from mlpilot.monitoring import ClassificationPerformance

        metric = str(mon.spec.params.get("metric", "accuracy"))
        return self._cached(
            ("performance", mon, ref.name, model_ref),
            lambda: ClassificationPerformance(metric=metric, classes=classes).fit(y_ref, proba_ref),
        )


def _model_inputs(frame: pd.DataFrame, signature: dict[str, Any] | None) -> Any:
    """Reference features in the form the model takes: a DataFrame of its named inputs, or one array."""
    if signature:
        sig = Signature.from_dict(signature)
        names = sig.input_names()
        if sig.columnar or (len(names) > 1 and all(n in frame.columns for n in names)):
            return frame[names]
        features = frame.drop(columns=[c for c in TARGET_COLUMNS if c in frame.columns])
        return features.to_numpy(dtype=DATATYPES.get(sig.inputs[0].datatype))
    return frame.drop(columns=[c for c in TARGET_COLUMNS if c in frame.columns])


def _with_reference(out: kinds.Outcome, ref: _Reference, variant: str) -> kinds.Outcome:
    return kinds.Outcome(out.status, out.value, out.message, {**out.detail, "reference": ref.name, "variant": variant})
