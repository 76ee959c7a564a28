"""A platform on a virtual clock serving simulated traffic: each arm's behaviour (accuracy, per segment; errors;
latency) is set by the scenario, requests are routed by the deployment's live split, recorded by the real request
log, labelled through the real store, and the real rollout controller ticks on the virtual clock."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from mlpilot.app import Platform, build_platform
from mlpilot.clock import VirtualClock
from mlpilot.records import Rollout, RolloutPhase
from mlpilot.serving.dataplane import InferenceRecord
from mlpilot.settings import Settings
from mlpilot.telemetry.reqlog import RequestLog
from tests.factories import iris_frame

START = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)


class _TailZ(dict):  # type: ignore[type-arg]
    def __missing__(self, share: float) -> float:
        from scipy.stats import norm

        self[share] = z = float(norm.ppf(1 - share))
        return z


_TAIL_Z = _TailZ()


@dataclass
class Arm:
    """How a variant behaves: accuracy (``segment_accuracy`` overrides it for rows with ``region == key``),
    error rate, and latency (lognormal body; ``tail`` multiplies the slowest ``tail_share`` of requests)."""

    accuracy: float = 0.92
    segment_accuracy: dict[str, float] = field(default_factory=dict)
    error_rate: float = 0.001
    latency_ms: float = 20.0
    tail: float = 1.0
    tail_share: float = 0.03


@dataclass
class World:
    platform: Platform
    clock: VirtualClock
    root: Path
    rng: np.random.Generator
    arms: dict[str, Arm] = field(default_factory=dict)
    deployment: str = "iris"
    label_share: float = 1.0
    served: dict[str, int] = field(default_factory=dict)

    def run(self, seconds: float, rps: float = 100.0, tick_s: float = 15.0, until_settled: bool = False) -> None:
        """Serve ``rps`` requests/s for ``seconds`` of virtual time in chunks of ``tick_s``; the controller ticks
        after each chunk (as `mlpilot up` does)."""
        elapsed = 0.0
        while elapsed < seconds - 1e-9:
            dt = min(tick_s, seconds - elapsed)
            self.serve(round(rps * dt), dt)
            self.platform.rollouts.tick()
            elapsed += dt
            if until_settled and not any(r.active for r in self.platform.store.list_rollouts(self.deployment)):
                return

    def serve(self, n: int, dt: float) -> None:
        dep = self.platform.store.get_deployment(self.deployment)
        names = [k for k, w in dep.spec.traffic.items() if w > 0]
        weights = np.array([dep.spec.traffic[k] for k in names], dtype=float)
        t0 = self.clock.now().timestamp()
        chosen = self.rng.choice(len(names), size=n, p=weights / weights.sum())
        regions = self.rng.choice(["eu", "us", "apac"], size=n, p=[0.1, 0.6, 0.3])
        truth = self.rng.integers(0, 3, size=n)
        noise = self.rng.normal(size=n)
        log = RequestLog(self.root)
        log.start()
        labels = []
        for i in range(n):
            ts = t0 + dt * i / max(1, n)
            rid = uuid.uuid4().hex
            variant = names[chosen[i]]
            served = [(variant, False)] + [(s, True) for s in dep.spec.shadows]
            for name, shadow in served:
                arm = self.arms[name]
                self.served[name] = self.served.get(name, 0) + 1
                failed = self.rng.random() < arm.error_rate
                acc = arm.segment_accuracy.get(str(regions[i]), arm.accuracy)
                correct = self.rng.random() < acc
                pred = int(truth[i]) if correct else int((truth[i] + 1 + self.rng.integers(0, 2)) % 3)
                z = self.rng.normal()
                latency = arm.latency_ms / 1000 * np.exp(0.25 * z)
                if z > _TAIL_Z[arm.tail_share]:  # the slowest tail_share of requests get slower
                    latency *= arm.tail
                log.append(
                    InferenceRecord(
                        ts=ts,
                        request_id=rid,
                        deployment=self.deployment,
                        variant=name,
                        model=name,
                        status="error" if failed else "ok",
                        error="InferenceError" if failed else None,
                        latency_s=float(latency),
                        shadow=shadow,
                        inputs={"x": np.array([float(truth[i]) + noise[i]]), "region": np.array([str(regions[i])])},
                        outputs=None if failed else {"predict": np.array([pred])},
                    )
                )
            if self.rng.random() < self.label_share:
                labels.append(
                    {
                        "request_id": rid,
                        "row": 0,
                        "kind": "label",
                        "value": int(truth[i]),
                        "ts": datetime.fromtimestamp(ts, timezone.utc),
                    }
                )
        log.stop()
        if labels:
            self.platform.store.put_feedback(self.deployment, labels, "labeller")
        self.clock.advance(dt)

    def rollout(self) -> Rollout:
        return self.platform.rollouts.current(self.deployment)

    def phases(self, rollout_id: int) -> list[tuple[str, str]]:
        return [
            (e.action.removeprefix("rollout."), (e.after or {}).get("phase", ""))
            for e in self.platform.rollouts.decisions(rollout_id)
        ]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    from sklearn.linear_model import LogisticRegression

    from mlpilot import Client

    X, y = iris_frame()
    home = tmp_path / "home"
    with Client(home=home) as c:
        for C in (1.0, 0.5, 0.25, 0.125):  # iris:1 … iris:4, candidates of the same signature
            c.register_model("iris", LogisticRegression(C=C, max_iter=300).fit(X, y), sample=X.head(3))
    clock = VirtualClock(START)
    platform = build_platform(Settings(home=home), clock=clock)
    platform.deployments.deploy("iris", "iris:1", "tester")
    w = World(platform, clock, platform.settings.log_root(), np.random.default_rng(0))
    w.arms = {"iris-v1": Arm(), "iris-v2": Arm(), "iris-v3": Arm(), "iris-v4": Arm()}
    try:
        yield w
    finally:
        platform.close()


def settled(w: World) -> Rollout:
    r = w.rollout()
    assert not r.active, f"rollout still {r.phase.value}: {r.message}"
    return r


__all__ = ["Arm", "RolloutPhase", "World", "settled"]
