"""``mlpilot incidents list|show|ack|resolve``."""

from __future__ import annotations

from typing import Any

import typer

from mlpilot.cli.context import client
from mlpilot.cli.output import console, emit, print_json, table, ts

incidents = typer.Typer(
    help="Incidents: alerts of a deployment grouped in time, with a lifecycle.", no_args_is_help=True
)
JSON_OPT = typer.Option(False, "--json", help="print JSON for scripts")
_COLOUR = {"open": "red", "mitigating": "yellow", "mitigated": "cyan", "resolved": "green"}


def _status(value: str) -> str:
    return f"[{_COLOUR.get(value, 'white')}]{value}[/{_COLOUR.get(value, 'white')}]"


@incidents.command("list")
def incidents_list(
    ctx: typer.Context,
    deployment: str | None = typer.Argument(None),
    status: str | None = typer.Option(None, "--status", help="open, mitigating, mitigated or resolved"),
    limit: int = typer.Option(50, "--limit", min=1),
    as_json: bool = JSON_OPT,
) -> None:
    """Incidents, newest first."""
    items = client(ctx).incidents(deployment, status, limit)

    def render(rows: list[Any]) -> None:
        table(
            "incidents",
            ["id", "deployment", "status", "severity", "opened", "alerts", "ack", "title"],
            [
                [
                    i.id,
                    i.deployment,
                    _status(i.status.value),
                    i.severity,
                    ts(i.opened_at),
                    len(i.alerts),
                    i.acknowledged_by or "",
                    i.title,
                ]
                for i in rows
            ],
        )

    emit(items, as_json, render)


@incidents.command("show")
def incidents_show(ctx: typer.Context, incident_id: int = typer.Argument(...), as_json: bool = JSON_OPT) -> None:
    """An incident with its timeline (its events and its deployment's, oldest first)."""
    c = client(ctx)
    inc, timeline = c.incident(incident_id), c.incident_timeline(incident_id)
    if as_json:
        print_json({"incident": inc.model_dump(mode="json"), "timeline": [e.model_dump(mode="json") for e in timeline]})
        return
    console.print(
        f"[bold]incident {inc.id}[/bold] {inc.deployment}: {_status(inc.status.value)} ({inc.severity}) — {inc.title}",
        soft_wrap=True,
    )
    console.print(
        f"  opened {ts(inc.opened_at)}, last symptom {ts(inc.last_signal_at)}, symptoms {inc.keys}"
        + (f", acknowledged by {inc.acknowledged_by}" if inc.acknowledged_by else ""),
        soft_wrap=True,
    )
    table(
        "timeline",
        ["#", "time", "action", "subject", "by"],
        [[e.id, ts(e.ts), e.action, e.subject, e.actor] for e in timeline],
    )


@incidents.command("ack")
def incidents_ack(ctx: typer.Context, incident_id: int = typer.Argument(...), as_json: bool = JSON_OPT) -> None:
    """Acknowledge an incident (someone is on it)."""
    emit(
        client(ctx).ack_incident(incident_id),
        as_json,
        lambda i: console.print(f"incident {i.id} acknowledged by {i.acknowledged_by}"),
    )


@incidents.command("resolve")
def incidents_resolve(
    ctx: typer.Context,
    incident_id: int = typer.Argument(...),
    reason: str = typer.Option("", "--reason", help="why it is over"),
    as_json: bool = JSON_OPT,
) -> None:
    """Resolve an incident."""
    emit(
        client(ctx).resolve_incident(incident_id, reason),
        as_json,
        lambda i: console.print(f"incident {i.id} {_status(i.status.value)}"),
    )


def install(app: typer.Typer) -> None:
    app.add_typer(incidents, name="incidents")


__all__ = ["install"]
