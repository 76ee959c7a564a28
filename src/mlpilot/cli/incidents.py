"""``mlpilot incidents list|show|ack|resolve|diagnose|approve|reject|policy``."""

from __future__ import annotations

from typing import Any

import typer

from mlpilot.cli.context import client
from mlpilot.cli.output import console, emit, print_json, table, ts
from mlpilot.errors import NotFound

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
    try:
        d = c.incident_diagnosis(incident_id)
    except NotFound:
        return
    _print_diagnosis(d)
    _print_remediations(c.incident_remediations(incident_id))


def _print_diagnosis(d: dict[str, Any]) -> None:
    console.print(f"[bold]diagnosis[/bold]: {d.get('verdict')} — {d.get('summary', '')}", soft_wrap=True)
    table(
        "hypotheses",
        ["#", "cause", "component", "confidence", "evidence", "suggested remediation"],
        [
            [
                i + 1,
                h["cause"],
                h["component"],
                f"{h['confidence']:.2f}",
                ", ".join(h["evidence"][:4]),
                (h["suggestion"] or {}).get("action", "") + " " + (h["suggestion"] or {}).get("target", ""),
            ]
            for i, h in enumerate(d.get("hypotheses", [])[:5])
        ],
    )
    cited = {r for h in d.get("hypotheses", [])[:3] for r in h["evidence"]}
    for e in d.get("evidence", []):
        if e["ref"] in cited:
            console.print(f"  [{e['ref']}] {e['summary']}", soft_wrap=True)


def _print_remediations(items: list[dict[str, Any]]) -> None:
    if not items:
        return
    table(
        "remediations",
        ["id", "state", "action", "target", "why", "verification"],
        [
            [
                r["id"],
                r.get("state", ""),
                r["action"]["kind"],
                r["action"]["target"],
                (r.get("decision") or {}).get("reason", ""),
                (r.get("verification") or {}).get("reason", ""),
            ]
            for r in items
        ],
    )


@incidents.command("diagnose")
def incidents_diagnose(ctx: typer.Context, incident_id: int = typer.Argument(...), as_json: bool = JSON_OPT) -> None:
    """Run root-cause analysis on an incident now and show the ranked hypotheses with their evidence."""
    emit(client(ctx).diagnose_incident(incident_id), as_json, _print_diagnosis)


@incidents.command("approve")
def incidents_approve(ctx: typer.Context, incident_id: int = typer.Argument(...), as_json: bool = JSON_OPT) -> None:
    """Run the incident's suggested remediation (then verified, and undone if it does not help)."""
    emit(
        client(ctx).approve_remediation(incident_id),
        as_json,
        lambda r: console.print(f"remediation {r['id']} of incident {incident_id}: {r['state']}"),
    )


@incidents.command("reject")
def incidents_reject(
    ctx: typer.Context,
    incident_id: int = typer.Argument(...),
    reason: str = typer.Option("", "--reason"),
    as_json: bool = JSON_OPT,
) -> None:
    """Turn down the incident's suggested remediation."""
    emit(
        client(ctx).reject_remediation(incident_id, reason),
        as_json,
        lambda r: console.print(f"remediation {r['id']} of incident {incident_id}: {r['state']}"),
    )


@incidents.command("policy")
def incidents_policy(
    ctx: typer.Context,
    deployment: str = typer.Argument(...),
    mode: str | None = typer.Option(None, "--mode", help="observe, suggest or auto"),
    min_confidence: float | None = typer.Option(None, "--min-confidence"),
    max_actions_per_hour: int | None = typer.Option(None, "--max-actions-per-hour"),
    cooldown_s: float | None = typer.Option(None, "--cooldown-s"),
    max_blast_radius: float | None = typer.Option(None, "--max-blast-radius"),
    approval: list[str] | None = typer.Option(None, "--approval", help="an action that always waits for approval"),
    no_approval: bool = typer.Option(False, "--no-approval", help="no action waits for approval in auto mode"),
    allowed: list[str] | None = typer.Option(None, "--allowed", help="an action the healer may take (repeat)"),
    verify_after_s: float | None = typer.Option(None, "--verify-after-s"),
    reset: bool = typer.Option(False, "--reset", help="drop the deployment's policy: the platform defaults apply"),
    as_json: bool = JSON_OPT,
) -> None:
    """Show a deployment's healing policy, or change it with options (the fields not given keep their values)."""
    c = client(ctx)
    if reset:
        c.reset_healing_policy(deployment)
    fields = {
        k: v
        for k, v in {
            "mode": mode,
            "min_confidence": min_confidence,
            "max_actions_per_hour": max_actions_per_hour,
            "cooldown_s": cooldown_s,
            "max_blast_radius": max_blast_radius,
            "approval": [] if no_approval else (approval or None),
            "allowed": allowed or None,
            "verify_after_s": verify_after_s,
        }.items()
        if v is not None
    }
    if fields:
        current = c.healing_policy(deployment)
        keep: dict[str, Any] = {
            k: current[k]
            for k in (
                "mode",
                "min_confidence",
                "max_actions_per_hour",
                "cooldown_s",
                "max_blast_radius",
                "approval",
                "allowed",
                "verify_after_s",
            )
            if k in current
        }
        policy = c.set_healing_policy(deployment, **{**keep, **fields})
    else:
        policy = c.healing_policy(deployment)
    emit(
        policy,
        as_json,
        lambda p: table("healing policy of " + deployment, ["field", "value"], [[k, v] for k, v in p.items()]),
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
