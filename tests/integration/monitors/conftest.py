"""A platform on a virtual clock with a registered iris model, its reference, and a way to log traffic at any time."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlpilot.app import Platform, build_platform
from mlpilot.clock import VirtualClock
from mlpilot.serving.dataplane import InferenceRecord
from mlpilot.settings import Settings
from mlpilot.telemetry.reqlog import RequestLog
from tests.factories import iris_frame

START = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)


@dataclass
class World:
    platform: Platform
    clock: VirtualClock
    model: Any
    X: pd.DataFrame
    y: pd.Series
    ref: str
    root: Path

    def log(
        self,
        frame: pd.DataFrame,
        *,
        minutes: float,
        deployment: str = "iris",
        variant: str = "iris-v1",
        batch: int = 5,
        error_every: int = 0,
        sticky: str | None = None,
        advance: bool = True,
    ) -> list[str]:
        """Log ``frame`` as requests of ``batch`` rows spread evenly over the next ``minutes`` of virtual time
        (the clock moves to the end); every ``error_every``-th request fails. Returns the request ids."""
        log = RequestLog(self.root)
        log.start()
        t0 = self.clock.now().timestamp()
        chunks = [frame.iloc[i : i + batch] for i in range(0, len(frame), batch)]
        step = minutes * 60 / max(1, len(chunks))
        ids = []
        for k, chunk in enumerate(chunks):
            rid = uuid.uuid4().hex
            ids.append(rid)
            failed = error_every and (k + 1) % error_every == 0
            outputs = None
            if not failed:
                outputs = {
                    "predict": np.asarray(self.model.predict(chunk)),
                    "predict_proba": np.asarray(self.model.predict_proba(chunk)),
                }
            log.append(
                InferenceRecord(
                    ts=t0 + k * step,
                    request_id=rid,
                    deployment=deployment,
                    variant=variant,
                    model="iris:1",
                    status="error" if failed else "ok",
                    error="InferenceError" if failed else None,
                    latency_s=0.002,
                    inputs=chunk.reset_index(drop=True),
                    outputs=outputs,
                    sticky_key=sticky,
                )
            )
        log.stop()
        if advance:
            self.clock.advance(minutes * 60)
        return ids


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    from sklearn.linear_model import LogisticRegression

    from mlpilot import Client

    X, y = iris_frame()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(X))
    train, hold = order[:75], order[75:]
    model = LogisticRegression(max_iter=500).fit(X.iloc[train], y.iloc[train])
    home = tmp_path / "home"
    with Client(home=home) as c:
        v = c.register_model("iris", model, sample=X.head(3))
        ref = c.register_dataset("iris-ref", X.iloc[hold].assign(target=y.iloc[hold].values), bind_to=v.ref)
    clock = VirtualClock(START)
    platform = build_platform(Settings(home=home), clock=clock)
    platform.deployments.deploy("iris", "iris:1", "tester")
    try:
        yield World(platform, clock, model, X, y, ref.ref, platform.settings.log_root())
    finally:
        platform.close()


def shifted(X: pd.DataFrame, seed: int, column: str = "petal_width", by: float = 1.5) -> pd.DataFrame:
    return X.sample(frac=1.0, random_state=seed).assign(**{column: lambda d: d[column] + by}).reset_index(drop=True)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)
