"""Export a dataset with every caption kind and its provenance.

Every format writes a **folder** at ``out`` (refused if it exists and is not empty), built
under a temporary name next to it and renamed into place at the end, so a failed or
interrupted export never leaves a half-written folder under the requested name.

- ``folder``: kohya style, ``<key>.<ext>`` plus ``<key>.txt`` holding the ``--kind`` caption.
  Images without that kind are skipped and counted as ``missing_kind``.
- ``jsonl``: the image files plus ``metadata.jsonl`` (Hugging Face *imagefolder* layout,
  so ``datasets.load_dataset("imagefolder", data_dir=out)`` reads it too).
- ``parquet``: ``data.parquet`` with the image bytes in an ``image`` column ({bytes, path},
  the Hugging Face Image layout, declared in the schema metadata), written in row groups.
- ``webdataset``: ``shard-000000.tar`` … of at most ``shard_size`` samples, each
  ``<key>.<ext>``, ``<key>.txt`` (the ``--kind`` caption, else alt-text; left out when the
  image has none) and ``<key>.json`` (the full record).
- ``hf``: ``datasets`` ``save_to_disk`` folder with a ``datasets.Image`` column.

The record is the same everywhere: image metadata (key, image_id, file_name, original_key,
sha256, width, height, meta as JSON) and, for EVERY caption kind of the dataset,
``caption_<kind>`` and ``provenance_<kind>`` (JSON: caption id, kind, source, status,
annotator name or run id, timestamps, reviewer, extra provenance). With ``--kind`` a plain
``caption`` column holds that kind too.

Which caption of a kind: human kinds use the most recently approved current revision
(over all annotators; imported human captions with status ``final`` count as approved);
other kinds use the most recent current row. Rows are streamed in batches; nothing holds
the whole dataset in memory.
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import shutil
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, or_, select

from backend.datasets import DatasetNotFound, get_dataset
from backend.db import read_session
from backend.models import HUMAN_KINDS, Caption, CaptionKind, CaptionStatus, Image, User
from backend.progress import ProgressFn, no_progress
from backend.storage import image_path
from backend.workspace import UnsafePathError, Workspace, safe_join

FORMATS = ("folder", "jsonl", "parquet", "webdataset", "hf")
BATCH = 256
DEFAULT_SHARD_SIZE = 1000
_EXPORTABLE_HUMAN = (CaptionStatus.approved.value, CaptionStatus.final.value)


class ExportError(ValueError):
    """The export cannot be done as asked; the message says why (nothing was written)."""


@dataclass
class ExportReport:
    dataset: str
    format: str
    path: Path
    images: int = 0
    captions: dict[str, int] = field(default_factory=dict)
    kind: str | None = None
    missing_kind: int = 0  # images without the chosen kind (skipped by the folder format)
    files: int = 0  # shards for webdataset, files written otherwise

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "format": self.format,
            "path": str(self.path),
            "images": self.images,
            "captions": dict(self.captions),
            "kind": self.kind,
            "missing_kind": self.missing_kind,
            "files": self.files,
        }


# --------------------------------------------------------------------------- reading


def column_name(kind: str) -> str:
    """A column-safe form of a caption kind (kinds are free strings)."""
    return re.sub(r"\W", "_", kind)


def _kind_order(kind: str) -> tuple[int, str]:
    known = [k.value for k in CaptionKind]
    return (known.index(kind), kind) if kind in known else (len(known), kind)


def _exportable():  # noqa: ANN202 - SQL expression
    return or_(Caption.kind.not_in(HUMAN_KINDS), Caption.status.in_(_EXPORTABLE_HUMAN))


def exportable_kinds(session: Session, dataset_id: int) -> list[str]:
    kinds = session.exec(
        select(Caption.kind)
        .join(Image, Image.id == Caption.image_id)
        .where(Image.dataset_id == dataset_id, Caption.is_current == True, _exportable())  # noqa: E712
        .distinct()
    ).all()
    return sorted(kinds, key=_kind_order)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _pick(captions: list[Caption]) -> dict[str, Caption]:
    """The caption to export per kind among one image's current rows."""
    best: dict[str, Caption] = {}

    def rank(c: Caption) -> tuple[datetime, datetime, int]:
        if c.kind in HUMAN_KINDS:
            return (c.reviewed_at or c.created_at, c.created_at, c.id or 0)
        return (c.created_at, c.created_at, c.id or 0)

    for c in captions:
        if c.kind in HUMAN_KINDS and c.status not in _EXPORTABLE_HUMAN:
            continue
        if c.kind not in best or rank(c) > rank(best[c.kind]):
            best[c.kind] = c
    return best


def provenance_of(caption: Caption, users: dict[int, str]) -> dict[str, Any]:
    return {
        "caption_id": caption.id,
        "kind": caption.kind,
        "source": caption.source,
        "status": caption.status,
        "annotator": users.get(caption.annotator_id) if caption.annotator_id else None,
        "run_id": caption.run_id,
        "created_at": _iso(caption.created_at),
        "reviewed_by": users.get(caption.reviewed_by) if caption.reviewed_by else None,
        "reviewed_at": _iso(caption.reviewed_at),
        "previous_id": caption.previous_id,
        "details": caption.provenance,
    }


@dataclass
class _Item:
    image: Image
    key: str
    file_name: str
    captions: dict[str, Caption]
    record: dict[str, Any]


def _iter_items(
    session: Session, dataset_id: int, kinds: list[str], kind: str | None, users: dict[int, str]
) -> Iterator[_Item]:
    """Images of the dataset in id order with their chosen captions, in batches (keyset paging)."""
    last_id = 0
    while True:
        images = session.exec(
            select(Image)
            .where(Image.dataset_id == dataset_id, Image.id > last_id)
            .order_by(Image.id)
            .limit(BATCH)
        ).all()
        if not images:
            return
        last_id = images[-1].id
        ids = [img.id for img in images]
        per_image: dict[int, list[Caption]] = {}
        for cap in session.exec(
            select(Caption).where(Caption.image_id.in_(ids), Caption.is_current == True)  # noqa: E712
        ):
            per_image.setdefault(cap.image_id, []).append(cap)
        for img in images:
            chosen = _pick(per_image.get(img.id, []))
            key = f"{img.id:09d}"
            file_name = f"{key}.{img.ext}"
            record: dict[str, Any] = {
                "key": key,
                "image_id": img.id,
                "file_name": file_name,
                "original_key": img.original_key,
                "sha256": img.sha256,
                "width": img.width,
                "height": img.height,
                "meta": json.dumps(img.meta, sort_keys=True) if img.meta is not None else None,
            }
            if kind is not None:
                record["caption"] = chosen[kind].text if kind in chosen else None
            for k in kinds:
                cap = chosen.get(k)
                record[f"caption_{column_name(k)}"] = cap.text if cap else None
                record[f"provenance_{column_name(k)}"] = (
                    json.dumps(provenance_of(cap, users), sort_keys=True) if cap else None
                )
            yield _Item(image=img, key=key, file_name=file_name, captions=chosen, record=record)
        session.expunge_all()


# --------------------------------------------------------------------------- output paths


def resolve_out(ws: Workspace, out: str | os.PathLike[str]) -> Path:
    """Relative paths go under the workspace's exports/ (guarded); absolute ones are used as given."""
    path = Path(out).expanduser()
    if path.is_absolute():
        return path
    try:
        return safe_join(ws.exports_dir, path)
    except UnsafePathError as exc:
        raise ExportError(str(exc)) from None


def _check_out(path: Path) -> None:
    if path.is_symlink():
        raise ExportError(f"output {path} is a symbolic link; choose another --out")
    if path.exists():
        if not path.is_dir():
            raise ExportError(f"output {path} exists and is a file; choose another --out")
        if any(path.iterdir()):
            raise ExportError(
                f"output {path} exists and is not empty; refusing to overwrite (choose another --out)"
            )


# --------------------------------------------------------------------------- writers


class _Writer:
    def __init__(self, root: Path, kind: str | None, kinds: list[str], report: ExportReport) -> None:
        self.root, self.kind, self.kinds, self.report = root, kind, kinds, report

    def add(self, item: _Item, data: bytes) -> bool:  # returns whether the image was exported
        raise NotImplementedError

    def close(self) -> None:
        pass


class _FolderWriter(_Writer):
    def add(self, item: _Item, data: bytes) -> bool:
        cap = item.captions.get(self.kind or "")
        if cap is None:
            self.report.missing_kind += 1
            return False
        (self.root / item.file_name).write_bytes(data)
        (self.root / f"{item.key}.txt").write_text(cap.text, encoding="utf-8")
        self.report.files += 2
        return True


class _JsonlWriter(_Writer):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.fh = (self.root / "metadata.jsonl").open("w", encoding="utf-8")
        self.report.files = 1

    def add(self, item: _Item, data: bytes) -> bool:
        (self.root / item.file_name).write_bytes(data)
        self.fh.write(json.dumps(item.record, ensure_ascii=False) + "\n")
        self.report.files += 1
        return True

    def close(self) -> None:
        self.fh.close()


def _arrow_schema(kinds: list[str], kind: str | None, with_image: bool):  # noqa: ANN202 - pyarrow schema
    import pyarrow as pa

    fields: list[tuple[str, Any, dict[str, Any]]] = [
        ("key", pa.string(), {"dtype": "string", "_type": "Value"}),
        ("image_id", pa.int64(), {"dtype": "int64", "_type": "Value"}),
        ("file_name", pa.string(), {"dtype": "string", "_type": "Value"}),
        ("original_key", pa.string(), {"dtype": "string", "_type": "Value"}),
        ("sha256", pa.string(), {"dtype": "string", "_type": "Value"}),
        ("width", pa.int64(), {"dtype": "int64", "_type": "Value"}),
        ("height", pa.int64(), {"dtype": "int64", "_type": "Value"}),
        ("meta", pa.string(), {"dtype": "string", "_type": "Value"}),
    ]
    if with_image:
        image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
        fields.insert(0, ("image", image_type, {"_type": "Image"}))
    names = (["caption"] if kind is not None else []) + [
        f"{prefix}_{column_name(k)}" for k in kinds for prefix in ("caption", "provenance")
    ]
    fields += [(name, pa.string(), {"dtype": "string", "_type": "Value"}) for name in names]
    features = {name: feature for name, _, feature in fields}
    metadata = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    return pa.schema([pa.field(name, typ) for name, typ, _ in fields], metadata=metadata)


class _ArrowBatchWriter(_Writer):
    """Shared by parquet (ParquetWriter) and hf (an Arrow stream that ``datasets`` maps)."""

    rows_per_batch = BATCH

    def __init__(self, root: Path, kind: str | None, kinds: list[str], report: ExportReport) -> None:
        super().__init__(root, kind, kinds, report)
        self.schema = _arrow_schema(kinds, kind, with_image=True)
        self.rows: list[dict[str, Any]] = []

    def add(self, item: _Item, data: bytes) -> bool:
        self.rows.append({"image": {"bytes": data, "path": item.file_name}, **item.record})
        if len(self.rows) >= self.rows_per_batch:
            self.flush()
        return True

    def flush(self) -> None:
        import pyarrow as pa

        if self.rows:
            self.write(pa.RecordBatch.from_pylist(self.rows, schema=self.schema))
            self.rows = []

    def write(self, batch: Any) -> None:
        raise NotImplementedError


class _ParquetWriter(_ArrowBatchWriter):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        import pyarrow.parquet as pq

        self.writer = pq.ParquetWriter(self.root / "data.parquet", self.schema)
        self.report.files = 1

    def write(self, batch: Any) -> None:
        self.writer.write_batch(batch)

    def close(self) -> None:
        self.flush()
        self.writer.close()


class _HfWriter(_ArrowBatchWriter):
    def __init__(
        self, root: Path, kind: str | None, kinds: list[str], report: ExportReport, staging: Path
    ) -> None:
        super().__init__(root, kind, kinds, report)
        import pyarrow as pa

        self.staging = staging
        self.sink = pa.OSFile(str(staging), "wb")
        self.writer = pa.ipc.new_stream(self.sink, self.schema)

    def write(self, batch: Any) -> None:
        self.writer.write_batch(batch)

    def close(self) -> None:
        import datasets

        self.flush()
        self.writer.close()
        self.sink.close()
        bars_were_off = datasets.utils.are_progress_bars_disabled()
        datasets.utils.disable_progress_bars()  # the caller shows its own progress
        try:
            ds = datasets.Dataset.from_file(str(self.staging))
            ds.save_to_disk(str(self.root))
            del ds
        finally:
            if not bars_were_off:
                datasets.utils.enable_progress_bars()
        self.report.files = sum(1 for _ in self.root.iterdir())


class _WebDatasetWriter(_Writer):
    def __init__(
        self, root: Path, kind: str | None, kinds: list[str], report: ExportReport, shard_size: int
    ) -> None:
        super().__init__(root, kind, kinds, report)
        self.shard_size = shard_size
        self.text_kind = kind or CaptionKind.alttext.value
        self.tar: tarfile.TarFile | None = None
        self.in_shard = 0
        self.mtime = int(time.time())

    def _member(self, name: str, data: bytes) -> None:
        assert self.tar is not None
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = self.mtime
        info.mode = 0o644
        self.tar.addfile(info, io.BytesIO(data))

    def add(self, item: _Item, data: bytes) -> bool:
        if self.tar is None or self.in_shard >= self.shard_size:
            self.close()
            self.tar = tarfile.open(self.root / f"shard-{self.report.files:06d}.tar", "w")  # noqa: SIM115 - see close()
            self.report.files += 1
            self.in_shard = 0
        self._member(item.file_name, data)
        cap = item.captions.get(self.text_kind)
        if cap is not None:
            self._member(f"{item.key}.txt", cap.text.encode("utf-8"))
        else:
            self.report.missing_kind += 1
        self._member(f"{item.key}.json", json.dumps(item.record, ensure_ascii=False).encode("utf-8"))
        self.in_shard += 1
        return True

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()
            self.tar = None


# --------------------------------------------------------------------------- export


def export_dataset(
    ws: Workspace,
    dataset: str,
    fmt: str,
    out: str | os.PathLike[str],
    kind: str | None = None,
    progress: ProgressFn | None = None,
    *,
    shard_size: int = DEFAULT_SHARD_SIZE,
) -> ExportReport:
    """Export ``dataset`` as ``fmt`` into the new folder ``out``; see the module docstring."""
    progress = progress or no_progress
    fmt = (fmt or "").strip().lower()
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if kind is not None:
        kind = kind.strip() or None
    if fmt == "folder" and kind is None:
        raise ExportError(
            "the folder format writes one caption per image: choose it with --kind (e.g. --kind recap_long)"
        )
    if shard_size < 1:
        raise ExportError("shard size must be at least 1")
    target = resolve_out(ws, out)
    _check_out(target)

    with read_session(ws) as s:
        try:
            ds = get_dataset(s, dataset)
        except DatasetNotFound as exc:
            raise ExportError(str(exc)) from None
        kinds = exportable_kinds(s, ds.id)
        if kind is not None and kind not in kinds:
            what = "approved " if kind in HUMAN_KINDS else ""
            raise ExportError(
                f"dataset {dataset!r} has no {what}{kind} captions; available: {', '.join(kinds) or 'none'}"
            )
        total = s.exec(select(func.count()).select_from(Image).where(Image.dataset_id == ds.id)).one()
        users = {u.id: u.name for u in s.exec(select(User))}

        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.parent / f".{target.name}.partial-{secrets.token_hex(4)}"
        staging.mkdir()
        report = ExportReport(dataset=dataset, format=fmt, path=target, kind=kind)
        counts = dict.fromkeys(kinds, 0) if fmt != "folder" else {kind: 0}
        hf_stream = target.parent / f".{target.name}.stream-{secrets.token_hex(4)}.arrow"
        try:
            writer: _Writer
            if fmt == "folder":
                writer = _FolderWriter(staging, kind, kinds, report)
            elif fmt == "jsonl":
                writer = _JsonlWriter(staging, kind, kinds, report)
            elif fmt == "parquet":
                writer = _ParquetWriter(staging, kind, kinds, report)
            elif fmt == "webdataset":
                writer = _WebDatasetWriter(staging, kind, kinds, report, shard_size)
            else:
                writer = _HfWriter(staging, kind, kinds, report, hf_stream)
            progress(0, total, f"exporting {dataset} ({fmt})")
            for done, item in enumerate(_iter_items(s, ds.id, kinds, kind, users), start=1):
                src = image_path(ws, item.image.sha256, item.image.ext)
                try:
                    data = src.read_bytes()
                except OSError as exc:
                    raise ExportError(
                        f"image file of {item.image.original_key!r} is missing in the workspace: {exc}"
                    ) from None
                if writer.add(item, data):
                    report.images += 1
                    for k in counts:
                        if k in item.captions:
                            counts[k] += 1
                if done % 50 == 0 or done == total:
                    progress(done, total, f"exporting {dataset} ({fmt})")
            writer.close()
            report.captions = counts
            if target.exists():
                target.rmdir()  # checked empty above
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        finally:
            hf_stream.unlink(missing_ok=True)
    progress(total, total, "export done")
    return report
