"""Records of the control plane: what the store returns, the API sends and the SDK parses.

They are separate from table rows (``mlpilot.store.tables``) and from the data plane's ``RoutingSnapshot``.
All are frozen pydantic models, so one definition gives validation, JSON and the OpenAPI schema.
"""

from __future__ import annotations

import enum
import itertools
import re
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, field_validator, model_validator

from mlpilot.errors import InvalidArgument

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
ALIAS_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


def check_name(name: str, what: str = "name") -> str:
    """Validate an artifact, deployment or variant name (letters, digits, ``.``, ``_``, ``-``; ≤ 128 chars)."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidArgument(
            f"invalid {what} {name!r}: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not ALIAS_RE.match(alias) or alias.isdigit() or alias == "latest":
        raise InvalidArgument(
            f"invalid alias {alias!r}: use a letter then letters, digits, '_' or '-' (and not 'latest')"
        )
    return alias


class ArtifactKind(str, enum.Enum):
    MODEL = "model"
    PROMPT = "prompt"
    INDEX = "index"
    TOOL = "tool"
    DATASET = "dataset"
    APP = "app"


class Record(BaseModel):
    model_config = ConfigDict(frozen=True)


#: the largest value of the store's integer columns (signed 64-bit): ids, versions, revisions
INT64_MAX = 2**63 - 1


class ArtifactRef(Record):
    """``NAME:VERSION``, ``NAME@ALIAS`` or ``NAME`` (the latest version)."""

    name: str
    version: int | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, text: str) -> ArtifactRef:
        if not isinstance(text, str) or not text:
            raise InvalidArgument("an artifact reference is NAME, NAME:VERSION or NAME@ALIAS")
        if "@" in text:
            name, alias = text.split("@", 1)
            return cls(name=check_name(name, "artifact name"), alias=check_alias(alias))
        if ":" in text:
            name, ver = text.rsplit(":", 1)
            if not (ver.isascii() and ver.isdigit()) or not 1 <= int(ver) <= INT64_MAX:
                raise InvalidArgument(f"invalid version in {text!r}: versions are integers from 1 to {INT64_MAX}")
            return cls(name=check_name(name, "artifact name"), version=int(ver))
        return cls(name=check_name(text, "artifact name"))

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name


class Artifact(Record):
    name: str
    kind: ArtifactKind
    created_at: datetime
    created_by: str
    latest_version: int | None = None
    aliases: dict[str, int] = Field(default_factory=dict)


class ArtifactVersion(Record):
    """An immutable version of an artifact. ``tags`` are the only mutable part (each change is an event)."""

    name: str
    kind: ArtifactKind
    version: int
    digest: str = Field(description="sha256:<hex> of the stored content")
    size: int = Field(description="bytes")
    filename: str
    flavor: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    signature: dict[str, Any] | None = None
    parents: list[str] = Field(default_factory=list, description="lineage, as NAME:VERSION")
    tags: dict[str, str] = Field(default_factory=dict)
    unsafe: bool = Field(False, description="pickle-based: loading runs code; loads only from the registry store")
    aliases: list[str] = Field(default_factory=list)
    bindings: dict[str, str] = Field(default_factory=dict, description="role -> NAME:VERSION (e.g. reference)")
    created_at: datetime
    created_by: str

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"


class Alias(Record):
    name: str
    alias: str
    version: int
    updated_at: datetime
    updated_by: str


class Event(Record):
    """An append-only audit entry: who did what to which subject, when, with the state before and after."""

    id: int
    ts: datetime
    actor: str
    action: str
    subject: str
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None


# ---------------------------------------------------------------------------------------------- deployments


class BatchingOptions(Record):
    """Adaptive batching: concurrent requests merged into one model call.

    By default (``max_wait_ms=None``) a request never waits when the server is quiet; under concurrency the
    batcher waits a fraction (30%) of the recent model-call time, at most 5 ms, so batches merge. A number fixes
    the wait; ``0`` never waits. ``max_batch_size=1`` turns batching off.
    """

    max_batch_size: int = Field(32, ge=1, le=4096)
    max_wait_ms: float | None = Field(None, ge=0, le=10_000)


class AutoscalingOptions(Record):
    """Replicas that follow the load (the Ray executor; the in-process executor serves one copy): between
    ``min_replicas`` and ``max_replicas``, aiming at ``target_ongoing_requests`` requests in flight per replica."""

    min_replicas: int = Field(1, ge=1, le=1024)
    max_replicas: int = Field(4, ge=1, le=1024)
    target_ongoing_requests: float = Field(2.0, gt=0, le=10_000)

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingOptions:
        if self.min_replicas > self.max_replicas:
            raise InvalidArgument(
                f"autoscaling: min_replicas ({self.min_replicas}) exceeds max_replicas ({self.max_replicas})"
            )
        return self


class RuntimeOptions(Record):
    batching: BatchingOptions | None = Field(default_factory=BatchingOptions)
    replicas: int = Field(1, ge=1, le=1024, description="copies of the variant (the Ray executor; fixed count)")
    autoscaling: AutoscalingOptions | None = Field(None, description="replicas follow the load; wins over replicas")
    timeout_s: float = Field(30.0, gt=0, le=3600)
    generation: int = Field(0, ge=0, description="bumped to make the data plane load the variant's runtime anew")


class VariantSpec(Record):
    """What to run: a model reference plus runtime options. Stored resolved (``model`` pinned to a version)."""

    name: str
    model: str = Field(description="NAME:VERSION, NAME@ALIAS or NAME; pinned to NAME:VERSION when stored")
    requested: str | None = Field(None, description="the reference as the user gave it, e.g. iris@champion")
    runtime: RuntimeOptions = Field(default_factory=RuntimeOptions)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v, "variant name")


class QuarantineRule(Record):
    """An input quarantine: requests with a row whose ``feature`` breaks the rule are rejected (``action="reject"``:
    HTTP 422, gRPC INVALID_ARGUMENT) or answered by ``variant`` (``action="route"``: the whole request).

    Exactly one kind of condition: numeric bounds (``low`` and/or ``high``: a value outside ``[low, high]`` breaks
    it), ``allowed`` categories (any other value, a missing one included, breaks it) or ``nulls`` (a missing value —
    NaN, or an empty string — breaks it). ``reason`` is shown in the rejection, e.g. ``incident 12``.
    """

    feature: str = Field(min_length=1, max_length=128, description="an input of the model signature")
    low: float | None = None
    high: float | None = None
    allowed: list[str] | None = None
    nulls: bool = False
    action: Literal["reject", "route"] = "reject"
    variant: str | None = Field(None, description="route: the variant that answers quarantined requests")
    reason: str = Field("", max_length=200)

    @model_validator(mode="after")
    def _one_condition(self) -> QuarantineRule:
        f = self.feature
        kinds = [k for k, on in (("bounds", self.low is not None or self.high is not None),
                                  ("allowed", self.allowed is not None), ("nulls", self.nulls)) if on]  # fmt: skip
        if len(kinds) != 1:
            raise InvalidArgument(
                f"quarantine rule on {f!r}: give exactly one condition (low/high, allowed or nulls), got "
                + (", ".join(kinds) if kinds else "none")
            )
        for name, bound in (("low", self.low), ("high", self.high)):
            if bound is not None and not abs(bound) < float("inf"):
                raise InvalidArgument(f"quarantine rule on {f!r}: {name} must be a finite number, got {bound}")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise InvalidArgument(f"quarantine rule on {f!r}: low {self.low:g} is above high {self.high:g}")
        if self.allowed is not None and not self.allowed:
            raise InvalidArgument(f"quarantine rule on {f!r}: allowed needs at least one value")
        if self.action == "route" and not self.variant:
            raise InvalidArgument(f"quarantine rule on {f!r}: a route rule needs the variant that takes the requests")
        if self.action == "reject" and self.variant:
            raise InvalidArgument(f"quarantine rule on {f!r}: a reject rule takes no variant (use action route)")
        return self


class DeploymentLimits(Record):
    """Limits of a deployment's data plane (docs/serving.md "Limits"). ``rate_per_s``: requests per second over all
    callers (a token bucket of ``burst`` tokens, default one second's worth; over it → 429 with Retry-After);
    ``max_in_flight``: requests one variant serves at once before more are shed (503 with Retry-After; default the
    server's ``limits.max_in_flight``); ``fallback``: the variant that answers while another variant's circuit
    breaker is open (``breaker_failures`` consecutive server-side failures open it for ``breaker_open_s`` seconds;
    no fallback, no breaker)."""

    rate_per_s: float | None = Field(None, gt=0, le=1_000_000)
    burst: int | None = Field(None, ge=1, le=1_000_000)
    max_in_flight: int | None = Field(None, ge=1, le=1_000_000)
    fallback: str | None = None
    breaker_failures: int = Field(5, ge=1, le=10_000)
    breaker_open_s: float = Field(30.0, gt=0, le=86_400)


class DeploymentSpec(Record):
    """Desired state of a deployment. ``traffic`` maps live variants to integer weights summing to 100;
    ``quarantine`` rules are checked in order on every request (the first one a request breaks decides)."""

    variants: list[VariantSpec]
    traffic: dict[str, int] = Field(default_factory=dict)
    shadows: list[str] = Field(default_factory=list)
    sticky_header: str | None = Field(None, description="route requests with equal values of this header together")
    description: str = ""
    quarantine: list[QuarantineRule] = Field(default_factory=list)
    limits: DeploymentLimits | None = None

    @model_validator(mode="after")
    def _consistent(self) -> DeploymentSpec:
        names = [v.name for v in self.variants]
        if not names:
            raise InvalidArgument("a deployment needs at least one variant")
        if len(set(names)) != len(names):
            raise InvalidArgument(f"duplicate variant names: {names}")
        unknown = sorted((set(self.traffic) | set(self.shadows)) - set(names))
        if unknown:
            raise InvalidArgument(f"traffic or shadows name unknown variants {unknown}; variants are {names}")
        if any(w < 0 or w > 100 for w in self.traffic.values()):
            raise InvalidArgument(f"weights must be integers in 0..100, got {self.traffic}")
        total = sum(self.traffic.values())
        if total != 100:
            raise InvalidArgument(f"traffic weights must sum to 100, got {total} ({self.traffic})")
        both = sorted(set(self.shadows) & {k for k, w in self.traffic.items() if w > 0})
        if both:
            raise InvalidArgument(f"variants {both} cannot be both live (weight > 0) and shadow")
        if self.sticky_header is not None and not re.match(r"^[A-Za-z0-9-]{1,64}$", self.sticky_header):
            raise InvalidArgument(f"invalid sticky header name {self.sticky_header!r}")
        fallback = self.limits.fallback if self.limits else None
        if fallback is not None and fallback not in names:
            raise InvalidArgument(f"limits.fallback names {fallback!r}, which is not a variant; variants are {names}")
        if fallback is not None and fallback in self.shadows:
            raise InvalidArgument(f"limits.fallback {fallback!r} is a shadow; name a variant that answers requests")
        for rule in self.quarantine:
            if rule.variant is not None and rule.variant not in names:
                raise InvalidArgument(
                    f"quarantine rule on {rule.feature!r} routes to variant {rule.variant!r}, which the deployment "
                    f"does not have; variants are {names} (lift the rule before removing its variant)"
                )
            if rule.variant in self.shadows:
                raise InvalidArgument(
                    f"quarantine rule on {rule.feature!r} routes to {rule.variant!r}, a shadow; route to a variant "
                    "that answers requests"
                )
        return self


class Deployment(Record):
    name: str
    revision: int
    spec: DeploymentSpec
    created_at: datetime
    updated_at: datetime
    updated_by: str
    snapshot_version: int


# ---------------------------------------------------------------------------------------------- monitors


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: Any) -> timedelta:
    """``30s``, ``15m``, ``2h``, ``7d``, ``1w``, a number of seconds or a ``timedelta`` → ``timedelta`` (> 0).

    Raises:
        InvalidArgument: anything else.
    """
    if isinstance(value, timedelta):
        out = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        out = timedelta(seconds=float(value))
    elif isinstance(value, str) and (m := _DURATION_RE.match(value)):
        out = timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
    elif isinstance(value, str) and value.startswith("P"):
        from pydantic import TypeAdapter, ValidationError

        try:
            out = TypeAdapter(timedelta).validate_python(value)
        except ValidationError as exc:
            raise InvalidArgument(f"bad duration {value!r}") from exc
    else:
        raise InvalidArgument(f"bad duration {value!r}: use e.g. 30s, 15m, 2h, 7d, 1w or a number of seconds")
    if out <= timedelta(0):
        raise InvalidArgument(f"a duration must be positive, got {value!r}")
    return out


def format_duration(d: timedelta) -> str:
    s = d.total_seconds()
    for unit in ("w", "d", "h", "m"):
        if s >= _UNITS[unit] and s % _UNITS[unit] == 0:
            return f"{int(s // _UNITS[unit])}{unit}"
    return f"{s:g}s"


Duration = Annotated[timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)]


class MonitorKind(str, enum.Enum):
    """What a monitor computes over its window.

    - ``traffic``: requests, error rate, latency percentiles (value: error rate).
    - ``drift``: per-feature drift of the inputs (or, with ``params.on = "outputs"``, of the predictions) against
      the reference (value: share of drifted features).
    - ``performance``: realized metrics from feedback labels joined to the predictions (value: accuracy, or the
      regression error ``params.metric``).
    - ``estimated_performance``: label-free accuracy estimate from the calibrated confidence (value: estimate).
    - ``quality``: schema, null rate and range checks against the reference (value: share of checks failed).
    - ``llm``: an LLM app's tokens, cost, latency, retrieval similarity, refusal/empty rates, answer length,
      groundedness, citation and tool-error rates and user feedback, checked against ``params.max`` /
      ``params.min``, plus query-embedding and topic drift against the reference window (value: ``params.value``,
      by default ``groundedness_mean``, else the error rate; see :mod:`mlpilot.monitors.llm`).
    """

    TRAFFIC = "traffic"
    DRIFT = "drift"
    PERFORMANCE = "performance"
    ESTIMATED_PERFORMANCE = "estimated_performance"
    QUALITY = "quality"
    LLM = "llm"


class MonitorSpec(Record):
    """A scheduled check of one deployment's traffic.

    ``reference`` is ``bound`` (the dataset bound as ``reference`` to the served model version, DESIGN §2), a
    dataset reference (``NAME:VERSION`` or ``NAME@ALIAS``), or ``previous:DURATION`` (the deployment's own traffic in
    the DURATION just before the window). The window is the last ``window`` of time, or the last ``window_rows``
    rows (looking back at most ``window``). ``segment`` keeps only rows whose logged columns equal the given values
    (e.g. ``{"in.region": "eu"}``).
    """

    kind: MonitorKind
    variant: str | None = Field(None, description="the variant to watch; default: the one with the most traffic")
    segment: dict[str, str | int | float | bool] = Field(default_factory=dict)
    reference: str = "bound"
    window: Duration = timedelta(hours=1)
    window_rows: int | None = Field(None, ge=10, le=10_000_000)
    every: Duration = timedelta(minutes=15)
    threshold: float | None = Field(None, description="alert level of the value; default: the detector's verdict")
    min_rows: int = Field(30, ge=1, le=10_000_000)
    features: list[str] | None = Field(None, description="drift/quality: only these inputs (default: all)")
    params: dict[str, Any] = Field(default_factory=dict, description="detector options, e.g. numeric_test")
    enabled: bool = True

    @field_validator("reference")
    @classmethod
    def _reference(cls, v: str) -> str:
        if v == "bound":
            return v
        if v.startswith("previous:"):
            parse_duration(v.split(":", 1)[1])
            return v
        ArtifactRef.parse(v)
        return v

    @field_validator("segment")
    @classmethod
    def _segment(cls, v: dict[str, Any]) -> dict[str, Any]:
        for col in v:
            if not re.match(r"^[A-Za-z0-9_.\[\]-]{1,128}$", col):
                raise InvalidArgument(f"invalid segment column {col!r}")
        return v


class Monitor(Record):
    name: str
    deployment: str
    spec: MonitorSpec
    created_at: datetime
    created_by: str
    next_run: datetime
    last_run: datetime | None = None
    last_status: str | None = None


class MonitorStatus(str, enum.Enum):
    OK = "ok"
    ALERT = "alert"
    NO_DATA = "no_data"
    ERROR = "error"


class MonitorResult(Record):
    """One run of a monitor: a point of its time series."""

    id: int
    deployment: str
    monitor: str
    ts: datetime
    window_start: datetime
    window_end: datetime
    rows: int
    status: MonitorStatus
    value: float | None = None
    message: str = ""
    #: the run's numbers: ``{"features": {name: {statistic, p_value, drifted, …}}, …}`` (JSON-ready).
    detail: dict[str, Any] = Field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- SLOs and alerts


class Indicator(str, enum.Enum):
    """What an SLO counts as good events.

    - ``availability``: requests that succeed.
    - ``latency``: successful requests served within ``threshold`` milliseconds.
    - ``accuracy``: labelled predictions that are right (classification) or within ``threshold`` of the label
      (regression); counted at prediction time, so late labels fill in the past.
    - ``drift`` / ``estimated_accuracy`` / ``monitor``: time slices in which ``monitor``'s runs were ``ok`` (each run
      speaks for the time since the previous one — the SRE workbook's windows-based indicator).
    """

    AVAILABILITY = "availability"
    LATENCY = "latency"
    ACCURACY = "accuracy"
    DRIFT = "drift"
    ESTIMATED_ACCURACY = "estimated_accuracy"
    MONITOR = "monitor"


class BurnRateRuleSpec(Record):
    long: Duration
    short: Duration
    burn_rate: float = Field(gt=0)
    severity: str = Field("page", pattern="^(page|ticket)$")


class SLOSpec(Record):
    indicator: Indicator
    objective: float = Field(gt=0, lt=1, description="share of good events, e.g. 0.999")
    variant: str | None = None
    threshold: float | None = Field(None, description="latency: milliseconds; accuracy: regression tolerance")
    monitor: str | None = Field(None, description="drift / estimated_accuracy / monitor: the monitor's name")
    window: Duration = timedelta(days=30)
    rules: list[BurnRateRuleSpec] | None = Field(None, description="default: the SRE workbook's four rules")
    min_events: float = Field(1.0, ge=0)
    webhooks: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> SLOSpec:
        if self.indicator is Indicator.LATENCY and (self.threshold is None or self.threshold <= 0):
            raise InvalidArgument("a latency SLO needs threshold = the latency limit in milliseconds (> 0)")
        monitor_based = (Indicator.DRIFT, Indicator.ESTIMATED_ACCURACY, Indicator.MONITOR)
        if self.indicator in monitor_based and not self.monitor:
            raise InvalidArgument(f"a {self.indicator.value} SLO needs monitor = the name of the monitor it counts")
        for url in self.webhooks:
            if not re.match(r"^https?://", url):
                raise InvalidArgument(f"webhook {url!r} must be an http:// or https:// URL")
        most = 1.0 / (1.0 - self.objective)
        for rule in self.rules or []:
            if rule.short >= rule.long:
                raise InvalidArgument(f"burn-rate rule needs short < long, got {rule.short} >= {rule.long}")
            if rule.burn_rate > most:
                raise InvalidArgument(
                    f"a burn rate of {rule.burn_rate:g} can never fire: an objective of {self.objective:g} burns "
                    f"at most {most:.4g}x (everything bad)"
                )
        return self


class SLODefinition(Record):
    name: str
    deployment: str
    spec: SLOSpec
    created_at: datetime
    created_by: str


class Alert(Record):
    """An SLO's alert: opened when a burn-rate rule fires, escalated, resolved when nothing fires."""

    id: int
    deployment: str
    slo: str
    severity: str
    status: str  # firing | resolved
    fired_at: datetime
    updated_at: datetime
    resolved_at: datetime | None = None
    summary: str = ""
    detail: dict[str, Any] = Field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- incidents


class IncidentStatus(str, enum.Enum):
    """``open`` → ``mitigating`` (an action started) → ``mitigated`` (verified) → ``resolved``."""

    OPEN = "open"
    MITIGATING = "mitigating"
    MITIGATED = "mitigated"
    RESOLVED = "resolved"


class Incident(Record):
    """Symptoms (alerts) of one deployment grouped in time, with a lifecycle (see ``mlpilot.incidents.policy``).

    ``keys`` are the dedup keys of its symptoms (``alert:<deployment>/<slo>``), ``alerts`` the alert ids;
    ``revision`` grows with every change (compare-and-set)."""

    id: int
    deployment: str
    status: IncidentStatus
    severity: str
    title: str
    keys: list[str] = Field(default_factory=list)
    alerts: list[int] = Field(default_factory=list)
    opened_at: datetime
    updated_at: datetime
    last_signal_at: datetime
    mitigated_at: datetime | None = None
    resolved_at: datetime | None = None
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    revision: int = 1


# ---------------------------------------------------------------------------------------------- rollouts


class RolloutStrategy(str, enum.Enum):
    """How traffic moves from the baseline (stable) variant to the candidate.

    - ``canary``: weight steps (e.g. 5 → 25 → 50 → 100), each gated by the analyses.
    - ``blue_green``: all traffic to the candidate at once, the baseline kept ready for ``bake``; analyses compare
      with the baseline's traffic just before the switch; a failure switches back.
    - ``ab``: a fixed split (``split`` % to the candidate) until a sequential test on the primary analysis decides;
      the winner stays.
    - ``bandit``: several candidate arms; the weights follow the rewards (``bandit.algorithm``).
    """

    CANARY = "canary"
    BLUE_GREEN = "blue_green"
    AB = "ab"
    BANDIT = "bandit"


class RolloutPhase(str, enum.Enum):
    PENDING = "pending"
    SHADOW = "shadow"
    CANARY = "canary"
    BAKE = "bake"
    EXPERIMENT = "experiment"
    PAUSED = "paused"
    PROMOTING = "promoting"
    PROMOTED = "promoted"
    ABORTED = "aborted"
    ROLLED_BACK = "rolled_back"

    @property
    def terminal(self) -> bool:
        return self in (RolloutPhase.PROMOTED, RolloutPhase.ABORTED, RolloutPhase.ROLLED_BACK)


class AnalysisKind(str, enum.Enum):
    """What an analysis compares between the candidate and the baseline (see docs/rollouts.md).

    ``error_rate``, ``latency`` (Mann-Whitney + quantile ratio), ``input_drift`` (candidate's inputs vs the
    baseline's), ``output_drift`` (predictions between arms), ``agreement`` (shadow: same answer on the same
    request), ``performance`` (realized metric from feedback, non-inferiority on a confidence sequence),
    ``estimated_performance`` (label-free), ``reward`` (mean reward from feedback), ``custom`` (an expression);
    for LLM apps: ``llm_metric`` (a per-request LLM signal — groundedness, citation, refusal, cost, tokens, time
    to first token … — non-inferiority like ``performance``), ``eval`` (the eval results recorded on both app
    versions by ``mlpilot eval``) and ``win_rate`` (shadow: an LLM judge compares the paired answers; the
    candidate's win rate, ties counting half, with a Wilson bound).
    """

    ERROR_RATE = "error_rate"
    LATENCY = "latency"
    INPUT_DRIFT = "input_drift"
    OUTPUT_DRIFT = "output_drift"
    AGREEMENT = "agreement"
    PERFORMANCE = "performance"
    ESTIMATED_PERFORMANCE = "estimated_performance"
    REWARD = "reward"
    CUSTOM = "custom"
    LLM_METRIC = "llm_metric"
    EVAL = "eval"
    WIN_RATE = "win_rate"


class Verdict(str, enum.Enum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


class AnalysisSpec(Record):
    """One gate. ``required`` analyses must pass to advance; any analysis that fails triggers ``on_fail``."""

    kind: AnalysisKind
    name: str | None = Field(None, description="default: the kind")
    params: dict[str, Any] = Field(default_factory=dict)
    min_samples: int = Field(100, ge=1, le=100_000_000, description="per arm, below which it is inconclusive")
    required: bool = True

    @property
    def label(self) -> str:
        return self.name or self.kind.value


class StepSpec(Record):
    weight: int = Field(ge=1, le=100, description="% of live traffic to the candidate")
    min_duration: Duration = timedelta(minutes=1)
    min_samples: int = Field(100, ge=0, le=100_000_000, description="candidate requests before the step can pass")
    max_duration: Duration | None = Field(None, description="then on_inconclusive; default 10 x min_duration")


class ShadowSpec(Record):
    """A shadow phase before any live traffic: the candidate answers mirrored requests, nobody sees its answers."""

    min_duration: Duration = timedelta(minutes=1)
    min_samples: int = Field(100, ge=0, le=100_000_000)
    max_duration: Duration | None = None


class BanditAlgorithm(str, enum.Enum):
    THOMPSON = "thompson"
    EPSILON_GREEDY = "epsilon_greedy"
    UCB = "ucb"


class BanditSpec(Record):
    algorithm: BanditAlgorithm = BanditAlgorithm.THOMPSON
    reward: str = Field("label", description="'label' (1 if the prediction equals the label) or 'reward' feedback")
    epsilon: float = Field(0.1, ge=0.0, le=1.0)
    min_weight: int = Field(1, ge=0, le=33, description="% every arm keeps (exploration floor)")
    update_every: Duration = timedelta(minutes=1)
    duration: Duration = timedelta(hours=1)
    promote_best: bool = True


class OnInconclusive(str, enum.Enum):
    ADVANCE = "advance"
    PAUSE = "pause"
    ROLLBACK = "rollback"


class OnFail(str, enum.Enum):
    ROLLBACK = "rollback"
    PAUSE = "pause"


def _default_steps() -> list[StepSpec]:
    return [StepSpec(weight=w) for w in (5, 25, 50, 100)]


def _default_analyses() -> list[AnalysisSpec]:
    return [
        AnalysisSpec(kind=AnalysisKind.ERROR_RATE),
        AnalysisSpec(kind=AnalysisKind.LATENCY),
        AnalysisSpec(kind=AnalysisKind.PERFORMANCE, required=False),
    ]


class RolloutSpec(Record):
    """What to roll out and how. ``candidate`` is a model reference (``NAME:VERSION``/``NAME@ALIAS``) or, for a
    release, comes from ``release`` (roles → references: ``model`` and optionally ``reference``, a dataset)."""

    candidate: str | None = None
    release: dict[str, str] | None = None
    variant: str | None = Field(None, description="the candidate variant's name; default NAME-vVERSION")
    baseline: str | None = Field(None, description="the stable variant; default the live one with most traffic")
    arms: list[str] = Field(default_factory=list, description="bandit: more candidate models")
    strategy: RolloutStrategy = RolloutStrategy.CANARY
    steps: list[StepSpec] = Field(default_factory=_default_steps)
    shadow: ShadowSpec | None = None
    bake: Duration = timedelta(minutes=5)
    split: int = Field(50, ge=1, le=99, description="ab: % to the candidate")
    max_duration: Duration = timedelta(hours=24)
    bandit: BanditSpec = Field(default_factory=BanditSpec)
    analyses: list[AnalysisSpec] = Field(default_factory=_default_analyses)
    alpha: float = Field(0.05, gt=0.0, lt=0.5, description="family-wise error of the statistical gates")
    on_fail: OnFail = OnFail.ROLLBACK
    on_inconclusive: OnInconclusive = OnInconclusive.ADVANCE
    promote_alias: str | None = Field(None, description="move this alias of the candidate model on promotion")

    @model_validator(mode="after")
    def _consistent(self) -> RolloutSpec:
        if (self.candidate is None) == (self.release is None):
            raise InvalidArgument("give a candidate model or a release (not both)")
        if self.release is not None and "model" not in self.release:
            raise InvalidArgument(f"a release needs a 'model'; got roles {sorted(self.release)}")
        if self.strategy is RolloutStrategy.CANARY:
            if not self.steps:
                raise InvalidArgument("a canary needs at least one step")
            weights = [s.weight for s in self.steps]
            if any(b <= a for a, b in itertools.pairwise(weights)):
                raise InvalidArgument(f"canary step weights must increase, got {weights}")
        if self.arms and self.strategy is not RolloutStrategy.BANDIT:
            raise InvalidArgument("arms are for the bandit strategy")
        names = [a.label for a in self.analyses]
        if len(set(names)) != len(names):
            raise InvalidArgument(f"analysis names must be unique, got {names}")
        if self.promote_alias is not None:
            check_alias(self.promote_alias)
        return self

    @property
    def model(self) -> str:
        return self.candidate if self.candidate is not None else (self.release or {})["model"]


class Rollout(Record):
    id: int
    deployment: str
    spec: RolloutSpec
    phase: RolloutPhase
    step: int = Field(0, description="index into spec.steps during the canary phase")
    baseline: str
    candidate: str = Field(description="the candidate variant")
    arms: list[str] = Field(default_factory=list, description="bandit: every arm's variant, candidates first")
    paused_phase: RolloutPhase | None = None
    started_at: datetime
    phase_started_at: datetime
    step_started_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    revision: int
    created_by: str
    active: bool = Field(True, description="false once settled: the deployment may start another rollout")
    message: str = ""
    last_decision: dict[str, Any] | None = None
    state: dict[str, Any] = Field(default_factory=dict, description="strategy state (bandit weights, …)")


class Release(Record):
    """A set of artifact versions rolled out and rolled back as one unit."""

    deployment: str
    number: int
    artifacts: dict[str, str]
    status: str = Field(description="candidate, live, superseded or rolled_back")
    rollout_id: int | None = None
    created_at: datetime
    created_by: str
