"""``mlpilot rollout …`` (progressive delivery) and ``mlpilot releases``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from mlpilot.cli.context import client
from mlpilot.cli.output import console, emit, print_json, table, ts
from mlpilot.errors import InvalidArgument
from mlpilot.records import Event, Rollout, RolloutPhase

rollout = typer.Typer(help="Progressive delivery: canary, blue-green, A/B and bandit rollouts.", no_args_is_help=True)
releases = typer.Typer(help="Releases: sets of artifact versions rolled out as one unit.", no_args_is_help=True)
JSON_OPT = typer.Option(False, "--json", help="print JSON for scripts")

_COLOURS = {
    "promoted": "green",
    "rolled_back": "red",
    "aborted": "yellow",
    "paused": "yellow",
    "pass": "green",
    "fail": "red",
    "inconclusive": "yellow",
}


def colour(word: str) -> str:
    c = _COLOURS.get(word, "cyan")
    return f"[{c}]{word}[/{c}]"


def where(r: Rollout) -> str:
    """``canary step 2/4 (25%)``, ``shadow``, ``promoted`` …"""
    if r.phase is RolloutPhase.CANARY:
        return f"canary step {r.step + 1}/{len(r.spec.steps)} ({r.spec.steps[r.step].weight}%)"
    if r.phase is RolloutPhase.PAUSED and r.paused_phase is not None:
        return f"paused (in {r.paused_phase.value})"
    return r.phase.value


def show_gates(decision: dict[str, Any] | None) -> None:
    """The analyses of a decision record as a table of verdicts with their one-line evidence."""
    items = (decision or {}).get("analyses") or []
    if not items:
        return
    table(
        "gates",
        ["analysis", "verdict", "evidence"],
        [(a.get("name"), colour(str(a.get("verdict"))), a.get("message", "")) for a in items],
    )


def show_rollout(r: Rollout) -> None:
    console.print(
        f"rollout {r.id} of [bold]{r.deployment}[/bold]: {r.spec.strategy.value} "
        f"{r.baseline} → {r.candidate}{' + ' + ', '.join(r.arms) if r.arms else ''}  "
        f"[bold]{colour(where(r))}[/bold]",
        soft_wrap=True,
    )
    console.print(f"started {ts(r.started_at)} by {r.created_by}; updated {ts(r.updated_at)}", soft_wrap=True)
    if r.message:
        console.print(f"last decision: {r.message}", soft_wrap=True)
    traffic = (r.last_decision or {}).get("traffic")
    if traffic:
        console.print("traffic: " + ", ".join(f"{k} {v}%" for k, v in traffic.items()), soft_wrap=True)
    show_gates(r.last_decision)


def show_decisions(events: list[Event]) -> None:
    for e in events:
        after = e.after or {}
        frm = (e.before or {}).get("phase", "")
        console.print(
            f"{ts(e.ts)}  [bold]{e.action.removeprefix('rollout.')}[/bold]  {frm} → {after.get('phase', '')} "
            f"— {after.get('reason', '')}  ({e.actor})",
            soft_wrap=True,
        )
        show_gates(after)


def _steps(text: str | None, duration: str | None, samples: int | None) -> list[dict[str, Any]] | None:
    if text is None:
        return None
    try:
        weights = [int(w) for w in text.split(",") if w.strip()]
    except ValueError as exc:
        raise InvalidArgument(f"--steps takes comma-separated percentages like 5,25,50,100, got {text!r}") from exc
    out: list[dict[str, Any]] = []
    for w in weights:
        step: dict[str, Any] = {"weight": w}
        if duration is not None:
            step["min_duration"] = duration
        if samples is not None:
            step["min_samples"] = samples
        out.append(step)
    return out


def _analysis(text: str) -> dict[str, Any]:
    """``performance`` or ``latency:max_ratio=1.3,quantile=0.95`` or ``custom:expression=…`` (JSON values allowed)."""
    kind, _, rest = text.partition(":")
    params: dict[str, Any] = {}
    out: dict[str, Any] = {"kind": kind.strip()}
    if rest:
        pairs = [rest] if rest.startswith("expression=") else rest.split(",")
        for pair in pairs:
            key, eq, value = pair.partition("=")
            if not eq:
                raise InvalidArgument(f"--analysis {text!r}: use KIND or KIND:KEY=VALUE,…")
            try:
                parsed: Any = json.loads(value)
            except json.JSONDecodeError:
                parsed = value
            key = key.strip()
            if key in ("min_samples", "required", "name"):
                out[key] = parsed
            else:
                params[key] = parsed
    out["params"] = params
    return out


def build_spec(
    candidate: str | None,
    *,
    spec_file: Path | None = None,
    strategy: str | None = None,
    steps: str | None = None,
    step_duration: str | None = None,
    step_samples: int | None = None,
    shadow: str | None = None,
    bake: str | None = None,
    split: int | None = None,
    arms: list[str] | None = None,
    bandit: str | None = None,
    analyses: list[str] | None = None,
    alpha: float | None = None,
    on_fail: str | None = None,
    on_inconclusive: str | None = None,
    promote_alias: str | None = None,
    reference: str | None = None,
    variant: str | None = None,
    baseline: str | None = None,
) -> dict[str, Any]:
    """The rollout spec from a JSON file and/or the command-line options (options win)."""
    body: dict[str, Any] = {}
    if spec_file is not None:
        try:
            body = json.loads(spec_file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InvalidArgument(f"cannot read rollout spec {spec_file}: {exc}") from exc
    if candidate is not None:
        if reference is not None:
            body["release"] = {"model": candidate, "reference": reference}
            body.pop("candidate", None)
        else:
            body["candidate"] = candidate
    simple = {
        "strategy": strategy,
        "bake": bake,
        "split": split,
        "alpha": alpha,
        "on_fail": on_fail,
        "on_inconclusive": on_inconclusive,
        "promote_alias": promote_alias,
        "variant": variant,
        "baseline": baseline,
    }
    body.update({k: v for k, v in simple.items() if v is not None})
    built = _steps(steps, step_duration, step_samples)
    if built is not None:
        body["steps"] = built
    elif step_duration is not None or step_samples is not None:
        body["steps"] = _steps("5,25,50,100", step_duration, step_samples)
    if shadow is not None:
        body["shadow"] = {"min_duration": shadow}
        if step_samples is not None:
            body["shadow"]["min_samples"] = step_samples
    if arms:
        body["arms"] = list(arms)
        body.setdefault("strategy", "bandit")
    if bandit is not None:
        body["bandit"] = {**body.get("bandit", {}), "algorithm": bandit}
    if analyses:
        body["analyses"] = [_analysis(a) for a in analyses]
    return body


@rollout.command("start")
def rollout_start(
    ctx: typer.Context,
    deployment: str = typer.Argument(..., help="the deployment to roll out on"),
    candidate: str | None = typer.Argument(None, help="the candidate model, NAME:VERSION or NAME@ALIAS"),
    spec_file: Path | None = typer.Option(None, "--spec", help="a JSON rollout spec (options override it)"),
    strategy: str | None = typer.Option(None, "--strategy", help="canary (default), blue_green, ab or bandit"),
    steps: str | None = typer.Option(None, "--steps", help="canary weights, e.g. 5,25,50,100"),
    step_duration: str | None = typer.Option(None, "--step-duration", help="minimum time per step, e.g. 2m"),
    step_samples: int | None = typer.Option(None, "--step-samples", help="minimum candidate requests per step"),
    shadow: str | None = typer.Option(None, "--shadow", help="start with a shadow phase of this duration"),
    bake: str | None = typer.Option(None, "--bake", help="blue-green bake time"),
    split: int | None = typer.Option(None, "--split", help="A/B: % of traffic to the candidate"),
    arm: list[str] | None = typer.Option(None, "--arm", help="bandit: another candidate model (repeat)"),
    bandit: str | None = typer.Option(None, "--bandit", help="thompson (default), epsilon_greedy or ucb"),
    analysis: list[str] | None = typer.Option(
        None, "--analysis", help="a gate, KIND[:KEY=VALUE,…] (repeat); replaces the default gates"
    ),
    alpha: float | None = typer.Option(None, "--alpha", help="family-wise false-rollback rate (default 0.05)"),
    on_fail: str | None = typer.Option(None, "--on-fail", help="rollback (default) or pause"),
    on_inconclusive: str | None = typer.Option(None, "--on-inconclusive", help="advance (default), pause, rollback"),
    promote_alias: str | None = typer.Option(None, "--promote-alias", help="move this alias on promotion"),
    reference: str | None = typer.Option(None, "--reference", help="release: the candidate's reference dataset"),
    variant: str | None = typer.Option(None, "--variant", help="the candidate variant's name"),
    baseline: str | None = typer.Option(None, "--baseline", help="the stable variant (default: the busiest)"),
    wait: bool = typer.Option(False, "--wait", help="follow the rollout until it settles"),
    timeout: float = typer.Option(3600.0, "--timeout", help="seconds --wait waits"),
    as_json: bool = JSON_OPT,
) -> None:
    """Start a rollout of CANDIDATE on DEPLOYMENT; `mlpilot up` advances it through its gates."""
    body = build_spec(
        candidate,
        spec_file=spec_file,
        strategy=strategy,
        steps=steps,
        step_duration=step_duration,
        step_samples=step_samples,
        shadow=shadow,
        bake=bake,
        split=split,
        arms=arm,
        bandit=bandit,
        analyses=analysis,
        alpha=alpha,
        on_fail=on_fail,
        on_inconclusive=on_inconclusive,
        promote_alias=promote_alias,
        reference=reference,
        variant=variant,
        baseline=baseline,
    )
    c = client(ctx)
    r = c.start_rollout(deployment, body)
    if wait:
        r = follow(c, r, timeout, quiet=as_json)
    emit(r, as_json, show_rollout)
    if wait and r.phase is not RolloutPhase.PROMOTED:
        raise typer.Exit(1)


def follow(c: Any, r: Rollout, timeout: float, quiet: bool = False) -> Rollout:
    """Print every transition of rollout ``r`` until it settles."""
    seen = {"last": 0}

    def changed(now: Rollout) -> None:
        if quiet:
            return
        for e in c.rollout_decisions(now.id):
            if e.id > seen["last"]:
                seen["last"] = e.id
                show_decisions([e])

    return c.wait_rollout(r.id, timeout_s=timeout, on_change=changed)


def _target(ctx: typer.Context, deployment: str, rollout_id: int | None) -> Rollout:
    return client(ctx).rollout(deployment, rollout_id)


@rollout.command("status")
def rollout_status(
    ctx: typer.Context,
    deployment: str = typer.Argument(..., help="the deployment"),
    rollout_id: int | None = typer.Option(None, "--id", help="a specific rollout (default: active, else latest)"),
    decisions: bool = typer.Option(False, "--decisions", help="also every transition with its decision record"),
    as_json: bool = JSON_OPT,
) -> None:
    """Where the deployment's rollout is, with the verdict of every gate at the last decision."""
    r = _target(ctx, deployment, rollout_id)
    if as_json:
        out: dict[str, Any] = r.model_dump(mode="json")
        if decisions:
            out["decisions"] = [e.model_dump(mode="json") for e in client(ctx).rollout_decisions(r.id)]
        print_json(out)
        return
    show_rollout(r)
    if decisions:
        show_decisions(client(ctx).rollout_decisions(r.id))


def _act(ctx: typer.Context, deployment: str, rollout_id: int | None, action: str, as_json: bool) -> None:
    r = _target(ctx, deployment, rollout_id)
    r = getattr(client(ctx), f"{action}_rollout")(r.id)
    emit(r, as_json, show_rollout)


@rollout.command("pause")
def rollout_pause(
    ctx: typer.Context, deployment: str, rollout_id: int | None = typer.Option(None, "--id"), as_json: bool = JSON_OPT
) -> None:
    """Hold the rollout where it is (traffic unchanged) until resumed."""
    _act(ctx, deployment, rollout_id, "pause", as_json)


@rollout.command("resume")
def rollout_resume(
    ctx: typer.Context, deployment: str, rollout_id: int | None = typer.Option(None, "--id"), as_json: bool = JSON_OPT
) -> None:
    """Resume a paused rollout."""
    _act(ctx, deployment, rollout_id, "resume", as_json)


@rollout.command("promote")
def rollout_promote(
    ctx: typer.Context, deployment: str, rollout_id: int | None = typer.Option(None, "--id"), as_json: bool = JSON_OPT
) -> None:
    """Promote the candidate now, skipping the remaining gates."""
    _act(ctx, deployment, rollout_id, "promote", as_json)


@rollout.command("abort")
def rollout_abort(
    ctx: typer.Context, deployment: str, rollout_id: int | None = typer.Option(None, "--id"), as_json: bool = JSON_OPT
) -> None:
    """Abort: the traffic split from before the rollout comes back; the candidate is removed."""
    _act(ctx, deployment, rollout_id, "abort", as_json)


@rollout.command("list")
def rollout_list(
    ctx: typer.Context,
    deployment: str | None = typer.Argument(None, help="only this deployment's rollouts"),
    active: bool = typer.Option(False, "--active", help="only running rollouts"),
    as_json: bool = JSON_OPT,
) -> None:
    """Rollouts, newest first."""
    items = client(ctx).rollouts(deployment, active=True if active else None)
    emit(
        items,
        as_json,
        lambda rs: table(
            "rollouts",
            ["id", "deployment", "strategy", "baseline", "candidate", "phase", "started", "by", "last decision"],
            [
                (
                    r.id,
                    r.deployment,
                    r.spec.strategy.value,
                    r.baseline,
                    r.candidate,
                    colour(where(r)),
                    ts(r.started_at),
                    r.created_by,
                    r.message[:80],
                )
                for r in rs
            ],
        ),
    )


@rollout.command("tick")
def rollout_tick(ctx: typer.Context, as_json: bool = JSON_OPT) -> None:
    """Reconcile every active rollout now (what `mlpilot up` does every few seconds)."""
    changed = client(ctx).tick_rollouts()
    emit(
        changed,
        as_json,
        lambda rs: console.print(
            f"{len(rs)} rollout(s) moved: " + ", ".join(f"{r.id} ({r.deployment}) → {where(r)}" for r in rs)
        ),
    )


@releases.command("list")
def releases_list(ctx: typer.Context, deployment: str, as_json: bool = JSON_OPT) -> None:
    """The deployment's releases, newest first."""
    emit(
        client(ctx).releases(deployment),
        as_json,
        lambda rs: table(
            f"releases of {deployment}",
            ["release", "status", "artifacts", "rollout", "created", "by"],
            [
                (
                    r.number,
                    colour(r.status),
                    ", ".join(f"{k}={v}" for k, v in r.artifacts.items()),
                    r.rollout_id,
                    ts(r.created_at),
                    r.created_by,
                )
                for r in rs
            ],
        ),
    )


@releases.command("rollback")
def releases_rollback(
    ctx: typer.Context,
    deployment: str,
    to: int | None = typer.Option(
        None, "--to", help="the release to go back to (default: the one before the live one)"
    ),
    as_json: bool = JSON_OPT,
) -> None:
    """Go back to an earlier release as one unit (model and reference data), at once."""
    emit(client(ctx).rollback_release(deployment, to), as_json, show_rollout)


def install(app: typer.Typer) -> None:
    app.add_typer(rollout, name="rollout")
    app.add_typer(releases, name="releases")


__all__ = ["build_spec", "follow", "install", "show_rollout"]
