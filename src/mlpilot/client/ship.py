"""``ship``: from a model file to production in one call, over the public SDK — register, check the signature,
smoke-test, compare offline against the champion, then shadow → canary → promote with the rollout controller.

Each gate ends with a :class:`Gate` (``pass``, ``fail`` or ``skip``, one human line with its numbers) reported
through ``on_gate`` as soon as it is known; the pipeline stops at the first failed gate and nothing after it runs
(a bad signature registers the file but starts no rollout and changes no deployment). Nothing here prints: the
``mlpilot ship`` command (:mod:`mlpilot.cli.ship`) renders the gates.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pandas as pd
from pydantic import ValidationError

from mlpilot.client.client import Client
from mlpilot.errors import InvalidArgument, MlpilotError, NotFound, SignatureError, Unavailable
from mlpilot.monitors.kinds import TARGET_COLUMNS
from mlpilot.protocol.signature import DATATYPES, Signature
from mlpilot.records import ArtifactVersion, Deployment, Event, Rollout, RolloutPhase, RolloutSpec
from mlpilot.registry.datasets import read_table

PASS, FAIL, SKIP = "pass", "fail", "skip"
SMOKE_ROWS = 50  # rows the smoke test predicts on
OFFLINE_ROWS = 10_000  # at most this many labelled reference rows are compared offline
_OFF = {"", "0", "0s", "0m", "0h", "off", "none", "no", "false"}
_ENDED_OK = {"deployed", "rollout_started", "promoted", "unchanged"}


@dataclass(frozen=True)
class Gate:
    """One step of the pipeline with its verdict.

    Attributes:
        name: ``register``, ``signature``, ``smoke``, ``offline``, ``deploy``/``rollout``, then one per rollout
            phase left (``shadow``, ``canary 10%`` …) and ``promote``.
        verdict: ``pass``, ``fail`` or ``skip``.
        message: one human line with the numbers that decided it.
        numbers: the same numbers, machine-readable (the rollout gates also hold the controller's ``analyses``).
    """

    name: str
    verdict: str
    message: str
    numbers: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.verdict == FAIL

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ShipReport:
    """What :func:`ship` did: every gate in order, the version shipped, the rollout and how it ended.

    ``outcome`` is ``deployed`` (a new deployment), ``rollout_started`` (not waited for), ``promoted``,
    ``unchanged`` (the file is what the deployment already serves), ``stopped`` (a gate before the rollout
    failed), ``rolled_back``, ``aborted`` or ``timed_out``.
    """

    deployment: str
    gates: list[Gate] = field(default_factory=list)
    version: str | None = None
    rollout_id: int | None = None
    outcome: str = "stopped"

    @property
    def ok(self) -> bool:
        return self.outcome in _ENDED_OK and not any(g.failed for g in self.gates)

    @property
    def failed_gate(self) -> Gate | None:
        return next((g for g in self.gates if g.failed), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment,
            "ok": self.ok,
            "outcome": self.outcome,
            "version": self.version,
            "rollout_id": self.rollout_id,
            "gates": [g.to_dict() for g in self.gates],
        }


class _Stop(Exception):
    """Internal: a gate failed; the pipeline ends."""


# ---------------------------------------------------------------------------------------------- options


def parse_steps(steps: str | Sequence[int]) -> list[int]:
    """``"10,50,100"`` (or a list of ints) → ``[10, 50, 100]``.

    Raises:
        InvalidArgument: not comma-separated integers.
    """
    if not isinstance(steps, str):
        return [int(w) for w in steps]
    try:
        weights = [int(w) for w in steps.split(",") if w.strip()]
    except ValueError as exc:
        raise InvalidArgument(f"steps take comma-separated percentages like 10,50,100, got {steps!r}") from exc
    if not weights:
        raise InvalidArgument("give at least one canary step, e.g. 10,50,100")
    return weights


def shadow_enabled(shadow: str | None) -> bool:
    """False for ``None``, ``"0"``, ``"0s"``, ``"off"`` … (no shadow phase)."""
    return shadow is not None and str(shadow).strip().lower() not in _OFF


def rollout_body(
    candidate: str,
    *,
    shadow: str | None,
    steps: str | Sequence[int],
    step_duration: str,
    step_samples: int,
    min_agreement: float | None = None,
    performance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The rollout spec ``ship`` starts, validated (so bad options fail before anything is registered).

    Analyses: ``error_rate`` and ``latency``; ``agreement`` in the shadow phase (the controller skips it in canary
    steps); ``performance`` from feedback labels, not required (it still rolls back when it fails).

    Raises:
        InvalidArgument: a bad duration, weights that do not increase or are outside 1..100, a negative sample count.
    """
    body: dict[str, Any] = {
        "candidate": candidate,
        "steps": [
            {"weight": w, "min_duration": step_duration, "min_samples": step_samples} for w in parse_steps(steps)
        ],
        "analyses": [{"kind": "error_rate"}, {"kind": "latency"}],
    }
    if shadow_enabled(shadow):
        body["shadow"] = {"min_duration": shadow, "min_samples": step_samples}
        agreement: dict[str, Any] = {"kind": "agreement"}
        if min_agreement is not None:
            agreement["params"] = {"min_agreement": round(min_agreement, 4)}
        body["analyses"].append(agreement)
    body["analyses"].append({"kind": "performance", "required": False, "params": dict(performance or {})})
    try:
        RolloutSpec.model_validate(body)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise InvalidArgument(f"bad rollout options: {problems}") from exc
    return body


# ---------------------------------------------------------------------------------------------- data helpers


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return f"sha256:{h.hexdigest()}"


def _features(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=[c for c in TARGET_COLUMNS if c in frame.columns])


def _target(frame: pd.DataFrame) -> str | None:
    return next((c for c in TARGET_COLUMNS if c in frame.columns), None)


def model_input(data: Any, signature: dict[str, Any] | None) -> Any:
    """``data`` (a DataFrame of feature columns, or an array) shaped as the data plane hands it to a model with
    this signature: a DataFrame in the signature's column order (columnar or unsigned), one array (a single
    tensor input), or a dict of arrays (several tensor inputs).

    Raises:
        InvalidArgument: the data lacks inputs the signature names.
    """
    if signature is None or not isinstance(data, pd.DataFrame):
        return data
    sig = Signature.from_dict(signature)
    names = sig.input_names()
    if sig.columnar:
        missing = [n for n in names if n not in data.columns]
        if missing:
            raise InvalidArgument(f"the data lacks the model's inputs {missing}; it has {list(data.columns)[:10]}")
        return data[names]
    if len(sig.inputs) == 1:
        spec = sig.inputs[0]
        return data.to_numpy() if spec.datatype == "BYTES" else data.to_numpy(dtype=DATATYPES[spec.datatype])
    missing = [n for n in names if n not in data.columns]
    if missing:
        raise InvalidArgument(f"the data lacks the model's inputs {missing}; it has {list(data.columns)[:10]}")
    return {s.name: data[s.name].to_numpy() for s in sig.inputs}


def primary_output(outputs: dict[str, np.ndarray]) -> np.ndarray:
    """The model's answer: its ``predict`` output (else its first), as one value per row."""
    if not outputs:
        raise InvalidArgument("the model returned no outputs")
    arr = np.asarray(outputs.get("predict", next(iter(outputs.values()))))
    return arr.reshape(len(arr)) if arr.ndim == 2 and arr.shape[1] == 1 else arr


def _discrete(values: Any) -> bool:
    arr = np.asarray(values)
    if arr.dtype.kind == "O":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            return True  # strings, mixed labels
    if arr.dtype.kind == "f":
        finite = arr[np.isfinite(arr)]
        return bool(np.all(finite == np.round(finite)))
    return arr.dtype.kind != "c"


def is_classification(labels: Any, *predictions: Any) -> bool:
    """Classification when the labels and every prediction are discrete (labels, integers, integer floats)."""
    return _discrete(labels) and all(_discrete(p) for p in predictions)


def _label_keys(values: Any) -> np.ndarray:
    """Labels as comparable strings: ``1``, ``1.0`` and ``np.int64(1)`` are the same class."""
    out = []
    for v in np.asarray(values, dtype=object).ravel():
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        if isinstance(v, (bool, np.bool_)):
            out.append(str(bool(v)))
            continue
        try:
            f = float(v)
            out.append(str(int(f)) if math.isfinite(f) and f.is_integer() else str(f))
        except (TypeError, ValueError):
            out.append(str(v))
    return np.asarray(out, dtype=object)


def _signed(x: float) -> str:
    """``+1.3`` / ``\N{MINUS SIGN}14.0`` (with a true minus sign)."""
    return f"{x:+.1f}".replace("-", "\N{MINUS SIGN}")


def _why(exc: BaseException) -> str:
    return exc.message if isinstance(exc, MlpilotError) else f"{type(exc).__name__}: {exc}"


# ---------------------------------------------------------------------------------------------- rollout gates


def phase_label(phase: str | None, step: int | None, spec: RolloutSpec | None) -> str:
    """``shadow``, ``canary 10%`` (from the step's weight), ``bake`` …"""
    if phase == RolloutPhase.CANARY.value and spec is not None and step is not None and 0 <= step < len(spec.steps):
        return f"canary {spec.steps[step].weight}%"
    return str(phase or "rollout")


def _analyses(after: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {k: a.get(k) for k in ("name", "verdict", "message", "statistics")}
        for a in after.get("analyses") or []
        if isinstance(a, dict)
    ]


def gate_from_event(event: Event, spec: RolloutSpec | None) -> Gate | None:
    """The gate a rollout transition closes, or None for bookkeeping transitions (started, begin, pause, resume,
    reweight).

    ``advance``/``promote`` pass the phase (or step) being left, ``rollback``/``abort`` fail it with the
    controller's reason, ``complete`` is the ``promote`` gate (the candidate serves the baseline's traffic).
    """
    action = event.action.removeprefix("rollout.")
    after = event.after or {}
    before = event.before or {}
    reason = str(after.get("reason") or "")
    analyses = _analyses(after)
    inputs = after.get("inputs") or {}
    numbers: dict[str, Any] = {"action": action, "reason": reason}
    if inputs:
        numbers.update(
            candidate_requests=inputs.get("step_samples"),
            baseline_requests=(inputs.get("baseline") or {}).get("requests"),
            elapsed_s=inputs.get("elapsed_s"),
        )
    if after.get("traffic"):
        numbers["traffic"] = after["traffic"]
    if analyses:
        numbers["analyses"] = analyses
    if action == "complete":
        traffic = after.get("traffic") or {}
        split = ", ".join(f"{k} {v}%" for k, v in traffic.items() if v) or "the candidate"
        ok = after.get("phase") == RolloutPhase.PROMOTED.value
        return Gate("promote", PASS if ok else FAIL, f"{reason or 'promoted'}: {split}", numbers)
    if action not in ("advance", "promote", "rollback", "abort"):
        return None
    name = phase_label(before.get("phase"), before.get("step"), spec)
    verdict = PASS if action in ("advance", "promote") else FAIL
    parts = [reason or action]
    if analyses:
        parts.append(", ".join(f"{a['name']} {a['verdict']}" for a in analyses))
    if inputs.get("step_samples") is not None and inputs.get("elapsed_s") is not None:
        parts.append(f"{inputs['step_samples']} candidate requests in {float(inputs['elapsed_s']):.1f} s")
    return Gate(name, verdict, " — ".join(parts), numbers)


# ---------------------------------------------------------------------------------------------- the pipeline


class _Ship:
    def __init__(self, client: Client, deployment: str, on_gate: Callable[[Gate], None] | None) -> None:
        self.c = client
        self.report = ShipReport(deployment=deployment)
        self.on_gate = on_gate
        self.deployment: Deployment | None = None
        self.champion: ArtifactVersion | None = None
        self.baseline: str | None = None
        self.candidate: ArtifactVersion | None = None
        self.reference: pd.DataFrame | None = None
        self.reference_ref: str | None = None
        self.unsigned_reason: str | None = None
        self.offline: dict[str, Any] = {}

    def emit(self, gate: Gate, *, stop: bool = True) -> None:
        """Record and report ``gate``; a failed gate ends the pipeline (unless ``stop`` is false)."""
        self.report.gates.append(gate)
        if self.on_gate is not None:
            self.on_gate(gate)
        if gate.failed and stop:
            raise _Stop

    def gate(self, name: str, verdict: str, message: str, **numbers: Any) -> None:
        self.emit(Gate(name, verdict, message, numbers))

    def fail(self, name: str, message: str, **numbers: Any) -> NoReturn:
        self.emit(Gate(name, FAIL, message, numbers))
        raise _Stop  # emit raised already; this tells type checkers

    # -------------------------------------------------------------------------------- context

    def load_context(self) -> None:
        """The deployment (None if new), its baseline variant (the busiest live one), the champion model and its
        bound reference dataset."""
        try:
            self.deployment = self.c.get_deployment(self.report.deployment)
        except NotFound:
            return
        live = {k: w for k, w in self.deployment.spec.traffic.items() if w > 0}
        if not live:
            return
        self.baseline = max(live, key=lambda k: live[k])
        model = next(v.model for v in self.deployment.spec.variants if v.name == self.baseline)
        self.champion = self.c.get_version(model)
        ref = self.champion.bindings.get("reference")
        if ref:
            self.reference = self.c.read_dataset(ref)
            self.reference_ref = ref

    def _auto_sample(self) -> pd.DataFrame | None:
        """Rows of the champion's reference in its input columns (to infer the candidate's signature)."""
        if self.reference is None or self.reference.empty:
            return None
        frame = _features(self.reference).head(20)
        sig = self.champion.signature if self.champion is not None else None
        if sig and sig.get("columnar") and all(s["name"] in frame.columns for s in sig["inputs"]):
            frame = frame[[s["name"] for s in sig["inputs"]]]
        return frame

    # -------------------------------------------------------------------------------- gates

    def register(
        self, path: Path, name: str | None, flavor: str | None, sample: Path | None, trust: bool = False
    ) -> ArtifactVersion:
        if name is None:
            name = self.champion.name if self.champion is not None else path.stem
        if not path.is_file():
            self.fail("register", f"model file {str(path)!r} does not exist or is not a file")
        try:
            digest = _sha256(path)
        except OSError as exc:
            self.fail("register", f"cannot read {path}: {exc.strerror or exc}")
        auto = self._auto_sample() if sample is None else None
        existing = self._same_bytes(name, digest)
        # Same bytes: reuse that version, unless it is unsigned and --sample can now give it a signature.
        if existing is not None and (existing.signature is not None or sample is None):
            msg = f"{path.name} is already {existing.ref} (same sha256 {digest[7:19]}…): reusing it"
            self.gate("register", PASS, msg, version=existing.ref, reused=True, digest=digest, size=existing.size)
            return existing
        try:
            try:
                v = self.c.register_model(
                    name, path, flavor=flavor, sample=sample if sample is not None else auto, trust_pickle=trust
                )
            except SignatureError as exc:
                if auto is None:
                    raise
                # It cannot predict on the champion's inputs: register it unsigned, the signature gate says why.
                self.unsigned_reason = exc.message
                v = self.c.register_model(name, path, flavor=flavor, trust_pickle=trust)
        except MlpilotError as exc:
            self.fail("register", f"cannot register {path.name} as {name}: {exc.message}")
        inputs = len(v.signature.get("inputs", [])) if v.signature else 0
        signed = f"signature of {inputs} input{'s' if inputs != 1 else ''}" if v.signature else "no signature"
        if v.signature and sample is not None:
            signed += " from --sample"
        elif v.signature and auto is not None:
            signed += " from the champion's reference rows"
        msg = f"registered {v.ref} ({v.flavor}, {v.size / 1024:.1f} kB, {signed})"
        self.gate("register", PASS, msg, version=v.ref, reused=False, digest=v.digest, size=v.size, inputs=inputs)
        return v

    def _same_bytes(self, name: str, digest: str) -> ArtifactVersion | None:
        try:
            versions = self.c.list_versions(name)
        except MlpilotError:  # no such model yet, or a bad name (registration reports it)
            return None
        return next((v for v in reversed(versions) if v.digest == digest and v.flavor is not None), None)

    def signature(self, cand: ArtifactVersion) -> None:
        champ = self.champion
        if champ is None:
            return self.gate("signature", SKIP, "no champion to compare with (a new deployment)")
        if champ.signature is None:
            return self.gate("signature", SKIP, f"the champion {champ.ref} has no signature to compare with")
        if cand.signature is None:
            why = self.unsigned_reason or "give --sample so its inputs are known"
            self.fail("signature", f"{cand.ref} has no signature to check against {champ.ref}: {why}")
        problems = Signature.from_dict(champ.signature).incompatibilities(Signature.from_dict(cand.signature))
        ins = champ.signature.get("inputs", [])
        numbers = {"champion": champ.ref, "candidate": cand.ref, "problems": problems, "inputs": len(ins)}
        if problems:
            head = f"{cand.ref} does not accept the requests of {champ.ref}"
            many = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
            self.fail("signature", f"{head} ({many}): " + "; ".join(problems), **numbers)
        shown = ", ".join(f"{s['name']} {s['datatype']}" for s in ins[:6]) + (" …" if len(ins) > 6 else "")
        msg = f"{cand.ref} accepts the requests of {champ.ref} ({len(ins)} inputs: {shown})"
        return self.gate("signature", PASS, msg, **numbers)

    def _smoke_data(self, sample: Path | None) -> tuple[Any, str] | None:
        if self.reference is not None and len(self.reference):
            return _features(self.reference).head(SMOKE_ROWS), f"reference {self.reference_ref}"
        if sample is not None:
            data = read_table(sample)
            if isinstance(data, pd.DataFrame):
                return _features(data).head(SMOKE_ROWS), f"sample {sample.name}"
            return np.asarray(data)[:SMOKE_ROWS], f"sample {sample.name}"
        return None

    def smoke(self, cand: ArtifactVersion, sample: Path | None) -> None:
        try:
            found = self._smoke_data(sample)
        except MlpilotError as exc:
            self.fail("smoke", f"cannot read the smoke-test data: {exc.message}")
        if found is None:
            return self.gate("smoke", SKIP, "no reference dataset bound to the champion and no --sample to predict on")
        data, source = found
        rows = len(data)
        try:
            model = self.c.load_model(cand.ref)
            x = model_input(data, cand.signature)
            t0 = time.perf_counter()
            outputs = model.predict(x)
            ms = (time.perf_counter() - t0) * 1000.0
        except Exception as exc:  # the user's model: whatever it raises is the smoke test's verdict
            self.fail("smoke", f"{cand.ref} failed on {rows} rows of the {source}: {_why(exc)}", rows=rows)
        numbers = {"rows": rows, "ms_per_row": ms / max(1, rows), "source": source, "outputs": sorted(outputs)}
        for out_name, values in outputs.items():
            arr = np.asarray(values)
            if arr.ndim == 0 or len(arr) != rows:
                got = "a scalar" if arr.ndim == 0 else f"{len(arr)} rows"
                self.fail("smoke", f"output {out_name!r} has {got} for {rows} input rows", **numbers)
            if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
                bad = int((~np.isfinite(arr)).sum())
                self.fail(
                    "smoke", f"output {out_name!r} has {bad} non-finite values (NaN/inf) on {rows} rows", **numbers
                )
        timing = f"{ms:.1f} ms ({numbers['ms_per_row']:.3f} ms/row)"
        return self.gate(
            "smoke", PASS, f"{rows} rows of the {source} in {timing}; outputs " + ", ".join(sorted(outputs)), **numbers
        )

    def compare(self, cand: ArtifactVersion, margin: float) -> None:
        champ = self.champion
        if champ is None:
            return self.gate("offline", SKIP, "no champion to compare with (a new deployment)")
        if self.reference is None or self.reference.empty:
            return self.gate("offline", SKIP, f"the champion {champ.ref} has no reference dataset bound")
        target = _target(self.reference)
        frame = self.reference if target is None else self.reference[self.reference[target].notna()]
        frame = frame.head(OFFLINE_ROWS)
        features, n = _features(frame), len(frame)
        try:
            champ_pred = primary_output(self.c.load_model(champ.ref).predict(model_input(features, champ.signature)))
        except Exception as exc:  # no comparison possible, but that is not the candidate's fault
            why = f"the champion {champ.ref} cannot predict on its reference: {_why(exc)}"
            return self.gate("offline", SKIP, why)
        try:
            cand_pred = primary_output(self.c.load_model(cand.ref).predict(model_input(features, cand.signature)))
        except Exception as exc:
            self.fail("offline", f"{cand.ref} failed on the reference {self.reference_ref}: {_why(exc)}")
        if target is None:
            agree = float(np.mean(_label_keys(cand_pred) == _label_keys(champ_pred))) if n else math.nan
            self.offline = {"agreement": agree}
            why = f"the reference {self.reference_ref} has no label column ({', '.join(TARGET_COLUMNS)})"
            return self.gate("offline", SKIP, f"{why}; agreement {agree:.3f} on {n} rows", rows=n, agreement=agree)
        y = frame[target].to_numpy()
        if is_classification(y, champ_pred, cand_pred):
            return self._classification(y, champ_pred, cand_pred, margin)
        return self._regression(y, champ_pred, cand_pred, margin)

    def _classification(self, y: np.ndarray, champ: np.ndarray, cand: np.ndarray, margin: float) -> None:
        ky, kb, kc = _label_keys(y), _label_keys(champ), _label_keys(cand)
        acc_b, acc_c, agree = float(np.mean(kb == ky)), float(np.mean(kc == ky)), float(np.mean(kb == kc))
        self.offline = {"task": "classification", "agreement": agree}
        line = (
            f"candidate accuracy {acc_c:.3f} vs champion {acc_b:.3f} ({_signed(100.0 * (acc_c - acc_b))} points, "
            f"margin {100 * margin:.1f}); agreement {agree:.3f} on {len(y)} labelled rows"
        )
        verdict = FAIL if acc_c < acc_b - margin - 1e-12 else PASS
        numbers = {"champion": acc_b, "candidate": acc_c, "difference": acc_c - acc_b, "agreement": agree}
        self.gate(
            "offline", verdict, line, task="classification", metric="accuracy", rows=len(y), margin=margin, **numbers
        )

    def _regression(self, y: np.ndarray, champ: np.ndarray, cand: np.ndarray, margin: float) -> None:
        y, champ, cand = (np.asarray(a, dtype=np.float64) for a in (y, champ, cand))
        mae_b, mae_c = float(np.mean(np.abs(champ - y))), float(np.mean(np.abs(cand - y)))
        relative = (mae_c - mae_b) / mae_b if mae_b > 0 else (0.0 if mae_c == 0 else math.inf)
        # "agreement" of two regressors: the share of rows where they differ by less than the champion's MAE
        agree = float(np.mean(np.abs(cand - champ) <= mae_b)) if mae_b > 0 else float(np.mean(cand == champ))
        self.offline = {"task": "regression", "agreement": agree, "mae": mae_b}
        rel = f"{_signed(100 * relative)}%" if math.isfinite(relative) else "the champion is exact"
        line = (
            f"candidate MAE {mae_c:.4g} vs champion {mae_b:.4g} ({rel}, margin {100 * margin:.1f}%); "
            f"{agree:.3f} of {len(y)} rows within the champion's MAE of its prediction"
        )
        verdict = FAIL if relative > margin + 1e-12 else PASS
        numbers: dict[str, float | None] = {"champion": mae_b, "candidate": mae_c, "agreement": agree}
        numbers["relative_difference"] = relative if math.isfinite(relative) else None
        self.gate("offline", verdict, line, task="regression", metric="mae", rows=len(y), margin=margin, **numbers)

    # -------------------------------------------------------------------------------- rollout

    def deploy_new(self, cand: ArtifactVersion) -> None:
        name = self.report.deployment
        try:
            dep = self.c.deploy(name, cand.ref)
        except MlpilotError as exc:
            self.fail("deploy", f"cannot deploy {cand.ref} to {name}: {exc.message}")
        split = ", ".join(f"{k} {w}%" for k, w in dep.spec.traffic.items() if w)
        self.report.outcome = "deployed"
        msg = f"created deployment {dep.name}: {split} ({cand.ref})"
        self.gate("deploy", PASS, msg, deployment=dep.name, traffic=dict(dep.spec.traffic), revision=dep.revision)

    def rollout_options(self, margin: float) -> tuple[float | None, dict[str, Any]]:
        """The agreement floor and the performance analysis' params, from what the offline gate measured."""
        agree = self.offline.get("agreement")
        # Live, the candidate should agree with the champion about as often as it did on the reference: 5 points
        # less means it sees other inputs than it was checked on (or serves differently). At most the default 0.95.
        min_agreement = None if agree is None or not math.isfinite(agree) else max(0.0, min(0.95, agree - 0.05))
        perf: dict[str, Any] = {}
        if self.offline.get("task") == "classification":
            perf = {"metric": "accuracy", "margin": margin}
        elif self.offline.get("task") == "regression" and self.offline.get("mae"):
            perf = {"metric": "mae", "margin": margin * float(self.offline["mae"])}
        return min_agreement, perf

    def start_rollout(self, body: dict[str, Any], wait: bool, timeout_s: float) -> None:
        dep = self.report.deployment
        try:
            r = self.c.start_rollout(dep, body)
        except MlpilotError as exc:
            self.fail("rollout", f"cannot start a rollout on {dep}: {exc.message}")
        self.report.rollout_id = r.id
        weights = " → ".join(f"{step['weight']}%" for step in body["steps"])
        plan = ([f"shadow {body['shadow']['min_duration']}"] if "shadow" in body else []) + [f"canary {weights}"]
        numbers = {"rollout": r.id, "phase": r.phase.value, "baseline": r.baseline, "candidate": r.candidate}
        if not wait:
            self.report.outcome = "rollout_started"
            where = phase_label(r.phase.value, r.step, r.spec)
            msg = f"rollout {r.id} started (phase {where}; {', then '.join(plan)}); `mlpilot up` advances it"
            return self.gate("rollout", PASS, msg, spec=body, **numbers)
        msg = f"rollout {r.id} started: {r.baseline} → {r.candidate}, {', then '.join(plan)}"
        self.gate("rollout", PASS, msg, spec=body, **numbers)
        return self.follow(r, timeout_s)

    def follow(self, r: Rollout, timeout_s: float) -> None:
        """Report every transition of the rollout as a gate until it settles; the last gate fails unless it ends
        promoted (with the controller's reason)."""
        seen: set[int] = set()
        emitted: list[Gate] = []

        def catch_up(now: Rollout) -> None:
            for e in self.c.rollout_decisions(now.id):
                if e.id not in seen:
                    seen.add(e.id)
                    gate = gate_from_event(e, now.spec)
                    if gate is not None:
                        emitted.append(gate)
                        self.emit(gate, stop=False)  # a rollback ends the rollout anyway: it settles at once

        try:
            final = self.c.wait_rollout(r.id, timeout_s=timeout_s, on_change=catch_up)
            catch_up(final)
        except Unavailable as exc:
            try:
                now = self.c.rollout(rollout_id=r.id)
            except MlpilotError:
                now = r
            self.report.outcome = "timed_out"
            d = r.deployment
            hint = f"`mlpilot rollout status {d}` to watch it, `mlpilot rollout abort {d}` to stop it"
            self.fail(
                phase_label(now.phase.value, now.step, now.spec),
                f"{exc.message}; the rollout goes on: {hint}",
                rollout=r.id,
            )
        if final.phase is RolloutPhase.PROMOTED:
            self.report.outcome = "promoted"
            if not any(g.name == "promote" for g in emitted):
                self.gate("promote", PASS, final.message or "promoted", rollout=final.id)
            return
        self.report.outcome = final.phase.value
        if any(g.failed for g in emitted):
            raise _Stop
        why = final.message or f"the rollout ended {final.phase.value}"
        self.fail(phase_label(final.phase.value, final.step, final.spec), why, rollout=final.id)


def ship(
    client: Client,
    model_file: str | Path,
    deployment: str,
    *,
    name: str | None = None,
    flavor: str | None = None,
    sample: str | Path | None = None,
    shadow: str | None = "1m",
    steps: str | Sequence[int] = "10,50,100",
    step_duration: str = "1m",
    step_samples: int = 100,
    margin: float = 0.02,
    wait: bool = True,
    timeout_s: float = 3600.0,
    on_gate: Callable[[Gate], None] | None = None,
    trust_pickle: bool = False,
) -> ShipReport:
    """Ship a model file to ``deployment``: register → signature → smoke → offline → deploy or rollout.

    Args:
        client: an SDK client (embedded or remote).
        model_file: the model file to register (as ``mlpilot models register`` takes it).
        deployment: the deployment to ship to; created (100% to the candidate) when it does not exist.
        name: the model name; default the champion's (the model of the deployment's busiest live variant), or the
            file's stem for a new deployment.
        flavor: force a flavor instead of detecting it.
        sample: example inputs (CSV/Parquet/JSON/.npy) for the signature and the smoke test; default the champion's
            reference rows.
        shadow: the shadow phase's minimum duration (``None``/``"0"``: no shadow phase).
        steps: canary weights, e.g. ``"10,50,100"``.
        step_duration: minimum time per step (and of the shadow phase).
        step_samples: minimum candidate requests per step (and of the shadow phase).
        margin: how much worse than the champion the candidate may be offline and live: accuracy points
            (0.02 = 2 points) or relative MAE (0.02 = 2%).
        wait: follow the rollout until it settles (each phase becomes a gate); else return once it started.
        timeout_s: how long ``wait`` waits; the rollout goes on after it.
        on_gate: called with each :class:`Gate` as soon as it is decided.
        trust_pickle: you trust the file, which may be in a format that runs code when loaded (joblib/pickle,
            cloudpickle, ``.py``); without it (or the server's ``artifacts.trust_pickle``) the register gate fails.

    Returns:
        the :class:`ShipReport` (``ok`` is false when a gate failed).

    Raises:
        InvalidArgument: bad options (steps, durations, margin, a missing sample file), before anything is
            registered. Everything else — including a server that cannot be reached — ends in a failed gate.
    """
    if not 0.0 <= float(margin) < 1.0:
        raise InvalidArgument(f"margin must be in [0, 1) (0.02 = 2 accuracy points or 2% MAE), got {margin!r}")
    if step_samples < 0:
        raise InvalidArgument(f"step samples must be 0 or more, got {step_samples}")
    rollout_body("placeholder:1", shadow=shadow, steps=steps, step_duration=step_duration, step_samples=step_samples)
    path = Path(model_file)
    sample_path = Path(sample) if sample is not None else None
    if sample_path is not None and not sample_path.is_file():
        raise InvalidArgument(f"sample file {str(sample_path)!r} does not exist")
    run = _Ship(client, deployment, on_gate)
    try:
        try:
            run.load_context()
        except MlpilotError as exc:
            run.fail("register", f"cannot read deployment {deployment!r} and its champion: {exc.message}")
        cand = run.candidate = run.register(path, name, flavor, sample_path, trust_pickle)
        run.report.version = cand.ref
        if run.champion is not None and cand.ref == run.champion.ref:
            run.report.outcome = "unchanged"
            msg = f"{cand.ref} is what {deployment} already serves (variant {run.baseline}); nothing to roll out"
            run.gate("rollout", SKIP, msg)
            return run.report
        run.signature(cand)
        run.smoke(cand, sample_path)
        run.compare(cand, float(margin))
        if run.deployment is None:
            run.deploy_new(cand)
            return run.report
        min_agreement, perf = run.rollout_options(float(margin))
        body = rollout_body(
            cand.ref,
            shadow=shadow,
            steps=steps,
            step_duration=step_duration,
            step_samples=step_samples,
            min_agreement=min_agreement,
            performance=perf,
        )
        run.start_rollout(body, wait, timeout_s)
    except _Stop:
        if run.report.outcome in _ENDED_OK:
            run.report.outcome = "stopped"
    return run.report


__all__ = ["Gate", "ShipReport", "gate_from_event", "is_classification", "model_input", "rollout_body", "ship"]
