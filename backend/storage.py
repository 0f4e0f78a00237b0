"""Content-addressed image storage inside the workspace, and reading images kept in shards.

Why content addressing: the same file imported twice (or into two datasets) is stored
once, dedupe is a hash lookup, and a stored file is never modified after it is written.
Writes go to a temporary file in the same folder and are renamed into place, so a kill
at any moment leaves either the whole file or nothing under its final name.

Images registered *by reference* (:mod:`backend.shards`) have no file here: their bytes are
a member of a WebDataset tar (read by offset: one seek, one read) or a row of a Parquet file.
:func:`read_members` reads a batch of them, one open per shard, and checks each against the
SHA-256 recorded at registration, so a shard that changed since is an error, never a wrong
picture. Review makes their thumbnails on demand (:func:`ensure_thumbnail`) and keeps the
original of an image someone opens (:func:`ensure_original`), both under the usual
content-addressed names, so everything downstream (access rules included) treats them alike.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from PIL import Image as PILImage

from backend.workspace import Workspace

THUMB_SIZE = 256


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def image_path(ws: Workspace, sha256: str, ext: str) -> Path:
    return ws.images_dir / sha256[:2] / f"{sha256}.{ext}"


def thumb_path(ws: Workspace, sha256: str) -> Path:
    return ws.thumbs_dir / sha256[:2] / f"{sha256}.jpg"


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def store_thumbnail(ws: Workspace, sha256: str, decoded: PILImage.Image) -> Path:
    """A JPEG thumbnail of ``decoded`` under its content address (idempotent)."""
    tpath = thumb_path(ws, sha256)
    if not tpath.exists():
        thumb = decoded.copy()
        thumb.thumbnail((THUMB_SIZE, THUMB_SIZE))
        if thumb.mode not in ("RGB", "L"):
            thumb = thumb.convert("RGBA")
            background = PILImage.new("RGB", thumb.size, (255, 255, 255))
            background.paste(thumb, mask=thumb.getchannel("A"))
            thumb = background
        buf = io.BytesIO()
        thumb.save(buf, format="JPEG", quality=85)
        _atomic_write(tpath, buf.getvalue())
    return tpath


def store_image(ws: Workspace, data: bytes, sha256: str, ext: str, decoded: PILImage.Image) -> Path:
    """Store original bytes and a JPEG thumbnail; both idempotent."""
    path = image_path(ws, sha256, ext)
    if not path.exists():
        _atomic_write(path, data)
    store_thumbnail(ws, sha256, decoded)
    return path


# --------------------------------------------------------------------------- images kept in shards


@dataclass(frozen=True)
class MemberRef:
    """Where the bytes of one image registered by reference are (see :mod:`backend.shards`)."""

    uri: str  # the shard: an absolute path, or a pyarrow filesystem URI (s3://...)
    format: str  # "webdataset" (an uncompressed tar) or "parquet"
    offset: int  # tar: byte offset of the member's data; Parquet: row index in the file
    size: int  # the image's size in bytes
    column: str | None = None  # Parquet: the column that holds the image
    sha256: str = ""  # what the bytes must hash to ("" = not checked)


class MemberError(OSError):
    """An image that cannot be read out of its shard; the message says which and why."""


def open_uri(uri: str) -> IO[bytes]:
    """A seekable binary file: a local path, or a URI pyarrow's filesystems know (s3://, gs://, hdfs://)."""
    if "://" in uri and not uri.startswith("file://"):
        from pyarrow import fs

        filesystem, path = fs.FileSystem.from_uri(uri)
        return filesystem.open_input_file(path)  # type: ignore[return-value]
    return open(uri.removeprefix("file://"), "rb")  # noqa: SIM115 - the caller closes it


def _parquet_cell(value: Any) -> bytes:
    if isinstance(value, dict):  # a Hugging Face image struct {"bytes": ..., "path": ...}
        value = value.get("bytes")
    if not isinstance(value, bytes | bytearray | memoryview):
        raise MemberError(f"the cell holds {type(value).__name__}, not image bytes")
    return bytes(value)


def _read_parquet(fh: IO[bytes], refs: list[tuple[int, MemberRef]], out: list[Any]) -> None:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(fh)
    starts, total = [], 0
    for group in range(pf.metadata.num_row_groups):
        starts.append(total)
        total += pf.metadata.row_group(group).num_rows
    by_group: dict[int, list[tuple[int, MemberRef]]] = defaultdict(list)
    for index, ref in refs:
        if not 0 <= ref.offset < total:
            out[index] = MemberError(f"{ref.uri}: row {ref.offset} is past its {total} rows (shard changed?)")
            continue
        group = max(g for g, start in enumerate(starts) if start <= ref.offset)
        by_group[group].append((index, ref))
    for group, wanted in sorted(by_group.items()):
        columns = sorted({ref.column or "image" for _, ref in wanted})
        table = pf.read_row_group(group, columns=columns)
        for index, ref in wanted:
            try:
                cell = table.column(ref.column or "image")[ref.offset - starts[group]].as_py()
                out[index] = _parquet_cell(cell)
            except MemberError as exc:
                out[index] = MemberError(f"{ref.uri}: row {ref.offset}: {exc}")


def read_members(refs: Sequence[MemberRef]) -> list[bytes | MemberError]:
    """The bytes of each image (in order), or a :class:`MemberError` saying why not.

    One open per shard and, for Parquet, one read per row group; every result is checked
    against its recorded SHA-256. Nothing raises for a single bad image: a missing shard or a
    changed member is that image's error, so a batch over a million images goes on.
    """
    out: list[Any] = [None] * len(refs)
    by_shard: dict[str, list[tuple[int, MemberRef]]] = defaultdict(list)
    for index, ref in enumerate(refs):
        by_shard[ref.uri].append((index, ref))
    for uri, wanted in by_shard.items():
        try:
            with open_uri(uri) as fh:
                if wanted[0][1].format == "parquet":
                    _read_parquet(fh, wanted, out)
                else:
                    for index, ref in sorted(wanted, key=lambda w: w[1].offset):
                        fh.seek(ref.offset)
                        data = fh.read(ref.size)
                        out[index] = (
                            data
                            if len(data) == ref.size
                            else MemberError(
                                f"{uri} ends before the member at byte {ref.offset} (shard changed?)"
                            )
                        )
        except (OSError, ValueError) as exc:  # a missing or truncated shard fails its members, not the batch
            error = exc if isinstance(exc, MemberError) else MemberError(f"cannot read shard {uri}: {exc}")
            for index, _ in wanted:
                if out[index] is None:
                    out[index] = error
    for index, ref in enumerate(refs):
        data = out[index]
        if isinstance(data, bytes) and ref.sha256 and sha256_bytes(data) != ref.sha256:
            out[index] = MemberError(
                f"{ref.uri}: the member at {ref.offset} is not the image registered there (shard changed)"
            )
    return out


def ensure_thumbnail(ws: Workspace, sha256: str, data: bytes) -> Path:
    """The thumbnail of an image read out of its shard, made on first use."""
    path = thumb_path(ws, sha256)
    if path.exists():
        return path
    with PILImage.open(io.BytesIO(data)) as im:
        im.load()
        return store_thumbnail(ws, sha256, im)


def ensure_original(ws: Workspace, ref: MemberRef, ext: str) -> Path:
    """The original of an image registered by reference as a workspace file, read out of its
    shard the first time someone opens it (Review's detail view needs a file)."""
    path = image_path(ws, ref.sha256, ext)
    if not path.exists():
        (data,) = read_members([ref])
        if isinstance(data, MemberError):
            raise data
        _atomic_write(path, data)
    return path


def unavailable_thumbnail(ws: Workspace) -> Path:
    """A grey placeholder shown for an image whose shard cannot be read (moved, changed, offline)."""
    path = ws.thumbs_dir / "unavailable.jpg"
    if not path.exists():
        buf = io.BytesIO()
        PILImage.new("RGB", (THUMB_SIZE, THUMB_SIZE), (200, 200, 200)).save(buf, format="JPEG")
        _atomic_write(path, buf.getvalue())
    return path
