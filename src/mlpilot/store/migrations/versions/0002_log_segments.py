"""request-log segment catalog

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "log_segments",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("deployment", sa.String(length=128), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("min_ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("max_ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_log_segments")),
        sa.UniqueConstraint("path", name=op.f("uq_log_segments_path")),
    )
    with op.batch_alter_table("log_segments", schema=None) as batch_op:
        batch_op.create_index("ix_log_segments_deployment_max_ts", ["deployment", "max_ts"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("log_segments", schema=None) as batch_op:
        batch_op.drop_index("ix_log_segments_deployment_max_ts")
    op.drop_table("log_segments")
