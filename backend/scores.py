"""Automatic scores of caption variants (CLIP score first), stored per caption and model.

Why a table of its own rather than a column on :class:`~backend.models.Caption`: one caption
is scored by several models (ViT-B-32 today, a long-text CLIP tomorrow) and by several
metrics, and a score must say which model and weights produced it, or two numbers from
different models end up compared in Review. Uniqueness on (caption, metric, model,
pretrained) is what makes a scoring job idempotent: a resumed or repeated run writes
nothing twice (``INSERT ... ON CONFLICT DO NOTHING``).

``truncated`` records that the caption was longer than the model's text context (77 CLIP
tokens), so Review can flag a score that only saw the caption's head.
No torch here: the studio reads these rows; the scoring job (``training.jobs.clip_score``)
writes them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, Session, SQLModel, col, select

from backend.db import read_session
from backend.models import Caption, utcnow
from backend.workspace import Workspace

CLIP_SCORE = "clip_score"


class CaptionScore(SQLModel, table=True):
    """One number about one caption: ``value`` of ``metric`` by ``model``/``pretrained``."""

    __table_args__ = (
        UniqueConstraint(
            "caption_id", "metric", "model", "pretrained", name="uq_captionscore_caption_metric_model"
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    # no index of its own: the unique constraint below starts with caption_id and serves lookups
    caption_id: int = Field(foreign_key="caption.id", ondelete="CASCADE")
    metric: str = Field(index=True)  # "clip_score" (100 x cosine)
    value: float
    model: str  # e.g. "ViT-B-32"
    pretrained: str  # the open_clip tag ("openai") or the local checkpoint path as given
    truncated: bool = Field(default=False)  # caption longer than the model's text context
    run_id: int | None = Field(default=None, foreign_key="run.id", index=True, ondelete="SET NULL")
    created_at: datetime = Field(default_factory=utcnow)


def insert_scores(session: Session, rows: Sequence[dict[str, Any]]) -> int:
    """Insert score rows, silently keeping any (caption, metric, model, pretrained) already there.

    Returns how many rows were new. One statement, inside the caller's transaction, so a
    batch of scores commits (or not) as a whole.
    """
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:  # pragma: no cover - the studio supports SQLite and PostgreSQL
        raise NotImplementedError(f"no upsert for database dialect {dialect}")
    now = utcnow()
    values = [{"created_at": now, "truncated": False, "run_id": None, **row} for row in rows]
    result = session.exec(insert(CaptionScore).values(values).on_conflict_do_nothing())  # type: ignore[call-overload]
    return int(result.rowcount or 0)


def scored_caption_ids(
    session: Session, caption_ids: Iterable[int], *, metric: str, model: str, pretrained: str
) -> set[int]:
    """Which of ``caption_ids`` already have this metric from this model (what a resume skips)."""
    ids = list(caption_ids)
    found: set[int] = set()
    for start in range(0, len(ids), 500):  # stay far below SQLite's bound-parameter limit
        chunk = ids[start : start + 500]
        found.update(
            session.exec(
                select(CaptionScore.caption_id).where(
                    col(CaptionScore.caption_id).in_(chunk),
                    CaptionScore.metric == metric,
                    CaptionScore.model == model,
                    CaptionScore.pretrained == pretrained,
                )
            ).all()
        )
    return found


def caption_scores(ws: Workspace, image_id: int) -> dict[int, list[CaptionScore]]:
    """Every score of every caption of one image, keyed by caption id (for Review).

    Newest first within a caption, so the first entry per (metric, model) is the current one.
    """
    with read_session(ws) as s:
        rows = s.exec(
            select(CaptionScore)
            .join(Caption, col(Caption.id) == col(CaptionScore.caption_id))
            .where(Caption.image_id == image_id)
            .order_by(col(CaptionScore.caption_id), col(CaptionScore.id).desc())
        ).all()
    out: dict[int, list[CaptionScore]] = defaultdict(list)
    for row in rows:
        out[row.caption_id].append(row)
    return dict(out)


def run_scores(ws: Workspace, run_id: int) -> list[CaptionScore]:
    """The scores one scoring run wrote (for its summary)."""
    with read_session(ws) as s:
        return list(
            s.exec(
                select(CaptionScore).where(CaptionScore.run_id == run_id).order_by(col(CaptionScore.id))
            ).all()
        )
