"""What the Annotate page shows for one image of one set, for one annotator (:class:`ItemView`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, col, select

from backend.annotation.common import (
    LONG,
    SHORT,
    SUBMITTED,
    assignment_of,
    caption_pair_status,
    load_item,
    load_set,
    rejection_comment,
)
from backend.annotation.drafts import draft_of
from backend.captions import current_human_caption
from backend.db import read_session
from backend.models import AnnotationItem, AnnotationSet, Assignment, Caption, CaptionKind, Image
from backend.storage import image_path
from backend.workspace import Workspace


@dataclass
class ItemView:
    """Everything the Annotate page shows for one image of one set, for one annotator."""

    set_id: int
    set_name: str
    image_id: int
    image_path: str
    position: int  # 1-based position of the item in the set
    total: int  # items in the set
    alttext: list[str]
    draft_short: str | None  # None: no draft
    draft_long: str | None
    draft_saved_at: datetime | None
    submitted_short: str | None  # the annotator's current (last submitted) texts
    submitted_long: str | None
    caption_ids: list[int]  # current short/long caption ids, when submitted
    status: str | None  # None (not submitted) | submitted | approved | rejected
    review_comment: str | None
    state: str | None  # assignment state: active | submitted | skipped | None
    done: int = 0  # items this annotator submitted in this set

    @property
    def short_text(self) -> str:
        """What the short box should show: the draft, else the submitted text, else empty."""
        if self.draft_short is not None:
            return self.draft_short
        return self.submitted_short or ""

    @property
    def long_text(self) -> str:
        if self.draft_long is not None:
            return self.draft_long
        return self.submitted_long or ""

    @property
    def has_unsubmitted_changes(self) -> bool:
        return self.draft_short is not None and (
            self.draft_short != (self.submitted_short or "") or self.draft_long != (self.submitted_long or "")
        )


def _done_count(session: Session, set_id: int, annotator_id: int) -> int:
    return session.exec(
        select(func.count())
        .select_from(Assignment)
        .join(AnnotationItem, col(AnnotationItem.id) == Assignment.item_id)
        .where(
            AnnotationItem.set_id == set_id,
            Assignment.annotator_id == annotator_id,
            Assignment.state == SUBMITTED,
        )
    ).one()


def build_view(
    session: Session, ws: Workspace, aset: AnnotationSet, item: AnnotationItem, annotator_id: int
) -> ItemView:
    """The view of ``item`` inside an open session (claims build it in their write transaction)."""
    image = session.get(Image, item.image_id)
    assert image is not None  # foreign key
    alttext = list(
        session.exec(
            select(Caption.text)
            .where(
                Caption.image_id == image.id,
                Caption.kind == CaptionKind.alttext.value,
                Caption.is_current == True,  # noqa: E712
            )
            .order_by(Caption.id)
        )
    )
    draft = draft_of(session, image.id, annotator_id)
    short = current_human_caption(session, image.id, SHORT, annotator_id)
    long = current_human_caption(session, image.id, LONG, annotator_id)
    assignment = assignment_of(session, item.id, annotator_id)
    total = session.exec(
        select(func.count()).select_from(AnnotationItem).where(AnnotationItem.set_id == aset.id)
    ).one()
    return ItemView(
        set_id=aset.id,
        set_name=aset.name,
        image_id=image.id,
        image_path=str(image_path(ws, image.sha256, image.ext)),
        position=item.position + 1,
        total=total,
        alttext=alttext,
        draft_short=draft.short_text if draft else None,
        draft_long=draft.long_text if draft else None,
        draft_saved_at=draft.updated_at if draft else None,
        submitted_short=short.text if short else None,
        submitted_long=long.text if long else None,
        caption_ids=[c.id for c in (short, long) if c is not None],
        status=caption_pair_status(short, long),
        review_comment=rejection_comment(short, long),
        state=assignment.state if assignment else None,
        done=_done_count(session, aset.id, annotator_id),
    )


def item_view(ws: Workspace, set_id: int, image_id: int, annotator_id: int) -> ItemView:
    """The view of one image of the set for one annotator (any image of the set)."""
    with read_session(ws) as s:
        aset = load_set(s, set_id)
        return build_view(s, ws, aset, load_item(s, set_id, image_id), annotator_id)
