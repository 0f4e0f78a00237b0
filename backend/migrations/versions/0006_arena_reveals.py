"""arena reveals: which annotators were shown the systems they judged

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

Written from backend/arena/models.py (ArenaReveal). Why a table: a reveal ends an annotator's
blind judging in a campaign for good (no further pair, no further vote), so the scheduler must
be able to check it under the write lock, across processes and restarts.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "arenareveal",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("annotator_id", sa.Integer(), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("revealed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["annotator_id"], ["user.id"]),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("campaign_id", "annotator_id", name="uq_arenareveal_campaign_annotator"),
    )


def downgrade() -> None:
    op.drop_table("arenareveal")
