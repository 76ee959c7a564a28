"""The rollout controller: a reconcile loop over the persisted rollouts, with the policy kept pure.

``tick(now)`` visits every active rollout: it makes the deployment's traffic match the rollout's state
(:func:`policy.desired_traffic` — this also finishes a change a crash interrupted), gathers the evidence of the
current phase from the request log and the feedback (``evidence.py``), runs the analyses (``analyses.py``) and
asks the policy (:func:`policy.decide`) what to do. A transition is a compare-and-set on the rollout's revision
with its decision record as the event, so several processes ticking at once, or a restart in the middle, never
record a transition twice. Traffic changes are idempotent (applied only when the deployment differs).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from mlpilot.clock import Clock
from mlpilot.deployments import Deployments
from mlpilot.errors import Conflict, InvalidArgument, MlpilotError, NotFound
from mlpilot.records import (
    AnalysisKind,
    AnalysisSpec,
    ArtifactKind,
    ArtifactRef,
    DeploymentSpec,
    Event,
    Rollout,
    RolloutPhase,
    RolloutSpec,
    RolloutStrategy,
    StepSpec,
    VariantSpec,
)
from mlpilot.rollouts import analyses, evidence, policy
from mlpilot.store import Store
from mlpilot.telemetry.segments import LogRoot, as_store

log = logging.getLogger("mlpilot.rollouts")

ACTOR = "mlpilot-rollouts"


class RolloutService:
    def __init__(
        self,
        store: Store,
        deployments: Deployments,
        log_root: LogRoot,
        clock: Clock,
        *,
        seed: int | None = None,
    ) -> None:
        self.store = store
        self.deployments = deployments
        self.log_root = as_store(log_root)
        self.clock = clock
        self._rng = np.random.default_rng(seed)
        self._judged: dict[tuple[int, str], str] = {}  # (rollout id, request id) -> the judge's verdict

    # ------------------------------------------------------------------------------------------ start

    def start(self, deployment: str, spec: RolloutSpec | Mapping[str, Any], actor: str) -> Rollout:
        """Validate and start a rollout; its first transition (to shadow, canary step 1, bake or the experiment)
        happens at once. Nothing is written when anything is wrong.

        Raises:
            NotFound: no such deployment or model. Conflict: the deployment already has an active rollout.
            InvalidArgument: a bad baseline, candidate, release or analysis. SignatureError: the candidate does not
            accept the deployment's requests.
        """
        if not isinstance(spec, RolloutSpec):
            spec = RolloutSpec.model_validate(dict(spec))
        dep = self.store.get_deployment(deployment)
        active = self.store.active_rollout(deployment)
        if active is not None:
            raise Conflict(
                f"deployment {deployment!r} already has rollout {active.id} in phase {active.phase.value}; "
                f"abort it or wait for it to finish first",
                detail={"rollout": active.id},
            )
        for a in spec.analyses:
            analyses.check_params(a)
        live = {k: w for k, w in dep.spec.traffic.items() if w > 0}
        baseline = spec.baseline or max(live, key=lambda k: live[k])
        if baseline not in live:
            raise InvalidArgument(
                f"baseline {baseline!r} is not a live variant of {deployment!r}; live: {sorted(live)}"
            )
        self._check_release(spec)
        models = [spec.model, *spec.arms]
        names: list[str] = []
        variants: list[VariantSpec] = []
        for i, model in enumerate(models):
            try:
                mv = self.store.get_version(ArtifactRef.parse(model))
            except NotFound as exc:
                raise NotFound(f"candidate {model!r}: {exc.message}") from exc
            base_model = next(v.model for v in dep.spec.variants if v.name == baseline)
            base_kind = self.store.get_version(ArtifactRef.parse(base_model)).kind
            if mv.kind not in (ArtifactKind.MODEL, ArtifactKind.APP) or mv.kind is not base_kind:
                raise InvalidArgument(
                    f"candidate {model!r} is a {mv.kind.value}, but the baseline serves a {base_kind.value}"
                )
            if mv.ref == base_model:
                raise InvalidArgument(f"the candidate {mv.ref} is what the baseline {baseline!r} already serves")
            name = (spec.variant if i == 0 and spec.variant else None) or f"{mv.name}-v{mv.version}"
            if name in names:
                raise InvalidArgument(f"two candidates would be variant {name!r}")
            names.append(name)
            requested = model if ArtifactRef.parse(model).version is None else None
            variants.append(VariantSpec(name=name, model=model, requested=requested))
        pinned = self.deployments.pin_candidates(deployment, variants)
        now = self.clock.now()
        rollout = Rollout(
            id=0,
            deployment=deployment,
            spec=spec,
            phase=RolloutPhase.PENDING,
            baseline=baseline,
            candidate=pinned[0].name,
            arms=[v.name for v in pinned[1:]],
            started_at=now,
            phase_started_at=now,
            step_started_at=now,
            updated_at=now,
            revision=1,
            created_by=actor,
            state={
                "original": dict(dep.spec.traffic),
                "original_shadows": list(dep.spec.shadows),
                "variants": [v.model_dump(mode="json") for v in pinned],
            },
        )
        record = {"spec": spec.model_dump(mode="json"), "baseline": baseline, "candidates": [v.model for v in pinned]}
        created = self.store.create_rollout(rollout, actor, record)
        if spec.release is not None:
            release = self.store.create_release(deployment, spec.release, actor, rollout_id=created.id)
            created = self.store.update_rollout(
                created.model_copy(update={"state": {**created.state, "release": release.number}}),
                expect_revision=created.revision,
                actor=actor,
                action=None,
            )
        return self.reconcile(created, now) or self.store.get_rollout(created.id)

    def _check_release(self, spec: RolloutSpec) -> None:
        if spec.release is None:
            return
        for role, ref in spec.release.items():
            try:
                v = self.store.get_version(ArtifactRef.parse(ref))
            except NotFound as exc:
                raise NotFound(f"release {role}: {exc.message}") from exc
            want = {"model": ArtifactKind.MODEL, "reference": ArtifactKind.DATASET}.get(role)
            if want is not None and v.kind is not want:
                raise InvalidArgument(f"release {role} {ref!r} is a {v.kind.value}, not a {want.value}")

    # ------------------------------------------------------------------------------------------ queries

    def get(self, rollout_id: int) -> Rollout:
        return self.store.get_rollout(rollout_id)

    def list_rollouts(self, deployment: str | None = None, active: bool | None = None) -> list[Rollout]:
        return self.store.list_rollouts(deployment, active=active)

    def current(self, deployment: str) -> Rollout:
        """The deployment's active rollout, or its latest one."""
        self.store.get_deployment(deployment)
        found = self.store.active_rollout(deployment) or next(iter(self.store.list_rollouts(deployment, limit=1)), None)
        if found is None:
            raise NotFound(f"deployment {deployment!r} has no rollout")
        return found

    def decisions(self, rollout_id: int) -> list[Event]:
        self.store.get_rollout(rollout_id)
        return self.store.list_events(subject=f"rollout:{rollout_id}", limit=10_000)

    # ------------------------------------------------------------------------------------------ manual control

    def _manual(self, rollout_id: int, actor: str, action: str, phase: RolloutPhase, reason: str) -> Rollout:
        r = self.store.get_rollout(rollout_id)
        if r.phase.terminal or not r.active:
            raise InvalidArgument(f"rollout {r.id} is {r.phase.value}; it can no longer be changed")
        update: dict[str, Any] = {"phase": phase, "message": reason}
        if action == "pause":
            if r.phase is RolloutPhase.PAUSED:
                raise InvalidArgument(f"rollout {r.id} is already paused")
            update["paused_phase"] = r.phase
        elif action == "resume":
            if r.phase is not RolloutPhase.PAUSED:
                raise InvalidArgument(f"rollout {r.id} is {r.phase.value}, not paused")
            update["phase"] = r.paused_phase or RolloutPhase.CANARY
            update["paused_phase"] = None
        elif action == "promote" and r.spec.strategy is RolloutStrategy.BANDIT and "winner" not in r.state:
            update["state"] = {**r.state, "winner": self._best_arm(r)}
        decision = {
            "action": action,
            "reason": reason,
            "manual": True,
            "from": {"phase": r.phase.value, "step": r.step},
        }
        new = self.store.update_rollout(
            r.model_copy(update={**update, "last_decision": decision}),
            expect_revision=r.revision,
            actor=actor,
            action=action,
            decision=decision,
        )
        return self.reconcile(new, self.clock.now()) or self.store.get_rollout(r.id)

    def pause(self, rollout_id: int, actor: str) -> Rollout:
        """Hold the rollout (its traffic split stays as it is) until resumed."""
        return self._manual(rollout_id, actor, "pause", RolloutPhase.PAUSED, f"paused by {actor}")

    def resume(self, rollout_id: int, actor: str) -> Rollout:
        return self._manual(rollout_id, actor, "resume", RolloutPhase.PAUSED, f"resumed by {actor}")

    def promote(self, rollout_id: int, actor: str) -> Rollout:
        """Skip the remaining gates: the candidate takes the baseline's traffic now."""
        return self._manual(rollout_id, actor, "promote", RolloutPhase.PROMOTING, f"promoted by {actor}")

    def abort(self, rollout_id: int, actor: str) -> Rollout:
        """Stop: the traffic goes back to the split from before the rollout and the candidate is removed."""
        return self._manual(rollout_id, actor, "abort", RolloutPhase.ABORTED, f"aborted by {actor}")

    # ------------------------------------------------------------------------------------------ the loop

    def tick(self, now: datetime | None = None) -> list[Rollout]:
        """Reconcile every active rollout once; returns those that changed."""
        now = now or self.clock.now()
        changed = []
        for r in self.store.list_rollouts(active=True):
            try:
                new = self.reconcile(r, now)
            except Exception:  # one broken rollout must not stop the others; it is logged and retried next tick
                log.exception("reconciling rollout %s of %s", r.id, r.deployment)
                continue
            if new is not None:
                changed.append(new)
        return changed

    def reconcile(self, r: Rollout, now: datetime) -> Rollout | None:
        """One step of the loop for rollout ``r``; returns the rollout if it changed, None otherwise."""
        changed = None
        for _ in range(4):  # pending → first phase, promoting → promoted: follow-ups happen in the same tick
            if not r.active:
                return changed
            if r.phase.terminal:
                if not self._ensure(r):
                    return changed  # the split could not be applied yet: stay active, the next tick retries
                self._finish(r)
                return self.store.update_rollout(r, expect_revision=r.revision, actor=ACTOR, action=None, settle=True)
            if r.phase is RolloutPhase.PROMOTING:
                if not self._ensure(r):
                    return changed
                self._on_promoted(r)
                ctx = policy.Context(r, now)
                record: dict[str, Any] = {}
            else:
                if r.phase is not RolloutPhase.PENDING:
                    self._ensure(r)
                ctx, record = self._context(r, now)
            d = policy.decide(ctx)
            if not d.changes:
                return changed
            try:
                r = self._transition(r, d, record, now)
            except Conflict:
                return changed  # another process moved it first; it recorded the transition
            changed = r
        return changed

    def _transition(self, r: Rollout, d: policy.Decision, record: dict[str, Any], now: datetime) -> Rollout:
        update: dict[str, Any] = {"phase": d.phase, "step": d.step, "message": d.reason}
        state = dict(r.state)
        if d.phase is not r.phase or d.step != r.step:
            update["step_started_at"] = now
            if d.phase is RolloutPhase.CANARY:  # the periods of constant split, compared within (evidence strata)
                starts = state.get("step_starts", []) if r.phase is RolloutPhase.CANARY else []
                state["step_starts"] = [*starts, now.isoformat()]
        if d.phase is not r.phase:
            update["phase_started_at"] = now
        if d.action == "reweight" or (d.action == "begin" and r.spec.strategy is RolloutStrategy.BANDIT):
            state["weights"], state["bandit"] = self._bandit(r, now)
            state["reweighted_at"] = now.isoformat()
        if d.action == "promote" and r.spec.strategy is RolloutStrategy.BANDIT and "winner" not in state:
            state["winner"] = self._best_arm(r)
        update["state"] = state
        decision = analyses.json_safe(
            {
                "action": d.action,
                "reason": d.reason,
                "from": {"phase": r.phase.value, "step": r.step},
                "to": {"phase": d.phase.value, "step": d.step},
                **record,
            }
        )
        if d.action == "reweight":
            decision["bandit"] = analyses.json_safe(state["bandit"])
        update["last_decision"] = decision
        new = r.model_copy(update=update)
        decision["traffic"] = policy.desired_traffic(new).weights
        new = new.model_copy(update={"last_decision": decision})
        return self.store.update_rollout(
            new, expect_revision=r.revision, actor=ACTOR, action=d.action, decision=decision
        )

    # ------------------------------------------------------------------------------------------ evidence

    def _context(self, r: Rollout, now: datetime) -> tuple[policy.Context, dict[str, Any]]:
        if r.phase in (RolloutPhase.PENDING, RolloutPhase.PAUSED):
            return policy.Context(r, now), {}
        spec = r.spec
        shadow = r.phase is RolloutPhase.SHADOW
        window = evidence.Window(r.phase_started_at, now)
        baseline_window = None
        if r.phase is RolloutPhase.BAKE:
            span = max(spec.bake, now - r.phase_started_at)
            baseline_window = evidence.Window(r.phase_started_at - span, r.phase_started_at)
        if r.phase is RolloutPhase.EXPERIMENT and spec.strategy is RolloutStrategy.BANDIT:
            due = now - datetime.fromisoformat(str(r.state.get("reweighted_at", r.phase_started_at.isoformat())))
            return policy.Context(r, now, bandit_due=due >= spec.bandit.update_every), {"window": window.to_dict()}
        active = policy.phase_analyses(r)
        if r.phase is RolloutPhase.EXPERIMENT:  # A/B: the primary analysis is a test of superiority
            active = [
                a.model_copy(update={"params": {**a.params, "margin": 0.0}}) if a.kind in policy.MARGIN_KINDS else a
                for a in active
            ]
        alpha = policy.alpha_per_analysis(spec.alpha, [a.kind for a in active])
        since = min(window.since, baseline_window.since) if baseline_window else window.since
        feedback = self.store.feedback_frame(r.deployment, received_since=since)
        data = evidence.comparison(
            self.log_root,
            r.deployment,
            feedback,
            baseline=r.baseline,
            candidate=r.candidate,
            window=window,
            baseline_window=baseline_window,
            shadow=shadow,
            with_inputs=any(a.kind.value == "input_drift" for a in active),
            periods=[datetime.fromisoformat(t) for t in r.state.get("step_starts", [])]
            if r.phase is RolloutPhase.CANARY
            else (),
        )
        active = self._llm_evidence(r, active, data, window)
        results = [analyses.run_analysis(a, data, alpha) for a in active]
        gates = [policy.gate(r, a, res) for a, res in zip(active, results, strict=True)]
        step_samples = evidence.candidate_requests(
            self.log_root, r.deployment, r.candidate, evidence.Window(r.step_started_at, now), shadow
        )
        min_d, min_n, max_d = policy.phase_limits(r)
        record = {
            "inputs": {
                "window": window.to_dict(),
                "baseline_window": baseline_window.to_dict() if baseline_window else None,
                "baseline": {"variant": r.baseline, "requests": data.baseline.requests},
                "candidate": {"variant": r.candidate, "requests": data.candidate.requests, "shadow": shadow},
                "step_samples": step_samples,
                "elapsed_s": (now - r.step_started_at).total_seconds(),
            },
            "policy": {
                "strategy": spec.strategy.value,
                "alpha": spec.alpha,
                "alpha_per_analysis": alpha,
                "on_fail": spec.on_fail.value,
                "on_inconclusive": spec.on_inconclusive.value,
                "min_duration_s": min_d.total_seconds(),
                "min_samples": min_n,
                "max_duration_s": max_d.total_seconds(),
                "weight": spec.steps[r.step].weight if r.phase is RolloutPhase.CANARY else None,
            },
            "analyses": [res.to_dict() for res in results],
        }
        return policy.Context(r, now, gates, step_samples), record

    def _llm_evidence(
        self, r: Rollout, active: list[AnalysisSpec], data: analyses.Comparison, window: evidence.Window
    ) -> list[AnalysisSpec]:
        """What the LLM gates need besides the request log: the evals recorded on both app versions (``eval``,
        its dataset resolved to ``NAME:VERSION``) and the judge's verdicts on the shadow pairs (``win_rate``)."""
        out = []
        for a in active:
            if a.kind is AnalysisKind.EVAL:
                dataset = self.store.get_version(str(a.params.get("dataset"))).ref
                a = a.model_copy(update={"params": {**a.params, "dataset": dataset}})
                variants = {v.name: v for v in self.store.get_deployment(r.deployment).spec.variants}
                for arm in (data.baseline, data.candidate):
                    if arm.variant in variants:
                        tags = self.store.get_version(variants[arm.variant].model).tags
                        arm.evals = _evals(tags)
            if a.kind is AnalysisKind.WIN_RATE and r.phase is RolloutPhase.SHADOW:
                data.judgments = self._judge_pairs(r, a, window)
            out.append(a)
        return out

    def _judge_pairs(self, r: Rollout, a: AnalysisSpec, window: evidence.Window) -> list[str]:
        """Judge up to ``max_pairs`` shadow pairs, at most 10 new ones per tick (each is two judge calls)."""
        from mlpilot.llm.backends import BackendSpec, OpenAIBackend
        from mlpilot.llm.judge import PairwiseJudge, from_backend

        p = analyses.check_params(a)
        pairs = evidence.shadow_pairs(
            self.log_root, r.deployment, baseline=r.baseline, candidate=r.candidate, window=window
        )
        pairs = pairs.head(int(p["max_pairs"]))
        todo = [row for row in pairs.itertuples() if (r.id, row.request_id) not in self._judged][:10]
        if todo:
            backend = OpenAIBackend(BackendSpec.model_validate({"name": "judge", **p["judge"]}))
            judge = PairwiseJudge(str(p["criteria"]), chat=from_backend(backend, temperature=0))
            try:
                for row in todo:
                    try:
                        verdict = judge.compare(str(row.query), str(row.baseline), str(row.candidate)).outcome
                    except MlpilotError as exc:  # an unreachable judge: retried next tick
                        log.warning("judging shadow pair %s of rollout %s: %s", row.request_id, r.id, exc)
                        break
                    self._judged[(r.id, str(row.request_id))] = str(verdict)
            finally:
                backend.close()
        return [self._judged[(r.id, str(q))] for q in pairs["request_id"] if (r.id, str(q)) in self._judged]

    def _bandit(self, r: Rollout, now: datetime) -> tuple[dict[str, int], dict[str, Any]]:
        arms = [r.baseline, r.candidate, *r.arms]
        window = evidence.Window(r.phase_started_at if r.phase is RolloutPhase.EXPERIMENT else now, now)
        succ, trials = evidence.bandit_counts(
            self.log_root,
            r.deployment,
            self.store.feedback_frame(r.deployment, received_since=window.since),
            arms,
            window,
            r.spec.bandit.reward,
        )
        from mlpilot.rollouts.bandits import bandit_weights

        b = r.spec.bandit
        weights = bandit_weights(b.algorithm, succ, trials, epsilon=b.epsilon, min_weight=b.min_weight, rng=self._rng)
        stats = {
            a: {"successes": float(s), "trials": float(n), "mean": (float(s / n) if n else None)}
            for a, s, n in zip(arms, succ, trials, strict=True)
        }
        return dict(zip(arms, (int(w) for w in weights), strict=True)), {"algorithm": b.algorithm.value, "arms": stats}

    def _best_arm(self, r: Rollout) -> str:
        _, stats = self._bandit(r, self.clock.now())
        arms = stats["arms"]
        # posterior mean under a uniform prior: unexplored arms are not crowned by luck
        return max(arms, key=lambda a: (arms[a]["successes"] + 1) / (arms[a]["trials"] + 2))

    # ------------------------------------------------------------------------------------------ effects

    def _ensure(self, r: Rollout) -> bool:
        """Make the deployment's variants and split match the rollout's state (idempotent). False when the change
        could not be applied now (a concurrent change, a store error): the caller retries at the next tick."""
        try:
            dep = self.store.get_deployment(r.deployment)
        except NotFound:
            return True  # the deployment is gone: nothing to match
        want = policy.desired_traffic(r)
        variants = [v for v in dep.spec.variants if v.name not in want.remove]
        have = {v.name for v in variants}
        for doc in r.state.get("variants", []):
            v = VariantSpec.model_validate(doc)
            if v.name not in have and v.name not in want.remove:
                variants.append(v)
        names = {v.name for v in variants}
        weights = {k: w for k, w in want.weights.items() if k in names}
        weights.update({v.name: weights.get(v.name, 0) for v in variants})
        shadows = [s for s in want.shadows if s in names]
        if (
            [v.name for v in variants] == [v.name for v in dep.spec.variants]
            and weights == dict(dep.spec.traffic)
            and shadows == list(dep.spec.shadows)
        ):
            return True
        spec = DeploymentSpec.model_validate(
            {
                **dep.spec.model_dump(),
                "variants": [v.model_dump() for v in variants],
                "traffic": weights,
                "shadows": shadows,
            }
        )
        try:
            self.deployments.apply(r.deployment, spec, ACTOR, expect_revision=dep.revision)
            return True
        except Conflict:
            return False  # someone changed it meanwhile; the next tick reconciles again
        except MlpilotError as exc:
            log.warning("rollout %s: cannot apply traffic to %s: %s", r.id, r.deployment, exc.message)
            return False

    def _on_promoted(self, r: Rollout) -> None:
        """Promotion's side effects (idempotent): the alias moves, the release goes live with its reference."""
        winner = str(r.state.get("winner", r.candidate))
        doc = next((d for d in r.state.get("variants", []) if d["name"] == winner), None)
        if doc is None:
            return
        ref = ArtifactRef.parse(doc["model"])
        if r.spec.promote_alias and ref.version is not None:
            self.store.set_alias(ref.name, r.spec.promote_alias, ref.version, ACTOR, expect=True)
        if r.spec.release is not None:
            reference = r.spec.release.get("reference")
            if reference:
                current = self.store.get_version(ref).bindings.get("reference")
                target = self.store.get_version(ArtifactRef.parse(reference)).ref
                if current != target:
                    self.store.bind(ref, "reference", target, ACTOR)
            if "release" in r.state:
                self.store.set_release_status(r.deployment, int(r.state["release"]), "live", ACTOR)

    def _finish(self, r: Rollout) -> None:
        if r.phase is not RolloutPhase.PROMOTED and "release" in r.state:
            self.store.set_release_status(r.deployment, int(r.state["release"]), "rolled_back", ACTOR)

    # ------------------------------------------------------------------------------------------ releases

    def rollback_release(self, deployment: str, actor: str, to: int | None = None) -> Rollout:
        """Go back to an earlier release as one unit, now: its model takes the traffic (a rollout promoted at once,
        so the change has its decision record) and its reference binding comes back; the live release is marked
        ``rolled_back`` and the target ``live``.

        Raises:
            NotFound: no such deployment or release. FailedPrecondition: no live release, or nothing earlier to go
            back to. Conflict: a rollout is running on the deployment.
        """
        from mlpilot.errors import FailedPrecondition

        self.store.get_deployment(deployment)
        releases = self.store.list_releases(deployment)
        live = next((x for x in releases if x.status == "live"), None)
        if live is None:
            raise FailedPrecondition(f"deployment {deployment!r} has no live release to roll back")
        if to is None:
            earlier = [x for x in releases if x.number < live.number and x.status == "superseded"]
            if not earlier:
                raise FailedPrecondition(
                    f"release {live.number} of {deployment!r} is the first one that went live; nothing to go back to"
                )
            target = earlier[0]
        else:
            target = self.store.get_release(deployment, to)
            if target.number == live.number:
                raise InvalidArgument(f"release {to} of {deployment!r} is the live one")
        spec = RolloutSpec(
            candidate=target.artifacts["model"],
            steps=[StepSpec(weight=100, min_duration=timedelta(seconds=1), min_samples=0)],
            analyses=[],
        )
        r = self.start(deployment, spec, actor)
        r = self.promote(r.id, actor)
        reference = target.artifacts.get("reference")
        if reference:
            model = self.store.get_version(ArtifactRef.parse(target.artifacts["model"]))
            if model.bindings.get("reference") != reference:
                self.store.bind(model.ref, "reference", reference, actor)
        self.store.set_release_status(deployment, live.number, "rolled_back", actor)
        self.store.set_release_status(deployment, target.number, "live", actor)
        return r


def _evals(tags: Mapping[str, str]) -> dict[str, Any]:
    """The eval summaries ``mlpilot eval`` recorded on a version (tags ``eval/<dataset NAME:VERSION>``)."""
    import json

    out: dict[str, Any] = {}
    for key, value in tags.items():
        if key.startswith("eval/"):
            try:
                out[key[5:]] = json.loads(value)
            except json.JSONDecodeError:
                log.warning("tag %s is not an eval summary", key)
    return out
