"""Datasets tab (placeholder until built)."""

from __future__ import annotations

import gradio as gr

from backend.workspace import Workspace


def build(ws: Workspace, blocks: gr.Blocks) -> None:
    gr.Markdown("Datasets: coming soon")
