"""Annotate tab: write the RECAP human caption set (short + long per image), and for
admins create annotation sets, follow progress and review submitted captions.

Design notes
- Every handler asks the server who is calling (``gr.Request``); admin handlers check the
  role with :func:`studio.session.require_admin_ui` even though annotators never see them
  (the admin sub-tab is hidden for them, but its endpoints exist, so the check is the guard).
- Nothing typed is lost: drafts autosave on every edit (``trigger_mode="always_last"``, one
  save in flight per page, the last edit always saved), navigation saves the draft of the
  image being left, and on page load the annotator lands on the image of their most recent
  draft with its text restored. ``static/annotate.js`` warns before leaving the page while a
  save is still pending: every event that writes the draft status carries the page's edit
  counter (set by the ``js=`` hook) and the server echoes it back in ``data-token``.
- One image at a time and one page of the review queue at a time: no component per image.
- The annotator page is :mod:`studio.annotate_caption`, the admin page :mod:`studio.annotate_admin`;
  this module puts them in their sub-tabs and wires them in that order.
"""

from __future__ import annotations

import gradio as gr

from backend.workspace import Workspace
from studio import annotate_admin, annotate_caption
from studio.annotate_caption import counts_html, read_guidelines

__all__ = ["build", "counts_html"]  # counts_html: where callers found it before the split


def build(ws: Workspace, blocks: gr.Blocks) -> None:
    """The Annotate tab: the annotator page, and the admin page (shown to admins on load)."""
    with gr.Tabs(elem_id="annotate-tabs"):
        with gr.Tab("Caption", id="annotate-caption", elem_id="annotate-caption"):
            page = annotate_caption.layout(read_guidelines())
        with gr.Tab(
            "Sets, progress & review (admin)", id="annotate-admin", elem_id="annotate-admin", visible=False
        ) as admin_tab:
            admin = annotate_admin.layout()
    annotate_caption.wire(ws, blocks, page, admin_tab)
    annotate_admin.wire(ws, blocks, admin, page.ann_set)
