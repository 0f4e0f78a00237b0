"""The server's start-up runs with Python's cyclic garbage collector paused.

Why: ``recap-studio serve`` imports Gradio, FastAPI, SQLAlchemy and our tables and builds a few
hundred blocks: hundreds of thousands of objects, nearly all of which live as long as the server.
While they are being created CPython's collector walks them again and again (each time enough
new objects pile up), which on a 2-core machine was about a sixth of the time from the command
to the first page (measured with ``bench/cold_start.py``; the bare Gradio app there keeps the
default collector, so the bench prints the ratio against a bare app with the same pause too).

So the ``recap-studio`` console script is :func:`main` here, which pauses the collector before
importing :mod:`studio.cli`; :func:`resume_collector` runs once the server answers (and at once,
from the CLI's callback, for every other command): one full collection, then :func:`gc.freeze`
moves the survivors — the long-lived start-up objects — out of the generations later collections
scan, as the :mod:`gc` docs suggest for such objects. Importing :mod:`studio.cli` (tests, ``python
-m studio.cli``) leaves the collector alone.
"""

from __future__ import annotations

import gc


def pause_collector() -> None:
    gc.disable()


def resume_collector() -> None:
    """Collect once, freeze what survived and collect normally from now on (no-op if running)."""
    if gc.isenabled():
        return
    gc.collect()
    gc.freeze()
    gc.enable()


def main() -> None:
    """The ``recap-studio`` console script: the CLI, with the collector paused for its imports."""
    pause_collector()
    from studio.cli import app

    app()
