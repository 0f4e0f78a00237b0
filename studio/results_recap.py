"""Results → RECAP table: one table per generated dataset, as RECAP prints its main result.

Rows are checkpoints × prompt regime with their caption condition, mix and captioner; columns
FID, O-FID, SOA-C, SOA-I, CA, PA, RP, CLIP-S, GenEval and the human success rate (from a verdict
campaign over the dataset, where one exists), each with its 95% interval; a chance-level row
(the mismatched-prompt baseline) closes each table. CSV and LaTeX downloads hold every table
shown. Data: :func:`backend.recap_table.recap_table` (no torch here).

Closed to annotators while an Arena campaign is open, like the other Results views: a
checkpoint's numbers beside its dataset would tell them which system made what they judge.
"""

from __future__ import annotations

import hashlib
import html
from pathlib import Path
from typing import Any

import gradio as gr

from backend.recap_table import RecapTable, recap_table, to_csv, to_latex
from backend.workspace import Workspace
from studio import access
from studio.results_auto import ALL, download_folder, evaluated_datasets

NOTE = (
    "Proportions (SOA, PA, RP, GenEval, human success) in %; [95% bootstrap interval over prompts]; "
    "the last row of each table is the mismatched-prompt baseline (each image scored against another "
    "prompt's requirements). CA is TISE's counting RMSE (lower is better); FID/O-FID have no interval."
)


def tables_for(ws: Workspace, chosen: str | None) -> list[RecapTable]:
    names = [n for n in evaluated_datasets(ws) if chosen in (None, ALL) or n == chosen]
    return [t for t in (recap_table(ws, n) for n in names) if t.rows]


def tables_html(tables: list[RecapTable]) -> str:
    """Every table as HTML (escaped), one ``<table>`` per dataset."""
    if not tables:
        return (
            "<p><em>No evaluated datasets yet.</em> Run <code>recap-studio eval --dataset generated-run-ID "
            "--metrics soa,ca,pa,geneval,... --detector oracle</code>.</p>"
        )
    parts = []
    for t in tables:
        human = (
            f" · human success from campaign <b>{html.escape(t.human_campaign)}</b>"
            if t.human_campaign
            else ""
        )
        head = "".join(f"<th>{html.escape(label)}</th>" for label in t.labels)
        body = []
        rows = t.display()
        for i, row in enumerate(rows):
            cls = ' class="recap-chance"' if i == len(rows) - 1 else ""
            body.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>")
        parts.append(
            f'<div class="recap-table" data-dataset="{html.escape(t.dataset)}">'
            f"<h4>{html.escape(t.dataset)}{human}</h4>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
        )
    return f"<p>{html.escape(NOTE)}</p>" + "".join(parts)


def write_export(text: str, suffix: str) -> Path:
    """A content-named file in the studio's private download folder (see results_auto)."""
    folder = download_folder()
    digest = hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()[:12]
    path = folder / f"recap_table_{digest}.{suffix}"
    if not path.exists():
        path.write_text(text, encoding="utf-8")
    return path


def build(ws: Workspace, blocks: gr.Blocks, tab: gr.Tab | None = None) -> None:
    with gr.Row():
        dataset = gr.Dropdown([ALL], value=ALL, label="Generated dataset", scale=2, elem_id="recap-dataset")
        refresh = gr.Button("↻ Refresh", size="sm", scale=0, min_width=100, elem_id="recap-refresh")
        csv_button = gr.DownloadButton("Download CSV", size="sm", scale=0, min_width=140, elem_id="recap-csv")
        tex_button = gr.DownloadButton(
            "Download LaTeX", size="sm", scale=0, min_width=140, elem_id="recap-latex"
        )
    tables = gr.HTML(elem_id="recap-tables")

    def view(chosen: str | None, request: gr.Request) -> tuple[Any, ...]:
        off = gr.update(value=None, interactive=False)
        if access.closed_while_judging(ws, request):
            return gr.update(choices=[ALL], value=ALL), html.escape(access.CLOSED_WHILE_JUDGING), off, off
        names = evaluated_datasets(ws)
        chosen = chosen if chosen in names else ALL
        shown = tables_for(ws, chosen)
        if not shown:
            return gr.update(choices=[ALL, *names], value=chosen), tables_html(shown), off, off
        return (
            gr.update(choices=[ALL, *names], value=chosen),
            tables_html(shown),
            gr.update(value=str(write_export(to_csv(shown), "csv")), interactive=True),
            gr.update(value=str(write_export(to_latex(shown), "tex")), interactive=True),
        )

    outputs = [dataset, tables, csv_button, tex_button]
    blocks.load(view, [dataset], outputs, api_visibility="private")
    refresh.click(view, [dataset], outputs, api_visibility="private")
    dataset.input(view, [dataset], outputs, api_visibility="private")
    if tab is not None:
        tab.select(view, [dataset], outputs, api_visibility="private")
