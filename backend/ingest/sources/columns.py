"""Which table column holds the image and which the alt-text, and what a cell means.

Shared by the table and Hugging Face sources so both accept the same column names and
give the same reasons for the same bad cells.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.ingest.items import ItemError, clean_caption, describe_unicode_error
from backend.ingest.report import SourceError
from backend.ingest.text import UTF8, decode_text, unpaired_surrogate

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


@dataclass(frozen=True)
class BadCell:
    """A cell its reader could not turn into a value (e.g. an Arrow string that is not UTF-8)."""

    problem: str  # completes "column 'x' ...", e.g. "is not valid UTF-8 (invalid byte e9 at byte 3)"


def is_missing(value: Any) -> bool:
    """None, a blank string, or NaN: how pandas (and JSON written by it) marks a missing value."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    return isinstance(value, float) and math.isnan(value)


def _path_text(ref: str, column: str) -> str:
    bad = unpaired_surrogate(ref)
    if bad is not None:
        raise ItemError(
            f"column {column!r} holds a path with an unpaired surrogate ({bad}), which is not text"
        )
    if "\0" in ref:
        raise ItemError(f"column {column!r} holds a path with a NUL character")
    return ref


def image_cell(
    value: Any, join: Callable[[str], Path], column: str
) -> tuple[bytes | None, Path | None, str | None]:
    """(bytes, path, reference) for one image cell.

    A cell holds a path relative to the table's folder, raw bytes, or a Hugging Face
    image struct ``{"bytes": ..., "path": ...}``. Paths go through ``join`` (a
    :class:`~backend.ingest.files.SafeJoiner`): absolute paths, ``..`` and symlinks are
    refused here, before anything is opened. Any other value (a number, a struct whose
    ``bytes`` is not bytes) is refused with its type, never converted: ``bytes(10**12)``
    would allocate a terabyte.
    """
    if isinstance(value, BadCell):
        raise ItemError(f"column {column!r} {value.problem}")
    if isinstance(value, dict):
        data = value.get("bytes")
        ref = value.get("path")
        if ref is not None and not isinstance(ref, str):
            raise ItemError(
                f"column {column!r} holds an image whose 'path' is {type(ref).__name__}, not text"
            )
        if data is not None:
            if not isinstance(data, bytes | bytearray | memoryview):
                raise ItemError(
                    f"column {column!r} holds an image whose 'bytes' is {type(data).__name__}, not bytes"
                )
            return bytes(data), None, _path_text(ref, column) if ref else None
        value = ref
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value), None, None
    if is_missing(value):
        raise ItemError(f"missing value in column {column!r}")
    if not isinstance(value, str):
        raise ItemError(f"column {column!r} holds {type(value).__name__}, not a file path")
    ref = _path_text(value.strip(), column)
    if "://" in ref:
        raise ItemError(f"remote URL not downloaded (only local files are imported): {ref}")
    return None, join(ref), ref


def caption_cell(value: Any, column: str) -> tuple[str | None, str]:
    """(alt-text, encoding it was read as) of one cell. Empty, null or NaN means "no
    alt-text" (the image is still imported, as with a folder image without a sidecar).
    Bytes are decoded by :func:`backend.ingest.text.decode_text`'s chain; text cells are
    already text (their reader says in what encoding the row was read)."""
    if isinstance(value, BadCell):
        raise ItemError(f"column {column!r} {value.problem}")
    if is_missing(value):
        return None, UTF8
    encoding = UTF8
    if isinstance(value, bytes | bytearray | memoryview):
        decoded = decode_text(bytes(value), f"column {column!r}")
        value, encoding = decoded.text, decoded.encoding
    if not isinstance(value, str):
        raise ItemError(f"column {column!r} holds {type(value).__name__}, not text")
    bad = unpaired_surrogate(value)
    if bad is not None:
        raise ItemError(f"column {column!r} holds an unpaired surrogate ({bad}), which is not text")
    return clean_caption(value), encoding


def arrow_cells(array: Any, text_as_bytes: bool = False) -> list[Any]:
    """The Python values of one Arrow column (an Array or ChunkedArray) of a batch.

    Why not ``to_pylist()`` on the batch: one string that is not UTF-8 (Arrow does not check
    what a Parquet or ``save_to_disk`` file claims) made it raise for the whole batch and
    stopped the import. Here the cells that fail become :class:`BadCell` (their row is
    skipped), or with ``text_as_bytes`` the cells of such a string chunk come as bytes, so a
    caption in a legacy encoding is read by :func:`backend.ingest.text.decode_text`
    instead of refused. A chunk that is all UTF-8 takes Arrow's own fast conversion.
    """
    import pyarrow as pa

    chunks = array.chunks if isinstance(array, pa.ChunkedArray) else [array]
    values: list[Any] = []
    for chunk in chunks:
        if pa.types.is_dictionary(chunk.type):
            chunk = chunk.dictionary_decode()
        try:
            values.extend(chunk.to_pylist())  # the fast path, for a column that is all UTF-8
            continue
        except UnicodeDecodeError:
            pass
        if text_as_bytes and pa.types.is_string(chunk.type):
            values.extend(chunk.view(pa.binary()).to_pylist())
        elif text_as_bytes and pa.types.is_large_string(chunk.type):
            values.extend(chunk.view(pa.large_binary()).to_pylist())
        else:
            for index in range(len(chunk)):
                try:
                    values.append(chunk[index].as_py())
                except UnicodeDecodeError as exc:
                    values.append(BadCell(f"is not valid UTF-8 ({describe_unicode_error(exc)})"))
    return values
