"""SQLModel tables: the data model of the studio.

The heart of it is :class:`Caption`: one row per *variant* of an image's text with its
provenance (who or what wrote it, from which source or run, with which settings).
Caption text is append-only: an edit is a new row pointing at the one it replaces
(``previous_id``) and only the ``is_current`` flag of the old row changes. A database
trigger (see the first migration) refuses any UPDATE of text, kind, image or author, so
no code path can silently overwrite an annotator's work.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class Role(StrEnum):
    admin = "admin"
    annotator = "annotator"


class CaptionKind(StrEnum):
    """Well-known caption kinds; any other string is allowed too (shown as 'other')."""

    alttext = "alttext"
    human_short = "human_short"
    human_long = "human_long"
    recap_short = "recap_short"
    recap_long = "recap_long"
    upsampled = "upsampled"


HUMAN_KINDS = (CaptionKind.human_short.value, CaptionKind.human_long.value)


class CaptionStatus(StrEnum):
    submitted = "submitted"  # human caption waiting for review
    approved = "approved"
    rejected = "rejected"
    final = "final"  # imported or machine-written: no review step


class AssignmentState(StrEnum):
    active = "active"  # the annotator holds this image now
    submitted = "submitted"
    skipped = "skipped"


class User(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    role: str = Field(default=Role.annotator.value)
    password_hash: str
    active: bool = Field(default=True)
    created_at: datetime = Field(default_factory=utcnow)
    # sessions opened before this moment end (a changed password shuts out whoever knew the old one)
    password_changed_at: datetime | None = Field(default=None)


class LoginThrottle(SQLModel, table=True):
    """Consecutive failed logins of one user name (``scope`` "user") or one client address
    ("client"), and the lock they earned (backend.users). In the database, not in memory,
    so a restart of the studio does not hand an attacker a fresh set of guesses."""

    __table_args__ = (UniqueConstraint("scope", "key", name="uq_loginthrottle_scope_key"),)

    id: int | None = Field(default=None, primary_key=True)
    scope: str
    key: str
    failures: int = Field(default=0)
    last_failure_at: datetime = Field(default_factory=utcnow)
    locked_until: datetime | None = Field(default=None)


class Dataset(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    description: str = Field(default="")
    created_at: datetime = Field(default_factory=utcnow)


class Image(SQLModel, table=True):
    """One image of one dataset; the file lives content-addressed under ``images/``."""

    __table_args__ = (UniqueConstraint("dataset_id", "sha256", name="uq_image_dataset_sha256"),)

    id: int | None = Field(default=None, primary_key=True)
    dataset_id: int = Field(foreign_key="dataset.id", index=True, ondelete="CASCADE")
    sha256: str = Field(index=True)
    ext: str  # file extension of the stored original, e.g. "jpg"
    width: int
    height: int
    nbytes: int
    original_key: str = Field(index=True)  # path or key in the source it came from
    meta: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))  # e.g. ground-truth scene
    created_at: datetime = Field(default_factory=utcnow)


class Caption(SQLModel, table=True):
    """One caption variant of an image, with provenance. Text is never updated in place."""

    __table_args__ = (
        Index("ix_caption_image_kind", "image_id", "kind"),
        # one current human caption per annotator, image and kind
        Index(
            "uq_caption_current_human",
            "image_id",
            "kind",
            "annotator_id",
            unique=True,
            sqlite_where=text("is_current = 1 AND annotator_id IS NOT NULL"),
            postgresql_where=text("is_current AND annotator_id IS NOT NULL"),
        ),
        # a run never writes two captions of one kind for one image (idempotent recaption)
        Index(
            "uq_caption_run",
            "image_id",
            "kind",
            "run_id",
            unique=True,
            sqlite_where=text("run_id IS NOT NULL"),
            postgresql_where=text("run_id IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    image_id: int = Field(foreign_key="image.id", index=True, ondelete="CASCADE")
    kind: str = Field(index=True)
    text: str
    status: str = Field(default=CaptionStatus.final.value, index=True)
    annotator_id: int | None = Field(default=None, foreign_key="user.id", index=True)
    run_id: int | None = Field(default=None, index=True)
    source: str = Field(default="")  # e.g. "import:table.csv#alt", "annotate", "demo"
    provenance: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    previous_id: int | None = Field(default=None, foreign_key="caption.id")
    is_current: bool = Field(default=True, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    reviewed_by: int | None = Field(default=None, foreign_key="user.id")
    reviewed_at: datetime | None = None
    review_comment: str | None = None


class AnnotationSet(SQLModel, table=True):
    """The RECAP human caption set of a dataset: which images, and how many annotators each."""

    id: int | None = Field(default=None, primary_key=True)
    dataset_id: int = Field(foreign_key="dataset.id", index=True, ondelete="CASCADE")
    name: str = Field(index=True, unique=True)
    target_size: int
    sampling: str = Field(default="random")  # random | stratified
    overlap: int = Field(default=1)  # annotators per image (>1 for agreement)
    seed: int = Field(default=0)
    created_by: int | None = Field(default=None, foreign_key="user.id")
    created_at: datetime = Field(default_factory=utcnow)


class AnnotationItem(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("set_id", "image_id", name="uq_item_set_image"),)

    id: int | None = Field(default=None, primary_key=True)
    set_id: int = Field(foreign_key="annotationset.id", index=True, ondelete="CASCADE")
    image_id: int = Field(foreign_key="image.id", index=True, ondelete="CASCADE")
    position: int = Field(default=0)


class Assignment(SQLModel, table=True):
    """Who holds (or held) an item of an annotation set."""

    __table_args__ = (UniqueConstraint("item_id", "annotator_id", name="uq_assignment_item_annotator"),)

    id: int | None = Field(default=None, primary_key=True)
    item_id: int = Field(foreign_key="annotationitem.id", index=True, ondelete="CASCADE")
    annotator_id: int = Field(foreign_key="user.id", index=True)
    state: str = Field(default=AssignmentState.active.value, index=True)
    claimed_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Draft(SQLModel, table=True):
    """Autosaved, not yet submitted text of one annotator for one image.

    Drafts are work in progress, so they are upserted rather than appended; on submit
    they become :class:`Caption` rows and the draft row is removed.
    """

    __table_args__ = (UniqueConstraint("image_id", "annotator_id", name="uq_draft_image_annotator"),)

    id: int | None = Field(default=None, primary_key=True)
    image_id: int = Field(foreign_key="image.id", index=True, ondelete="CASCADE")
    annotator_id: int = Field(foreign_key="user.id", index=True)
    short_text: str = Field(default="")
    long_text: str = Field(default="")
    updated_at: datetime = Field(default_factory=utcnow)
