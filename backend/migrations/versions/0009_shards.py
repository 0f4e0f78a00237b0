"""images registered by reference: shards and where each image's bytes are in them

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04

Written from backend/shards.py (Shard, ShardMember). Two new tables and nothing altered, so it
runs the same on SQLite and PostgreSQL: ``shard`` (one row per registered WebDataset tar or
Parquet file, with its size and SHA-256) and ``shardmember`` (per image: its shard and the
byte offset of its tar member or its Parquet row). Offsets and sizes are BIGINT: shards pass
2 GiB. Images imported the ordinary way have no ``shardmember`` row.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shard",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("uri", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("format", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("image_column", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("nbytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("members", sa.Integer(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["dataset.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dataset_id", "uri", name="uq_shard_dataset_uri"),
    )
    with op.batch_alter_table("shard", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_shard_dataset_id"), ["dataset_id"], unique=False)
    op.create_table(
        "shardmember",
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("shard_id", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["image.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["shard_id"], ["shard.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("image_id"),
    )
    with op.batch_alter_table("shardmember", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_shardmember_shard_id"), ["shard_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("shardmember", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_shardmember_shard_id"))
    op.drop_table("shardmember")
    with op.batch_alter_table("shard", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_shard_dataset_id"))
    op.drop_table("shard")
