"""Review: the queue of submitted caption pairs of a set, and an admin approving or rejecting
them (a rejection comes back to its author first, with the comment)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from backend.annotation.common import (
    LONG,
    MAX_PAGE,
    SHORT,
    SUBMITTED,
    AnnotationError,
    caption_pair_status,
    check_length,
    load_set,
    rejection_comment,
    require_user,
    with_assignment,
)
from backend.captions import review_caption
from backend.db import read_session, write_session
from backend.models import HUMAN_KINDS, AnnotationItem, Assignment, Caption, Image, Role, User
from backend.storage import image_path
from backend.workspace import Workspace


@dataclass
class ReviewEntry:
    """One annotator's short + long caption of one image, as the review queue shows it."""

    image_id: int
    image_path: str
    annotator_id: int
    annotator: str
    status: str
    short_id: int | None
    short_text: str
    short_status: str | None
    long_id: int | None
    long_text: str
    long_status: str | None
    submitted_at: datetime
    review_comment: str | None = None

    @property
    def caption_ids(self) -> list[int]:
        return [i for i in (self.short_id, self.long_id) if i is not None]


def submitted_pairs(session: Session, set_id: int) -> dict[tuple[int, int], dict[str, Caption]]:
    """Current human captions of the set's images by (image, annotator), limited to
    annotators who submitted that item in this set."""
    rows = session.exec(
        with_assignment(select(Caption), Caption.image_id, Caption.annotator_id).where(
            AnnotationItem.set_id == set_id,
            Assignment.state == SUBMITTED,
            col(Caption.kind).in_(HUMAN_KINDS),
            Caption.is_current == True,  # noqa: E712
        )
    ).all()
    pairs: dict[tuple[int, int], dict[str, Caption]] = defaultdict(dict)
    for c in rows:
        assert c.annotator_id is not None
        pairs[(c.image_id, c.annotator_id)][c.kind] = c
    return pairs


def _queue(session: Session, ws: Workspace, set_id: int, status: str | None) -> list[ReviewEntry]:
    """Every pair of the set with the given status (``None``: all), oldest submission first."""
    pairs = submitted_pairs(session, set_id)
    names = dict(session.exec(select(User.id, User.name)).all())
    images = {
        img.id: img
        for img in session.exec(
            select(Image)
            .join(AnnotationItem, col(AnnotationItem.image_id) == Image.id)
            .where(AnnotationItem.set_id == set_id)
        )
    }
    entries: list[ReviewEntry] = []
    for (image_id, annotator_id), caps in pairs.items():
        short, long = caps.get(SHORT), caps.get(LONG)
        pair_status = caption_pair_status(short, long)
        if pair_status is None or (status and pair_status != status):
            continue
        img = images[image_id]
        entries.append(
            ReviewEntry(
                image_id=image_id,
                image_path=str(image_path(ws, img.sha256, img.ext)),
                annotator_id=annotator_id,
                annotator=names.get(annotator_id, str(annotator_id)),
                status=pair_status,
                short_id=short.id if short else None,
                short_text=short.text if short else "",
                short_status=short.status if short else None,
                long_id=long.id if long else None,
                long_text=long.text if long else "",
                long_status=long.status if long else None,
                submitted_at=max(c.created_at for c in (short, long) if c is not None),
                review_comment=rejection_comment(short, long)
                or next((c.review_comment for c in (short, long) if c and c.review_comment), None),
            )
        )
    entries.sort(key=lambda e: (e.submitted_at, e.image_id, e.annotator_id))
    return entries


def review_queue(
    ws: Workspace, set_id: int, status: str | None = "submitted", limit: int = 20, offset: int = 0
) -> list[ReviewEntry]:
    """One page of caption pairs (short + long per image per annotator) of the set with
    the given pair status (``submitted`` = waiting for review; ``None`` = all), oldest first."""
    limit = max(1, min(int(limit), MAX_PAGE))
    offset = max(0, int(offset))
    with read_session(ws) as s:
        load_set(s, set_id)
        return _queue(s, ws, set_id, status)[offset : offset + limit]


def review_queue_count(ws: Workspace, set_id: int, status: str | None = "submitted") -> int:
    """How many pairs :func:`review_queue` pages through."""
    with read_session(ws) as s:
        load_set(s, set_id)
        return len(_queue(s, ws, set_id, status))


def review(
    ws: Workspace, caption_ids: Iterable[int], reviewer_id: int, approve: bool, comment: str = ""
) -> list[Caption]:
    """Approve or reject human captions (typically one short + long pair) in one transaction.

    The reviewer must be an admin; a rejection needs a comment, which the annotator sees
    when the image comes back to them.
    """
    ids = [int(i) for i in caption_ids]
    if not ids:
        raise AnnotationError("no captions selected for review")
    comment = (comment or "").strip()
    check_length("review comment", comment)
    if not approve and not comment:
        raise AnnotationError("a rejection needs a comment that tells the annotator what to fix")
    with write_session(ws) as s:
        reviewer = require_user(s, reviewer_id)
        if reviewer.role != Role.admin.value:
            raise AnnotationError(f"user {reviewer.name!r} is not an admin and may not review captions")
        reviewed: list[Caption] = []
        for caption_id in ids:
            caption = s.get(Caption, caption_id)
            if caption is None:
                raise AnnotationError(f"caption {caption_id} does not exist")
            if caption.kind not in HUMAN_KINDS:
                raise AnnotationError(f"caption {caption_id} is {caption.kind!r}, not a human caption")
            reviewed.append(review_caption(s, caption_id, reviewer_id, approve, comment))
        return reviewed
