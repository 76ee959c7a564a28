"""``mlpilot auth create-key|list|revoke``: API keys (docs/security.md). Embedded (``--home``), on the home's store
directly; remote (``--url``), with an admin key in ``MLPILOT_API_KEY``."""

from __future__ import annotations

from typing import Any

import typer

from mlpilot.cli.context import client
from mlpilot.cli.output import console, emit, print_json, table, ts

auth = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)
JSON_OPT = typer.Option(False, "--json", help="print JSON for scripts")


@auth.command("create-key")
def create_key(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="a unique name, recorded as the actor key:NAME on events"),
    scopes: str = typer.Option(..., "--scopes", help="comma-separated: read, predict, write, deploy, admin"),
    deployments: list[str] = typer.Option(
        None, "--deployment", help="grant only this deployment (repeatable); default every deployment"
    ),
    as_json: bool = JSON_OPT,
) -> None:
    """Create a key and print it once: only its hash is stored, it cannot be shown again."""
    created = client(ctx).create_api_key(name, scopes.split(","), deployments or [])
    if as_json:
        print_json(created)
        return
    k = created.api_key
    grants = ", ".join(k.deployments) or "every deployment"
    console.print(f"created API key [bold]{k.name}[/bold] (scopes {', '.join(k.scopes)}; {grants})")
    console.print("the key, shown this once — keep it (e.g. export MLPILOT_API_KEY=…):")
    print(created.key)


@auth.command("list")
def list_keys(
    ctx: typer.Context,
    include_revoked: bool = typer.Option(False, "--all", help="include revoked keys"),
    as_json: bool = JSON_OPT,
) -> None:
    """Keys (never their secrets): name, prefix, scopes, grants, created, last used, revoked."""
    keys = client(ctx).list_api_keys(include_revoked=include_revoked)

    def render(rows: list[Any]) -> None:
        table(
            "API keys",
            ["name", "prefix", "scopes", "deployments", "created", "by", "last used", "revoked"],
            [
                [
                    k.name,
                    f"mlp_{k.prefix}_…",
                    ",".join(k.scopes),
                    ",".join(k.deployments) or "*",
                    ts(k.created_at),
                    k.created_by,
                    ts(k.last_used_at) if k.last_used_at else "",
                    ts(k.revoked_at) if k.revoked_at else "",
                ]
                for k in rows
            ],
        )

    emit(keys, as_json, render)


@auth.command("revoke")
def revoke(ctx: typer.Context, name: str = typer.Argument(...)) -> None:
    """Revoke a key now (servers that cached it stop accepting it within auth.cache_s seconds)."""
    k = client(ctx).revoke_api_key(name)
    console.print(f"revoked API key [bold]{k.name}[/bold] (mlp_{k.prefix}_…)")


def install(app: typer.Typer) -> None:
    app.add_typer(auth, name="auth")


__all__ = ["install"]
