"""Who is asking: the logged-in user of a Gradio event, and role checks for the UI."""

from __future__ import annotations

import gradio as gr

from backend.models import Role, User
from backend.users import PermissionDenied, get_user, require_role
from backend.workspace import Workspace


def current_user(ws: Workspace, request: gr.Request | None) -> User:
    """The logged-in user; raises :class:`PermissionDenied` when there is none."""
    name = getattr(request, "username", None) if request is not None else None
    user = get_user(ws, name) if name else None
    if user is None or not user.active:
        raise PermissionDenied("you are not logged in")
    return user


def require_admin_ui(ws: Workspace, request: gr.Request | None) -> User:
    """The user if admin; otherwise a ``gr.Error`` the page shows as a clear message."""
    try:
        return require_role(ws, getattr(request, "username", None), Role.admin.value)
    except PermissionDenied as exc:
        raise gr.Error(f"Not allowed: {exc}. Ask an admin.") from None


def is_admin(ws: Workspace, request: gr.Request | None) -> bool:
    try:
        return current_user(ws, request).role == Role.admin.value
    except PermissionDenied:
        return False
