"""The one settings tree (environment prefix ``MLPILOT_``, nested with ``__``), loaded once and passed down.

Examples: ``MLPILOT_HOME=/srv/mlpilot``, ``MLPILOT_STORE__URL=postgresql+psycopg://u@db/mlpilot``,
``MLPILOT_SERVER__PORT=9000``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from mlpilot.telemetry.segments import SegmentStore


class StoreSettings(BaseModel):
    #: SQLAlchemy URL of the control-plane store; empty = SQLite file ``<home>/mlpilot.db`` (WAL mode).
    url: str = ""
    #: Seconds a SQLite writer waits for the lock before failing with ``Unavailable``.
    busy_timeout_s: float = 30.0


class ArtifactSettings(BaseModel):
    #: Where artifact blobs live: a directory, or any fsspec URL (``s3://bucket/prefix``; S3 needs
    #: ``mlpilot[s3]``); empty = ``<home>/artifacts``.
    root: str = ""
    #: Largest upload accepted by the API, in bytes.
    max_upload_bytes: int = 2 * 1024**3
    #: options of the fsspec filesystem of a URL ``root``, e.g. ``{"endpoint_url": "http://minio:9000", "key": …,
    #: "secret": …}`` (``MLPILOT_ARTIFACTS__STORAGE_OPTIONS='{…}'`` or ``…__STORAGE_OPTIONS__KEY=…``).
    storage_options: dict[str, Any] = Field(default_factory=dict)
    #: the local read-through cache of a URL ``root``; empty = ``<home>/cache/blobs``.
    cache_dir: str = ""
    #: the cache's size bound in bytes (least recently used blobs are removed first).
    cache_max_bytes: int = Field(10 * 1024**3, gt=0)
    #: trust every pickle-based model registered here (joblib/pickle, cloudpickle, Python source: loading them runs
    #: their code) without the per-registration ``--trust-pickle`` / ``trust_pickle=True``; each version still
    #: records the trust decision (docs/security.md, "Artifacts").
    trust_pickle: bool = False
    #: largest total size of the files of an archive (a packed index, a skops zip) once unpacked, in bytes.
    max_unpacked_bytes: int = Field(16 * 1024**3, gt=0)
    #: most members (files and directories) an archive may have.
    max_archive_members: int = Field(100_000, gt=0)


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8000
    #: OIP v2 gRPC on this port (same process, same data plane); ``grpc=False`` turns it off.
    grpc: bool = True
    grpc_port: int = 8001
    #: worker processes (each loads every deployment and follows the snapshot feed).
    workers: int = 1
    #: largest inference request body, in bytes (413 beyond).
    max_body_bytes: int = 64 * 1024**2
    #: how often the data plane checks the store for a new routing snapshot, in seconds.
    snapshot_poll_s: float = 0.2
    #: how long an unloaded variant's runtime lives on for in-flight requests, in seconds.
    unload_grace_s: float = 5.0
    #: a deployment whose new routing failed to load (a runtime that did not start in time, a store away) keeps its
    #: previous routing and the data plane tries again after this many seconds, doubling each time up to 32x;
    #: 0: only the next snapshot tries again.
    load_retry_s: float = Field(5.0, ge=0)
    #: Python's GIL switch interval in the server process, in seconds (the default 5 ms adds to tail latency
    #: whenever a background thread runs).
    gil_switch_interval_s: float = 0.0005
    #: once the server is ready (models loaded), move every object alive then out of the garbage collector's reach
    #: (``gc.freeze``): full collections then scan only what was created since — a few ms instead of ~200 ms every
    #: ~15 s at thousands of requests/s, which showed as the p99 of whole minutes (BENCHMARKS.md "Soak").
    gc_freeze: bool = True
    #: per-request Prometheus series (requests, latency per stage, batch sizes, in-flight); off only to measure
    #: what they cost — drops and errors are always counted.
    metrics: bool = True
    #: elect one leader among the server processes sharing a store (a lease in the store) to run the rollout and
    #: monitor ticks and request-log maintenance; off: every process runs them (claims still prevent duplicates).
    leader_election: bool = True
    #: the leader's lease, in seconds: renewed every third of it, so a dead leader is replaced within ~4/3 of it.
    leader_lease_s: float = Field(6.0, gt=0, le=3600)
    #: the scheduler's jobs (monitors, rollouts, request-log maintenance) run on a thread with this much lower CPU
    #: priority (Linux ``nice``, inherited by the DuckDB threads they start), so a monitor reading an hour of
    #: requests takes CPU that serving does not need instead of stalling it; 0: same priority as serving.
    jobs_nice: int = Field(10, ge=0, le=19)
    #: the control plane a data-plane-only process (``mlpilot serve``) follows over its API (``http://host:8000``).
    control_url: str = ""


class LogSettings(BaseModel):
    """The request log (see ``mlpilot.telemetry.reqlog``)."""

    #: ``fast``: written every ``flush_interval_s`` (a hard crash loses at most that window);
    #: ``strict``: on disk (fsynced spill, group commit) before the response is sent.
    durability: str = Field("fast", pattern="^(fast|strict)$")
    flush_interval_s: float = 1.0
    #: most records waiting to be written; beyond it records are dropped and counted.
    capacity: int = 100_000
    #: where segments go; empty = ``<home>/logs``.
    root: str = ""
    enabled: bool = True
    #: ``mlpilot logs prune`` deletes hour partitions older than this many days; 0 = keep forever.
    retention_days: float = Field(0.0, ge=0)
    #: ``mlpilot logs compact`` merges the segments of closed hours that have fewer rows than this.
    compact_below_rows: int = Field(50_000, ge=2)
    #: how often ``mlpilot up`` applies retention and compacts closed hours, in seconds; 0 = never (use the CLI).
    maintain_every_s: float = Field(600.0, ge=0)
    #: an fsspec URL (``s3://bucket/mlpilot/logs``; S3 needs ``mlpilot[s3]``) sealed segments are shipped to from
    #: ``root``; queries, retention and compaction then work on both. Empty = segments stay under ``root``.
    remote: str = ""
    #: options of the fsspec filesystem of ``remote``; empty = ``artifacts.storage_options``.
    storage_options: dict[str, Any] = Field(default_factory=dict)
    #: seconds between two shipping rounds (how late other processes and hosts see a process's records).
    ship_every_s: float = Field(30.0, gt=0)
    #: input/output names and JSON keys (case-insensitive, also nested in LLM JSON) whose values never reach the
    #: request log or its spill; a redacted feature can no longer be monitored. Secrets (API keys, bearer tokens,
    #: passwords in URLs …) are scrubbed from its text whatever this says (docs/security.md, "Redaction").
    redact_fields: list[str] = Field(default_factory=list)
    #: ``mask``: values become ``[REDACTED]``; ``hash``: ``[REDACTED:<16 hex>]``, an HMAC-SHA256 with
    #: ``redact_salt``, so equal values stay equal (joins, distinct counts) without being readable.
    redact_mode: Literal["mask", "hash"] = "mask"
    #: the secret key of ``redact_mode = "hash"`` (keep it stable: another salt gives other hashes).
    redact_salt: SecretStr = SecretStr("")

    @field_validator("remote")
    @classmethod
    def _remote_url(cls, v: str) -> str:
        if v and "://" not in v:
            raise ValueError(f"logs.remote must be a URL (s3://bucket/prefix, file:///dir …), got {v!r}")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _redaction(self) -> LogSettings:
        if self.redact_mode == "hash" and not self.redact_salt.get_secret_value():
            raise ValueError("logs.redact_mode hash needs logs.redact_salt (a secret; MLPILOT_LOGS__REDACT_SALT)")
        return self


class TracingSettings(BaseModel):
    """OpenTelemetry traces of inference requests (needs ``pip install "mlpilot[otel]"``)."""

    enabled: bool = False
    #: OTLP/HTTP endpoint (e.g. ``http://127.0.0.1:4318/v1/traces``); empty = keep spans in memory only.
    otlp_endpoint: str = ""
    service_name: str = "mlpilot"
    #: share of requests traced (head sampling); a request whose ``traceparent`` header is sampled is always
    #: traced, continuing the caller's trace. Every request's trace id is in the request log either way. A traced
    #: request costs ~0.4 ms of CPU in CPython (6 spans built and OTLP-encoded), so 1% keeps tracing under 2%
    #: of a busy server's CPU; raise it for low-traffic deployments or while debugging.
    sample_ratio: float = Field(0.01, ge=0.0, le=1.0)


class MonitorSettings(BaseModel):
    """Scheduled monitors, SLOs and alerts (see ``mlpilot.monitors``)."""

    #: run due monitors and evaluate SLOs in ``mlpilot up`` (off: only on demand, ``mlpilot monitors run``).
    enabled: bool = True
    #: how often the scheduler wakes up, in seconds.
    tick_s: float = 15.0
    #: create a traffic monitor, a drift monitor and an availability SLO for every new deployment.
    defaults_on_deploy: bool = True
    #: webhook URLs notified of every alert that fires or resolves (in addition to each SLO's own).
    webhooks: list[str] = Field(default_factory=list)
    #: seconds a webhook call may take before it counts as failed (retried with backoff, 3 attempts).
    webhook_timeout_s: float = 5.0
    #: most request-log rows a monitor reads from its window: a larger window is read as a uniform random sample of
    #: this many rows (drift, quality, outliers …; the traffic monitor counts every request, reading 5 columns).
    max_rows: int = Field(200_000, ge=1_000)


class RolloutSettings(BaseModel):
    """The rollout controller (see ``mlpilot.rollouts`` and docs/rollouts.md)."""

    #: advance active rollouts in ``mlpilot up`` (off: they only move on manual commands).
    enabled: bool = True
    #: how often the controller looks at every active rollout, in seconds.
    tick_s: float = 5.0


class LLMPrice(BaseModel):
    input_per_million: float = Field(ge=0)
    output_per_million: float = Field(ge=0)


class IncidentSettings(BaseModel):
    """Incidents, RCA and healing (see ``mlpilot.incidents`` and docs/incidents.md)."""

    #: diagnose every incident when it opens or a new symptom joins it (the deterministic RCA engine).
    rca: bool = True
    #: the default healing mode of deployments without their own policy: observe, suggest or auto.
    healing_mode: str = "suggest"
    #: the least confidence of a diagnosis an automatic action needs.
    min_confidence: float = 0.7
    #: seconds after an action before it is verified on the symptom (undone if it did not help).
    verify_after_s: float = 300.0
    #: seconds between two automatic actions on one deployment.
    cooldown_s: float = 600.0
    #: seconds after which an open incident is diagnosed again (more data arrived) when its last diagnosis was
    #: inconclusive, or when its suggested action waits only for more confidence (auto mode).
    rediagnose_s: float = 300.0

    @field_validator("healing_mode")
    @classmethod
    def _mode(cls, v: str) -> str:
        if v not in ("observe", "suggest", "auto"):
            raise ValueError(f"healing_mode must be observe, suggest or auto, got {v!r}")
        return v


class ExecutorSettings(BaseModel):
    """Where model variants run (see docs/scale-out.md, "Ray executor"); the router stays in the server process."""

    #: ``inprocess``: in the server process; ``ray``: each variant a Ray Serve application (``mlpilot[ray]``).
    kind: Literal["inprocess", "ray"] = "inprocess"
    #: the Ray cluster to join (``host:port`` or ``auto``); empty = start a local Ray in the server process.
    ray_address: str = ""
    #: Ray namespace of the server, and the prefix of the Serve applications it creates.
    namespace: str = Field("mlpilot", min_length=1, max_length=64)
    #: CPUs of a local Ray (empty ``ray_address``); 0 = every core.
    num_cpus: int = Field(0, ge=0)
    #: CPUs Ray reserves per replica (0.5: two replicas per core).
    replica_cpus: float = Field(0.5, gt=0)
    #: requests a replica takes at once (at least the variant's batch size).
    max_ongoing_requests: int = Field(16, ge=1)
    #: how often Serve health-checks each replica, in seconds (a failing or dead replica is replaced).
    health_check_period_s: float = Field(2.0, gt=0)
    #: longest wait for a variant's replicas to run before its load fails (the previous routing stays), in seconds.
    load_timeout_s: float = Field(120.0, gt=0)


class LLMSettings(BaseModel):
    """LLM apps (see docs/llm.md)."""

    #: price per million tokens by model or backend name, for the request log's ``out.cost`` when an app has no
    #: ``pricing`` of its own: ``{"gpt-4o-mini": {"input_per_million": 0.15, "output_per_million": 0.6}}``.
    prices: dict[str, LLMPrice] = Field(default_factory=dict)


#: JWT algorithms ``auth.oidc.algorithms`` may name (``none`` never; ``HS*`` only with a shared secret).
OIDC_ALGORITHMS = frozenset(
    [f"{family}{bits}" for family in ("RS", "PS", "ES", "HS") for bits in (256, 384, 512)] + ["EdDSA"]
)


class OidcSettings(BaseModel):
    """Bearer JWTs from an OpenID Connect provider (docs/security.md, "OIDC bearer tokens"); off while ``issuer`` is
    empty. A bearer credential that is not an mlpilot key (``mlp_…``) is validated as a JWT: signature, ``iss``,
    ``aud``, ``exp``/``nbf``/``iat`` (with ``leeway_s``)."""

    #: the ``iss`` every token must carry, exactly (``https://idp.example.com/realms/main``); empty = OIDC off.
    issuer: str = ""
    #: the ``aud`` a token must name (the client id or API identifier mlpilot is registered as at the provider).
    audience: str = ""
    #: the provider's JSON Web Key Set, fetched over HTTP(S) and cached (``jwks_cache_s``), refetched when a token
    #: names an unknown ``kid`` (at most every ``jwks_min_refresh_s``).
    jwks_url: str = ""
    #: the key set in a local file instead (offline; re-read when a token names an unknown ``kid``).
    jwks_file: str = ""
    #: signing algorithms accepted (``none`` never; ``HS256``/``HS384``/``HS512`` only with ``shared_secret``).
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])
    #: the shared secret of ``HS*`` tokens (never a key from the key set).
    shared_secret: SecretStr | None = None
    #: the claim holding mlpilot scopes: a space-separated string or a list (a dotted path reaches into objects).
    scopes_claim: str = "scope"
    #: a claim holding the provider's roles or groups (``groups``, ``realm_access.roles``); mapped by ``role_scopes``.
    roles_claim: str = ""
    #: provider values (of ``scopes_claim`` or ``roles_claim``) → mlpilot scopes: ``{"ml-admins": ["admin"]}``.
    role_scopes: dict[str, list[str]] = Field(default_factory=dict)
    #: a claim listing the deployments a token is granted (string or list; ``*`` = all). Empty: tokens are granted
    #: every deployment. Set: a token without the claim is refused.
    deployments_claim: str = ""
    #: the claim naming who acts (events record ``oidc:<value>``).
    actor_claim: str = "sub"
    #: clock skew tolerated on ``exp``, ``nbf`` and ``iat``, in seconds.
    leeway_s: float = Field(30.0, ge=0, le=600)
    #: how long a fetched key set is used before it is fetched again, in seconds.
    jwks_cache_s: float = Field(600.0, gt=0)
    #: the least time between two fetches of the key set (unknown ``kid`` floods fetch at most this often), seconds.
    jwks_min_refresh_s: float = Field(30.0, ge=0)
    #: timeout of one key-set fetch, in seconds.
    jwks_timeout_s: float = Field(5.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> OidcSettings:
        bad = [a for a in self.algorithms if a not in OIDC_ALGORITHMS]
        if bad:
            known = ", ".join(sorted(OIDC_ALGORITHMS))
            raise ValueError(f"auth.oidc.algorithms: {', '.join(bad)} not accepted (never 'none'); use {known}")
        if not self.issuer:
            return self
        if not self.algorithms:
            raise ValueError("auth.oidc.algorithms is empty: name at least one, e.g. RS256")
        hs = [a for a in self.algorithms if a.startswith("HS")]
        if hs and not (self.shared_secret and self.shared_secret.get_secret_value()):
            raise ValueError(f"auth.oidc.algorithms names {', '.join(hs)}: set auth.oidc.shared_secret for them")
        if not self.audience:
            raise ValueError("auth.oidc.audience is required with auth.oidc.issuer (the aud tokens must name)")
        if self.jwks_url and self.jwks_file:
            raise ValueError("give auth.oidc.jwks_url or auth.oidc.jwks_file, not both")
        if len(hs) < len(self.algorithms) and not (self.jwks_url or self.jwks_file):
            raise ValueError("auth.oidc needs jwks_url (or jwks_file) for its public-key algorithms")
        if self.jwks_url and not self.jwks_url.startswith(("https://", "http://")):
            raise ValueError(f"auth.oidc.jwks_url {self.jwks_url!r} is not an http(s) URL")
        grantable = {"read", "predict", "write", "deploy", "admin"}
        for role, scopes in self.role_scopes.items():
            unknown = sorted(set(scopes) - grantable)
            if unknown:
                use = ", ".join(sorted(grantable))
                raise ValueError(f"auth.oidc.role_scopes[{role!r}]: unknown scope(s) {', '.join(unknown)}; use {use}")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.issuer)


class AuthSettings(BaseModel):
    """Authentication and authorization of the server's routes (see docs/security.md)."""

    #: ``auto``: off when the server listens on a loopback address only (127.0.0.1, ::1, localhost), on otherwise;
    #: ``on``: every non-public route needs an API key; ``off``: nothing is checked (trusted networks only).
    mode: Literal["auto", "on", "off"] = "auto"
    #: deployments whose inference (OIP v2, OpenAI API, gRPC) stays open without a key while auth is on.
    open_deployments: list[str] = Field(default_factory=list)
    #: how long a server trusts a key it verified before reading it again (revocation by another process, or a
    #: change of its scopes, is seen within this many seconds; a revocation through this process at once).
    cache_s: float = Field(5.0, ge=0, le=300)
    #: a remote data plane (``mlpilot serve``) keeps trusting a key its control plane verified before for this many
    #: seconds past ``cache_s`` while the control plane is unreachable; 0: it refuses (503) once ``cache_s`` passed.
    offline_grace_s: float = Field(0.0, ge=0)
    #: bearer JWTs from an OpenID Connect provider (off unless ``auth.oidc.issuer`` is set).
    oidc: OidcSettings = Field(default_factory=OidcSettings)


class LimitSettings(BaseModel):
    """Data-plane limits (docs/serving.md "Limits"); per deployment: ``DeploymentSpec.limits``."""

    #: requests per second per caller (the API key's name; the client address when auth is off), over all
    #: deployments; None: callers are not rate limited. Over it → 429 with Retry-After.
    key_rate_per_s: float | None = Field(None, gt=0)
    #: a caller's burst (tokens of its bucket); None: one second's worth.
    key_burst: int | None = Field(None, ge=1)
    #: callers whose buckets a server keeps (least recently seen dropped first).
    max_callers: int = Field(10_000, ge=1)
    #: requests one variant serves at once (waiting for a batch included) before more are shed with 503 and
    #: Retry-After; a deployment's ``limits.max_in_flight`` overrides it.
    max_in_flight: int = Field(512, ge=1)


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def auth_decision(settings: Settings) -> tuple[bool, str]:
    """Whether the server checks credentials, and why (the line ``mlpilot up`` prints at start)."""
    mode, host = settings.auth.mode, settings.server.host
    if mode == "on":
        return True, "auth on: auth.mode is on"
    if mode == "off":
        return False, f"auth off: auth.mode is off (anyone who can reach {host} can change deployments)"
    if host in LOOPBACK_HOSTS:
        return False, f"auth off: listening on loopback only ({host})"
    return True, f"auth on: listening on {host}, not loopback only (auth.mode auto)"


class Settings(BaseSettings):
    """Everything configurable in mlpilot.

    Args:
        home: the mlpilot home directory (store, artifacts, logs); ``--home`` / ``MLPILOT_HOME``.
        actor: who is acting, recorded on every event (``MLPILOT_ACTOR``; default the OS user).
    """

    model_config = SettingsConfigDict(env_prefix="MLPILOT_", env_nested_delimiter="__", extra="ignore")

    home: Path = Path(".mlpilot")
    actor: str = ""
    store: StoreSettings = Field(default_factory=StoreSettings)
    artifacts: ArtifactSettings = Field(default_factory=ArtifactSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    logs: LogSettings = Field(default_factory=LogSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    monitors: MonitorSettings = Field(default_factory=MonitorSettings)
    rollouts: RolloutSettings = Field(default_factory=RolloutSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    incidents: IncidentSettings = Field(default_factory=IncidentSettings)
    executor: ExecutorSettings = Field(default_factory=ExecutorSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)

    def store_url(self) -> str:
        return self.store.url or f"sqlite:///{(self.home / 'mlpilot.db').resolve()}"

    def log_root(self) -> Path:
        """The local directory the request log is written to."""
        return Path(self.logs.root) if self.logs.root else self.home / "logs"

    def log_segments(self) -> SegmentStore:
        """Where the request log's segments are read from: :meth:`log_root`, and ``logs.remote`` when set."""
        from mlpilot.telemetry.segments import SegmentStore

        options = self.logs.storage_options or self.artifacts.storage_options
        return SegmentStore(self.log_root(), self.logs.remote, options)

    def artifact_root(self) -> Path | str:
        """The artifacts' directory, or their fsspec URL (a ``str`` with ``://``)."""
        root = self.artifacts.root
        if "://" in root:
            return root
        return Path(root) if root else self.home / "artifacts"

    def artifact_cache_dir(self) -> Path:
        return Path(self.artifacts.cache_dir) if self.artifacts.cache_dir else self.home / "cache" / "blobs"
