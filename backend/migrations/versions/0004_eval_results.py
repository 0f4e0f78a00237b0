"""automatic metrics of generated images (EvalResult)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evalresult",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("dataset", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("checkpoint", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("regime", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("metric", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("stderr", sa.Float(), nullable=True),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("model", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("weights", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("reference", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "run_id", "checkpoint", "regime", "metric", name="uq_evalresult_run_ckpt_regime_metric"
        ),
    )
    with op.batch_alter_table("evalresult", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_evalresult_run_id"), ["run_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_evalresult_dataset"), ["dataset"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("evalresult", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_evalresult_dataset"))
        batch_op.drop_index(batch_op.f("ix_evalresult_run_id"))
    op.drop_table("evalresult")
