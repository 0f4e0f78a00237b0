"""Caption variants: append-only writes, history, and review decisions.

Every function that changes caption text appends a row. The previous revision keeps
its text and only loses ``is_current``; ``previous_id`` links the chain, so the full
history of a human caption is one walk back from its current row.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, select

from backend.db import read_session
from backend.models import Caption, CaptionStatus, utcnow
from backend.workspace import Workspace


class CaptionError(ValueError):
    pass


def add_caption(
    session: Session,
    image_id: int,
    kind: str,
    text: str,
    *,
    status: str = CaptionStatus.final.value,
    annotator_id: int | None = None,
    run_id: int | None = None,
    source: str = "",
    provenance: dict[str, Any] | None = None,
) -> Caption:
    """Insert one caption variant (imported, machine-written or demo)."""
    caption = Caption(
        image_id=image_id,
        kind=kind,
        text=text,
        status=status,
        annotator_id=annotator_id,
        run_id=run_id,
        source=source,
        provenance=provenance,
    )
    session.add(caption)
    session.flush()
    return caption


def current_human_caption(session: Session, image_id: int, kind: str, annotator_id: int) -> Caption | None:
    return session.exec(
        select(Caption).where(
            Caption.image_id == image_id,
            Caption.kind == kind,
            Caption.annotator_id == annotator_id,
            Caption.is_current == True,  # noqa: E712 - SQL expression
        )
    ).first()


def revise_human_caption(
    session: Session,
    image_id: int,
    kind: str,
    annotator_id: int,
    text: str,
    *,
    status: str = CaptionStatus.submitted.value,
    source: str = "annotate",
    provenance: dict[str, Any] | None = None,
) -> Caption:
    """Append a new revision of an annotator's caption; the old one stays in history.

    Re-submitting identical text with the same status is a no-op, so a double click
    or a retried request never creates a spurious revision.
    """
    text = text.strip()
    if not text:
        raise CaptionError(f"{kind} caption is empty")
    previous = current_human_caption(session, image_id, kind, annotator_id)
    if previous is not None and previous.text == text and previous.status == status:
        return previous
    if previous is not None:
        previous.is_current = False
        session.add(previous)
        session.flush()  # the partial unique index allows one current row per author
    caption = Caption(
        image_id=image_id,
        kind=kind,
        text=text,
        status=status,
        annotator_id=annotator_id,
        source=source,
        provenance=provenance,
        previous_id=previous.id if previous else None,
    )
    session.add(caption)
    session.flush()
    return caption


def review_caption(session: Session, caption_id: int, reviewer_id: int, approve: bool, comment: str = "") -> Caption:
    caption = session.get(Caption, caption_id)
    if caption is None:
        raise CaptionError(f"caption {caption_id} does not exist")
    if not caption.is_current:
        raise CaptionError(f"caption {caption_id} has a newer revision; review that one")
    if not approve and not comment.strip():
        raise CaptionError("a rejection needs a comment that tells the annotator what to fix")
    caption.status = CaptionStatus.approved.value if approve else CaptionStatus.rejected.value
    caption.reviewed_by = reviewer_id
    caption.reviewed_at = utcnow()
    caption.review_comment = comment.strip() or None
    session.add(caption)
    session.flush()
    return caption


def caption_history(ws: Workspace, caption_id: int) -> list[Caption]:
    """All revisions of the chain ending at ``caption_id``, oldest first."""
    chain: list[Caption] = []
    with read_session(ws) as s:
        current = s.get(Caption, caption_id)
        while current is not None:
            chain.append(current)
            current = s.get(Caption, current.previous_id) if current.previous_id else None
    return list(reversed(chain))


def current_captions(session: Session, image_id: int) -> list[Caption]:
    return list(
        session.exec(
            select(Caption)
            .where(Caption.image_id == image_id, Caption.is_current == True)  # noqa: E712
            .order_by(Caption.kind, Caption.id)
        )
    )
