"""Moving between images: an annotator's history in a set, previous / following, and where a
page load resumes (the image of their newest draft, so nothing typed is lost)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import col, select

from backend.annotation.claims import active_item, next_item, rejected_item
from backend.annotation.common import (
    ACTIVE,
    DEFAULT_CLAIM_TTL,
    LONG,
    SHORT,
    SUBMITTED,
    caption_pair_status,
    load_set,
    with_assignment,
)
from backend.annotation.views import ItemView, build_view, item_view
from backend.captions import current_human_caption
from backend.db import read_session
from backend.models import AnnotationItem, Assignment, Draft
from backend.workspace import Workspace


@dataclass
class HistoryEntry:
    """One image the annotator held in a set, with what became of it."""

    image_id: int
    position: int
    state: str
    status: str | None
    claimed_at: datetime
    updated_at: datetime


def annotator_history(ws: Workspace, set_id: int, annotator_id: int) -> list[HistoryEntry]:
    """The images of the set this annotator held, in the order they claimed them."""
    with read_session(ws) as s:
        load_set(s, set_id)
        rows = s.exec(
            select(Assignment, AnnotationItem)
            .join(AnnotationItem, col(AnnotationItem.id) == Assignment.item_id)
            .where(AnnotationItem.set_id == set_id, Assignment.annotator_id == annotator_id)
            .order_by(Assignment.claimed_at, Assignment.id)
        ).all()
        entries: list[HistoryEntry] = []
        for assignment, item in rows:
            short = current_human_caption(s, item.image_id, SHORT, annotator_id)
            long = current_human_caption(s, item.image_id, LONG, annotator_id)
            entries.append(
                HistoryEntry(
                    image_id=item.image_id,
                    position=item.position + 1,
                    state=assignment.state,
                    status=caption_pair_status(short, long) if assignment.state == SUBMITTED else None,
                    claimed_at=assignment.claimed_at,
                    updated_at=assignment.updated_at,
                )
            )
        return entries


def _navigable(ws: Workspace, set_id: int, annotator_id: int) -> list[int]:
    """Image ids the annotator can move between: what they submitted and what they hold."""
    return [e.image_id for e in annotator_history(ws, set_id, annotator_id) if e.state in (SUBMITTED, ACTIVE)]


def previous_item(ws: Workspace, set_id: int, annotator_id: int, image_id: int | None) -> ItemView | None:
    """The image before ``image_id`` in the annotator's history (the last one when
    ``image_id`` is not in it); ``None`` at the start."""
    order = _navigable(ws, set_id, annotator_id)
    if image_id in order:
        index = order.index(image_id) - 1
    else:
        index = len(order) - 1
        # from the current claim, "previous" is the last image before it
        while index >= 0 and order[index] == image_id:
            index -= 1
    if index < 0:
        return None
    return item_view(ws, set_id, order[index], annotator_id)


def following_item(
    ws: Workspace, set_id: int, annotator_id: int, image_id: int | None, *, ttl: timedelta = DEFAULT_CLAIM_TTL
) -> ItemView | None:
    """The image after ``image_id`` in the annotator's history; past the end, :func:`next_item`."""
    order = _navigable(ws, set_id, annotator_id)
    if image_id in order and order.index(image_id) + 1 < len(order):
        return item_view(ws, set_id, order[order.index(image_id) + 1], annotator_id)
    return next_item(ws, set_id, annotator_id, ttl=ttl)


def resume_item(
    ws: Workspace, set_id: int, annotator_id: int, *, ttl: timedelta = DEFAULT_CLAIM_TTL, claim: bool = True
) -> ItemView | None:
    """Where the annotator left off: the image of their most recent draft in this set
    (if they still hold or submitted it), else :func:`next_item`. Used on page load so
    nothing typed is lost.

    With ``claim=False`` nothing new is claimed: only an image they already hold or one
    sent back to them is returned. Admins open the studio to review, and a page load must
    not make them hold (and keep renewing) an image no annotator could then get.
    """
    with read_session(ws) as s:
        load_set(s, set_id)
        image_id = s.exec(
            with_assignment(select(Draft.image_id), Draft.image_id, Draft.annotator_id)
            .where(
                AnnotationItem.set_id == set_id,
                Draft.annotator_id == annotator_id,
                col(Assignment.state).in_((ACTIVE, SUBMITTED)),
            )
            .order_by(col(Draft.updated_at).desc())
            .limit(1)
        ).first()
    if image_id is not None:
        return item_view(ws, set_id, image_id, annotator_id)
    if not claim:
        with read_session(ws) as s:
            aset = load_set(s, set_id)
            item = active_item(s, aset.id, annotator_id) or rejected_item(s, aset.id, annotator_id)
            return build_view(s, ws, aset, item, annotator_id) if item is not None else None
    return next_item(ws, set_id, annotator_id, ttl=ttl)
