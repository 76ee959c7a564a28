"""The guided tour behind ``mlpilot demo``: real models on a real data set, through the public SDK only.

It grows with the platform: each feature adds its chapter. Re-running it on the same home reuses what is already
registered (same bytes → same version) and redeploys, so the tour is repeatable.
"""

from __future__ import annotations

import hashlib
import statistics
import time
from collections import Counter
from datetime import datetime, timezone
from typing import Any

import numpy as np
from rich.console import Console

from mlpilot.client import Client
from mlpilot.errors import LoadError, MissingExtra, MlpilotError, NotFound
from mlpilot.flavors import flavor_for_object
from mlpilot.records import ArtifactVersion
from mlpilot.settings import Settings

MODEL = "breast-cancer"
DEPLOYMENT = "breast-cancer"


def _train() -> dict[str, Any]:
    try:
        from sklearn.datasets import load_breast_cancer
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import train_test_split
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
    except ImportError as exc:
        raise MissingExtra("the demo", "sklearn") from exc
    data = load_breast_cancer(as_frame=True)
    X, y = data.data, data.target
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=7, stratify=y)
    v1 = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X_train, y_train)
    v2 = RandomForestClassifier(n_estimators=50, random_state=7).fit(X_train, y_train)
    return {
        "X_train": X_train,
        "y_train": y_train,
        "X_test": X_test,
        "y_test": y_test,
        "models": [("logistic regression", v1), ("random forest (50 trees)", v2)],
        "n_rows": len(X),
        "n_features": X.shape[1],
    }


def _register_once(client: Client, name: str, model: Any, **kwargs: Any) -> tuple[ArtifactVersion, bool]:
    """Register unless a version with the same bytes exists (keeps re-runs of the tour from piling up)."""
    data = flavor_for_object(model).serialize(model).data
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    try:
        existing = [v for v in client.list_versions(name) if v.digest == digest]
    except NotFound:  # no such model yet
        existing = []
    if existing:
        return existing[0], False
    return client.register_model(name, model, **kwargs), True


def _wait_logged(client: Client, rows: int, since: datetime) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if len(client.logs(DEPLOYMENT, since=since.isoformat(), limit=100_000)) >= rows:
            return
        time.sleep(0.25)


def _observe(client: Client, say: Any, d: dict[str, Any], request_ids: list[str], since: datetime) -> None:
    """Chapter 7: every prediction is logged; labels arrive late; an upstream change is caught as drift."""
    X_test, y_test = d["X_test"], d["y_test"]
    _wait_logged(client, len(request_ids), since)
    labelled = int(len(request_ids) * 0.6)
    client.feedback(
        DEPLOYMENT,
        [
            {"request_id": rid, "label": int(y)}
            for rid, y in zip(request_ids[:labelled], y_test.iloc[:labelled], strict=True)
        ],
    )
    logged = client.logs(DEPLOYMENT, since=since.isoformat(), limit=100_000)
    say(
        f"\n[bold]7. Observe[/bold]: all {len(logged)} predictions are in the request log (Parquet, queried with "
        f"DuckDB). Labels arrive late: {labelled} of {len(request_ids)} so far (the rest stay pending, not dropped)."
    )
    before = client.drift(DEPLOYMENT, since=since.isoformat())
    say(
        f"   drift vs the reference data: {before['result']['share_drifted']:.0%} of features drifted "
        f"— {'DRIFT' if before['result']['is_drift'] else 'none'}, as expected for held-out rows."
    )
    # An upstream change: a feature pipeline starts reporting 'mean area' and 'worst area' in different units.
    shifted = X_test.assign(**{"mean area": X_test["mean area"] * 1.8, "worst area": X_test["worst area"] * 1.8})
    drift_start = datetime.now(timezone.utc)
    for i in range(0, len(shifted), 10):
        client.predict(DEPLOYMENT, shifted.iloc[i : i + 10])
    _wait_logged(client, len(shifted), drift_start)
    after = client.drift(DEPLOYMENT, since=drift_start.isoformat())
    found = [f["feature"] for f in after["result"]["features"] if f["is_drift"]]
    say(
        f"   an upstream unit change rescales 'mean area' and 'worst area' by 1.8: the drift report flags "
        f"{found} (KS test, Holm-corrected over {len(after['result']['features'])} features). "
        f"Try: mlpilot drift {DEPLOYMENT} --since 1h --html drift.html"
    )
    _alert(client, say, len(shifted))


def _alert(client: Client, say: Any, rows: int) -> None:
    """Chapter 7b: a scheduled drift monitor and an SLO on it; the drift burns the budget and an alert fires."""
    defaults = [m.name for m in client.list_monitors(DEPLOYMENT)]
    client.create_monitor(
        DEPLOYMENT,
        "drift-live",
        {"kind": "drift", "window": "1h", "window_rows": rows, "every": "1m"},
        replace=True,
    )
    client.create_slo(
        DEPLOYMENT,
        "no-drift",
        {
            "indicator": "drift",
            "monitor": "drift-live",
            "objective": 0.99,
            "rules": [{"long": "10m", "short": "1m", "burn_rate": 10, "severity": "page"}],
        },
        replace=True,
    )
    result = client.run_monitor(DEPLOYMENT, "drift-live")
    time.sleep(1.5)  # the verdict holds from the run on: let a little of that time pass before judging the budget
    check = client.check_slo(DEPLOYMENT, "no-drift")
    status = check["status"]
    alert = status["alert"]
    say(
        f"   monitors run on a schedule ({', '.join(defaults)} were created on deploy): 'drift-live' checks the last "
        f"{rows} rows every minute — {result.status.value.upper()}: {result.message}."
    )
    if alert:
        rule = max(status["rules"], key=lambda r: r["long_burn"])
        say(
            f"   the SLO 'no-drift' (99% of the time without drift) burns its budget {rule['long_burn']:.0f}x faster "
            f"than allowed: [bold red]{alert['severity']} alert {'fired' if check['changes'] else 'firing'}[/bold red] "
            f"(#{alert['id']}, recorded as an event; webhooks in settings or per SLO). "
            f"Try: mlpilot monitors show {DEPLOYMENT} drift-live · mlpilot slos list {DEPLOYMENT} · mlpilot alerts"
        )
    else:
        say(f"   the SLO 'no-drift' has not fired yet: {status['rules']}")
    for inc in client.incidents(DEPLOYMENT, status="open"):
        diagnosis = client.incident_diagnosis(inc.id)
        say(
            f"   the page opened [bold]incident #{inc.id}[/bold]; the RCA engine says "
            f"[bold]{diagnosis['verdict']}[/bold]: {diagnosis['summary']}. It is resolved by hand here "
            f"(the feed's units are fixed upstream). Try: mlpilot incidents show {inc.id}"
        )
        client.resolve_incident(inc.id, "the feed's units were fixed upstream (demo)")


class SegmentBug:
    """A candidate with a bug on one segment: it answers like ``model`` except for rows whose ``feature`` is above
    ``above`` (large tumours), where it flips the class — the kind of regression a global metric hides."""

    def __init__(self, model: Any, feature: str, above: float) -> None:
        self.model, self.feature, self.above = model, feature, above
        self.classes_ = model.classes_

    def predict(self, X: Any) -> Any:
        out = self.model.predict(X).copy()
        bug = (X[self.feature] > self.above).to_numpy()
        out[bug] = 1 - out[bug]
        return out

    def predict_proba(self, X: Any) -> Any:
        proba = self.model.predict_proba(X).copy()
        bug = (X[self.feature] > self.above).to_numpy()
        proba[bug] = proba[bug][:, ::-1]
        return proba


def _roll_out(client: Client, say: Any, d: dict[str, Any], reference: str) -> None:
    """Chapter 9: two rollouts gated by the analyses — a retrained model is promoted, a model with a bug on one
    segment is rolled back, each decision with its statistics."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X_train, y_train, X_test, y_test = d["X_train"], d["y_train"], d["X_test"], d["y_test"]
    retrained = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=500)).fit(X_train, y_train)
    cut = float(X_train["worst area"].quantile(0.75))
    buggy = SegmentBug(retrained, "worst area", cut)
    say(
        "\n[bold]9. Roll out[/bold]: candidates go through a canary (50% → 100%) gated on errors, latency and "
        "accuracy from the labels (a confidence sequence: valid however often it is checked)."
    )
    abort_earlier_rollouts(client, DEPLOYMENT, say)
    client.deploy(DEPLOYMENT, f"{MODEL}@champion", variant="champion", replace=True)
    rng = np.random.default_rng(3)
    for label, model in (("a retrained model", retrained), ("a model with a bug on large tumours", buggy)):
        v, _ = _register_once(client, MODEL, model, sample=X_test.head(5), metadata={"algorithm": label})
        client.bind(v.ref, "reference", reference)
        r = client.start_rollout(
            DEPLOYMENT,
            candidate=v.ref,
            variant=f"candidate-v{v.version}",
            steps=[{"weight": w, "min_duration": "2s", "min_samples": 40} for w in (50, 100)],
            analyses=[
                {"kind": "error_rate", "min_samples": 40, "params": {"tolerance": 0.05}},
                {"kind": "latency", "min_samples": 40, "params": {"max_ratio": 3.0}},
                {"kind": "performance", "min_samples": 30, "params": {"margin": 0.1}},
            ],
            promote_alias="champion",
        )
        say(f"   rollout {r.id}: {label} ({v.ref}) vs {r.baseline} — {r.message}")
        seen = max((e.id for e in client.rollout_decisions(r.id)), default=0)
        deadline = time.monotonic() + 90
        while r.active and time.monotonic() < deadline:
            since = datetime.now(timezone.utc)
            rows = rng.choice(len(X_test), size=40)
            ids = [client.predict(DEPLOYMENT, X_test.iloc[[int(i)]]).request_id or "" for i in rows]
            _wait_logged(client, len(ids), since)
            client.feedback(
                DEPLOYMENT,
                [{"request_id": rid, "label": int(y_test.iloc[int(i)])} for rid, i in zip(ids, rows, strict=True)],
            )
            client.tick_rollouts()
            r = client.rollout(rollout_id=r.id)
            for e in client.rollout_decisions(r.id):
                if e.id > seen:
                    seen = e.id
                    _say_decision(say, e.after or {})
        colour = "green" if r.phase.value == "promoted" else "red"
        reason = r.message.removeprefix("promoted: ")
        say(f"   → [bold {colour}]{r.phase.value.replace('_', ' ')}[/bold {colour}]: {reason}")
    dep = client.get_deployment(DEPLOYMENT)
    say(
        f"   {DEPLOYMENT} now serves {dep.spec.traffic} ({MODEL}@champion moved with the promotion). "
        f"Try: mlpilot rollout status {DEPLOYMENT} --decisions · mlpilot rollout list · mlpilot ship MODEL_FILE -d NAME"
    )


def abort_earlier_rollouts(client: Client, deployment: str, say: Any) -> None:
    """A rollout an earlier tour left active (paused, or the tour interrupted) would refuse the tour's own."""
    for left in client.rollouts(deployment, active=True):
        client.abort_rollout(left.id)
        say(f"   rollout {left.id} of an earlier tour was still {left.phase.value}: aborted")


def _labelled_traffic(
    client: Client, d: dict[str, Any], rng: np.random.Generator, n: int, bug: float
) -> tuple[int, int]:
    """``n`` single-row requests from the held-out set, ``bug`` of them with 'worst area' x1000 (an upstream unit
    bug), each label sent as feedback once logged; returns (answered, refused)."""
    X_test, y_test = d["X_test"], d["y_test"]
    since = datetime.now(timezone.utc)
    answered: list[tuple[str, int]] = []
    refused = 0
    for i in rng.choice(len(X_test), size=n):
        row = X_test.iloc[[int(i)]]
        if rng.uniform() < bug:
            row = row.assign(**{"worst area": row["worst area"] * 1000})
        try:
            answered.append((client.predict(DEPLOYMENT, row).request_id or "", int(y_test.iloc[int(i)])))
        except MlpilotError:  # refused by the input quarantine (422)
            refused += 1
    _wait_logged(client, len(answered) + refused, since)  # refused requests are logged too (status quarantined)
    client.feedback(DEPLOYMENT, [{"request_id": rid, "label": y} for rid, y in answered])
    return len(answered), refused


def _heal(client: Client, say: Any, d: dict[str, Any]) -> None:
    """Chapter 10: an upstream bug pages accuracy; the incident is diagnosed with evidence, the suggested
    quarantine is approved, verified on the accuracy of what is still served, then lifted once upstream is fixed."""
    rng = np.random.default_rng(11)
    say(
        "\n[bold]10. Diagnose and heal[/bold]: an accuracy SLO from the labels (97%, paging fast), the healing "
        "policy in suggest mode (a person approves), verification 5 s after an action."
    )
    client.set_healing_policy(DEPLOYMENT, mode="suggest", verify_after_s=5)
    # the short window holds the last bad requests when the check runs after their labels arrive (on a busy machine
    # logging and feedback take seconds: a 10 s window had emptied below min_events once in CI)
    rules = [{"long": "2m", "short": "30s", "burn_rate": 3, "severity": "page"}]
    spec = {"indicator": "accuracy", "objective": 0.97, "rules": rules, "min_events": 20}
    client.create_slo(DEPLOYMENT, "accuracy-fast", spec, replace=True)
    _labelled_traffic(client, d, rng, 60, 0.0)
    _labelled_traffic(client, d, rng, 120, 0.5)
    check = client.check_slo(DEPLOYMENT, "accuracy-fast")
    changes = check["changes"]
    incidents = client.incidents(DEPLOYMENT, status="open")
    if not changes or not incidents:
        burn = [{k: r.get(k) for k in ("long_burn", "short_burn", "firing")} for r in check["status"]["rules"]]
        say(
            f"   the accuracy SLO did not page ({changes or 'no change'}; {len(incidents)} open incident(s); "
            f"burn {burn}); skipping the rest of the chapter"
        )
        return
    inc = incidents[0]
    diagnosis = client.incident_diagnosis(inc.id)
    say(
        f"   an upstream feed now sends 'worst area' x1000 for half of the requests: accuracy pages, "
        f"[bold]incident #{inc.id}[/bold] opens and is diagnosed ([bold]{diagnosis['verdict']}[/bold]):"
    )
    for h in diagnosis["hypotheses"][:3]:
        say(f"     {h['confidence']:.0%} {h['cause']} on {h['component']} — evidence {', '.join(h['evidence'])}")
    waiting = [r for r in client.incident_remediations(inc.id) if r["state"] == "suggested"]
    if not waiting:
        say("   no remediation suggested; see mlpilot incidents show " + str(inc.id))
        return
    action = waiting[-1]["action"]
    say(
        f"   suggested: [bold]{action['kind']}[/bold] on {action['target']} {action['params']} — "
        f"{waiting[-1]['decision']['reason']}; approved (mlpilot incidents approve {inc.id})."
    )
    client.approve_remediation(inc.id)
    approved = time.monotonic()
    time.sleep(1.5)  # verification skips the action's first moments (a quarter of verify_after here)
    served, refused = _labelled_traffic(client, d, rng, 80, 0.5)
    time.sleep(max(0.0, approved + 5.5 - time.monotonic()))  # verify_after_s
    deadline = time.monotonic() + 30
    while True:  # what the server's scheduler does on its own: verify due remediations (once the request log has
        client.tick_monitors()  # the requests served since the action: on a busy machine that can take a while)
        [r] = [r for r in client.incident_remediations(inc.id) if r["action"] == action]
        if r["state"] != "executed" or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    v = r.get("verification") or {}
    colour = "green" if r["state"] == "verified" else "red"
    say(
        f"   {refused} of {served + refused} requests were refused with 422 (the quarantine names the rule); "
        f"[bold {colour}]{r['state']}[/bold {colour}]: error rate of what is served {v.get('before', float('nan')):.0%}"
        f" during the incident → {v.get('after', float('nan')):.0%} after ({v.get('reason', '')}); "
        f"incident #{inc.id} is {client.incident(inc.id).status.value}."
    )
    dep = client.get_deployment(DEPLOYMENT)
    client.apply_deployment(DEPLOYMENT, dep.spec.model_copy(update={"quarantine": []}))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the SLO's short window passes without new bad requests: the page resolves
        # (until the check itself resolves the alert: a re-run of the tour would otherwise find it still firing)
        if client.check_slo(DEPLOYMENT, "accuracy-fast")["status"]["alert"] is None:
            break
        time.sleep(2.0)
    client.resolve_incident(inc.id, "upstream fixed the unit; quarantine lifted (demo)")
    say(
        f"   upstream fixes the unit: the quarantine is lifted and the incident resolved. "
        f"Try: mlpilot incidents show {inc.id} · mlpilot incidents policy {DEPLOYMENT} · mlpilot incidents list"
    )


def _say_decision(say: Any, after: dict[str, Any]) -> None:
    action = after.get("action", "")
    if action in ("begin", "complete"):
        return
    say(f"     [bold]{action}[/bold]: {after.get('reason', '')}")
    if action in ("rollback", "promote"):
        for a in after.get("analyses", []):
            say(f"       {a.get('name')}: {a.get('verdict')} — {a.get('message')}")


def run_tour(settings: Settings, console: Console) -> None:
    """Train two versions of a real model, register them with a reference dataset, deploy, and narrate."""
    say = console.print
    say("[bold cyan]mlpilot demo[/bold cyan] — register → serve → observe → roll out → diagnose → heal\n")
    say(f"home: {settings.home.resolve()} (embedded: SQLite + local artifact store, no server needed)\n")
    d = _train()
    say(
        f"[bold]1. Train[/bold] two models on scikit-learn's breast-cancer data set "
        f"({d['n_rows']} rows, {d['n_features']} features, 70/30 split)."
    )
    with Client(settings=settings, actor="demo") as client:
        versions = []
        for label, model in d["models"]:
            acc = float((model.predict(d["X_test"]) == d["y_test"]).mean())
            v, new = _register_once(
                client,
                MODEL,
                model,
                sample=d["X_test"].head(5),
                metadata={"algorithm": label, "holdout_accuracy": round(acc, 4)},
                tags={"stage": "demo"},
            )
            versions.append(v)
            say(
                f"   {label}: holdout accuracy {acc:.3f} → {'registered' if new else 'already registered as'} "
                f"[bold]{v.ref}[/bold] ({v.flavor}, {v.size / 1024:.0f} KiB, {v.digest[:15]}…)"
            )
        v1, v2 = versions
        sig = v1.signature or {}
        say(
            f"\n[bold]2. Signature[/bold] inferred from a 5-row sample: {len(sig.get('inputs', []))} typed inputs "
            f"(e.g. {sig['inputs'][0]['name']}: {sig['inputs'][0]['datatype']}), outputs "
            f"{[o['name'] for o in sig.get('outputs', [])]}. The data plane validates requests against it."
        )

        reference = d["X_train"].assign(target=d["y_train"].values)
        ref = client.register_dataset(f"{MODEL}-reference", reference, bind_to=v1.ref)
        client.bind(v2.ref, "reference", ref.ref)
        say(
            f"\n[bold]3. Reference data[/bold]: training set registered as [bold]{ref.ref}[/bold] "
            f"({ref.metadata['rows']} rows) and bound to {v1.ref} and {v2.ref} — the default drift reference."
        )

        client.set_alias(MODEL, "champion", v1.version)
        client.set_alias(MODEL, "challenger", v2.version)
        say(f"\n[bold]4. Aliases[/bold]: {MODEL}@champion → v{v1.version}, {MODEL}@challenger → v{v2.version}.")

        dep = client.deploy(DEPLOYMENT, f"{MODEL}@champion", variant="champion", replace=True)
        dep = client.deploy(DEPLOYMENT, f"{MODEL}@challenger", variant="challenger", shadow=True)
        say(
            f"\n[bold]5. Deploy[/bold]: [bold]{DEPLOYMENT}[/bold] serves champion ({dep.spec.variants[0].model}) "
            f"at 100% with the challenger as a shadow on mirrored traffic (revision {dep.revision})."
        )
        dep = client.set_traffic(DEPLOYMENT, {"champion": 90, "challenger": 10})
        say(
            f"   then a 90/10 split: {dep.spec.traffic} (revision {dep.revision}, "
            f"routing snapshot v{dep.snapshot_version} compiled for the data plane)."
        )

        X_test, y_test = d["X_test"], d["y_test"]
        counts: Counter[str] = Counter()
        correct = 0
        latencies = []
        request_ids: list[str] = []
        tour_start = datetime.now(timezone.utc)
        for i in range(len(X_test)):
            t0 = time.perf_counter()
            p = client.predict(DEPLOYMENT, X_test.iloc[[i]])
            latencies.append(time.perf_counter() - t0)
            counts[p.variant or "?"] += 1
            correct += int(p["predict"][0] == y_test.iloc[i])
            request_ids.append(p.request_id or "")
        split = ", ".join(f"{k} {n} ({n / len(X_test):.0%})" for k, n in counts.most_common())
        say(
            f"\n[bold]6. Serve[/bold]: {len(X_test)} held-out rows sent one by one through the data plane "
            f"(Open Inference Protocol v2, validated against the signature): {split}; "
            f"accuracy {correct / len(X_test):.3f}; median latency {statistics.median(latencies) * 1000:.1f} ms "
            f"(in-process)."
        )

        _observe(client, say, d, request_ids, tour_start)
        _roll_out(client, say, d, ref.ref)
        _heal(client, say, d)

        events = client.events(limit=8)
        say("\n[bold]11. Audit trail[/bold] — every change is an event (newest last):")
        for e in events:
            say(f"   #{e.id} {e.action:<20} {e.subject:<40} by {e.actor}")
        say(
            "\nTry: [bold]mlpilot models show breast-cancer@champion[/bold] · "
            "[bold]mlpilot deployments show breast-cancer[/bold] · [bold]mlpilot events[/bold]"
        )
        _llm_chapter(client, say)


def _llm_chapter(client: Client, say: Any) -> None:
    """Chapter 12 (LLM apps) needs the ``llm`` extra and the offline model packages; without them it says how to
    get them instead of failing the tour."""
    try:
        from mlpilot.llm.local import LocalBackend, LocalEmbedder

        LocalEmbedder().close()
        LocalBackend().close()
    except (ImportError, MissingExtra, LoadError) as exc:
        say(f"\n[bold]12. An LLM app[/bold]: skipped — {exc}")
        return
    from mlpilot.demo_llm.tour import run_llm_chapter

    run_llm_chapter(client, say)
