"""Who may see what, per request: the studio side of :mod:`backend.visibility`.

Why server-side: a hidden component still has its events, and any logged-in session can
call them (Gradio's ``api_visibility="private"`` only keeps an endpoint out of the API page
and the client libraries). So every handler that shows captions, statistics, runs or metrics
asks here first, and the file routes ask :class:`FileAccess` (wired into
:class:`studio.auth_guard.RequireLogin`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import gradio as gr
from PIL import Image as PILImage
from PIL import ImageOps

from backend.models import Role, User
from backend.users import PermissionDenied, get_user
from backend.visibility import (
    EVERYONE,
    Viewer,
    any_campaign_open,
    blinded_datasets,
    sha_is_blinded,
    stored_sha,
    viewer_for,
)
from backend.workspace import Workspace
from studio.session import current_user

CLOSED_WHILE_JUDGING = (
    "**Closed to annotators while an Arena campaign is open.** Runs and automatic metrics tie each "
    "checkpoint to its captions, settings and images, which would tell you which system made an image "
    "you are judging. This opens again when the campaigns close."
)
# Gradio's file route: /gradio_api/file=<absolute path> (older releases also answered /file=)
_FILE_ROUTE = re.compile(r"^(?:/gradio_api)?/file=(.+)$")


def user_of(ws: Workspace, request: gr.Request | None) -> User | None:
    try:
        return current_user(ws, request)
    except PermissionDenied:
        return None


def viewer(ws: Workspace, request: gr.Request | None) -> Viewer:
    """The captions this request's user may read (admins: all)."""
    return viewer_for(ws, user_of(ws, request))


def _is_admin(user: User | None) -> bool:
    return user is not None and user.role == Role.admin.value


def hidden_datasets(ws: Workspace, request: gr.Request | None) -> set[str]:
    """Datasets this request's user gets nothing about: for annotators, those an open campaign judges."""
    return set() if _is_admin(user_of(ws, request)) else blinded_datasets(ws)


def closed_while_judging(ws: Workspace, request: gr.Request | None) -> bool:
    """True for an annotator (or nobody) while any campaign is open: Runs and metrics are closed then."""
    return not _is_admin(user_of(ws, request)) and any_campaign_open(ws)


def pixels_only(path: str | os.PathLike[str]) -> PILImage.Image:
    """A fresh image with the pixels of ``path`` and nothing else (no text chunk, EXIF, name or format).

    What annotators get instead of a stored original: a generated PNG carries its provenance
    (checkpoint, run) in a text chunk, and the original's file name is its SHA-256.
    """
    with PILImage.open(path) as src:
        upright = ImageOps.exif_transpose(src)
        mode = "RGBA" if "A" in upright.getbands() or "transparency" in upright.info else "RGB"
        pixels = upright.convert(mode)
    return PILImage.frombytes(pixels.mode, pixels.size, pixels.tobytes())


class FileAccess:
    """Per-user check of the file routes, for :class:`studio.auth_guard.RequireLogin`.

    Annotators never get a stored original by its path (``images/<sha>.<ext>``: the path is
    guessable from a thumbnail's name and the file keeps its provenance chunk); Review shows
    them a pixels-only copy instead. Nor do they get any file named by the SHA-256 of an image
    in a dataset an open campaign judges: thumbnails, and the copies Gradio caches of files
    handed to an admin's page. Admins get everything.
    """

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._originals = {ws.images_dir.absolute(), ws.images_dir.resolve()}

    @staticmethod
    def target(url_path: str) -> str | None:
        """The file a request path asks for, or None when it is not a file route."""
        match = _FILE_ROUTE.match(url_path)
        return match.group(1) if match else None

    def __call__(self, username: str, url_path: str) -> bool:
        target = self.target(url_path)
        if target is None:
            return True
        user = get_user(self.ws, username)
        if user is None or not user.active:
            return False
        if _is_admin(user):
            return True
        if "://" in target:  # a URL Gradio only redirects to; nothing of ours
            return True
        candidates = {Path(os.path.abspath(target)), Path(os.path.realpath(target))}
        for path in candidates:
            if any(path.is_relative_to(root) for root in self._originals):
                return False
        sha = next((s for s in (stored_sha(p.name) for p in candidates) if s), None)
        return sha is None or not sha_is_blinded(self.ws, sha)


__all__ = [
    "CLOSED_WHILE_JUDGING",
    "EVERYONE",
    "FileAccess",
    "closed_while_judging",
    "hidden_datasets",
    "pixels_only",
    "user_of",
    "viewer",
]
