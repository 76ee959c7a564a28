"""The registry page's endpoints over a real embedded platform: a structured diff of two versions (a model's
signature and metadata, a prompt's text, an app's spec) and the lineage of every version in both directions; an
unknown artifact, version or alias, or a malformed one, gets a 4xx that names it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mlpilot import Client, demo_llm
from mlpilot.api.scopes import SCOPE_KEY
from mlpilot.app import build_api, build_platform
from mlpilot.settings import Settings
from tests.factories import iris_frame

TOOL = Path(demo_llm.__file__).parent / "data" / "order-status.json"  # a real tool file, shipped with the tour
GENERATOR = {"name": "llm", "base_url": "http://127.0.0.1:9/v1", "model": "big"}  # never called here
DIFF = "/api/v1/ui/artifacts/{name}/diff"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from sklearn.linear_model import LogisticRegression

    home = tmp_path_factory.mktemp("ui-registry") / "home"
    X, y = iris_frame()
    narrow = X.drop(columns=["sepal_width"])
    with Client(home=home, actor="tester") as c:
        c.register_model(
            "iris",
            LogisticRegression(max_iter=300).fit(X, y),
            sample=X.head(3),
            metadata={"accuracy": 0.9, "owner": "ada"},
        )
        c.register_model(
            "iris",
            LogisticRegression(max_iter=300).fit(narrow, y),
            sample=narrow.head(3),
            metadata={"accuracy": 0.95, "owner": "ada", "notes": "fewer features"},
        )
        c.register_dataset("iris-ref", X.assign(target=y), bind_to="iris:1")
        c.set_alias("iris", "champion", 1)
        c.deploy("iris", "iris@champion", variant="stable")
        c.register_prompt("greet", {"template": "Hello {{name}}.\nHave a nice day."})
        c.register_prompt("greet", {"template": "Hello {{name}}!\nHave a nice day.", "config": {"temperature": 0}})
        c.set_alias("greet", "prod", 2)
        c.register_tool("order-status", TOOL)
        for prompt in ("greet:1", "greet@prod"):
            c.register_app("bot", {"prompt": prompt, "tools": ["order-status:1"], "generator": GENERATOR})
    p = build_platform(Settings(home=home))
    app = build_api(p)
    try:
        with TestClient(app) as client:
            yield client
    finally:
        p.close()


def _get(api: TestClient, path: str, status: int = 200, **params: Any) -> Any:
    r = api.get(path, params=params)
    assert r.status_code == status, r.text
    return r.json()


def _row(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return next(r for r in rows if r["key"] == key)


def test_model_diff_shows_the_signature_change_and_metadata_side_by_side(api: TestClient) -> None:
    d = _get(api, DIFF.format(name="iris"), a="champion", b="latest")
    assert (d["kind"], d["a"]["ref"], d["b"]["ref"]) == ("model", "iris:1", "iris:2")
    assert d["a"]["aliases"] == ["champion"]
    inputs = d["signature"]["inputs"]
    assert [t["name"] for t in inputs["removed"]] == ["sepal_width"]
    assert inputs["added"] == [] and inputs["changed"] == [] and inputs["unchanged"] == 3
    assert d["signature"]["outputs"]["unchanged"] >= 1 and not d["signature"]["outputs"]["removed"]
    assert _row(d["metadata"], "accuracy") == {"key": "accuracy", "a": 0.9, "b": 0.95, "status": "changed"}
    assert _row(d["metadata"], "owner")["status"] == "same"
    assert _row(d["metadata"], "notes") == {"key": "notes", "a": None, "b": "fewer features", "status": "added"}
    assert _row(d["fields"], "binding reference") == {
        "key": "binding reference",
        "a": "iris-ref:1",
        "b": None,
        "status": "removed",
    }
    assert _row(d["fields"], "digest")["status"] == "changed" and d["text"] is None
    same = _get(api, DIFF.format(name="iris"), a="2", b="2")
    assert all(r["status"] == "same" for r in same["metadata"] + same["fields"])
    assert same["signature"]["inputs"]["removed"] == []


def test_prompt_and_app_diffs_carry_their_text_as_lines(api: TestClient) -> None:
    d = _get(api, DIFF.format(name="greet"), a="1", b="prod")
    assert d["kind"] == "prompt" and d["signature"] is None
    a, b = d["text"]["a"], d["text"]["b"]
    assert "Hello {{name}}." in a and "Hello {{name}}!" in b and "Have a nice day." in a and "Have a nice day." in b
    assert "temperature: 0" in b and "temperature: 0" not in a
    assert _row(d["metadata"], "prompt.variables")["a"] == ["name"]
    app = _get(api, DIFF.format(name="bot"), a="1", b="2")
    assert _row(app["metadata"], "app.prompt") == {
        "key": "app.prompt",
        "a": "greet:1",
        "b": "greet@prod",
        "status": "changed",
    }
    assert any('"prompt": "greet@prod"' in line for line in app["text"]["b"])
    tool = _get(api, DIFF.format(name="order-status"), a="1", b="1")
    assert any('"name": "order_status"' in line for line in tool["text"]["a"])


def test_lineage_in_both_directions_with_references_resolved(api: TestClient) -> None:
    model = _get(api, "/api/v1/ui/artifacts/iris/lineage")
    v1, v2 = model["versions"]
    assert v1["uses"] == [{"role": "reference", "ref": "iris-ref:1", "resolved": "iris-ref:1", "kind": "dataset"}]
    assert v2["uses"] == [] and v2["served_by"] == []
    [served] = v1["served_by"]
    assert (served["deployment"], served["variant"], served["weight"], served["shadow"]) == (
        "iris",
        "stable",
        100,
        False,
    )
    ref = _get(api, "/api/v1/ui/artifacts/iris-ref/lineage")
    assert ref["kind"] == "dataset"
    assert ref["versions"][0]["used_by"] == [{"role": "reference", "ref": "iris:1", "kind": "model"}]
    bot = _get(api, "/api/v1/ui/artifacts/bot/lineage")["versions"]
    assert {(u["role"], u["ref"], u["resolved"]) for u in bot[1]["uses"]} == {
        ("prompt", "greet@prod", "greet:2"),
        ("tool", "order-status:1", "order-status:1"),
    }
    greet = {v["ref"]: v["used_by"] for v in _get(api, "/api/v1/ui/artifacts/greet/lineage")["versions"]}
    assert greet == {
        "greet:1": [{"role": "prompt", "ref": "bot:1", "kind": "app"}],
        "greet:2": [{"role": "prompt", "ref": "bot:2", "kind": "app"}],
    }


@pytest.mark.parametrize(
    ("name", "params", "status", "message"),
    [
        ("ghost", {"a": "1", "b": "2"}, 404, "no artifact named 'ghost'"),
        ("iris", {"a": "1", "b": "9"}, 404, "b: artifact 'iris' has no version 9"),
        ("iris", {"a": "staging", "b": "1"}, 404, "a: artifact 'iris' has no alias 'staging'"),
        ("iris", {"a": "0", "b": "1"}, 400, "a: versions start at 1"),
        ("iris", {"a": "1", "b": str(2**63)}, 400, "b: versions start at 1 and end at 9223372036854775807"),
        ("iris", {"a": "\u00b2", "b": "1"}, 400, "a: '\u00b2' is neither a version number nor an alias"),
        ("iris", {"a": "1", "b": "v 2!"}, 400, "b: 'v 2!' is neither a version number nor an alias"),
        ("iris", {"a": "1"}, 400, "query.b"),
        ("iris", {"a": "1", "b": ""}, 400, "query.b"),
    ],
)
def test_bad_diff_input_gets_a_4xx_naming_it(
    api: TestClient, name: str, params: dict[str, str], status: int, message: str
) -> None:
    body = _get(api, DIFF.format(name=name), status, **params)
    assert message in body["error"] and body["kind"] == ("not_found" if status == 404 else "invalid_argument")


def test_unknown_artifact_lineage_is_404_and_routes_declare_read_scope(api: TestClient) -> None:
    assert "no artifact named 'ghost'" in _get(api, "/api/v1/ui/artifacts/ghost/lineage", 404)["error"]
    paths = api.app.openapi()["paths"]  # type: ignore[attr-defined]
    for path in ("/api/v1/ui/artifacts/{name}/lineage", DIFF):
        assert paths[path]["get"][SCOPE_KEY] == "read"
        assert paths[path]["get"]["tags"] == ["dashboard"]
