"""WebDataset shards in img2dataset layout: ``key.jpg`` + ``key.txt`` + ``key.json`` per sample.

Why streaming (``tarfile`` mode ``r|*``): shards are often gigabytes and sometimes
gzipped; each member is read once, in order, and nothing is ever extracted to disk, so
hostile member names (absolute, ``..``) and link or device members can do no harm. They
are still reported, because a shard that holds them is not what its author meant.

Grouping follows the WebDataset convention: the key is the member name up to the first
dot of its basename, within its directory, and a sample's members are adjacent. Only one
sample's members are held in memory at a time.

Why a sample is only ever skipped, never the shard: a ``.json`` member is parsed by
:func:`backend.ingest.jsontext.load_json` (deep nesting, huge integers and ``NaN`` cannot
raise out of it) and ``.txt``/``.json`` text by :func:`backend.ingest.text.decode_text`
(a caption in a legacy encoding is read, and the encoding recorded, instead of refused).
"""

from __future__ import annotations

import glob
import os
import posixpath
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import IO

from backend.images import IMAGE_SUFFIXES
from backend.ingest.items import (
    MAX_CAPTION_BYTES,
    MAX_FILE_BYTES,
    UNSUPPORTED_IMAGE_SUFFIXES,
    Item,
    ItemError,
    clean_caption,
)
from backend.ingest.jsontext import MAX_STORED_DEPTH, load_json
from backend.ingest.report import SourceError
from backend.ingest.sources import display_name
from backend.ingest.text import decode_text, printable_name

SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")
_IMAGE_EXTS = {s[1:] for s in IMAGE_SUFFIXES}
_ODD_EXTS = {s[1:] for s in UNSUPPORTED_IMAGE_SUFFIXES}
_TEXT_EXTS = {"txt", "json"}
_TAR_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error)


def is_shard_name(name: str) -> bool:
    return name.lower().endswith(SHARD_SUFFIXES)


@dataclass(frozen=True)
class _Shard:
    path: Path
    name: str
    error: str | None = None


@dataclass
class _Group:
    key: str
    parts: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # ext -> (member, data)
    offsets: dict[str, int] = field(default_factory=dict)  # ext -> byte offset of the member's data
    errors: list[str] = field(default_factory=list)


def member_problem(member: tarfile.TarInfo) -> str | None:
    """Why a member is refused without being read, or None for a plain file or folder."""
    name = member.name
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return f"absolute member name refused: {name}"
    if ".." in name.replace("\\", "/").split("/"):
        return f"member name leaves the archive ('..') refused: {name}"
    if member.issym():
        return f"symbolic link member refused: {name} -> {member.linkname}"
    if member.islnk():
        return f"hard link member refused: {name} -> {member.linkname}"
    if member.isdev():
        return f"device or FIFO member refused: {name}"
    if not (member.isreg() or member.isdir()):
        return f"unsupported tar member type {member.type!r}: {name}"
    return None


def list_shards(source: Path) -> list[_Shard]:
    """A shard file, the shards directly inside a folder, or the files a glob matches."""
    if source.is_file():
        return [_Shard(source, printable_name(source.name))]
    if source.is_dir():
        shards: list[_Shard] = []
        with os.scandir(source) as listing:
            for child in sorted(listing, key=lambda e: e.name):
                if child.name.startswith(".") or not is_shard_name(child.name):
                    continue
                if child.is_symlink():
                    shards.append(
                        _Shard(Path(child.path), printable_name(child.name), "symbolic link not followed")
                    )
                elif child.is_file(follow_symlinks=False):
                    shards.append(_Shard(Path(child.path), printable_name(child.name)))
        return shards
    if glob.has_magic(str(source)):
        matches = sorted(glob.glob(str(source)))
        return [_Shard(Path(m), printable_name(Path(m).name)) for m in matches if Path(m).is_file()]
    return []


def _check_shard(shard: _Shard) -> _Shard:
    if shard.error is not None:
        return shard
    try:
        with tarfile.open(shard.path, mode="r|*") as tar:
            tar.next()
    except _TAR_ERRORS as exc:
        return _Shard(shard.path, shard.name, f"not a readable tar archive: {exc}")
    return shard


@dataclass
class WebDatasetSource:
    source: Path
    shards: list[_Shard]
    format: str = "webdataset"
    total: int | None = None  # unknown without reading every shard

    @cached_property
    def name(self) -> str:
        return display_name(self.source)

    def items(self) -> Iterator[Item]:
        for shard in self.shards:
            if shard.error is not None:
                yield Item(key=shard.name, label=shard.name, error=shard.error)
            else:
                yield from self._shard_items(shard)

    def _shard_items(self, shard: _Shard, fileobj: IO[bytes] | None = None) -> Iterator[Item]:
        """The samples of one shard, read in one pass; from ``fileobj`` when given (a registration
        by reference reads through a hashing reader), else from the shard's path."""
        group: _Group | None = None
        finished: set[str] = set()
        try:
            with tarfile.open(shard.path, mode="r|*", fileobj=fileobj) as tar:
                for member in tar:
                    problem = member_problem(member)
                    if problem is not None:
                        label = f"{shard.name}:{member.name}"
                        yield Item(key=label, label=label, error=problem)
                        continue
                    if member.isdir():
                        continue
                    name = printable_name(member.name)  # names that are not UTF-8 as \xNN
                    while name.startswith("./"):
                        name = name[2:]
                    directory, base = posixpath.split(name)
                    if not base or base.startswith("."):
                        continue
                    stem, _, ext = base.partition(".")
                    key = posixpath.join(directory, stem)
                    if group is None or key != group.key:
                        if group is not None:
                            finished.add(group.key)
                            yield from self._group_items(shard, group)
                        group = _Group(key)
                        if key in finished:
                            group.errors.append(
                                "members of this key are not adjacent in the shard (WebDataset needs them adjacent)"
                            )
                    ext = ext.lower()
                    if ext not in _IMAGE_EXTS and ext not in _ODD_EXTS and ext not in _TEXT_EXTS:
                        continue  # other fields (.cls, .npy, ...) are not read at all
                    limit = MAX_CAPTION_BYTES if ext in _TEXT_EXTS else MAX_FILE_BYTES
                    if member.size > limit:
                        group.errors.append(f"member {name} is {member.size:,} bytes (limit {limit:,})")
                        continue
                    extracted = tar.extractfile(member)
                    group.parts[ext] = (name, extracted.read() if extracted is not None else b"")
                    group.offsets[ext] = member.offset_data
            if group is not None:
                yield from self._group_items(shard, group)
        except _TAR_ERRORS as exc:
            where = f"{shard.name}:{group.key}" if group is not None else shard.name
            yield Item(
                key=where,
                label=where,
                error=f"shard unreadable from here on, rest of {shard.name} skipped: {exc}",
            )

    def _group_items(self, shard: _Shard, group: _Group) -> Iterator[Item]:
        label = f"{shard.name}:{group.key}"
        if not group.parts and not group.errors:
            return  # nothing of interest under this key (e.g. only .cls files)
        images = [ext for ext in group.parts if ext in _IMAGE_EXTS]
        try:
            if group.errors:
                raise ItemError("; ".join(group.errors))
            if not images:
                odd = [ext for ext in group.parts if ext in _ODD_EXTS]
                if odd:
                    raise ItemError(f"unsupported image format .{odd[0]}")
                found = ", ".join(f".{ext}" for ext in group.parts)
                raise ItemError(f"no image member for this key (found {found})")
            if len(images) > 1:
                found = ", ".join(f".{ext}" for ext in images)
                raise ItemError(
                    f"several image members ({found}) for one key; unclear which the caption describes"
                )
            caption = None
            txt_name = None
            caption_encoding = None
            not_utf8: list[tuple[str, str]] = []
            if "txt" in group.parts:
                txt_name, raw = group.parts["txt"]
                decoded = decode_text(raw, f"caption {txt_name}")
                caption = clean_caption(decoded.text)
                if caption and not decoded.is_utf8:
                    caption_encoding = decoded.encoding
                    not_utf8.append((f"caption {txt_name}", caption_encoding))
            meta = None
            if "json" in group.parts:
                json_name, raw = group.parts["json"]
                decoded_meta = decode_text(raw, f"metadata {json_name}")
                value = load_json(decoded_meta.text, f"metadata {json_name}", max_depth=MAX_STORED_DEPTH)
                meta = value if isinstance(value, dict) else {"json": value}
                if not decoded_meta.is_utf8:
                    not_utf8.append((f"metadata {json_name}", decoded_meta.encoding))
        except ItemError as exc:
            yield Item(key=label, label=label, error=exc.reason)
            return
        provenance = {
            "source": str(Path(os.path.abspath(self.source))),
            "format": self.format,
            "shard": shard.name,
            "member": txt_name,
        }
        if caption_encoding:
            provenance["encoding"] = caption_encoding
        yield Item(
            key=label,
            label=label,
            data=group.parts[images[0]][1],
            caption=caption,
            caption_source=f"import:{self.name}",
            caption_provenance=provenance if caption else None,
            meta=meta,
            not_utf8=tuple(not_utf8),
            offset=group.offsets.get(images[0]),
        )


def open_webdataset(source: Path) -> WebDatasetSource:
    shards = [_check_shard(shard) for shard in list_shards(source)]
    if not shards:
        raise SourceError(f"no .tar shards found at {source}")
    readable = [s for s in shards if s.error is None]
    if not readable:
        first = shards[0]
        raise SourceError(f"no readable shard at {source}: {first.name}: {first.error}")
    return WebDatasetSource(source=source, shards=shards)
