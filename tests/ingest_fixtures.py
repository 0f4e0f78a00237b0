"""Builders of real import sources, good and bad, for the importer tests.

Everything is built in a test's tmp_path from real bytes: real JPEG/PNG files, real
tar archives (with hostile members), real Parquet and ``save_to_disk`` folders.
"""

from __future__ import annotations

import io
import json
import os
import struct
import tarfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image as PILImage
from sqlalchemy import text

from backend.db import read_session
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
LATIN1_CAPTION = "caf\u00e9 au lait".encode("latin-1")  # not valid UTF-8; read as cp1252
# (text, encoding) pairs the fallback chain reads back exactly (backend/ingest/text.py)
LEGACY_CAPTIONS = [
    ("caf\u00e9 au lait", "latin-1"),
    ("\u201csmart\u201d quotes \u2013 and caf\u00e9", "cp1252"),
    ("Za\u017c\u00f3\u0142\u0107 g\u0119\u015bl\u0105 ja\u017a\u0144", "cp1250"),
    (
        "\u041a\u043e\u0448\u043a\u0430 \u0441\u0438\u0434\u0438\u0442 \u043d\u0430 \u043a\u0440\u0430\u0441\u043d\u043e\u043c \u0434\u0438\u0432\u0430\u043d\u0435",
        "cp1251",
    ),
    (
        "\u0391 cat on a mat, \u03bc\u03b9\u03b1 \u03b3\u03ac\u03c4\u03b1 \u03ba\u03ac\u03b8\u03b5\u03c4\u03b1\u03b9",
        "cp1253",
    ),
    ("\u685c\u306e\u6728\u306e\u4e0b\u3067\u732b\u304c\u5bdd\u3066\u3044\u308b", "shift_jis"),
    ("\u4e00\u53ea\u732b\u5750\u5728\u7ea2\u8272\u7684\u6c99\u53d1\u4e0a", "gb18030"),
    ("\uace0\uc591\uc774\uac00 \uc18c\ud30c\uc5d0 \uc549\uc544 \uc788\ub2e4", "euc_kr"),
    ("a cat on a mat", "utf-16"),  # with its byte-order mark, as Windows Notepad saves "Unicode"
]
NOT_TEXT = bytes(range(256))  # no encoding reads this as text


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
    """Rows of ``sql`` (``?`` placeholders) read from the workspace's database, whichever engine."""
    parts = sql.split("?")
    named = "".join(part + (f":p{i}" if i < len(parts) - 1 else "") for i, part in enumerate(parts))
    with read_session(ws) as session:
        result = session.execute(text(named), {f"p{i}": arg for i, arg in enumerate(args)})
        return [tuple(row) for row in result]


def stored_json(value: object) -> object:
    """A JSON column as read back: SQLite hands the text, PostgreSQL the decoded value."""
    return json.loads(value) if isinstance(value, str | bytes) else value


def dataset_rows(ws: Workspace, dataset: str) -> dict[str, list[str]]:
    """original_key -> alt-text captions of that image, for one dataset."""
    rows = query(
        ws,
        "SELECT i.original_key, c.text FROM image i JOIN dataset d ON d.id = i.dataset_id "
        "LEFT JOIN caption c ON c.image_id = i.id WHERE d.name = ? ORDER BY i.id, c.id",
        dataset,
    )
    out: dict[str, list[str]] = {}
    for key, caption in rows:
        out.setdefault(key, [])
        if caption is not None:
            out[key].append(caption)
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
        ("latin", image_bytes(3), LATIN1_CAPTION, None),  # imported, its caption read as cp1252
        ("same_as_good", image_bytes(1), b"same bytes as good", "duplicate"),  # sorts after "good"
    ]


# -- hostile JSON: values that made json.loads raise past the importers --------------------------


@dataclass(frozen=True)
class HostileJson:
    name: str
    text: bytes  # a JSON value, spliced into a JSON line or stored as a WebDataset .json member
    # expected reason fragment per format ("jsonl", "webdataset"), None for "imported"
    jsonl: str | None
    webdataset: str | None


def hostile_json() -> list[HostileJson]:
    """JSON values that once stopped a whole import (issue 9, section 4), and their outcome.

    In a JSON line the value sits under an extra key, so only the line's own parsing is
    at stake; as a ``.json`` member it becomes the image's stored metadata, which must
    also stay readable (depth, lone surrogates) and standard JSON (NaN stored as null).
    """
    return [
        HostileJson("deep", b"[" * 200_000, "nests too deeply", "nests more than 64 levels deep"),
        HostileJson(
            "deep_closed", b"[" * 2000 + b"]" * 2000, "nests too deeply", "nests more than 64 levels"
        ),
        HostileJson("hugeint", b"9" * 5000, "integer of 5,000 digits", "integer of 5,000 digits"),
        HostileJson("neghugeint", b"-" + b"9" * 4301, "integer of 4,301 digits", "integer of 4,301 digits"),
        HostileJson("nested_hugeint", b'{"a": [' + b"1" * 4400 + b"]}", "4,400 digits", "4,400 digits"),
        HostileJson(
            "nonfinite", b'{"nan": NaN, "inf": Infinity, "ninf": -Infinity, "big": 1e400}', None, None
        ),
        HostileJson("deep_but_parses", b"[" * 100 + b"]" * 100, None, "nests more than 64 levels deep"),
        HostileJson("surrogate", b'{"s": "\\ud800"}', None, "unpaired surrogate (\\ud800)"),
        HostileJson("control", b'"a\x01b"', "not valid JSON: Invalid control character", "not valid JSON"),
        HostileJson("trailing", b"{} {}", "not valid JSON: Expecting ','", "not valid JSON: Extra data"),
    ]


def build_hostile_json(fmt: str, root: Path) -> Path:
    """A JSON-lines table or a shard: good items around every :func:`hostile_json` value.

    The hostile lines come first, so a JSON-lines table also puts them through its column
    scan (the first 1000 lines), where a RecursionError once escaped before any row was read.
    """
    import json as _json

    cases = hostile_json()
    root.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        lines = []
        for i, case in enumerate(cases):
            write(root / "imgs" / f"{case.name}.jpg", image_bytes(100 + i))
            head = _json.dumps({"image": f"imgs/{case.name}.jpg", "caption": case.name})[:-1].encode()
            lines.append(head + b', "extra": ' + case.text + b"}")
        for name, seed in (("good1", 1), ("good2", 2)):
            write(root / "imgs" / f"{name}.jpg", image_bytes(seed))
            lines.append(_json.dumps({"image": f"imgs/{name}.jpg", "caption": name}).encode())
        return write(root / "hostile.jsonl", b"\n".join(lines) + b"\n")
    if fmt == "webdataset":
        members = sample("good1", 1, "good1", '{"ok": 1}')
        for i, case in enumerate(cases):
            members += [
                Member(f"{case.name}.jpg", image_bytes(100 + i)),
                Member(f"{case.name}.txt", case.name.encode()),
                Member(f"{case.name}.json", case.text),
            ]
        members += sample("good2", 2, "good2")
        return write_tar(root / "hostile.tar", members)
    raise ValueError(fmt)


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
