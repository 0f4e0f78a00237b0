"""Results tab: automatic metrics of generated images and human ratings from the Arena."""

from __future__ import annotations

import gradio as gr

from backend.workspace import Workspace
from studio import results_arena


def build(ws: Workspace, blocks: gr.Blocks) -> None:
    with gr.Tabs(elem_id="results-tabs"):
        with gr.Tab("Human ratings (Arena)", id="results-arena"):
            results_arena.build(ws, blocks)
        with gr.Tab("Automatic metrics", id="results-auto"):
            gr.Markdown("Not built yet.")
