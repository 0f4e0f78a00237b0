"""The judging page of the Arena tab: one blind pair at a time, the vote buttons, caption flags,
and — once no pair can come to the annotator — the systems behind their votes.

Verdict campaigns use the same page: one image (on the campaign's canvas, under a fresh URL, as
every pair) with its prompt, *Faithful* / *Not faithful* (keys Y / N) and the prompt's required
elements as "missing" ticks (keys 1–9); the same tickets, reveal rules and closing apply.

Blindness is the point of every choice here; the design notes are in :mod:`studio.tab_arena`.
``arena_next`` / ``arena_vote`` are JSON endpoints (``gr.api``) for the load benchmark.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image as PILImage
from PIL import ImageOps

from backend import arena as arena_api
from backend.models import Role, User
from backend.users import PermissionDenied
from backend.workspace import Workspace
from studio.session import current_user
from studio.ui_common import esc, int_or, no_change, user_or_error

MAX_SIDE = 1024  # larger images are scaled down before they are sent (judging needs no more)
REVEAL_ROWS = 500  # votes listed in a reveal (the counts cover them all)
FLATTEN_ON = (255, 255, 255)  # transparent pixels are shown on white, whatever the system
CHOICES = ("left", "right", "tie", "both_bad")
VERDICTS = ("yes", "no")
SHORTCUTS = (
    "**Keyboard:** <kbd>1</kbd> or <kbd>←</kbd> left better · <kbd>2</kbd> or <kbd>→</kbd> right better · "
    "<kbd>3</kbd> or <kbd>T</kbd> tie · <kbd>4</kbd> or <kbd>B</kbd> both bad · <kbd>S</kbd> skip · "
    "<kbd>Enter</kbd> start. Judge only what the question asks; the sides are random.  \n"
    "**Verdicts** (one image): <kbd>Y</kbd> faithful · <kbd>N</kbd> not faithful · <kbd>1</kbd>–<kbd>9</kbd> "
    "tick a missing element · <kbd>S</kbd> skip."
)
VOTE_JS = "(...args) => { args[args.length - 1] = (window.recapArena ? window.recapArena.voting() : 0); return args; }"
SHOWN_JS = "() => { if (window.recapArena) { window.recapArena.shown(); } return []; }"
_seq = itertools.count(1)  # data-seq of the progress line: changes with every pair shown (for tests)


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


def open_campaigns(ws: Workspace) -> list[str]:
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
    elements: tuple[str, ...] = ()  # verdict campaigns: the prompt's required elements


def pair_view(ticket: arena_api.Ticket) -> PairView:
    # a caption pair's two texts describe one picture, a verdict judges one: it is sent once
    caption = ticket.kind in ("caption", "verdict")
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
        elements=tuple(ticket.elements),
    )


def progress_html(done: int, total: int, mine: int = 0, campaign: str = "") -> str:
    """Campaign progress (votes towards its target, all annotators) and this annotator's count."""
    pct = 100.0 * done / total if total else 0.0
    name = f"<b>{esc(campaign)}</b> · " if campaign else ""
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
    elif view.kind == "verdict":
        lead = "Is this image faithful to its prompt?"
        prompt = f'<span class="arena-prompt">{esc(view.prompt)}</span>' if view.prompt else ""
    else:
        lead = "Which image is better for this prompt? Criterion:"
        prompt = f'<span class="arena-prompt">{esc(view.prompt)}</span>' if view.prompt else ""
    return (
        f'<div class="arena-question">{lead} <span class="arena-criterion">{esc(criterion)}</span>'
        f"{prompt}</div>"
    )


def caption_html(side: str, text: str | None) -> str:
    return (
        f'<div class="arena-caption-head">{side} caption</div>'
        f'<div class="arena-caption">{esc(text or "")}</div>'
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
        return f'<div class="arena-reveal" id="arena-reveal-summary">{esc(why)} You gave no votes here.</div>'
    if reveal.kind == "verdict":
        return _verdict_reveal_html(reveal, why)
    counts = "".join(
        f"<tr><td>{esc(name)}</td><td class='num'>{won}</td><td class='num'>{shown}</td></tr>"
        for name, (won, shown) in reveal.preferred_counts().items()
    )
    rows = []
    for n, v in enumerate(reveal.votes[:REVEAL_ROWS], 1):
        verdict = f"<b>{esc(v.preferred)}</b>" if v.preferred else CHOICE_WORDS.get(v.choice, v.choice)
        tags = " · ".join(t for t, on in (("repeat", v.is_repeat), ("gold", v.is_gold)) if on)
        rows.append(
            f"<tr><td class='num'>{n}</td><td>{esc(v.prompt)}</td><td>{esc(v.criterion)}</td>"
            f"<td>{esc(v.left_system)}</td><td>{esc(v.right_system)}</td><td>{verdict}</td>"
            f"<td>{tags}</td></tr>"
        )
    more = len(reveal.votes) - REVEAL_ROWS
    tail = f"<div class='ar-note'>… and {more} more votes.</div>" if more > 0 else ""
    return (
        f'<div class="arena-reveal" id="arena-reveal-summary"><div>{esc(why)} '
        f"The systems you judged ({len(reveal.votes)} votes):</div>"
        "<table class='ar-table'><tr><th>system</th><th class='num'>you preferred it</th>"
        f"<th class='num'>shown to you</th></tr>{counts}</table>"
        "<table class='ar-table'><tr><th>#</th><th>prompt</th><th>criterion</th><th>left</th>"
        f"<th>right</th><th>your choice</th><th></th></tr>{''.join(rows)}</table>{tail}</div>"
    )


def _verdict_reveal_html(reveal: arena_api.Reveal, why: str) -> str:
    """A verdict campaign's reveal: per system, how often the annotator judged its images faithful."""
    counts = "".join(
        f"<tr><td>{esc(name)}</td><td class='num'>{yes}</td><td class='num'>{shown}</td></tr>"
        for name, (yes, shown) in reveal.verdict_counts().items()
    )
    rows = []
    for n, v in enumerate(reveal.votes[:REVEAL_ROWS], 1):
        verdict = "faithful" if v.choice == "yes" else "not faithful"
        rows.append(
            f"<tr><td class='num'>{n}</td><td>{esc(v.prompt)}</td><td>{esc(v.left_system)}</td>"
            f"<td>{verdict}</td><td>{esc(', '.join(v.missing))}</td><td>{'repeat' if v.is_repeat else ''}</td></tr>"
        )
    more = len(reveal.votes) - REVEAL_ROWS
    tail = f"<div class='ar-note'>… and {more} more verdicts.</div>" if more > 0 else ""
    return (
        f'<div class="arena-reveal" id="arena-reveal-summary"><div>{esc(why)} '
        f"The systems you judged ({len(reveal.votes)} verdicts):</div>"
        "<table class='ar-table'><tr><th>system</th><th class='num'>you judged it faithful</th>"
        f"<th class='num'>shown to you</th></tr>{counts}</table>"
        "<table class='ar-table'><tr><th>#</th><th>prompt</th><th>system</th><th>your verdict</th>"
        f"<th>missing</th><th></th></tr>{''.join(rows)}</table>{tail}</div>"
    )


def plain_note(text: str, kind: str = "plain") -> str:
    return f'<div class="arena-reveal {kind}">{esc(text)}</div>'


# Order of the judging outputs (see ``JudgePage.pair_outputs``): token, question, progress, left
# image, right image, caption image, left caption, right caption, flag row, four flag boxes, five
# buttons, start button, then the verdict controls: missing-element ticks, yes and no buttons.
N_BUTTONS = 5


def show(view: PairView | None, campaign: str = "", empty: str = "") -> tuple[Any, ...]:
    """Values for the judging outputs; ``None`` clears the pair and disables the buttons."""
    if view is None:
        message = empty or "Choose a campaign and press Start."
        return (
            "",
            f'<div class="arena-empty">{esc(message)}</div>',
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
            gr.update(choices=[], value=[], visible=False),
            *(gr.update(interactive=False) for _ in VERDICTS),
        )
    caption = view.kind == "caption"
    verdict = view.kind == "verdict"
    single = caption or verdict
    # a caption pair shows one image (both items describe the same picture) and two texts; a
    # verdict shows one image, the ticks of its prompt's elements and the yes/no buttons
    return (
        view.token,
        question_html(view),
        progress_html(view.done, view.total, view.mine, campaign),
        gr.update(value=None if single else view.left_image, visible=not single),
        gr.update(value=None if single else view.right_image, visible=not single),
        gr.update(value=view.left_image if single else None, visible=single),
        gr.update(value=caption_html("Left", view.left_text) if caption else "", visible=caption),
        gr.update(value=caption_html("Right", view.right_text) if caption else "", visible=caption),
        gr.update(visible=caption),
        *(gr.update(value=False) for _ in range(4)),
        *(gr.update(interactive=True, visible=not verdict) for _ in range(N_BUTTONS - 1)),
        gr.update(interactive=True),  # skip
        gr.update(visible=False),
        gr.update(
            choices=[(f"{k}. {e}" if k <= 9 else e, e) for k, e in enumerate(view.elements, 1)],
            value=[],
            visible=verdict and bool(view.elements),
        ),
        *(gr.update(interactive=True, visible=verdict) for _ in VERDICTS),
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


@dataclass
class JudgePage:
    """The judging page's components (made by :func:`layout`, wired by :func:`wire`)."""

    campaign: gr.Dropdown
    progress: gr.HTML
    btn_start: gr.Button
    question: gr.HTML
    token: gr.Textbox
    elapsed: gr.Number
    caption_image: gr.Image
    left_image: gr.Image
    left_text: gr.HTML
    right_image: gr.Image
    right_text: gr.HTML
    flag_row: gr.Row
    left_hall: gr.Checkbox
    left_omit: gr.Checkbox
    right_hall: gr.Checkbox
    right_omit: gr.Checkbox
    btn_left: gr.Button
    btn_tie: gr.Button
    btn_bad: gr.Button
    btn_right: gr.Button
    btn_skip: gr.Button
    reveal: gr.HTML
    reveal_on: gr.Checkbox
    btn_finish: gr.Button
    missing: gr.CheckboxGroup  # verdicts: the prompt's required elements the image lacks
    btn_yes: gr.Button
    btn_no: gr.Button

    @property
    def flag_boxes(self) -> list[gr.Checkbox]:
        return [self.left_hall, self.left_omit, self.right_hall, self.right_omit]

    @property
    def vote_buttons(self) -> list[gr.Button]:
        """In the order of :data:`CHOICES`, then skip."""
        return [self.btn_left, self.btn_right, self.btn_tie, self.btn_bad, self.btn_skip]

    @property
    def verdict_buttons(self) -> list[gr.Button]:
        """In the order of :data:`VERDICTS`."""
        return [self.btn_yes, self.btn_no]

    @property
    def pair_outputs(self) -> list[Any]:
        """The components :func:`show` fills, in its order."""
        return [
            self.token,
            self.question,
            self.progress,
            self.left_image,
            self.right_image,
            self.caption_image,
            self.left_text,
            self.right_text,
            self.flag_row,
            *self.flag_boxes,
            *self.vote_buttons,
            self.btn_start,
            self.missing,
            *self.verdict_buttons,
        ]


def layout() -> JudgePage:
    """The judging page, inside the current tab."""
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
    missing = gr.CheckboxGroup(
        choices=[],
        label="Missing from the image (tick what the prompt asks for and the image lacks)",
        visible=False,
        elem_id="arena-missing",
    )
    with gr.Row(elem_id="arena-buttons"):
        btn_yes = gr.Button(
            "✓ Faithful (Y)", interactive=False, visible=False, variant="primary", elem_id="arena-btn-yes"
        )
        btn_no = gr.Button("✗ Not faithful (N)", interactive=False, visible=False, elem_id="arena-btn-no")
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

    return JudgePage(
        campaign=campaign,
        progress=progress,
        btn_start=btn_start,
        question=question,
        token=token,
        elapsed=elapsed,
        caption_image=caption_image,
        left_image=left_image,
        left_text=left_text,
        right_image=right_image,
        right_text=right_text,
        flag_row=flag_row,
        left_hall=left_hall,
        left_omit=left_omit,
        right_hall=right_hall,
        right_omit=right_omit,
        btn_left=btn_left,
        btn_tie=btn_tie,
        btn_bad=btn_bad,
        btn_right=btn_right,
        btn_skip=btn_skip,
        reveal=reveal,
        reveal_on=reveal_on,
        btn_finish=btn_finish,
        missing=missing,
        btn_yes=btn_yes,
        btn_no=btn_no,
    )


# --------------------------------------------------------------------------- handlers


def wire(ws: Workspace, blocks: gr.Blocks, page: JudgePage, admin_tab: gr.Tab, parent: gr.Tab | None) -> None:
    """The judging events (the page load also shows ``admin_tab`` to admins; selecting ``parent``,
    the Arena tab, opens a pair) and the JSON API."""
    flag_boxes = page.flag_boxes
    vote_buttons = page.vote_buttons
    pair_outputs = page.pair_outputs

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
        names = open_campaigns(ws)
        return (
            gr.update(choices=names, value=names[0] if names else None),
            gr.update(visible=user.role == Role.admin.value),
        )

    blocks.load(on_load, None, [page.campaign, admin_tab], api_visibility="private")

    def open_pair(name: str | None, show_reveal: bool, request: gr.Request):
        user = user_or_error(ws, request)
        if not name:  # the tab was opened before the page load filled the campaign list
            names = open_campaigns(ws)
            name = names[0] if names else ""
        return _next_with_note(user, name, show_reveal, "")

    start_outputs = [*pair_outputs, page.reveal]
    opened = [page.btn_start.click, page.campaign.input]
    if parent is not None:
        opened.append(parent.select)  # a reload returns the same open ticket: nothing reshuffles
    gr.on(
        opened,
        open_pair,
        [page.campaign, page.reveal_on],
        start_outputs,
        api_visibility="private",
        show_progress="minimal",
    ).then(None, js=SHOWN_JS)

    def finish(name: str | None, request: gr.Request):
        """End the annotator's judging in the campaign and show the systems of their votes."""
        user = user_or_error(ws, request)
        if not name:
            gr.Warning("Choose a campaign first.")
            return no_change(len(start_outputs))
        told = _reveal(user, name, finish=True)
        values = show(None, name, f"You ended your judging in “{name}”. Thank you!")
        return (*values, reveal_html(told) if told is not None else "")

    page.btn_finish.click(finish, page.campaign, start_outputs, api_visibility="private", trigger_mode="once")

    def toggle_reveal(on: bool, name: str | None, request: gr.Request) -> str:
        """Switched on: the systems, if this annotator has finished; else when they will be shown."""
        user = user_or_error(ws, request)
        if not on or not name:
            return ""
        told = _reveal(user, name)
        if told is None:
            return plain_note(
                "The systems are shown when you have finished this campaign (or pressed Finish), "
                "never while a pair is left for you."
            )
        return reveal_html(told)

    page.reveal_on.input(
        toggle_reveal, [page.reveal_on, page.campaign], page.reveal, api_visibility="private"
    )

    # the elapsed time must stay last: VOTE_JS puts the browser's measurement there
    vote_inputs = [page.campaign, page.token, page.reveal_on, *flag_boxes, page.missing, page.elapsed]

    def make_vote(choice: str) -> Callable[..., tuple[Any, ...]]:
        def vote(
            name: str | None,
            tok: str | None,
            show_reveal: bool,
            left_h: bool,
            left_o: bool,
            right_h: bool,
            right_o: bool,
            ticked: list[str] | None,
            ms: Any,
            request: gr.Request,
        ) -> tuple[Any, ...]:
            user = user_or_error(ws, request)
            if not tok:
                gr.Warning("No pair is open: press Start.")
                return no_change(len(start_outputs))
            try:
                if choice == "skip":
                    arena_api.skip_ticket(ws, tok, user.id)
                    note = plain_note("Skipped.")
                elif choice in VERDICTS:
                    receipt = arena_api.submit_vote(
                        ws, tok, user.id, choice, max(0, int_or(ms)), missing=list(ticked or [])
                    )
                    note = plain_note("Saved (a repeated click)." if receipt.duplicate else "Saved.")
                else:
                    receipt = arena_api.submit_vote(
                        ws,
                        tok,
                        user.id,
                        choice,
                        max(0, int_or(ms)),
                        flags=_flags(left_h, left_o, right_h, right_o),
                    )
                    note = plain_note("Saved (a repeated click)." if receipt.duplicate else "Saved.")
            except (ValueError, LookupError, PermissionError) as exc:
                # e.g. the campaign was closed meanwhile: say so and move on to what is left
                note = plain_note(f"Not saved: {exc}", "warn")
            return _next_with_note(user, name or "", show_reveal, note)

        vote.__name__ = f"arena_vote_{choice}"
        return vote

    buttons = [*vote_buttons, *page.verdict_buttons]
    for button, choice in zip(buttons, (*CHOICES, "skip", *VERDICTS), strict=True):
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
        user = user_or_error(ws, request)
        try:
            ticket = arena_api.next_ticket(ws, campaign, user.id)
        except (ValueError, LookupError) as exc:
            raise _arena_error(exc) from None
        if ticket is None:
            return {}
        answer = {
            "token": ticket.token,
            "prompt": ticket.prompt or "",
            "criterion": ticket.criterion,
            "done": ticket.done,
            "total": ticket.total,
        }
        if ticket.kind == "verdict":  # the question is yes/no; these may be ticked on a web page
            answer |= {"kind": ticket.kind, "elements": list(ticket.elements)}
        return answer

    def arena_vote(token: str, choice: str, elapsed_ms: int, request: gr.Request) -> dict:
        """Vote on a ticket: choice left|right|tie|both_bad (verdict campaigns: yes|no); answers
        {ok, duplicate, more} (no system: the same images come back in the annotator's later pairs)."""
        user = user_or_error(ws, request)
        if choice not in (*CHOICES, *VERDICTS):
            raise gr.Error(f"choice must be one of {', '.join((*CHOICES, *VERDICTS))} (got {choice!r}).")
        try:
            receipt = arena_api.submit_vote(ws, token, user.id, choice, max(0, int_or(elapsed_ms)))
        except (ValueError, LookupError, PermissionError) as exc:
            raise _arena_error(exc) from None
        return {"ok": True, "duplicate": receipt.duplicate, "more": receipt.next_available}

    gr.api(arena_next, api_name="arena_next")
    gr.api(arena_vote, api_name="arena_vote")
