"""Handing images out: an annotator's current image, a rejected one sent back, or a new claim.

An item holds at most ``overlap`` assignments that hold a slot (submitted, or a live claim —
the rule is in :mod:`backend.annotation.liveness`), so with overlap 1 two annotators never
hold the same image.

Why the count-then-insert is race-free on each engine: on SQLite the claim runs in a ``BEGIN
IMMEDIATE`` write session, alone among writers. On PostgreSQL claims of different annotators run
at once (``write_session(concurrent=True)``): the candidate item is locked with ``SELECT ... FOR
NO KEY UPDATE``, its slots are counted again once the lock is held (the search read an older
snapshot, possibly from before a claim that committed while it ran), and the lock is kept to the
commit, so no two claimers count the same item at once. With overlap 1 the lock is taken ``SKIP
LOCKED``: an item someone is claiming right now will be theirs, so the next annotator goes
straight to the following one instead of queueing. With overlap > 1 the claim waits for it
instead, so items still fill up in set order (two annotators on the same image is the point).
An item found full is let go at once (its savepoint is rolled back), so a claim holds at most
one item lock and two claims cannot deadlock. :func:`lock_annotator` keeps one annotator's
requests in order (two tabs must not claim two images).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import exists
from sqlmodel import Session, col, select

from backend.annotation.common import (
    ACTIVE,
    DEFAULT_CLAIM_TTL,
    SUBMITTED,
    load_set,
    lock_annotator,
    log,
    require_user,
)
from backend.annotation.liveness import claim_cutoff, live_count, renew_claims, slots_taken, still_holds
from backend.annotation.views import ItemView, build_view
from backend.db import write_session
from backend.models import (
    HUMAN_KINDS,
    AnnotationItem,
    AnnotationSet,
    Assignment,
    Caption,
    CaptionStatus,
    Draft,
    utcnow,
)
from backend.workspace import Workspace


def _claim_new(
    session: Session, aset: AnnotationSet, annotator_id: int, cutoff: datetime
) -> AnnotationItem | None:
    """The first item of the set, in set order, that the annotator never held and that has a
    free slot; claimed for them (lapsed claims of it released as needed)."""
    live = (
        slots_taken(AnnotationItem.id, AnnotationItem.image_id, cutoff)
        .correlate(AnnotationItem)
        .scalar_subquery()
    )
    mine = exists().where(Assignment.item_id == AnnotationItem.id, Assignment.annotator_id == annotator_id)
    my_draft = exists().where(Draft.image_id == AnnotationItem.image_id, Draft.annotator_id == annotator_id)
    full: list[int] = []  # items found full once locked (a claim committed while we searched)
    while True:
        query = (
            select(AnnotationItem)
            .where(AnnotationItem.set_id == aset.id, ~mine, live < aset.overlap)
            # an image the annotator already has a draft for (a lapsed claim) first, then set order
            .order_by(my_draft.desc(), AnnotationItem.position)
            .limit(1)
            # FOR NO KEY UPDATE OF annotationitem [SKIP LOCKED] on PostgreSQL; nothing on SQLite
            .with_for_update(of=AnnotationItem, key_share=True, skip_locked=aset.overlap == 1)
        )
        if full:
            query = query.where(col(AnnotationItem.id).not_in(full))
        savepoint = session.begin_nested()
        item = session.exec(query).first()
        if item is None:
            savepoint.commit()
            return None
        if live_count(session, item, cutoff) < aset.overlap:  # counted again under the lock
            break
        full.append(item.id)  # type: ignore[arg-type]
        savepoint.rollback()  # lets the item's lock go: a claim never holds two
    savepoint.commit()
    _release_stale(session, aset, item, cutoff)
    now = utcnow()
    session.add(
        Assignment(item_id=item.id, annotator_id=annotator_id, state=ACTIVE, claimed_at=now, updated_at=now)
    )
    session.flush()
    return item


def _release_stale(session: Session, aset: AnnotationSet, item: AnnotationItem, cutoff: datetime) -> None:
    """Drop lapsed active claims of ``item`` when their slots are needed (drafts stay)."""
    held = list(
        session.exec(
            select(Assignment)
            .where(Assignment.item_id == item.id, col(Assignment.state).in_((ACTIVE, SUBMITTED)))
            .order_by(Assignment.updated_at)
            # locked before liveness is asked: a holder renewing its claim right now (a draft save)
            # either commits first and is seen live, or waits and finds its claim released
            .with_for_update()
        )
    )
    excess = len(held) + 1 - aset.overlap
    if excess <= 0:
        return
    for assignment in held:
        if excess <= 0:
            break
        if still_holds(session, assignment, item.image_id, cutoff):
            continue
        log.info(
            "claim of image %s by user %s lapsed (no activity since %s); released",
            item.image_id,
            assignment.annotator_id,
            assignment.updated_at,
        )
        session.delete(assignment)
        excess -= 1
    session.flush()


def rejected_item(session: Session, set_id: int, annotator_id: int) -> AnnotationItem | None:
    """The oldest-reviewed item of the set whose caption by this annotator was rejected."""
    row = session.exec(
        select(AnnotationItem)
        .join(Assignment, col(Assignment.item_id) == AnnotationItem.id)
        .join(Caption, col(Caption.image_id) == AnnotationItem.image_id)
        .where(
            AnnotationItem.set_id == set_id,
            Assignment.annotator_id == annotator_id,
            Assignment.state == SUBMITTED,
            Caption.annotator_id == annotator_id,
            col(Caption.kind).in_(HUMAN_KINDS),
            Caption.is_current == True,  # noqa: E712
            Caption.status == CaptionStatus.rejected.value,
        )
        .order_by(Caption.reviewed_at, AnnotationItem.position)
        .limit(1)
    ).first()
    return row


def active_item(session: Session, set_id: int, annotator_id: int) -> AnnotationItem | None:
    """The item of the set the annotator holds (their newest active claim, live or lapsed)."""
    return session.exec(
        select(AnnotationItem)
        .join(Assignment, col(Assignment.item_id) == AnnotationItem.id)
        .where(
            AnnotationItem.set_id == set_id,
            Assignment.annotator_id == annotator_id,
            Assignment.state == ACTIVE,
        )
        .order_by(col(Assignment.claimed_at).desc(), col(Assignment.id).desc())
        .limit(1)
    ).first()


def next_item(
    ws: Workspace, set_id: int, annotator_id: int, *, ttl: timedelta = DEFAULT_CLAIM_TTL
) -> ItemView | None:
    """The annotator's current image of the set, claiming a new one when they hold none.

    Order: (1) the image they hold (active claim); (2) an image whose caption a reviewer
    rejected, with the comment; (3) a new claim — the first image in set order that they
    never held and that has fewer than ``overlap`` live assignments (submitted, or active
    within ``ttl``). ``None`` when nothing is left for this annotator.
    """
    with write_session(ws, concurrent=True) as s:
        aset = load_set(s, set_id)
        require_user(s, annotator_id)
        lock_annotator(s, annotator_id)
        item = active_item(s, aset.id, annotator_id)
        if item is not None:  # returning to the image is activity: the claim stays live
            renew_claims(s, annotator_id, item.image_id, utcnow(), item_id=item.id)
        if item is None:
            item = rejected_item(s, aset.id, annotator_id)
        if item is None:
            item = _claim_new(s, aset, annotator_id, claim_cutoff(ttl))
        if item is None:
            return None
        s.flush()
        return build_view(s, ws, aset, item, annotator_id)
