"""Results → RECAP in miniature: the table of an ``experiment miniature`` run, with its sample grids.

The experiment's driver job writes ``table.md`` (arms with intervals, mismatched-prompt rows, the
paired RECAP Mix − Alttext difference, caption accuracy against the ground truth, stage minutes)
and a grid per arm into its run folder. This view shows exactly those files for the chosen run, so
what the Results tab says is what ``--json`` printed: nothing is recomputed here.

Closed to annotators while an Arena campaign is open, like the other Results views.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import gradio as gr

from backend import jobs
from backend.workspace import Workspace
from studio import access

KIND = "miniature"
NONE_YET = (
    "No finished *RECAP in miniature* experiment yet. Start one from the Runs tab "
    "(**RECAP in miniature (the whole experiment)**) or with `recap-studio experiment miniature --preset cpu`."
)


def experiment_runs(ws: Workspace) -> list[tuple[str, int]]:
    """(label, run id) of succeeded experiment runs that wrote a table, newest first."""
    runs = jobs.list_runs(ws, kind=KIND, status="succeeded", limit=50)
    out = []
    for run in runs:
        if (jobs.run_dir(ws, run) / "table.json").is_file():
            out.append((f"run {run.id} · preset {run.config.get('preset', '?')}", int(run.id)))  # type: ignore[arg-type]
    return out


def experiment_view(ws: Workspace, run_id: int) -> tuple[str, list[tuple[str, str]]]:
    """The run's table (markdown as written) and its grids as (image path, caption) pairs."""
    folder = jobs.run_dir(ws, jobs.get_run(ws, run_id))
    table = json.loads((folder / "table.json").read_text(encoding="utf-8"))
    markdown = (folder / "table.md").read_text(encoding="utf-8")
    prompts = table.get("grid_prompts", [])
    seeds = len(table.get("seeds", []))
    head = (
        f"**Run {run_id}** · preset `{html.escape(str(table.get('preset')))}` · "
        f"{table.get('prompts', '?')} held-out prompts × {seeds} seeds · generated dataset "
        f"`{html.escape(str(table.get('generated_dataset')))}`\n\n"
    )
    grids: list[tuple[str, str]] = []
    for arm, rel in table.get("grids", {}).items():
        path = ws.inside(rel)
        if Path(path).is_file():
            grids.append((str(path), f"{arm}: {len(prompts)} prompts (rows) × {seeds} seeds (columns)"))
    listing = "\n\n**Grid rows, top to bottom:** " + " · ".join(
        f"{i + 1}. {html.escape(p)}" for i, p in enumerate(prompts)
    )
    return head + markdown + (listing if prompts else ""), grids


def build(ws: Workspace, blocks: gr.Blocks, tab: gr.Tab | None = None) -> None:
    with gr.Row():
        chosen = gr.Dropdown([], label="Experiment run", scale=2, elem_id="miniature-run")
        refresh = gr.Button("↻ Refresh", size="sm", scale=0, min_width=100, elem_id="miniature-refresh")
    table = gr.Markdown(NONE_YET, elem_id="miniature-table")
    grids = gr.Gallery(
        label="Sample grids per arm", columns=3, height=560, object_fit="contain", elem_id="miniature-grids"
    )

    def view(run_id: Any, request: gr.Request) -> tuple[Any, ...]:
        if access.closed_while_judging(ws, request):
            return gr.update(choices=[], value=None), html.escape(access.CLOSED_WHILE_JUDGING), []
        runs = experiment_runs(ws)
        if not runs:
            return gr.update(choices=[], value=None), NONE_YET, []
        ids = [rid for _, rid in runs]
        run_id = int(run_id) if run_id not in (None, "") and int(run_id) in ids else ids[0]
        text, pictures = experiment_view(ws, run_id)
        return gr.update(choices=runs, value=run_id), text, pictures

    outputs = [chosen, table, grids]
    blocks.load(view, [chosen], outputs, api_visibility="private")
    refresh.click(view, [chosen], outputs, api_visibility="private")
    chosen.input(view, [chosen], outputs, api_visibility="private")
    if tab is not None:
        tab.select(view, [chosen], outputs, api_visibility="private")
