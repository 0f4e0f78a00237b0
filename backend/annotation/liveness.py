"""The one liveness rule of annotation claims, and the activity that keeps a claim live.

A claim (an *active* assignment) is **live while it or its annotator's draft of the image was
touched within the TTL**. A live claim holds one of the item's ``overlap`` slots; a lapsed one
still belongs to its annotator (they keep seeing the image, their draft stays) until another
annotator needs the slot, when it is released. A *submitted* assignment always holds its slot.

Why one module: the rule used to be spelled out, or its cutoff recomputed, wherever a claim was
made, counted, released or renewed; a change to one copy (say, draft saves no longer counting)
would have left the others deciding differently. Now every question goes through
:func:`claim_is_live` — an SQL expression, so claims, counts and releases are decided inside the
one write transaction — and every write that counts as claim activity through
:func:`renew_claims` (a draft save also stamps the draft itself).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, func, or_
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from backend.annotation.common import ACTIVE, SUBMITTED
from backend.models import AnnotationItem, Assignment, Draft, utcnow


def claim_cutoff(ttl: timedelta, now: datetime | None = None) -> datetime:
    """The oldest activity that still keeps a claim live ``now``."""
    return (now or utcnow()) - ttl


def claim_is_live(assignment: Any, image_id: Any, cutoff: datetime) -> ColumnElement[bool]:
    """THE rule, as SQL: ``assignment`` (the table or an alias) is an active claim touched at or
    after ``cutoff``, itself or through its annotator's draft of ``image_id`` (a column or a value)."""
    recent_draft = exists().where(
        Draft.image_id == image_id,
        Draft.annotator_id == assignment.annotator_id,
        Draft.updated_at >= cutoff,
    )
    return and_(assignment.state == ACTIVE, or_(assignment.updated_at >= cutoff, recent_draft))


def holds_slot(assignment: Any, image_id: Any, cutoff: datetime) -> ColumnElement[bool]:
    """SQL: the assignment counts toward its item's overlap (submitted, or a live claim)."""
    return or_(assignment.state == SUBMITTED, claim_is_live(assignment, image_id, cutoff))


def slots_taken(item_id: Any, image_id: Any, cutoff: datetime) -> Select[Any]:
    """``SELECT count(*)`` of the assignments holding a slot of an item (columns or values)."""
    a = aliased(Assignment)
    return select(func.count()).select_from(a).where(a.item_id == item_id, holds_slot(a, image_id, cutoff))


def live_count(session: Session, item: AnnotationItem, cutoff: datetime) -> int:
    """How many of ``item``'s slots are held now."""
    return session.exec(slots_taken(item.id, item.image_id, cutoff)).one()


def still_holds(session: Session, assignment: Assignment, image_id: int, cutoff: datetime) -> bool:
    """Whether this one assignment holds its slot (the database answers, by the same rule)."""
    a = aliased(Assignment)
    query = select(func.count()).select_from(a).where(a.id == assignment.id, holds_slot(a, image_id, cutoff))
    return session.exec(query).one() > 0


def renew_claims(
    session: Session, annotator_id: int, image_id: int, now: datetime, *, item_id: int | None = None
) -> None:
    """Record activity on the annotator's active claims of an image (of one item when given):
    returning to the image, or saving a draft of it, keeps the claim live."""
    query = (
        select(Assignment)
        .join(AnnotationItem, col(AnnotationItem.id) == Assignment.item_id)
        .where(
            AnnotationItem.image_id == image_id,
            Assignment.annotator_id == annotator_id,
            Assignment.state == ACTIVE,
        )
    )
    if item_id is not None:
        query = query.where(Assignment.item_id == item_id)
    for assignment in session.exec(query):
        assignment.updated_at = now
        session.add(assignment)
