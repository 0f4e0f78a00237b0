"""Automatic metrics of generated images, one row per (evaluation run, checkpoint, prompt regime, metric).

Why a table of its own: the Results tab compares checkpoints × prompt regimes (raw vs
upsampled prompts) the way Recap-DataComp's evaluation does, and each number must carry
everything needed to reproduce it — the feature extractor or CLIP model and its weights, the
reference dataset, how many images, how many prompts were truncated, the settings. Per-image
CLIP scores also go to :class:`backend.scores.CaptionScore` (image × its ``prompt`` caption), so
Review shows them; this table holds the aggregates.

No torch here: the ``t2i_eval`` job (``training.jobs.t2i_eval``) writes these rows, the studio
reads them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from backend.models import utcnow


class EvalResult(SQLModel, table=True):
    """One aggregate metric of one checkpoint under one prompt regime, from one evaluation run."""

    __table_args__ = (
        UniqueConstraint(
            "run_id", "checkpoint", "regime", "metric", name="uq_evalresult_run_ckpt_regime_metric"
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    run_id: int | None = Field(default=None, foreign_key="run.id", index=True, ondelete="SET NULL")
    dataset: str = Field(index=True)  # the dataset of generated images that was evaluated
    checkpoint: str  # the checkpoint label recorded by the generation run
    regime: str  # "raw" | "upsampled"
    metric: str  # "clip_score" | "r_precision" | "fid" | "kid"
    value: float
    stderr: float | None = None  # standard error where the metric has one (mean over images, KID)
    n: int = 0  # images that entered the number
    model: str = ""  # CLIP model name or feature extractor name
    weights: str = ""  # pretrained tag or local weights path (as given) of that model
    reference: str = ""  # reference dataset (FID/KID) or prompt set (R-precision)
    details: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))  # all else to reproduce
    created_at: datetime = Field(default_factory=utcnow)
