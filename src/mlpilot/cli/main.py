"""Entry point of the ``mlpilot`` command: global options, sub-command groups, and the error edge.

User mistakes print one ``error: …`` line on stderr and exit 1 (usage errors exit 2); only bugs show tracebacks.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from mlpilot import __version__
from mlpilot.cli import apps, auth, deploy, incidents, llm, monitors, observe, predict, registry, rollouts, server, ship
from mlpilot.cli.context import CliContext
from mlpilot.cli.output import err_console
from mlpilot.errors import MlpilotError

app = typer.Typer(
    name="mlpilot",
    help="mlpilot: register, serve, observe, roll out, diagnose and heal ML and LLM systems.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        print(f"mlpilot {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    ctx: typer.Context,
    home: Path | None = typer.Option(None, "--home", envvar="MLPILOT_HOME", help="mlpilot home (default ./.mlpilot)"),
    url: str | None = typer.Option(None, "--url", envvar="MLPILOT_URL", help="target a remote server instead"),
    actor: str | None = typer.Option(None, "--actor", envvar="MLPILOT_ACTOR", help="recorded on every change"),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="print the version"),
) -> None:
    ctx.obj = CliContext(home=home, url=url, actor=actor)
    ctx.call_on_close(ctx.obj.close)


registry.install(app)
deploy.install(app)
server.install(app)
predict.install(app)
observe.install(app)
monitors.install(app)
rollouts.install(app)
ship.install(app)
llm.install(app)
apps.install(app)
incidents.install(app)
auth.install(app)


def main() -> None:
    try:
        app()
    except MlpilotError as exc:
        err_console.print(f"[red]error:[/red] {exc.message}", soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
