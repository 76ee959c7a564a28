"""Validation of OpenAI API request bodies into the pipeline's :class:`~mlpilot.llm.pipeline.ChatRequest`.

Every problem is an :class:`~mlpilot.errors.InvalidArgument` (HTTP 400) whose message names the field by its JSON
path (``messages[2].content``) and says what was expected. Fields the OpenAI API defines but mlpilot does not
implement are refused when they would change the answer (``n`` > 1, ``logprobs``, ``echo``, ``best_of``,
non-text content parts) and ignored when they would not (``user``, ``store``, ``metadata``, ``service_tier``…).
mlpilot's own extension is ``variables``: values for the app prompt's template variables (with the openai
client: ``extra_body={"variables": {...}}``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from mlpilot.errors import InvalidArgument
from mlpilot.llm.pipeline import ChatRequest

__all__ = ["ParsedChat", "ParsedEmbeddings", "parse_chat", "parse_completion", "parse_embeddings"]

ROLES = ("system", "developer", "user", "assistant", "tool")
MAX_MESSAGES = 1000
MAX_INPUTS = 2048
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass
class ParsedChat:
    model: str
    request: ChatRequest
    stream: bool
    include_usage: bool


@dataclass
class ParsedEmbeddings:
    model: str
    inputs: list[str]
    encoding_format: str
    dimensions: int | None


def _got(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidArgument(f"the request body must be a JSON object, got {_got(body)}")
    return body


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidArgument("model is required: the name of a deployed LLM app", detail={"param": "model"})
    return model


def _stream(body: dict[str, Any]) -> tuple[bool, bool]:
    stream = body.get("stream", False)
    if not isinstance(stream, bool) and stream is not None:
        raise InvalidArgument(f"stream must be true or false, got {_got(stream)}")
    options = body.get("stream_options")
    include = False
    if options is not None:
        if not isinstance(options, dict):
            raise InvalidArgument("stream_options must be an object")
        if not stream:
            raise InvalidArgument("stream_options is only allowed when stream is true")
        include = options.get("include_usage", False)
        if not isinstance(include, bool):
            raise InvalidArgument("stream_options.include_usage must be true or false")
    return bool(stream), include


def _number(body: dict[str, Any], key: str, lo: float, hi: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise InvalidArgument(f"{key} must be a number between {lo:g} and {hi:g}, got {value!r}", detail={"param": key})
    return float(value)


def _params(body: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key, lo, hi in (
        ("temperature", 0, 2),
        ("top_p", 0, 1),
        ("presence_penalty", -2, 2),
        ("frequency_penalty", -2, 2),
    ):
        value = _number(body, key, lo, hi)
        if value is not None:
            params[key] = value
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgument(f"{key} must be an integer >= 1, got {value!r}", detail={"param": key})
            params["max_tokens"] = value
    seed = body.get("seed")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidArgument(f"seed must be an integer, got {seed!r}")
        params["seed"] = seed
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not 1 <= len(stops) <= 4 or not all(isinstance(s, str) and s for s in stops):
            raise InvalidArgument("stop must be a non-empty string or a list of 1 to 4 non-empty strings")
        params["stop"] = stops
    n = body.get("n")
    if n is not None and n != 1:
        raise InvalidArgument(
            f"n={n!r} is not supported: mlpilot returns one choice per request", detail={"param": "n"}
        )
    for key in ("logprobs", "echo"):
        if body.get(key):
            raise InvalidArgument(f"{key} is not supported by mlpilot apps", detail={"param": key})
    best_of = body.get("best_of")
    if best_of not in (None, 1):
        raise InvalidArgument("best_of is not supported: mlpilot returns one choice per request")
    return params


def _variables(body: dict[str, Any]) -> dict[str, Any]:
    variables = body.get("variables")
    if variables is None:
        return {}
    if not isinstance(variables, dict) or not all(isinstance(k, str) for k in variables):
        raise InvalidArgument("variables must be an object of template variable name to value")
    return dict(variables)


def _content(value: Any, where: str, role: str) -> str | None:
    if value is None:
        if role in ("assistant",):
            return None
        raise InvalidArgument(f"{where} is required for a {role} message")
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for j, part in enumerate(value):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise InvalidArgument(f"{where}[{j}] must be a content part object with a type")
            if part["type"] not in ("text", "input_text"):
                raise InvalidArgument(
                    f"{where}[{j}]: content parts of type {part['type']!r} are not supported; send text"
                )
            text = part.get("text")
            if not isinstance(text, str):
                raise InvalidArgument(f"{where}[{j}].text must be a string")
            texts.append(text)
        return "".join(texts)
    raise InvalidArgument(f"{where} must be a string or a list of text parts, got {_got(value)}")


def _tool_call(call: Any, where: str) -> dict[str, Any]:
    if not isinstance(call, dict):
        raise InvalidArgument(f"{where} must be an object")
    fn = call.get("function")
    if not isinstance(call.get("id"), str) or not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise InvalidArgument(f'{where} must be {{"id": str, "type": "function", "function": {{"name", "arguments"}}}}')
    args = fn.get("arguments", "")
    if not isinstance(args, str):
        raise InvalidArgument(f"{where}.function.arguments must be a JSON string")
    try:
        parsed = json.loads(args) if args.strip() else {}
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"{where}.function.arguments is not valid JSON: {exc.msg} at {exc.pos}") from None
    if not isinstance(parsed, dict):
        raise InvalidArgument(f"{where}.function.arguments must encode a JSON object, got {type(parsed).__name__}")
    return {"id": call["id"], "type": "function", "function": {"name": fn["name"], "arguments": args}}


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidArgument("messages must be a non-empty list of message objects", detail={"param": "messages"})
    if len(messages) > MAX_MESSAGES:
        raise InvalidArgument(f"messages has {len(messages)} entries; at most {MAX_MESSAGES} are accepted")
    out: list[dict[str, Any]] = []
    call_ids: set[str] = set()
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise InvalidArgument(f"{where} must be an object with a role and content, got {_got(m)}")
        role = m.get("role")
        if role not in ROLES:
            raise InvalidArgument(
                f"{where}.role must be one of {list(ROLES)}, got {role!r}", detail={"param": f"{where}.role"}
            )
        msg: dict[str, Any] = {"role": role, "content": _content(m.get("content"), f"{where}.content", role)}
        if isinstance(m.get("name"), str):
            msg["name"] = m["name"]
        if role == "assistant":
            calls = m.get("tool_calls")
            if calls is not None:
                if not isinstance(calls, list):
                    raise InvalidArgument(f"{where}.tool_calls must be a list")
                msg["tool_calls"] = [_tool_call(c, f"{where}.tool_calls[{j}]") for j, c in enumerate(calls)]
                call_ids.update(c["id"] for c in msg["tool_calls"])
            elif msg["content"] is None:
                raise InvalidArgument(f"{where} has neither content nor tool_calls")
        if role == "tool":
            tid = m.get("tool_call_id")
            if not isinstance(tid, str) or not tid:
                raise InvalidArgument(f"{where}.tool_call_id is required for a tool message")
            if tid not in call_ids:
                raise InvalidArgument(
                    f"{where}.tool_call_id {tid!r} answers no tool call of an earlier assistant message"
                )
            msg["tool_call_id"] = tid
        out.append(msg)
    return out


def _tools(body: dict[str, Any]) -> tuple[list[dict[str, Any]] | None, Any]:
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if tools is None:
        if choice not in (None, "none", "auto"):
            raise InvalidArgument("tool_choice needs tools")
        return None, choice
    if not isinstance(tools, list):
        raise InvalidArgument("tools must be a list of function tools")
    from mlpilot.llm.tools import from_openai_tool

    out = []
    names: set[str] = set()
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(tool.get("function"), dict):
            raise InvalidArgument(f'{where} must be {{"type": "function", "function": {{"name", "parameters"}}}}')
        fn = tool["function"]
        name = fn.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.match(name):
            raise InvalidArgument(f"{where}.function.name must be 1-64 letters, digits, '_' or '-', got {name!r}")
        if name in names:
            raise InvalidArgument(f"{where}: tool {name!r} is defined twice")
        names.add(name)
        try:
            # checks the parameters schema against its meta-schema (OpenAI does not require a description)
            from_openai_tool({"type": "function", "function": {**fn, "description": fn.get("description") or name}})
        except InvalidArgument as exc:
            # say it in the caller's vocabulary: the MCP field is OpenAI's function.parameters
            message = exc.message.replace("inputSchema", "function.parameters")
            raise InvalidArgument(f"{where}: {message}") from None
        out.append({"type": "function", "function": dict(fn)})
    if choice is not None and choice not in ("none", "auto", "required"):
        fn = choice.get("function") if isinstance(choice, dict) else None
        if not isinstance(fn, dict) or fn.get("name") not in names:
            raise InvalidArgument(f"tool_choice names no tool of this request (tools: {sorted(names)})")
    return out, choice


def parse_chat(body: Any) -> ParsedChat:
    body = _object(body)
    model = _model(body)
    stream, include = _stream(body)
    params = _params(body)
    messages = _messages(body)
    tools, choice = _tools(body)
    request = ChatRequest(messages=messages, variables=_variables(body), tools=tools, tool_choice=choice, params=params)
    return ParsedChat(model, request, stream, include)


def parse_completion(body: Any) -> ParsedChat:
    body = _object(body)
    model = _model(body)
    stream, include = _stream(body)
    params = _params(body)
    if body.get("suffix"):
        raise InvalidArgument("suffix is not supported by mlpilot apps")
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt:
        raise InvalidArgument("prompt must be a non-empty string (one prompt per request)", detail={"param": "prompt"})
    request = ChatRequest(messages=[{"role": "user", "content": prompt}], variables=_variables(body), params=params)
    return ParsedChat(model, request, stream, include)


def parse_embeddings(body: Any) -> ParsedEmbeddings:
    body = _object(body)
    model = _model(body)
    raw = body.get("input")
    inputs = [raw] if isinstance(raw, str) else raw
    if not isinstance(inputs, list) or not inputs:
        raise InvalidArgument("input must be a string or a non-empty list of strings", detail={"param": "input"})
    if len(inputs) > MAX_INPUTS:
        raise InvalidArgument(f"input has {len(inputs)} entries; at most {MAX_INPUTS} per request")
    for i, text in enumerate(inputs):
        if not isinstance(text, str):
            raise InvalidArgument(f"input[{i}] must be a string (token arrays are not supported), got {_got(text)}")
        if not text:
            raise InvalidArgument(f"input[{i}] is empty")
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise InvalidArgument(f"encoding_format must be 'float' or 'base64', got {fmt!r}")
    dims = body.get("dimensions")
    if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int) or dims < 1):
        raise InvalidArgument(f"dimensions must be a positive integer, got {dims!r}")
    return ParsedEmbeddings(model, list(inputs), fmt, dims)
