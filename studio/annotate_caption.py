"""The annotator page of the Annotate tab: one image, its short and long caption boxes, the
draft status, and previous / skip / next / submit.

Nothing typed is lost: drafts autosave on every edit (``trigger_mode="always_last"``, one
save in flight per page, the last edit always saved), navigation saves the draft of the
image being left, and on page load the annotator lands on the image of their most recent
draft with its text restored. ``static/annotate.js`` warns before leaving the page while a
save is still pending: every event that writes the draft status carries the page's edit
counter (set by the ``js=`` hook, :data:`TOKEN_JS`) and the server echoes it back in
``data-token``.
"""

from __future__ import annotations

import contextlib
import html
import itertools
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import gradio as gr

from backend.annotation import (
    MAX_CAPTION_CHARS,
    AnnotationError,
    ItemView,
    default_set_id,
    following_item,
    list_sets,
    next_item,
    previous_item,
    resume_item,
    save_draft,
    set_dataset_names,
    skip,
    submit,
)
from backend.clip_tokens import CONTEXT_LENGTH, ClipVocabularyMissing, clip_token_count, word_count
from backend.models import Role, User
from backend.users import PermissionDenied
from backend.workspace import Workspace
from studio.session import current_user
from studio.ui_common import int_or_none, no_change, user_or_error

GUIDELINES_PATH = Path(__file__).resolve().parent.parent / "assets" / "guidelines.md"
GUIDELINES_FALLBACK = (
    "_The caption guidelines (`assets/guidelines.md`) are missing._\n\n"
    "In short: the **short** caption names the main subject in one sentence; the **long** caption "
    "describes every object and its count, positions and spatial relations, colours, sizes and "
    "materials, any text in the image (quoted), the style or medium, and the background."
)
SHORTCUTS = (
    "**Keyboard:** <kbd>Ctrl</kbd>+<kbd>Enter</kbd> submit · <kbd>Alt</kbd>+<kbd>→</kbd> next · "
    "<kbd>Alt</kbd>+<kbd>←</kbd> previous · <kbd>Alt</kbd>+<kbd>S</kbd> skip — they work while you type."
)
# Every event that writes the draft status passes the page's edit counter as its last input.
TOKEN_JS = "(...args) => { args[args.length - 1] = (window.recapAnnotate ? window.recapAnnotate.inputs : 0); return args; }"
_seq = itertools.count(1)


def read_guidelines(path: Path = GUIDELINES_PATH) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return GUIDELINES_FALLBACK
    return text or GUIDELINES_FALLBACK


def counts_html(text: str | None) -> str:
    """Live counts under a caption box: words and CLIP tokens, flagged past 77."""
    text = text or ""
    if len(text) > MAX_CAPTION_CHARS:  # not counted (a second of CPU per keystroke): never stored anyway
        return (
            f'<div class="ann-counts over">{len(text):,} characters: a caption may have at most '
            f"{MAX_CAPTION_CHARS:,}</div>"
        )
    words = word_count(text)
    try:
        tokens = clip_token_count(text) if text.strip() else 0
    except ClipVocabularyMissing:
        return f'<div class="ann-counts">{words} words · CLIP token count unavailable</div>'
    if tokens > CONTEXT_LENGTH:
        return (
            f'<div class="ann-counts over" title="CLIP reads at most {CONTEXT_LENGTH} tokens">'
            f"{words} words · <b>{tokens} / {CONTEXT_LENGTH} CLIP tokens</b> ⚠ past {CONTEXT_LENGTH}: "
            "CLIP-based models cut the rest</div>"
        )
    return f'<div class="ann-counts">{words} words · {tokens} / {CONTEXT_LENGTH} CLIP tokens</div>'


def _clock(when: datetime | None = None) -> str:
    when = when or datetime.now().astimezone()
    return when.astimezone().strftime("%H:%M:%S")


def status_html(message: str, token: Any = 0, kind: str = "ok") -> str:
    """The draft status line; ``data-token`` echoes the page's edit counter (see annotate.js)."""
    try:
        tok = int(token or 0)
    except (TypeError, ValueError):
        tok = 0
    return f'<div class="draft-status {kind}" data-token="{tok}" data-seq="{next(_seq)}">{html.escape(message)}</div>'


def set_choices(ws: Workspace) -> list[tuple[str, int]]:
    """The annotation sets as dropdown choices, newest first (the admin page uses them too)."""
    datasets = set_dataset_names(ws)
    return [
        (f"{s.name} · {datasets.get(s.id, '?')} · {s.target_size} images", s.id)
        for s in reversed(list_sets(ws))
    ]


# --------------------------------------------------------------------------- item display


def _info_md(view: ItemView) -> str:
    state = {
        "active": "your current image",
        "submitted": "submitted — editing and submitting again adds a new revision",
        "skipped": "skipped",
    }.get(view.state or "", "")
    return (
        f"**{html.escape(view.set_name)}** · image **{view.position}** of {view.total} · "
        f"you have submitted **{view.done}** · _{state}_"
    )


def _review_md(view: ItemView) -> str:
    if view.status == "rejected":
        comment = html.escape(view.review_comment or "(no comment)")
        return f'<div class="ann-review rejected">⚠ <b>Rejected by the reviewer:</b> {comment}<br>Fix it and submit again.</div>'
    if view.status == "approved":
        note = " You have unsubmitted changes (kept as a draft)." if view.has_unsubmitted_changes else ""
        return f'<div class="ann-review approved">✓ Approved.{note}</div>'
    if view.status == "submitted":
        note = " You have unsubmitted changes (kept as a draft)." if view.has_unsubmitted_changes else ""
        return f'<div class="ann-review submitted">Submitted — waiting for review.{note}</div>'
    return ""


def _alt_md(view: ItemView) -> str:
    if not view.alttext:
        return "**Alt-text:** _none_"
    texts = " · ".join(f"“{html.escape(t)}”" for t in view.alttext)
    return f"**Alt-text** (web, often wrong — do not copy): {texts}"


def _draft_message(view: ItemView) -> str:
    if view.draft_saved_at is not None:
        return f"Draft restored (saved {_clock(view.draft_saved_at)})"
    return ""


def show(view: ItemView | None, token: Any = 0, empty_message: str = "") -> tuple[Any, ...]:
    """Values for ITEM_OUTPUTS: state, info, review note, image, alt-text, boxes, counts, status."""
    if view is None:
        message = empty_message or "No image to caption: choose an annotation set."
        return (
            None,
            message,
            "",
            None,
            "",
            gr.update(value="", interactive=False),
            gr.update(value="", interactive=False),
            counts_html(""),
            counts_html(""),
            status_html("", token),
        )
    short, long = view.short_text, view.long_text
    return (
        view.image_id,
        _info_md(view),
        _review_md(view),
        view.image_path,
        _alt_md(view),
        gr.update(value=short, interactive=True),
        gr.update(value=long, interactive=True),
        counts_html(short),
        counts_html(long),
        status_html(_draft_message(view), token),
    )


# --------------------------------------------------------------------------- layout


@dataclass
class CaptionPage:
    """The annotator page's components (made by :func:`layout`, wired by :func:`wire`)."""

    ann_set: gr.Dropdown
    info: gr.Markdown
    cur_image: gr.State
    token: gr.Number
    image: gr.Image
    review_note: gr.HTML
    show_alt: gr.Checkbox
    alt: gr.Markdown
    short: gr.Textbox
    short_counts: gr.HTML
    long: gr.Textbox
    long_counts: gr.HTML
    draft_status: gr.HTML
    btn_prev: gr.Button
    btn_skip: gr.Button
    btn_next: gr.Button
    btn_submit: gr.Button

    @property
    def item_outputs(self) -> list[Any]:
        """The components :func:`show` fills, in its order."""
        return [
            self.cur_image,
            self.info,
            self.review_note,
            self.image,
            self.alt,
            self.short,
            self.long,
            self.short_counts,
            self.long_counts,
            self.draft_status,
        ]

    @property
    def nav_inputs(self) -> list[Any]:
        """What every navigation event sends: the set, the image, both boxes, the edit counter."""
        return [self.ann_set, self.cur_image, self.short, self.long, self.token]


def layout(guidelines: str) -> CaptionPage:
    """The annotator page, inside the current tab."""
    with gr.Row(equal_height=True):
        # choices are filled per page load; allow_custom_value keeps the server from
        # validating against the (empty) build-time list — handlers validate instead
        ann_set = gr.Dropdown(
            choices=[],
            label="Annotation set",
            elem_id="annotate-set",
            scale=2,
            interactive=True,
            allow_custom_value=True,
        )
        info = gr.Markdown(elem_id="annotate-info", container=True)
    cur_image = gr.State(None)
    token = gr.Number(value=0, visible=False, precision=0)
    with gr.Row(elem_id="annotate-main"):
        with gr.Column(scale=5, min_width=420):
            image = gr.Image(
                label="Image",
                type="filepath",
                interactive=False,
                height=600,
                elem_id="annotate-image",
                buttons=["fullscreen", "download"],
            )
        with gr.Column(scale=4, min_width=380):
            review_note = gr.HTML(elem_id="review-status")
            with gr.Accordion("Caption guidelines", open=True, elem_id="guidelines"):
                gr.Markdown(guidelines, elem_id="guidelines-text")
            with gr.Row(elem_id="alttext-row"):
                show_alt = gr.Checkbox(value=True, label="Show alt-text", elem_id="show-alttext", scale=0)
                alt = gr.Markdown(elem_id="alttext")
            short = gr.Textbox(
                label="Short caption — the main subject, one sentence",
                lines=2,
                max_lines=4,
                elem_id="short-caption",
                placeholder="e.g. A large red circle and two other shapes on a light blue background.",
            )
            short_counts = gr.HTML(counts_html(""), elem_id="short-counts")
            long = gr.Textbox(
                label="Long caption — every object, count, position, colour, text, style, background",
                lines=6,
                max_lines=14,
                elem_id="long-caption",
                placeholder="Describe everything you can see, in the order of the guidelines.",
            )
            long_counts = gr.HTML(counts_html(""), elem_id="long-counts")
            draft_status = gr.HTML(status_html(""), elem_id="draft-status")
            with gr.Row(elem_id="annotate-buttons"):
                btn_prev = gr.Button("← Previous", elem_id="btn-prev", size="md")
                btn_skip = gr.Button("Skip", elem_id="btn-skip", size="md")
                btn_next = gr.Button("Next →", elem_id="btn-next", size="md")
                btn_submit = gr.Button("Submit", elem_id="btn-submit", variant="primary", size="md")
            gr.Markdown(SHORTCUTS, elem_id="annotate-shortcuts")

    return CaptionPage(
        ann_set=ann_set,
        info=info,
        cur_image=cur_image,
        token=token,
        image=image,
        review_note=review_note,
        show_alt=show_alt,
        alt=alt,
        short=short,
        short_counts=short_counts,
        long=long,
        long_counts=long_counts,
        draft_status=draft_status,
        btn_prev=btn_prev,
        btn_skip=btn_skip,
        btn_next=btn_next,
        btn_submit=btn_submit,
    )


# --------------------------------------------------------------------------- handlers


def wire(ws: Workspace, blocks: gr.Blocks, page: CaptionPage, admin_tab: gr.Tab) -> None:
    """The annotator page's events; the page load also shows ``admin_tab`` to admins."""
    item_outputs = page.item_outputs
    nav_inputs = page.nav_inputs

    def on_load(request: gr.Request) -> tuple[Any, ...]:
        try:
            user = current_user(ws, request)
        except PermissionDenied:
            return (
                gr.update(choices=[], value=None),
                *show(None, 0, "Log in to annotate."),
                gr.update(visible=False),
            )
        choices = set_choices(ws)
        set_id = default_set_id(ws, user.id)
        is_admin = user.role == Role.admin.value
        try:
            # admins come to review: opening the page must not claim an image for them
            view = resume_item(ws, set_id, user.id, claim=not is_admin) if set_id is not None else None
        except AnnotationError:  # the set vanished between the two calls (e.g. a dataset delete)
            set_id, view = None, None
        if set_id is None:
            empty = "No annotation sets yet — an admin creates one."
        elif is_admin:
            empty = "Press Next → to take an image of this set and caption it yourself."
        else:
            empty = "All done in this set: nothing left for you. Thank you!"
        return (
            gr.update(choices=choices, value=set_id),
            *show(view, 0, empty),
            gr.update(visible=is_admin),
        )

    blocks.load(on_load, None, [page.ann_set, *item_outputs, admin_tab], api_visibility="private")

    def _save_current(user: User, image_id: Any, short_text: str, long_text: str) -> None:
        image_id = int_or_none(image_id)
        if image_id is not None:
            with contextlib.suppress(AnnotationError):
                save_draft(ws, image_id, user.id, short_text or "", long_text or "")

    def open_set(set_id: Any, image_id: Any, short_text: str, long_text: str, tok: Any, request: gr.Request):
        user = user_or_error(ws, request)
        _save_current(user, image_id, short_text, long_text)
        set_id = int_or_none(set_id)
        if set_id is None:
            return show(None, tok)
        is_admin = user.role == Role.admin.value
        try:
            view = resume_item(ws, set_id, user.id, claim=not is_admin)
        except AnnotationError as exc:
            raise gr.Error(str(exc)) from None
        if is_admin:
            return show(view, tok, "Press Next → to take an image of this set and caption it yourself.")
        return show(view, tok, "All done in this set: nothing left for you. Thank you!")

    page.ann_set.input(open_set, nav_inputs, item_outputs, js=TOKEN_JS, api_visibility="private")

    def autosave(set_id: Any, image_id: Any, short_text: str, long_text: str, tok: Any, request: gr.Request):
        user = user_or_error(ws, request)
        counts = (counts_html(short_text), counts_html(long_text))
        image_id = int_or_none(image_id)
        if image_id is None:
            return (*counts, status_html("No image open: nothing is saved.", tok, "warn"))
        try:
            draft = save_draft(ws, image_id, user.id, short_text or "", long_text or "")
        except AnnotationError as exc:
            return (*counts, status_html(f"Not saved: {exc}", tok, "error"))
        if draft is None:
            return (*counts, status_html("All changes saved", tok))
        return (*counts, status_html(f"Draft saved {_clock(draft.updated_at)}", tok))

    gr.on(
        [page.short.input, page.long.input],
        autosave,
        nav_inputs,
        [page.short_counts, page.long_counts, page.draft_status],
        trigger_mode="always_last",
        show_progress="hidden",
        js=TOKEN_JS,
        api_visibility="private",
    )

    def go_previous(
        set_id: Any, image_id: Any, short_text: str, long_text: str, tok: Any, request: gr.Request
    ):
        user = user_or_error(ws, request)
        set_id = int_or_none(set_id)
        if set_id is None:
            return no_change(len(item_outputs))
        _save_current(user, image_id, short_text, long_text)
        view = previous_item(ws, set_id, user.id, int_or_none(image_id))
        if view is None:
            gr.Info("This is the first image you worked on in this set.")
            return no_change(len(item_outputs))
        return show(view, tok)

    def go_next(set_id: Any, image_id: Any, short_text: str, long_text: str, tok: Any, request: gr.Request):
        user = user_or_error(ws, request)
        set_id = int_or_none(set_id)
        if set_id is None:
            return no_change(len(item_outputs))
        _save_current(user, image_id, short_text, long_text)
        view = following_item(ws, set_id, user.id, int_or_none(image_id))
        if view is not None and view.image_id == int_or_none(image_id):
            gr.Info("This is your current image: submit it (Ctrl+Enter) or skip it (Alt+S) to get a new one.")
            return no_change(len(item_outputs))
        return show(view, tok, "All done in this set: nothing left for you. Thank you!")

    def do_submit(set_id: Any, image_id: Any, short_text: str, long_text: str, tok: Any, request: gr.Request):
        user = user_or_error(ws, request)
        set_id, image_id = int_or_none(set_id), int_or_none(image_id)
        if set_id is None or image_id is None:
            gr.Warning("No image open.")
            return no_change(len(item_outputs))
        try:
            submit(ws, set_id, image_id, user.id, short_text or "", long_text or "")
        except AnnotationError as exc:
            gr.Warning(f"Not submitted: {exc}")
            return no_change(len(item_outputs))
        gr.Info("Submitted.")
        view = next_item(ws, set_id, user.id)
        return show(view, tok, "All done in this set: nothing left for you. Thank you!")

    def do_skip(set_id: Any, image_id: Any, short_text: str, long_text: str, tok: Any, request: gr.Request):
        user = user_or_error(ws, request)
        set_id, image_id = int_or_none(set_id), int_or_none(image_id)
        if set_id is None or image_id is None:
            return no_change(len(item_outputs))
        _save_current(user, image_id, short_text, long_text)
        try:
            skip(ws, set_id, image_id, user.id)
        except AnnotationError as exc:
            gr.Warning(f"Not skipped: {exc}")
            return no_change(len(item_outputs))
        view = next_item(ws, set_id, user.id)
        return show(view, tok, "All done in this set: nothing left for you. Thank you!")

    common = {"js": TOKEN_JS, "api_visibility": "private", "show_progress": "minimal"}
    page.btn_prev.click(go_previous, nav_inputs, item_outputs, **common)
    page.btn_next.click(go_next, nav_inputs, item_outputs, **common)
    page.btn_submit.click(do_submit, nav_inputs, item_outputs, **common)
    page.btn_skip.click(do_skip, nav_inputs, item_outputs, **common)
    page.show_alt.change(
        lambda on: gr.update(visible=bool(on)), page.show_alt, page.alt, api_visibility="private", queue=False
    )
