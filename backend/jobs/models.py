"""Tables of the job system: a run, its metrics and the artifacts it produced.

Why these live apart from :mod:`backend.models`: the job system is one self-contained
part of the schema (migration 0002) and everything about runs stays in one package.
Timestamps are timezone-aware UTC, like everywhere else in the studio.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

from backend.models import utcnow


class RunStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    interrupted = "interrupted"  # its process vanished (kill -9, reboot, crash): resumable


ACTIVE = (RunStatus.queued.value, RunStatus.running.value)
FINISHED = (
    RunStatus.succeeded.value,
    RunStatus.failed.value,
    RunStatus.cancelled.value,
    RunStatus.interrupted.value,
)
RESUMABLE = (RunStatus.interrupted.value, RunStatus.cancelled.value, RunStatus.failed.value)


class Run(SQLModel, table=True):
    """One job: a row here plus (while running) a runner subprocess in its own process group.

    ``pid``/``pgid``/``host`` identify the process so a restarted studio can tell a live run
    from an orphan; ``attempt`` counts starts, so a resumed run is visibly a continuation.
    ``output_dir`` is relative to the workspace so a workspace can be moved as a folder.
    """

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(index=True)
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default=RunStatus.queued.value, index=True)
    needs_gpu: bool = Field(default=False)
    pid: int | None = None
    pgid: int | None = None
    host: str | None = None  # the machine the process runs on: pids mean nothing elsewhere
    heartbeat_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow, index=True)
    created_by: int | None = Field(default=None, foreign_key="user.id")
    done: int = Field(default=0)
    total: int | None = None
    rate: float | None = None  # items per second over the recent window
    eta_s: float | None = None
    message: str = Field(default="")  # status text, or the last lines of the error
    output_dir: str = Field(default="")  # e.g. "runs/12", relative to the workspace
    attempt: int = Field(default=0)


class RunMetric(SQLModel, table=True):
    """One scalar of a run at one step (loss, validation score, a processed item)."""

    __table_args__ = (Index("ix_runmetric_run_name", "run_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", ondelete="CASCADE")
    step: int
    name: str
    value: float
    created_at: datetime = Field(default_factory=utcnow)


class Artifact(SQLModel, table=True):
    """Something a run produced that later runs use: a captioner or T2I checkpoint.

    ``meta`` carries what makes it traceable: the exact training set (image and caption
    ids), caption mix, base model and settings.
    """

    id: int | None = Field(default=None, primary_key=True)
    run_id: int | None = Field(default=None, foreign_key="run.id", index=True, ondelete="SET NULL")
    kind: str = Field(index=True)  # "captioner" | "t2i" | ...
    name: str = Field(index=True)
    path: str  # relative to the workspace
    meta: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=utcnow)
