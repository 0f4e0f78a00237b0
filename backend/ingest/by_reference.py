"""Import by reference: register WebDataset / Parquet shards without copying their images.

``recap-studio import SHARDS --dataset NAME --by-reference [--engine local|ray]``. Each shard is
read once, where it lies, by :func:`scan_shard` — on this machine, or as one Ray task per shard
on a cluster (``--engine ray``) — which hashes and validates every image exactly as an ordinary
import does (:func:`backend.images.decode_image`: same pixel limit, same reasons), reads its
alt-text with the same rules (:mod:`backend.ingest.sources.webdataset`, the table columns), and
hashes the whole shard. Only facts come back: key, SHA-256, size, dimensions, where the bytes
start, alt-text. This process then writes, one transaction per shard, the :class:`Shard` row,
an :class:`~backend.models.Image` row per new image with its :class:`ShardMember` location,
and the alt-text captions. No pixels are stored; thumbnails and originals are read out of the
shard when Review shows them (:mod:`backend.storage`).

Why one transaction per shard: a kill leaves each shard registered whole or not at all, and a
rerun skips the shards already registered (same size) and registers the rest — so an import of
100,000 shards can be restarted. A shard that changed since it was registered is refused
(its offsets would point at other bytes); images already in the dataset are duplicates, as in
an ordinary import.

Tars must be uncompressed (a member is read back by offset: one seek and one read); Parquet
files must hold the image bytes (a binary column or a Hugging Face image struct), not paths.
Shards may be local paths or URIs pyarrow's filesystems open (``s3://``, ``gs://``): a cluster
reads them where they are, so they must be readable from every node at that name.
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sqlmodel import col, select

from backend.captions import add_caption
from backend.datasets import get_or_create_dataset
from backend.db import read_session, write_session
from backend.images import DEFAULT_MAX_PIXELS, BadImage, decode_image
from backend.ingest.items import Item, ItemError
from backend.ingest.report import ImportReport, NotUtf8Text, SourceError
from backend.ingest.sources.columns import arrow_cells, caption_cell, image_cell, pick_table_columns
from backend.ingest.sources.webdataset import WebDatasetSource, _Shard
from backend.ingest.text import printable_name
from backend.models import CaptionKind, Image
from backend.progress import ProgressFn, no_progress
from backend.shards import Shard, ShardMember
from backend.storage import open_uri
from backend.workspace import Workspace

ENGINES = ("local", "ray")
_SUFFIXES = {".tar": "webdataset", ".parquet": "parquet"}
_COMPRESSED = (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar.zst")
_IN_CHUNK = 500
_CHUNK = 1 << 20
_MAGICS = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")  # gzip, bzip2, xz, zstd


@dataclass(frozen=True)
class ShardFile:
    """One shard to register: where it is, what it is, how big."""

    uri: str  # absolute path or filesystem URI, as every node must be able to open it
    name: str  # how the report names it
    format: str  # "webdataset" or "parquet"
    nbytes: int


@dataclass(frozen=True)
class Member:
    """One image found in a shard: everything its rows need, no pixels."""

    key: str  # becomes Image.original_key ("shard.tar:key", "shard.parquet:row 17")
    sha256: str
    ext: str
    width: int
    height: int
    nbytes: int
    offset: int
    caption: str | None = None
    caption_source: str = ""
    caption_provenance: dict[str, Any] | None = None
    meta: dict[str, Any] | None = None
    not_utf8: tuple[tuple[str, str], ...] = ()


@dataclass
class ShardScan:
    """What one pass over a shard found: its hash, its images, the items it skipped and why."""

    shard: ShardFile
    sha256: str = ""
    image_column: str | None = None
    members: list[Member] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (item, reason)
    error: str | None = None  # the shard as a whole could not be read: nothing of it is registered


# --------------------------------------------------------------------------- finding shards


def _shard_format(name: str) -> str | None:
    lower = name.lower()
    if lower.endswith(_COMPRESSED):
        return "compressed"
    return next((fmt for suffix, fmt in _SUFFIXES.items() if lower.endswith(suffix)), None)


def list_shard_files(source: str) -> list[ShardFile]:
    """The shards at ``source``: one file, the shard files directly inside a folder (or URI
    prefix), or those a local glob matches. Compressed tars are refused here, with the fix."""
    source = str(source).strip()
    entries: list[tuple[str, str, int]] = []  # (uri, name, size)
    if "://" in source and not source.startswith("file://"):
        from pyarrow import fs

        try:
            filesystem, path = fs.FileSystem.from_uri(source)
            info = filesystem.get_file_info(path)
            if info.type == fs.FileType.File:
                infos = [info]
            else:
                infos = filesystem.get_file_info(fs.FileSelector(path, recursive=False))
        except (OSError, ValueError) as exc:
            raise SourceError(f"cannot list {source}: {exc}") from None
        scheme = source.split("://", 1)[0]
        for item in infos:
            if item.type == fs.FileType.File:
                entries.append((f"{scheme}://{item.path}", item.base_name, int(item.size or 0)))
    else:
        local = Path(source.removeprefix("file://")).expanduser()
        if local.is_file():
            paths = [local]
        elif local.is_dir():
            paths = sorted(p for p in local.iterdir() if p.is_file() and not p.name.startswith("."))
        elif glob.has_magic(str(local)):
            paths = sorted(Path(m) for m in glob.glob(str(local)) if Path(m).is_file())
        else:
            raise SourceError(f"{source} does not exist")
        entries = [(str(p.resolve()), printable_name(p.name), p.stat().st_size) for p in paths]
    shards, compressed = [], []
    for uri, name, size in sorted(entries):
        fmt = _shard_format(name)
        if fmt == "compressed":
            compressed.append(name)
        elif fmt is not None:
            shards.append(ShardFile(uri, name, fmt, size))
    if not shards:
        if compressed:
            raise SourceError(
                f"{compressed[0]} is compressed: a member of a compressed tar cannot be read by offset, so it "
                "cannot be registered by reference; decompress the shards (plain .tar) or import without "
                "--by-reference (copies the images)"
            )
        raise SourceError(f"no .tar or .parquet shards found at {source}")
    return shards


# --------------------------------------------------------------------------- scanning one shard


class _HashingReader:
    """A forward-only file wrapper that hashes every byte read through it (the tar pass reads the
    whole shard once, so the shard's SHA-256 costs no second read)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()
        self.head = raw.read(6)  # given back by the first read; tells a compressed file by its magic

    @property
    def compressed(self) -> bool:
        return self.head.startswith(_MAGICS)

    def read(self, size: int = -1) -> bytes:
        head, self.head = self.head, b""
        if size is not None and size >= 0:
            data = head[:size] + self.raw.read(max(0, size - len(head)))
            self.head = head[size:]
        else:
            data = head + self.raw.read()
        self.digest.update(data)
        return data

    def finish(self) -> str:
        while self.read(_CHUNK):
            pass
        return self.digest.hexdigest()


def _member(item: Item, max_pixels: int) -> Member:
    assert item.data is not None and item.offset is not None
    try:
        decoded = decode_image(item.data, max_pixels)
    except BadImage as exc:
        raise ItemError(str(exc)) from None
    decoded.pil.close()
    return Member(
        key=item.key,
        sha256=decoded.sha256,
        ext=decoded.ext,
        width=decoded.width,
        height=decoded.height,
        nbytes=len(item.data),
        offset=item.offset,
        caption=item.caption,
        caption_source=item.caption_source,
        caption_provenance=item.caption_provenance,
        meta=item.meta,
        not_utf8=item.not_utf8,
    )


def _scan_tar(shard: ShardFile, scan: ShardScan, max_pixels: int) -> None:
    with open_uri(shard.uri) as raw:
        reader = _HashingReader(raw)
        if reader.compressed:
            raise SourceError(
                f"{shard.name} is compressed: a member of a compressed tar cannot be read by offset; "
                "decompress it (plain .tar) or import without --by-reference"
            )
        source = WebDatasetSource(source=Path(shard.name), shards=[])
        for item in source._shard_items(_Shard(Path(shard.uri), shard.name), fileobj=reader):  # type: ignore[arg-type]
            if item.error is not None:
                scan.skipped.append((item.label, item.error))
                continue
            try:
                member = _member(item, max_pixels)
            except ItemError as exc:
                scan.skipped.append((item.label, exc.reason))
                continue
            if member.caption_provenance is not None:  # the shard as every node names it
                member.caption_provenance["source"] = shard.uri
            scan.members.append(member)
        scan.sha256 = reader.finish()


def _refuse_path(ref: str) -> Path:
    raise ItemError(
        f"holds a file path ({ref}), not image bytes: only images stored inside a Parquet file can be "
        "registered by reference; import without --by-reference to copy the files"
    )


def _scan_parquet(
    shard: ShardFile, scan: ShardScan, max_pixels: int, image_column: str | None, caption_column: str | None
) -> None:
    import pyarrow.parquet as pq

    with open_uri(shard.uri) as fh:
        try:
            pf = pq.ParquetFile(fh)
        except (OSError, ValueError) as exc:
            raise SourceError(f"not a readable Parquet file: {exc}") from None
        names = pf.schema_arrow.names
        image, caption = pick_table_columns(names, image_column, caption_column, shard.name)
        scan.image_column = image
        row = 0
        for batch in pf.iter_batches(batch_size=256, columns=[image, caption]):
            images = arrow_cells(batch.column(image))
            captions = arrow_cells(batch.column(caption), text_as_bytes=True)
            for value, text in zip(images, captions, strict=True):
                label = f"{shard.name}:row {row}"
                try:
                    data, _, _ = image_cell(value, _refuse_path, image)
                    assert data is not None
                    alt, encoding = caption_cell(text, caption)
                    item = Item(
                        key=label,
                        label=label,
                        data=data,
                        caption=alt,
                        caption_source=f"import:{shard.name}",
                        caption_provenance={
                            "source": shard.uri,
                            "format": "parquet",
                            "row": row,
                            "column": caption,
                        }
                        if alt
                        else None,
                        not_utf8=((f"column {caption!r}", encoding),) if alt and encoding != "utf-8" else (),
                        offset=row,
                    )
                    if item.caption_provenance is not None and encoding != "utf-8":
                        item.caption_provenance["encoding"] = encoding
                    scan.members.append(_member(item, max_pixels))
                except ItemError as exc:
                    scan.skipped.append((label, exc.reason))
                row += 1
    digest = hashlib.sha256()
    with open_uri(shard.uri) as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    scan.sha256 = digest.hexdigest()


def scan_shard(
    shard: ShardFile,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    image_column: str | None = None,
    caption_column: str | None = None,
) -> ShardScan:
    """Read one shard where it lies and say what it holds (runs on any node of a cluster: no
    database, no workspace). A shard that cannot be read at all comes back with ``error``."""
    scan = ShardScan(shard)
    try:
        if shard.format == "parquet":
            _scan_parquet(shard, scan, max_pixels, image_column, caption_column)
        else:
            _scan_tar(shard, scan, max_pixels)
    except SourceError as exc:
        scan.error = str(exc)
    except (OSError, ValueError) as exc:
        scan.error = f"cannot read {shard.name}: {exc}"
    return scan


# --------------------------------------------------------------------------- writing


class ReferenceWriter:
    """Writes the scans of one import into one dataset, one transaction per shard."""

    def __init__(self, ws: Workspace, dataset_id: int, report: ImportReport) -> None:
        self.ws = ws
        self.dataset_id = dataset_id
        self.report = report

    def registered(self, shards: list[ShardFile]) -> dict[str, Shard]:
        """Shards of this list the dataset already has, by URI."""
        uris = [s.uri for s in shards]
        found: dict[str, Shard] = {}
        with read_session(self.ws) as s:
            for start in range(0, len(uris), _IN_CHUNK):
                for row in s.exec(
                    select(Shard).where(
                        Shard.dataset_id == self.dataset_id,
                        col(Shard.uri).in_(uris[start : start + _IN_CHUNK]),
                    )
                ):
                    found[row.uri] = row
        return found

    def _existing(self, hashes: list[str]) -> set[str]:
        found: set[str] = set()
        with read_session(self.ws) as s:
            for start in range(0, len(hashes), _IN_CHUNK):
                query = select(Image.sha256).where(
                    Image.dataset_id == self.dataset_id,
                    col(Image.sha256).in_(hashes[start : start + _IN_CHUNK]),
                )
                found.update(s.exec(query))
        return found

    def write(self, scan: ShardScan) -> None:
        shard = scan.shard
        if scan.error is not None:
            self.report.skip(shard.name, scan.error)
            return
        for label, reason in scan.skipped:
            self.report.skip(label, reason)
        seen = self._existing(sorted({m.sha256 for m in scan.members}))
        new: list[Member] = []
        duplicates = 0
        for member in scan.members:
            if member.sha256 in seen:
                duplicates += 1
            else:
                seen.add(member.sha256)
                new.append(member)
        with write_session(self.ws) as session:
            row = Shard(
                dataset_id=self.dataset_id,
                uri=shard.uri,
                format=shard.format,
                image_column=scan.image_column,
                nbytes=shard.nbytes,
                sha256=scan.sha256,
                members=len(new),
            )
            session.add(row)
            session.flush()
            images = [
                Image(
                    dataset_id=self.dataset_id,
                    sha256=m.sha256,
                    ext=m.ext,
                    width=m.width,
                    height=m.height,
                    nbytes=m.nbytes,
                    original_key=m.key,
                    meta=m.meta,
                )
                for m in new
            ]
            session.add_all(images)
            session.flush()
            session.add_all(
                ShardMember(image_id=image.id, shard_id=row.id, offset=m.offset)  # type: ignore[arg-type]
                for image, m in zip(images, new, strict=True)
            )
            for image, m in zip(images, new, strict=True):
                if m.caption:
                    add_caption(
                        session,
                        image.id,  # type: ignore[arg-type]
                        CaptionKind.alttext.value,
                        m.caption,
                        source=m.caption_source,
                        provenance=m.caption_provenance,
                    )
        # counted after the commit, so the report never claims rows a crash lost
        self.report.imported += len(new)
        self.report.duplicates += duplicates
        for m in new:
            self.report.not_utf8.extend(NotUtf8Text(m.key, what, enc) for what, enc in m.not_utf8)


# --------------------------------------------------------------------------- driving


def _scans_local(shards: list[ShardFile], options: dict[str, Any]) -> Iterator[ShardScan]:
    for shard in shards:
        yield scan_shard(shard, **options)


def _scans_ray(shards: list[ShardFile], options: dict[str, Any], address: str) -> Iterator[ShardScan]:
    """One Ray task per shard, at most a few per CPU in flight; results come back in shard order,
    so the first copy of an image repeated across shards is the one registered, as locally."""
    from backend.ray_cluster import cluster_resources, ray_session

    with ray_session(address, log_to_driver=False) as ray:
        task = ray.remote(scan_shard).options(num_cpus=1, max_retries=3)
        window = max(2, int(cluster_resources(ray)["CPU"]) * 2)
        todo = list(shards)
        pending: list[Any] = []
        while todo or pending:
            while todo and len(pending) < window:
                pending.append(task.remote(todo.pop(0), **options))
            yield ray.get(pending.pop(0))


def register_shards(
    ws: Workspace,
    source: str | os.PathLike[str],
    dataset: str,
    *,
    engine: str = "local",
    ray_address: str = "",
    image_column: str | None = None,
    caption_column: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: ProgressFn | None = None,
) -> ImportReport:
    """Register every readable image of the shards at ``source`` into ``dataset`` by reference.

    Raises SourceError, with nothing written, when there are no shards to read or the engine is
    unknown; bad items and unreadable shards are skipped with a reason in the report.
    """
    name = dataset.strip()
    if not name:
        raise SourceError("dataset name must not be empty")
    if engine not in ENGINES:
        raise SourceError(f"engine must be one of {', '.join(ENGINES)} (got {engine!r})")
    if max_pixels < 1:
        raise SourceError(f"max_pixels must be a positive number of pixels, not {max_pixels}")
    shards = list_shard_files(str(source))
    with write_session(ws) as session:
        dataset_id = get_or_create_dataset(session, name).id
    assert dataset_id is not None
    report = ImportReport(dataset=name)
    writer = ReferenceWriter(ws, dataset_id, report)
    known = writer.registered(shards)  # a rerun: shards registered whole are skipped, changed ones refused
    todo = []
    for shard in shards:
        row = known.get(shard.uri)
        if row is None:
            todo.append(shard)
        elif row.nbytes == shard.nbytes:
            report.duplicates += row.members
        else:
            report.skip(
                shard.name,
                f"changed since it was registered ({row.nbytes:,} bytes then, {shard.nbytes:,} now): its "
                "images would no longer be where they were recorded; register the new version under another "
                "name or into another dataset",
            )
    progress = progress or no_progress
    message = f"registering {len(todo)} shards by reference"
    progress(0, len(todo), message)
    options = {"max_pixels": max_pixels, "image_column": image_column, "caption_column": caption_column}
    scans = (
        _scans_ray(todo, options, ray_address) if engine == "ray" and todo else _scans_local(todo, options)
    )
    for done, scan in enumerate(scans, start=1):
        writer.write(scan)
        progress(done, len(todo), message)
    return report
