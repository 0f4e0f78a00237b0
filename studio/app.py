"""The studio: a Gradio Blocks app with one module per tab, behind a login.

Login uses Gradio's own auth with our password check (Argon2 hashes in the database),
so every page, file and API route of the server requires a session cookie.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import gradio as gr
from starlette.middleware import Middleware

from backend import jobs
from backend.db import migrate
from backend.jobs import scheduler
from backend.users import PermissionDenied
from backend.workspace import Workspace
from studio import startup, tab_annotate, tab_arena, tab_datasets, tab_results, tab_review, tab_runs
from studio.access import FileAccess
from studio.auth_guard import RequireLogin
from studio.session import current_user
from studio.sessions import SessionPolicy, authenticate

STATIC_DIR = Path(__file__).parent / "static"
DEFAULT_CONCURRENCY_LIMIT = 8
MAX_UPLOAD_MB_ENV = "RECAP_STUDIO_MAX_UPLOAD_MB"
DEFAULT_MAX_UPLOAD_MB = 1024  # bigger corpora are imported from a server path, not uploaded


def max_upload_mb(value: int | None = None) -> int:
    """``--max-upload-mb`` wins, then ``RECAP_STUDIO_MAX_UPLOAD_MB``, then 1024 MB."""
    raw = value if value is not None else os.environ.get(MAX_UPLOAD_MB_ENV) or DEFAULT_MAX_UPLOAD_MB
    try:
        mb = int(raw)
    except ValueError:
        raise ValueError(f"${MAX_UPLOAD_MB_ENV}={raw!r} is not a whole number of megabytes") from None
    if mb < 1:
        raise ValueError(f"the upload limit must be at least 1 MB (got {mb})")
    return mb


def private_gradio_cache() -> str:
    """Gradio copies uploads and every file it serves into ``GRADIO_TEMP_DIR`` (by default
    the shared ``/tmp/gradio``, readable by other local users); unless the user chose a folder,
    use a fresh one that only this user can read (mkdtemp makes it 0700)."""
    if not os.environ.get("GRADIO_TEMP_DIR"):
        os.environ["GRADIO_TEMP_DIR"] = tempfile.mkdtemp(prefix="recap-studio-gradio-")
    return os.environ["GRADIO_TEMP_DIR"]


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
            with gr.Tab("Runs", id="runs", elem_id="tab-runs") as runs_tab:
                tab_runs.build(ws, blocks, runs_tab)
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


def serve(
    ws: Workspace,
    host: str = "127.0.0.1",
    port: int = 7860,
    quiet: bool = False,
    *,
    session_hours: float | None = None,
    max_upload: int | None = None,
) -> None:
    """Start the studio server (blocks until stopped).

    ``session_hours``: how long a login lasts (default $RECAP_STUDIO_SESSION_HOURS or 12);
    ``max_upload``: the largest uploaded file in MB (default $RECAP_STUDIO_MAX_UPLOAD_MB or 1024).
    """
    sessions = SessionPolicy.hours(ws, session_hours)
    upload_mb = max_upload_mb(max_upload)
    migrate(ws)
    jobs.reconcile_orphans(ws)  # runs whose process died while no studio ran become 'interrupted'
    scheduler.start_queue_worker(ws)  # a daemon thread: backend.jobs.tick(ws) every ~2 s
    private_gradio_cache()  # before the app is built: components and the server read it then
    # 8 events of one kind at once (default 1). Set through Gradio's variable rather than
    # blocks.queue(), which would build the whole server app a second time at start-up.
    os.environ.setdefault("GRADIO_DEFAULT_CONCURRENCY_LIMIT", str(DEFAULT_CONCURRENCY_LIMIT))
    blocks = build_app(ws)
    blocks.launch(
        server_name=host,
        server_port=port,
        auth=authenticate(ws),  # Argon2 check with back-off per name and address (429 when locked)
        auth_message="RECAP Studio: log in with your studio account (admins add users with `recap-studio user add`).",
        # handlers may hand out stored files; who may fetch which is decided per user by
        # FileAccess in the middleware (annotators: no originals, nothing of a blinded dataset)
        allowed_paths=[str(ws.thumbs_dir), str(ws.images_dir)],
        show_error=True,
        ssr_mode=False,
        quiet=quiet,
        footer_links=[],
        head=_head(),
        max_file_size=upload_mb * 1024 * 1024,
        app_kwargs={"middleware": [Middleware(RequireLogin, file_access=FileAccess(ws), sessions=sessions)]},
        css=_css(),
        prevent_thread_lock=True,  # to resume the garbage collector once the server answers
    )
    startup.resume_collector()  # the recap-studio script paused it for the start-up (studio/startup.py)
    blocks.block_thread()
