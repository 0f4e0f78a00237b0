"""A table (``.csv``/``.tsv``, ``.jsonl``/``.json`` lines, ``.parquet``) of image paths and alt-text.

Why streaming: a LAION-style table has millions of rows. CSV is parsed row by row by
the csv module, JSON lines line by line, Parquet batch by batch with
``ParquetFile.iter_batches``; only the current batch of rows is ever in memory, and the
writer decodes one image at a time.

Why CSV is decoded with ``surrogateescape``: one row with bytes that are not UTF-8 must
not stop the import or be silently mangled. Undecodable bytes survive the csv parser
as lone surrogates, the row that holds them is reported (with its row number and the
bad bytes), and every other row imports normally. A UTF-8 BOM is dropped.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

from backend.ingest.files import SafeJoiner
from backend.ingest.items import Item, ItemError, describe_unicode_error
from backend.ingest.report import SourceError
from backend.ingest.sources import SourceOptions, display_name
from backend.ingest.sources.columns import caption_cell, image_cell, pick_table_columns

TABLE_SUFFIXES = {
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
}
JSONL_SCAN_LINES = 1000  # lines read up front to learn a JSON-lines table's columns


@dataclass
class Row:
    label: str  # "row 17" / "line 17": how the report names it
    number: int
    values: dict[str, Any] | None = None
    error: str | None = None


class _Reader(Protocol):
    columns: list[str]
    total: int | None

    def rows(self, wanted: list[str]) -> Iterator[Row]: ...


def _count_lines(path: Path) -> int:
    """Newlines in the file: an exact row count for JSON lines, an estimate for CSV
    (quoted newlines make it high), read at disk speed without parsing."""
    count = 0
    last = b"\n"
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (0 if last == b"\n" else 1)


def _bad_utf8(field: str) -> str | None:
    if field.isascii():
        return None
    try:
        field.encode("utf-8")
    except UnicodeEncodeError:
        try:
            field.encode("utf-8", "surrogateescape").decode("utf-8")
        except UnicodeDecodeError as exc:
            return describe_unicode_error(exc)
        return "unpaired surrogate"
    return None


class _CsvReader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
        with self._open() as fh:
            try:
                header = next(csv.reader(fh, delimiter=self.delimiter))
            except StopIteration:
                raise SourceError(f"{path.name} is empty (no header row)") from None
            except csv.Error as exc:
                raise SourceError(f"cannot read the header row of {path.name}: {exc}") from None
        for name in header:
            problem = _bad_utf8(name)
            if problem:
                raise SourceError(f"the header row of {path.name} is not valid UTF-8 ({problem})")
        self.columns = [name.strip() for name in header]
        self.total = max(_count_lines(path) - 1, 0)

    def _open(self) -> io.TextIOWrapper:
        return io.TextIOWrapper(
            self.path.open("rb"), encoding="utf-8-sig", errors="surrogateescape", newline=""
        )

    def rows(self, wanted: list[str]) -> Iterator[Row]:
        index = {name: self.columns.index(name) for name in wanted}
        with self._open() as fh:
            reader = csv.reader(fh, delimiter=self.delimiter)
            next(reader, None)  # header
            number = 0
            while True:
                try:
                    fields = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    number += 1
                    yield Row(
                        f"row {number}", number, error=f"unreadable CSV row (line {reader.line_num}): {exc}"
                    )
                    continue
                if not fields:
                    continue  # blank line
                number += 1
                values: dict[str, Any] = {}
                problem = None
                for name, i in index.items():
                    value = fields[i] if i < len(fields) else None
                    bad = _bad_utf8(value) if value else None
                    if bad and problem is None:
                        problem = (
                            f"text is not valid UTF-8 ({bad} in column {name!r}); re-save the table as UTF-8"
                        )
                    values[name] = value
                if problem:
                    yield Row(f"row {number}", number, error=problem)
                else:
                    yield Row(f"row {number}", number, values=values)


class _JsonlReader:
    def __init__(self, path: Path) -> None:
        self.path = path
        columns: dict[str, None] = {}
        with path.open("rb") as fh:
            head = fh.read(64).lstrip(codecs.BOM_UTF8).lstrip()
            if head.startswith(b"["):
                raise SourceError(
                    f"{path.name} holds one JSON array; save it as JSON lines (one object per line) to import it"
                )
            fh.seek(0)
            for _, raw in zip(range(JSONL_SCAN_LINES), fh, strict=False):
                try:
                    obj = json.loads(raw.decode("utf-8-sig"))
                except (UnicodeDecodeError, json.JSONDecodeError):
                    continue
                if isinstance(obj, dict):
                    columns.update(dict.fromkeys(str(k) for k in obj))
        if not columns:
            raise SourceError(
                f"{path.name} has no JSON object lines in its first {JSONL_SCAN_LINES} lines; "
                "expected one JSON object per line"
            )
        self.columns = list(columns)
        self.total = _count_lines(path)

    def rows(self, wanted: list[str]) -> Iterator[Row]:
        with self.path.open("rb") as fh:
            for number, raw in enumerate(fh, 1):
                label = f"line {number}"
                if not raw.strip():
                    continue
                try:
                    obj = json.loads(raw.decode("utf-8-sig" if number == 1 else "utf-8"))
                except UnicodeDecodeError as exc:
                    yield Row(label, number, error=f"text is not valid UTF-8 ({describe_unicode_error(exc)})")
                    continue
                except json.JSONDecodeError as exc:
                    yield Row(label, number, error=f"not valid JSON: {exc.msg} at column {exc.colno}")
                    continue
                if not isinstance(obj, dict):
                    yield Row(label, number, error=f"not a JSON object but {type(obj).__name__}")
                    continue
                yield Row(label, number, values={name: obj.get(name) for name in wanted})


class _ParquetReader:
    def __init__(self, path: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.path = path
        try:
            self.file = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as exc:
            raise SourceError(f"cannot read Parquet file {path.name}: {exc}") from None
        self.schema = self.file.schema_arrow
        self.columns = list(self.schema.names)
        self.total = self.file.metadata.num_rows

    def rows(self, wanted: list[str]) -> Iterator[Row]:
        import pyarrow as pa

        # small batches when cells hold image bytes, so a batch never holds many images
        holds_bytes = any(
            not (pa.types.is_string(t) or pa.types.is_large_string(t))
            for t in (self.schema.field(n).type for n in wanted)
        )
        number = 0
        try:
            for batch in self.file.iter_batches(batch_size=32 if holds_bytes else 1024, columns=wanted):
                for values in batch.to_pylist():
                    number += 1
                    yield Row(f"row {number}", number, values=values)
        except (pa.ArrowException, OSError) as exc:
            yield Row(
                f"rows from {number + 1}", number + 1, error=f"the rest of the file is unreadable: {exc}"
            )


_READERS = {"csv": _CsvReader, "jsonl": _JsonlReader, "parquet": _ParquetReader}


@dataclass
class TableSource:
    path: Path
    reader: _Reader
    image_column: str
    caption_column: str
    format: str = "table"

    @cached_property
    def name(self) -> str:
        return display_name(self.path)

    @property
    def total(self) -> int | None:
        return self.reader.total

    def items(self) -> Iterator[Item]:
        join = SafeJoiner(self.path.parent)  # paths in a table are relative to its folder
        source = str(Path(os.path.abspath(self.path)))
        caption_source = f"import:{self.name}#{self.caption_column}"
        for row in self.reader.rows([self.image_column, self.caption_column]):
            if row.error is not None or row.values is None:
                yield Item(key=row.label, label=row.label, error=row.error or "unreadable row")
                continue
            label = row.label
            try:
                data, path, ref = image_cell(row.values.get(self.image_column), join, self.image_column)
                label = f"{row.label} ({ref})" if ref else row.label
                caption = caption_cell(row.values.get(self.caption_column), self.caption_column)
            except ItemError as exc:
                yield Item(key=label, label=label, error=exc.reason)
                continue
            provenance = {
                "source": source,
                "format": self.format,
                "column": self.caption_column,
                "row": row.number,
            }
            yield Item(
                key=ref or row.label,
                label=label,
                data=data,
                path=path,
                caption=caption,
                caption_source=caption_source,
                caption_provenance=provenance if caption else None,
            )


def open_table(path: Path, options: SourceOptions) -> TableSource:
    if not path.is_file():
        raise SourceError(f"not a file: {path}")
    kind = TABLE_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise SourceError(
            f"unrecognised table type {path.suffix or '(no suffix)'}: {path.name}; "
            f"expected one of {', '.join(TABLE_SUFFIXES)}"
        )
    try:
        reader: _Reader = _READERS[kind](path)
    except OSError as exc:
        raise SourceError(f"cannot read {path.name}: {exc.strerror or exc}") from None
    image, caption = pick_table_columns(
        reader.columns, options.image_column, options.caption_column, path.name
    )
    return TableSource(path=path, reader=reader, image_column=image, caption_column=caption)
