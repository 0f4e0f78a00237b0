"""The admin page of the Annotate tab: create annotation sets, follow their progress, and
review submitted caption pairs one page of the queue at a time (no component per caption).

Every handler checks the role on the server (:func:`studio.session.require_admin_ui`): the
page is only hidden for annotators, its endpoints exist for everyone.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import gradio as gr

from backend.annotation import (
    SAMPLING_METHODS,
    AnnotationError,
    ReviewEntry,
    SetProgress,
    create_annotation_set,
    progress,
    review,
    review_queue,
    review_queue_count,
)
from backend.clip_tokens import word_count
from backend.datasets import all_summaries
from backend.workspace import Workspace
from studio.annotate_caption import counts_html, set_choices
from studio.session import is_admin, require_admin_ui
from studio.ui_common import int_or_none, no_change

QUEUE_PAGE = 10
REVIEW_STATUSES = ["submitted", "rejected", "approved"]


# --------------------------------------------------------------------------- display


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


# --------------------------------------------------------------------------- layout


@dataclass
class AdminPage:
    """The admin page's components (made by :func:`layout`, wired by :func:`wire`)."""

    progress_box: gr.HTML
    admin_set: gr.Dropdown
    btn_refresh: gr.Button
    queue_status: gr.Radio
    btn_page_prev: gr.Button
    page_label: gr.Markdown
    btn_page_next: gr.Button
    queue_table: gr.Dataframe
    page: gr.State
    entries: gr.State
    review_image: gr.Image
    review_meta: gr.Markdown
    review_short: gr.Textbox
    review_short_counts: gr.HTML
    review_long: gr.Textbox
    review_long_counts: gr.HTML
    review_ids: gr.Textbox
    decision: gr.Radio
    comment: gr.Textbox
    btn_review: gr.Button
    review_result: gr.Markdown
    new_dataset: gr.Dropdown
    new_name: gr.Textbox
    new_size: gr.Slider
    new_sampling: gr.Radio
    new_overlap: gr.Number
    new_seed: gr.Number
    btn_create: gr.Button
    create_result: gr.Markdown

    @property
    def detail_outputs(self) -> list[Any]:
        """The components :func:`detail` fills, in its order."""
        return [
            self.review_image,
            self.review_meta,
            self.review_short,
            self.review_long,
            self.review_ids,
            self.review_short_counts,
            self.review_long_counts,
        ]


def layout() -> AdminPage:
    """The admin page, inside the current tab."""
    gr.Markdown("### Progress")
    with gr.Row(elem_classes="ann-toolbar"):
        admin_set = gr.Dropdown(
            choices=[], label="Annotation set", elem_id="admin-set", scale=3, allow_custom_value=True
        )
        btn_refresh = gr.Button("↻ Refresh", elem_id="btn-admin-refresh", scale=0, size="sm", min_width=110)
    progress_box = gr.HTML(elem_id="annotate-progress")

    gr.Markdown("### Review queue")
    with gr.Row(elem_classes="ann-toolbar"):
        queue_status = gr.Radio(
            REVIEW_STATUSES, value="submitted", label="Show", elem_id="review-filter", scale=3
        )
        btn_page_prev = gr.Button("◀ Page", elem_id="btn-queue-prev", scale=0, size="sm", min_width=90)
        page_label = gr.Markdown(elem_id="queue-page", container=False)
        btn_page_next = gr.Button("Page ▶", elem_id="btn-queue-next", scale=0, size="sm", min_width=90)
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
            review_long = gr.Textbox(label="Long caption", interactive=False, lines=6, elem_id="review-long")
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

    return AdminPage(
        progress_box=progress_box,
        admin_set=admin_set,
        btn_refresh=btn_refresh,
        queue_status=queue_status,
        btn_page_prev=btn_page_prev,
        page_label=page_label,
        btn_page_next=btn_page_next,
        queue_table=queue_table,
        page=page,
        entries=entries,
        review_image=review_image,
        review_meta=review_meta,
        review_short=review_short,
        review_short_counts=review_short_counts,
        review_long=review_long,
        review_long_counts=review_long_counts,
        review_ids=review_ids,
        decision=decision,
        comment=comment,
        btn_review=btn_review,
        review_result=review_result,
        new_dataset=new_dataset,
        new_name=new_name,
        new_size=new_size,
        new_sampling=new_sampling,
        new_overlap=new_overlap,
        new_seed=new_seed,
        btn_create=btn_create,
        create_result=create_result,
    )


# --------------------------------------------------------------------------- handlers


def wire(ws: Workspace, blocks: gr.Blocks, adm: AdminPage, ann_set: gr.Dropdown) -> None:
    """The admin page's events; a new set is also offered in the annotator page's ``ann_set``."""
    detail_outputs = adm.detail_outputs

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

    admin_outputs = [
        adm.progress_box,
        adm.queue_table,
        adm.page_label,
        adm.page,
        adm.entries,
        *detail_outputs,
    ]

    def _admin_view(set_id: int | None, status: str, page_no: int) -> tuple[Any, ...]:
        prog = progress_html(progress(ws, set_id)) if set_id is not None else "<i>No annotation set yet.</i>"
        return (prog, *_queue_view(set_id, status, page_no))

    def admin_load(request: gr.Request):
        if not is_admin(ws, request):
            return no_change(3 + len(admin_outputs))
        choices = set_choices(ws)
        set_id = choices[0][1] if choices else None
        return (
            gr.update(choices=_dataset_choices()),
            gr.update(choices=choices, value=set_id),
            gr.update(value=f"set-{len(choices) + 1}"),
            *_admin_view(set_id, "submitted", 0),
        )

    blocks.load(
        admin_load,
        None,
        [adm.new_dataset, adm.admin_set, adm.new_name, *admin_outputs],
        api_visibility="private",
    )

    def dataset_picked(name: str, request: gr.Request):
        require_admin_ui(ws, request)
        sizes = {d.name: d.images for d in all_summaries(ws)}
        n = sizes.get(name)
        if not n:
            return gr.skip()
        return gr.update(maximum=n, value=min(100, n))

    adm.new_dataset.input(dataset_picked, adm.new_dataset, adm.new_size, api_visibility="private")

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
        choices = set_choices(ws)
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

    adm.btn_create.click(
        create_set,
        [adm.new_dataset, adm.new_name, adm.new_size, adm.new_sampling, adm.new_overlap, adm.new_seed],
        [adm.create_result, ann_set, adm.admin_set, *admin_outputs],
        api_name="create_annotation_set",
    )

    def admin_refresh(set_id: Any, status: str, page_no: Any, request: gr.Request):
        require_admin_ui(ws, request)
        return _admin_view(int_or_none(set_id), status or "submitted", int_or_none(page_no) or 0)

    def admin_switch(set_id: Any, status: str, request: gr.Request):
        return admin_refresh(set_id, status, 0, request)

    adm.admin_set.input(
        admin_switch, [adm.admin_set, adm.queue_status], admin_outputs, api_visibility="private"
    )
    adm.btn_refresh.click(
        admin_refresh, [adm.admin_set, adm.queue_status, adm.page], admin_outputs, api_visibility="private"
    )
    adm.queue_status.input(
        admin_switch, [adm.admin_set, adm.queue_status], admin_outputs, api_visibility="private"
    )

    def turn_page(set_id: Any, status: str, page_no: Any, delta: int, request: gr.Request):
        require_admin_ui(ws, request)
        return _queue_view(int_or_none(set_id), status or "submitted", (int_or_none(page_no) or 0) + delta)

    queue_outputs = [adm.queue_table, adm.page_label, adm.page, adm.entries, *detail_outputs]

    def page_prev(set_id: Any, status: str, page_no: Any, request: gr.Request):
        return turn_page(set_id, status, page_no, -1, request)

    def page_next(set_id: Any, status: str, page_no: Any, request: gr.Request):
        return turn_page(set_id, status, page_no, 1, request)

    page_inputs = [adm.admin_set, adm.queue_status, adm.page]
    adm.btn_page_prev.click(page_prev, page_inputs, queue_outputs, api_visibility="private")
    adm.btn_page_next.click(page_next, page_inputs, queue_outputs, api_visibility="private")

    def pick_row(data: list[dict[str, Any]], evt: gr.SelectData, request: gr.Request):
        require_admin_ui(ws, request)
        index = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        if not data or index is None or not 0 <= int(index) < len(data):
            return no_change(len(detail_outputs))
        return detail(data[int(index)])

    adm.queue_table.select(pick_row, adm.entries, detail_outputs, api_visibility="private")

    def review_captions(
        set_id: Any, caption_ids: str, verdict: str, note: str, status: str, page_no: Any, request: gr.Request
    ):
        """Approve or reject a caption pair (admins only); caption_ids is comma-separated."""
        user = require_admin_ui(ws, request)
        ids = [int_or_none(part.strip()) for part in (caption_ids or "").split(",") if part.strip()]
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
            *_admin_view(int_or_none(set_id), status or "submitted", int_or_none(page_no) or 0),
        )

    adm.btn_review.click(
        review_captions,
        [adm.admin_set, adm.review_ids, adm.decision, adm.comment, adm.queue_status, adm.page],
        [adm.review_result, adm.comment, adm.decision, *admin_outputs],
        api_name="review_captions",
    )
