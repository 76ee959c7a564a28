"""``mlpilot prompts …`` and ``mlpilot tools …``: LLM artifacts, validated on registration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from mlpilot.cli.context import client
from mlpilot.cli.output import console, emit, print_json
from mlpilot.errors import InvalidArgument
from mlpilot.records import ArtifactVersion

prompts = typer.Typer(help="Prompts: {{var}} templates (text or chat) with model config.", no_args_is_help=True)
tools = typer.Typer(
    help="Tools in the MCP shape, implemented by a Python callable or an HTTP endpoint.", no_args_is_help=True
)
JSON_OPT = typer.Option(False, "--json", help="print JSON for scripts")


def _registered(v: ArtifactVersion) -> None:
    what = v.metadata.get("prompt") or v.metadata.get("tool") or {}
    detail = ", ".join(f"{k}={what[k]}" for k in ("type", "name", "implementation") if what.get(k))
    names = what.get("variables") or what.get("properties") or []
    console.print(
        f"registered [bold]{v.ref}[/bold] ({v.kind.value}{': ' + detail if detail else ''}"
        f"{'; ' + ', '.join(map(str, names)) if names else ''}) {v.digest[:19]}",
        soft_wrap=True,
    )


def _values(pairs: list[str] | None, values_file: Path | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if values_file is not None:
        try:
            loaded = json.loads(values_file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InvalidArgument(f"cannot read values file {values_file}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise InvalidArgument(f"values file {values_file} must hold a JSON object")
        out.update(loaded)
    for pair in pairs or []:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise InvalidArgument(f"--var takes NAME=VALUE, got {pair!r}")
        out[key] = value
    return out


@prompts.command("register")
def prompts_register(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="prompt name"),
    path: Path = typer.Argument(..., help="a .json or .yaml prompt file"),
    as_json: bool = JSON_OPT,
) -> None:
    """Register a prompt file as the next version of NAME (validated: template, variables, config)."""
    emit(client(ctx).register_prompt(name, path), as_json, _registered)


@prompts.command("show")
def prompts_show(ctx: typer.Context, ref: str = typer.Argument(..., help="NAME, NAME:VERSION or NAME@ALIAS")) -> None:
    """Print a prompt version's file (the template, its variables and model config) as JSON."""
    print_json(client(ctx).load_prompt(ref).to_dict())


@prompts.command("render")
def prompts_render(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME, NAME:VERSION or NAME@ALIAS"),
    var: list[str] | None = typer.Option(None, "--var", help="NAME=VALUE (repeat)"),
    values: Path | None = typer.Option(None, "--values", help="a JSON file of values"),
    as_json: bool = JSON_OPT,
) -> None:
    """Render a prompt with values: the text, or the chat messages."""
    rendered = client(ctx).render_prompt(ref, _values(var, values))
    if as_json or not isinstance(rendered, str):
        print_json(rendered)
    else:
        print(rendered)


@prompts.command("diff")
def prompts_diff(
    ctx: typer.Context,
    a: str = typer.Argument(..., help="the old version, e.g. support:1"),
    b: str = typer.Argument(..., help="the new version, e.g. support:2"),
) -> None:
    """A unified diff of two prompt versions (template and config)."""
    from mlpilot.llm.prompts import diff

    c = client(ctx)
    text = diff(c.load_prompt(a), c.load_prompt(b), a_label=a, b_label=b)
    print(text or f"{a} and {b} are the same prompt")


@tools.command("register")
def tools_register(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="tool artifact name"),
    path: Path = typer.Argument(..., help="a .json tool file (MCP Tool shape + implementation)"),
    as_json: bool = JSON_OPT,
) -> None:
    """Register a tool file as the next version of NAME (validated: name, JSON Schemas, implementation)."""
    emit(client(ctx).register_tool(name, path), as_json, _registered)


@tools.command("show")
def tools_show(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME, NAME:VERSION or NAME@ALIAS"),
    openai: bool = typer.Option(False, "--openai", help="as an OpenAI function tool"),
) -> None:
    """Print a tool version (MCP shape with its implementation, or as an OpenAI function)."""
    from mlpilot.llm.tools import to_openai_tool

    spec = client(ctx).load_tool(ref)
    print_json(to_openai_tool(spec) if openai else spec.to_dict())


@tools.command("call")
def tools_call(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME, NAME:VERSION or NAME@ALIAS"),
    args: str = typer.Option("{}", "--args", help="the arguments as a JSON object"),
    timeout: float | None = typer.Option(None, "--timeout", help="seconds"),
) -> None:
    """Run a tool here with JSON arguments (validated against its inputSchema); prints the MCP result. Exit 1 when
    the tool reports an error."""
    try:
        arguments = json.loads(args)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"--args must be a JSON object: {exc}") from exc
    if not isinstance(arguments, dict):
        raise InvalidArgument("--args must be a JSON object")
    result = client(ctx).call_tool(ref, arguments, timeout_s=timeout)
    print_json(result.to_mcp())
    if result.is_error:
        raise typer.Exit(1)


def install(app: typer.Typer) -> None:
    app.add_typer(prompts, name="prompts")
    app.add_typer(tools, name="tools")


__all__ = ["install"]
