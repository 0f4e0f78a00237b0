"""Progress of an annotation set: per-annotator counts and overall completion."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import func
from sqlmodel import col, select

from backend.annotation.common import ACTIVE, LONG, SHORT, SKIPPED, SUBMITTED, caption_pair_status, load_set
from backend.annotation.review import submitted_pairs
from backend.db import read_session
from backend.models import AnnotationItem, Assignment, CaptionStatus, Dataset, User
from backend.workspace import Workspace


@dataclass
class AnnotatorProgress:
    """One annotator's counts in one set."""

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
    """A set's completion, overall and per annotator."""

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


def progress(ws: Workspace, set_id: int) -> SetProgress:
    """Per-annotator counts and overall completion of an annotation set."""
    with read_session(ws) as s:
        aset = load_set(s, set_id)
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
        for (image_id, annotator_id), caps in submitted_pairs(s, set_id).items():
            status = caption_pair_status(caps.get(SHORT), caps.get(LONG))
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
    """The id of the user called ``name``, if any (for scripts that name annotators)."""
    with read_session(ws) as s:
        return s.exec(select(User.id).where(User.name == name)).first()
