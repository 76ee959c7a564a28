"""Drift of live traffic against the bound reference dataset, through the SDK and the CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mlpilot import Client, FailedPrecondition, InvalidArgument
from tests.factories import iris_frame
from tests.helpers import run_cli


def _send(c: Client, df, n: int) -> None:  # type: ignore[no-untyped-def]
    for i in range(0, n, 10):
        c.predict("iris", df.iloc[i : i + 10])


def _wait(c: Client, rows: int) -> None:
    deadline = time.monotonic() + 10
    while len(c.logs("iris", limit=100_000)) < rows and time.monotonic() < deadline:
        time.sleep(0.2)


def test_drift_found_on_the_shifted_feature_only(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    X, y = iris_frame()
    home = tmp_path / "home"
    with Client(home=home) as c:
        v = c.register_model("iris", LogisticRegression(max_iter=300).fit(X, y), sample=X.head(3))
        c.deploy("iris", v.ref)
        with pytest.raises(FailedPrecondition, match="no reference dataset"):
            _send(c, X, 10)
            _wait(c, 10)
            c.drift("iris", since="2000-01-01T00:00:00+00:00")
        c.register_dataset("iris-ref", X, bind_to=v.ref)
        start = time.time()
        _send(c, X.sample(frac=1.0, random_state=0), 150)
        _wait(c, 160)
        same = c.drift("iris", since=_iso(start))
        assert same["result"]["is_drift"] is False and same["current_rows"] == 150
        shifted = X.sample(frac=1.0, random_state=1).assign(petal_width=lambda d: d.petal_width + 1.5)
        start2 = time.time()
        _send(c, shifted, 150)
        _wait(c, 310)
        report = c.drift("iris", since=_iso(start2))
        drifted = {f["feature"] for f in report["result"]["features"] if f["is_drift"]}
        assert drifted == {"petal_width"}
        with pytest.raises(InvalidArgument, match="no logged predictions"):
            c.drift("iris", since="2099-01-01T00:00:00+00:00")
    out = run_cli("drift", "iris", "--since", "1d", "--json", home=home)
    assert json.loads(out.stdout)["current_rows"] == 310
    html = tmp_path / "drift.html"
    text = run_cli("drift", "iris", "--since", "1d", "--html", str(html), home=home).stdout
    assert "petal_width" in text and "<table>" in html.read_text()


def _iso(t: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(t - 0.5, timezone.utc).isoformat()
