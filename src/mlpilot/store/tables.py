"""SQLAlchemy Core tables of the control-plane store (one schema for SQLite and PostgreSQL).

Rows are never returned to callers: :mod:`mlpilot.store.sql` converts them to :mod:`mlpilot.records`.
Durable JSON columns carry a ``schema_version`` key where their shape may evolve.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Json = JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit key.
Id = BigInteger().with_variant(Integer(), "sqlite")
Ts = DateTime(timezone=True)

artifacts = Table(
    "artifacts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),
    # The last allocated version; bumped with UPDATE ... so concurrent writers serialise on this row.
    Column("last_version", Integer, nullable=False, default=0),
    Column("created_at", Ts, nullable=False),
    Column("created_by", String(256), nullable=False),
)

artifact_versions = Table(
    "artifact_versions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("artifact_id", Id, ForeignKey("artifacts.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("digest", String(80), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("filename", String(256), nullable=False),
    Column("flavor", String(32)),
    Column("metadata", Json, nullable=False),
    Column("signature", Json),
    Column("tags", Json, nullable=False),
    Column("unsafe", Boolean, nullable=False, default=False),
    Column("created_at", Ts, nullable=False),
    Column("created_by", String(256), nullable=False),
    UniqueConstraint("artifact_id", "version", name="uq_artifact_versions_artifact_version"),
)

lineage = Table(
    "lineage",
    metadata,
    Column("child_id", Id, ForeignKey("artifact_versions.id"), primary_key=True),
    Column("parent_id", Id, ForeignKey("artifact_versions.id"), primary_key=True),
)

aliases = Table(
    "aliases",
    metadata,
    Column("artifact_id", Id, ForeignKey("artifacts.id"), primary_key=True),
    Column("alias", String(64), primary_key=True),
    Column("version_id", Id, ForeignKey("artifact_versions.id"), nullable=False),
    Column("updated_at", Ts, nullable=False),
    Column("updated_by", String(256), nullable=False),
)

bindings = Table(
    "bindings",
    metadata,
    Column("version_id", Id, ForeignKey("artifact_versions.id"), primary_key=True),
    Column("role", String(32), primary_key=True),
    Column("target_id", Id, ForeignKey("artifact_versions.id"), nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("ts", Ts, nullable=False),
    Column("actor", String(256), nullable=False),
    Column("action", String(64), nullable=False),
    Column("subject", String(256), nullable=False),
    Column("before", Json),
    Column("after", Json),
    Column("schema_version", Integer, nullable=False, default=1),
    Index("ix_events_subject", "subject"),
)

deployments = Table(
    "deployments",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("revision", Integer, nullable=False),
    Column("spec", Json, nullable=False),
    Column("created_at", Ts, nullable=False),
    Column("updated_at", Ts, nullable=False),
    Column("updated_by", String(256), nullable=False),
    Column("snapshot_version", BigInteger, nullable=False),
)

deployment_revisions = Table(
    "deployment_revisions",
    metadata,
    Column("deployment_id", Id, ForeignKey("deployments.id"), primary_key=True),
    Column("revision", Integer, primary_key=True),
    Column("spec", Json, nullable=False),
    Column("created_at", Ts, nullable=False),
    Column("created_by", String(256), nullable=False),
)

# Request-log segments (Parquet files written by data planes), catalogued for queries and retention.
log_segments = Table(
    "log_segments",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("deployment", String(128), nullable=False),
    Column("path", String(1024), nullable=False, unique=True),
    Column("rows", BigInteger, nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("min_ts", Ts, nullable=False),
    Column("max_ts", Ts, nullable=False),
    Column("created_at", Ts, nullable=False),
    Index("ix_log_segments_deployment_max_ts", "deployment", "max_ts"),
)

# Feedback (labels, scores, rewards) for logged predictions, joined by (deployment, request_id, row).
# A later value for the same key replaces the earlier one (corrected labels); ``ts`` is the event time.
feedback = Table(
    "feedback",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("deployment", String(128), nullable=False),
    Column("request_id", String(128), nullable=False),
    Column("row", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("value", Json, nullable=False),
    Column("ts", Ts, nullable=False),
    Column("received_at", Ts, nullable=False),
    Column("actor", String(256), nullable=False),
    UniqueConstraint("deployment", "request_id", "row", "kind", name="uq_feedback_key"),
)

# Scheduled monitors (spec as JSON) and their results: one time series per monitor.
monitors = Table(
    "monitors",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("deployment", String(128), nullable=False),
    Column("name", String(128), nullable=False),
    Column("spec", Json, nullable=False),
    Column("created_at", Ts, nullable=False),
    Column("created_by", String(256), nullable=False),
    Column("next_run", Ts, nullable=False),
    Column("last_run", Ts, nullable=True),
    Column("last_status", String(16), nullable=True),
    UniqueConstraint("deployment", "name", name="uq_monitors_key"),
)

monitor_results = Table(
    "monitor_results",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("monitor_id", Id, ForeignKey("monitors.id", ondelete="CASCADE"), nullable=False),
    Column("ts", Ts, nullable=False),
    Column("window_start", Ts, nullable=False),
    Column("window_end", Ts, nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("value", Float, nullable=True),
    Column("message", String(2048), nullable=False),
    Column("detail", Json, nullable=False),
    Index("ix_monitor_results_monitor_ts", "monitor_id", "ts"),
)

slos = Table(
    "slos",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("deployment", String(128), nullable=False),
    Column("name", String(128), nullable=False),
    Column("spec", Json, nullable=False),
    Column("created_at", Ts, nullable=False),
    Column("created_by", String(256), nullable=False),
    UniqueConstraint("deployment", "name", name="uq_slos_key"),
)

# One row per alert; at most one firing alert per (deployment, slo), enforced by ``active_key`` (NULL once resolved).
alerts = Table(
    "alerts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("deployment", String(128), nullable=False),
    Column("slo", String(128), nullable=False),
    Column("active_key", String(260), nullable=True, unique=True),
    Column("severity", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("fired_at", Ts, nullable=False),
    Column("updated_at", Ts, nullable=False),
    Column("resolved_at", Ts, nullable=True),
    Column("summary", String(2048), nullable=False),
    Column("detail", Json, nullable=False),
    Index("ix_alerts_deployment_fired", "deployment", "fired_at"),
)

# One row per incident: alerts of one deployment grouped in time (see mlpilot.incidents.policy).
incidents = Table(
    "incidents",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("deployment", String(128), nullable=False),
    Column("status", String(16), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("title", String(512), nullable=False),
    Column("keys", Json, nullable=False),
    Column("alerts", Json, nullable=False),
    Column("opened_at", Ts, nullable=False),
    Column("updated_at", Ts, nullable=False),
    Column("last_signal_at", Ts, nullable=False),
    Column("mitigated_at", Ts, nullable=True),
    Column("resolved_at", Ts, nullable=True),
    Column("acknowledged_by", String(256), nullable=True),
    Column("acknowledged_at", Ts, nullable=True),
    Column("revision", Integer, nullable=False),
    Index("ix_incidents_deployment_status", "deployment", "status"),
)

# The healing policy of a deployment (mlpilot.incidents.healing.HealingPolicy as JSON); no row = the defaults.
healing_policies = Table(
    "healing_policies",
    metadata,
    Column("deployment", String(128), primary_key=True),
    Column("body", Json, nullable=False),
    Column("updated_at", Ts, nullable=False),
    Column("updated_by", String(256), nullable=False),
)

# One row per rollout; at most one active rollout per deployment, enforced by ``active_key`` (NULL once settled).
rollouts = Table(
    "rollouts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("deployment", String(128), nullable=False),
    Column("active_key", String(128), nullable=True, unique=True),
    Column("phase", String(16), nullable=False),
    Column("step", Integer, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("spec", Json, nullable=False),
    Column("state", Json, nullable=False),
    Column("started_at", Ts, nullable=False),
    Column("updated_at", Ts, nullable=False),
    Column("finished_at", Ts, nullable=True),
    Column("created_by", String(256), nullable=False),
    Index("ix_rollouts_deployment", "deployment", "id"),
)

# Releases: numbered sets of artifact versions per deployment, rolled out and back as one unit.
releases = Table(
    "releases",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("deployment", String(128), nullable=False),
    Column("number", Integer, nullable=False),
    Column("artifacts", Json, nullable=False),
    Column("status", String(16), nullable=False),
    Column("rollout_id", Id, nullable=True),
    Column("created_at", Ts, nullable=False),
    Column("created_by", String(256), nullable=False),
    UniqueConstraint("deployment", "number", name="uq_releases_key"),
)

# Leases: who leads the control plane's reconcile loops (name → holder until expires_at); the epoch is the fencing
# token, bumped at every new tenure and never reset (a released lease keeps its row, expired).
leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(256), nullable=False),
    Column("epoch", BigInteger, nullable=False),
    Column("acquired_at", Ts, nullable=False),
    Column("renewed_at", Ts, nullable=False),
    Column("expires_at", Ts, nullable=False),
)

# API keys (docs/security.md): the secret is stored only as a salted scrypt hash; ``prefix`` (from the key itself)
# finds the row. ``deployments`` empty = every deployment. A revoked key keeps its row (its name stays taken).
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False, unique=True),
    Column("hash", String(256), nullable=False),
    Column("scopes", Json, nullable=False),
    Column("deployments", Json, nullable=False),
    Column("created_at", Ts, nullable=False),
    Column("created_by", String(256), nullable=False),
    Column("revoked_at", Ts, nullable=True),
    Column("last_used_at", Ts, nullable=True),
)

# Monotonic counters (e.g. the routing snapshot version), bumped inside the writing transaction.
counters = Table(
    "counters",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

__all__ = [
    "alerts",
    "aliases",
    "api_keys",
    "artifact_versions",
    "artifacts",
    "bindings",
    "counters",
    "deployment_revisions",
    "deployments",
    "events",
    "feedback",
    "healing_policies",
    "incidents",
    "leases",
    "lineage",
    "log_segments",
    "metadata",
    "monitor_results",
    "monitors",
    "slos",
]
