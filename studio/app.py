"""The studio: a Gradio Blocks app with one module per tab, behind a login.

Login uses Gradio's own auth with our password check (Argon2 hashes in the database),
so every page, file and API route of the server requires a session cookie.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr
from starlette.middleware import Middleware

from backend import jobs
from backend.db import migrate
from backend.users import PermissionDenied, verify_login
from backend.workspace import Workspace
from studio import tab_annotate, tab_arena, tab_datasets, tab_results, tab_review, tab_runs
from studio.access import FileAccess
from studio.auth_guard import RequireLogin
from studio.session import current_user

STATIC_DIR = Path(__file__).parent / "static"


def _head() -> str:
    """Scripts injected in the page head (keyboard shortcuts, autosave helpers)."""
    scripts = [p.read_text(encoding="utf-8") for p in sorted(STATIC_DIR.glob("*.js"))]
    return "\n".join(f"<script>\n{s}\n</script>" for s in scripts)


def _css() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(STATIC_DIR.glob("*.css")))


def build_app(ws: Workspace) -> gr.Blocks:
    with gr.Blocks(title="RECAP Studio") as blocks:
        with gr.Row(elem_id="studio-header"):
            gr.Markdown("## RECAP Studio")
            who = gr.Markdown(elem_id="whoami")
            gr.Button("Log out", link="/logout", size="sm", scale=0, elem_id="logout")
        with gr.Tabs(elem_id="main-tabs"):
            with gr.Tab("Datasets", id="datasets", elem_id="tab-datasets"):
                tab_datasets.build(ws, blocks)
            with gr.Tab("Annotate", id="annotate", elem_id="tab-annotate"):
                tab_annotate.build(ws, blocks)
            with gr.Tab("Review", id="review", elem_id="tab-review"):
                tab_review.build(ws, blocks)
            with gr.Tab("Runs", id="runs", elem_id="tab-runs"):
                tab_runs.build(ws, blocks)
            with gr.Tab("Arena", id="arena", elem_id="tab-arena"):
                tab_arena.build(ws, blocks)
            with gr.Tab("Results", id="results", elem_id="tab-results"):
                tab_results.build(ws, blocks)

        def show_user(request: gr.Request) -> str:
            try:
                user = current_user(ws, request)
            except PermissionDenied:
                return "not logged in"
            return f"Logged in as **{user.name}** ({user.role})"

        blocks.load(show_user, None, who)
    return blocks


def serve(ws: Workspace, host: str = "127.0.0.1", port: int = 7860, quiet: bool = False) -> None:
    """Start the studio server (blocks until stopped)."""
    migrate(ws)
    jobs.reconcile_orphans(ws)  # runs whose process died while no studio ran become 'interrupted'
    tab_runs.start_queue_worker(ws)  # a daemon thread: backend.jobs.tick(ws) every ~2 s
    blocks = build_app(ws)
    blocks.queue(default_concurrency_limit=8)
    blocks.launch(
        server_name=host,
        server_port=port,
        auth=lambda name, password: verify_login(ws, name, password),
        auth_message="RECAP Studio: log in with your studio account (admins add users with `recap-studio user add`).",
        # handlers may hand out stored files; who may fetch which is decided per user by
        # FileAccess in the middleware (annotators: no originals, nothing of a blinded dataset)
        allowed_paths=[str(ws.thumbs_dir), str(ws.images_dir)],
        show_error=True,
        ssr_mode=False,
        quiet=quiet,
        footer_links=[],
        head=_head(),
        app_kwargs={"middleware": [Middleware(RequireLogin, file_access=FileAccess(ws))]},
        css=_css(),
    )
