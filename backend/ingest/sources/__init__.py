"""Sources: each module turns one on-disk layout into a stream of :class:`Item`.

Every source is opened in two steps. ``open_*`` checks the source as a whole (exists,
readable, columns present) and raises :class:`SourceError` *before anything is written*;
``items()`` then streams the items lazily, reporting per-item problems as ``Item.error``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from backend.ingest.items import Item


@dataclass(frozen=True)
class SourceOptions:
    image_column: str | None = None
    caption_column: str | None = None


class Source(Protocol):
    format: str
    name: str  # shown in progress messages and caption sources ("import:<name>")
    total: int | None  # items expected, when cheap to know

    def items(self) -> Iterator[Item]: ...


def display_name(path: Path) -> str:
    """The source's own name, even for '.' or a trailing slash."""
    return Path(os.path.abspath(path)).name or str(path)
