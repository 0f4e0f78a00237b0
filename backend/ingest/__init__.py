"""Importers: a folder with sidecars, a table, WebDataset shards or a ``save_to_disk`` folder.

Public API (the CLI, the Datasets tab and the demo code against exactly this)::

    from backend.ingest import import_source, SourceError, ImportReport

Why the split into modules: each source only knows its layout (``sources/``) and yields
:class:`~backend.ingest.items.Item` records; validation, dedupe and the atomic batched
insert live once in :mod:`backend.ingest.writer`; :mod:`backend.ingest.detect` picks the
source for ``fmt="auto"``. A source is checked as a whole *before* the dataset row is
created, so a :class:`SourceError` always means nothing was written.
"""

from __future__ import annotations

import os
from pathlib import Path

from backend.datasets import get_or_create_dataset
from backend.db import write_session
from backend.images import DEFAULT_MAX_PIXELS
from backend.ingest.detect import FORMATS, detect_format, open_source
from backend.ingest.report import ImportReport, NotUtf8Text, SkippedItem, SourceError
from backend.ingest.sources import SourceOptions
from backend.ingest.writer import ItemWriter
from backend.progress import ProgressFn
from backend.workspace import Workspace

__all__ = [
    "FORMATS",
    "ImportReport",
    "NotUtf8Text",
    "SkippedItem",
    "SourceError",
    "detect_format",
    "import_source",
]


def import_source(
    ws: Workspace,
    source: Path | str | os.PathLike[str],
    dataset: str,
    *,
    fmt: str = "auto",
    image_column: str | None = None,
    caption_column: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: ProgressFn | None = None,
) -> ImportReport:
    """Import every readable item of ``source`` into ``dataset`` (created if new, appended
    to and deduplicated against if not). Bad items are skipped with a reason in the report;
    stored texts that were not UTF-8 are listed in it with the encoding they were read as.

    Raises SourceError, with nothing written, when the source as a whole cannot be read.
    ``progress`` is first called after the source passed its checks.
    """
    name = dataset.strip()
    if not name:
        raise SourceError("dataset name must not be empty")
    if max_pixels < 1:
        raise SourceError(f"max_pixels must be a positive number of pixels, not {max_pixels}")
    opened = open_source(Path(source), fmt, SourceOptions(image_column, caption_column))
    with write_session(ws) as session:
        dataset_id = get_or_create_dataset(session, name).id
    assert dataset_id is not None
    report = ImportReport(dataset=name)
    writer = ItemWriter(ws, dataset_id, report, max_pixels=max_pixels)
    writer.write_all(opened.items(), opened.total, progress, f"importing {opened.name}")
    return report
