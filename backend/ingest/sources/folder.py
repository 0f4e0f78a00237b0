"""A folder of images with kohya/taggui caption sidecars (``a.txt`` or ``a.caption``).

Why list everything up front: the total makes the progress bar honest, and an empty or
wrong folder is a SourceError before a dataset is created. Only names are kept (no
file contents), so a 100k-image folder costs a few megabytes.

Rules: recursive; hidden files and folders (``.git``, macOS ``._a.jpg``) are ignored;
symbolic links are never followed and are reported; image-like files in formats the
studio refuses (``.svg``, ``.ico``, ...) are reported instead of silently ignored.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from backend.images import IMAGE_SUFFIXES
from backend.ingest.files import join_inside, read_file
from backend.ingest.items import MAX_CAPTION_BYTES, UNSUPPORTED_IMAGE_SUFFIXES, Item, ItemError, clean_caption
from backend.ingest.report import SourceError
from backend.ingest.sources import display_name
from backend.ingest.text import decode_text, printable_name

SIDECAR_SUFFIXES = (".txt", ".caption")  # in order of preference
ACCEPTED = ", ".join(sorted(IMAGE_SUFFIXES))


@dataclass(frozen=True)
class _Entry:
    rel: str  # posix path relative to the folder
    sidecar: str | None = None
    error: str | None = None


def _sidecar(name: str, names: set[str], rel_dir: str) -> str | None:
    stem = Path(name).stem
    for suffix in SIDECAR_SUFFIXES:
        if stem + suffix in names:
            return f"{rel_dir}/{stem}{suffix}" if rel_dir else stem + suffix
    return None


def _scan(root: Path) -> list[_Entry]:
    entries: list[_Entry] = []
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        try:
            with os.scandir(root / rel_dir if rel_dir else root) as listing:
                children = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            if not rel_dir:
                raise SourceError(f"cannot read folder {root}: {exc.strerror or exc}") from None
            entries.append(_Entry(rel_dir, error=f"cannot read folder: {exc.strerror or exc}"))
            continue
        names = {c.name for c in children}
        subdirs: list[str] = []
        for child in children:
            if child.name.startswith("."):
                continue
            rel = f"{rel_dir}/{child.name}" if rel_dir else child.name
            suffix = Path(child.name).suffix.lower()
            if child.is_symlink():
                if suffix not in SIDECAR_SUFFIXES:  # a linked sidecar is reported with its image
                    entries.append(_Entry(rel, error="symbolic link not followed (it could point anywhere)"))
            elif child.is_dir(follow_symlinks=False):
                subdirs.append(rel)
            elif suffix in IMAGE_SUFFIXES:
                entries.append(_Entry(rel, sidecar=_sidecar(child.name, names, rel_dir)))
            elif suffix in UNSUPPORTED_IMAGE_SUFFIXES:
                entries.append(_Entry(rel, error=f"unsupported image format {suffix}; accepted: {ACCEPTED}"))
        stack.extend(reversed(subdirs))
    return entries


@dataclass
class FolderSource:
    root: Path
    entries: list[_Entry]
    format: str = "folder"

    @cached_property
    def name(self) -> str:
        return display_name(self.root)

    @property
    def total(self) -> int:
        return len(self.entries)

    def items(self) -> Iterator[Item]:
        source = str(Path(os.path.abspath(self.root)))
        for entry in self.entries:
            # a name that is not UTF-8 is stored and shown with \xNN escapes; rel opens the file
            key = printable_name(entry.rel)
            if entry.error is not None:
                yield Item(key=key, label=key, error=entry.error)
                continue
            sidecar = None
            caption = None
            encoding = None
            try:
                path = join_inside(self.root, entry.rel)
                if entry.sidecar is not None:
                    sidecar = printable_name(entry.sidecar)
                    raw = read_file(
                        join_inside(self.root, entry.sidecar),
                        sidecar,
                        what="caption sidecar",
                        limit=MAX_CAPTION_BYTES,
                    )
                    decoded = decode_text(raw, f"caption sidecar {sidecar}")
                    caption = clean_caption(decoded.text)
                    encoding = None if decoded.is_utf8 else decoded.encoding
            except ItemError as exc:
                yield Item(key=key, label=key, error=exc.reason)
                continue
            provenance: dict[str, str | None] = {
                "source": source,
                "format": self.format,
                "sidecar": sidecar,
                "path": key,
            }
            if encoding and caption:
                provenance["encoding"] = encoding
            yield Item(
                key=key,
                label=key,
                path=path,
                caption=caption,
                caption_source=f"import:{self.name}",
                caption_provenance=provenance if caption else None,
                not_utf8=((f"caption sidecar {sidecar}", encoding),) if encoding and caption else (),
            )


def open_folder(path: Path) -> FolderSource:
    if not path.is_dir():
        raise SourceError(f"not a folder: {path}")
    entries = _scan(path)
    if not entries:
        raise SourceError(f"no image files in {path} (looked for {ACCEPTED}, in subfolders too)")
    return FolderSource(root=path, entries=entries)
