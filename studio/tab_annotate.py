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
"""

from __future__ import annotations

import contextlib
import html
import itertools
from datetime import datetime
from pathlib import Path
from typing import Any

import gradio as gr

from backend.annotation import (
    MAX_CAPTION_CHARS,
    SAMPLING_METHODS,
    AnnotationError,
    ItemView,
    ReviewEntry,
    SetProgress,
    create_annotation_set,
    default_set_id,
    following_item,
    list_sets,
    next_item,
    previous_item,
    progress,
    resume_item,
    review,
    review_queue,
    review_queue_count,
    save_draft,
    set_dataset_names,
    skip,
    submit,
)
from backend.clip_tokens import CONTEXT_LENGTH, ClipVocabularyMissing, clip_token_count, word_count
from backend.datasets import all_summaries
from backend.models import Role, User
from backend.users import PermissionDenied
from backend.workspace import Workspace
from studio.session import current_user, require_admin_ui

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
QUEUE_PAGE = 10
REVIEW_STATUSES = ["submitted", "rejected", "approved"]
# Every event that writes the draft status passes the page's edit counter as its last input.
TOKEN_JS = "(...args) => { args[args.length - 1] = (window.recapAnnotate ? window.recapAnnotate.inputs : 0); return args; }"
_seq = itertools.count(1)


# --------------------------------------------------------------------------- helpers


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


def _user(ws: Workspace, request: gr.Request | None) -> User:
    try:
        return current_user(ws, request)
    except PermissionDenied as exc:
        raise gr.Error(f"Not allowed: {exc}.") from None


def _set_choices(ws: Workspace) -> list[tuple[str, int]]:
    datasets = set_dataset_names(ws)
    return [
        (f"{s.name} · {datasets.get(s.id, '?')} · {s.target_size} images", s.id)
        for s in reversed(list_sets(ws))
    ]


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


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


def _no_change(n: int) -> tuple[Any, ...]:
    return tuple(gr.skip() for _ in range(n))


# --------------------------------------------------------------------------- admin display


def progress_html(p: SetProgress) -> str:
    pct = 100 * p.fraction_done
    sub_pct = 100 * p.submissions / p.submissions_target if p.submissions_target else 0
    rows = []
    per_target = p.items  # an annotator could at most caption every item once
    for r in p.annotators:
        share = 100 * r.submitted / per_target if per_target else 0
        rows.append(
            "<tr>"
            f"<td>{html.escape(r.annotator)}</td><td>{r.submitted}</td><td>{r.approved}</td>"
            f"<td>{r.rejected}</td><td>{r.pending_review}</td><td>{r.skipped}</td><td>{r.active}</td>"
            f'<td><div class="ann-bar small"><div class="ann-bar-fill" style="width:{share:.1f}%"></div></div></td>'
            "</tr>"
        )
    table = (
        '<table class="ann-progress-table"><thead><tr><th>annotator</th><th>submitted</th><th>approved</th>'
        "<th>rejected</th><th>to review</th><th>skipped</th><th>holding</th><th>share of set</th></tr></thead>"
        f"<tbody>{''.join(rows) or '<tr><td colspan=8><i>nobody has started yet</i></td></tr>'}</tbody></table>"
    )
    return (
        '<div class="ann-progress">'
        f'<div class="ann-progress-label"><b>{html.escape(p.name)}</b> ({html.escape(p.dataset)}, '
        f"{p.overlap} annotator{'s' if p.overlap > 1 else ''} per image): "
        f"<b>{p.items_done} / {p.items}</b> images done ({pct:.0f}%) · {p.items_approved} approved · "
        f"submissions {p.submissions} / {p.submissions_target} ({sub_pct:.0f}%)</div>"
        f'<div class="ann-bar"><div class="ann-bar-fill" style="width:{pct:.1f}%"></div></div>'
        f"{table}</div>"
    )


def _queue_rows(entries: list[ReviewEntry], offset: int) -> list[list[Any]]:
    def clip(text: str, n: int = 70) -> str:
        return text if len(text) <= n else text[: n - 1] + "…"

    return [
        [
            offset + i + 1,
            e.image_id,
            e.annotator,
            e.status,
            clip(e.short_text),
            word_count(e.long_text),
            e.submitted_at.astimezone().strftime("%Y-%m-%d %H:%M"),
        ]
        for i, e in enumerate(entries)
    ]


QUEUE_HEADERS = ["#", "image", "annotator", "status", "short caption", "long (words)", "submitted"]


def _entry_dict(e: ReviewEntry) -> dict[str, Any]:
    return {
        "image_id": e.image_id,
        "image_path": e.image_path,
        "annotator": e.annotator,
        "status": e.status,
        "short": e.short_text,
        "long": e.long_text,
        "ids": ",".join(str(i) for i in e.caption_ids),
        "comment": e.review_comment or "",
    }


def detail(entry: dict[str, Any] | None) -> tuple[Any, ...]:
    """Values for DETAIL_OUTPUTS from one queue entry (or empty)."""
    if not entry:
        return None, "_Nothing to review here._", "", "", "", counts_html(""), counts_html("")
    meta = f"Image **{entry['image_id']}** by **{html.escape(entry['annotator'])}** · status **{entry['status']}**"
    if entry.get("comment"):
        meta += f" · last comment: _{html.escape(entry['comment'])}_"
    return (
        entry["image_path"],
        meta,
        entry["short"],
        entry["long"],
        entry["ids"],
        counts_html(entry["short"]),
        counts_html(entry["long"]),
    )


# --------------------------------------------------------------------------- build


def build(ws: Workspace, blocks: gr.Blocks) -> None:
    guidelines = read_guidelines()

    with gr.Tabs(elem_id="annotate-tabs"):
        # ---------------------------------------------------------------- annotator
        with gr.Tab("Caption", id="annotate-caption", elem_id="annotate-caption"):
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
                        show_alt = gr.Checkbox(
                            value=True, label="Show alt-text", elem_id="show-alttext", scale=0
                        )
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

        # ---------------------------------------------------------------- admin
        with gr.Tab(
            "Sets, progress & review (admin)", id="annotate-admin", elem_id="annotate-admin", visible=False
        ) as admin_tab:
            gr.Markdown("### Progress")
            with gr.Row(elem_classes="ann-toolbar"):
                admin_set = gr.Dropdown(
                    choices=[], label="Annotation set", elem_id="admin-set", scale=3, allow_custom_value=True
                )
                btn_refresh = gr.Button(
                    "↻ Refresh", elem_id="btn-admin-refresh", scale=0, size="sm", min_width=110
                )
            progress_box = gr.HTML(elem_id="annotate-progress")

            gr.Markdown("### Review queue")
            with gr.Row(elem_classes="ann-toolbar"):
                queue_status = gr.Radio(
                    REVIEW_STATUSES, value="submitted", label="Show", elem_id="review-filter", scale=3
                )
                btn_page_prev = gr.Button(
                    "◀ Page", elem_id="btn-queue-prev", scale=0, size="sm", min_width=90
                )
                page_label = gr.Markdown(elem_id="queue-page", container=False)
                btn_page_next = gr.Button(
                    "Page ▶", elem_id="btn-queue-next", scale=0, size="sm", min_width=90
                )
            queue_table = gr.Dataframe(
                headers=QUEUE_HEADERS,
                value=[],
                interactive=False,
                elem_id="review-queue",
                max_height=360,
                wrap=True,
                column_widths=["5%", "7%", "11%", "10%", "45%", "10%", "12%"],
            )
            page = gr.State(0)
            entries = gr.State([])
            with gr.Row():
                with gr.Column(scale=4, min_width=300):
                    review_image = gr.Image(
                        label="Image", type="filepath", interactive=False, height=420, elem_id="review-image"
                    )
                with gr.Column(scale=5):
                    review_meta = gr.Markdown(elem_id="review-meta")
                    review_short = gr.Textbox(
                        label="Short caption", interactive=False, lines=2, elem_id="review-short"
                    )
                    review_short_counts = gr.HTML(elem_id="review-short-counts")
                    review_long = gr.Textbox(
                        label="Long caption", interactive=False, lines=6, elem_id="review-long"
                    )
                    review_long_counts = gr.HTML(elem_id="review-long-counts")
                    review_ids = gr.Textbox(
                        label="Caption ids", interactive=False, elem_id="review-caption-ids", max_lines=1
                    )
                    decision = gr.Radio(
                        ["approve", "reject"], value="approve", label="Decision", elem_id="review-decision"
                    )
                    comment = gr.Textbox(
                        label="Comment (required to reject — the annotator sees it)",
                        lines=2,
                        elem_id="review-comment",
                    )
                    btn_review = gr.Button("Save review", variant="primary", elem_id="btn-review")
                    review_result = gr.Markdown(elem_id="review-result")

            with gr.Accordion("Create an annotation set", open=True, elem_id="create-set"):
                with gr.Row():
                    new_dataset = gr.Dropdown(
                        choices=[],
                        label="Dataset",
                        elem_id="new-set-dataset",
                        scale=2,
                        allow_custom_value=True,
                    )
                    new_name = gr.Textbox(label="Set name", elem_id="new-set-name", scale=2)
                    new_size = gr.Slider(
                        minimum=1,
                        maximum=1000,
                        value=100,
                        step=1,
                        label="Images",
                        info="RECAP used about a hundred; 100–300 is typical",
                        elem_id="new-set-size",
                        scale=3,
                    )
                with gr.Row():
                    new_sampling = gr.Radio(
                        list(SAMPLING_METHODS),
                        value="random",
                        label="Sampling",
                        info="stratified: spread over alt-text quality/length and object count",
                        elem_id="new-set-sampling",
                        scale=2,
                    )
                    new_overlap = gr.Number(
                        value=1,
                        minimum=1,
                        precision=0,
                        label="Annotators per image",
                        info=">1 measures agreement",
                        elem_id="new-set-overlap",
                        scale=1,
                    )
                    new_seed = gr.Number(value=0, precision=0, label="Seed", elem_id="new-set-seed", scale=1)
                    btn_create = gr.Button("Create set", variant="primary", elem_id="btn-create-set", scale=1)
                create_result = gr.Markdown(elem_id="create-set-result")

    item_outputs = [
        cur_image,
        info,
        review_note,
        image,
        alt,
        short,
        long,
        short_counts,
        long_counts,
        draft_status,
    ]
    detail_outputs = [
        review_image,
        review_meta,
        review_short,
        review_long,
        review_ids,
        review_short_counts,
        review_long_counts,
    ]

    # ------------------------------------------------------------------ annotator handlers

    def on_load(request: gr.Request) -> tuple[Any, ...]:
        try:
            user = current_user(ws, request)
        except PermissionDenied:
            return (
                gr.update(choices=[], value=None),
                *show(None, 0, "Log in to annotate."),
                gr.update(visible=False),
            )
        choices = _set_choices(ws)
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

    blocks.load(on_load, None, [ann_set, *item_outputs, admin_tab], api_visibility="private")

    def _save_current(user: User, image_id: Any, short_text: str, long_text: str) -> None:
        image_id = _int(image_id)
        if image_id is not None:
            with contextlib.suppress(AnnotationError):
                save_draft(ws, image_id, user.id, short_text or "", long_text or "")

    def open_set(set_id: Any, image_id: Any, short_text: str, long_text: str, tok: Any, request: gr.Request):
        user = _user(ws, request)
        _save_current(user, image_id, short_text, long_text)
        set_id = _int(set_id)
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

    nav_inputs = [ann_set, cur_image, short, long, token]
    ann_set.input(open_set, nav_inputs, item_outputs, js=TOKEN_JS, api_visibility="private")

    def autosave(set_id: Any, image_id: Any, short_text: str, long_text: str, tok: Any, request: gr.Request):
        user = _user(ws, request)
        counts = (counts_html(short_text), counts_html(long_text))
        image_id = _int(image_id)
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
        [short.input, long.input],
        autosave,
        nav_inputs,
        [short_counts, long_counts, draft_status],
        trigger_mode="always_last",
        show_progress="hidden",
        js=TOKEN_JS,
        api_visibility="private",
    )

    def go_previous(
        set_id: Any, image_id: Any, short_text: str, long_text: str, tok: Any, request: gr.Request
    ):
        user = _user(ws, request)
        set_id = _int(set_id)
        if set_id is None:
            return _no_change(len(item_outputs))
        _save_current(user, image_id, short_text, long_text)
        view = previous_item(ws, set_id, user.id, _int(image_id))
        if view is None:
            gr.Info("This is the first image you worked on in this set.")
            return _no_change(len(item_outputs))
        return show(view, tok)

    def go_next(set_id: Any, image_id: Any, short_text: str, long_text: str, tok: Any, request: gr.Request):
        user = _user(ws, request)
        set_id = _int(set_id)
        if set_id is None:
            return _no_change(len(item_outputs))
        _save_current(user, image_id, short_text, long_text)
        view = following_item(ws, set_id, user.id, _int(image_id))
        if view is not None and view.image_id == _int(image_id):
            gr.Info("This is your current image: submit it (Ctrl+Enter) or skip it (Alt+S) to get a new one.")
            return _no_change(len(item_outputs))
        return show(view, tok, "All done in this set: nothing left for you. Thank you!")

    def do_submit(set_id: Any, image_id: Any, short_text: str, long_text: str, tok: Any, request: gr.Request):
        user = _user(ws, request)
        set_id, image_id = _int(set_id), _int(image_id)
        if set_id is None or image_id is None:
            gr.Warning("No image open.")
            return _no_change(len(item_outputs))
        try:
            submit(ws, set_id, image_id, user.id, short_text or "", long_text or "")
        except AnnotationError as exc:
            gr.Warning(f"Not submitted: {exc}")
            return _no_change(len(item_outputs))
        gr.Info("Submitted.")
        view = next_item(ws, set_id, user.id)
        return show(view, tok, "All done in this set: nothing left for you. Thank you!")

    def do_skip(set_id: Any, image_id: Any, short_text: str, long_text: str, tok: Any, request: gr.Request):
        user = _user(ws, request)
        set_id, image_id = _int(set_id), _int(image_id)
        if set_id is None or image_id is None:
            return _no_change(len(item_outputs))
        _save_current(user, image_id, short_text, long_text)
        try:
            skip(ws, set_id, image_id, user.id)
        except AnnotationError as exc:
            gr.Warning(f"Not skipped: {exc}")
            return _no_change(len(item_outputs))
        view = next_item(ws, set_id, user.id)
        return show(view, tok, "All done in this set: nothing left for you. Thank you!")

    common = {"js": TOKEN_JS, "api_visibility": "private", "show_progress": "minimal"}
    btn_prev.click(go_previous, nav_inputs, item_outputs, **common)
    btn_next.click(go_next, nav_inputs, item_outputs, **common)
    btn_submit.click(do_submit, nav_inputs, item_outputs, **common)
    btn_skip.click(do_skip, nav_inputs, item_outputs, **common)
    show_alt.change(
        lambda on: gr.update(visible=bool(on)), show_alt, alt, api_visibility="private", queue=False
    )

    # ------------------------------------------------------------------ admin handlers

    def _dataset_choices() -> list[tuple[str, str]]:
        return [(f"{d.name} ({d.images} images)", d.name) for d in all_summaries(ws)]

    def _queue_view(set_id: int | None, status: str, page_no: int) -> tuple[Any, ...]:
        """Values for [queue_table, page_label, page, entries, *detail_outputs]."""
        if set_id is None:
            return ([], "", 0, [], *detail(None))
        total = review_queue_count(ws, set_id, status)
        pages = max(1, -(-total // QUEUE_PAGE))
        page_no = min(max(0, int(page_no or 0)), pages - 1)
        rows = review_queue(ws, set_id, status, limit=QUEUE_PAGE, offset=page_no * QUEUE_PAGE)
        data = [_entry_dict(e) for e in rows]
        label = f"page {page_no + 1} of {pages} · {total} {status}"
        return (
            _queue_rows(rows, page_no * QUEUE_PAGE),
            label,
            page_no,
            data,
            *detail(data[0] if data else None),
        )

    admin_outputs = [progress_box, queue_table, page_label, page, entries, *detail_outputs]

    def _admin_view(set_id: int | None, status: str, page_no: int) -> tuple[Any, ...]:
        prog = progress_html(progress(ws, set_id)) if set_id is not None else "<i>No annotation set yet.</i>"
        return (prog, *_queue_view(set_id, status, page_no))

    def admin_load(request: gr.Request):
        try:
            user = current_user(ws, request)
        except PermissionDenied:
            user = None
        if user is None or user.role != Role.admin.value:
            return _no_change(3 + len(admin_outputs))
        choices = _set_choices(ws)
        set_id = choices[0][1] if choices else None
        return (
            gr.update(choices=_dataset_choices()),
            gr.update(choices=choices, value=set_id),
            gr.update(value=f"set-{len(choices) + 1}"),
            *_admin_view(set_id, "submitted", 0),
        )

    blocks.load(
        admin_load, None, [new_dataset, admin_set, new_name, *admin_outputs], api_visibility="private"
    )

    def dataset_picked(name: str, request: gr.Request):
        require_admin_ui(ws, request)
        sizes = {d.name: d.images for d in all_summaries(ws)}
        n = sizes.get(name)
        if not n:
            return gr.skip()
        return gr.update(maximum=n, value=min(100, n))

    new_dataset.input(dataset_picked, new_dataset, new_size, api_visibility="private")

    def create_set(
        dataset: str, name: str, size: float, sampling: str, overlap: float, seed: float, request: gr.Request
    ):
        """Create an annotation set (admins only)."""
        user = require_admin_ui(ws, request)
        if not dataset:
            raise gr.Error("Choose a dataset first.")
        try:
            aset = create_annotation_set(
                ws,
                dataset=dataset,
                name=name or "",
                size=int(size or 0),
                sampling=sampling or "random",
                overlap=int(overlap or 0),
                seed=int(seed or 0),
                created_by=user.id,
            )
        except AnnotationError as exc:
            raise gr.Error(str(exc)) from None
        choices = _set_choices(ws)
        message = (
            f"Created **{html.escape(aset.name)}**: {aset.target_size} images of {html.escape(dataset)}, "
            f"{aset.sampling} sampling, {aset.overlap} annotator(s) per image."
        )
        return (
            message,
            gr.update(choices=choices),
            gr.update(choices=choices, value=aset.id),
            *_admin_view(aset.id, "submitted", 0),
        )

    btn_create.click(
        create_set,
        [new_dataset, new_name, new_size, new_sampling, new_overlap, new_seed],
        [create_result, ann_set, admin_set, *admin_outputs],
        api_name="create_annotation_set",
    )

    def admin_refresh(set_id: Any, status: str, page_no: Any, request: gr.Request):
        require_admin_ui(ws, request)
        return _admin_view(_int(set_id), status or "submitted", _int(page_no) or 0)

    def admin_switch(set_id: Any, status: str, request: gr.Request):
        return admin_refresh(set_id, status, 0, request)

    admin_set.input(admin_switch, [admin_set, queue_status], admin_outputs, api_visibility="private")
    btn_refresh.click(admin_refresh, [admin_set, queue_status, page], admin_outputs, api_visibility="private")
    queue_status.input(admin_switch, [admin_set, queue_status], admin_outputs, api_visibility="private")

    def turn_page(set_id: Any, status: str, page_no: Any, delta: int, request: gr.Request):
        require_admin_ui(ws, request)
        return _queue_view(_int(set_id), status or "submitted", (_int(page_no) or 0) + delta)

    queue_outputs = [queue_table, page_label, page, entries, *detail_outputs]

    def page_prev(set_id: Any, status: str, page_no: Any, request: gr.Request):
        return turn_page(set_id, status, page_no, -1, request)

    def page_next(set_id: Any, status: str, page_no: Any, request: gr.Request):
        return turn_page(set_id, status, page_no, 1, request)

    page_inputs = [admin_set, queue_status, page]
    btn_page_prev.click(page_prev, page_inputs, queue_outputs, api_visibility="private")
    btn_page_next.click(page_next, page_inputs, queue_outputs, api_visibility="private")

    def pick_row(data: list[dict[str, Any]], evt: gr.SelectData, request: gr.Request):
        require_admin_ui(ws, request)
        index = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        if not data or index is None or not 0 <= int(index) < len(data):
            return _no_change(len(detail_outputs))
        return detail(data[int(index)])

    queue_table.select(pick_row, entries, detail_outputs, api_visibility="private")

    def review_captions(
        set_id: Any, caption_ids: str, verdict: str, note: str, status: str, page_no: Any, request: gr.Request
    ):
        """Approve or reject a caption pair (admins only); caption_ids is comma-separated."""
        user = require_admin_ui(ws, request)
        ids = [_int(part.strip()) for part in (caption_ids or "").split(",") if part.strip()]
        if not ids or None in ids:
            raise gr.Error("Select a caption pair to review first.")
        approve = (verdict or "approve") == "approve"
        try:
            review(ws, [i for i in ids if i is not None], user.id, approve, note or "")
        except AnnotationError as exc:
            raise gr.Error(str(exc)) from None
        except ValueError as exc:  # CaptionError from backend.captions
            raise gr.Error(str(exc)) from None
        done = "Approved" if approve else "Rejected"
        return (
            f"{done} captions {', '.join(str(i) for i in ids)}.",
            "",
            "approve",
            *_admin_view(_int(set_id), status or "submitted", _int(page_no) or 0),
        )

    btn_review.click(
        review_captions,
        [admin_set, review_ids, decision, comment, queue_status, page],
        [review_result, comment, decision, *admin_outputs],
        api_name="review_captions",
    )
