"""Annotation sets: choosing the images, handing them out, drafts, submit, review, progress.

The RECAP workflow starts with a *small* human caption set (about a hundred images), each
image captioned twice (short + long). This module is the workflow around that set:

* :func:`create_annotation_set` picks the images of a dataset, ``random`` (seeded) or
  ``stratified`` (spread over strata, see :func:`stratum_of`).
* :func:`next_item` hands an annotator their current image or claims a new one. An item
  holds at most ``overlap`` assignments in state *active* or *submitted*, so with
  overlap 1 two annotators never hold the same image. Claims run inside
  :func:`backend.db.write_session`, whose ``BEGIN IMMEDIATE`` serialises writers, so the
  count-then-insert is race-free on SQLite (on PostgreSQL, where that statement does not
  exist, claims and submits of one set take a transaction-scoped advisory lock instead). An *active* claim with no activity (claim, draft save) for
  longer than a TTL (2 h by default) no longer counts and may be taken over by another
  annotator; the previous holder keeps their draft.
* Drafts are upserted (:func:`save_draft`) so text survives reloads and restarts; on
  :func:`submit` they become ``human_short`` / ``human_long`` caption revisions
  (append-only, see :mod:`backend.captions`) and the draft row is removed.
* Rejected captions come back to their author first (before any new claim), with the
  reviewer's comment; an annotator can also go back to any image they submitted and
  revise it (a new revision, status back to *submitted*).

Every write runs in one ``write_session``; reads use ``read_session``.
"""

from __future__ import annotations

import logging
import random
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, or_, text
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from backend.captions import current_human_caption, review_caption, revise_human_caption
from backend.clip_tokens import word_count
from backend.db import read_session, write_session
from backend.models import (
    HUMAN_KINDS,
    AnnotationItem,
    AnnotationSet,
    Assignment,
    AssignmentState,
    Caption,
    CaptionKind,
    CaptionStatus,
    Dataset,
    Draft,
    Image,
    Role,
    User,
    utcnow,
)
from backend.storage import image_path
from backend.workspace import Workspace

log = logging.getLogger(__name__)

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


# --------------------------------------------------------------------------- data views


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


@dataclass
class HistoryEntry:
    image_id: int
    position: int
    state: str
    status: str | None
    claimed_at: datetime
    updated_at: datetime


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


@dataclass
class AnnotatorProgress:
    annotator_id: int
    annotator: str
    submitted: int = 0
    approved: int = 0
    rejected: int = 0
    pending_review: int = 0
    skipped: int = 0
    active: int = 0


@dataclass
class SetProgress:
    set_id: int
    name: str
    dataset: str
    items: int  # items in the set (the target)
    overlap: int
    items_done: int  # items with `overlap` submissions
    items_approved: int  # items with `overlap` approved caption pairs
    submissions: int
    submissions_target: int  # items * overlap
    annotators: list[AnnotatorProgress] = field(default_factory=list)

    @property
    def fraction_done(self) -> float:
        return self.items_done / self.items if self.items else 0.0


# --------------------------------------------------------------------------- sampling

_JUNK_ALT = re.compile(
    r"""^\s*(
        \S+\.(jpe?g|png|gif|webp|bmp|tiff?|heic)       # a file name
      | (https?://|www\.)\S*                         # a URL
      | (img|dsc|dscn|image|photo|pic|screenshot)[\s_-]*\d+\S*  # camera / export names
      | [\d\W_]+                                     # digits and punctuation only
    )\s*$""",
    re.IGNORECASE | re.VERBOSE,
)


def alttext_bucket(text: str | None) -> str:
    """Stratum of an alt-text: ``none``, ``junk`` (file name, URL, camera name, digits),
    or its length in words: ``1-4``, ``5-9``, ``10-19``, ``20+``."""
    if text is None or not text.strip():
        return "none"
    if _JUNK_ALT.match(text):
        return "junk"
    n = word_count(text)
    if n < 5:
        return "1-4"
    if n < 10:
        return "5-9"
    if n < 20:
        return "10-19"
    return "20+"


def object_count(meta: dict[str, Any] | None) -> int | None:
    """Objects in the image's ground truth, when ``Image.meta`` records them."""
    if not isinstance(meta, dict):
        return None
    for key in ("objects", "shapes", "annotations"):
        value = meta.get(key)
        if isinstance(value, list):
            return len(value)
    for key in ("n_objects", "num_objects", "object_count"):
        value = meta.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def stratum_of(alttext: str | None, meta: dict[str, Any] | None) -> tuple[str, str]:
    """The stratum used by ``sampling="stratified"``: (alt-text bucket, object-count bucket).

    The alt-text bucket separates missing and junk alt-text (file names, URLs, camera
    names — the web failure modes the caption set should show) from real alt-text by
    length; the object-count bucket (``1``, ``2``, ``3``, ``4+``, or ``-`` when
    ``Image.meta`` has no object list) spreads the set over simple and busy scenes.
    """
    n = object_count(meta)
    objects = "-" if n is None else (str(n) if n < 4 else "4+")
    return alttext_bucket(alttext), objects


def allocate(sizes: dict[Any, int], size: int) -> dict[Any, int]:
    """How many images each stratum gives: proportional to its size (largest remainder),
    with at least one from every stratum when ``size`` allows; never more than it holds."""
    keys = sorted(sizes, key=lambda k: (-sizes[k], str(k)))
    total = sum(sizes.values())
    if size >= total:
        return dict(sizes)
    quotas = {k: size * sizes[k] / total for k in keys}
    alloc = {k: min(sizes[k], int(quotas[k])) for k in keys}
    by_remainder = sorted(keys, key=lambda k: (-(quotas[k] - int(quotas[k])), -sizes[k], str(k)))
    while sum(alloc.values()) < size:
        for k in by_remainder:
            if sum(alloc.values()) >= size:
                break
            if alloc[k] < sizes[k]:
                alloc[k] += 1
    # cover every stratum once, taking from the largest allocations
    for k in sorted(keys, key=lambda k: (sizes[k], str(k)), reverse=True):
        if alloc[k] == 0 and sizes[k] > 0:
            donor = max(keys, key=lambda d: (alloc[d], sizes[d]))
            if alloc[donor] <= 1:
                break  # fewer images than strata: the largest strata keep theirs
            alloc[donor] -= 1
            alloc[k] = 1
    return alloc


def _pick_images(session: Session, dataset_id: int, size: int, sampling: str, seed: int) -> list[int]:
    rng = random.Random(seed)
    if sampling == "random":
        ids = list(session.exec(select(Image.id).where(Image.dataset_id == dataset_id).order_by(Image.id)))
        return rng.sample(ids, size)
    rows = session.exec(
        select(Image.id, Image.meta).where(Image.dataset_id == dataset_id).order_by(Image.id)
    ).all()
    alt: dict[int, str] = {}
    alt_rows = session.exec(
        select(Caption.image_id, Caption.text)
        .join(Image, col(Image.id) == col(Caption.image_id))
        .where(
            Image.dataset_id == dataset_id,
            Caption.kind == CaptionKind.alttext.value,
            Caption.is_current == True,  # noqa: E712 - SQL expression
        )
        .order_by(Caption.image_id, Caption.id)
    ).all()
    for image_id, alt_text in alt_rows:
        alt.setdefault(image_id, alt_text)
    strata: dict[tuple[str, str], list[int]] = defaultdict(list)
    for image_id, meta in rows:
        strata[stratum_of(alt.get(image_id), meta)].append(image_id)
    alloc = allocate({k: len(v) for k, v in strata.items()}, size)
    chosen: list[int] = []
    for key in sorted(strata):
        members = strata[key]
        rng.shuffle(members)
        chosen.extend(members[: alloc[key]])
    rng.shuffle(chosen)  # annotators see the strata mixed, not one after the other
    return chosen


# --------------------------------------------------------------------------- sets


def create_annotation_set(
    ws: Workspace,
    *,
    dataset: str,
    name: str,
    size: int,
    sampling: str = "random",
    overlap: int = 1,
    seed: int = 0,
    created_by: int | None = None,
) -> AnnotationSet:
    """Pick ``size`` images of ``dataset`` into a new annotation set named ``name``.

    ``sampling="random"`` draws a seeded uniform sample; ``"stratified"`` spreads the set
    over the strata of :func:`stratum_of` (alt-text missing / junk / by length, crossed
    with the ground-truth object count when ``Image.meta`` has one), proportionally with
    at least one image per stratum. ``overlap`` is how many annotators caption each image.
    """
    name = (name or "").strip()
    if not name:
        raise AnnotationError("the annotation set needs a name")
    if sampling not in SAMPLING_METHODS:
        raise AnnotationError(f"unknown sampling {sampling!r}; choose one of: {', '.join(SAMPLING_METHODS)}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise AnnotationError(f"size must be a whole number of images, at least 1 (got {size!r})")
    if not isinstance(overlap, int) or isinstance(overlap, bool) or overlap < 1:
        raise AnnotationError(f"overlap (annotators per image) must be at least 1 (got {overlap!r})")
    with write_session(ws) as s:
        ds = s.exec(select(Dataset).where(Dataset.name == dataset)).first()
        if ds is None:
            known = ", ".join(s.exec(select(Dataset.name).order_by(Dataset.name))) or "none yet"
            raise AnnotationError(f"no dataset named {dataset!r} (datasets: {known})")
        if s.exec(select(AnnotationSet.id).where(AnnotationSet.name == name)).first() is not None:
            raise AnnotationError(f"an annotation set named {name!r} already exists; choose another name")
        n_images = s.exec(select(func.count()).select_from(Image).where(Image.dataset_id == ds.id)).one()
        if size > n_images:
            raise AnnotationError(
                f"size {size} is larger than dataset {dataset!r}, which has {n_images} images"
            )
        aset = AnnotationSet(
            dataset_id=ds.id,
            name=name,
            target_size=size,
            sampling=sampling,
            overlap=overlap,
            seed=seed,
            created_by=created_by,
        )
        s.add(aset)
        s.flush()
        for position, image_id in enumerate(_pick_images(s, ds.id, size, sampling, seed)):
            s.add(AnnotationItem(set_id=aset.id, image_id=image_id, position=position))
        s.flush()
        s.refresh(aset)
        return aset


def list_sets(ws: Workspace) -> list[AnnotationSet]:
    """All annotation sets, oldest first."""
    with read_session(ws) as s:
        return list(s.exec(select(AnnotationSet).order_by(AnnotationSet.id)))


def get_set(ws: Workspace, set_id: int) -> AnnotationSet:
    with read_session(ws) as s:
        return _get_set(s, set_id)


def set_dataset_names(ws: Workspace) -> dict[int, str]:
    """Dataset name of every set, by set id (for labels)."""
    with read_session(ws) as s:
        rows = s.exec(
            select(AnnotationSet.id, Dataset.name).join(Dataset, col(Dataset.id) == AnnotationSet.dataset_id)
        )
        return {set_id: ds for set_id, ds in rows}


def _get_set(session: Session, set_id: int | None) -> AnnotationSet:
    aset = session.get(AnnotationSet, int(set_id)) if set_id is not None else None
    if aset is None:
        raise AnnotationError(f"annotation set {set_id} does not exist")
    return aset


def _get_item(session: Session, set_id: int, image_id: int) -> AnnotationItem:
    item = session.exec(
        select(AnnotationItem).where(AnnotationItem.set_id == set_id, AnnotationItem.image_id == image_id)
    ).first()
    if item is None:
        raise AnnotationError(f"image {image_id} is not part of annotation set {set_id}")
    return item


def _assignment(session: Session, item_id: int, annotator_id: int) -> Assignment | None:
    return session.exec(
        select(Assignment).where(Assignment.item_id == item_id, Assignment.annotator_id == annotator_id)
    ).first()


def _serialise_set(session: Session, set_id: int) -> None:
    """Serialise claims within one set. SQLite needs nothing (``BEGIN IMMEDIATE`` already
    holds the write lock); PostgreSQL gets a transaction-scoped advisory lock."""
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:a, :b)"), {"a": 0x5EC0, "b": int(set_id)})


def _require_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None or not user.active:
        raise AnnotationError(f"user {user_id} does not exist or is inactive")
    return user


# --------------------------------------------------------------------------- item views


def _pair_status(short: Caption | None, long: Caption | None) -> str | None:
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


def _review_comment(short: Caption | None, long: Caption | None) -> str | None:
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


def _view(
    session: Session, ws: Workspace, aset: AnnotationSet, item: AnnotationItem, annotator_id: int
) -> ItemView:
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
    draft = session.exec(
        select(Draft).where(Draft.image_id == image.id, Draft.annotator_id == annotator_id)
    ).first()
    short = current_human_caption(session, image.id, SHORT, annotator_id)
    long = current_human_caption(session, image.id, LONG, annotator_id)
    assignment = _assignment(session, item.id, annotator_id)
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
        status=_pair_status(short, long),
        review_comment=_review_comment(short, long),
        state=assignment.state if assignment else None,
        done=_done_count(session, aset.id, annotator_id),
    )


def item_view(ws: Workspace, set_id: int, image_id: int, annotator_id: int) -> ItemView:
    """The view of one image of the set for one annotator (any image of the set)."""
    with read_session(ws) as s:
        aset = _get_set(s, set_id)
        return _view(s, ws, aset, _get_item(s, set_id, image_id), annotator_id)


# --------------------------------------------------------------------------- claiming


def _live_filter(assignment: Any, image_id_col: Any, cutoff: datetime) -> Any:
    """SQL condition: this assignment counts toward the item's overlap.

    Submitted ones always count; active ones while they had activity (claim, draft save)
    within the TTL.
    """
    recent_draft = exists().where(
        Draft.image_id == image_id_col,
        Draft.annotator_id == assignment.annotator_id,
        Draft.updated_at >= cutoff,
    )
    return or_(
        assignment.state == SUBMITTED,
        and_(assignment.state == ACTIVE, or_(assignment.updated_at >= cutoff, recent_draft)),
    )


def _live_count(session: Session, item: AnnotationItem, cutoff: datetime, exclude: int | None = None) -> int:
    a = aliased(Assignment)
    q = (
        select(func.count())
        .select_from(a)
        .where(a.item_id == item.id, _live_filter(a, item.image_id, cutoff))
    )
    if exclude is not None:
        q = q.where(a.annotator_id != exclude)
    return session.exec(q).one()


def _claim_new(
    session: Session, aset: AnnotationSet, annotator_id: int, cutoff: datetime
) -> AnnotationItem | None:
    a = aliased(Assignment)
    live = (
        select(func.count())
        .select_from(a)
        .where(a.item_id == AnnotationItem.id, _live_filter(a, AnnotationItem.image_id, cutoff))
        .correlate(AnnotationItem)
        .scalar_subquery()
    )
    mine = exists().where(Assignment.item_id == AnnotationItem.id, Assignment.annotator_id == annotator_id)
    my_draft = exists().where(Draft.image_id == AnnotationItem.image_id, Draft.annotator_id == annotator_id)
    item = session.exec(
        select(AnnotationItem)
        .where(AnnotationItem.set_id == aset.id, ~mine, live < aset.overlap)
        # an image the annotator already has a draft for (a lapsed claim) first, then set order
        .order_by(my_draft.desc(), AnnotationItem.position)
        .limit(1)
    ).first()
    if item is None:
        return None
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
        )
    )
    excess = len(held) + 1 - aset.overlap
    if excess <= 0:
        return
    a = aliased(Assignment)
    live = set(session.exec(select(a.id).where(a.item_id == item.id, _live_filter(a, item.image_id, cutoff))))
    for assignment in held:
        if excess <= 0:
            break
        if assignment.id in live:
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


def _rejected_item(session: Session, set_id: int, annotator_id: int) -> AnnotationItem | None:
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


def _active_item(session: Session, set_id: int, annotator_id: int) -> AnnotationItem | None:
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
    with write_session(ws) as s:
        aset = _get_set(s, set_id)
        _require_user(s, annotator_id)
        _serialise_set(s, aset.id)
        item = _active_item(s, aset.id, annotator_id)
        if item is not None:
            assignment = _assignment(s, item.id, annotator_id)
            if assignment is not None:
                # returning to the page counts as activity, keeping the claim alive
                assignment.updated_at = utcnow()
                s.add(assignment)
        if item is None:
            item = _rejected_item(s, aset.id, annotator_id)
        if item is None:
            item = _claim_new(s, aset, annotator_id, utcnow() - ttl)
        if item is None:
            return None
        s.flush()
        return _view(s, ws, aset, item, annotator_id)


def annotator_history(ws: Workspace, set_id: int, annotator_id: int) -> list[HistoryEntry]:
    """The images of the set this annotator held, in the order they claimed them."""
    with read_session(ws) as s:
        _get_set(s, set_id)
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
                    status=_pair_status(short, long) if assignment.state == SUBMITTED else None,
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
        _get_set(s, set_id)
        image_id = s.exec(
            select(Draft.image_id)
            .join(AnnotationItem, col(AnnotationItem.image_id) == Draft.image_id)
            .join(
                Assignment,
                and_(
                    col(Assignment.item_id) == AnnotationItem.id,
                    col(Assignment.annotator_id) == Draft.annotator_id,
                ),
            )
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
            aset = _get_set(s, set_id)
            item = _active_item(s, aset.id, annotator_id) or _rejected_item(s, aset.id, annotator_id)
            return _view(s, ws, aset, item, annotator_id) if item is not None else None
    return next_item(ws, set_id, annotator_id, ttl=ttl)


def default_set_id(ws: Workspace, annotator_id: int | None) -> int | None:
    """The set to open for an annotator: where they were last active, else the newest set."""
    with read_session(ws) as s:
        if annotator_id is not None:
            recent = s.exec(
                select(AnnotationItem.set_id)
                .join(Assignment, col(Assignment.item_id) == AnnotationItem.id)
                .where(Assignment.annotator_id == annotator_id, Assignment.state == ACTIVE)
                .order_by(col(Assignment.updated_at).desc())
                .limit(1)
            ).first()
            if recent is not None:
                return recent
        return s.exec(select(AnnotationSet.id).order_by(col(AnnotationSet.id).desc()).limit(1)).first()


# --------------------------------------------------------------------------- drafts


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
    with write_session(ws) as s:
        if s.get(Image, image_id) is None:
            raise AnnotationError(f"image {image_id} does not exist")
        _require_user(s, annotator_id)
        now = utcnow()
        for assignment in s.exec(
            select(Assignment)
            .join(AnnotationItem, col(AnnotationItem.id) == Assignment.item_id)
            .where(
                AnnotationItem.image_id == image_id,
                Assignment.annotator_id == annotator_id,
                Assignment.state == ACTIVE,
            )
        ):
            assignment.updated_at = now
            s.add(assignment)
        draft = s.exec(
            select(Draft).where(Draft.image_id == image_id, Draft.annotator_id == annotator_id)
        ).first()
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
    with read_session(ws) as s:
        return s.exec(
            select(Draft).where(Draft.image_id == image_id, Draft.annotator_id == annotator_id)
        ).first()


# --------------------------------------------------------------------------- submit / skip


def _revise(
    session: Session, image_id: int, kind: str, annotator_id: int, text: str, provenance: dict[str, Any]
) -> Caption:
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
        with write_session(ws) as s:
            aset = _get_set(s, set_id)
            _require_user(s, annotator_id)
            _serialise_set(s, aset.id)
            item = _get_item(s, set_id, image_id)
            assignment = _assignment(s, item.id, annotator_id)
            now = utcnow()
            if assignment is not None and assignment.state == SKIPPED:
                raise AnnotationError("you skipped this image; it can no longer be submitted")
            if assignment is None:
                # the claim lapsed and was released: take a slot again if one is free
                if _live_count(s, item, now - ttl) >= aset.overlap:
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
            draft = s.exec(
                select(Draft).where(Draft.image_id == image_id, Draft.annotator_id == annotator_id)
            ).first()
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
    with write_session(ws) as s:
        _get_set(s, set_id)
        _require_user(s, annotator_id)
        item = _get_item(s, set_id, image_id)
        assignment = _assignment(s, item.id, annotator_id)
        if assignment is not None and assignment.state == SUBMITTED:
            short = current_human_caption(s, image_id, SHORT, annotator_id)
            long = current_human_caption(s, image_id, LONG, annotator_id)
            if _pair_status(short, long) != CaptionStatus.rejected.value:
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


# --------------------------------------------------------------------------- review


def _pairs(session: Session, set_id: int) -> dict[tuple[int, int], dict[str, Caption]]:
    """Current human captions of the set's images by (image, annotator), limited to
    annotators who submitted that item in this set."""
    rows = session.exec(
        select(Caption)
        .join(AnnotationItem, col(AnnotationItem.image_id) == Caption.image_id)
        .join(
            Assignment,
            and_(
                col(Assignment.item_id) == AnnotationItem.id,
                col(Assignment.annotator_id) == Caption.annotator_id,
            ),
        )
        .where(
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
    pairs = _pairs(session, set_id)
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
        pair_status = _pair_status(short, long)
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
                review_comment=_review_comment(short, long)
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
        _get_set(s, set_id)
        return _queue(s, ws, set_id, status)[offset : offset + limit]


def review_queue_count(ws: Workspace, set_id: int, status: str | None = "submitted") -> int:
    with read_session(ws) as s:
        _get_set(s, set_id)
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
        reviewer = _require_user(s, reviewer_id)
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


# --------------------------------------------------------------------------- progress


def progress(ws: Workspace, set_id: int) -> SetProgress:
    """Per-annotator counts and overall completion of an annotation set."""
    with read_session(ws) as s:
        aset = _get_set(s, set_id)
        dataset = s.get(Dataset, aset.dataset_id)
        n_items = s.exec(
            select(func.count()).select_from(AnnotationItem).where(AnnotationItem.set_id == set_id)
        ).one()
        rows = s.exec(
            select(Assignment.annotator_id, Assignment.state, Assignment.item_id)
            .join(AnnotationItem, col(AnnotationItem.id) == Assignment.item_id)
            .where(AnnotationItem.set_id == set_id)
        ).all()
        names = dict(s.exec(select(User.id, User.name)).all())
        per: dict[int, AnnotatorProgress] = {}

        def row(annotator_id: int) -> AnnotatorProgress:
            if annotator_id not in per:
                per[annotator_id] = AnnotatorProgress(
                    annotator_id, names.get(annotator_id, str(annotator_id))
                )
            return per[annotator_id]

        submitted_per_item: dict[int, int] = defaultdict(int)
        for annotator_id, state, item_id in rows:
            r = row(annotator_id)
            if state == SUBMITTED:
                r.submitted += 1
                submitted_per_item[item_id] += 1
            elif state == SKIPPED:
                r.skipped += 1
            elif state == ACTIVE:
                r.active += 1
        approved_per_image: dict[int, int] = defaultdict(int)
        for (image_id, annotator_id), caps in _pairs(s, set_id).items():
            status = _pair_status(caps.get(SHORT), caps.get(LONG))
            r = row(annotator_id)
            if status == CaptionStatus.approved.value:
                r.approved += 1
                approved_per_image[image_id] += 1
            elif status == CaptionStatus.rejected.value:
                r.rejected += 1
            elif status == CaptionStatus.submitted.value:
                r.pending_review += 1
        return SetProgress(
            set_id=aset.id,
            name=aset.name,
            dataset=dataset.name if dataset else "",
            items=n_items,
            overlap=aset.overlap,
            items_done=sum(1 for n in submitted_per_item.values() if n >= aset.overlap),
            items_approved=sum(1 for n in approved_per_image.values() if n >= aset.overlap),
            submissions=sum(submitted_per_item.values()),
            submissions_target=n_items * aset.overlap,
            annotators=sorted(per.values(), key=lambda p: p.annotator),
        )


def user_id(ws: Workspace, name: str) -> int | None:
    with read_session(ws) as s:
        return s.exec(select(User.id).where(User.name == name)).first()


__all__ = [
    "DEFAULT_CLAIM_TTL",
    "AnnotationError",
    "AnnotatorProgress",
    "ClaimLost",
    "HistoryEntry",
    "ItemView",
    "ReviewEntry",
    "SetProgress",
    "allocate",
    "alttext_bucket",
    "annotator_history",
    "create_annotation_set",
    "default_set_id",
    "following_item",
    "get_set",
    "item_view",
    "list_sets",
    "load_draft",
    "next_item",
    "object_count",
    "previous_item",
    "progress",
    "resume_item",
    "review",
    "review_queue",
    "review_queue_count",
    "save_draft",
    "set_dataset_names",
    "skip",
    "stratum_of",
    "submit",
]
