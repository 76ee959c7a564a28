"""Feedback through the SDK and CLI: joined to logged predictions, late arrivals, and every bad input."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlpilot import Client, InvalidArgument, NotFound
from tests.factories import iris_frame
from tests.helpers import run_cli


@pytest.fixture
def served(tmp_path: Path):  # type: ignore[no-untyped-def]
    from sklearn.linear_model import LogisticRegression

    X, y = iris_frame()
    with Client(home=tmp_path / "home") as c:
        c.register_model("iris", LogisticRegression(max_iter=300).fit(X, y), sample=X.head(3))
        c.deploy("iris", "iris:1")
        preds = [c.predict("iris", X.iloc[[i]]) for i in range(30)]
        yield c, preds, y.iloc[:30].to_numpy(), tmp_path


def _wait_logged(c: Client, n: int) -> None:
    deadline = time.monotonic() + 10
    while len(c.logs("iris", limit=1000)) < n and time.monotonic() < deadline:
        time.sleep(0.2)


def test_labels_join_to_predictions_and_late_ones_are_marked(served) -> None:  # type: ignore[no-untyped-def]
    c, preds, y, _ = served
    _wait_logged(c, 30)
    first = pd.DataFrame({"request_id": [p.request_id for p in preds[:20]], "label": y[:20]})
    assert c.feedback("iris", first) == 20
    joined = c._platform.feedback.joined("iris")
    assert len(joined) == 30 and joined.has_label.sum() == 20
    assert joined[~joined.has_label].label.isna().all()  # unlabelled: kept and marked, not dropped
    # late arrivals and a corrected label
    late = [{"request_id": p.request_id, "label": int(v)} for p, v in zip(preds[20:], y[20:], strict=True)]
    late.append({"request_id": preds[0].request_id, "label": int(1 - y[0]) if y[0] in (0, 1) else 0})
    assert c.feedback("iris", late) == 11
    joined = c._platform.feedback.joined("iris")
    assert joined.has_label.all()
    relabelled = joined[joined.request_id == preds[0].request_id].label.iloc[0]
    assert relabelled != y[0]
    accuracy = (joined["out.predict"].to_numpy() == joined["label"].astype(int).to_numpy()).mean()
    assert 0.8 < accuracy <= 1.0


def test_bad_feedback_changes_nothing(served) -> None:  # type: ignore[no-untyped-def]
    c, preds, y, _ = served
    _wait_logged(c, 30)
    good = {"request_id": preds[0].request_id, "label": int(y[0])}
    cases = [
        ([good, {"request_id": "no-such-request", "label": 1}], NotFound, "not in the request log"),
        ([{"request_id": preds[1].request_id, "label": "setosa"}], InvalidArgument, "must be a number"),
        ([{"request_id": preds[1].request_id}], InvalidArgument, "exactly one of label, score or reward"),
        ([{"request_id": preds[1].request_id, "score": "high"}], InvalidArgument, "number"),
        ([{"request_id": preds[1].request_id, "label": 1, "row": 5}], NotFound, "not in the request log"),
        ([{"request_id": preds[1].request_id, "label": 1, "ts": 1e20}], InvalidArgument, "epoch seconds out of range"),
        ([{"request_id": preds[1].request_id, "label": 1, "ts": -1e15}], InvalidArgument, "out of range"),
        ([], InvalidArgument, "at least 1"),
    ]
    for items, exc, needle in cases:
        with pytest.raises(exc, match=needle):
            c.feedback("iris", items)
    with pytest.raises(NotFound):
        c.feedback("ghost", [good])
    assert c._platform.store.list_feedback("iris") == []  # nothing stored half-way


def test_feedback_listing_filters_by_request_id(served) -> None:  # type: ignore[no-untyped-def]
    c, preds, y, _ = served
    _wait_logged(c, 30)
    first, second = preds[0].request_id, preds[1].request_id
    items = [
        {"request_id": first, "label": int(y[0])},
        {"request_id": second, "label": int(y[1])},
        {"request_id": second, "score": 0.25},
    ]
    assert c.feedback("iris", items) == 3

    def listed(**params: str) -> list[tuple[str, str]]:
        rows = c._json("GET", "/deployments/iris/feedback", params=params)
        return sorted((r["request_id"], r["kind"]) for r in rows)

    assert listed(request_id=second) == [(second, "label"), (second, "score")]
    assert listed(request_id=second, kind="score") == [(second, "score")]
    assert listed(request_id=first) == [(first, "label")]
    assert listed(request_id="no-such-request") == []
    assert len(listed()) == 3
    spec = c._http.get("/openapi.json").json()
    params = spec["paths"]["/api/v1/deployments/{name}/feedback"]["get"]["parameters"]
    documented = {p["name"]: p.get("description", "") for p in params if p["in"] == "query"}
    assert set(documented) == {"kind", "request_id"} and "request" in documented["request_id"]


def test_cli_bulk_feedback_and_logs(served) -> None:  # type: ignore[no-untyped-def]
    c, preds, y, tmp_path = served
    _wait_logged(c, 30)
    csv = tmp_path / "labels.csv"
    pd.DataFrame({"request_id": [p.request_id for p in preds], "label": y}).to_csv(csv, index=False)
    home = tmp_path / "home"
    r = run_cli("feedback", "iris", "--file", str(csv), home=home)
    assert "stored 30" in r.stdout
    r = run_cli("feedback", "iris", "--request-id", "nope", "--label", "1", home=home, check=False)
    assert r.returncode == 1 and "not in the request log" in r.stderr
    out = run_cli("logs", "iris", "--limit", "5", "--json", home=home).stdout
    import json

    rows = json.loads(out)
    assert len(rows) == 5 and {"request_id", "variant", "out.predict"} <= set(rows[0])
    assert np.isfinite(rows[0]["latency_s"])
