"""What an annotator may see: other annotators' captions, and anything about an open Arena campaign.

Why one module: the same two rules apply in every tab, in the file routes and in the
statistics, and a rule written once cannot drift between them.

1. **Annotators caption independently** (RECAP's human set is only worth its cost if each
   caption is one person's own reading of the image). An annotator reads captions no
   annotator wrote (imported alt-text, recaptions), human captions that were approved (or
   imported as final), and their own; not another annotator's submitted or rejected work.
   An admin can open everything to annotators with the workspace setting
   :data:`SEE_ALL_CAPTIONS` (e.g. for a team that discusses captions openly).
2. **Judging stays blind**: while a campaign is open, annotators get nothing about the
   datasets it judges (:func:`backend.arena.blinded_datasets`), none of their stored
   originals, and no view of runs and automatic metrics (a run's config, validation images
   or metric table tie a checkpoint to its images and captions).

Admins, the CLI and jobs see everything (:data:`EVERYONE`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, true
from sqlmodel import select

from backend import settings
from backend.db import read_session
from backend.models import Caption, CaptionStatus, Dataset, Image, Role, User
from backend.workspace import Workspace

SEE_ALL_CAPTIONS = "annotators_see_all_captions"
# human captions any annotator may read: reviewed and accepted, or imported without a review step
SHARED_STATUSES = (CaptionStatus.approved.value, CaptionStatus.final.value)
# a stored file's name: the SHA-256 of its content (originals, thumbnails, Gradio's cached copies)
_STORED_NAME = re.compile(r"^([0-9a-f]{64})\.[A-Za-z0-9]{1,8}$")


@dataclass(frozen=True)
class Viewer:
    """Who reads captions. ``sees_all``: every caption (admins, the CLI, or the workspace setting)."""

    user_id: int | None
    sees_all: bool


EVERYONE = Viewer(user_id=None, sees_all=True)


def annotators_see_all_captions(ws: Workspace) -> bool:
    """The admin setting that lets annotators read every caption (off by default)."""
    return bool(settings.get(ws, SEE_ALL_CAPTIONS, False))


def set_annotators_see_all_captions(ws: Workspace, on: bool) -> None:
    settings.put(ws, SEE_ALL_CAPTIONS, bool(on))


def viewer_for(ws: Workspace, user: User | None) -> Viewer:
    """The caption view of ``user``; ``None`` (nobody logged in) sees only shared captions."""
    if user is not None and user.role == Role.admin.value:
        return Viewer(user_id=user.id, sees_all=True)
    if annotators_see_all_captions(ws):
        return Viewer(user_id=user.id if user else None, sees_all=True)
    return Viewer(user_id=user.id if user else None, sees_all=False)


def visible_captions(viewer: Viewer) -> Any:
    """SQL condition on :class:`Caption`: the rows ``viewer`` may read (always true for :data:`EVERYONE`)."""
    if viewer.sees_all:
        return true()
    shared = [
        Caption.annotator_id.is_(None),  # type: ignore[union-attr]
        Caption.status.in_(SHARED_STATUSES),  # type: ignore[attr-defined]
    ]
    if viewer.user_id is not None:
        shared.append(Caption.annotator_id == viewer.user_id)
    return or_(*shared)


# --------------------------------------------------------------------------- blind judging


def any_campaign_open(ws: Workspace) -> bool:
    """True while some Arena campaign takes votes: then annotators see no runs or metrics."""
    from backend.arena.models import Campaign, CampaignStatus

    with read_session(ws) as s:
        found = s.exec(
            select(Campaign.id).where(Campaign.status == CampaignStatus.open.value).limit(1)
        ).first()
    return found is not None


def blinded_datasets(ws: Workspace) -> set[str]:
    """Datasets an open campaign judges (the Arena decides which: :func:`backend.arena.blinded_datasets`)."""
    from backend.arena import blinded_datasets as arena_blinded

    return arena_blinded(ws)


def stored_sha(file_name: str) -> str | None:
    """The SHA-256 a stored file is named by (``<sha>.png``, ``<sha>.jpg`` thumbnail), or None."""
    match = _STORED_NAME.match(file_name)
    return match.group(1) if match else None


def sha_is_blinded(ws: Workspace, sha256: str, blinded: set[str] | None = None) -> bool:
    """Whether an image with this content belongs to a dataset an open campaign judges.

    By content, not by dataset: the same file stored for two datasets is one file, so it
    is withheld if any of them is blinded.
    """
    names = blinded_datasets(ws) if blinded is None else blinded
    if not names:
        return False
    with read_session(ws) as s:
        found = s.exec(
            select(Image.id)
            .join(Dataset, Dataset.id == Image.dataset_id)
            .where(Image.sha256 == sha256, Dataset.name.in_(sorted(names)))  # type: ignore[attr-defined]
            .limit(1)
        ).first()
    return found is not None
