"""Prompts as data: placeholder parsing, strict rendering, config and file validation, diffs (table-driven)."""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path
from typing import Any

import pydantic
import pytest

from mlpilot.errors import InvalidArgument
from mlpilot.llm.prompts import (
    MAX_FILE_BYTES,
    MAX_MESSAGES,
    MAX_VARIABLES,
    ChatMessage,
    Prompt,
    diff,
    to_openai_messages,
    validate_prompt_file,
)


def text(template: str, **fields: Any) -> Prompt:
    return Prompt.from_dict({"type": "text", "template": template, **fields})


def chat(*messages: tuple[str, str], **fields: Any) -> Prompt:
    return Prompt.from_dict({"type": "chat", "template": [{"role": r, "content": c} for r, c in messages], **fields})


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------ variable extraction

VARIABLES = [
    pytest.param("Hello {{name}}", ("name",), id="simple"),
    pytest.param("Hello {{ name }}!", ("name",), id="spaces"),
    pytest.param("Hello {{\tname\n}}", ("name",), id="tab-and-newline-inside"),
    pytest.param("{{user.name}} from {{ user.address.city }}", ("user.name", "user.address.city"), id="nested"),
    pytest.param("{{a}} {{b}} {{a}} {{ b }} {{c}}", ("a", "b", "c"), id="repeated-first-use-order"),
    pytest.param("{{z}} then {{a}}", ("z", "a"), id="order-of-use-not-sorted"),
    pytest.param("\\{{literal}} and {{real}}", ("real",), id="escaped-braces"),
    pytest.param("\\{{ not a var }}", (), id="escaped-invalid-inner-is-literal"),
    pytest.param("JSON: {{{x}}}", ("x",), id="triple-braces-are-brace-plus-var"),
    pytest.param('{"a": {{x}}}', ("x",), id="json-object-around-var"),
    pytest.param("{single} braces }} and {% if x %}", (), id="jinja-blocks-and-single-braces-are-text"),
    pytest.param("{{_private1}} {{snake_case_2}} {{A.B_c}}", ("_private1", "snake_case_2", "A.B_c"), id="identifiers"),
    pytest.param("no placeholders at all", (), id="none"),
]


@pytest.mark.parametrize(("template", "expected"), VARIABLES)
def test_variables_of_text_template(template: str, expected: tuple[str, ...]) -> None:
    assert text(template).variables == expected


def test_variables_of_chat_template_in_order_of_first_use_across_messages() -> None:
    p = chat(("system", "You are {{persona}}."), ("user", "{{question}} ({{persona}}, {{lang}})"))
    assert p.variables == ("persona", "question", "lang")
    assert p.messages == 2


BAD_PLACEHOLDERS = [
    pytest.param("Hi {{name", "a '{{' that starts no placeholder at line 1, column 4", id="unclosed"),
    pytest.param("line one\n  {{x", "at line 2, column 3", id="unclosed-position"),
    pytest.param("{{}}", "invalid placeholder '{{}}'", id="empty"),
    pytest.param("{{   }}", "invalid placeholder '{{   }}'", id="blank"),
    pytest.param("{{first name}}", "invalid placeholder '{{first name}}'", id="space-in-name"),
    pytest.param("{{ x | upper }}", "this is not Jinja", id="jinja-filter"),
    pytest.param("{{#each items}}", "invalid placeholder '{{#each items}}'", id="mustache-section"),
    pytest.param("{{ 1st }}", "invalid placeholder", id="leading-digit"),
    pytest.param("{{user.}}", "invalid placeholder '{{user.}}'", id="trailing-dot"),
    pytest.param("{{a..b}}", "invalid placeholder", id="double-dot"),
    pytest.param("{{ x + 1 }}", "filters, expressions", id="expression"),
    pytest.param("{{ items[0] }}", "invalid placeholder", id="indexing"),
    pytest.param("{{ é }}", "invalid placeholder", id="non-ascii-name"),
    pytest.param("{{ a {{ b }}", "starts no placeholder", id="nested-open"),
    pytest.param("{{{{x}}}}", "starts no placeholder", id="quadruple-braces"),
]


@pytest.mark.parametrize(("template", "fragment"), BAD_PLACEHOLDERS)
def test_bad_placeholder_is_rejected_with_position_and_hint(template: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        text(template)
    assert fragment in err.value.message
    assert err.value.message.startswith("prompt: template has ")
    assert "\\{{" in err.value.message  # always says how to write a literal {{


def test_bad_placeholder_in_chat_names_the_message() -> None:
    with pytest.raises(InvalidArgument, match=r"^prompt: template\[1\]\.content has an invalid placeholder"):
        chat(("system", "ok {{a}}"), ("user", "bad {{a b}}"))


# ----------------------------------------------------------------------------------------------------- render

RENDER = [
    pytest.param("Hi {{name}}!", {}, {"name": "Ann"}, "Hi Ann!", id="simple"),
    pytest.param("Hi {{ name }}!", {}, {"name": "Ann"}, "Hi Ann!", id="spaces"),
    pytest.param("{{a}}{{a}}{{ a }}", {}, {"a": "x"}, "xxx", id="repeated"),
    pytest.param("{{user.name}}", {}, {"user": {"name": "Bo"}}, "Bo", id="nested-dict"),
    pytest.param("{{u.a.b}}", {}, {"u": {"a": {"b": 7}}}, "7", id="deeply-nested"),
    pytest.param("{{user.name}}", {}, {"user.name": "flat", "user": {"name": "deep"}}, "flat", id="flat-key-wins"),
    pytest.param("\\{{x}} is {{x}}", {}, {"x": 1}, "{{x}} is 1", id="escape-renders-literal"),
    pytest.param("{{{x}}}", {}, {"x": 1}, "{1}", id="triple-braces"),
    pytest.param("{{x}}", {}, {"x": [1, "é", None]}, '[1, "é", null]', id="list-json"),
    pytest.param("{{x}}", {}, {"x": {"k": [True]}}, '{"k": [true]}', id="dict-json"),
    pytest.param("{{x}} {{y}} {{z}}", {}, {"x": 3, "y": 0.5, "z": True}, "3 0.5 True", id="scalars-str"),
    pytest.param("{{x}}", {}, {"x": None}, "None", id="none-str"),
    pytest.param("{{x}}", {}, {"x": "{{y}}"}, "{{y}}", id="values-not-rescanned"),
    pytest.param("{{x}}", {}, {"x": ""}, "", id="empty-string-is-a-value"),
    pytest.param("a\n{{x}}\nb", {}, {"x": "m"}, "a\nm\nb", id="multiline"),
    pytest.param("{{x}}", {"x": {"default": "d"}}, {}, "d", id="default-used"),
    pytest.param("{{x}}", {"x": {"default": "d"}}, {"x": "v"}, "v", id="default-overridden"),
    pytest.param("{{x}}", {"x": {"default": 0}}, {}, "0", id="falsy-default"),
    pytest.param("{{x}}", {"x": {"default": ["a"]}}, {}, '["a"]', id="list-default-json"),
    pytest.param("{{u.name}}", {"u": {"default": {"name": "Cy"}}}, {}, "Cy", id="default-of-parent"),
    pytest.param("{{u.name}}", {"u.name": {"default": "Di"}}, {"u": {}}, "Di", id="nested-missing-falls-to-default"),
    pytest.param("plain", {}, {"extra": 1}, "plain", id="extra-values-ignored"),
]


@pytest.mark.parametrize(("template", "variables", "values", "expected"), RENDER)
def test_render_text(template: str, variables: dict[str, Any], values: dict[str, Any], expected: str) -> None:
    p = text(template, variables=variables) if variables else text(template)
    assert p.render(values) == expected


def test_render_chat_keeps_roles_and_extra_message_fields() -> None:
    p = Prompt.from_dict(
        {
            "template": [
                {"role": "system", "content": "You are {{persona}}."},
                {"role": "user", "content": "{{q}}", "name": "alice"},
                {"role": "assistant", "content": "Noted: {{q}}"},
                {"role": "tool", "content": "{{result}}", "tool_call_id": "call_1"},
            ],
            "variables": {"persona": {"default": "helpful"}},
        }
    )
    assert p.type == "chat"  # inferred from the list
    assert p.render({"q": "why?", "result": {"ok": 1}}) == [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "why?", "name": "alice"},
        {"role": "assistant", "content": "Noted: why?"},
        {"role": "tool", "content": '{"ok": 1}', "tool_call_id": "call_1"},
    ]


def test_render_without_values_for_a_prompt_without_variables() -> None:
    assert text("static").render() == "static"
    assert chat(("user", "static")).render() == [{"role": "user", "content": "static"}]


MISSING = [
    pytest.param("{{a}} {{b}}", {}, {"a": 1}, "missing value for variable 'b'; the prompt expects: a, b", id="one"),
    pytest.param(
        "{{a}} {{b}} {{c}}",
        {"c": {"default": 1}},
        {},
        "missing value for variables 'a', 'b'; the prompt expects: a, b, c (optional)",
        id="several-and-optional",
    ),
    pytest.param(
        "{{user.name}}", {}, {"user": {"age": 3}}, "missing value for variable 'user.name'", id="nested-key-absent"
    ),
    pytest.param("{{ __import__ }}", {}, {}, "missing value for variable '__import__'", id="no-code-runs"),
]


@pytest.mark.parametrize(("template", "variables", "values", "message"), MISSING)
def test_missing_variable_names_it_and_what_is_expected(
    template: str, variables: dict[str, Any], values: dict[str, Any], message: str
) -> None:
    p = text(template, variables=variables) if variables else text(template)
    with pytest.raises(InvalidArgument) as err:
        p.render(values)
    assert err.value.message.startswith(message)
    assert err.value.detail["expected"] == list(p.variables)


def test_nested_lookup_through_a_non_mapping_is_an_error_not_getattr() -> None:
    class Obj:
        name = "should not be read"

    p = text("{{user.name}}")
    with pytest.raises(InvalidArgument, match=r"the value of 'user' is a Obj, not a mapping, so it has no 'name'"):
        p.render({"user": Obj()})


def test_render_rejects_values_that_are_not_a_mapping() -> None:
    with pytest.raises(InvalidArgument, match="must be a mapping"):
        text("{{x}}").render(["x"])  # type: ignore[arg-type]


def test_required_and_defaults() -> None:
    p = text("{{a}} {{b.c}} {{d}}", variables={"b": {"default": {"c": 1}}, "d": {"default": "x", "description": "D"}})
    assert p.required == ("a",)
    assert p.defaults == {"b": {"c": 1}, "d": "x"}


CHECK_VALUES = [
    pytest.param({"a": 1, "b": 2}, [], id="all-used"),
    pytest.param({"a": 1, "zz": 2, "yy": 3}, ["zz", "yy"], id="extras-in-values-order"),
    pytest.param({"user": {}}, [], id="root-of-nested-is-used"),
    pytest.param({"user.name": "x"}, [], id="flat-dotted-key-is-used"),
    pytest.param({"use": 1, "user.age": 2}, ["use", "user.age"], id="prefix-and-other-leaf-unused"),
    pytest.param({}, [], id="empty"),
]


@pytest.mark.parametrize(("values", "unused"), CHECK_VALUES)
def test_check_values_reports_unused_names(values: dict[str, Any], unused: list[str]) -> None:
    assert text("{{a}} {{b}} {{user.name}}").check_values(values) == unused


# ----------------------------------------------------------------------------------------------------- config

GOOD_CONFIGS = [
    pytest.param({}, {}, id="empty"),
    pytest.param({"model": "gpt-4o-mini"}, {"model": "gpt-4o-mini"}, id="model"),
    pytest.param({"temperature": 0}, {"temperature": 0}, id="temperature-0"),
    pytest.param({"temperature": 2.0}, {"temperature": 2.0}, id="temperature-2"),
    pytest.param({"top_p": 1}, {"top_p": 1}, id="top-p-1"),
    pytest.param({"max_tokens": 1}, {"max_tokens": 1}, id="max-tokens-1"),
    pytest.param({"stop": ("a", "b")}, {"stop": ["a", "b"]}, id="stop-tuple-becomes-list"),
    pytest.param({"stop": []}, {"stop": []}, id="stop-empty"),
    pytest.param(
        {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}},
        {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}},
        id="response-format",
    ),
    pytest.param(
        {"seed": 7, "tools": [{"type": "function"}], "provider": None},
        {"seed": 7, "tools": [{"type": "function"}], "provider": None},
        id="other-keys-kept",
    ),
]


@pytest.mark.parametrize(("config", "expected"), GOOD_CONFIGS)
def test_good_config_is_kept(config: dict[str, Any], expected: dict[str, Any]) -> None:
    assert text("x", config=config).config == expected


BAD_CONFIGS = [
    pytest.param({"model": ""}, "config.model must be a non-empty string, got ''", id="model-empty"),
    pytest.param({"model": 4}, "config.model must be a non-empty string, got 4", id="model-number"),
    pytest.param({"temperature": -0.1}, "config.temperature must be a number from 0 to 2, got -0.1", id="temp-low"),
    pytest.param({"temperature": 2.5}, "config.temperature must be a number from 0 to 2, got 2.5", id="temp-high"),
    pytest.param({"temperature": "0.5"}, "config.temperature must be a number from 0 to 2, got '0.5'", id="temp-str"),
    pytest.param({"temperature": True}, "config.temperature must be a number from 0 to 2, got true", id="temp-bool"),
    pytest.param({"temperature": math.nan}, "config.temperature must be a number from 0 to 2", id="temp-nan"),
    pytest.param({"top_p": 1.5}, "config.top_p must be a number from 0 to 1, got 1.5", id="top-p-high"),
    pytest.param({"top_p": -1}, "config.top_p must be a number from 0 to 1, got -1", id="top-p-negative"),
    pytest.param({"max_tokens": 0}, "config.max_tokens must be an integer >= 1, got 0", id="max-tokens-0"),
    pytest.param({"max_tokens": 1.5}, "config.max_tokens must be an integer >= 1, got 1.5", id="max-tokens-float"),
    pytest.param({"max_tokens": True}, "config.max_tokens must be an integer >= 1, got true", id="max-tokens-bool"),
    pytest.param({"max_tokens": "100"}, "config.max_tokens must be an integer >= 1, got '100'", id="max-tokens-str"),
    pytest.param({"stop": "END"}, "list of non-empty strings, got 'END' (write [\"END\"] for one)", id="stop-str"),
    pytest.param({"stop": [""]}, "config.stop must be a list of non-empty strings, got a list", id="stop-empty-str"),
    pytest.param({"stop": [1]}, "config.stop must be a list of non-empty strings", id="stop-number"),
    pytest.param({"response_format": "json"}, "config.response_format must be an object", id="rf-str"),
    pytest.param({"response_format": {"type": 1}}, "config.response_format.type must be a string", id="rf-type"),
    pytest.param({"seed": date(2026, 1, 1)}, "config.seed must be JSON data", id="extra-not-json"),
    pytest.param({"seed": [math.inf]}, "config.seed[0] must be a finite number", id="extra-infinite"),
    pytest.param({1: "x"}, "config has a non-string key 1", id="non-string-key"),
    pytest.param(["model"], "config must be an object of model parameters, got a list", id="not-an-object"),
]


@pytest.mark.parametrize(("config", "message"), BAD_CONFIGS)
def test_bad_config_field_is_named(config: Any, message: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        text("x", config=config)
    assert err.value.message.startswith("prompt: ")
    assert message in err.value.message


# ------------------------------------------------------------------------------------------- bad documents

MSGS = [{"role": "user", "content": "{{a}}"}]
BAD_DOCUMENTS = [
    pytest.param(["x"], "prompt: a prompt must be an object", id="not-an-object"),
    pytest.param({"template": "x", "templat": "y"}, "prompt: unknown field 'templat'", id="unknown-field"),
    pytest.param({"type": "text"}, "prompt: template is missing", id="missing-template"),
    pytest.param(
        {"type": "completion", "template": "x"}, "type must be one of text, chat, got 'completion'", id="bad-type"
    ),
    pytest.param({"type": "text", "template": MSGS}, "template must be a string for a text prompt", id="text-list"),
    pytest.param({"type": "chat", "template": "x"}, "template must be a list of messages", id="chat-string"),
    pytest.param({"template": 5}, "template must be a string for a text prompt, got 5", id="template-number"),
    pytest.param({"template": ""}, "template must be a non-empty string", id="empty-text"),
    pytest.param({"template": " \n "}, "template must be a non-empty string", id="blank-text"),
    pytest.param({"template": []}, "template must hold at least one message", id="empty-chat"),
    pytest.param({"template": ["hi"]}, "template[0] must be an object like", id="message-not-object"),
    pytest.param(
        {"template": [*MSGS, {"role": "bot", "content": "x"}]},
        "template[1].role must be one of system, user, assistant, tool, got 'bot'",
        id="unknown-role",
    ),
    pytest.param({"template": [{"content": "x"}]}, "template[0].role must be one of", id="missing-role"),
    pytest.param(
        {"template": [{"role": "user"}]}, "template[0].content must be a non-empty string, got nothing", id="no-content"
    ),
    pytest.param(
        {"template": [{"role": "user", "content": [{"type": "text"}]}]},
        "template[0].content must be a non-empty string, got a list",
        id="content-parts",
    ),
    pytest.param({"template": [{"role": "user", "content": ""}]}, "template[0].content must be", id="empty-content"),
    pytest.param(
        {"template": [{"role": "user", "content": "x", "weight": 1}]},
        "template[0] has unknown field 'weight'",
        id="unknown-message-field",
    ),
    pytest.param(
        {"template": [{"role": "user", "content": "x", "name": ""}]}, "template[0].name must be", id="empty-name"
    ),
    pytest.param(
        {"template": [{"role": "user", "content": "x"}] * (MAX_MESSAGES + 1)},
        f"template has {MAX_MESSAGES + 1} messages; the limit is {MAX_MESSAGES}",
        id="too-many-messages",
    ),
    pytest.param(
        {"template": " ".join(f"{{{{v{i}}}}}" for i in range(MAX_VARIABLES + 1))},
        f"the template uses {MAX_VARIABLES + 1} variables; the limit is {MAX_VARIABLES}",
        id="too-many-variables",
    ),
    pytest.param(
        {"template": "{{a}}", "variables": {"b": {}}},
        "variables.b: variable 'b' is declared but the template does not use it (it uses: a)",
        id="declared-unused",
    ),
    pytest.param(
        {"template": "{{a}}", "variables": {"a b": {}}}, "invalid variable name 'a b'", id="declared-bad-name"
    ),
    pytest.param({"template": "{{a}}", "variables": ["a", {"name": "a"}]}, "declared twice", id="declared-twice"),
    pytest.param(
        {"template": "{{a}}", "variables": {"a": {"default": None}}},
        "variables.a.default must not be null",
        id="null-default",
    ),
    pytest.param({"template": "{{a}}", "variables": {"a": {"dflt": 1}}}, "unknown field 'dflt'", id="var-field"),
    pytest.param({"template": "{{a}}", "variables": {"a": "text"}}, "variables.a must be an object", id="var-spec-str"),
    pytest.param({"template": "{{a}}", "variables": "a"}, "variables must be an object keyed", id="variables-str"),
    pytest.param({"template": "{{a}}", "variables": [3]}, "variables[0] must be a name or an object", id="var-item"),
    pytest.param(
        {"template": "{{a}}", "variables": {"a": {"description": 3}}},
        "variables.a.description must be a string",
        id="var-description",
    ),
    pytest.param({"template": "x", "description": ["x"]}, "description must be a string, got a list", id="description"),
    pytest.param({"template": "x", "schema_version": 2}, "schema_version must be 1, got 2", id="schema-version"),
]


@pytest.mark.parametrize(("document", "message"), BAD_DOCUMENTS)
def test_bad_document_is_rejected_naming_the_field(document: Any, message: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        Prompt.from_dict(document)
    assert message in err.value.message
    assert "\n" not in err.value.message


def test_source_names_the_document_in_messages() -> None:
    with pytest.raises(InvalidArgument, match=r"^support\.json: template is missing"):
        Prompt.from_dict({}, source="support.json")


def test_limits_are_inclusive() -> None:
    many = chat(*[("user", "x")] * MAX_MESSAGES)
    assert many.messages == MAX_MESSAGES
    wide = text(" ".join(f"{{{{v{i}}}}}" for i in range(MAX_VARIABLES)))
    assert len(wide.variables) == MAX_VARIABLES


def test_constructor_validates_like_from_dict_and_the_model_is_frozen() -> None:
    p = Prompt(type="text", template="Hi {{x}}", variables=["x"])
    assert p.declared["x"].has_default is False
    with pytest.raises(InvalidArgument, match="template must be a non-empty string"):
        Prompt(type="text", template="")
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        p.template = "changed"  # type: ignore[misc]


def test_chat_messages_may_be_chat_message_records() -> None:
    p = Prompt(type="chat", template=[ChatMessage(role="user", content="{{q}}")])
    assert p.render({"q": "hi"}) == [{"role": "user", "content": "hi"}]


# ------------------------------------------------------------------------------------------------------ files

SUPPORT: dict[str, Any] = {
    "type": "chat",
    "description": "Answers support questions",
    "template": [
        {"role": "system", "content": "You support {{product}}."},
        {"role": "user", "content": "{{ user.name }} asks: {{question}}"},
    ],
    "config": {"model": "gpt-4o-mini", "temperature": 0.2, "max_tokens": 512, "stop": ["\n\n"]},
    "variables": {"product": {"default": "mlpilot", "description": "product name"}},
}

SUPPORT_YAML = """\
type: chat
description: Answers support questions
template:
  - role: system
    content: "You support {{product}}."
  - role: user
    content: "{{ user.name }} asks: {{question}}"
config:
  model: gpt-4o-mini
  temperature: 0.2
  max_tokens: 512
  stop: ["\\n\\n"]
variables:
  product:
    default: mlpilot
    description: product name
"""


def test_validate_prompt_file_returns_registry_metadata(tmp_path: Path) -> None:
    path = write(tmp_path, "support.json", json.dumps(SUPPORT, indent=2))
    assert validate_prompt_file(path) == {
        "prompt": {
            "type": "chat",
            "variables": ["product", "user.name", "question"],
            "config": {"model": "gpt-4o-mini", "temperature": 0.2, "max_tokens": 512, "stop": ["\n\n"]},
            "messages": 2,
        }
    }


def test_validate_text_prompt_file_counts_one_message(tmp_path: Path) -> None:
    path = write(tmp_path, "t.json", '{"type": "text", "template": "Summarise: {{doc}}"}')
    assert validate_prompt_file(str(path)) == {
        "prompt": {"type": "text", "variables": ["doc"], "config": {}, "messages": 1}
    }


@pytest.mark.parametrize("name", ["support.yaml", "support.yml", "SUPPORT.YAML"])
def test_yaml_file_is_the_same_prompt_as_json(tmp_path: Path, name: str) -> None:
    from_yaml = Prompt.from_file(write(tmp_path, name, SUPPORT_YAML))
    from_json = Prompt.from_file(write(tmp_path, "support.json", json.dumps(SUPPORT)))
    assert from_yaml == from_json
    assert from_yaml.render({"user": {"name": "Ann"}, "question": "how?"})[1] == {
        "role": "user",
        "content": "Ann asks: how?",
    }


BAD_FILES = [
    pytest.param("p.json", "{not json", "p.json: not valid JSON: Expecting property name", id="not-json"),
    pytest.param("p.json", '{\n  "template": "x",\n}', "at line 3, column 1", id="json-position"),
    pytest.param("p.json", "", "p.json: not valid JSON", id="empty-file"),
    pytest.param("p.json", '["x"]', "p.json: a prompt must be an object", id="top-level-list"),
    pytest.param("p.json", '{"template": "x", "template": "y"}', "p.json: duplicate key 'template'", id="dup-key"),
    pytest.param("p.json", '{"template": "x", "config": {"top_p": NaN}}', "p.json: NaN is not valid JSON", id="nan"),
    pytest.param(
        "prompt.json",
        json.dumps({"template": [*MSGS, MSGS[0], {"role": "bot", "content": "x"}]}),
        "prompt.json: template[2].role must be one of system, user, assistant, tool, got 'bot'",
        id="unknown-role",
    ),
    pytest.param("p.json", b'{"template": "\xff"}', "p.json: the file is not UTF-8 text", id="not-utf8"),
    pytest.param("p.txt", "hello", "p.txt: a prompt file is .json (or .yaml/.yml), got '.txt'", id="suffix"),
    pytest.param("p.yaml", "template: [unclosed", "p.yaml: not valid YAML:", id="bad-yaml"),
    pytest.param("p.yaml", "- a\n- b\n", "p.yaml: a prompt must be an object", id="yaml-list"),
    pytest.param(
        "p.yaml", "template: x\nconfig:\n  seed: 2026-01-01\n", "config.seed must be JSON data", id="yaml-date"
    ),
    pytest.param("p.yaml", "template: x\ntype: !!python/name:os.system ''\n", "not valid YAML", id="yaml-no-code"),
]


@pytest.mark.parametrize(("name", "content", "message"), BAD_FILES)
def test_bad_file_message_names_the_file(tmp_path: Path, name: str, content: str | bytes, message: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        validate_prompt_file(write(tmp_path, name, content))
    assert message in err.value.message
    assert err.value.message.startswith(name)
    assert "\n" not in err.value.message


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match=r"^nope\.json: no such file"):
        validate_prompt_file(tmp_path / "nope.json")
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(InvalidArgument, match=r"^dir\.json: cannot read the file"):
        validate_prompt_file(tmp_path / "dir.json")


def test_file_size_limit_is_one_mib(tmp_path: Path) -> None:
    body = '{"template": "x"}'
    at_limit = write(tmp_path, "ok.json", body + " " * (MAX_FILE_BYTES - len(body)))
    assert at_limit.stat().st_size == MAX_FILE_BYTES
    assert validate_prompt_file(at_limit)["prompt"]["type"] == "text"
    over = write(tmp_path, "big.json", body + " " * (MAX_FILE_BYTES - len(body) + 1))
    with pytest.raises(InvalidArgument, match=rf"^big\.json: the file is {MAX_FILE_BYTES + 1} bytes; .* 1 MiB"):
        validate_prompt_file(over)


# ------------------------------------------------------------------------------------- round trip, conversions

ROUND_TRIP = [
    pytest.param({"template": "Hi {{x}}"}, id="minimal-text"),
    pytest.param(SUPPORT, id="full-chat"),
    pytest.param(
        {"template": [{"role": "tool", "content": "{{r}}", "tool_call_id": "c1", "name": "t"}]}, id="message-extras"
    ),
    pytest.param({"template": "{{a}} {{b}}", "variables": ["a", {"name": "b", "default": [1]}]}, id="list-variables"),
    pytest.param({"template": "{{a}}", "config": {"custom": {"nested": [1, None]}}}, id="custom-config"),
]


@pytest.mark.parametrize("document", ROUND_TRIP)
def test_round_trip_to_dict_from_dict(document: dict[str, Any]) -> None:
    p = Prompt.from_dict(document)
    data = p.to_dict()
    assert data["schema_version"] == 1
    assert Prompt.from_dict(data) == p
    assert Prompt.from_dict(json.loads(json.dumps(data))) == p  # the canonical form is plain JSON
    assert Prompt.from_dict(data).to_dict() == data


def test_to_dict_normalizes_variables_and_returns_copies() -> None:
    p = text("{{a}} {{b}}", variables=["a", {"name": "b", "default": {"k": 1}}])
    data = p.to_dict()
    assert data["variables"] == {"a": {}, "b": {"default": {"k": 1}}}
    data["variables"]["b"]["default"]["k"] = 2
    assert p.render({"a": 1}) == '1 {"k": 1}'


OPENAI = [
    pytest.param("Hello", [{"role": "user", "content": "Hello"}], id="text"),
    pytest.param(
        [{"role": "system", "content": "s"}, {"role": "user", "content": "u", "name": "n"}],
        [{"role": "system", "content": "s"}, {"role": "user", "content": "u", "name": "n"}],
        id="chat-as-is",
    ),
]


@pytest.mark.parametrize(("rendered", "expected"), OPENAI)
def test_to_openai_messages(rendered: Any, expected: list[dict[str, str]]) -> None:
    assert to_openai_messages(rendered) == expected


@pytest.mark.parametrize("bad", [5, [{"role": "user"}], ["text"]], ids=["number", "no-content", "string-item"])
def test_to_openai_messages_rejects_other_shapes(bad: Any) -> None:
    with pytest.raises(InvalidArgument):
        to_openai_messages(bad)


def test_to_openai_messages_of_a_rendered_prompt_is_openai_shaped() -> None:
    assert to_openai_messages(text("Q: {{q}}").render({"q": "1+1?"})) == [{"role": "user", "content": "Q: 1+1?"}]


# ------------------------------------------------------------------------------------------------------- diff


def test_diff_of_equal_prompts_is_empty() -> None:
    assert diff(Prompt.from_dict(SUPPORT), Prompt.from_dict(SUPPORT)) == ""


DIFFS = [
    pytest.param(
        {**SUPPORT, "template": [SUPPORT["template"][0], {"role": "user", "content": "{{question}}"}]},
        ["-{{ user.name }} asks: {{question}}", "+{{question}}"],
        id="template-line",
    ),
    pytest.param(
        {**SUPPORT, "config": {**SUPPORT["config"], "temperature": 0.7}},
        ["-temperature: 0.2", "+temperature: 0.7", ' stop: ["\\n\\n"]'],
        id="one-config-key",
    ),
    pytest.param({**SUPPORT, "config": {**SUPPORT["config"], "seed": 1}}, ["+seed: 1"], id="config-key-added"),
    pytest.param(
        {**SUPPORT, "template": [{"role": "user", "content": "You support {{product}}."}, SUPPORT["template"][1]]},
        ["-### template[0] system", "+### template[0] user"],
        id="role",
    ),
    pytest.param(
        {**SUPPORT, "variables": {"product": {"default": "other"}}},
        ['-product: {"default": "mlpilot", "description": "product name"}', '+product: {"default": "other"}'],
        id="variable-default",
    ),
    pytest.param({**SUPPORT, "description": "New"}, ["-description: Answers support questions"], id="description"),
]


@pytest.mark.parametrize(("changed", "lines"), DIFFS)
def test_diff_shows_the_changed_lines(changed: dict[str, Any], lines: list[str]) -> None:
    out = diff(Prompt.from_dict(SUPPORT), Prompt.from_dict(changed), a_label="support:1", b_label="support:2")
    assert out.startswith("--- support:1\n+++ support:2\n@@ ")
    body = out.splitlines()
    for line in lines:
        assert line in body


def test_diff_text_prompts_shows_type_change_and_trailing_newline() -> None:
    # the exact format: a trailing newline shows as an added empty line
    assert diff(text("Hi {{x}}"), text("Hi {{x}}\n")) == (
        "--- a\n+++ b\n@@ -1,4 +1,5 @@\n type: text\n ### template\n Hi {{x}}\n+\n ### config\n"
    )
    out = diff(text("Hi {{x}}"), chat(("user", "Hi {{x}}")))
    assert "-type: text" in out.splitlines() and "+type: chat" in out.splitlines()
