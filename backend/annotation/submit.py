"""Submitting and skipping an image: drafts become ``human_short`` / ``human_long`` caption
revisions (append-only, see :mod:`backend.captions`), or the image goes to someone else."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlmodel import Session

from backend.annotation.common import (
    DEFAULT_CLAIM_TTL,
    LONG,
    SHORT,
    SKIPPED,
    SUBMITTED,
    AnnotationError,
    ClaimLost,
    assignment_of,
    caption_pair_status,
    check_length,
    load_item,
    load_set,
    lock_annotator,
    lock_item,
    log,
    require_user,
)
from backend.annotation.drafts import draft_of, save_draft
from backend.annotation.liveness import claim_cutoff, live_count
from backend.captions import current_human_caption, revise_human_caption
from backend.db import write_session
from backend.models import Assignment, Caption, CaptionStatus, utcnow
from backend.workspace import Workspace


def _revise(
    session: Session, image_id: int, kind: str, annotator_id: int, text: str, provenance: dict[str, Any]
) -> Caption:
    """A new submitted revision of one caption (or the approved one, when the text is unchanged)."""
    previous = current_human_caption(session, image_id, kind, annotator_id)
    if previous is not None and previous.text == text and previous.status == CaptionStatus.approved.value:
        return previous  # re-submitting approved text unchanged keeps the approval
    return revise_human_caption(
        session,
        image_id,
        kind,
        annotator_id,
        text,
        status=CaptionStatus.submitted.value,
        provenance=provenance,
    )


def submit(
    ws: Workspace,
    set_id: int,
    image_id: int,
    annotator_id: int,
    short_text: str,
    long_text: str,
    *,
    ttl: timedelta = DEFAULT_CLAIM_TTL,
) -> tuple[Caption, Caption]:
    """Submit (or revise) the annotator's short and long caption of an image of the set.

    Appends ``human_short`` and ``human_long`` revisions with status *submitted* (old
    revisions stay in history), marks the assignment submitted and removes the draft.
    If the annotator's claim had lapsed and the item was taken by others, the text is
    kept as a draft and :class:`ClaimLost` is raised.
    """
    short_text = (short_text or "").strip()
    long_text = (long_text or "").strip()
    missing = [label for label, t in (("short", short_text), ("long", long_text)) if not t]
    if missing:
        raise AnnotationError(f"both captions are required: the {' and '.join(missing)} caption is empty")
    check_length("short caption", short_text)
    check_length("long caption", long_text)
    try:
        with write_session(ws, concurrent=True) as s:
            aset = load_set(s, set_id)
            require_user(s, annotator_id)
            lock_annotator(s, annotator_id)
            item = load_item(s, set_id, image_id)
            assignment = assignment_of(s, item.id, annotator_id)
            now = utcnow()
            if assignment is not None and assignment.state == SKIPPED:
                raise AnnotationError("you skipped this image; it can no longer be submitted")
            if assignment is None:
                # the claim lapsed and was released: take a slot again if one is free, counted
                # under the item's lock as a claim counts (see backend.annotation.claims)
                lock_item(s, item)
                if live_count(s, item, claim_cutoff(ttl, now)) >= aset.overlap:
                    raise ClaimLost(
                        "this image was handed to another annotator after your claim lapsed "
                        f"({ttl} without activity); your text is kept as a draft"
                    )
                assignment = Assignment(item_id=item.id, annotator_id=annotator_id, claimed_at=now)
            provenance = {"annotation_set": aset.name, "set_id": aset.id}
            short = _revise(s, image_id, SHORT, annotator_id, short_text, provenance)
            long = _revise(s, image_id, LONG, annotator_id, long_text, provenance)
            assignment.state = SUBMITTED
            assignment.updated_at = now
            s.add(assignment)
            draft = draft_of(s, image_id, annotator_id)
            if draft is not None:
                s.delete(draft)
            s.flush()
            return short, long
    except ClaimLost:
        save_draft(ws, image_id, annotator_id, short_text, long_text)
        raise


def skip(ws: Workspace, set_id: int, image_id: int, annotator_id: int, reason: str = "") -> None:
    """Skip an image: it is never handed to this annotator again; others can take it.

    Allowed for an image the annotator holds (or whose caption was rejected), not for one
    they submitted. The reason is written to the log (the schema has no column for it);
    any draft is kept.
    """
    with write_session(ws, concurrent=True) as s:
        load_set(s, set_id)
        require_user(s, annotator_id)
        lock_annotator(s, annotator_id)
        item = load_item(s, set_id, image_id)
        assignment = assignment_of(s, item.id, annotator_id)
        if assignment is not None and assignment.state == SUBMITTED:
            short = current_human_caption(s, image_id, SHORT, annotator_id)
            long = current_human_caption(s, image_id, LONG, annotator_id)
            if caption_pair_status(short, long) != CaptionStatus.rejected.value:
                raise AnnotationError(
                    "you already submitted this image; edit and resubmit it instead of skipping"
                )
        if assignment is None:
            assignment = Assignment(item_id=item.id, annotator_id=annotator_id)
        assignment.state = SKIPPED
        assignment.updated_at = utcnow()
        s.add(assignment)
        log.info(
            "user %s skipped image %s of set %s: %s", annotator_id, image_id, set_id, reason or "(no reason)"
        )
