"""arena: campaigns, systems, items, pairs, tickets and judgments

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23

Written from backend/arena/models.py (checked against alembic's autogenerate on a fresh 0004
database: no differences). Why the constraints: the partial unique index on open tickets keeps
one open ticket per annotator and campaign (a reload never reshuffles), and the unique
(pair, annotator, criterion, is_repeat) and ticket_id on judgments make a double submit or a
race between two requests unable to store a second vote.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "campaign",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("criteria", sa.JSON(), nullable=False),
        sa.Column("target_per_pair", sa.Integer(), nullable=False),
        sa.Column("repeat_share", sa.Float(), nullable=False),
        sa.Column("gold_share", sa.Float(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["user.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_campaign_name"), ["name"], unique=True)

    op.create_table(
        "arenasystem",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("artifact_id", sa.Integer(), nullable=True),
        sa.Column("meta", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["artifact_id"], ["artifact.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("campaign_id", "name", name="uq_arenasystem_campaign_name"),
    )
    with op.batch_alter_table("arenasystem", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_arenasystem_campaign_id"), ["campaign_id"], unique=False)

    op.create_table(
        "evalimage",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("system_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=True),
        sa.Column("caption_id", sa.Integer(), nullable=True),
        sa.Column("prompt", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("category", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("seed", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["caption_id"],
            ["caption.id"],
        ),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["image.id"],
        ),
        sa.ForeignKeyConstraint(["system_id"], ["arenasystem.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("evalimage", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_evalimage_campaign_id"), ["campaign_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_evalimage_image_id"), ["image_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_evalimage_system_id"), ["system_id"], unique=False)

    op.create_table(
        "evalpair",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("a_id", sa.Integer(), nullable=False),
        sa.Column("b_id", sa.Integer(), nullable=False),
        sa.Column("a_system_id", sa.Integer(), nullable=False),
        sa.Column("b_system_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=True),
        sa.Column("prompt", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("category", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("seed", sa.Integer(), nullable=True),
        sa.Column("is_gold", sa.Boolean(), nullable=False),
        sa.Column("gold_answer", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.ForeignKeyConstraint(["a_id"], ["evalimage.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["a_system_id"], ["arenasystem.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["b_id"], ["evalimage.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["b_system_id"], ["arenasystem.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["image.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("evalpair", schema=None) as batch_op:
        batch_op.create_index("ix_evalpair_campaign_gold", ["campaign_id", "is_gold"], unique=False)

    op.create_table(
        "arenaticket",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("pair_id", sa.Integer(), nullable=False),
        sa.Column("annotator_id", sa.Integer(), nullable=False),
        sa.Column("criterion", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("left_id", sa.Integer(), nullable=False),
        sa.Column("right_id", sa.Integer(), nullable=False),
        sa.Column("is_repeat", sa.Boolean(), nullable=False),
        sa.Column("issued_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("used", sa.Boolean(), nullable=False),
        sa.Column("skipped", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["annotator_id"],
            ["user.id"],
        ),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["left_id"], ["evalimage.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["pair_id"], ["evalpair.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["right_id"], ["evalimage.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token"),
    )
    with op.batch_alter_table("arenaticket", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_arenaticket_annotator_id"), ["annotator_id"], unique=False)
        batch_op.create_index("ix_arenaticket_campaign_pair", ["campaign_id", "pair_id"], unique=False)
        batch_op.create_index(
            "uq_arenaticket_open",
            ["campaign_id", "annotator_id"],
            unique=True,
            sqlite_where=sa.text("used = 0 AND skipped = 0"),
            postgresql_where=sa.text("NOT used AND NOT skipped"),
        )

    op.create_table(
        "judgment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("pair_id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("annotator_id", sa.Integer(), nullable=False),
        sa.Column("criterion", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("left_image_id", sa.Integer(), nullable=False),
        sa.Column("choice", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("elapsed_ms", sa.Integer(), nullable=True),
        sa.Column("server_ms", sa.Float(), nullable=True),
        sa.Column("is_repeat", sa.Boolean(), nullable=False),
        sa.Column("flags", sa.JSON(), nullable=True),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["annotator_id"],
            ["user.id"],
        ),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["left_image_id"], ["evalimage.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["pair_id"], ["evalpair.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["ticket_id"], ["arenaticket.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "pair_id", "annotator_id", "criterion", "is_repeat", name="uq_judgment_pair_annotator_criterion"
        ),
        sa.UniqueConstraint("ticket_id"),
    )
    with op.batch_alter_table("judgment", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_judgment_annotator_id"), ["annotator_id"], unique=False)
        batch_op.create_index("ix_judgment_campaign_criterion", ["campaign_id", "criterion"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("judgment", schema=None) as batch_op:
        batch_op.drop_index("ix_judgment_campaign_criterion")
        batch_op.drop_index(batch_op.f("ix_judgment_annotator_id"))

    op.drop_table("judgment")
    with op.batch_alter_table("arenaticket", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_arenaticket_open",
            sqlite_where=sa.text("used = 0 AND skipped = 0"),
            postgresql_where=sa.text("NOT used AND NOT skipped"),
        )
        batch_op.drop_index("ix_arenaticket_campaign_pair")
        batch_op.drop_index(batch_op.f("ix_arenaticket_annotator_id"))

    op.drop_table("arenaticket")
    with op.batch_alter_table("evalpair", schema=None) as batch_op:
        batch_op.drop_index("ix_evalpair_campaign_gold")

    op.drop_table("evalpair")
    with op.batch_alter_table("evalimage", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_evalimage_system_id"))
        batch_op.drop_index(batch_op.f("ix_evalimage_image_id"))
        batch_op.drop_index(batch_op.f("ix_evalimage_campaign_id"))

    op.drop_table("evalimage")
    with op.batch_alter_table("arenasystem", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_arenasystem_campaign_id"))

    op.drop_table("arenasystem")
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_campaign_name"))

    op.drop_table("campaign")
