"""A folder written by Hugging Face ``datasets`` ``save_to_disk`` (a Dataset or a DatasetDict).

Choice: a DatasetDict imports **every split**, in the order it was saved, because
dropping splits silently loses data; each image records its split in ``Image.meta``
(``{"split": "train"}``) and caption provenance, so splits stay separable. An image
present in two splits is stored once (the second is a duplicate).

Why these steps: ``load_from_disk`` memory-maps the Arrow files, so nothing is
materialised; the image column is cast to ``Image(decode=False)`` so rows give raw bytes
(or a path) that go through the same validation as every other source, and rows are
read in small batches with ``Dataset.iter``. ``datasets`` is imported here, not at module
import, because it is slow to import and the CLI and UI start without it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from backend.ingest.files import SafeJoiner
from backend.ingest.items import Item, ItemError
from backend.ingest.report import SourceError
from backend.ingest.sources import SourceOptions, display_name
from backend.ingest.sources.columns import (
    CAPTION_CANDIDATES,
    IMAGE_CANDIDATES,
    arrow_cells,
    caption_cell,
    image_cell,
    pick_column,
)
from backend.ingest.text import UTF8

HF_MARKERS = ("dataset_dict.json", "state.json", "dataset_info.json")
ROWS_PER_BATCH = 32  # rows of embedded image bytes held at once


def is_hf_folder(path: Path) -> bool:
    return path.is_dir() and any((path / marker).is_file() for marker in HF_MARKERS)


@dataclass
class _Split:
    name: str | None  # None for a plain Dataset
    dataset: Any  # datasets.Dataset, limited to the two columns
    image_column: str
    caption_column: str


def _prepare_split(ds: Any, split: str | None, options: SourceOptions, where: str) -> _Split:
    import datasets

    columns = list(ds.column_names)
    where = f"{where} (split {split!r})" if split else where
    if options.image_column:
        image = pick_column(
            columns, options.image_column, IMAGE_CANDIDATES, "images", "--image-column", where
        )
    else:
        typed = [c for c in columns if isinstance(ds.features[c], datasets.Image)]
        image = (
            typed[0]
            if typed
            else pick_column(columns, None, IMAGE_CANDIDATES, "images", "--image-column", where)
        )
    caption = pick_column(
        columns, options.caption_column, CAPTION_CANDIDATES, "captions", "--caption-column", where
    )
    if image == caption:
        raise SourceError(f"the image and caption columns of {where} are both {image!r}; name them apart")
    feature = ds.features[image]
    if isinstance(feature, datasets.Image):
        ds = ds.cast_column(image, datasets.Image(decode=False))
    elif not (isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string", "binary")):
        raise SourceError(
            f"column {image!r} of {where} is {feature!r}; expected an Image feature, file paths or image bytes"
        )
    return _Split(
        name=split, dataset=ds.select_columns([image, caption]), image_column=image, caption_column=caption
    )


@dataclass
class HFSource:
    root: Path
    splits: list[_Split]
    format: str = "hf"

    @cached_property
    def name(self) -> str:
        return display_name(self.root)

    @property
    def total(self) -> int:
        return sum(len(s.dataset) for s in self.splits)

    def items(self) -> Iterator[Item]:
        source = str(Path(os.path.abspath(self.root)))
        join = SafeJoiner(self.root)  # path cells are relative to the dataset folder
        for split in self.splits:
            index = 0
            # Arrow batches, converted by arrow_cells: datasets' own conversion raised for a
            # whole batch on one string that is not UTF-8, and stopped the import
            for batch in split.dataset.with_format("arrow").iter(batch_size=ROWS_PER_BATCH):
                images = arrow_cells(batch.column(split.image_column))
                captions = arrow_cells(batch.column(split.caption_column), text_as_bytes=True)
                for value, text in zip(images, captions, strict=True):
                    row = f"{split.name} row {index}" if split.name else f"row {index}"
                    yield self._item(split, source, join, row, index, value, text)
                    index += 1

    def _item(
        self, split: _Split, source: str, join: SafeJoiner, row: str, index: int, value: Any, text: Any
    ) -> Item:
        label = row
        try:
            data, path, ref = image_cell(value, join, split.image_column)
            if path is not None and ref:
                label = f"{row} ({ref})"
            caption, encoding = caption_cell(text, split.caption_column)
        except ItemError as exc:
            return Item(key=label, label=label, error=exc.reason)
        # a path-referenced image keeps its path as key; an embedded one is named by its row
        key = ref if path is not None and ref else row
        provenance: dict[str, Any] = {
            "source": source,
            "format": self.format,
            "column": split.caption_column,
            "row": index,
        }
        if split.name:
            provenance["split"] = split.name
        recoded = caption is not None and encoding != UTF8
        if recoded:
            provenance["encoding"] = encoding
        return Item(
            key=key,
            label=label,
            data=data,
            path=path,
            caption=caption,
            caption_source=f"import:{self.name}#{split.caption_column}",
            caption_provenance=provenance if caption else None,
            meta={"split": split.name} if split.name else None,
            not_utf8=((f"column {split.caption_column!r}", encoding),) if recoded else (),
        )


def open_hf(path: Path, options: SourceOptions) -> HFSource:
    if not is_hf_folder(path):
        raise SourceError(
            f"{path} is not a Hugging Face datasets folder (expected {', '.join(HF_MARKERS)} from save_to_disk)"
        )
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:  # noqa: BLE001 - any failure of the third-party loader means "unreadable"
        raise SourceError(f"cannot read Hugging Face dataset folder {path}: {exc}") from None
    where = display_name(path)
    if isinstance(loaded, datasets.DatasetDict):
        splits = [_prepare_split(ds, name, options, where) for name, ds in loaded.items()]
    else:
        splits = [_prepare_split(loaded, None, options, where)]
    if not splits:
        raise SourceError(f"{path} holds a DatasetDict without splits")
    return HFSource(root=path, splits=splits)
