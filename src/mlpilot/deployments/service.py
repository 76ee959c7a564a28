"""Deployments (desired state) and their compilation into the data plane's ``RoutingSnapshot``.

Invariants:

* A spec is validated completely before anything is written: every variant's model exists and is a model, live
  and shadow variants have compatible signatures, weights are integers summing to 100. A rejected change writes
  nothing.
* Stored variants are pinned: ``NAME@ALIAS`` is resolved to ``NAME:VERSION`` at apply time (the alias is kept in
  ``requested``), so a deployment never changes behind its owner's back; moving an alias into production is an
  explicit redeploy (or, later, a rollout).
* Every change is a new revision, an event, and a new routing-snapshot version (all in one transaction).
* Input quarantine rules name inputs of the variants' signatures (numeric bounds on numeric inputs, categories
  that fit the input's datatype, nulls only where a value can be missing) and route only to a variant that accepts
  the deployment's requests; they are compiled into the snapshot for the data plane to apply.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from mlpilot.errors import InvalidArgument, NotFound, SignatureError
from mlpilot.protocol.signature import Signature
from mlpilot.records import (
    ArtifactKind,
    ArtifactRef,
    ArtifactVersion,
    Deployment,
    DeploymentSpec,
    QuarantineRule,
    RuntimeOptions,
    VariantSpec,
    check_name,
)
from mlpilot.runtimes.app import APP_FLAVOR
from mlpilot.serving.snapshot import (
    AutoscalingRoute,
    DeploymentRoute,
    LimitsRoute,
    ModelBinding,
    QuarantineRoute,
    RoutingSnapshot,
    VariantRoute,
)
from mlpilot.store import Store

log = logging.getLogger("mlpilot.deployments")


class Deployments:
    """Creates and changes deployments; compiles routing snapshots."""

    def __init__(self, store: Store, on_created: Callable[[str, str], None] | None = None) -> None:
        """Args:
        on_created: called with ``(deployment, actor)`` after a deployment's first revision is stored (the
            composition root uses it to create the default monitors and SLO).
        """
        self.store = store
        self.on_created = on_created
        #: model bindings of pinned model versions (``NAME:VERSION``), which never change once registered: a
        #: snapshot of 1,000 deployments then reads each version once, not once per compile.
        self._model_bindings: dict[str, ModelBinding] = {}

    def _resolve(self, spec: DeploymentSpec) -> tuple[DeploymentSpec, dict[str, ArtifactVersion]]:
        pinned: list[VariantSpec] = []
        versions: dict[str, ArtifactVersion] = {}
        for v in spec.variants:
            ref = ArtifactRef.parse(v.model)
            try:
                mv = self.store.get_version(ref)
            except NotFound as exc:
                raise NotFound(f"variant {v.name!r}: {exc.message}") from exc
            if mv.kind not in (ArtifactKind.MODEL, ArtifactKind.APP):
                raise InvalidArgument(f"variant {v.name!r}: {mv.ref} is a {mv.kind.value}, not a model or an app")
            if mv.kind is ArtifactKind.APP:
                self._bindings(mv)  # every artifact the app binds must exist now (NotFound/InvalidArgument)
            versions[v.name] = mv
            requested = v.requested or (str(ref) if ref.version is None else None)
            pinned.append(v.model_copy(update={"model": mv.ref, "requested": requested}))
        kinds = {mv.kind for mv in versions.values()}
        if len(kinds) > 1:
            raise InvalidArgument(
                "a deployment serves either models or LLM apps, not both: "
                + ", ".join(f"{name} is a {mv.kind.value}" for name, mv in versions.items())
            )
        self._check_signatures(spec, versions)
        self._check_quarantine(spec, versions)
        return spec.model_copy(update={"variants": pinned}), versions

    @staticmethod
    def _serving(spec: DeploymentSpec) -> list[str]:
        """Variants that answer requests: live ones, shadows, and those quarantine rules route to."""
        routed = {r.variant for r in spec.quarantine if r.variant}
        serving = [
            v.name
            for v in spec.variants
            if spec.traffic.get(v.name, 0) > 0 or v.name in spec.shadows or v.name in routed
        ]
        return serving or [spec.variants[0].name]

    @classmethod
    def _check_signatures(cls, spec: DeploymentSpec, versions: Mapping[str, ArtifactVersion]) -> None:
        serving = cls._serving(spec)
        base_name = serving[0]
        base = versions[base_name].signature
        for name in serving[1:]:
            other = versions[name].signature
            if base is None or other is None:
                continue  # unsigned models cannot be compared; the data plane will not validate them either
            problems = Signature.from_dict(base).incompatibilities(Signature.from_dict(other))
            if problems:
                raise SignatureError(
                    f"variant {name!r} ({versions[name].ref}) does not accept the requests of variant "
                    f"{base_name!r} ({versions[base_name].ref}): " + "; ".join(problems),
                    detail={"problems": problems},
                )

    @classmethod
    def _check_quarantine(cls, spec: DeploymentSpec, versions: Mapping[str, ArtifactVersion]) -> None:
        """Every rule names an input of every serving variant's signature, with a condition its datatype allows."""
        if not spec.quarantine:
            return
        apps = [name for name, mv in versions.items() if mv.kind is ArtifactKind.APP]
        if apps:
            raise InvalidArgument(
                "quarantine rules check the inputs of model deployments (OIP v2); this deployment serves LLM apps"
            )
        signatures: dict[str, Signature] = {}
        for name in cls._serving(spec):
            mv = versions[name]
            if mv.signature is None:
                raise InvalidArgument(
                    f"variant {name!r} ({mv.ref}) has no signature: quarantine rules need the model's inputs"
                )
            signatures[name] = Signature.from_dict(mv.signature)
        for rule in spec.quarantine:
            for name, sig in signatures.items():
                inputs = {t.name: t for t in sig.inputs}
                t = inputs.get(rule.feature)
                if t is None:
                    raise InvalidArgument(
                        f"quarantine rule on {rule.feature!r}: no such input of variant {name!r} "
                        f"({versions[name].ref}); its inputs are {list(inputs)}"
                    )
                _check_rule_datatype(rule, t.datatype, name)

    def pin_candidates(self, name: str, candidates: list[VariantSpec]) -> list[VariantSpec]:
        """Check that ``candidates`` could join deployment ``name`` (models exist, are models, and accept the requests
        of its live variants) and return them pinned. Nothing is written.

        Raises:
            NotFound: no such deployment or model. InvalidArgument: a name clash. SignatureError: incompatible.
        """
        current = self.store.get_deployment(name)
        clash = sorted({c.name for c in candidates} & {v.name for v in current.spec.variants})
        if clash:
            raise InvalidArgument(
                f"deployment {name!r} already has variant(s) {clash}; name the candidate differently (--variant)"
            )
        trial = DeploymentSpec.model_validate(
            {
                **current.spec.model_dump(),
                "variants": [*current.spec.model_dump()["variants"], *[c.model_dump() for c in candidates]],
                "shadows": [*current.spec.shadows, *[c.name for c in candidates]],
            }
        )
        pinned, _ = self._resolve(trial)
        names = {c.name for c in candidates}
        return [v for v in pinned.variants if v.name in names]

    def validate(self, spec: DeploymentSpec) -> DeploymentSpec:
        """Check ``spec`` as :meth:`apply` would and return it pinned; nothing is written (a dry run)."""
        pinned, _ = self._resolve(spec)
        return pinned

    def apply(
        self,
        name: str,
        spec: DeploymentSpec,
        actor: str,
        expect_revision: int | None = None,
        create: bool | None = None,
    ) -> Deployment:
        """Validate, pin and store ``spec`` as the next revision of deployment ``name``."""
        check_name(name, "deployment name")
        pinned, _ = self._resolve(spec)
        dep = self.store.put_deployment(name, pinned, actor, expect_revision=expect_revision, create=create)
        if dep.revision == 1 and self.on_created is not None:
            try:
                self.on_created(name, actor)
            except Exception:  # defaults are a convenience: never fail the deployment that was stored
                log.exception("creating the default monitors of %s", name)
        return dep

    def deploy(
        self,
        name: str,
        model: str,
        actor: str,
        *,
        variant: str | None = None,
        runtime: RuntimeOptions | None = None,
        shadow: bool = False,
        replace: bool = False,
        sticky_header: str | None = None,
    ) -> Deployment:
        """Deploy ``model`` (``NAME:VERSION``/``NAME@ALIAS``) as a variant of deployment ``name``.

        A new deployment gets the variant at weight 100. On an existing deployment the variant is added at weight 0
        (or as a shadow with ``shadow=True``) for a later traffic change or rollout; ``replace=True`` makes it the
        only variant at weight 100 (a direct cut-over; input quarantine rules that reject stay, those that route to
        another variant go with it). Re-deploying an existing variant name replaces its model.
        """
        ref = ArtifactRef.parse(model)
        vname = check_name(variant or f"{ref.name}-v{self.store.get_version(ref).version}", "variant name")
        new = VariantSpec(name=vname, model=model, runtime=runtime or RuntimeOptions())
        try:
            current: Deployment | None = self.store.get_deployment(name)
        except NotFound:
            current = None
        if current is None or replace:
            spec = DeploymentSpec(
                variants=[new],
                traffic={vname: 100},
                sticky_header=sticky_header or (current.spec.sticky_header if current else None),
                description=current.spec.description if current else "",
                quarantine=[r for r in current.spec.quarantine if r.action == "reject"] if current else [],
            )
            return self.apply(name, spec, actor, expect_revision=current.revision if current else 0)
        variants = [v for v in current.spec.variants if v.name != vname] + [new]
        traffic = dict(current.spec.traffic)
        shadows = [s for s in current.spec.shadows if s != vname]
        if vname in traffic and traffic[vname] > 0:
            pass  # replacing the model of a live variant keeps its weight
        else:
            traffic[vname] = 0
        if shadow:
            if traffic.get(vname, 0) > 0:
                raise InvalidArgument(f"variant {vname!r} is live; it cannot also be a shadow")
            shadows.append(vname)
        spec = current.spec.model_copy(
            update={
                "variants": variants,
                "traffic": traffic,
                "shadows": shadows,
                "sticky_header": sticky_header or current.spec.sticky_header,
            }
        )
        return self.apply(
            name, DeploymentSpec.model_validate(spec.model_dump()), actor, expect_revision=current.revision
        )

    def set_traffic(
        self,
        name: str,
        weights: Mapping[str, int],
        actor: str,
        shadows: list[str] | None = None,
        expect_revision: int | None = None,
    ) -> Deployment:
        """Set the traffic split. Variants not named get weight 0; weights must sum to 100."""
        current = self.store.get_deployment(name)
        unknown = sorted(set(weights) - {v.name for v in current.spec.variants})
        if unknown:
            raise InvalidArgument(
                f"deployment {name!r} has no variants {unknown}; it has {[v.name for v in current.spec.variants]}"
            )
        traffic = {v.name: int(weights.get(v.name, 0)) for v in current.spec.variants}
        new_shadows = current.spec.shadows if shadows is None else shadows
        new_shadows = [s for s in new_shadows if traffic.get(s, 0) == 0]
        spec = DeploymentSpec.model_validate({**current.spec.model_dump(), "traffic": traffic, "shadows": new_shadows})
        return self.apply(
            name,
            spec,
            actor,
            expect_revision=current.revision if expect_revision is None else expect_revision,
        )

    # ------------------------------------------------------------------------------------------ snapshot

    def snapshot(self) -> RoutingSnapshot:
        """Compile every deployment into one routing snapshot, stamped with the store's snapshot version."""
        while True:
            version = self.store.snapshot_version()
            routes = {d.name: self._route(d) for d in self.store.list_deployments()}
            if self.store.snapshot_version() == version:  # no write slipped in between: consistent
                return RoutingSnapshot(version=version, deployments=routes)

    def _bindings(self, app: ArtifactVersion) -> dict[str, Any]:
        """Resolve what an app version binds (prompt, index, tools) to versions and digests, now.

        Raises:
            NotFound: a bound artifact or alias does not exist. InvalidArgument: it is of the wrong kind.
        """
        refs = app.metadata.get("app") or {}

        def bind(ref: str, kind: ArtifactKind, what: str) -> dict[str, Any]:
            try:
                v = self.store.get_version(ArtifactRef.parse(ref))
            except NotFound as exc:
                raise NotFound(f"app {app.ref}: its {what} {ref}: {exc.message}") from exc
            if v.kind is not kind:
                raise InvalidArgument(f"app {app.ref}: its {what} {ref} is a {v.kind.value}, not a {kind.value}")
            return {"ref": str(v.ref), "requested": ref, "digest": v.digest}

        retriever = refs.get("retriever") or {}
        return {
            "prompt": bind(refs["prompt"], ArtifactKind.PROMPT, "prompt") if refs.get("prompt") else None,
            "index": bind(retriever["index"], ArtifactKind.INDEX, "index") if retriever.get("index") else None,
            "tools": [bind(r, ArtifactKind.TOOL, "tool") for r in refs.get("tools") or []],
        }

    def _binding(self, mv: ArtifactVersion) -> ModelBinding:
        if mv.kind is not ArtifactKind.APP:
            return ModelBinding(
                name=mv.name,
                version=mv.version,
                digest=mv.digest,
                flavor=mv.flavor or "",
                flavor_metadata=mv.metadata.get("flavor", {}),
                signature=mv.signature,
            )
        meta: dict[str, Any] = {"app": mv.metadata.get("app") or {}}
        try:
            meta["bindings"] = self._bindings(mv)
        except (NotFound, InvalidArgument) as exc:  # e.g. an alias deleted since: this app cannot load
            meta["error"] = exc.message
        return ModelBinding(name=mv.name, version=mv.version, digest=mv.digest, flavor=APP_FLAVOR, flavor_metadata=meta)

    def _model_binding(self, model: str) -> ModelBinding:
        """The binding of a variant's model; a pinned model version's is kept (apps re-resolve their bindings)."""
        cached = self._model_bindings.get(model)
        if cached is not None:
            return cached
        binding = self._binding(self.store.get_version(model))
        ref = ArtifactRef.parse(model)
        if ref.version is not None and binding.flavor != APP_FLAVOR:
            if len(self._model_bindings) >= 100_000:  # a bound, not an expected size
                self._model_bindings.clear()
            self._model_bindings[model] = binding
        return binding

    def _route(self, d: Deployment) -> DeploymentRoute:
        variants = []
        for v in d.spec.variants:
            batching = v.runtime.batching
            variants.append(
                VariantRoute(
                    name=v.name,
                    model=self._model_binding(v.model),
                    max_batch_size=batching.max_batch_size if batching else 1,
                    max_wait_ms=batching.max_wait_ms if batching else 0.0,
                    replicas=v.runtime.replicas,
                    timeout_s=v.runtime.timeout_s,
                    generation=v.runtime.generation,
                    autoscaling=AutoscalingRoute(**v.runtime.autoscaling.model_dump())
                    if v.runtime.autoscaling
                    else None,
                )
            )
        return DeploymentRoute(
            name=d.name,
            revision=d.revision,
            variants=tuple(variants),
            weights=dict(d.spec.traffic),
            shadows=tuple(d.spec.shadows),
            sticky_header=d.spec.sticky_header,
            quarantine=tuple(quarantine_route(r) for r in d.spec.quarantine),
            limits=LimitsRoute(**d.spec.limits.model_dump()) if d.spec.limits else None,
        )


def quarantine_route(rule: QuarantineRule) -> QuarantineRoute:
    """A deployment's quarantine rule as the data plane applies it."""
    allowed = tuple(rule.allowed) if rule.allowed is not None else None
    return QuarantineRoute(**{**rule.model_dump(exclude={"allowed"}), "allowed": allowed})


def _check_rule_datatype(rule: QuarantineRule, datatype: str, variant: str) -> None:
    where = f"quarantine rule on {rule.feature!r}"
    numeric = datatype not in ("BYTES", "BOOL")
    if (rule.low is not None or rule.high is not None) and not numeric:
        raise InvalidArgument(
            f"{where}: bounds need a numeric input, but it is {datatype} in variant {variant!r}; use allowed"
        )
    if rule.allowed is not None and numeric:
        bad = []
        for a in rule.allowed:
            try:
                float(a)
            except ValueError:
                bad.append(a)
        if bad:
            raise InvalidArgument(
                f"{where}: the input is {datatype} in variant {variant!r}, so allowed values must be numbers; got {bad}"
            )
    if rule.nulls and not datatype.startswith("FP") and datatype != "BYTES":
        raise InvalidArgument(f"{where}: the input is {datatype} in variant {variant!r}; it cannot hold missing values")
