"""``mlpilot ship MODEL_FILE --deployment NAME``: a model file to production in one command, gate by gate.

The pipeline is :func:`mlpilot.client.ship.ship`; this module only renders its gates as they complete and turns
the report into an exit code (0 shipped or started, 1 stopped at a gate, 2 usage error).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from mlpilot.cli.context import CliContext
from mlpilot.cli.output import console, err_console, print_json
from mlpilot.cli.registry import TRUST_PICKLE_HELP
from mlpilot.client.ship import FAIL, PASS, Gate, ShipReport, ship
from mlpilot.errors import InvalidArgument

_MARKS = {PASS: "[green]✔[/green]", FAIL: "[red]✘[/red]", "skip": "[yellow]\N{EN DASH}[/yellow]"}
_COLOURS = {PASS: "green", FAIL: "red", "skip": "yellow"}


def show_gate(gate: Gate) -> None:
    """``✔ signature  pass  …`` and, for rollout phases, one indented line per analysis."""
    colour = _COLOURS.get(gate.verdict, "cyan")
    console.print(
        f"{_MARKS.get(gate.verdict, '?')} [bold]{escape(gate.name):<11}[/bold] [{colour}]{gate.verdict:<4}[/{colour}]"
        f"  {escape(gate.message)}",
        soft_wrap=True,
    )
    for a in gate.numbers.get("analyses") or []:
        verdict = str(a.get("verdict"))
        c = {"inconclusive": "yellow"}.get(verdict, _COLOURS.get(verdict, "cyan"))
        console.print(
            f"    {escape(str(a.get('name'))):<12} [{c}]{verdict:<12}[/{c}] {escape(str(a.get('message') or ''))}",
            soft_wrap=True,
        )


def summary(report: ShipReport) -> str:
    """The last line: what happened, or where it stopped and why."""
    failed = report.failed_gate
    if failed is not None:
        return f"stopped at {failed.name}: {failed.message}"
    dep, version = report.deployment, report.version
    if report.outcome == "deployed":
        return f"shipped {version}: deployment {dep} created"
    if report.outcome == "promoted":
        return f"shipped {version}: it serves {dep}"
    if report.outcome == "unchanged":
        return f"{version} already serves {dep}; nothing changed"
    return f"{version} is rolling out on {dep} (rollout {report.rollout_id})"


def ship_cmd(
    ctx: typer.Context,
    model_file: Path = typer.Argument(..., help="the model file (.joblib/.pkl/.skops/.ubj/.json/.txt/.onnx/.py)"),
    deployment: str = typer.Option(..., "--deployment", "-d", help="the deployment to ship to (created if new)"),
    name: str | None = typer.Option(None, "--name", help="model name (default: the champion's, else the file stem)"),
    flavor: str | None = typer.Option(None, "--flavor", help="sklearn, xgboost, lightgbm, onnx or pyfunc"),
    sample: Path | None = typer.Option(
        None,
        "--sample",
        help="example inputs (CSV/Parquet): the signature, and the smoke test when there is no reference",
    ),
    shadow: str = typer.Option("1m", "--shadow", help="shadow phase's minimum duration; 0 disables it"),
    steps: str = typer.Option("10,50,100", "--steps", help="canary weights in %, comma-separated"),
    step_duration: str = typer.Option("1m", "--step-duration", help="minimum time per step, e.g. 2m"),
    step_samples: int = typer.Option(100, "--step-samples", min=0, help="minimum candidate requests per step"),
    margin: float = typer.Option(
        0.02, "--margin", min=0.0, max=0.99, help="tolerated loss: accuracy points (0.02 = 2) or relative MAE"
    ),
    wait: bool | None = typer.Option(
        None, "--wait/--no-wait", help="follow the rollout to the end (default: yes with --url, no embedded)"
    ),
    timeout: float = typer.Option(3600.0, "--timeout", min=1.0, help="seconds --wait waits for the rollout"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON for scripts"),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help=TRUST_PICKLE_HELP),
) -> None:
    """Ship MODEL_FILE to a deployment: register, check the signature, smoke-test, compare offline with the
    champion, then shadow → canary → promote. Stops at the first failed gate (exit 1) and says why."""
    obj: CliContext = ctx.obj
    remote = bool(obj.url)
    follow = remote if wait is None else wait
    on_gate = None if as_json else show_gate
    try:
        report = ship(
            obj.client(),
            model_file,
            deployment,
            name=name,
            flavor=flavor,
            sample=sample,
            shadow=shadow,
            steps=steps,
            step_duration=step_duration,
            step_samples=step_samples,
            margin=margin,
            wait=follow,
            timeout_s=timeout,
            on_gate=on_gate,
            trust_pickle=trust_pickle,
        )
    except InvalidArgument as exc:  # options: nothing was registered
        raise typer.BadParameter(exc.message) from exc
    if as_json:
        out: dict[str, Any] = report.to_dict()
        print_json(out)
    elif report.ok:
        line = summary(report)
        if report.outcome == "rollout_started" and not remote:
            line += "; embedded mode: `mlpilot up` on this home advances it (or `mlpilot rollout tick`)"
        console.print(f"[green]{escape(line)}[/green]", soft_wrap=True)
    if not report.ok:
        if not as_json:
            err_console.print(f"[red]error:[/red] {escape(summary(report))}", soft_wrap=True)
        raise typer.Exit(1)


def install(app: typer.Typer) -> None:
    app.command("ship")(ship_cmd)


__all__ = ["install", "ship_cmd", "show_gate", "summary"]
