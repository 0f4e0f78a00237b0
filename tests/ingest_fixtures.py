"""Builders of real import sources, good and bad, for the importer tests.

Everything is built in a test's tmp_path from real bytes: real JPEG/PNG files, real
tar archives (with hostile members), real Parquet and ``save_to_disk`` folders.
"""

from __future__ import annotations

import io
import os
import sqlite3
import struct
import tarfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image as PILImage

from backend.workspace import Workspace


def image_bytes(seed: int, size: tuple[int, int] = (16, 16), fmt: str = "JPEG") -> bytes:
    """A small image whose content (hence hash) differs per seed."""
    color = ((seed * 67) % 256, (seed * 131) % 256, (seed * 29 + 7) % 256)
    img = PILImage.new("RGB", size, color)
    img.putpixel((0, 0), (seed % 256, (seed // 256) % 256, 3))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def noisy_jpeg(size: tuple[int, int] = (96, 96)) -> bytes:
    img = PILImage.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def truncated_jpeg() -> bytes:
    data = noisy_jpeg()
    return data[: len(data) // 2]


def corrupt_png() -> bytes:
    """A PNG whose pixel data no longer matches its checksum."""
    data = bytearray(image_bytes(1, size=(32, 32), fmt="PNG"))
    at = data.index(b"IDAT") + 8
    data[at] ^= 0xFF
    return bytes(data)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def bomb_png(width: int, height: int) -> bytes:
    """A tiny file whose header claims ``width x height`` pixels (a decompression bomb)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
        + _png_chunk(b"IEND", b"")
    )


def ico_bytes() -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", (16, 16), (1, 2, 3)).save(buf, format="ICO")
    return buf.getvalue()


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>'
LATIN1_CAPTION = "caf\u00e9 au lait".encode("latin-1")  # not valid UTF-8


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


# -- tar shards --------------------------------------------------------------------------


@dataclass
class Member:
    name: str
    data: bytes = b""
    kind: bytes = tarfile.REGTYPE
    linkname: str = ""


def write_tar(path: Path, members: Iterable[Member], mode: str = "w") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, mode, format=tarfile.GNU_FORMAT) as tar:
        for m in members:
            info = tarfile.TarInfo(m.name)
            info.type = m.kind
            info.linkname = m.linkname
            info.mode = 0o644
            if m.kind == tarfile.REGTYPE:
                info.size = len(m.data)
                tar.addfile(info, io.BytesIO(m.data))
            else:
                tar.addfile(info)
    return path


def sample(key: str, seed: int, caption: str | None = None, meta: str | None = None) -> list[Member]:
    """The members img2dataset writes for one sample."""
    members = [Member(f"{key}.jpg", image_bytes(seed))]
    if caption is not None:
        members.append(Member(f"{key}.txt", caption.encode()))
    if meta is not None:
        members.append(Member(f"{key}.json", meta.encode()))
    return members


# -- looking at what was written -----------------------------------------------------------


def query(ws: Workspace, sql: str, *args: object) -> list[tuple]:
    with sqlite3.connect(ws.db_path) as con:
        return con.execute(sql, args).fetchall()


def dataset_rows(ws: Workspace, dataset: str) -> dict[str, list[str]]:
    """original_key -> alt-text captions of that image, for one dataset."""
    rows = query(
        ws,
        "SELECT i.original_key, c.text FROM image i JOIN dataset d ON d.id = i.dataset_id "
        "LEFT JOIN caption c ON c.image_id = i.id WHERE d.name = ? ORDER BY i.id, c.id",
        dataset,
    )
    out: dict[str, list[str]] = {}
    for key, text in rows:
        out.setdefault(key, [])
        if text is not None:
            out[key].append(text)
    return out


def assert_consistent(ws: Workspace) -> None:
    """No orphan caption, at most one imported alt-text per image, every image file present."""
    assert query(
        ws, "SELECT count(*) FROM caption c LEFT JOIN image i ON i.id = c.image_id WHERE i.id IS NULL"
    ) == [(0,)]
    assert (
        query(ws, "SELECT image_id FROM caption WHERE kind = 'alttext' GROUP BY image_id HAVING count(*) > 1")
        == []
    )
    for sha, ext in query(ws, "SELECT sha256, ext FROM image"):
        assert (ws.images_dir / sha[:2] / f"{sha}.{ext}").is_file()


def nothing_written(ws: Workspace) -> bool:
    """No dataset row and no stored file: what a refused source must leave behind."""
    no_rows = query(ws, "SELECT count(*) FROM dataset") == [(0,)] and query(
        ws, "SELECT count(*) FROM image"
    ) == [(0,)]
    no_files = not any(p.is_file() for p in ws.images_dir.rglob("*")) and not any(
        p.is_file() for p in ws.thumbs_dir.rglob("*")
    )
    return no_rows and no_files


def snapshot(root: Path, exclude: Path | None = None) -> set[str]:
    """Every path under root (links not followed), to prove nothing appeared outside."""
    found: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if exclude is not None and (here == exclude or exclude in here.parents):
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            found.add(str((here / name).relative_to(root)))
    return found


# -- one set of items, written in every format ------------------------------------------------------


def bad_items() -> list[tuple[str, bytes, bytes | None, str | None]]:
    """(name, image bytes, caption bytes, expected reason fragment or None for "imported")."""
    return [
        ("good", image_bytes(1), b"a good caption", None),
        ("nocap", image_bytes(2), None, None),
        ("zero", b"", b"zero", "empty file (0 bytes)"),
        ("trunc", truncated_jpeg(), b"trunc", "truncated image"),
        ("corrupt", corrupt_png(), b"corrupt", "corrupt image"),
        ("bomb", bomb_png(9000, 9000), b"bomb", "image too large"),
        ("text", b"plain text renamed to .jpg", b"text", "not a recognisable image"),
        ("ico", ico_bytes(), b"ico", "unsupported image format ICO"),
        ("latin", image_bytes(3), LATIN1_CAPTION, "not valid UTF-8"),
        ("same_as_good", image_bytes(1), b"same bytes as good", "duplicate"),  # sorts after "good"
    ]


def build_source(fmt: str, root: Path) -> Path:
    """Write :func:`bad_items` as a source of the given format; returns the path to import."""
    import json as _json

    items = bad_items()
    root.mkdir(parents=True, exist_ok=True)
    if fmt == "folder":
        for name, data, caption, _ in items:
            write(root / f"{name}.jpg", data)
            if caption is not None:
                write(root / f"{name}.txt", caption)
        return root
    if fmt in ("csv", "jsonl"):
        for name, data, _, _ in items:
            write(root / "imgs" / f"{name}.jpg", data)
        lines = []
        for name, _, caption, _ in items:
            text = caption or b""
            if fmt == "csv":
                lines.append(f"imgs/{name}.jpg,".encode() + text)
            else:  # JSON with the raw bytes spliced in, so bad UTF-8 stays bad
                lines.append(b'{"image": "imgs/' + name.encode() + b'.jpg", "caption": "' + text + b'"}')
        header = [b"image,caption"] if fmt == "csv" else []
        return write(root / f"table.{fmt}", b"\n".join(header + lines) + b"\n")
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table(
            {
                "image": pa.array([data for _, data, _, _ in items], pa.binary()),
                "caption": pa.array([caption for _, _, caption, _ in items], pa.binary()),
            }
        )
        pq.write_table(table, root / "table.parquet")
        return root / "table.parquet"
    if fmt == "webdataset":
        members: list[Member] = []
        for name, data, caption, _ in items:
            members.append(Member(f"{name}.jpg", data))
            if caption is not None:
                members.append(Member(f"{name}.txt", caption))
            members.append(Member(f"{name}.json", _json.dumps({"name": name}).encode()))
        return write_tar(root / "shard.tar", members)
    if fmt == "hf":
        import datasets

        features = datasets.Features({"image": datasets.Image(), "caption": datasets.Value("binary")})
        datasets.Dataset.from_dict(
            {
                "image": [{"bytes": data, "path": None} for _, data, _, _ in items],
                "caption": [caption for _, _, caption, _ in items],
            },
            features=features,
        ).save_to_disk(str(root / "hf"))
        return root / "hf"
    raise ValueError(fmt)
