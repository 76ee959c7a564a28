"""Prompts and tools as registry artifacts: validated on registration (an invalid file creates no version), loaded
digest-verified, rendered and called — through the SDK (embedded) and the CLI (processes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mlpilot import Client
from mlpilot.errors import InvalidArgument, NotFound
from tests.helpers import run_cli

SUPPORT = {
    "type": "chat",
    "description": "support answers",
    "template": [
        {"role": "system", "content": "You support {{product}}. Answer in {{language}}."},
        {"role": "user", "content": "{{question}}"},
    ],
    "config": {"model": "smollm2", "temperature": 0.2, "max_tokens": 128},
    "variables": {"language": {"default": "English"}},
}
SHORTEN = {
    "name": "shorten",
    "description": "Shorten a text to a width.",
    "inputSchema": {
        "type": "object",
        "properties": {"text": {"type": "string"}, "width": {"type": "integer", "minimum": 10}},
        "required": ["text", "width"],
    },
    "annotations": {"readOnlyHint": True},
    "implementation": {"type": "python", "callable": "textwrap:shorten"},
}


def add(a: float, b: float) -> dict[str, float]:
    return {"sum": a + b}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def test_prompts_are_versioned_validated_and_rendered(home: Path) -> None:
    with Client(home=home) as c:
        v1 = c.register_prompt("support", SUPPORT)
        assert v1.ref == "support:1" and v1.kind.value == "prompt"
        assert v1.metadata["prompt"]["variables"] == ["product", "language", "question"]
        assert v1.metadata["prompt"]["config"]["temperature"] == 0.2
        messages = c.render_prompt("support:1", {"product": "mlpilot", "question": "How do I roll back?"})
        assert messages == [
            {"role": "system", "content": "You support mlpilot. Answer in English."},
            {"role": "user", "content": "How do I roll back?"},
        ]
        with pytest.raises(InvalidArgument, match=r"missing value for variable.*question"):
            c.render_prompt("support:1", {"product": "mlpilot"})
        c.set_alias("support", "production", 1)
        v2 = c.register_prompt("support", {**SUPPORT, "config": {**SUPPORT["config"], "temperature": 0.0}})
        assert v2.version == 2 and c.load_prompt("support@production").config["temperature"] == 0.2
        before = len(c.list_versions("support"))
        bad = {**SUPPORT, "template": [{"role": "bot", "content": "hi"}]}
        with pytest.raises(InvalidArgument, match=r"template\[0\]\.role must be one of"):
            c.register_prompt("support", bad)
        assert len(c.list_versions("support")) == before  # nothing registered
        with pytest.raises(InvalidArgument, match="is a prompt, not a tool"):
            c.load_tool("support:1")


def test_tools_are_validated_and_called(home: Path) -> None:
    spec = {
        "name": "add",
        "description": "Add two numbers.",
        "inputSchema": {
            "type": "object",
            "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
            "required": ["a", "b"],
        },
        "outputSchema": {"type": "object", "properties": {"sum": {"type": "number"}}, "required": ["sum"]},
        "implementation": {"type": "python", "callable": f"{__name__}:add"},
    }
    with Client(home=home) as c:
        v = c.register_tool("add", spec)
        assert v.metadata["tool"]["required"] == ["a", "b"] and v.metadata["tool"]["implementation"] == "python"
        result = c.call_tool("add", {"a": 2, "b": 3.5})
        assert not result.is_error and result.structured_content == {"sum": 5.5}
        with pytest.raises(InvalidArgument, match=r"arguments\.b is a required property"):
            c.call_tool("add", {"a": 2})
        with pytest.raises(InvalidArgument, match=r'inputSchema\.type must be "object"'):
            c.register_tool("add", {**spec, "inputSchema": {"type": "array"}})
        assert [x.version for x in c.list_versions("add")] == [1]
        with pytest.raises(NotFound):
            c.load_tool("add:9")


def test_the_cli(home: Path, tmp_path: Path) -> None:
    prompt_file = tmp_path / "support.json"
    prompt_file.write_text(json.dumps(SUPPORT))
    out = run_cli("prompts", "register", "support", str(prompt_file), home=home).stdout
    assert "registered support:1" in out and "product, language, question" in out
    out = run_cli("prompts", "render", "support", "--var", "product=mlpilot", "--var", "question=hi", home=home).stdout
    assert json.loads(out)[0]["content"] == "You support mlpilot. Answer in English."
    v2 = tmp_path / "support-v2.json"
    v2.write_text(json.dumps({**SUPPORT, "description": "shorter answers"}))
    run_cli("prompts", "register", "support", str(v2), home=home)
    diff = run_cli("prompts", "diff", "support:1", "support:2", home=home).stdout
    assert "-" in diff and "shorter answers" in diff
    shown: dict[str, Any] = json.loads(run_cli("prompts", "show", "support:2", home=home).stdout)
    assert shown["description"] == "shorter answers"

    tool_file = tmp_path / "shorten.json"
    tool_file.write_text(json.dumps(SHORTEN))
    assert "registered shorten:1" in run_cli("tools", "register", "shorten", str(tool_file), home=home).stdout
    called = json.loads(
        run_cli(
            "tools", "call", "shorten", "--args", '{"text": "one two three four five six", "width": 14}', home=home
        ).stdout
    )
    assert called["content"][0]["text"] == "one two [...]" and called["isError"] is False
    openai = json.loads(run_cli("tools", "show", "shorten", "--openai", home=home).stdout)
    assert openai["function"]["name"] == "shorten" and openai["function"]["parameters"]["required"] == ["text", "width"]

    bad = run_cli("tools", "call", "shorten", "--args", '{"text": "x", "width": 3}', home=home, check=False)
    assert bad.returncode == 1 and "arguments.width" in bad.stderr and "Traceback" not in bad.stderr
    broken = tmp_path / "broken.json"
    broken.write_text('{"type": "chat", "template": "not a list of messages"')
    result = run_cli("prompts", "register", "support", str(broken), home=home, check=False)
    assert result.returncode == 1 and "broken.json" in result.stderr and "Traceback" not in result.stderr
