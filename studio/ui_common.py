"""Small helpers every tab needs: who is calling, lenient number parsing, HTML escaping, the
run status badge, "change nothing" for n outputs, and the tab a section is being built in.

Why one module: each tab used to carry its own copy of these (``_user``, ``_int``, ``_esc``),
and copies drift — one tab's ``_int`` read ``"3.0"`` as 3, another's as nothing. The two
number readers below keep both behaviours under names that say which is which.
"""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

from backend.models import User
from backend.users import PermissionDenied
from backend.workspace import Workspace
from studio.session import current_user

# One icon per run status (the Runs tab's table and header, and anywhere a run is shown).
STATUS_ICONS = {
    "queued": "⏳",
    "running": "▶",
    "succeeded": "✔",
    "failed": "✖",
    "cancelled": "■",
    "interrupted": "⚠",
}


def esc(text: Any) -> str:
    """``text`` as HTML, quotes included (values end up inside attributes too)."""
    return html.escape(str(text), quote=True)


def int_or_none(value: Any) -> int | None:
    """An id or page number from a component: ``None`` when empty or not a whole number.

    Strict on purpose: ``"3.5"`` is no run id, so it is ``None`` rather than run 3.
    """
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def int_or(value: Any, default: int = 0) -> int:
    """A count from a component, read leniently (``"3.0"`` → 3); ``default`` when unreadable.

    For values the browser measures or a ``gr.Number`` sends as a float, where a bad value
    should fall back rather than fail the event.
    """
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):  # OverflowError: "1e400", Infinity
        return default


def user_or_error(ws: Workspace, request: gr.Request | None) -> User:
    """The logged-in user of an event, or a ``gr.Error`` the page shows as a clear message."""
    try:
        return current_user(ws, request)
    except PermissionDenied as exc:
        raise gr.Error(f"Not allowed: {exc}.") from None


def no_change(n: int) -> tuple[Any, ...]:
    """``n`` outputs left as they are (an event that decides to change nothing)."""
    return tuple(gr.skip() for _ in range(n))


def status_badge(status: str) -> str:
    """A run status as a coloured badge (CSS classes ``run-status run-status-<status>``)."""
    icon = STATUS_ICONS.get(status, "")
    return f'<span class="run-status run-status-{html.escape(status)}">{icon} {html.escape(status)}</span>'


def parent_tab() -> gr.Tab | None:
    """The ``gr.Tab`` the caller's components are being built in (to refresh on selection)."""
    from gradio.context import get_render_context

    block = get_render_context()
    return block if isinstance(block, gr.Tab) else None
