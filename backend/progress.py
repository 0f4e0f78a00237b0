"""One progress callback shape for long work, so the CLI (rich) and the UI (gr.Progress)
can both show a bar with ETA for the same backend function."""

from __future__ import annotations

from collections.abc import Callable

# progress(done, total_or_None, message)
ProgressFn = Callable[[int, int | None, str], None]


def no_progress(_done: int, _total: int | None, _message: str) -> None:
    return None
