"""What every part of the annotation workflow shares: its constants, its errors, and the row
lookups that turn a bad id into a clear :class:`AnnotationError` rather than a ``None``."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import and_
from sqlmodel import Session, col, select

from backend.db import lock
from backend.models import (
    AnnotationItem,
    AnnotationSet,
    Assignment,
    AssignmentState,
    Caption,
    CaptionKind,
    CaptionStatus,
    User,
)

# one logger for the whole workflow (the name it had as a single module)
log = logging.getLogger("backend.annotation")

DEFAULT_CLAIM_TTL = timedelta(hours=2)
SAMPLING_METHODS = ("random", "stratified")
MAX_PAGE = 500
# Longest caption, draft box or review comment the server stores. A detailed long caption is a
# few hundred words; before this cap a 1,000,000-character draft was stored, costing about a
# second of server time at every autosave.
MAX_CAPTION_CHARS = 10_000

SHORT = CaptionKind.human_short.value
LONG = CaptionKind.human_long.value
ACTIVE = AssignmentState.active.value
SUBMITTED = AssignmentState.submitted.value
SKIPPED = AssignmentState.skipped.value


class AnnotationError(ValueError):
    """A request the annotation workflow refuses; the message says why and what to do."""


def check_length(label: str, text: str) -> None:
    """Refuse a text past :data:`MAX_CAPTION_CHARS` with a message that says by how much."""
    if len(text) > MAX_CAPTION_CHARS:
        raise AnnotationError(
            f"the {label} has {len(text):,} characters; at most {MAX_CAPTION_CHARS:,} are stored "
            "(shorten it; nothing was saved)"
        )


class ClaimLost(AnnotationError):
    """The annotator's claim lapsed (TTL) and every slot of the item is now taken."""


def load_set(session: Session, set_id: int | None) -> AnnotationSet:
    """The set row, or a clear error naming the id."""
    aset = session.get(AnnotationSet, int(set_id)) if set_id is not None else None
    if aset is None:
        raise AnnotationError(f"annotation set {set_id} does not exist")
    return aset


def load_item(session: Session, set_id: int, image_id: int) -> AnnotationItem:
    item = session.exec(
        select(AnnotationItem).where(AnnotationItem.set_id == set_id, AnnotationItem.image_id == image_id)
    ).first()
    if item is None:
        raise AnnotationError(f"image {image_id} is not part of annotation set {set_id}")
    return item


def assignment_of(session: Session, item_id: int, annotator_id: int) -> Assignment | None:
    return session.exec(
        select(Assignment).where(Assignment.item_id == item_id, Assignment.annotator_id == annotator_id)
    ).first()


def lock_annotator(session: Session, annotator_id: int) -> None:
    """One annotator's annotation writes run one at a time (two tabs, a double click, autosave
    racing submit), as every write does on SQLite; different annotators' run side by side on
    PostgreSQL. Taken first, before any row lock, in every concurrent annotation session."""
    lock(session, "annotation-annotator", int(annotator_id))


def lock_item(session: Session, item: AnnotationItem) -> None:
    """Hold ``item``'s row (FOR NO KEY UPDATE on PostgreSQL; SQLite's write lock already covers
    it) so its slots can be counted and taken without another claim counting at the same time."""
    session.exec(
        select(AnnotationItem.id).where(AnnotationItem.id == item.id).with_for_update(key_share=True)
    )


def require_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None or not user.active:
        raise AnnotationError(f"user {user_id} does not exist or is inactive")
    return user


def with_assignment(query: Any, image_id: Any, annotator_id: Any) -> Any:
    """``query`` joined to the set item of ``image_id`` and to ``annotator_id``'s assignment of
    that item (both columns of the queried row: a draft's, a caption's), so it can be limited
    to one set and to the assignments' states."""
    return query.join(AnnotationItem, col(AnnotationItem.image_id) == image_id).join(
        Assignment,
        and_(col(Assignment.item_id) == AnnotationItem.id, col(Assignment.annotator_id) == annotator_id),
    )


def caption_pair_status(short: Caption | None, long: Caption | None) -> str | None:
    """One status for a short + long pair: rejected if either is, approved only if both are."""
    statuses = [c.status for c in (short, long) if c is not None]
    if not statuses:
        return None
    if CaptionStatus.rejected.value in statuses:
        return CaptionStatus.rejected.value
    if CaptionStatus.submitted.value in statuses:
        return CaptionStatus.submitted.value
    if all(st == CaptionStatus.approved.value for st in statuses) and len(statuses) == 2:
        return CaptionStatus.approved.value
    return CaptionStatus.submitted.value


def rejection_comment(short: Caption | None, long: Caption | None) -> str | None:
    """The reviewer's comment on a rejected pair (one text, or one per caption when they differ)."""
    comments = [
        (label, c.review_comment)
        for label, c in (("short", short), ("long", long))
        if c is not None and c.status == CaptionStatus.rejected.value and c.review_comment
    ]
    if not comments:
        return None
    if len({text for _, text in comments}) == 1:
        return comments[0][1]
    return " / ".join(f"{label}: {text}" for label, text in comments)
