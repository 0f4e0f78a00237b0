"""Arena tab: blind pairwise judging for annotators, campaign management for admins.

Verdict campaigns (one image and its prompt, faithful or not; :mod:`backend.arena.verdicts`) are
judged on the same page under the same rules below: one image on the campaign's canvas with a
fresh URL, keys Y / N, the prompt's required elements as "missing" ticks (keys 1–9).

Design notes — blindness first
- The browser only ever holds the ticket's opaque random token. Which system is left or
  right, item ids and file names stay on the server (:mod:`backend.arena` keeps them in the
  ticket row). Nothing that names a system is in a component label, value, ``elem_id`` or
  choice list before the vote.
- Images go out as *fresh* PIL images (:func:`blind_image`): pixels only, so no file name,
  file format, colour mode, PNG text chunk (generated images embed their provenance in one!)
  or EXIF block can leak the system, and every image of a campaign is fitted to the campaign's
  one canvas (:mod:`backend.arena.canvas`), so no native size or aspect ratio survives.
  Gradio re-encodes them all the same way (PNG) and names the cached file after the bytes'
  hash; each render carries a random text chunk (:func:`unlinkable`) so the URL of an image is
  new in every pair, never the one it had in an earlier pair.
- What is *guaranteed*: nothing an annotator is sent before their last vote in a campaign names
  a system. The same picture does come back in their other pairs (other criteria, swapped
  repeats, gold pairs), recognisable by eye whatever its bytes; that tells them nothing because
  no system is ever named for any picture while a pair can still come to them. The systems of
  their votes are shown (reveal switch on) only once they have finished, pressed *Finish*, or
  the campaign is closed, and from then on they get no pair and cast no vote there
  (:mod:`backend.arena.reveals`).
- Campaign names are shown to annotators: admins are told (placeholder) not to put system
  names in them. Imported vote tables (no images) are never offered for judging.
- A pair opens when the Arena tab is selected, when a campaign is picked or with Start;
  the backend returns the annotator's open ticket again, so a reload never reshuffles.
- Time per judgment is measured in the browser (``static/arena.js``): from the moment the
  pair is on screen to the key press, not counting time while the browser tab was hidden.
  The backend also records the server time of the vote itself.
- Every admin handler checks the role on the server (:func:`studio.session.require_admin_ui`):
  the admin sub-tab is only hidden for annotators, its endpoints exist for everyone.
- ``arena_next`` / ``arena_vote`` are JSON endpoints (``gr.api``) for the load benchmark;
  they use the logged-in user of the request, like the page.
- The judging page is :mod:`studio.arena_judge`, the campaign admin page :mod:`studio.arena_admin`;
  this module puts them in their sub-tabs and wires them in that order.
"""

from __future__ import annotations

import gradio as gr

from backend.workspace import Workspace
from studio import arena_admin, arena_judge
from studio.arena_judge import blind_image, unlinkable
from studio.ui_common import parent_tab

__all__ = ["blind_image", "build", "unlinkable"]  # the blinding helpers: where callers found them before


def build(ws: Workspace, blocks: gr.Blocks) -> None:
    """The Arena tab: judging for everyone, campaign management for admins (shown on load)."""
    parent = parent_tab()  # the "Arena" tab of app.py: selecting it loads a pair
    with gr.Tabs(elem_id="arena-tabs"):
        with gr.Tab("Judge", id="arena-judge", elem_id="arena-judge"):
            judge = arena_judge.layout()
        with gr.Tab("Campaigns (admin)", id="arena-admin", elem_id="arena-admin", visible=False) as admin_tab:
            admin = arena_admin.layout()
    arena_judge.wire(ws, blocks, judge, admin_tab, parent)
    arena_admin.wire(ws, blocks, admin, admin_tab, judge.campaign)
