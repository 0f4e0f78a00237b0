"""Results tab: automatic metrics of generated images, RECAP's table (issue 11), the miniature experiment's table (issue 12) and human ratings from the Arena."""

from __future__ import annotations

import gradio as gr

from backend.workspace import Workspace
from studio import results_arena, results_auto, results_miniature, results_recap


def build(ws: Workspace, blocks: gr.Blocks) -> None:
    with gr.Tabs(elem_id="results-tabs"):
        with gr.Tab("Human ratings (Arena)", id="results-arena"):
            results_arena.build(ws, blocks)
        with gr.Tab("Automatic metrics", id="results-auto", elem_id="results-auto-tab") as auto_tab:
            results_auto.build(ws, blocks, tab=auto_tab)
        with gr.Tab("RECAP table", id="results-recap", elem_id="results-recap-tab") as recap_tab:
            results_recap.build(ws, blocks, tab=recap_tab)
        with gr.Tab("RECAP in miniature", id="results-miniature", elem_id="results-miniature-tab") as mini_tab:
            results_miniature.build(ws, blocks, tab=mini_tab)
