"""A table (``.csv``/``.tsv``, ``.jsonl``/``.json`` lines, ``.parquet``) of image paths and alt-text.

Why streaming: a LAION-style table has millions of rows. CSV is parsed row by row by
the csv module, JSON lines line by line, Parquet batch by batch with
``ParquetFile.iter_batches``; only the current batch of rows is ever in memory, and the
writer decodes one image at a time.

Why CSV is decoded with ``surrogateescape``: one row with bytes that are not UTF-8 must
not stop the import or be silently mangled. Undecodable bytes survive the csv parser
as lone surrogates; in the caption column they are turned back into the original bytes
and read by :func:`backend.ingest.text.decode_text`'s chain (the encoding used is
recorded), in the image column the row is reported with its row number and the bad
bytes. Every other row imports normally. A UTF-8 BOM is dropped.

JSON lines are read by the same chain, line by line, and parsed by
:func:`backend.ingest.jsontext.load_json`, so no line (deep nesting, a 5,000-digit
integer, a line longer than :data:`MAX_LINE_BYTES`) can stop the import or the column
scan: each is one skipped row. Parquet columns are converted by
:func:`~backend.ingest.sources.columns.arrow_cells`, which turns a cell that is not UTF-8
into a skipped row instead of an exception.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

from backend.ingest.files import SafeJoiner
from backend.ingest.items import MAX_CAPTION_BYTES, Item, ItemError, describe_unicode_error
from backend.ingest.jsontext import load_json
from backend.ingest.report import SourceError
from backend.ingest.sources import SourceOptions, display_name
from backend.ingest.sources.columns import arrow_cells, caption_cell, image_cell, pick_table_columns
from backend.ingest.text import UTF8, decode_text

TABLE_SUFFIXES = {
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
}
JSONL_SCAN_LINES = 1000  # lines read up front to learn a JSON-lines table's columns
MAX_LINE_BYTES = MAX_CAPTION_BYTES + (1 << 20)  # a JSON line: a caption's limit plus room for the rest


@dataclass
class Row:
    label: str  # "row 17" / "line 17": how the report names it
    number: int
    values: dict[str, Any] | None = None
    error: str | None = None
    encoding: str = UTF8  # what the row's text was read as (JSON lines: the whole line)


class _Reader(Protocol):
    columns: list[str]
    total: int | None

    def rows(self, image_column: str, caption_column: str) -> Iterator[Row]: ...


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

    def rows(self, image_column: str, caption_column: str) -> Iterator[Row]:
        index = {name: self.columns.index(name) for name in (image_column, caption_column)}
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
                    if bad and value is not None and name == caption_column:
                        # the cell's own bytes again, for caption_cell to read by the chain
                        values[name] = value.encode("utf-8", "surrogateescape")
                        continue
                    if bad and problem is None:
                        problem = (
                            f"text is not valid UTF-8 ({bad} in column {name!r}); re-save the table as UTF-8"
                        )
                    values[name] = value
                if problem:
                    yield Row(f"row {number}", number, error=problem)
                else:
                    yield Row(f"row {number}", number, values=values)


def _lines(fh: io.BufferedReader) -> Iterator[bytes | None]:
    """The file's lines, None standing for one longer than MAX_LINE_BYTES (whose bytes are
    read past in chunks, never held): one huge line must not exhaust memory."""
    while line := fh.readline(MAX_LINE_BYTES + 1):
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while (rest := fh.readline(1 << 20)) and not rest.endswith(b"\n"):
                pass
            yield None
        else:
            yield line


def _parse_line(raw: bytes | None) -> tuple[Any, str]:
    """(value, encoding it was read as) of one JSON line; ItemError says why there is none."""
    if raw is None:
        raise ItemError(f"line longer than {MAX_LINE_BYTES:,} bytes, not read")
    decoded = decode_text(raw.strip(), "this line")
    return load_json(decoded.text, "this line"), decoded.encoding


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
            for _, raw in zip(range(JSONL_SCAN_LINES), _lines(fh), strict=False):
                try:
                    obj, _encoding = _parse_line(raw)
                except ItemError:
                    continue  # reported with its line number when the rows are read
                if isinstance(obj, dict):
                    columns.update(dict.fromkeys(str(k) for k in obj))
        if not columns:
            raise SourceError(
                f"{path.name} has no JSON object lines in its first {JSONL_SCAN_LINES} lines; "
                "expected one JSON object per line"
            )
        self.columns = list(columns)
        self.total = _count_lines(path)

    def rows(self, image_column: str, caption_column: str) -> Iterator[Row]:
        with self.path.open("rb") as fh:
            for number, raw in enumerate(_lines(fh), 1):
                label = f"line {number}"
                if raw is not None and not raw.strip():
                    continue
                try:
                    obj, encoding = _parse_line(raw)
                except ItemError as exc:
                    yield Row(label, number, error=exc.reason)
                    continue
                if not isinstance(obj, dict):
                    yield Row(label, number, error=f"not a JSON object but {type(obj).__name__}")
                    continue
                values = {name: obj.get(name) for name in (image_column, caption_column)}
                yield Row(label, number, values=values, encoding=encoding)


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

    def rows(self, image_column: str, caption_column: str) -> Iterator[Row]:
        import pyarrow as pa

        wanted = [image_column, caption_column]
        # small batches when cells hold image bytes, so a batch never holds many images
        holds_bytes = any(
            not (pa.types.is_string(t) or pa.types.is_large_string(t))
            for t in (self.schema.field(n).type for n in wanted)
        )
        number = 0
        try:
            for batch in self.file.iter_batches(batch_size=32 if holds_bytes else 1024, columns=wanted):
                images = arrow_cells(batch.column(image_column))
                captions = arrow_cells(batch.column(caption_column), text_as_bytes=True)
                for image, caption in zip(images, captions, strict=True):
                    number += 1
                    values = {image_column: image, caption_column: caption}
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
        for row in self.reader.rows(self.image_column, self.caption_column):
            if row.error is not None or row.values is None:
                yield Item(key=row.label, label=row.label, error=row.error or "unreadable row")
                continue
            label = row.label
            try:
                data, path, ref = image_cell(row.values.get(self.image_column), join, self.image_column)
                label = f"{row.label} ({ref})" if ref else row.label
                caption, encoding = caption_cell(row.values.get(self.caption_column), self.caption_column)
            except ItemError as exc:
                yield Item(key=label, label=label, error=exc.reason)
                continue
            if encoding == UTF8:
                encoding = row.encoding  # a text cell of a line read in a legacy encoding
            provenance: dict[str, Any] = {
                "source": source,
                "format": self.format,
                "column": self.caption_column,
                "row": row.number,
            }
            recoded = caption is not None and encoding != UTF8
            if recoded:
                provenance["encoding"] = encoding
            yield Item(
                key=ref or row.label,
                label=label,
                data=data,
                path=path,
                caption=caption,
                caption_source=caption_source,
                caption_provenance=provenance if caption else None,
                not_utf8=((f"column {self.caption_column!r}", encoding),) if recoded else (),
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
