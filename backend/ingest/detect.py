"""Which importer a source needs, judged by looking at it (``--format auto``).

Order matters: a ``save_to_disk`` folder is recognised by its marker files before it
could pass for a folder of images; a folder that holds ``.tar`` shards and no images
at its top level is a WebDataset; any other folder is a folder of images.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

from backend.images import IMAGE_SUFFIXES
from backend.ingest.report import SourceError
from backend.ingest.sources import Source, SourceOptions
from backend.ingest.sources.folder import open_folder
from backend.ingest.sources.hf import is_hf_folder, open_hf
from backend.ingest.sources.table import TABLE_SUFFIXES, open_table
from backend.ingest.sources.webdataset import is_shard_name, open_webdataset

FORMATS = ("auto", "folder", "table", "webdataset", "hf")
EXPECTED = (
    "a folder of images, a table (" + ", ".join(TABLE_SUFFIXES) + "), "
    ".tar shard(s) or a Hugging Face save_to_disk folder"
)


def _folder_kind(path: Path) -> str:
    try:
        with os.scandir(path) as listing:
            names = [entry.name for entry in listing]
    except OSError as exc:
        raise SourceError(f"cannot read folder {path}: {exc.strerror or exc}") from None
    has_shards = any(is_shard_name(n) for n in names)
    has_images = any(Path(n).suffix.lower() in IMAGE_SUFFIXES for n in names)
    return "webdataset" if has_shards and not has_images else "folder"


def detect_format(source: Path) -> str:
    if source.is_dir():
        return "hf" if is_hf_folder(source) else _folder_kind(source)
    if source.is_file():
        if is_shard_name(source.name):
            return "webdataset"
        if source.suffix.lower() in TABLE_SUFFIXES:
            return "table"
        raise SourceError(f"unrecognised source {source}: expected {EXPECTED}")
    if glob.has_magic(str(source)):
        matches = glob.glob(str(source))
        if matches and all(is_shard_name(m) for m in matches):
            return "webdataset"
        if matches:
            raise SourceError(f"the pattern {source} matches files that are not all .tar shards")
        raise SourceError(f"no files match {source}")
    raise SourceError(f"source not found: {source}")


def open_source(source: Path, fmt: str, options: SourceOptions) -> Source:
    """Check the source as a whole; raises SourceError before anything is written."""
    if fmt not in FORMATS:
        raise SourceError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "auto":
        fmt = detect_format(source)
    elif not source.exists() and not (fmt == "webdataset" and glob.has_magic(str(source))):
        raise SourceError(f"source not found: {source}")
    if fmt == "folder":
        return open_folder(source)
    if fmt == "table":
        return open_table(source, options)
    if fmt == "webdataset":
        return open_webdataset(source)
    return open_hf(source, options)
