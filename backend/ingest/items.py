"""The one shape every source yields, and the text rules every source shares.

Why sources yield plain :class:`Item` records: the writer (validation, dedupe, atomic
insert) is then written and tested once, and a source only has to say *where* an
image and its alt-text are, or *why* it could not find them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Largest single file (image, sidecar or tar member) read into memory. The pixel limit
# guards decoding; this guards the read itself against a multi-gigabyte "image".
MAX_FILE_BYTES = 1 << 30
MAX_CAPTION_BYTES = 16 << 20

# Image-like suffixes the studio does not accept. Files with these names are reported as
# skipped (so users learn why a picture is missing) instead of being silently ignored.
UNSUPPORTED_IMAGE_SUFFIXES = frozenset(
    {
        ".svg", ".svgz", ".ico", ".cur", ".icns", ".heic", ".heif", ".avif", ".jxl", ".jp2",
        ".j2k", ".psd", ".xcf", ".tga", ".pcx", ".ppm", ".pgm", ".pbm", ".pnm", ".dds",
        ".eps", ".raw", ".cr2", ".nef", ".dng", ".arw",
    }
)  # fmt: skip


class ItemError(Exception):
    """One item cannot be imported; ``reason`` is what the report shows."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Item:
    """One image (bytes in memory, or a checked path to read) and its optional alt-text.

    ``error`` set means the source already knows the item is bad (missing file, path
    outside the source, caption that is not text ...): the writer only records the skip.
    """

    key: str  # becomes Image.original_key
    label: str  # how the report names the item
    data: bytes | None = None
    path: Path | None = None  # already passed through safe_join
    error: str | None = None
    caption: str | None = None
    caption_source: str = ""
    caption_provenance: dict[str, Any] | None = None
    meta: dict[str, Any] | None = None
    # (which text, encoding read as) for each stored text that was not UTF-8; the writer
    # lists them in the report once the image is saved (see backend.ingest.text)
    not_utf8: tuple[tuple[str, str], ...] = ()
    # where the image's bytes start in its shard (a tar member's data offset): what an import
    # by reference records instead of copying the bytes (backend.ingest.by_reference)
    offset: int | None = None


def describe_unicode_error(exc: UnicodeError) -> str:
    if isinstance(exc, UnicodeDecodeError):
        bad = exc.object[exc.start : exc.end]
        return f"invalid byte{'s' if len(bad) > 1 else ''} {bad.hex(' ')} at byte {exc.start}"
    return str(exc)


def clean_caption(text: str | None) -> str | None:
    """Sidecars and tables often carry trailing newlines; an all-blank caption is none."""
    if text is None:
        return None
    text = text.strip()
    return text or None
