"""Annotation sets: creating one from a dataset, listing them, and which set a page opens on."""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import col, select

from backend.annotation.common import ACTIVE, SAMPLING_METHODS, AnnotationError, load_set
from backend.annotation.sampling import pick_images
from backend.db import read_session, write_session
from backend.models import AnnotationItem, AnnotationSet, Assignment, Dataset, Image
from backend.workspace import Workspace


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
        for position, image_id in enumerate(pick_images(s, ds.id, size, sampling, seed)):
            s.add(AnnotationItem(set_id=aset.id, image_id=image_id, position=position))
        s.flush()
        s.refresh(aset)
        return aset


def list_sets(ws: Workspace) -> list[AnnotationSet]:
    """All annotation sets, oldest first."""
    with read_session(ws) as s:
        return list(s.exec(select(AnnotationSet).order_by(AnnotationSet.id)))


def get_set(ws: Workspace, set_id: int) -> AnnotationSet:
    """One set by id (a clear :class:`AnnotationError` when there is none)."""
    with read_session(ws) as s:
        return load_set(s, set_id)


def set_dataset_names(ws: Workspace) -> dict[int, str]:
    """Dataset name of every set, by set id (for labels)."""
    with read_session(ws) as s:
        rows = s.exec(
            select(AnnotationSet.id, Dataset.name).join(Dataset, col(Dataset.id) == AnnotationSet.dataset_id)
        )
        return {set_id: ds for set_id, ds in rows}


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
