"""verdict campaigns: the required elements of an item's prompt

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

Written from backend/arena/models.py (EvalImage.elements). Why a column: a verdict campaign
(one image, its prompt, faithful or not) offers the prompt's required elements as "missing"
ticks; they come from the prompt set's structure when the campaign is made and must be the
same on every ticket of the item, so they are stored with it (NULL for pairwise items).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("evalimage", sa.Column("elements", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("evalimage") as batch:
        batch.drop_column("elements")
