"""Placeholder, replaced by the arena work (issue 5)."""

from __future__ import annotations

import gradio as gr

from backend.workspace import Workspace


def build(ws: Workspace, blocks: gr.Blocks) -> None:
    gr.Markdown("Not built yet.")
