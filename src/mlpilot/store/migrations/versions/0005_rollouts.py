"""rollouts and releases

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "rollouts",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("deployment", sa.String(length=128), nullable=False),
        sa.Column("active_key", sa.String(length=128), nullable=True),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("spec", _json(), nullable=False),
        sa.Column("state", _json(), nullable=False),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("finished_at", _TS, nullable=True),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollouts")),
        sa.UniqueConstraint("active_key", name=op.f("uq_rollouts_active_key")),
    )
    op.create_index("ix_rollouts_deployment", "rollouts", ["deployment", "id"], unique=False)
    op.create_table(
        "releases",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("deployment", sa.String(length=128), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("artifacts", _json(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("rollout_id", _ID, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_releases")),
        sa.UniqueConstraint("deployment", "number", name="uq_releases_key"),
    )


def downgrade() -> None:
    op.drop_table("releases")
    op.drop_index("ix_rollouts_deployment", table_name="rollouts")
    op.drop_table("rollouts")
