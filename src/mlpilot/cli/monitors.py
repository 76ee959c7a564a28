"""``mlpilot monitors …``, ``mlpilot slos …`` and ``mlpilot alerts``."""

from __future__ import annotations

import json
from typing import Any

import typer

from mlpilot.cli.context import client
from mlpilot.cli.observe import parse_since
from mlpilot.cli.output import console, emit, table, ts
from mlpilot.errors import InvalidArgument
from mlpilot.records import Monitor, MonitorResult, format_duration

monitors = typer.Typer(help="Scheduled checks of a deployment's traffic and their time series.", no_args_is_help=True)
slos = typer.Typer(help="Service-level objectives and their burn-rate alerts.", no_args_is_help=True)
JSON_OPT = typer.Option(False, "--json", help="print JSON for scripts")


def _value(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def _status(s: str | None) -> str:
    colour = {"ok": "green", "alert": "red", "error": "red", "no_data": "yellow"}.get(s or "", "white")
    return f"[{colour}]{s or 'never run'}[/{colour}]"


def _show_monitors(items: list[Monitor]) -> None:
    table(
        "monitors",
        ["deployment", "monitor", "kind", "variant", "window", "every", "reference", "last run", "status", "next run"],
        [
            (
                m.deployment,
                m.name,
                m.spec.kind.value,
                m.spec.variant or "(main)",
                f"{m.spec.window_rows} rows" if m.spec.window_rows else format_duration(m.spec.window),
                format_duration(m.spec.every),
                m.spec.reference,
                ts(m.last_run) if m.last_run else "",
                _status(m.last_status),
                ts(m.next_run) if m.spec.enabled else "disabled",
            )
            for m in items
        ],
    )


def _show_result(r: MonitorResult) -> None:
    console.print(
        f"{ts(r.ts)}  {_status(r.status.value)}  value {_value(r.value)}  rows {r.rows}  — {r.message}", soft_wrap=True
    )
    feats = r.detail.get("features") if isinstance(r.detail, dict) else None
    if feats:
        table(
            "per feature",
            ["feature", "test", "statistic", "p-value", "drift"],
            [
                (
                    f.get("feature"),
                    f.get("test"),
                    _value(f.get("statistic")),
                    _value(f.get("p_value")),
                    "yes" if f.get("is_drift") else "",
                )
                for f in feats
            ],
        )


@monitors.command("list")
def monitors_list(
    ctx: typer.Context,
    deployment: str | None = typer.Argument(None, help="only this deployment's monitors"),
    as_json: bool = JSON_OPT,
) -> None:
    """Monitors with their schedule and last status."""
    emit(client(ctx).list_monitors(deployment), as_json, _show_monitors)


@monitors.command("show")
def monitors_show(
    ctx: typer.Context,
    deployment: str = typer.Argument(...),
    name: str = typer.Argument(...),
    since: str | None = typer.Option(None, "--since", help="15m, 2h, 3d or ISO time"),
    limit: int = typer.Option(20, "--limit", min=1, help="most recent points"),
    as_json: bool = JSON_OPT,
) -> None:
    """A monitor's spec and its time series (the latest run in detail)."""
    c = client(ctx)
    mon = c.get_monitor(deployment, name)
    results = c.monitor_results(deployment, name, since=parse_since(since), limit=limit)
    if as_json:
        emit(
            {"monitor": mon.model_dump(mode="json"), "results": [r.model_dump(mode="json") for r in results]},
            True,
            print,
        )
        return
    _show_monitors([mon])
    console.print(f"spec: {json.dumps(mon.spec.model_dump(mode='json'))}", soft_wrap=True)
    if not results:
        console.print("no results yet (it runs at its next run time, or now with `mlpilot monitors run`)")
        return
    table(
        "time series",
        ["time", "status", "value", "rows", "message"],
        [(ts(r.ts), _status(r.status.value), _value(r.value), r.rows, r.message) for r in results],
    )
    console.print("latest run:")
    _show_result(results[-1])


def _parse_kv(pairs: list[str] | None, what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in pairs or []:
        key, sep, value = p.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"{what} {p!r} must be KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


@monitors.command("create")
def monitors_create(
    ctx: typer.Context,
    deployment: str = typer.Argument(...),
    name: str = typer.Argument(...),
    kind: str = typer.Option(..., "--kind", help="traffic, drift, performance, estimated_performance, quality or llm"),
    variant: str | None = typer.Option(None, "--variant", help="default: the variant with the most traffic"),
    window: str = typer.Option("1h", "--window", help="time window, e.g. 15m, 1h, 1d"),
    window_rows: int | None = typer.Option(None, "--window-rows", help="count window: the last N rows instead"),
    every: str = typer.Option("15m", "--every", help="schedule, e.g. 5m"),
    reference: str = typer.Option("bound", "--reference", help="bound, DATASET[:VERSION|@ALIAS] or previous:7d"),
    threshold: float | None = typer.Option(None, "--threshold", help="alert level of the value"),
    min_rows: int = typer.Option(30, "--min-rows", min=1, help="fewer rows: no_data"),
    feature: list[str] | None = typer.Option(None, "--feature", help="only these inputs (repeat)"),
    segment: list[str] | None = typer.Option(None, "--segment", help="COLUMN=VALUE filter (repeat), e.g. in.region=eu"),
    param: list[str] | None = typer.Option(None, "--param", help="detector option KEY=VALUE (repeat)"),
    replace: bool = typer.Option(False, "--replace", help="update an existing monitor"),
    as_json: bool = JSON_OPT,
) -> None:
    """Create a scheduled monitor, e.g. `mlpilot monitors create iris drift-eu --kind drift --segment in.region=eu`."""
    spec = {
        "kind": kind,
        "variant": variant,
        "window": window,
        "window_rows": window_rows,
        "every": every,
        "reference": reference,
        "threshold": threshold,
        "min_rows": min_rows,
        "features": feature or None,
        "segment": _parse_kv(segment, "segment"),
        "params": _parse_kv(param, "param"),
    }
    mon = client(ctx).create_monitor(deployment, name, spec, replace=replace)
    emit(mon, as_json, lambda m: _show_monitors([m]))


@monitors.command("run")
def monitors_run(
    ctx: typer.Context, deployment: str = typer.Argument(...), name: str = typer.Argument(...), as_json: bool = JSON_OPT
) -> None:
    """Run a monitor now and record the result."""
    result = client(ctx).run_monitor(deployment, name)
    emit(result, as_json, _show_result)
    if result.status.value == "error":
        raise typer.Exit(1)


@monitors.command("delete")
def monitors_delete(ctx: typer.Context, deployment: str, name: str) -> None:
    client(ctx).delete_monitor(deployment, name)
    console.print(f"deleted monitor {deployment}/{name} and its results")


@monitors.command("tick")
def monitors_tick(ctx: typer.Context, as_json: bool = JSON_OPT) -> None:
    """Run every due monitor and evaluate every SLO now (the scheduler does this on its own in `mlpilot up`)."""
    report = client(ctx).tick_monitors()

    def render(r: dict[str, Any]) -> None:
        console.print(f"{len(r['results'])} monitor run(s), {len(r['alerts'])} alert change(s)")
        for res in r["results"]:
            console.print(f"  {res['deployment']}/{res['monitor']}: {_status(res['status'])} — {res['message']}")
        for ch in r["alerts"]:
            console.print(f"  alert {ch['action']}: {ch['alert']['summary']}")

    emit(report, as_json, render)


# ---------------------------------------------------------------------------------------------- SLOs


def _show_slos(items: list[dict[str, Any]]) -> None:
    rows = []
    for s in items:
        spec = s["spec"]
        burning = max(s["rules"], key=lambda r: r["long_burn"]) if s["rules"] else None
        alert = s["alert"]
        rows.append(
            (
                s["deployment"],
                s["name"],
                spec["indicator"] + (f" ≤ {spec['threshold']:g} ms" if spec["indicator"] == "latency" else ""),
                f"{spec['objective']:g} / {spec['window']}",
                "-" if s["sli"] is None else f"{s['sli']:.4%}",
                "-" if s["budget_remaining"] is None else f"{s['budget_remaining']:.0%}",
                f"{burning['long_burn']:.2f}x ({burning['rule']})" if burning else "",
                f"[red]{alert['severity']}[/red] since {alert['fired_at'][:19]}" if alert else "[green]ok[/green]",
            )
        )
    table("SLOs", ["deployment", "slo", "indicator", "objective", "SLI", "budget left", "worst burn", "alert"], rows)


@slos.command("list")
def slos_list(ctx: typer.Context, deployment: str = typer.Argument(...), as_json: bool = JSON_OPT) -> None:
    """SLOs with their current SLI, error budget left and burn rates."""
    emit(client(ctx).slos(deployment), as_json, _show_slos)


@slos.command("create")
def slos_create(
    ctx: typer.Context,
    deployment: str = typer.Argument(...),
    name: str = typer.Argument(...),
    indicator: str = typer.Option(
        ..., "--indicator", help="availability, latency, accuracy, drift, estimated_accuracy or monitor"
    ),
    objective: float = typer.Option(..., "--objective", help="share of good events, e.g. 0.999"),
    threshold: float | None = typer.Option(None, "--threshold", help="latency: ms; accuracy: regression tolerance"),
    monitor: str | None = typer.Option(None, "--monitor", help="drift/estimated_accuracy/monitor: its monitor"),
    variant: str | None = typer.Option(None, "--variant"),
    window: str = typer.Option("30d", "--window"),
    rule: list[str] | None = typer.Option(
        None, "--rule", help="LONG/SHORT@BURN[:page|ticket], e.g. 1h/5m@14.4:page (repeat; default: SRE rules)"
    ),
    webhook: list[str] | None = typer.Option(None, "--webhook", help="URL notified when the alert changes (repeat)"),
    replace: bool = typer.Option(False, "--replace"),
    as_json: bool = JSON_OPT,
) -> None:
    """Create an SLO, e.g. `mlpilot slos create iris fast --indicator latency --threshold 50 --objective 0.99`."""
    spec = {
        "indicator": indicator,
        "objective": objective,
        "threshold": threshold,
        "monitor": monitor,
        "variant": variant,
        "window": window,
        "rules": [_rule(r) for r in rule] if rule else None,
        "webhooks": webhook or [],
    }
    emit(
        client(ctx).create_slo(deployment, name, spec, replace=replace),
        as_json,
        lambda s: console.print(
            f"created SLO {s.deployment}/{s.name}: {s.spec.indicator.value} objective {s.spec.objective:g}"
        ),
    )


def _rule(text: str) -> dict[str, Any]:
    windows, sep, rest = text.partition("@")
    long, slash, short = windows.partition("/")
    burn, _, severity = rest.partition(":")
    if not sep or not slash:
        raise InvalidArgument(f"rule {text!r} must be LONG/SHORT@BURN[:page|ticket], e.g. 1h/5m@14.4:page")
    try:
        rate = float(burn)
    except ValueError as exc:
        raise InvalidArgument(f"rule {text!r}: burn rate {burn!r} is not a number") from exc
    return {"long": long, "short": short, "burn_rate": rate, "severity": severity or "page"}


@slos.command("check")
def slos_check(
    ctx: typer.Context, deployment: str = typer.Argument(...), name: str = typer.Argument(...), as_json: bool = JSON_OPT
) -> None:
    """Evaluate an SLO now: burn rate per rule, and open / resolve its alert."""
    out = client(ctx).check_slo(deployment, name)

    def render(o: dict[str, Any]) -> None:
        _show_slos([o["status"]])
        table(
            "burn rates",
            ["rule", "severity", "threshold", "long window", "short window", "firing"],
            [
                (
                    r["rule"],
                    r["severity"],
                    f"{r['burn_rate']:g}x",
                    f"{r['long_burn']:.2f}x",
                    f"{r['short_burn']:.2f}x",
                    "yes" if r["firing"] else "",
                )
                for r in o["status"]["rules"]
            ],
        )
        for ch in o["changes"]:
            console.print(f"alert {ch['action']}: {ch['alert']['summary']}")

    emit(out, as_json, render)


def alerts_command(
    ctx: typer.Context,
    deployment: str | None = typer.Argument(None),
    status: str | None = typer.Option(None, "--status", help="firing or resolved"),
    limit: int = typer.Option(50, "--limit", min=1),
    as_json: bool = JSON_OPT,
) -> None:
    """Alerts, newest first."""
    items = client(ctx).alerts(deployment, status, limit)

    def render(alerts: list[Any]) -> None:
        table(
            "alerts",
            ["id", "deployment", "slo", "severity", "status", "fired", "resolved", "summary"],
            [
                (
                    a.id,
                    a.deployment,
                    a.slo,
                    a.severity,
                    f"[red]{a.status}[/red]" if a.status == "firing" else a.status,
                    ts(a.fired_at),
                    ts(a.resolved_at) if a.resolved_at else "",
                    a.summary,
                )
                for a in alerts
            ],
        )

    emit(items, as_json, render)


def install(app: typer.Typer) -> None:
    app.add_typer(monitors, name="monitors")
    app.add_typer(slos, name="slos")
    app.command("alerts")(alerts_command)
