"""Datasets: creation, lookup and the counts the CLI's ``stats`` and the Datasets tab show."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func
from sqlmodel import Session, select

from backend.db import read_session
from backend.models import Caption, Dataset, Image
from backend.workspace import Workspace


class DatasetNotFound(LookupError):
    pass


@dataclass
class DatasetSummary:
    name: str
    images: int
    captions: dict[str, int]


def get_or_create_dataset(session: Session, name: str) -> Dataset:
    name = name.strip()
    if not name:
        raise ValueError("dataset name must not be empty")
    dataset = session.exec(select(Dataset).where(Dataset.name == name)).first()
    if dataset is None:
        dataset = Dataset(name=name)
        session.add(dataset)
        session.flush()
    return dataset


def get_dataset(session: Session, name: str) -> Dataset:
    dataset = session.exec(select(Dataset).where(Dataset.name == name)).first()
    if dataset is None:
        raise DatasetNotFound(f"no dataset named {name!r}")
    return dataset


def dataset_names(ws: Workspace) -> list[str]:
    with read_session(ws) as s:
        return list(s.exec(select(Dataset.name).order_by(Dataset.name)))


def summarise(session: Session, dataset: Dataset) -> DatasetSummary:
    """Image count and current caption count per kind."""
    images = session.exec(select(func.count()).select_from(Image).where(Image.dataset_id == dataset.id)).one()
    rows = session.exec(
        select(Caption.kind, func.count())
        .join(Image, Image.id == Caption.image_id)
        .where(Image.dataset_id == dataset.id, Caption.is_current == True)  # noqa: E712
        .group_by(Caption.kind)
        .order_by(Caption.kind)
    ).all()
    return DatasetSummary(name=dataset.name, images=images, captions={kind: n for kind, n in rows})


def dataset_summary(ws: Workspace, name: str) -> DatasetSummary:
    with read_session(ws) as s:
        return summarise(s, get_dataset(s, name))


def all_summaries(ws: Workspace, exclude: set[str] | frozenset[str] = frozenset()) -> list[DatasetSummary]:
    """Every dataset's summary, by name; ``exclude``: names left out (not even counted)."""
    with read_session(ws) as s:
        return [
            summarise(s, d) for d in s.exec(select(Dataset).order_by(Dataset.name)) if d.name not in exclude
        ]


class DatasetInUse(ValueError):
    """Other records (runs, artifacts, evaluations) still point at the dataset's images."""


def delete_dataset(ws: Workspace, name: str) -> int:
    """Delete dataset ``name`` with its images, captions, drafts and annotation sets.

    Returns the number of images removed. Rows go by the database's ``ON DELETE CASCADE``
    in one transaction, so a failure leaves everything as it was. The image *files* stay
    in the workspace's content-addressed store: another dataset may hold the same file
    (same SHA-256), and files are never modified or removed once written.
    """
    from sqlalchemy import delete
    from sqlalchemy.exc import IntegrityError

    from backend.db import write_session
    from backend.jobs.models import Run

    try:
        with write_session(ws) as s:
            dataset = get_dataset(s, name)
            # a queued or running job reads this dataset (or writes captions into it)
            busy = [
                run.id
                for run in s.exec(select(Run).where(Run.status.in_(("queued", "running"))))  # type: ignore[attr-defined]
                if (run.config or {}).get("dataset") == name
            ]
            if busy:
                raise DatasetInUse(
                    f"dataset {name!r} is used by active run(s) {', '.join(f'#{i}' for i in busy)}; "
                    "cancel them or wait until they finish, then delete"
                )
            images = s.exec(
                select(func.count()).select_from(Image).where(Image.dataset_id == dataset.id)
            ).one()
            s.exec(delete(Dataset).where(Dataset.id == dataset.id))  # type: ignore[call-overload]
    except IntegrityError as exc:
        raise DatasetInUse(
            f"dataset {name!r} cannot be deleted: other records still refer to its images "
            f"(e.g. runs or evaluations); delete those first ({exc.orig})"
        ) from None
    return images
