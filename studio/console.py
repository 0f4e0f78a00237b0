"""Terminal output shared by the ``recap-studio`` commands: consoles, errors, progress bars.

One place for the rules every command follows: an error is one line on stderr starting
with ``error:`` (never wrapped at 80 columns, so scripts can grep it), and a progress bar
appears only once work has started, so a refused command prints just its error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from backend.progress import ProgressFn

err = Console(stderr=True)
out = Console()


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on one stderr line; return the Exit to raise."""
    err.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def progress_bar(enabled: bool = True) -> Iterator[ProgressFn]:
    """A rich progress bar (ETA included) on stderr; yields a backend ProgressFn.

    The bar is drawn from the first progress call on: work refused before it starts
    (a bad source, an existing output folder) leaves no empty bar above its error.
    """
    with ExitStack() as stack:
        state: dict[str, object] = {}

        def update(done: int, total: int | None, message: str) -> None:
            if "progress" not in state:
                progress = Progress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                    TimeRemainingColumn(),
                    console=err,
                    disable=not enabled,
                    transient=False,
                )
                stack.enter_context(progress)
                state["progress"], state["task"] = progress, progress.add_task("working", total=None)
            progress, task = state["progress"], state["task"]
            progress.update(task, completed=done, total=total, description=message[:60] or "working")  # type: ignore[union-attr]

        yield update
