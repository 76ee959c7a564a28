"""Tool specs: names, schemas per draft, tool files, argument checks, python tools, OpenAI conversion."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mlpilot.errors import FailedPrecondition, InvalidArgument, LoadError, MissingExtra
from mlpilot.llm.tools import (
    MAX_TOOL_FILE_BYTES,
    ToolResult,
    ToolRunner,
    ToolSpec,
    call_tool,
    check_arguments,
    from_openai_tool,
    load_tool_file,
    parse_tool,
    to_openai_tool,
    tool_metadata,
    validate_tool_file,
)

HERE = __name__
WEATHER_INPUT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 1},
        "units": {"enum": ["c", "f"]},
        "when": {"type": "string", "format": "date"},
        "location": {
            "type": "object",
            "properties": {"lat": {"type": "number", "minimum": -90, "maximum": 90}, "lon": {"type": "number"}},
            "required": ["lat", "lon"],
        },
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["city"],
    "additionalProperties": False,
}
WEATHER_OUTPUT: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "temp_c": {"type": "number"}},
    "required": ["city", "temp_c"],
}


def make_tool(**overrides: Any) -> dict[str, Any]:
    """A valid tool definition (JSON form); keyword arguments replace its top-level keys (None removes one)."""
    doc: dict[str, Any] = {
        "name": "get_weather",
        "title": "Weather",
        "description": "Current weather for a city.",
        "inputSchema": WEATHER_INPUT,
        "outputSchema": WEATHER_OUTPUT,
        "annotations": {"readOnlyHint": True, "openWorldHint": True},
        "implementation": {"type": "python", "callable": f"{HERE}:get_weather"},
    }
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not None}


def spec_for(target: str, *, output: dict[str, Any] | None = None, **impl: Any) -> ToolSpec:
    """A spec whose python implementation is ``target`` in this module, with an optional outputSchema."""
    return ToolSpec.from_dict(
        make_tool(
            outputSchema=output,
            inputSchema={"type": "object", "properties": {"city": {"type": "string"}}},
            implementation={"type": "python", "callable": f"{HERE}:{target}", **impl},
        )
    )


# -- python tool targets (imported by their "module:function" string) --------------------------------------


def get_weather(city: str, units: str = "c", **_: Any) -> dict[str, Any]:
    return {"city": city, "temp_c": 21.5 if units == "c" else 70.7}


def explode(**_: Any) -> None:
    raise ValueError("no weather station in Atlantis")


def wrong_output(**_: Any) -> dict[str, Any]:
    return {"city": "Oslo", "temp_c": "warm"}


def list_output(**_: Any) -> list[int]:
    return [1, 2, 3]


def text_output(city: str = "?") -> str:
    return f"sunny in {city}"


def nothing(**_: Any) -> None:
    return None


def not_json(**_: Any) -> set[int]:
    return {1, 2}


async def async_weather(city: str = "Rome") -> dict[str, Any]:
    return {"city": city, "temp_c": 30.0}


RELEASE = threading.Event()


def blocked(**_: Any) -> str:
    RELEASE.wait(10)
    return "late"


NOT_A_FUNCTION = 42


class Station:
    @staticmethod
    def read(city: str = "Bergen") -> dict[str, Any]:
        return {"city": city, "temp_c": 9.0}


# ------------------------------------------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["get_weather", "a", "x" * 128, "ns.tool-v2", "_private", "A1", "1st"])
def test_valid_tool_names(name: str) -> None:
    assert ToolSpec.from_dict(make_tool(name=name)).name == name


@pytest.mark.parametrize(
    "name",
    ["", "x" * 129, "a b", "a,b", "a/b", "caf\u00e9", "a:b", "tab\t"],
    ids=["empty", "129-chars", "space", "comma", "slash", "non-ascii", "colon", "tab"],
)
def test_invalid_tool_names(name: str) -> None:
    with pytest.raises(InvalidArgument, match=r"^tool: name must be 1-128 letters"):
        ToolSpec.from_dict(make_tool(name=name))


# ----------------------------------------------------------------------------------------------- schemas


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object"},
        {"type": "object", "properties": {"xs": {"type": "array", "prefixItems": [{"type": "integer"}]}}},
        {"type": "object", "$defs": {"u": {"enum": ["c", "f"]}}, "properties": {"u": {"$ref": "#/$defs/u"}}},
        {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object"},
        {"$schema": "https://json-schema.org/draft/2019-09/schema", "type": "object", "dependentRequired": {}},
        {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "definitions": {}},
        {"$schema": "http://json-schema.org/draft-06/schema#", "type": "object", "propertyNames": {"maxLength": 3}},
        {
            "$schema": "http://json-schema.org/draft-04/schema#",
            "type": "object",
            "properties": {"n": {"type": "number", "minimum": 0, "exclusiveMinimum": True}},
        },
    ],
    ids=[
        "minimal",
        "2020-12-prefixItems",
        "local-ref",
        "2020-12-explicit",
        "2019-09",
        "draft-07",
        "draft-06",
        "draft-04",
    ],
)
def test_valid_schemas(schema: dict[str, Any]) -> None:
    spec = ToolSpec.from_dict(make_tool(inputSchema=schema, outputSchema=schema))
    assert spec.input_schema == schema and spec.output_schema == schema


@pytest.mark.parametrize(
    "schema,needle",
    [
        ({"type": "array"}, 'inputSchema.type must be "object" (got "array")'),
        ({"properties": {}}, 'inputSchema.type must be "object" (got null)'),
        ({"type": ["object"]}, 'inputSchema.type must be "object"'),
        (
            {"type": "object", "properties": {"city": {"type": "strin"}}},
            "inputSchema.properties.city.type: 'strin' is not valid under any of the given schemas "
            "(JSON Schema draft 2020-12)",
        ),
        ({"type": "object", "required": "city"}, "inputSchema.required: 'city' is not of type 'array'"),
        ({"type": "object", "properties": {"s": {"minLength": -1}}}, "inputSchema.properties.s.minLength: -1"),
        (
            {
                "$schema": "http://json-schema.org/draft-04/schema#",
                "type": "object",
                "properties": {"n": {"exclusiveMinimum": 3}},
            },
            "inputSchema.properties.n.exclusiveMinimum: 3 is not of type 'boolean' (JSON Schema draft-04)",
        ),
        (
            {"$schema": "https://example.com/my-dialect", "type": "object"},
            "inputSchema.$schema: unknown JSON Schema dialect 'https://example.com/my-dialect'",
        ),
        ({"$schema": 7, "type": "object"}, "inputSchema.$schema must be a string"),
        ("not a schema", "inputSchema must be a JSON object"),
    ],
    ids=[
        "type-array",
        "type-missing",
        "type-list",
        "bad-type-name",
        "required-not-list",
        "negative-minLength",
        "draft-04-exclusiveMinimum",
        "unknown-dialect",
        "dialect-not-string",
        "not-an-object",
    ],
)
def test_invalid_input_schemas(schema: Any, needle: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        ToolSpec.from_dict(make_tool(inputSchema=schema), source="tool.json")
    assert info.value.message.startswith("tool.json: ")
    assert needle in info.value.message


def test_output_schema_is_checked_like_the_input_schema() -> None:
    with pytest.raises(InvalidArgument, match=r'^tool: outputSchema\.type must be "object" \(got "string"\)$'):
        ToolSpec.from_dict(make_tool(outputSchema={"type": "string"}))


# -------------------------------------------------------------------------------------------- other fields


@pytest.mark.parametrize(
    "overrides,needle",
    [
        ({"description": None}, "description is required"),
        ({"description": "  "}, "description must say what the tool does"),
        ({"inputSchema": None}, "inputSchema is required"),
        ({"outputschema": {"type": "object"}}, "unknown field outputschema"),
        ({"annotations": {"readOnlyHint": "maybe"}}, "annotations.readOnlyHint must be true or false"),
        ({"annotations": {"readonly": True}}, "unknown field annotations.readonly"),
        ({"implementation": {"type": "grpc"}}, 'implementation.type must be "python" or "http", got "grpc"'),
        ({"implementation": {"callable": "m:f"}}, 'implementation.type is required: "python" or "http"'),
        ({"implementation": {"type": "python"}}, "implementation.callable is required"),
        ({"implementation": {"type": "http", "url": "ftp://x"}}, "implementation.url must be an http:// or https://"),
        (
            {"implementation": {"type": "http", "url": "http://h/x", "method": "DELETE"}},
            "implementation.method must be 'POST', 'PUT', 'PATCH' or 'GET'",
        ),
        (
            {"implementation": {"type": "http", "url": "http://h/x", "timeout_s": 0}},
            "implementation.timeout_s: Input should be greater than 0",
        ),
        (
            {"implementation": {"type": "http", "url": "http://h/x", "headers": {"k": 1}}},
            "implementation.headers.k must be a string",
        ),
    ],
    ids=[
        "no-description",
        "blank-description",
        "no-input-schema",
        "misspelt-field",
        "annotation-not-bool",
        "unknown-annotation",
        "unknown-implementation",
        "implementation-without-type",
        "python-without-callable",
        "bad-url",
        "bad-method",
        "zero-timeout",
        "header-not-string",
    ],
)
def test_invalid_fields_name_the_field(overrides: dict[str, Any], needle: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        ToolSpec.from_dict(make_tool(**overrides), source="tool.json")
    assert info.value.message.startswith("tool.json: ")
    assert needle in info.value.message
    assert info.value.detail["source"] == "tool.json"


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(InvalidArgument) as info:
        ToolSpec.from_dict({"name": "a b", "inputSchema": {"type": "array"}, "extra": 1})
    assert len(info.value.detail["errors"]) == 4
    for needle in ("name must be", "description is required", "inputSchema.type", "unknown field extra"):
        assert needle in info.value.message


@pytest.mark.parametrize(
    "target",
    [
        "os.system",
        "os:system",
        "builtins:__import__",
        "builtins:eval",
        "subprocess:run",
        "os.path:join",
        "importlib:import_module",
        "pkg.mod:__class__",
        "__main__:main",
        "pkg.mod:Obj.__init__",
        "a:b:c",
        "a.:b",
        "1mod:f",
        "mod:f()",
        "mod: f",
        "mod:",
        ":f",
        "",
    ],
)
def test_forbidden_or_malformed_callables_are_rejected(target: str) -> None:
    with pytest.raises(InvalidArgument, match=r"implementation\.callable must"):
        ToolSpec.from_dict(make_tool(implementation={"type": "python", "callable": target}))


def test_method_is_case_insensitive_and_http_defaults() -> None:
    spec = ToolSpec.from_dict(make_tool(implementation={"type": "http", "url": "https://h/x", "method": "put"}))
    assert spec.implementation is not None and spec.implementation.type == "http"
    assert spec.implementation.method == "PUT"
    assert spec.implementation.timeout_s == 10.0 and spec.implementation.headers == {}


def test_serialisation_uses_mcp_keys_and_round_trips() -> None:
    doc = make_tool()
    spec = ToolSpec.from_dict(doc)
    assert spec.to_dict() == doc
    assert ToolSpec.from_dict(spec.to_dict()) == spec
    mcp = spec.to_mcp()
    assert set(mcp) == {"name", "title", "description", "inputSchema", "outputSchema", "annotations"}
    assert mcp["annotations"] == {"readOnlyHint": True, "openWorldHint": True}


def test_direct_construction_takes_python_names() -> None:
    spec = ToolSpec(name="t", description="d", input_schema={"type": "object"})
    assert spec.to_dict() == {"name": "t", "description": "d", "inputSchema": {"type": "object"}}


def test_missing_jsonschema_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jsonschema", None)
    with pytest.raises(MissingExtra, match=r'pip install "mlpilot\[llm\]"'):
        ToolSpec.from_dict(make_tool())


# -------------------------------------------------------------------------------------------------- files


def test_validate_tool_file_returns_registry_metadata(tmp_path: Path) -> None:
    path = tmp_path / "weather.json"
    path.write_text(json.dumps(make_tool()))
    assert validate_tool_file(path) == {
        "tool": {
            "name": "get_weather",
            "implementation": "python",
            "required": ["city"],
            "properties": ["city", "units", "when", "location", "tags"],
            "read_only": True,
        }
    }
    assert load_tool_file(str(path)).name == "get_weather"


def test_metadata_of_a_describe_only_tool() -> None:
    spec = ToolSpec.from_dict(make_tool(implementation=None, annotations=None, inputSchema={"type": "object"}))
    assert tool_metadata(spec) == {
        "tool": {"name": "get_weather", "implementation": None, "required": [], "properties": [], "read_only": False}
    }


@pytest.mark.parametrize(
    "content,needle",
    [
        (b'{"name": "x",\n  "description" "d"}', "tool.json: not valid JSON: Expecting ':' delimiter at line 2 column"),
        (b"\xff\xfe{}", "tool.json: not UTF-8 text"),
        (b"[1, 2]", "tool.json: a tool definition must be a JSON object, got list"),
        (b"", "tool.json: not valid JSON"),
        (json.dumps(make_tool(inputSchema={"type": "array"})).encode(), 'tool.json: inputSchema.type must be "object"'),
    ],
    ids=["syntax", "not-utf8", "not-object", "empty", "invalid-tool"],
)
def test_bad_tool_files_name_the_file(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "tool.json"
    path.write_bytes(content)
    with pytest.raises(InvalidArgument) as info:
        validate_tool_file(path)
    assert needle in info.value.message


def test_tool_file_size_limit(tmp_path: Path) -> None:
    doc = make_tool(description="x" * MAX_TOOL_FILE_BYTES)
    path = tmp_path / "big.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(InvalidArgument, match=r"^big\.json: \d+ bytes is too large; a tool file is at most 262144"):
        validate_tool_file(path)
    with pytest.raises(InvalidArgument, match="too large"):
        parse_tool(json.dumps(doc))


def test_missing_tool_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match=r"^nope\.json: cannot read the tool file"):
        validate_tool_file(tmp_path / "nope.json")


# ---------------------------------------------------------------------------------------------- arguments

WEATHER = ToolSpec.from_dict(make_tool())


@pytest.mark.parametrize(
    "arguments",
    [
        {"city": "Oslo"},
        {"city": "Oslo", "units": "f", "when": "2024-02-29", "tags": ["a"], "location": {"lat": 59.9, "lon": 10.7}},
    ],
    ids=["required-only", "everything"],
)
def test_valid_arguments_pass(arguments: dict[str, Any]) -> None:
    check_arguments(WEATHER, arguments)


@pytest.mark.parametrize(
    "arguments,expected",
    [
        ({}, "tool 'get_weather': arguments.city is a required property"),
        ({"city": 42}, "tool 'get_weather': arguments.city: 42 is not of type 'string'"),
        ({"city": ""}, "tool 'get_weather': arguments.city: '' should be non-empty"),
        ({"city": "Oslo", "units": "k"}, "tool 'get_weather': arguments.units: 'k' is not one of ['c', 'f']"),
        (
            {"city": "Oslo", "location": {"lat": 91}},
            "tool 'get_weather': arguments.location.lat: 91 is greater than the maximum of 90; "
            "arguments.location.lon is a required property",
        ),
        ({"city": "Oslo", "tags": ["a", 2]}, "tool 'get_weather': arguments.tags[1]: 2 is not of type 'string'"),
        ({"city": "Oslo", "when": "yesterday"}, "tool 'get_weather': arguments.when: 'yesterday' is not a 'date'"),
        (
            {"city": "Oslo", "country": "NO"},
            "tool 'get_weather': arguments: Additional properties are not allowed ('country' was unexpected)",
        ),
    ],
    ids=["missing-required", "wrong-type", "too-short", "enum", "nested", "array-item", "format", "additional"],
)
def test_argument_errors(arguments: dict[str, Any], expected: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        check_arguments(WEATHER, arguments)
    assert info.value.message == expected
    assert info.value.detail["tool"] == "get_weather"


def test_argument_errors_list_every_violation_up_to_ten() -> None:
    schema = {"type": "object", "properties": {f"p{i:02d}": {"type": "integer"} for i in range(13)}}
    spec = ToolSpec.from_dict(make_tool(inputSchema=schema))
    with pytest.raises(InvalidArgument) as info:
        check_arguments(spec, {f"p{i:02d}": "x" for i in range(13)})
    assert info.value.message.count("is not of type 'integer'") == 10
    assert info.value.message.endswith("; … and 3 more")
    assert len(info.value.detail["violations"]) == 13
    assert info.value.detail["violations"][0] == {"path": "arguments.p00", "message": "'x' is not of type 'integer'"}


def test_odd_keys_are_quoted_in_paths() -> None:
    spec = ToolSpec.from_dict(make_tool(inputSchema={"type": "object", "properties": {"a b": {"type": "string"}}}))
    with pytest.raises(InvalidArgument, match=r'arguments\["a b"\]: 1 is not of type'):
        check_arguments(spec, {"a b": 1})


@pytest.mark.parametrize("arguments", [[1], "city=Oslo", None], ids=["list", "string", "none"])
def test_arguments_must_be_an_object(arguments: Any) -> None:
    with pytest.raises(InvalidArgument, match=r"^tool 'get_weather': arguments must be a JSON object, got "):
        check_arguments(WEATHER, arguments)


def test_unresolvable_ref_is_reported_at_call() -> None:
    schema = {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}
    spec = ToolSpec.from_dict(make_tool(inputSchema=schema))
    with pytest.raises(InvalidArgument, match=r"inputSchema has a \$ref that cannot be resolved"):
        check_arguments(spec, {"a": 1})


# ------------------------------------------------------------------------------------------- python tools


def test_python_tool_returns_structured_content() -> None:
    result = call_tool(WEATHER, {"city": "Oslo"})
    assert result.is_error is False and result.error_kind is None
    assert result.structured_content == {"city": "Oslo", "temp_c": 21.5}
    assert json.loads(result.text) == {"city": "Oslo", "temp_c": 21.5}
    assert result.duration_s > 0
    assert result.to_mcp() == {
        "content": [{"type": "text", "text": '{"city": "Oslo", "temp_c": 21.5}'}],
        "structuredContent": {"city": "Oslo", "temp_c": 21.5},
        "isError": False,
    }


@pytest.mark.parametrize(
    "target,output,kind,needle",
    [
        ("explode", None, "exception", "tool 'get_weather' failed: ValueError: no weather station in Atlantis"),
        ("wrong_output", WEATHER_OUTPUT, "bad_output", "output.temp_c: 'warm' is not of type 'number'"),
        ("list_output", WEATHER_OUTPUT, "bad_output", "returned list; outputSchema expects a JSON object"),
        ("nothing", WEATHER_OUTPUT, "bad_output", "returned NoneType; outputSchema expects a JSON object"),
        ("not_json", None, "bad_output", "returned a value that is not JSON"),
        ("text_output", None, "exception", "TypeError"),
    ],
    ids=["raises", "output-violation", "output-not-object", "output-none", "not-json", "unexpected-argument"],
)
def test_python_tool_failures_are_error_results(target: str, output: Any, kind: str, needle: str) -> None:
    spec = spec_for(target, output=output)
    arguments = {"city": "Oslo", "extra": 1} if target == "text_output" else {"city": "Oslo"}
    result = call_tool(spec, arguments)
    assert result.is_error is True
    assert result.error_kind == kind
    assert needle in result.text
    assert result.structured_content is None
    assert result.to_mcp()["isError"] is True


@pytest.mark.parametrize(
    "target,expected_text",
    [
        ("text_output", "sunny in Oslo"),
        ("get_weather", '{"city": "Oslo", "temp_c": 21.5}'),
        ("async_weather", '{"city": "Oslo", "temp_c": 30.0}'),
        ("Station.read", '{"city": "Oslo", "temp_c": 9.0}'),
    ],
    ids=["string", "dict-without-output-schema", "coroutine-function", "static-method"],
)
def test_python_tool_return_values(target: str, expected_text: str) -> None:
    result = call_tool(spec_for(target), {"city": "Oslo"})
    assert not result.is_error, result.text
    assert result.content == [{"type": "text", "text": expected_text}]
    assert result.structured_content is None  # only with an outputSchema


def test_coroutine_tool_with_output_schema_is_structured() -> None:
    result = call_tool(spec_for("async_weather", output=WEATHER_OUTPUT), {"city": "Oslo"})
    assert result.structured_content == {"city": "Oslo", "temp_c": 30.0}


def test_python_tool_returning_none_has_no_content() -> None:
    result = call_tool(spec_for("nothing"), {})
    assert result.content == [] and result.is_error is False and result.text == ""


def test_python_tool_timeout() -> None:
    RELEASE.clear()
    try:
        start = time.perf_counter()
        result = call_tool(spec_for("blocked"), {}, timeout_s=0.2)
        elapsed = time.perf_counter() - start
    finally:
        RELEASE.set()
    assert result.is_error and result.error_kind == "timeout"
    assert "timed out after 0.2 s" in result.text
    assert 0.2 <= result.duration_s < 2 and elapsed < 2


def test_python_tool_default_timeout_comes_from_the_file() -> None:
    RELEASE.clear()
    try:
        result = call_tool(spec_for("blocked", timeout_s=0.1), {})
    finally:
        RELEASE.set()
    assert result.error_kind == "timeout" and "timed out after 0.1 s" in result.text


def test_python_tool_within_its_timeout_succeeds() -> None:
    result = call_tool(spec_for("get_weather"), {"city": "Oslo"}, timeout_s=5)
    assert not result.is_error and '"temp_c": 21.5' in result.text


@pytest.mark.parametrize(
    "target,needle",
    [
        ("mlpilot_no_such_module_xyz:run", "cannot import module 'mlpilot_no_such_module_xyz'"),
        (f"{HERE}:no_such_function", f"'{HERE}:no_such_function' does not exist ('no_such_function' not found)"),
        (f"{HERE}:NOT_A_FUNCTION", "is a int, not a function"),
    ],
    ids=["module", "attribute", "not-callable"],
)
def test_non_importable_callables_fail_to_load(target: str, needle: str) -> None:
    spec = ToolSpec.from_dict(make_tool(implementation={"type": "python", "callable": target}))
    with pytest.raises(LoadError) as info:
        ToolRunner(spec)
    assert needle in info.value.message
    with pytest.raises(LoadError):
        call_tool(spec, {"city": "Oslo"})


def test_a_tool_without_implementation_cannot_be_called() -> None:
    spec = ToolSpec.from_dict(make_tool(implementation=None))
    with pytest.raises(FailedPrecondition, match="has no implementation: it can be described to a model but not"):
        call_tool(spec, {"city": "Oslo"})


def test_bad_arguments_raise_before_the_tool_runs() -> None:
    with pytest.raises(InvalidArgument, match=r"arguments\.city is a required property"):
        call_tool(spec_for("explode", output=None).model_copy(update={"input_schema": WEATHER_INPUT}), {})


@pytest.mark.parametrize("timeout_s", [0, -1.0])
def test_timeout_must_be_positive(timeout_s: float) -> None:
    with pytest.raises(InvalidArgument, match="timeout_s must be > 0"):
        call_tool(WEATHER, {"city": "Oslo"}, timeout_s=timeout_s)


def test_runner_is_reusable() -> None:
    with ToolRunner(WEATHER) as runner:
        results = [runner.call({"city": c}) for c in ("Oslo", "Rome")]
    assert [r.structured_content["city"] for r in results if r.structured_content] == ["Oslo", "Rome"]


def test_tool_result_accepts_a_plain_message_and_mcp_keys() -> None:
    result = ToolResult(is_error=True, content="boom")
    assert result.content == [{"type": "text", "text": "boom"}]
    assert ToolResult.model_validate({"isError": True, "content": "boom"}) == result
    assert result.to_mcp() == {"content": [{"type": "text", "text": "boom"}], "isError": True}


# ------------------------------------------------------------------------------------------------- OpenAI

OPENAI_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_to_openai_tool() -> None:
    out = to_openai_tool(WEATHER)
    assert out == {
        "type": "function",
        "function": {"name": "get_weather", "description": "Current weather for a city.", "parameters": WEATHER_INPUT},
    }
    out["function"]["parameters"]["properties"].clear()
    assert WEATHER.input_schema["properties"], "the OpenAI form must be a copy"


def test_openai_round_trip() -> None:
    spec = from_openai_tool(OPENAI_TOOL)
    assert spec.implementation is None
    assert spec.input_schema == OPENAI_TOOL["function"]["parameters"]  # type: ignore[index]
    assert to_openai_tool(spec) == OPENAI_TOOL
    assert from_openai_tool(to_openai_tool(WEATHER)).input_schema == WEATHER.input_schema


@pytest.mark.parametrize(
    "data",
    [
        {"type": "function", "name": "get_weather", "description": "Weather.", "parameters": {"type": "object"}},
        {"name": "get_weather", "description": "Weather.", "parameters": {"type": "object"}, "strict": True},
    ],
    ids=["responses-api-flat", "bare-function"],
)
def test_from_openai_tool_other_forms(data: dict[str, Any]) -> None:
    spec = from_openai_tool(data)
    assert (spec.name, spec.description, spec.input_schema) == ("get_weather", "Weather.", {"type": "object"})


def test_from_openai_tool_without_parameters_takes_no_arguments() -> None:
    spec = from_openai_tool({"type": "function", "function": {"name": "now", "description": "The time."}})
    assert spec.input_schema == {"type": "object", "properties": {}}


@pytest.mark.parametrize(
    "data,needle",
    [
        ({"type": "web_search"}, "only function tools convert, got type 'web_search'"),
        ({"type": "function", "function": {"name": "f"}}, "function.description is required"),
        ({"type": "function", "function": "f"}, "function must be a JSON object"),
        (
            {"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "array"}}},
            "OpenAI tool 'f': inputSchema.type must be \"object\"",
        ),
        (
            {"type": "function", "function": {"name": "a b", "description": "d"}},
            "OpenAI tool 'a b': name must be",
        ),
    ],
    ids=["not-function", "no-description", "function-not-object", "parameters-not-object", "bad-name"],
)
def test_from_openai_tool_errors(data: dict[str, Any], needle: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        from_openai_tool(data)
    assert needle in info.value.message


@pytest.mark.parametrize("name", ["ns.get_weather", "x" * 65])
def test_to_openai_tool_rejects_names_openai_rejects(name: str) -> None:
    spec = ToolSpec.from_dict(make_tool(name=name))
    with pytest.raises(InvalidArgument, match="OpenAI function names allow only"):
        to_openai_tool(spec)
