"""Drafts: what an annotator typed and has not submitted, upserted on every edit so it survives
reloads and restarts. A draft save is claim activity (see :mod:`backend.annotation.liveness`)."""

from __future__ import annotations

from sqlmodel import Session, select

from backend.annotation.common import (
    LONG,
    SHORT,
    AnnotationError,
    check_length,
    lock_annotator,
    require_user,
)
from backend.annotation.liveness import renew_claims
from backend.captions import current_human_caption
from backend.db import read_session, write_session
from backend.models import Draft, Image, utcnow
from backend.workspace import Workspace


def draft_of(session: Session, image_id: int, annotator_id: int) -> Draft | None:
    """The draft row of (image, annotator) inside an open session."""
    return session.exec(
        select(Draft).where(Draft.image_id == image_id, Draft.annotator_id == annotator_id)
    ).first()


def save_draft(
    ws: Workspace, image_id: int, annotator_id: int, short_text: str, long_text: str
) -> Draft | None:
    """Upsert the annotator's draft of an image; refreshes their claim on it.

    Returns ``None`` (and removes any draft) when there is nothing unsaved: both boxes
    empty, or the text equal to what they already submitted. Why never an empty draft: a
    page that sends its boxes before they were filled (switching sets while an image loads)
    would otherwise hide the annotator's submitted caption behind an empty draft.
    """
    short_text = short_text or ""
    long_text = long_text or ""
    check_length("short caption", short_text)
    check_length("long caption", long_text)
    with write_session(ws, concurrent=True) as s:
        if s.get(Image, image_id) is None:
            raise AnnotationError(f"image {image_id} does not exist")
        require_user(s, annotator_id)
        lock_annotator(s, annotator_id)  # autosaves of one annotator upsert their draft in turn
        now = utcnow()
        renew_claims(s, annotator_id, image_id, now)
        draft = draft_of(s, image_id, annotator_id)
        short = current_human_caption(s, image_id, SHORT, annotator_id)
        long = current_human_caption(s, image_id, LONG, annotator_id)
        same_as_submitted = (
            short is not None
            and long is not None
            and short.text == short_text.strip()
            and long.text == long_text.strip()
        )
        nothing = not short_text.strip() and not long_text.strip()
        if same_as_submitted or nothing:
            if draft is not None:
                s.delete(draft)
            return None
        if draft is None:
            draft = Draft(image_id=image_id, annotator_id=annotator_id)
        draft.short_text = short_text
        draft.long_text = long_text
        draft.updated_at = now
        s.add(draft)
        s.flush()
        return draft


def load_draft(ws: Workspace, image_id: int, annotator_id: int) -> Draft | None:
    """The annotator's draft of an image, if any."""
    with read_session(ws) as s:
        return draft_of(s, image_id, annotator_id)
