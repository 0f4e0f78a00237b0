"""Runs tab: launch model jobs, follow the queue, and inspect one run in depth.

Design notes
- Launching and cancelling are admin work: the forms and buttons are hidden for annotators,
  and every such handler checks the role on the server (:func:`require_admin_ui`), because
  the events exist for every logged-in session whatever the page shows.
- The page never runs a job: launch creates a queued run (:func:`backend.jobs.configs.new_run`,
  the same validation as the CLI) and asks the queue to start it; the runner is a subprocess.
  The studio's queue worker (:func:`backend.jobs.scheduler.start_queue_worker`) advances the
  queue every ~2 s.
- The launch forms are generated from the job kinds' schemas (:mod:`studio.run_form`), one per
  kind; the detail view lives in :mod:`studio.run_detail`; the styles in ``static/runs.css``.
- The runs table is one page of runs (newest first) refreshed by a ``gr.Timer``; the detail
  view's heavy parts (loss curves, metrics, samples) are redrawn only when the run changed.
- While an Arena campaign is open, annotators get no runs at all (every handler that reads
  runs checks :func:`studio.access.closed_while_judging`): configs, logs and validation
  images tie checkpoints to their captions and images.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import gradio as gr

from backend import jobs
from backend.jobs import configs
from backend.jobs.kinds import JobKind
from backend.workspace import Workspace
from studio import access, run_detail, run_form, run_forms
from studio.session import is_admin, require_admin_ui
from studio.ui_common import int_or_none, status_badge

__all__ = ["build", "draw_forms", "launch_kinds", "table_page"]

log = logging.getLogger(__name__)

DEV_ENV = "RECAP_STUDIO_DEV"
PAGE_SIZE = 15
REFRESH_S = 2.0
STATUS_FILTERS = ["all", "active", "queued", "running", "succeeded", "failed", "cancelled", "interrupted"]
TABLE_HEADERS = ["id", "kind", "status", "progress", "rate", "ETA", "started", "message"]
TABLE_TYPES = ["number", "str", "html", "html", "str", "str", "str", "str"]


def dev_mode() -> bool:
    return os.environ.get(DEV_ENV, "") == "1"


def _status_filter(choice: str | None) -> str | tuple[str, ...] | None:
    if not choice or choice == "all":
        return None
    if choice == "active":
        return jobs.ACTIVE
    return choice


def table_page(ws: Workspace, page: int, status: str | None) -> tuple[list[list[Any]], str, int]:
    """One page of runs (newest first), a page label, and the page actually shown."""
    page = max(0, page)
    runs = jobs.list_runs(ws, status=_status_filter(status), limit=PAGE_SIZE + 1, offset=page * PAGE_SIZE)
    if not runs and page > 0:  # the page emptied (filter changed): back to the first
        page = 0
        runs = jobs.list_runs(ws, status=_status_filter(status), limit=PAGE_SIZE + 1)
    more = len(runs) > PAGE_SIZE
    rows = [
        [
            r.id,
            r.kind,
            status_badge(r.status),
            run_detail.progress_html(r),
            run_forms.fmt_rate(r.rate) if r.status == jobs.RunStatus.running.value else "—",
            run_forms.fmt_eta(r),
            run_forms.fmt_when(r.started_at),
            run_forms.headline(r, 80),
        ]
        for r in runs[:PAGE_SIZE]
    ]
    if not rows:
        label = "No runs yet." if status in (None, "", "all") else "No runs match this filter."
    else:
        label = f"Page {page + 1}" + (" · more on the next page" if more else "")
    return rows, label, page


def launch_kinds() -> list[JobKind]:
    """The kinds with a launch form (the self-test only in developer mode)."""
    return [kind for kind in configs.KINDS.values() if dev_mode() or not kind.dev_only]


def draw_forms(
    ws: Workspace, kinds: list[JobKind], outputs: list[Any], started: run_form.Started
) -> list[run_form.Form]:
    """The launch forms with their workspace lists filled, the button that refreshes those
    lists, and the forms' launch events (which show their result in ``outputs``)."""
    lists = run_form.ChoiceLists.read(ws)
    forms = [run_form.render(kind, lists) for kind in kinds]
    refresh_lists = gr.Button("↻ Refresh datasets and captioners", size="sm", elem_id="runs-refresh-lists")
    listed = [box for form in forms for _, box in form.choice_fields()]

    def do_refresh_lists(request: gr.Request) -> dict[Any, Any]:
        require_admin_ui(ws, request)
        return run_form.choice_updates(ws, forms)

    refresh_lists.click(do_refresh_lists, None, listed, api_visibility="private", queue=False)
    run_form.wire_forms(ws, forms, outputs, started)
    return forms


def build(ws: Workspace, blocks: gr.Blocks, tab: gr.Tab) -> None:
    """The tab's contents; ``tab`` is the Runs tab itself, whose first opening draws the forms."""
    # ------------------------------------------------------------------ launch forms (admins)
    kinds = launch_kinds()
    opened = gr.State(False)  # this page has opened the tab: its forms are drawn (once)
    with gr.Column(visible=False, elem_id="runs-launch") as launch_box:
        gr.Markdown(
            "### Launch a run\nRuns execute as background jobs (one GPU job at a time; the rest queue)."
        )

        # Drawn on the tab's first opening, for admins only: the forms are half of the
        # studio's blocks, and each block costs start-up time before the first page answers
        # (bench/cold_start.py). The API endpoints below exist from the start all the same.
        @gr.render(inputs=[opened], triggers=[opened.change], show_progress="hidden")
        def launch_forms(is_open: bool, request: gr.Request) -> None:
            if is_open and is_admin(ws, request):
                draw_forms(ws, kinds, launch_outputs, started)

        launch_result = gr.Markdown(elem_id="launch-result")
    # queued: an unqueued event's State output fires no change, so nothing would be drawn
    tab.select(lambda: True, None, opened, api_visibility="private", show_progress="hidden")

    # ------------------------------------------------------------------ runs table
    gr.Markdown("### Runs")
    with gr.Row():
        status_filter = gr.Dropdown(
            STATUS_FILTERS, value="all", label="Show", scale=0, min_width=180, elem_id="runs-filter"
        )
        page_label = gr.Markdown(elem_id="runs-page")
        page_prev = gr.Button("◀ Newer", size="sm", scale=0, min_width=100)
        page_next = gr.Button("Older ▶", size="sm", scale=0, min_width=100)
    page = gr.State(0)
    table = gr.Dataframe(
        headers=TABLE_HEADERS,
        datatype=TABLE_TYPES,
        interactive=False,
        wrap=True,
        elem_id="runs-table",
        label="Runs (newest first; click a row for details)",
        column_widths=["4%", "13%", "11%", "21%", "7%", "7%", "13%", "24%"],
        max_height=720,
    )
    timer = gr.Timer(REFRESH_S)
    table_sig = gr.State("")
    table_outputs = [table, page_label, page]

    # ------------------------------------------------------------------ run detail
    detail = run_detail.build(ws)

    def table_view(page_no: Any, status: str, request: gr.Request | None = None) -> tuple[Any, ...]:
        if request is not None and access.closed_while_judging(ws, request):
            return [], access.CLOSED_WHILE_JUDGING, 0
        return table_page(ws, int_or_none(page_no) or 0, status)

    # ------------------------------------------------------------------ load / refresh
    def on_load(request: gr.Request) -> dict[Any, Any]:
        admin = is_admin(ws, request)
        rows, label, shown = table_view(0, "all", request)
        return {
            launch_box: gr.update(visible=admin),
            detail.actions: gr.update(visible=admin),
            table: rows,
            page_label: label,
            page: shown,
        }

    load_outputs = [launch_box, detail.actions, *table_outputs]
    blocks.load(on_load, None, load_outputs, api_visibility="private")

    def on_timer(
        page_no: Any,
        status: str,
        rid: Any,
        old_tsig: str,
        old_lsig: str,
        old_sig: str,
        step: Any,
        request: gr.Request,
    ) -> tuple[Any, ...]:
        rows, label, shown = table_view(page_no, status, request)
        tsig = run_detail.digest(rows, label, shown)
        table_part = (tsig, rows, label, shown) if tsig != old_tsig else (old_tsig, *[gr.skip()] * 3)
        return (*table_part, *detail.refresh(rid, old_lsig, old_sig, step, request))

    timer.tick(
        on_timer,
        [page, status_filter, detail.run_id, table_sig, detail.light_sig, detail.sig, detail.sample_step],
        [table_sig, *table_outputs, *detail.light_outputs, *detail.heavy_outputs],
        api_visibility="private",
        show_progress="hidden",
    )

    def turn(delta: int) -> Any:
        def go(page_no: Any, status: str, request: gr.Request) -> tuple[Any, ...]:
            return table_view((int_or_none(page_no) or 0) + delta, status, request)

        return go

    def first_page(status: str, request: gr.Request) -> tuple[Any, ...]:
        return table_view(0, status, request)

    page_prev.click(turn(-1), [page, status_filter], table_outputs, api_visibility="private")
    page_next.click(turn(1), [page, status_filter], table_outputs, api_visibility="private")
    status_filter.input(first_page, [status_filter], table_outputs, api_visibility="private")

    def pick_row(data: Any, evt: gr.SelectData, request: gr.Request) -> tuple[Any, ...]:
        row = evt.row_value if getattr(evt, "row_value", None) else None
        if row is None:
            index = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
            try:
                row = list(data.iloc[int(index)])
            except (AttributeError, IndexError, TypeError, ValueError):
                return tuple(gr.skip() for _ in detail.outputs)
        return detail.show(row[0], request=request)

    def open_run(rid: Any, request: gr.Request) -> tuple[Any, ...]:
        return detail.show(rid, request=request)

    table.select(pick_row, [table], detail.outputs, api_visibility="private", show_progress="hidden")
    detail.open_btn.click(open_run, [detail.run_id], detail.outputs, api_visibility="private")
    detail.run_id.submit(open_run, [detail.run_id], detail.outputs, api_visibility="private")
    detail.sample_step.input(
        detail.pick_step, [detail.run_id, detail.sample_step], detail.samples, api_visibility="private"
    )

    # ------------------------------------------------------------------ launch (admins)
    def started(rid: int) -> tuple[Any, ...]:
        try:
            jobs.tick(ws)
        except Exception as exc:  # noqa: BLE001 - the queue worker retries
            log.warning("could not start the queue at once: %s", exc)
        run = jobs.get_run(ws, int(rid))
        message = f"Launched run **#{run.id}** ({run.kind}): {run.status} at launch" + (
            " — it starts when the GPU is free." if run.status == "queued" else "."
        )
        message += " Follow it in the table and the detail below."
        rows, label, shown = table_page(ws, 0, "all")
        return (message, rows, label, shown, *detail.show(run.id))

    launch_outputs = [launch_result, *table_outputs, *detail.outputs]
    run_form.wire_api(ws, kinds, launch_outputs, started)

    # ------------------------------------------------------------------ cancel / resume (admins)
    def run_action(
        act: Callable[[Workspace, int], jobs.Run], say: Callable[[jobs.Run], str], doc: str
    ) -> Callable[..., tuple[Any, ...]]:
        def handler(rid: Any, request: gr.Request) -> tuple[Any, ...]:
            require_admin_ui(ws, request)
            if int_or_none(rid) is None:
                raise gr.Error("Choose a run first.")
            try:
                run = act(ws, int(rid))
            except jobs.JobError as exc:
                raise gr.Error(str(exc)) from None
            return (say(run), *detail.show(run.id))

        handler.__doc__ = doc
        return handler

    action_outputs = [detail.action_result, *detail.outputs]
    cancel = run_action(
        jobs.cancel_run,
        lambda run: f"Run #{run.id} {run.status}: {run.message}",
        "Cancel a queued or running run (admins only).",
    )
    resume = run_action(
        jobs.resume_run,
        lambda run: f"Run #{run.id} resumed: it continues where it stopped ({run.status}).",
        "Queue an interrupted, cancelled or failed run again; it continues where it stopped (admins only).",
    )
    # no concurrency limit: a cancel must never wait behind other events
    detail.cancel_btn.click(
        cancel, [detail.run_id], action_outputs, api_name="cancel_run", concurrency_limit=None
    )
    detail.resume_btn.click(resume, [detail.run_id], action_outputs, api_name="resume_run")
