"""The incident loop end to end on a real ``mlpilot up``: real traffic over HTTP, the scheduler's SLO evaluation,
incidents, the RCA engine, an automatic remediation through the actuator, and its verification — visible in the
API (SDK over HTTP) and the CLI.

* a bad candidate: a rollout sends 50% of traffic to a model that fails on large petals → an availability page →
  ``bad_variant`` on the candidate → the rollout is aborted → verified;
* a drifted upstream feature: ``petal_width`` arrives x100 for half of the requests → accuracy (labels sent as feedback)
  pages → ``upstream_rescale`` on ``feature:petal_width`` → rows outside its reference range are quarantined
  (422) → the accuracy of what is served recovers → verified.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlpilot import Client
from mlpilot.errors import MlpilotError
from mlpilot.testing.faulty import FailsAbove
from tests.factories import iris_frame
from tests.helpers import ServerProcess, run_cli

pytestmark = pytest.mark.slow

ENV = {
    "MLPILOT_SERVER__GRPC": "0",
    "MLPILOT_MONITORS__TICK_S": "1",
    "MLPILOT_MONITORS__DEFAULTS_ON_DEPLOY": "false",
    "MLPILOT_ROLLOUTS__TICK_S": "1",
    "MLPILOT_LOGS__FLUSH_INTERVAL_S": "0.2",
    "MLPILOT_INCIDENTS__HEALING_MODE": "auto",
    "MLPILOT_INCIDENTS__MIN_CONFIDENCE": "0.6",
    "MLPILOT_INCIDENTS__VERIFY_AFTER_S": "6",
    "MLPILOT_INCIDENTS__REDIAGNOSE_S": "5",
}
FAST_PAGE = [{"long": "40s", "short": "8s", "burn_rate": 4, "severity": "page"}]


class Traffic:
    """Requests (one row each) from a background thread; ``transform`` may change a row before it is sent; labels
    are sent as feedback right after each answer."""

    def __init__(self, c: Client, X: pd.DataFrame, y: pd.Series, labels: bool = False) -> None:
        self.c, self.X, self.y, self.labels = c, X, y, labels
        self.transform: Callable[[pd.DataFrame, np.random.Generator], pd.DataFrame] = lambda row, rng: row
        self.sent = self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        rng = np.random.default_rng(0)
        pending: list[dict[str, Any]] = []
        while not self._stop.is_set():
            i = int(rng.integers(len(self.X)))
            row = self.transform(self.X.iloc[[i]].copy(), rng)
            try:
                r = self.c.predict("iris", row)
                self.sent += 1
                if self.labels and r.request_id:
                    pending.append({"request_id": r.request_id, "label": int(self.y.iloc[i])})
            except MlpilotError:
                self.failed += 1
            if len(pending) >= 10:
                time.sleep(0.3)  # the request log flushes every 0.2 s: feedback joins logged requests
                with contextlib.suppress(MlpilotError):
                    self.c.feedback("iris", pending)
                pending = []
            time.sleep(0.01)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    s = ServerProcess(tmp_path / "home", extra_env=ENV)
    yield s
    s.stop()


def _wait(what: str, check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = check()
        if out:
            return out
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _serving(c: Client) -> None:
    X, _ = iris_frame()
    _wait("the deployment to serve", lambda: _try(lambda: c.predict("iris", X.head(1))), 60)


def _try(fn: Callable[[], Any]) -> Any:
    try:
        return fn() or True
    except MlpilotError:
        return None


def _mitigated(c: Client, timeout: float = 120) -> tuple[Any, dict[str, Any], list[dict[str, Any]]]:
    def done() -> Any:
        for inc in c.incidents("iris"):
            rems = c.incident_remediations(inc.id)
            if any(r["state"] == "verified" for r in rems):
                return inc.id, rems
        return None

    try:
        inc_id, rems = _wait("a verified remediation", done, timeout)
    except AssertionError:
        state = []
        for inc in c.incidents("iris"):
            d = _try(lambda inc=inc: c.incident_diagnosis(inc.id))
            d = d if isinstance(d, dict) else {}
            state.append(
                {
                    "incident": [inc.id, inc.status.value, inc.severity],
                    "summary": d.get("summary"),
                    "hypotheses": [(h["cause"], h["component"], h["confidence"]) for h in d.get("hypotheses", [])[:4]],
                    "remediations": [
                        (r["state"], r["action"], r.get("decision", {}).get("reason"), r.get("verification"))
                        for r in c.incident_remediations(inc.id)
                    ],
                    "events": [e.action for e in c.incident_timeline(inc.id)][-15:],
                }
            )
        raise AssertionError(
            f"no verified remediation; incidents: {json.dumps(state, indent=1, default=str)}"
        ) from None
    return c.incident(inc_id), c.incident_diagnosis(inc_id), rems


def test_a_bad_candidate_is_diagnosed_and_its_rollout_aborted(server: ServerProcess, tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    X, y = iris_frame()
    good = LogisticRegression(max_iter=500).fit(X, y)
    with Client(server.url) as c:
        c.register_model("iris", good, sample=X.head(3))
        c.deploy("iris", "iris:1", variant="stable")
        c.create_slo(
            "iris",
            "availability",
            {"indicator": "availability", "objective": 0.99, "rules": FAST_PAGE, "min_events": 20},
        )
        _serving(c)
        with Traffic(c, X, y):
            time.sleep(20)  # a baseline
            cut = float(X["petal_length"].quantile(0.6))
            c.register_model("iris", FailsAbove(good, "petal_length", cut), sample=X[X["petal_length"] <= cut].head(3))
            c.start_rollout(
                "iris",
                candidate="iris:2",
                variant="candidate",
                steps=[{"weight": 50, "min_duration": "10m", "min_samples": 0}],
                analyses=[],
            )
            inc, diagnosis, rems = _mitigated(c)
        top = diagnosis["hypotheses"][0]
        assert (top["cause"], top["component"]) == ("bad_variant", "variant:candidate"), diagnosis["summary"]
        refs = {e["ref"] for e in diagnosis["evidence"]}
        assert top["evidence"] and set(top["evidence"]) <= refs  # grounded
        [done] = [r for r in rems if r["state"] == "verified"]
        assert done["action"]["kind"] == "abort_rollout"
        assert done["verification"]["helped"] is True
        assert c.get_deployment("iris").spec.traffic == {"stable": 100}
        assert c.incident(inc.id).status.value == "mitigated"
    shown = run_cli("incidents", "show", str(inc.id), home=tmp_path, url=server.url).stdout
    assert "bad_variant" in shown and "variant:candidate" in shown and "abort_rollout" in shown and "verified" in shown


def test_a_drifted_upstream_feature_is_quarantined(server: ServerProcess, tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    X, y = iris_frame()
    with Client(server.url) as c:
        c.register_model("iris", LogisticRegression(max_iter=500).fit(X, y), sample=X.head(3))
        c.deploy("iris", "iris:1", variant="stable")
        c.create_slo(
            "iris", "accuracy", {"indicator": "accuracy", "objective": 0.95, "rules": FAST_PAGE, "min_events": 20}
        )
        _serving(c)
        with Traffic(c, X, y, labels=True) as traffic:
            time.sleep(25)

            def upstream_bug(row: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
                if rng.uniform() < 0.5:
                    row["petal_width"] = row["petal_width"] * 100  # a unit change upstream, on some sources
                return row

            traffic.transform = upstream_bug
            inc, diagnosis, rems = _mitigated(c, timeout=150)
            assert traffic.failed > 0  # quarantined requests are refused (422)
        top = diagnosis["hypotheses"][0]
        assert (top["cause"], top["component"]) == ("upstream_rescale", "feature:petal_width"), diagnosis["summary"]
        [done] = [r for r in rems if r["state"] == "verified"]
        assert done["action"]["kind"] == "quarantine_inputs"
        rules = c.get_deployment("iris").spec.quarantine
        assert [r.feature for r in rules] == ["petal_width"] and rules[0].high is not None and rules[0].high < 10
    listed = json.loads(run_cli("incidents", "list", "--json", home=tmp_path, url=server.url).stdout)
    assert inc.id in [i["id"] for i in listed]
    shown = run_cli("incidents", "show", str(inc.id), home=tmp_path, url=server.url).stdout
    assert "upstream_rescale" in shown and "quarantine_inputs" in shown
