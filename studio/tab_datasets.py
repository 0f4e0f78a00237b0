"""Datasets tab: every dataset with its image and caption counts, statistics and plots,
and for admins import, export and delete.

Design notes
- The admin controls are hidden for annotators, but Gradio endpoints exist for every
  event, so each admin handler checks the role on the server with
  :func:`studio.session.require_admin_ui` first; a direct API call as an annotator gets a
  clear "Not allowed" error. Each admin action has an explicit ``api_name``.
- Import takes either a path on the server or uploaded files. Uploads are copied under
  the workspace's ``uploads/`` (a new folder per import), so the import reads from inside
  the workspace and nothing is written elsewhere. Export writes only under ``exports/``.
- Import runs with a ``gr.Progress`` bar fed by the backend's progress callback.
- An annotator gets nothing about a dataset an open Arena campaign judges: not its row,
  not its name in a dropdown, not its statistics, whatever they send
  (:func:`studio.access.hidden_datasets`, checked in every handler).
"""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from backend.datasets import all_summaries
from backend.review import kind_label, kind_sort_key
from backend.workspace import Workspace
from studio import access, datasets_admin
from studio.datasets_admin import import_result_md, stage_uploads
from studio.session import is_admin
from studio.tab_review import build_stats_section, pick_dataset
from studio.ui_common import parent_tab

# import_result_md and stage_uploads live in datasets_admin; callers found them here before
__all__ = ["build", "datasets_frame", "import_result_md", "stage_uploads"]


# --------------------------------------------------------------------------- tables


def datasets_frame(ws: Workspace, hidden: set[str] | frozenset[str] = frozenset()) -> pd.DataFrame:
    """One row per dataset (but the ``hidden`` ones): name, images, then the current caption
    count of each kind."""
    summaries = all_summaries(ws, exclude=hidden)
    kinds = sorted({k for s in summaries for k in s.captions}, key=kind_sort_key)
    columns = ["dataset", "images", *[kind_label(k) for k in kinds]]
    rows = [[s.name, s.images, *[s.captions.get(k, 0) for k in kinds]] for s in summaries]
    return pd.DataFrame(rows, columns=columns)


# --------------------------------------------------------------------------- the tab


def build(ws: Workspace, blocks: gr.Blocks) -> None:
    """The Datasets tab: the table, the admin actions (shown to admins on load), statistics."""
    tab = parent_tab()

    with gr.Row(equal_height=False):
        gr.Markdown(
            "### Datasets\nImages and their current caption variants per kind. "
            "Select a row to see its statistics below.",
            elem_id="datasets-intro",
        )
        refresh_btn = gr.Button("↻ Refresh", size="sm", scale=0, min_width=100, elem_id="datasets-refresh")
    table = gr.Dataframe(
        value=pd.DataFrame(columns=["dataset", "images"]),
        interactive=False,
        wrap=True,
        elem_id="datasets-table",
        label="Datasets",
        show_label=False,
    )

    admin_note = gr.Markdown(
        "_Import, export and delete are admin actions._", visible=False, elem_id="datasets-annotator-note"
    )
    with gr.Column(visible=False, elem_id="datasets-admin") as admin_col:
        controls = datasets_admin.layout()

    with gr.Accordion("Statistics", open=True, elem_id="datasets-stats"):
        stats = build_stats_section(ws, prefix="datasets-")
        stats_ds = stats.dataset

    # ------------------------------------------------------------------ refresh

    ds_dropdowns = [controls.export_ds, controls.delete_ds, stats_ds]

    def table_and_lists(
        export_value: str | None,
        delete_value: str | None,
        stats_value: str | None,
        hidden: set[str] | frozenset[str] = frozenset(),
    ):
        frame = datasets_frame(ws, hidden)
        names = list(frame["dataset"])
        return (
            frame,
            gr.update(choices=names, value=pick_dataset(names, export_value)),
            gr.update(choices=names, value=delete_value if delete_value in names else None),
            gr.update(choices=names, value=pick_dataset(names, stats_value)),
        )

    def refresh_all(export_value, delete_value, stats_value, request: gr.Request):  # noqa: ANN001, ANN202
        return table_and_lists(export_value, delete_value, stats_value, access.hidden_datasets(ws, request))

    refresh_outputs = [table, *ds_dropdowns]

    def on_load(export_value, delete_value, stats_value, request: gr.Request):  # noqa: ANN001, ANN202
        admin = is_admin(ws, request)
        return (
            *refresh_all(export_value, delete_value, stats_value, request),
            gr.update(visible=admin),
            gr.update(visible=not admin),
        )

    blocks.load(
        on_load, ds_dropdowns, [*refresh_outputs, admin_col, admin_note], api_visibility="private"
    ).then(stats.compute, stats.inputs, stats.outputs, api_visibility="private")
    refresh_btn.click(refresh_all, ds_dropdowns, refresh_outputs, api_visibility="private")
    if tab is not None:
        tab.select(refresh_all, ds_dropdowns, refresh_outputs, api_visibility="private")

    # statistics follow the chosen dataset (a row click or the dropdown)
    def pick_row(evt: gr.SelectData) -> Any:
        row = evt.row_value or []
        return gr.update(value=row[0]) if row else gr.skip()

    table.select(pick_row, None, stats_ds, api_visibility="private").then(
        stats.compute, stats.inputs, stats.outputs, api_visibility="private"
    )
    stats_ds.input(stats.compute, stats.inputs, stats.outputs, api_visibility="private")

    datasets_admin.wire(ws, controls, table_and_lists, refresh_outputs, stats)
