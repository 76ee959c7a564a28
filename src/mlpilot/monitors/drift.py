"""Drift of a deployment's live traffic against its reference data.

The reference is the dataset bound (role ``reference``) to the model version of the variant that serves the
traffic — registered with ``mlpilot datasets register … --bind-to MODEL:VERSION`` — or, when asked, a past window
of the deployment's own traffic. The current window is read from the request log (shadows excluded).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mlpilot.errors import FailedPrecondition, InvalidArgument
from mlpilot.monitoring import TableDrift
from mlpilot.monitoring.results import DriftResult
from mlpilot.monitors.kinds import align_reference, input_frame
from mlpilot.registry import Registry
from mlpilot.store import Store

if TYPE_CHECKING:
    import pandas as pd
from mlpilot.telemetry.query import read_records
from mlpilot.telemetry.segments import LogRoot, as_store


@dataclass(frozen=True)
class DriftReport:
    deployment: str
    variant: str
    reference: str
    since: datetime | None
    until: datetime | None
    current_rows: int
    reference_rows: int
    result: DriftResult

    def to_dict(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment,
            "variant": self.variant,
            "reference": self.reference,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "current_rows": self.current_rows,
            "reference_rows": self.reference_rows,
            "result": self.result.to_dict(),
        }


class DriftMonitor:
    def __init__(self, store: Store, registry: Registry, log_root: LogRoot) -> None:
        self.store = store
        self.registry = registry
        self.log_root = as_store(log_root)

    def report(
        self,
        deployment: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        variant: str | None = None,
        reference_since: datetime | None = None,
        reference_until: datetime | None = None,
        **drift_params: Any,
    ) -> DriftReport:
        """Per-feature drift of ``deployment``'s traffic in ``[since, until]``.

        Args:
            variant: the variant whose traffic and reference to use (default: the one with the most traffic).
            reference_since / reference_until: use this past window of traffic as the reference instead of the
                bound dataset.
            drift_params: passed to :class:`~mlpilot.monitoring.TableDrift` (``numeric_test``, ``correction`` …).

        Raises:
            FailedPrecondition: no reference dataset is bound and no reference window was given.
            InvalidArgument: the window holds no traffic, or a parameter is wrong.
        """
        vname, ref_name, reference, current = self.frames(
            deployment, since=since, until=until, variant=variant,
            reference_since=reference_since, reference_until=reference_until,
        )  # fmt: skip
        result = TableDrift(**drift_params).fit(reference).predict(current)
        return DriftReport(deployment, vname, ref_name, since, until, len(current), len(reference), result)

    def frames(
        self,
        deployment: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        variant: str | None = None,
        reference_since: datetime | None = None,
        reference_until: datetime | None = None,
        limit: int | None = None,
    ) -> tuple[str, str, pd.DataFrame, pd.DataFrame]:
        """``(variant, reference name, reference, current)``: the input frames a drift report compares, aligned
        (same columns); ``limit``: at most that many of the window's newest records. Raises like :meth:`report`."""
        dep = self.store.get_deployment(deployment)
        spec = dep.spec
        vname = variant or max(spec.traffic, key=lambda k: spec.traffic[k])
        vspec = next((v for v in spec.variants if v.name == vname), None)
        if vspec is None:
            raise InvalidArgument(f"deployment {deployment!r} has no variant {vname!r}")
        use_window = reference_since is not None or reference_until is not None
        model = self.store.get_version(vspec.model)
        ref_name = model.bindings.get("reference", "")
        if not use_window and not ref_name:  # before reading any record
            raise FailedPrecondition(
                f"{model.ref} has no reference dataset: bind one with `mlpilot datasets register NAME FILE "
                f"--bind-to {model.ref}`, or give a reference window"
            )
        logged = read_records(
            self.log_root, deployment, since=since, until=until, variant=vname, shadow=False,
            limit=limit, newest_first=limit is not None,
        )  # fmt: skip
        if logged.empty:
            raise InvalidArgument(f"no logged predictions of {deployment}/{vname} in the window; widen --since")
        current = input_frame(logged)
        if use_window:
            past = read_records(
                self.log_root, deployment, since=reference_since, until=reference_until, variant=vname, shadow=False
            )
            if past.empty:
                raise InvalidArgument("the reference window holds no logged predictions")
            reference, ref_name = input_frame(past), f"traffic {reference_since} .. {reference_until}"
        else:
            reference = self.registry.read_dataset(ref_name)
        reference, current = align_reference(reference, current)
        return vname, ref_name, reference, current
