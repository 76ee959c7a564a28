"""The actuator: what a healing :class:`~mlpilot.incidents.healing.Action` does to the platform, planned before it
runs and applied through the platform's own services (deployments, rollouts, the store's compare-and-set alias
moves, the registry), so every change is a recorded event with the actor who asked for it.

``plan`` checks that the action can apply now and says what it would move (``blast_radius``: the share of the
deployment's traffic it changes, for the healing guardrails) and the state its inverse needs (``before``); it
writes nothing. ``apply`` re-plans and acts; deployment changes are compare-and-set on the revision the plan read,
alias moves on the version it read, so a concurrent change makes ``apply`` fail with ``Conflict`` rather than act
on stale state. An action whose end state already holds is a no-op (``Applied.after`` equals ``before``).

Traffic actions and rollouts: the rollout controller makes a deployment's split match its running rollout at
every tick, so ``shift_traffic`` and ``disable_variant`` abort a running rollout first (its candidate leaves the
deployment, the split from before the rollout comes back) and then set the split they want — otherwise the next
tick would undo them. ``shift_traffic`` naming a variant the deployment no longer has (the inverse of an abort
names the removed candidate) brings it back from the deployment's latest revision that had it.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from mlpilot.clock import Clock
from mlpilot.deployments import Deployments
from mlpilot.deployments.service import quarantine_route
from mlpilot.errors import FailedPrecondition, InvalidArgument, MlpilotError, NotFound
from mlpilot.incidents.actuation import (
    _DEFAULT,
    Applied,
    Plan,
    _config_diff,
    _int_param,
    _largest_remainder,
    _moved,
    _noop,
    _Prepared,
    _rule,
    _rule_params,
)
from mlpilot.incidents.healing import Action, inverse
from mlpilot.records import (
    ArtifactKind,
    ArtifactRef,
    ArtifactVersion,
    Deployment,
    DeploymentSpec,
    QuarantineRule,
    Rollout,
    RolloutPhase,
    VariantSpec,
)
from mlpilot.registry import Registry
from mlpilot.rollouts import policy as rollout_policy
from mlpilot.rollouts.service import ACTOR as ROLLOUTS_ACTOR
from mlpilot.rollouts.service import RolloutService
from mlpilot.store import Store

__all__ = ["Applied", "Plan", "PlatformActuator"]

_ALIAS_KINDS = ("prompt", "index", "tool", "model")
#: how far back the request log is read to estimate the share of traffic a quarantine rule takes
QUARANTINE_LOOKBACK = timedelta(hours=1)


class PlatformActuator:
    """Plans and applies healing actions on one platform (the services of ``mlpilot.app.Platform``)."""

    def __init__(
        self,
        store: Store,
        deployments: Deployments,
        rollouts: RolloutService,
        registry: Registry,
        clock: Clock,
    ) -> None:
        self.store, self.deployments, self.rollouts, self.registry = store, deployments, rollouts, registry
        self.clock = clock

    # ------------------------------------------------------------------------------------------ API

    def plan(self, deployment: str, action: Action) -> Plan:
        """What ``action`` would do to ``deployment`` now; writes nothing.

        Raises:
            NotFound: no such deployment, variant, artifact, alias, release or backend.
            FailedPrecondition: the action cannot apply in the deployment's current state (no running rollout, the
                only live variant, nothing earlier to go back to …). InvalidArgument: a bad target or parameter.
        """
        return self._prepare(deployment, action).plan

    def apply(self, deployment: str, action: Action, actor: str) -> Applied:
        """Do ``action`` to ``deployment`` as ``actor``; returns what changed, its inverse and the events recorded.

        Raises:
            Everything :meth:`plan` raises; Conflict: the deployment or alias changed since it was read.
        """
        prep = self._prepare(deployment, action)
        mark = self._last_event_id()
        after = prep.run(actor)
        before = dict(prep.plan.before)
        undo = inverse(action, before) if prep.inverse is _DEFAULT else prep.inverse
        return Applied(action, before, after, undo, self._event_ids(mark, actor, deployment))

    # ------------------------------------------------------------------------------------------ plumbing

    def _prepare(self, deployment: str, action: Action) -> _Prepared:
        dep = self.store.get_deployment(deployment)
        if action.kind in ("rollback_alias", "switch_index_alias"):
            return self._alias(dep, action, _ALIAS_KINDS if action.kind == "rollback_alias" else ("index",))
        if action.kind in ("failover_backend", "pin_backend"):
            return self._backend(dep, action)
        prepared: _Prepared = getattr(self, f"_{action.kind}")(dep, action)  # one method per other kind
        return prepared

    def _last_event_id(self) -> int:
        last = self.store.list_events(limit=1)
        return last[-1].id if last else 0

    def _event_ids(self, mark: int, actor: str, deployment: str) -> list[int]:
        """Events recorded since ``mark`` by ``actor``, and by the rollout controller for this deployment (an abort
        or a release rollback makes it change the deployment on the caller's behalf)."""
        subject = f"deployment:{deployment}"
        return [
            e.id
            for e in self.store.list_events(after_id=mark, limit=10_000)
            if e.actor == actor
            or (e.actor == ROLLOUTS_ACTOR and (e.subject == subject or (e.after or {}).get("deployment") == deployment))
        ]

    @staticmethod
    def _target(action: Action, *kinds: str) -> tuple[str, str]:
        kind, sep, name = action.target.partition(":")
        if not sep or kind not in kinds or not name:
            wanted = " or ".join(f"{k}:NAME" for k in kinds)
            raise InvalidArgument(f"{action.kind} targets {wanted}, got {action.target!r}")
        return kind, name

    @staticmethod
    def _variant(dep: Deployment, name: str) -> VariantSpec:
        for v in dep.spec.variants:
            if v.name == name:
                return v
        raise NotFound(
            f"deployment {dep.name!r} has no variant {name!r}; its variants are {[v.name for v in dep.spec.variants]}"
        )

    def _put(self, dep: Deployment, actor: str, **update: Any) -> Deployment:
        """A new revision of ``dep`` with ``update`` applied to its spec (compare-and-set on its revision)."""
        spec = DeploymentSpec.model_validate({**dep.spec.model_dump(), **update})
        return self.deployments.apply(dep.name, spec, actor, expect_revision=dep.revision)

    def _with_variant(self, dep: Deployment, name: str, actor: str, **changes: Any) -> Deployment:
        variants = [v.model_dump() if v.name != name else {**v.model_dump(), **changes} for v in dep.spec.variants]
        return self._put(dep, actor, variants=variants)

    def _running(self, dep: Deployment) -> Rollout | None:
        return self.store.active_rollout(dep.name)

    @staticmethod
    def _after_abort(r: Rollout) -> rollout_policy.Traffic:
        """The split the deployment gets back when rollout ``r`` is aborted (its candidates removed)."""
        return rollout_policy.desired_traffic(r.model_copy(update={"phase": RolloutPhase.ABORTED}))

    def _abort(self, r: Rollout, actor: str) -> Deployment:
        self.rollouts.abort(r.id, actor)
        return self.store.get_deployment(r.deployment)

    def _from_history(self, deployment: str, variant: str) -> VariantSpec | None:
        for _, spec in reversed(self.store.deployment_revisions(deployment)):
            for v in spec.variants:
                if v.name == variant:
                    return v
        return None

    # ------------------------------------------------------------------------------------------ aliases

    def _alias(self, dep: Deployment, action: Action, kinds: tuple[str, ...]) -> _Prepared:
        kind, ref = self._target(action, *kinds)
        name, sep, alias = ref.partition("@")
        if not sep or not alias:
            raise InvalidArgument(f"{action.kind} targets {kind}:NAME@ALIAS, got {action.target!r}")
        art = self.store.get_artifact(name)
        if art.kind.value != kind:
            raise InvalidArgument(f"{name!r} is a {art.kind.value}, not a {kind} (target {action.target!r})")
        current = art.aliases.get(alias)
        if current is None:
            raise NotFound(f"{kind} {name!r} has no alias {alias!r}; its aliases are {sorted(art.aliases)}")
        if "version" in action.params and action.params["version"] is not None:
            version = _int_param(action, "version")
        elif action.kind == "rollback_alias":
            version = self._previous_version(name, alias, current)
        else:
            raise InvalidArgument(f"{action.kind} needs params.version (the version {name}@{alias} moves to)")
        self.store.get_version(ArtifactRef(name=name, version=version))  # NotFound names the missing version
        share = self._alias_share(dep, kind, f"{name}@{alias}")
        before = {"version": current}
        if version == current:
            return _noop(action, before, f"{name}@{alias} already points at version {version}")
        served = (
            "variants are pinned: nothing served changes"
            if kind == "model"
            else f"{share:.0%} of {dep.name!r}'s traffic uses it"
        )
        desc = f"move {name}@{alias} from version {current} to {version} ({served})"

        def run(actor: str) -> dict[str, Any]:
            self.store.set_alias(name, alias, version, actor, expect=current)
            return {"version": version}

        return _Prepared(Plan(action, share, before, desc), run)

    def _previous_version(self, name: str, alias: str, current: int) -> int:
        """The version ``name@alias`` pointed at before its last move to ``current``."""
        events = self.store.list_events(subject=f"artifact:{name}@{alias}", action="alias.moved", limit=1000)
        for e in reversed(events):
            if (e.after or {}).get("version") == current:
                previous = (e.before or {}).get("version")
                if previous is None:
                    break
                return int(previous)
        raise FailedPrecondition(
            f"{name}@{alias} has pointed at version {current} since it was created; there is no earlier version to "
            "roll back to (give params.version)"
        )

    def _alias_share(self, dep: Deployment, kind: str, ref: str) -> float:
        """Share of ``dep``'s traffic served by apps that bind ``kind`` ``ref`` by alias (models are pinned: 0)."""
        if kind == "model":
            return 0.0
        total = 0
        for v in dep.spec.variants:
            app = self.store.get_version(v.model).metadata.get("app") or {}
            bound = {
                "prompt": [app.get("prompt")],
                "index": [(app.get("retriever") or {}).get("index")],
                "tool": list(app.get("tools") or []),
            }[kind]
            if ref in bound:
                total += dep.spec.traffic.get(v.name, 0)
        return total / 100.0

    # ------------------------------------------------------------------------------------------ releases, rollouts

    def _rollback_release(self, dep: Deployment, action: Action) -> _Prepared:
        _, name = self._target(action, "release")
        if name != dep.name:
            raise InvalidArgument(f"rollback_release of {dep.name!r} targets release:{dep.name}, got {action.target!r}")
        running = self._running(dep)
        if running is not None:
            raise FailedPrecondition(
                f"rollout {running.id} is running on {dep.name!r} ({running.phase.value}); abort it before rolling "
                "back the release"
            )
        releases = self.store.list_releases(dep.name)
        live = next((r for r in releases if r.status == "live"), None)
        if live is None or action.params.get("models") is not None:
            return self._rollback_models(dep, action)
        to = action.params.get("to")
        if to is None:
            earlier = [r for r in releases if r.number < live.number and r.status == "superseded"]
            if not earlier:
                raise FailedPrecondition(
                    f"release {live.number} of {dep.name!r} is the first one that went live; there is no earlier "
                    "release to go back to"
                )
            target = earlier[0]
        else:
            target = self.store.get_release(dep.name, _int_param(action, "to"))
        before = {"release": live.number}
        if target.number == live.number:
            return _noop(action, before, f"release {live.number} is already live")
        stable = max(dep.spec.traffic, key=lambda k: dep.spec.traffic[k])  # the variant the rollback replaces
        for rule in dep.spec.quarantine:
            if rule.variant == stable:
                raise FailedPrecondition(f"quarantine on {rule.feature!r} routes to {stable!r}, which the rollback "
                                         "replaces; lift the quarantine first")  # fmt: skip
        share = dep.spec.traffic[stable] / 100.0
        desc = (
            f"roll {dep.name!r} back from release {live.number} to release {target.number} "
            f"({target.artifacts.get('model')} takes the stable variant's {share:.0%})"
        )

        def run(actor: str) -> dict[str, Any]:
            r = self.rollouts.rollback_release(dep.name, actor, to=target.number)
            return {"release": target.number, "rollout": r.id}

        return _Prepared(Plan(action, share, before, desc), run)

    def _abort_rollout(self, dep: Deployment, action: Action) -> _Prepared:
        kind, name = self._target(action, "variant", "rollout")
        running = self._running(dep)
        if kind == "rollout":
            if not name.isdigit():
                raise InvalidArgument(f"abort_rollout targets rollout:ID with a numeric id, got {action.target!r}")
            r = self.rollouts.get(int(name))
            if r.deployment != dep.name:
                raise InvalidArgument(f"rollout {r.id} belongs to {r.deployment!r}, not {dep.name!r}")
            if not r.active:
                raise FailedPrecondition(f"rollout {r.id} of {dep.name!r} is {r.phase.value}; it is not running")
        else:
            self._variant(dep, name)
            if running is None:
                raise FailedPrecondition(f"deployment {dep.name!r} has no running rollout to abort")
            r = running
            if name not in (r.baseline, r.candidate, *r.arms):
                raise FailedPrecondition(
                    f"variant {name!r} takes no part in rollout {r.id} of {dep.name!r} "
                    f"(baseline {r.baseline!r}, candidate {r.candidate!r})"
                )
        candidates = (r.candidate, *r.arms)
        share = sum(dep.spec.traffic.get(c, 0) for c in candidates) / 100.0
        before = {"traffic": dict(dep.spec.traffic)}
        desc = f"abort rollout {r.id} of {dep.name!r}: {r.candidate!r} ({share:.0%} of the traffic) leaves, " + (
            f"the split goes back to {self._after_abort(r).weights}"
        )

        def run(actor: str) -> dict[str, Any]:
            new = self._abort(r, actor)
            return {"traffic": dict(new.spec.traffic), "rollout": r.id}

        return _Prepared(Plan(action, share, before, desc), run)

    # ------------------------------------------------------------------------------------------ traffic

    def _traffic_param(self, dep: Deployment, action: Action) -> dict[str, int]:
        traffic, to = action.params.get("traffic"), action.params.get("to")
        if (traffic is None) == (to is None):
            raise InvalidArgument(
                "shift_traffic needs either params.traffic (a full split, e.g. {'stable': 100}) or params.to "
                "(the variant that takes all traffic)"
            )
        if to is not None:
            self._variant(dep, str(to))
            return {str(to): 100}
        if not isinstance(traffic, Mapping) or not traffic:
            raise InvalidArgument(f"shift_traffic: params.traffic must map variants to weights, got {traffic!r}")
        out: dict[str, int] = {}
        for k, w in traffic.items():
            if isinstance(w, bool) or not isinstance(w, (int, float)) or int(w) != w or not 0 <= w <= 100:
                raise InvalidArgument(f"shift_traffic: the weight of {k!r} must be an integer in 0..100, got {w!r}")
            out[str(k)] = int(w)
        if sum(out.values()) != 100:
            raise InvalidArgument(f"shift_traffic: weights must sum to 100, got {sum(out.values())} ({out})")
        known = {v.name for v in dep.spec.variants}
        for k, w in out.items():
            if k not in known and w > 0 and self._from_history(dep.name, k) is None:
                raise NotFound(
                    f"deployment {dep.name!r} has no variant {k!r}, now or in its history; "
                    f"its variants are {sorted(known)}"
                )
        return out

    def _set_split(
        self, dep: Deployment, traffic: Mapping[str, int], shadows: list[str] | None, actor: str
    ) -> Deployment:
        """Make ``dep``'s split ``traffic`` (compare-and-set on its revision; variants it names that the deployment
        lost come back from its history); ``shadows`` None keeps the shadows that stay at weight 0."""
        variants = list(dep.spec.variants)
        names = {v.name for v in variants}
        for k, w in traffic.items():
            if k not in names and w > 0:
                restored = self._from_history(dep.name, k)
                if restored is None:
                    raise NotFound(f"deployment {dep.name!r} has no variant {k!r}, now or in its history")
                variants.append(restored)
        full = {v.name: int(traffic.get(v.name, 0)) for v in variants}
        keep = dep.spec.shadows if shadows is None else [s for s in shadows if s in full]
        new_shadows = [s for s in keep if full.get(s, 0) == 0]
        if full == dict(dep.spec.traffic) and new_shadows == list(dep.spec.shadows) and len(variants) == len(names):
            return dep
        return self._put(dep, actor, variants=[v.model_dump() for v in variants], traffic=full, shadows=new_shadows)

    def _shift_traffic(self, dep: Deployment, action: Action) -> _Prepared:
        want = self._traffic_param(dep, action)
        shadows = action.params.get("shadows")
        if shadows is not None and not (isinstance(shadows, list) and all(isinstance(s, str) for s in shadows)):
            raise InvalidArgument(f"shift_traffic: params.shadows must be a list of variant names, got {shadows!r}")
        current = dict(dep.spec.traffic)
        running = self._running(dep)
        full = {k: want.get(k, 0) for k in set(current) | set(want)}
        before = {"traffic": current}
        unchanged = {k: w for k, w in full.items() if w} == {k: w for k, w in current.items() if w}
        if unchanged and running is None and (shadows is None or list(shadows) == list(dep.spec.shadows)):
            return _noop(action, before, f"{dep.name!r} already has the split {want}")
        desc = f"set the split of {dep.name!r} to {want} (from {current})"
        if running is not None:
            desc = f"abort rollout {running.id} (its controller would restore its split), then " + desc

        return _Prepared(
            Plan(action, _moved(current, full), before, desc),
            lambda actor: self._split_after(dep, running, want, shadows, actor),
        )

    def _disable_variant(self, dep: Deployment, action: Action) -> _Prepared:
        _, name = self._target(action, "variant")
        self._variant(dep, name)
        current = dict(dep.spec.traffic)
        before: dict[str, Any] = {"traffic": current, "shadows": list(dep.spec.shadows)}
        running = self._running(dep)
        if running is not None and name in (running.candidate, *running.arms):
            r = running
            share = sum(current.get(c, 0) for c in (r.candidate, *r.arms)) / 100.0
            desc = f"abort rollout {r.id} of {dep.name!r}: its candidate {name!r} leaves the deployment"

            def abort(actor: str) -> dict[str, Any]:
                return {"traffic": dict(self._abort(r, actor).spec.traffic)}

            return _Prepared(Plan(action, share, before, desc), abort)
        if running is not None:
            after_abort = self._after_abort(running)
            base = {k: w for k, w in after_abort.weights.items() if k not in after_abort.remove}
            base_shadows = list(after_abort.shadows)
        else:
            base, base_shadows = current, list(dep.spec.shadows)
        if base.get(name, 0) == 0:
            if name in base_shadows:  # a shadow: it stops mirroring
                shadows = [s for s in base_shadows if s != name]
                undo = Action("shift_traffic", action.target, {"traffic": current, "shadows": before["shadows"]})
                return _Prepared(
                    Plan(action, 0.0, before, f"stop mirroring {dep.name!r}'s traffic to the shadow {name!r}"),
                    lambda actor: self._split_after(dep, running, base, shadows, actor),
                    undo,
                )
            if running is None:
                return _noop(action, before, f"variant {name!r} of {dep.name!r} already gets no traffic")
        others = {k: w for k, w in base.items() if k != name and w > 0}
        if not others:
            raise FailedPrecondition(
                f"variant {name!r} is the only live variant of {dep.name!r}; disabling it would leave nothing to "
                "answer requests (deploy or shift traffic to another variant first)"
            )
        new = {k: 0 for k in base}
        if base.get(name, 0):
            new.update(_largest_remainder(others, 100))
        else:
            new.update(base)
        desc = f"variant {name!r} of {dep.name!r} gets no traffic; the split becomes {new}"
        if running is not None:
            desc = f"abort rollout {running.id} (its controller would restore its split), then " + desc
        return _Prepared(
            Plan(action, _moved(current, new), before, desc),
            lambda actor: self._split_after(dep, running, new, None, actor),
        )

    def _split_after(
        self, dep: Deployment, running: Rollout | None, traffic: dict[str, int], shadows: list[str] | None, actor: str
    ) -> dict[str, Any]:
        """Abort ``running`` (when set), then set the split on the deployment as it then is."""
        new = self._set_split(self._abort(running, actor) if running is not None else dep, traffic, shadows, actor)
        return {"traffic": dict(new.spec.traffic), "shadows": list(new.spec.shadows)}

    # ------------------------------------------------------------------------------------------ runtimes

    def _scale(self, dep: Deployment, action: Action) -> _Prepared:
        _, name = self._target(action, "variant")
        v = self._variant(dep, name)
        current = v.runtime.replicas
        if action.params.get("replicas") is not None:
            replicas = _int_param(action, "replicas", 1, 1024)
        elif action.params.get("factor") is not None:
            factor = action.params["factor"]
            if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor <= 1024:
                raise InvalidArgument(f"scale: factor must be a number in (0, 1024], got {factor!r}")
            replicas = min(1024, max(1, math.ceil(current * factor)))
        else:
            raise InvalidArgument("scale needs params.replicas (an integer >= 1) or params.factor")
        before = {"replicas": current}
        if replicas == current:
            return _noop(action, before, f"variant {name!r} already has {current} replicas")

        def run(actor: str) -> dict[str, Any]:
            self._with_variant(dep, name, actor, runtime={**v.runtime.model_dump(), "replicas": replicas})
            return {"replicas": replicas}

        desc = f"variant {name!r} of {dep.name!r} goes from {current} to {replicas} replicas (no traffic moves)"
        return _Prepared(Plan(action, 0.0, before, desc), run)

    def _restart_runtime(self, dep: Deployment, action: Action) -> _Prepared:
        _, name = self._target(action, "variant")
        v = self._variant(dep, name)
        generation = v.runtime.generation
        share = dep.spec.traffic.get(name, 0) / 100.0
        before = {"generation": generation}

        def run(actor: str) -> dict[str, Any]:
            runtime = {**v.runtime.model_dump(), "generation": generation + 1}
            self._with_variant(dep, name, actor, runtime=runtime)
            return {"generation": generation + 1}

        desc = (
            f"restart the runtime of variant {name!r} of {dep.name!r}: data planes load it anew and switch to it "
            f"once loaded ({share:.0%} of the traffic)"
        )
        return _Prepared(Plan(action, share, before, desc), run, None)

    def _revert_config(self, dep: Deployment, action: Action) -> _Prepared:
        """The configuration (each variant's runtime options, the sticky header) of an earlier revision comes back;
        traffic, models and quarantine rules stay. Default: the revision before the last configuration change."""
        _, name = self._target(action, "config")
        if name != dep.name:
            raise InvalidArgument(f"revert_config of {dep.name!r} targets config:{dep.name}, got {action.target!r}")
        revisions = dict(self.store.deployment_revisions(dep.name))
        if action.params.get("revision") is not None:
            revision = _int_param(action, "revision")
            if revision not in revisions:
                raise NotFound(f"deployment {dep.name!r} has no revision {revision}; it has 1..{dep.revision}")
        else:
            earlier = [r for r in sorted(revisions, reverse=True) if r < dep.revision]
            revision = next((r for r in earlier if any(_config_diff(revisions[r], dep.spec))), 0)
            if not revision:
                raise FailedPrecondition(f"the configuration of {dep.name!r} never changed: nothing to revert to")
        old = revisions[revision]
        changed, sticky = _config_diff(old, dep.spec)
        before = {"revision": dep.revision}
        if not changed and not sticky:
            return _noop(action, before, f"{dep.name!r} already has the configuration of revision {revision}")
        share = 1.0 if sticky else sum(dep.spec.traffic.get(n, 0) for n in changed) / 100.0
        desc = f"the configuration of {dep.name!r} goes back to revision {revision} (variants {changed})"
        runtimes = {v.name: v.runtime.model_dump() for v in old.variants}
        variants = [{**v.model_dump(), "runtime": {**runtimes[v.name], "generation": v.runtime.generation}}
                    if v.name in changed else v.model_dump() for v in dep.spec.variants]  # fmt: skip

        def run(actor: str) -> dict[str, Any]:
            new = self._put(dep, actor, variants=variants, sticky_header=old.sticky_header)
            return {"revision": new.revision, "config_of": revision}

        return _Prepared(Plan(action, share, before, desc), run)

    def _rollback_models(self, dep: Deployment, action: Action) -> _Prepared:
        """A deployment changed by plain deploys has no releases: the variants get back the models of the revision
        before the last model change (``params.models``, ``{variant: "name:version"}``, names them instead); traffic,
        runtime options and quarantine rules stay."""
        current = {v.name: v.model for v in dep.spec.variants}
        want = action.params.get("models")
        if want is not None:
            if not isinstance(want, dict) or not all(isinstance(m, str) for m in want.values()):
                raise InvalidArgument('rollback_release: params.models is {"variant": "name:version", …}')
            unknown = sorted(set(want) - set(current))
            if unknown:
                raise InvalidArgument(f"rollback_release: {dep.name!r} has no variants {unknown}")
            old, source = {str(k): str(m) for k, m in want.items()}, "the given models"
        else:
            revisions = dict(self.store.deployment_revisions(dep.name))
            earlier = [r for r in sorted(revisions, reverse=True) if r < dep.revision]
            revision = next(
                (r for r in earlier if any(current.get(v.name, v.model) != v.model for v in revisions[r].variants)), 0
            )
            if not revision:
                raise FailedPrecondition(
                    f"deployment {dep.name!r} has no release history and its models never changed: nothing to roll "
                    "back to"
                )
            old = {v.name: v.model for v in revisions[revision].variants if v.name in current}
            source = f"revision {revision}"
        changed = sorted(n for n, m in old.items() if current[n] != m)
        before = {"models": {n: current[n] for n in changed}}
        if not changed:
            return _noop(action, before, f"{dep.name!r} already serves {source}'s models")
        share = sum(dep.spec.traffic.get(n, 0) for n in changed) / 100.0
        desc = f"{dep.name!r} goes back to {source}: " + ", ".join(f"{n} {current[n]} → {old[n]}" for n in changed)
        variants = [{**v.model_dump(), "model": old[v.name]} if v.name in changed else v.model_dump()
                    for v in dep.spec.variants]  # fmt: skip

        def run(actor: str) -> dict[str, Any]:
            new = self._put(dep, actor, variants=variants)
            return {"models": {n: old[n] for n in changed}, "revision": new.revision}

        undo = Action("rollback_release", action.target, {"models": before["models"]})
        return _Prepared(Plan(action, share, before, desc), run, undo)

    # ------------------------------------------------------------------------------------------ LLM backends

    def _backend(self, dep: Deployment, action: Action) -> _Prepared:
        from mlpilot.llm.apps import generator_backends, parse_app, with_generator_backends

        _, provider = self._target(action, "provider")
        restore = action.params.get("restore")
        apps: dict[str, ArtifactVersion] = {}
        for v in dep.spec.variants:
            mv = self.store.get_version(v.model)
            if mv.kind is ArtifactKind.APP:
                apps[v.name] = mv
        if not apps:
            raise FailedPrecondition(f"deployment {dep.name!r} serves models, not LLM apps: it has no backends")
        if restore is not None:
            return self._restore_app(dep, action, apps, str(restore))
        specs = {n: parse_app(mv.metadata.get("app") or {}, source=mv.ref) for n, mv in apps.items()}
        chains = {n: generator_backends(spec) for n, spec in specs.items()}
        users = [n for n, chain in chains.items() if any(b.name == provider for b in chain)]
        wanted = action.params.get("variant")
        if wanted is not None:
            self._variant(dep, str(wanted))
            if wanted not in users:
                raise NotFound(f"variant {wanted!r} of {dep.name!r} does not generate with backend {provider!r}")
            name = str(wanted)
        elif users:
            name = max(users, key=lambda n: (dep.spec.traffic.get(n, 0), -users.index(n)))
        else:
            seen = sorted({b.name for chain in chains.values() for b in chain})
            raise NotFound(
                f"no variant of {dep.name!r} generates with backend {provider!r}; its apps' backends are {seen}"
            )
        mv, chain = apps[name], chains[name]
        if action.kind == "failover_backend":
            rest = [b for b in chain if b.name != provider]
            if not rest:
                raise FailedPrecondition(
                    f"backend {provider!r} of {mv.ref} has no fallback to fail over to (give the app a fallback)"
                )
            what = f"fail over from {provider!r} to {rest[0].name!r}"
        else:
            rest = [b for b in chain if b.name == provider]
            what = f"pin backend {provider!r} (no fallback)"
        before = {"app": mv.ref, "variant": name}
        new_spec = with_generator_backends(specs[name], rest)  # validated before anything is written
        if new_spec == specs[name]:
            return _noop(action, before, f"{mv.ref} already generates that way")
        app = new_spec.to_dict()
        share = dep.spec.traffic.get(name, 0) / 100.0
        desc = f"{what}: a new version of app {mv.name!r} from {mv.ref}, served by variant {name!r} ({share:.0%})"

        def run(actor: str) -> dict[str, Any]:
            new = self._register_app(mv, app, actor)
            self._with_variant(dep, name, actor, model=new.ref, requested=None)
            return {"app": new.ref, "variant": name}

        return _Prepared(Plan(action, share, before, desc), run)

    def _restore_app(self, dep: Deployment, action: Action, apps: dict[str, ArtifactVersion], ref: str) -> _Prepared:
        target = self.store.get_version(ArtifactRef.parse(ref))
        if target.kind is not ArtifactKind.APP:
            raise InvalidArgument(f"{action.kind}: restore {ref!r} is a {target.kind.value}, not an app")
        wanted = action.params.get("variant")
        if wanted is not None:
            self._variant(dep, str(wanted))
            name = str(wanted)
        else:
            derived = [n for n, mv in apps.items() if target.ref in mv.parents or mv.ref == target.ref]
            same = [n for n, mv in apps.items() if mv.name == target.name]
            if not (derived or same):
                raise NotFound(f"no variant of {dep.name!r} serves a version of app {target.name!r}")
            name = (derived or same)[0]
        current = self._variant(dep, name).model
        before = {"app": current, "variant": name}
        if current == target.ref:
            return _noop(action, before, f"variant {name!r} already serves {target.ref}")
        share = dep.spec.traffic.get(name, 0) / 100.0
        desc = f"variant {name!r} of {dep.name!r} goes back from {current} to {target.ref} ({share:.0%})"

        def run(actor: str) -> dict[str, Any]:
            self._with_variant(dep, name, actor, model=target.ref, requested=None)
            return {"app": target.ref, "variant": name}

        return _Prepared(Plan(action, share, before, desc), run)

    def _register_app(self, base: ArtifactVersion, app: dict[str, Any], actor: str) -> ArtifactVersion:
        scratch = self.registry.scratch_dir()
        try:
            path = scratch / "app.json"
            path.write_text(json.dumps(app, indent=2))
            return self.registry.register_file(base.name, ArtifactKind.APP, path, actor=actor, parents=[base.ref])
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    # ------------------------------------------------------------------------------------------ quarantine

    def _quarantine_inputs(self, dep: Deployment, action: Action) -> _Prepared:
        _, feature = self._target(action, "feature")
        rules = list(dep.spec.quarantine)
        before = {"quarantine": [r.model_dump(mode="json", exclude_defaults=True) for r in rules]}
        if action.params.get("lift"):
            removed = [r for r in rules if r.feature == feature]
            if not removed:
                return _noop(action, before, f"no quarantine rule on {feature!r}", None)
            kept = [r for r in rules if r.feature != feature]
            undo = Action(action.kind, action.target, _rule_params(removed[0])) if len(removed) == 1 else None
            desc = f"lift the quarantine of {feature!r} on {dep.name!r} ({len(removed)} rule(s))"
            return _Prepared(Plan(action, 0.0, before, desc), self._quarantine_run(dep, kept), undo)
        rule = _rule(feature, action.params)
        if rule in rules:
            return _noop(action, before, f"{dep.name!r} already has this rule")
        spec = DeploymentSpec.model_validate({**dep.spec.model_dump(), "quarantine": [*rules, rule]})
        self.deployments.validate(spec)  # feature, datatype and route variant checked before anything is written
        share, rows = self._quarantine_share(dep.name, rule)
        estimate = (
            f"{share:.1%} of the {rows} rows logged in the last hour break it"
            if rows
            else "no rows logged in the last hour to estimate its share: assumed all"
        )
        verb = "reject" if rule.action == "reject" else f"route to {rule.variant!r}"
        desc = f"{verb} requests of {dep.name!r} whose {feature!r} breaks the rule ({estimate})"
        return _Prepared(Plan(action, share, before, desc), self._quarantine_run(dep, [*rules, rule]))

    def _quarantine_run(self, dep: Deployment, rules: list[QuarantineRule]) -> Callable[[str], dict[str, Any]]:
        def run(actor: str) -> dict[str, Any]:
            new = self._put(dep, actor, quarantine=[r.model_dump() for r in rules])
            return {"quarantine": [r.model_dump(mode="json", exclude_defaults=True) for r in new.spec.quarantine]}

        return run

    def _quarantine_share(self, deployment: str, rule: QuarantineRule) -> tuple[float, int]:
        """Share of the rows logged in the last hour that break ``rule`` (1.0 when nothing was logged)."""
        import numpy as np

        from mlpilot.serving.quarantine import breaking
        from mlpilot.telemetry.query import read_records

        column = f"in.{rule.feature}"
        try:
            frame = read_records(
                self.rollouts.log_root,
                deployment,
                since=self.clock.now() - QUARANTINE_LOOKBACK,
                shadow=False,
                columns=[column],
                limit=50_000,
                newest_first=True,
            )
        except MlpilotError:
            return 1.0, 0  # the column was never logged
        if frame.empty or column not in frame:
            return 1.0, 0
        route = quarantine_route(rule)
        values = frame[column].to_numpy()
        bad = breaking(route, values)  # None: e.g. bounds on a feature logged as text
        if bad is None:
            return 1.0, 0
        return float(np.mean(bad)), len(values)

    # ------------------------------------------------------------------------------------------ notify

    def _notify(self, dep: Deployment, action: Action) -> _Prepared:
        return _noop(action, {}, f"notify about {action.target}: nothing changes", None)
