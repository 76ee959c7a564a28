"""``mlpilot up`` (the server), ``mlpilot serve`` (a data plane only) and ``mlpilot demo`` (the guided tour)."""

from __future__ import annotations

from pathlib import Path

import typer

from mlpilot.cli.context import CliContext
from mlpilot.cli.output import console
from mlpilot.settings import Settings


def up_command(
    ctx: typer.Context,
    host: str = typer.Option(None, "--host", help="bind address (default 127.0.0.1)"),
    port: int = typer.Option(None, "--port", help="HTTP port (default 8000)"),
    grpc_port: int = typer.Option(None, "--grpc-port", help="gRPC port (default 8001)"),
    no_grpc: bool = typer.Option(False, "--no-grpc", help="do not serve gRPC"),
    workers: int = typer.Option(None, "--workers", min=1, help="worker processes (default 1)"),
    executor: str = typer.Option(
        None, "--executor", help="where variants run: inprocess (default) or ray (Ray Serve replicas; mlpilot[ray])"
    ),
) -> None:
    """Run the server in the foreground: OIP v2 REST + gRPC, /metrics, and the control API."""
    from mlpilot.server import serve

    obj: CliContext = ctx.obj
    settings = obj.settings()
    _listen(settings, host, port, grpc_port, no_grpc)
    if workers:
        settings.server.workers = workers
    if executor:
        if executor not in ("inprocess", "ray"):
            raise typer.BadParameter(f"{executor!r}: use inprocess or ray", param_hint="--executor")
        settings.executor.kind = executor  # type: ignore[assignment]  # checked just above
    serve(settings)


def serve_command(
    ctx: typer.Context,
    control_url: str = typer.Option(
        None, "--control-url", help="the control plane to follow (default $MLPILOT_SERVER__CONTROL_URL)"
    ),
    host: str = typer.Option(None, "--host", help="bind address (default 127.0.0.1)"),
    port: int = typer.Option(None, "--port", help="HTTP port (default 8000)"),
    grpc_port: int = typer.Option(None, "--grpc-port", help="gRPC port (default 8001)"),
    no_grpc: bool = typer.Option(False, "--no-grpc", help="do not serve gRPC"),
    home: Path = typer.Option(None, "--home", help="this data plane's home: request log, blob cache, last snapshot"),
) -> None:
    """Run a data plane only (OIP v2 REST + gRPC, OpenAI API, /metrics) following a remote control plane."""
    from mlpilot.dataserver import serve_data

    obj: CliContext = ctx.obj
    settings = obj.settings()
    if home is not None:
        settings.home = home
    url = control_url or settings.server.control_url
    if not url:
        raise typer.BadParameter("give the control plane's URL (http://host:8000)", param_hint="--control-url")
    if not url.startswith(("http://", "https://")):
        raise typer.BadParameter(f"{url!r} is not an http(s) URL", param_hint="--control-url")
    _listen(settings, host, port, grpc_port, no_grpc)
    serve_data(settings, url)


def _listen(settings: Settings, host: str | None, port: int | None, grpc_port: int | None, no_grpc: bool) -> None:
    """Apply the listening options a server command was given (unset ones keep the settings' values)."""
    if host:
        settings.server.host = host
    if port:
        settings.server.port = port
    if grpc_port:
        settings.server.grpc_port = grpc_port
    if no_grpc:
        settings.server.grpc = False


def demo_command(
    ctx: typer.Context,
    exit_after: bool = typer.Option(False, "--exit", help="end after the tour instead of serving"),
    port: int = typer.Option(None, "--port", help="port to serve on after the tour (default 8000)"),
) -> None:
    """The guided tour: train, register, deploy — then serve until Ctrl-C (or stop with --exit)."""
    from mlpilot.demo import run_tour
    from mlpilot.server import serve

    obj: CliContext = ctx.obj
    settings = obj.settings()
    if port:
        settings.server.port = port
    run_tour(settings, console)
    if exit_after:
        console.print("\n[green]tour finished[/green] (--exit): not serving.")
        return
    s = settings.server
    console.print(
        f"\n[bold]Now serving[/bold] — Ctrl-C to stop. Try from another terminal:\n"
        f"  curl http://{s.host}:{s.port}/v2/models/breast-cancer\n"
        f"  mlpilot --url http://{s.host}:{s.port} traffic set breast-cancer champion=50 challenger=50\n"
        f"  tritonclient (HTTP {s.host}:{s.port}, gRPC {s.host}:{s.grpc_port}) — model 'breast-cancer'\n"
    )
    serve(settings)


def install(app: typer.Typer) -> None:
    app.command("up")(up_command)
    app.command("serve")(serve_command)
    app.command("demo")(demo_command)
