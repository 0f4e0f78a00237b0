"""Which table column holds the image and which the alt-text, and what a cell means.

Shared by the table and Hugging Face sources so both accept the same column names and
give the same reasons for the same bad cells.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from backend.ingest.items import ItemError, clean_caption, decode_text
from backend.ingest.report import SourceError

IMAGE_CANDIDATES = ("image", "image_path", "path", "file", "file_name", "filename", "img", "image_file")
# matched case-insensitively, so "TEXT" (LAION's column) is covered by "text"
CAPTION_CANDIDATES = ("caption", "text", "alt", "alt_text", "alttext", "description", "prompt")


def pick_column(
    columns: Sequence[str],
    configured: str | None,
    candidates: Sequence[str],
    role: str,
    flag: str,
    where: str,
) -> str:
    """The configured column (exact, else a unique case-insensitive match) or the first
    common name present; otherwise a SourceError that lists the columns there are."""
    listing = ", ".join(repr(c) for c in columns) or "(none)"
    if configured:
        if configured in columns:
            return configured
        folded = [c for c in columns if c.casefold() == configured.casefold()]
        if len(folded) == 1:
            return folded[0]
        raise SourceError(f"{where} has no column {configured!r}; its columns are: {listing}")
    by_fold: dict[str, str] = {}
    for column in columns:
        by_fold.setdefault(column.casefold(), column)
    for candidate in candidates:
        if candidate in by_fold:
            return by_fold[candidate]
    raise SourceError(
        f"cannot tell which column of {where} holds the {role}: its columns are {listing}, none of them "
        f"is one of {', '.join(candidates)}; name it with {flag}"
    )


def pick_table_columns(
    columns: Sequence[str], image_column: str | None, caption_column: str | None, where: str
) -> tuple[str, str]:
    image = pick_column(columns, image_column, IMAGE_CANDIDATES, "image paths", "--image-column", where)
    caption = pick_column(columns, caption_column, CAPTION_CANDIDATES, "captions", "--caption-column", where)
    if image == caption:
        raise SourceError(f"the image and caption columns of {where} are both {image!r}; name them apart")
    return image, caption


def image_cell(
    value: Any, join: Callable[[str], Path], column: str
) -> tuple[bytes | None, Path | None, str | None]:
    """(bytes, path, reference) for one image cell.

    A cell holds a path relative to the table's folder, raw bytes, or a Hugging Face
    image struct ``{"bytes": ..., "path": ...}``. Paths go through ``join`` (a
    :class:`~backend.ingest.files.SafeJoiner`): absolute paths, ``..`` and symlinks are
    refused here, before anything is opened.
    """
    if isinstance(value, dict):
        data = value.get("bytes")
        ref = value.get("path")
        if data is not None:
            return bytes(data), None, ref if isinstance(ref, str) and ref else None
        value = ref
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value), None, None
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ItemError(f"missing value in column {column!r}")
    if not isinstance(value, str):
        raise ItemError(f"column {column!r} holds {type(value).__name__}, not a file path")
    ref = value.strip()
    if "://" in ref:
        raise ItemError(f"remote URL not downloaded (only local files are imported): {ref}")
    return None, join(ref), ref


def caption_cell(value: Any, column: str) -> str | None:
    """The alt-text of one cell. Empty or null means "no alt-text" (the image is still
    imported, as with a folder image without a sidecar)."""
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        value = decode_text(bytes(value), f"column {column!r}")
    if not isinstance(value, str):
        raise ItemError(f"column {column!r} holds {type(value).__name__}, not text")
    return clean_caption(value)
