"""Arena tab: blind pairwise judging for annotators, campaign management for admins.

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
"""

from __future__ import annotations

import html
import itertools
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
from gradio.context import get_render_context
from PIL import Image as PILImage
from PIL import ImageOps

from backend import arena as arena_api
from backend.datasets import all_summaries
from backend.models import Role, User
from backend.review import caption_kinds
from backend.users import PermissionDenied
from backend.workspace import Workspace
from studio.session import current_user, require_admin_ui

MAX_SIDE = 1024  # larger images are scaled down before they are sent (judging needs no more)
REVEAL_ROWS = 500  # votes listed in a reveal (the counts cover them all)
FLATTEN_ON = (255, 255, 255)  # transparent pixels are shown on white, whatever the system
CHOICES = ("left", "right", "tie", "both_bad")
SHORTCUTS = (
    "**Keyboard:** <kbd>1</kbd> or <kbd>←</kbd> left better · <kbd>2</kbd> or <kbd>→</kbd> right better · "
    "<kbd>3</kbd> or <kbd>T</kbd> tie · <kbd>4</kbd> or <kbd>B</kbd> both bad · <kbd>S</kbd> skip · "
    "<kbd>Enter</kbd> start. Judge only what the question asks; the sides are random."
)
VOTE_JS = "(...args) => { args[args.length - 1] = (window.recapArena ? window.recapArena.voting() : 0); return args; }"
SHOWN_JS = "() => { if (window.recapArena) { window.recapArena.shown(); } return []; }"
SOURCES = ["Generated datasets", "Folders + prompts CSV", "Caption kinds of a dataset"]
CAMPAIGN_HEADERS = [
    "campaign",
    "kind",
    "status",
    "systems",
    "pairs",
    "gold pairs",
    "criteria",
    "per pair",
    "annotators",
    "judgments",
    "progress",
]
_seq = itertools.count(1)  # data-seq of the progress line: changes with every pair shown (for tests)
DEFAULT_CRITERIA = {
    "t2i": "overall preference\nprompt following",
    "caption": "describes the image better",
}


# --------------------------------------------------------------------------- helpers


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _user(ws: Workspace, request: gr.Request | None) -> User:
    try:
        return current_user(ws, request)
    except PermissionDenied as exc:
        raise gr.Error(f"Not allowed: {exc}.") from None


def blind_image(
    path: Path | str | None, canvas: tuple[int, int] | None = None, max_side: int = MAX_SIDE
) -> PILImage.Image | None:
    """The picture's pixels in a new RGB image: no file name, format, mode, text chunk or EXIF survives.

    With ``canvas`` (a t2i campaign's one display size) the picture is centre-cropped to the
    canvas's aspect ratio and resized to it, so neither the native size nor the aspect ratio of
    the system that made it survives. Without (the one picture of a caption pair, which belongs
    to no system) it is only scaled down to ``max_side``.
    """
    if path is None:
        return None
    with PILImage.open(path) as src:
        src.load()
        upright = ImageOps.exif_transpose(src)
        has_alpha = upright.mode in ("RGBA", "LA", "PA") or "transparency" in upright.info
        if has_alpha:  # one mode for every system: transparency is flattened, not passed on
            rgba = upright.convert("RGBA")
            pixels = PILImage.new("RGB", rgba.size, FLATTEN_ON)
            pixels.paste(rgba, mask=rgba.getchannel("A"))
        else:
            pixels = upright.convert("RGB")
    if canvas is not None:
        pixels = ImageOps.fit(pixels, canvas, PILImage.Resampling.LANCZOS, centering=(0.5, 0.5))
    elif max(pixels.size) > max_side:
        pixels.thumbnail((max_side, max_side), PILImage.Resampling.LANCZOS)
    clean = PILImage.new("RGB", pixels.size)
    clean.paste(pixels)
    return clean


def unlinkable(image: PILImage.Image | None) -> PILImage.Image | None:
    """The image with a random text chunk, so its PNG bytes (and Gradio's URL for them) are new.

    Why: Gradio caches a returned image under the hash of its bytes, so the same picture shown in
    two pairs had one URL, and a browser could link them without looking. The chunk is random per
    render, says nothing, and leaves the pixels exactly as they are.
    """
    if image is not None:
        image.info = {"n": secrets.token_hex(16)}
    return image


def _open_campaigns(ws: Workspace) -> list[str]:
    """Open campaigns to judge, newest first (imported vote tables have no images to show)."""
    return [c.name for c in arena_api.list_campaigns(ws) if c.status == "open" and c.source != "import"]


def _arena_error(exc: Exception) -> gr.Error:
    return gr.Error(str(exc))


# --------------------------------------------------------------------------- pair display


@dataclass
class PairView:
    """What the page shows for one ticket — built on the server, nothing here names a system."""

    token: str
    kind: str
    criterion: str
    prompt: str
    left_image: PILImage.Image | None
    right_image: PILImage.Image | None
    left_text: str | None
    right_text: str | None
    done: int
    total: int
    mine: int


def pair_view(ticket: arena_api.Ticket) -> PairView:
    caption = ticket.kind == "caption"  # both sides describe one picture: it is sent once
    return PairView(
        token=ticket.token,
        kind=ticket.kind,
        criterion=ticket.criterion,
        prompt=ticket.prompt or "",
        left_image=unlinkable(blind_image(ticket.left_image, ticket.canvas)),
        right_image=None if caption else unlinkable(blind_image(ticket.right_image, ticket.canvas)),
        left_text=ticket.left_text,
        right_text=ticket.right_text,
        done=ticket.done,
        total=ticket.total,
        mine=ticket.mine,
    )


def progress_html(done: int, total: int, mine: int = 0, campaign: str = "") -> str:
    """Campaign progress (votes towards its target, all annotators) and this annotator's count."""
    pct = 100.0 * done / total if total else 0.0
    name = f"<b>{_esc(campaign)}</b> · " if campaign else ""
    return (
        f'<div class="arena-progress" data-seq="{next(_seq)}">'
        f'<div class="arena-progress-label">{name}campaign <b>{done} / {total}</b> judgments ({pct:.0f}%)'
        f" · you: <b>{mine}</b></div>"
        f'<div class="arena-bar"><div class="arena-bar-fill" style="width:{pct:.1f}%"></div></div></div>'
    )


def question_html(view: PairView) -> str:
    criterion = view.criterion or "Which is better?"
    if view.kind == "caption":
        lead = "Which caption is better for this image? Criterion:"
        prompt = ""
    else:
        lead = "Which image is better for this prompt? Criterion:"
        prompt = f'<span class="arena-prompt">{_esc(view.prompt)}</span>' if view.prompt else ""
    return (
        f'<div class="arena-question">{lead} <span class="arena-criterion">{_esc(criterion)}</span>'
        f"{prompt}</div>"
    )


def caption_html(side: str, text: str | None) -> str:
    return (
        f'<div class="arena-caption-head">{side} caption</div>'
        f'<div class="arena-caption">{_esc(text or "")}</div>'
    )


REVEAL_WHY = {
    "finished": "You have judged everything this campaign has for you.",
    "ended": "You ended your judging in this campaign.",
    "closed": "This campaign is closed.",
}
CHOICE_WORDS = {"tie": "tie", "both_bad": "both bad"}


def reveal_html(reveal: arena_api.Reveal) -> str:
    """The systems behind the annotator's votes, sent only once no pair can come to them."""
    why = REVEAL_WHY.get(reveal.reason, "")
    if not reveal.votes:
        return (
            f'<div class="arena-reveal" id="arena-reveal-summary">{_esc(why)} You gave no votes here.</div>'
        )
    counts = "".join(
        f"<tr><td>{_esc(name)}</td><td class='num'>{won}</td><td class='num'>{shown}</td></tr>"
        for name, (won, shown) in reveal.preferred_counts().items()
    )
    rows = []
    for n, v in enumerate(reveal.votes[:REVEAL_ROWS], 1):
        verdict = f"<b>{_esc(v.preferred)}</b>" if v.preferred else CHOICE_WORDS.get(v.choice, v.choice)
        tags = " · ".join(t for t, on in (("repeat", v.is_repeat), ("gold", v.is_gold)) if on)
        rows.append(
            f"<tr><td class='num'>{n}</td><td>{_esc(v.prompt)}</td><td>{_esc(v.criterion)}</td>"
            f"<td>{_esc(v.left_system)}</td><td>{_esc(v.right_system)}</td><td>{verdict}</td>"
            f"<td>{tags}</td></tr>"
        )
    more = len(reveal.votes) - REVEAL_ROWS
    tail = f"<div class='ar-note'>… and {more} more votes.</div>" if more > 0 else ""
    return (
        f'<div class="arena-reveal" id="arena-reveal-summary"><div>{_esc(why)} '
        f"The systems you judged ({len(reveal.votes)} votes):</div>"
        "<table class='ar-table'><tr><th>system</th><th class='num'>you preferred it</th>"
        f"<th class='num'>shown to you</th></tr>{counts}</table>"
        "<table class='ar-table'><tr><th>#</th><th>prompt</th><th>criterion</th><th>left</th>"
        f"<th>right</th><th>your choice</th><th></th></tr>{''.join(rows)}</table>{tail}</div>"
    )


def plain_note(text: str, kind: str = "plain") -> str:
    return f'<div class="arena-reveal {kind}">{_esc(text)}</div>'


# Order of the judging outputs (see ``build``): token, question, progress, left image,
# right image, caption image, left caption, right caption, flag row, four flag boxes,
# five buttons, start button.
N_BUTTONS = 5


def show(view: PairView | None, campaign: str = "", empty: str = "") -> tuple[Any, ...]:
    """Values for the judging outputs; ``None`` clears the pair and disables the buttons."""
    if view is None:
        message = empty or "Choose a campaign and press Start."
        return (
            "",
            f'<div class="arena-empty">{_esc(message)}</div>',
            "",
            gr.update(value=None, visible=True),
            gr.update(value=None, visible=True),
            gr.update(value=None, visible=False),
            gr.update(value="", visible=False),
            gr.update(value="", visible=False),
            gr.update(visible=False),
            *(gr.update(value=False) for _ in range(4)),
            *(gr.update(interactive=False) for _ in range(N_BUTTONS)),
            gr.update(visible=True),
        )
    caption = view.kind == "caption"
    # a caption pair shows one image (both items describe the same picture) and two texts
    return (
        view.token,
        question_html(view),
        progress_html(view.done, view.total, view.mine, campaign),
        gr.update(value=None if caption else view.left_image, visible=not caption),
        gr.update(value=None if caption else view.right_image, visible=not caption),
        gr.update(value=view.left_image if caption else None, visible=caption),
        gr.update(value=caption_html("Left", view.left_text) if caption else "", visible=caption),
        gr.update(value=caption_html("Right", view.right_text) if caption else "", visible=caption),
        gr.update(visible=caption),
        *(gr.update(value=False) for _ in range(4)),
        *(gr.update(interactive=True) for _ in range(N_BUTTONS)),
        gr.update(visible=False),
    )


def _flags(left_h: bool, left_o: bool, right_h: bool, right_o: bool) -> list[str] | None:
    """Caption flags ticked for this vote (e.g. ``["left_hallucination"]``), or ``None``."""
    ticked = [
        name
        for name, on in (
            ("left_hallucination", left_h),
            ("left_omission", left_o),
            ("right_hallucination", right_h),
            ("right_omission", right_o),
        )
        if on
    ]
    return ticked or None


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):  # OverflowError: "1e400", Infinity
        return default


# --------------------------------------------------------------------------- admin display


def campaigns_frame(ws: Workspace) -> pd.DataFrame:
    rows = [
        [
            c.name,
            c.kind,
            c.status,
            c.systems,
            c.pairs,
            c.gold_pairs,
            ", ".join(c.criteria),
            c.target_per_pair,
            c.annotators,
            c.judgments,
            f"{c.done} / {c.total} ({100.0 * c.done / c.total:.0f}%)" if c.total else "—",
        ]
        for c in arena_api.list_campaigns(ws)
    ]
    return pd.DataFrame(rows, columns=CAMPAIGN_HEADERS)


def _criteria(text: str, kind: str) -> list[str]:
    items = [line.strip() for line in (text or "").replace(";", "\n").splitlines() if line.strip()]
    return items or DEFAULT_CRITERIA[kind].splitlines()


def _share(value: Any, label: str) -> float:
    try:
        share = float(value)
    except (TypeError, ValueError):
        raise gr.Error(f"{label} must be a number between 0 and 1.") from None
    if not 0.0 <= share < 1.0:
        raise gr.Error(f"{label} must be between 0 and 1 (it is {share}); e.g. 0.1 for 10%.")
    return share


# --------------------------------------------------------------------------- build


def _pair_side(side: str) -> tuple[gr.Image, gr.HTML]:
    """One side of a pair: its image (T2I campaigns) or its caption (caption campaigns)."""
    with gr.Column(min_width=320):
        image = gr.Image(
            label=side.title(),
            type="pil",
            format="png",
            interactive=False,
            height=512,
            elem_id=f"arena-{side}-image",
            buttons=["fullscreen"],
        )
        text = gr.HTML(visible=False, elem_id=f"arena-{side}-text")
    return image, text


def build(ws: Workspace, blocks: gr.Blocks) -> None:
    parent = get_render_context()  # the "Arena" tab of app.py: selecting it loads a pair

    with gr.Tabs(elem_id="arena-tabs"):
        # ---------------------------------------------------------------- judging
        with gr.Tab("Judge", id="arena-judge", elem_id="arena-judge"):
            with gr.Row(elem_id="arena-toolbar", equal_height=True):
                campaign = gr.Dropdown(
                    choices=[],
                    label="Campaign",
                    elem_id="arena-campaign",
                    scale=2,
                    interactive=True,
                    allow_custom_value=True,
                )
                progress = gr.HTML(elem_id="arena-progress")
                btn_start = gr.Button("Start", variant="primary", elem_id="arena-btn-start", scale=0)
            question = gr.HTML(elem_id="arena-question")
            # the opaque ticket token: the only handle on the pair the browser ever holds
            token = gr.Textbox(visible=False, elem_id="arena-token")
            elapsed = gr.Number(value=0, visible=False, precision=0)
            caption_image = gr.Image(
                label="Image",
                type="pil",
                format="png",
                interactive=False,
                visible=False,
                height=420,
                elem_id="arena-caption-image",
                buttons=["fullscreen"],
            )
            with gr.Row(elem_id="arena-pair", equal_height=True):
                left_image, left_text = _pair_side("left")
                right_image, right_text = _pair_side("right")
            with gr.Row(visible=False, elem_id="arena-flags") as flag_row:
                left_hall = gr.Checkbox(label="Left: hallucination", elem_id="arena-left-hallucination")
                left_omit = gr.Checkbox(label="Left: omission", elem_id="arena-left-omission")
                right_hall = gr.Checkbox(label="Right: hallucination", elem_id="arena-right-hallucination")
                right_omit = gr.Checkbox(label="Right: omission", elem_id="arena-right-omission")
            with gr.Row(elem_id="arena-buttons"):
                btn_left = gr.Button("◀ Left better", interactive=False, elem_id="arena-btn-left")
                btn_tie = gr.Button("Tie", interactive=False, elem_id="arena-btn-tie")
                btn_bad = gr.Button("Both bad", interactive=False, elem_id="arena-btn-bad")
                btn_right = gr.Button("Right better ▶", interactive=False, elem_id="arena-btn-right")
                btn_skip = gr.Button("Skip", interactive=False, variant="secondary", elem_id="arena-btn-skip")
            gr.Markdown(SHORTCUTS, elem_id="arena-shortcuts")
            reveal = gr.HTML(elem_id="arena-reveal")
            with gr.Row(elem_id="arena-reveal-row", equal_height=True):
                reveal_on = gr.Checkbox(
                    value=True,
                    label=(
                        "When I have finished, show which systems I preferred "
                        "(never earlier: the same images come back in my later pairs)"
                    ),
                    elem_id="arena-reveal-toggle",
                    scale=3,
                )
                btn_finish = gr.Button(
                    "Finish: end my judging here and show the systems",
                    variant="secondary",
                    size="sm",
                    elem_id="arena-btn-finish",
                    scale=1,
                )

        # ---------------------------------------------------------------- admin
        with gr.Tab("Campaigns (admin)", id="arena-admin", elem_id="arena-admin", visible=False) as admin_tab:
            campaigns_table = gr.Dataframe(
                headers=CAMPAIGN_HEADERS,
                interactive=False,
                label="Campaigns",
                elem_id="arena-campaigns",
            )
            with gr.Row(equal_height=True):
                close_name = gr.Dropdown(
                    choices=[],
                    label="Campaign",
                    allow_custom_value=True,
                    elem_id="arena-close-name",
                    scale=2,
                )
                btn_close = gr.Button("Close campaign", variant="stop", elem_id="arena-btn-close", scale=0)
                btn_refresh = gr.Button("Refresh", elem_id="arena-btn-refresh", scale=0)
            gr.Markdown(
                "Closing is final: it unblinds the campaign (its datasets and results open to "
                "annotators), so it takes no more votes, not even on pairs already on screen.",
                elem_classes=["arena-help"],
            )
            close_result = gr.Markdown(elem_id="arena-close-result")
            gr.Markdown("### New campaign")
            source = gr.Radio(SOURCES, value=SOURCES[0], label="Source", elem_id="arena-new-source")
            with gr.Group(visible=True) as gen_group:
                gen_datasets = gr.Dropdown(
                    choices=[],
                    multiselect=True,
                    label="Generated datasets (one per generation run)",
                    allow_custom_value=True,
                    elem_id="arena-new-datasets",
                )
            with gr.Group(visible=False) as folder_group:
                folder_root = gr.Textbox(
                    label="Images folder on the server (root/<system>/<file>)", elem_id="arena-new-root"
                )
                folder_csv = gr.Textbox(
                    label="Prompts CSV on the server (system,file,prompt[,category][,seed][,caption_condition])",
                    elem_id="arena-new-csv",
                )
            with gr.Group(visible=False) as caption_group, gr.Row():
                cap_dataset = gr.Dropdown(
                    choices=[], label="Dataset", allow_custom_value=True, elem_id="arena-new-cap-dataset"
                )
                cap_kinds = gr.Dropdown(
                    choices=[],
                    multiselect=True,
                    label="Caption kinds to compare (≥ 2)",
                    allow_custom_value=True,
                    elem_id="arena-new-cap-kinds",
                )
                cap_max = gr.Number(
                    value=100, precision=0, minimum=1, label="Max images", elem_id="arena-new-cap-max"
                )
            with gr.Row():
                new_name = gr.Textbox(
                    label="Campaign name",
                    placeholder="e.g. t2i-study-1 (annotators see it: do not name systems in it)",
                    elem_id="arena-new-name",
                )
                new_criteria = gr.Textbox(
                    label="Criteria (one per line; empty = default)",
                    lines=2,
                    placeholder=DEFAULT_CRITERIA["t2i"],
                    elem_id="arena-new-criteria",
                )
            with gr.Row():
                new_target = gr.Number(
                    value=3, precision=0, minimum=1, label="Judgments per pair", elem_id="arena-new-target"
                )
                new_repeat = gr.Number(
                    value=0.1,
                    minimum=0,
                    maximum=0.9,
                    step=0.05,
                    label="Repeat share (swapped sides)",
                    elem_id="arena-new-repeat",
                )
                new_gold = gr.Number(
                    value=0.0, minimum=0, maximum=0.9, step=0.05, label="Gold share", elem_id="arena-new-gold"
                )
            btn_create = gr.Button("Create campaign", variant="primary", elem_id="arena-btn-create")
            create_result = gr.Markdown(elem_id="arena-create-result")

    flag_boxes = [left_hall, left_omit, right_hall, right_omit]
    vote_buttons = [btn_left, btn_right, btn_tie, btn_bad, btn_skip]
    pair_outputs = [
        token,
        question,
        progress,
        left_image,
        right_image,
        caption_image,
        left_text,
        right_text,
        flag_row,
        *flag_boxes,
        *vote_buttons,
        btn_start,
    ]

    # ------------------------------------------------------------------ judging handlers

    def _next(user: User, name: str) -> tuple[tuple[Any, ...], bool]:
        """The judging outputs for the annotator's next pair, and whether there is one."""
        if not name:
            return show(None, empty="No open campaign yet — an admin creates one."), False
        try:
            ticket = arena_api.next_ticket(ws, name, user.id)
        except (ValueError, LookupError) as exc:
            raise _arena_error(exc) from None
        if ticket is None:
            return show(None, name, f"Nothing left for you in “{name}”. Thank you!"), False
        return show(pair_view(ticket), name), True

    def _reveal(user: User, name: str, finish: bool = False) -> arena_api.Reveal | None:
        try:
            return arena_api.reveal_votes(ws, name, user.id, finish=finish)
        except (ValueError, LookupError) as exc:
            raise _arena_error(exc) from None

    def _next_with_note(user: User, name: str, show_reveal: bool, note: str) -> tuple[Any, ...]:
        """The next pair; when none is left, the systems of the annotator's votes (switch on)."""
        values, has_pair = _next(user, name)
        if not has_pair and name and show_reveal:
            told = _reveal(user, name)
            if told is not None:
                note += reveal_html(told)
        return (*values, note)

    def on_load(request: gr.Request):
        try:
            user = current_user(ws, request)
        except PermissionDenied:
            return gr.update(choices=[], value=None), gr.update(visible=False)
        names = _open_campaigns(ws)
        return (
            gr.update(choices=names, value=names[0] if names else None),
            gr.update(visible=user.role == Role.admin.value),
        )

    blocks.load(on_load, None, [campaign, admin_tab], api_visibility="private")

    def open_pair(name: str | None, show_reveal: bool, request: gr.Request):
        user = _user(ws, request)
        if not name:  # the tab was opened before the page load filled the campaign list
            names = _open_campaigns(ws)
            name = names[0] if names else ""
        return _next_with_note(user, name, show_reveal, "")

    start_outputs = [*pair_outputs, reveal]
    opened = [btn_start.click, campaign.input]
    if isinstance(parent, gr.Tab):
        opened.append(parent.select)  # a reload returns the same open ticket: nothing reshuffles
    gr.on(
        opened,
        open_pair,
        [campaign, reveal_on],
        start_outputs,
        api_visibility="private",
        show_progress="minimal",
    ).then(None, js=SHOWN_JS)

    def finish(name: str | None, request: gr.Request):
        """End the annotator's judging in the campaign and show the systems of their votes."""
        user = _user(ws, request)
        if not name:
            gr.Warning("Choose a campaign first.")
            return tuple(gr.skip() for _ in start_outputs)
        told = _reveal(user, name, finish=True)
        values = show(None, name, f"You ended your judging in “{name}”. Thank you!")
        return (*values, reveal_html(told) if told is not None else "")

    btn_finish.click(finish, campaign, start_outputs, api_visibility="private", trigger_mode="once")

    def toggle_reveal(on: bool, name: str | None, request: gr.Request) -> str:
        """Switched on: the systems, if this annotator has finished; else when they will be shown."""
        user = _user(ws, request)
        if not on or not name:
            return ""
        told = _reveal(user, name)
        if told is None:
            return plain_note(
                "The systems are shown when you have finished this campaign (or pressed Finish), "
                "never while a pair is left for you."
            )
        return reveal_html(told)

    reveal_on.input(toggle_reveal, [reveal_on, campaign], reveal, api_visibility="private")

    vote_inputs = [campaign, token, reveal_on, *flag_boxes, elapsed]

    def make_vote(choice: str) -> Callable[..., tuple[Any, ...]]:
        def vote(
            name: str | None,
            tok: str | None,
            show_reveal: bool,
            left_h: bool,
            left_o: bool,
            right_h: bool,
            right_o: bool,
            ms: Any,
            request: gr.Request,
        ) -> tuple[Any, ...]:
            user = _user(ws, request)
            if not tok:
                gr.Warning("No pair is open: press Start.")
                return tuple(gr.skip() for _ in start_outputs)
            try:
                if choice == "skip":
                    arena_api.skip_ticket(ws, tok, user.id)
                    note = plain_note("Skipped.")
                else:
                    receipt = arena_api.submit_vote(
                        ws,
                        tok,
                        user.id,
                        choice,
                        max(0, _int(ms)),
                        flags=_flags(left_h, left_o, right_h, right_o),
                    )
                    note = plain_note("Saved (a repeated click)." if receipt.duplicate else "Saved.")
            except (ValueError, LookupError, PermissionError) as exc:
                # e.g. the campaign was closed meanwhile: say so and move on to what is left
                note = plain_note(f"Not saved: {exc}", "warn")
            return _next_with_note(user, name or "", show_reveal, note)

        vote.__name__ = f"arena_vote_{choice}"
        return vote

    for button, choice in zip(vote_buttons, (*CHOICES, "skip"), strict=True):
        button.click(
            make_vote(choice),
            vote_inputs,
            start_outputs,
            js=VOTE_JS,
            api_visibility="private",
            show_progress="minimal",
            trigger_mode="once",
        ).then(None, js=SHOWN_JS)

    # ------------------------------------------------------------------ JSON API (load benchmark)

    def arena_next(campaign: str, request: gr.Request) -> dict:
        """The next pair for the logged-in user: {token, prompt, criterion, done, total}, or {}."""
        user = _user(ws, request)
        try:
            ticket = arena_api.next_ticket(ws, campaign, user.id)
        except (ValueError, LookupError) as exc:
            raise _arena_error(exc) from None
        if ticket is None:
            return {}
        return {
            "token": ticket.token,
            "prompt": ticket.prompt or "",
            "criterion": ticket.criterion,
            "done": ticket.done,
            "total": ticket.total,
        }

    def arena_vote(token: str, choice: str, elapsed_ms: int, request: gr.Request) -> dict:
        """Vote on a ticket: choice left|right|tie|both_bad; answers {ok, duplicate, more} (no system:
        the same images come back in the annotator's later pairs)."""
        user = _user(ws, request)
        if choice not in CHOICES:
            raise gr.Error(f"choice must be one of {', '.join(CHOICES)} (got {choice!r}).")
        try:
            receipt = arena_api.submit_vote(ws, token, user.id, choice, max(0, _int(elapsed_ms)))
        except (ValueError, LookupError, PermissionError) as exc:
            raise _arena_error(exc) from None
        return {"ok": True, "duplicate": receipt.duplicate, "more": receipt.next_available}

    gr.api(arena_next, api_name="arena_next")
    gr.api(arena_vote, api_name="arena_vote")

    # ------------------------------------------------------------------ admin handlers

    def _admin_values() -> tuple[Any, ...]:
        names = [c.name for c in arena_api.list_campaigns(ws)]
        open_names = _open_campaigns(ws)
        datasets = [d.name for d in all_summaries(ws)]
        return (
            campaigns_frame(ws),
            gr.update(choices=names, value=open_names[0] if open_names else (names[0] if names else None)),
            gr.update(choices=datasets),
            gr.update(choices=datasets),
        )

    admin_outputs = [campaigns_table, close_name, gen_datasets, cap_dataset]

    def admin_load(request: gr.Request):
        try:
            user = current_user(ws, request)
        except PermissionDenied:
            user = None
        if user is None or user.role != Role.admin.value:
            return tuple(gr.skip() for _ in admin_outputs)
        return _admin_values()

    blocks.load(admin_load, None, admin_outputs, api_visibility="private")

    def admin_refresh(request: gr.Request):
        require_admin_ui(ws, request)
        return _admin_values()

    btn_refresh.click(admin_refresh, None, admin_outputs, api_visibility="private")
    admin_tab.select(admin_refresh, None, admin_outputs, api_visibility="private")

    def pick_source(choice: str, request: gr.Request):
        require_admin_ui(ws, request)
        kind = "caption" if choice == SOURCES[2] else "t2i"
        return (
            gr.update(visible=choice == SOURCES[0]),
            gr.update(visible=choice == SOURCES[1]),
            gr.update(visible=choice == SOURCES[2]),
            gr.update(placeholder=DEFAULT_CRITERIA[kind]),
        )

    source.input(
        pick_source,
        source,
        [gen_group, folder_group, caption_group, new_criteria],
        api_visibility="private",
    )

    def pick_caption_dataset(name: str | None, request: gr.Request):
        require_admin_ui(ws, request)
        if not name:
            return gr.update(choices=[], value=[])
        try:
            kinds = caption_kinds(ws, name)
        except (ValueError, LookupError) as exc:  # DatasetNotFound: say which
            raise gr.Error(f"Dataset {name!r}: {exc}") from None
        return gr.update(choices=kinds, value=[])

    cap_dataset.input(pick_caption_dataset, cap_dataset, cap_kinds, api_visibility="private")

    def create_campaign(
        src: str,
        name: str,
        criteria_text: str,
        target: Any,
        repeat: Any,
        gold: Any,
        datasets: list[str] | None,
        root: str,
        prompts_csv: str,
        dataset: str | None,
        kinds: list[str] | None,
        max_images: Any,
        request: gr.Request,
    ):
        """Create an arena campaign (admins only)."""
        user = require_admin_ui(ws, request)
        name = (name or "").strip()
        if not name:
            raise gr.Error("Give the campaign a name.")
        target_n = _int(target, 0)
        if target_n < 1:
            raise gr.Error("Judgments per pair must be at least 1.")
        common = {
            "target_per_pair": target_n,
            "repeat_share": _share(repeat, "Repeat share"),
            "gold_share": _share(gold, "Gold share"),
            "created_by": user.id,
        }
        try:
            if src == SOURCES[2]:
                if not dataset:
                    raise gr.Error("Choose the dataset whose captions are compared.")
                if not kinds or len(kinds) < 2:
                    raise gr.Error("Choose at least two caption kinds to compare.")
                made = arena_api.create_caption_campaign(
                    ws,
                    name,
                    dataset,
                    list(kinds),
                    criteria=_criteria(criteria_text, "caption"),
                    max_images=max(1, _int(max_images, 100)),
                    **common,
                )
            elif src == SOURCES[1]:
                if not (root or "").strip() or not (prompts_csv or "").strip():
                    raise gr.Error("Give both the images folder and the prompts CSV (paths on the server).")
                made = arena_api.create_campaign_from_folders(
                    ws,
                    name,
                    Path(root.strip()),
                    Path(prompts_csv.strip()),
                    _criteria(criteria_text, "t2i"),
                    **common,
                )
            else:
                if not datasets:
                    raise gr.Error("Choose at least one generated dataset.")
                made = arena_api.create_campaign_from_generated(
                    ws, name, list(datasets), _criteria(criteria_text, "t2i"), **common
                )
        except gr.Error:
            raise
        except (ValueError, LookupError, OSError) as exc:
            raise gr.Error(f"Campaign not created: {exc}") from None
        message = f"Created **{_esc(made.name)}**."
        return (message, *_admin_values(), gr.update(choices=_open_campaigns(ws)))

    btn_create.click(
        create_campaign,
        [
            source,
            new_name,
            new_criteria,
            new_target,
            new_repeat,
            new_gold,
            gen_datasets,
            folder_root,
            folder_csv,
            cap_dataset,
            cap_kinds,
            cap_max,
        ],
        [create_result, *admin_outputs, campaign],
        api_name="arena_create_campaign",
    )

    def close(name: str | None, request: gr.Request) -> tuple[Any, ...]:
        """Close an arena campaign for good (admins only): no new pairs, no more votes."""
        require_admin_ui(ws, request)
        if not name:
            raise gr.Error("Choose the campaign first.")
        try:
            arena_api.close_campaign(ws, name)
        except (ValueError, LookupError) as exc:
            raise gr.Error(str(exc)) from None
        return (f"Closed **{_esc(name)}**.", *_admin_values(), gr.update(choices=_open_campaigns(ws)))

    status_outputs = [close_result, *admin_outputs, campaign]
    btn_close.click(close, close_name, status_outputs, api_name="arena_close_campaign")
