"""Reading files that the *data* points at, without ever following a link out.

Paths from a source are joined with :func:`backend.workspace.safe_join` (no absolute
paths, no ``..``, no symlinked component). The open itself uses ``O_NOFOLLOW`` so a link
swapped in after that check is still refused, and ``O_NONBLOCK`` plus a regular-file
check so a FIFO or device named like an image cannot hang or flood the import.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from backend.ingest.items import MAX_FILE_BYTES, ItemError
from backend.workspace import UnsafePathError, safe_join

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)

# (device, inode, size, mtime_ns): identifies one version of one file cheaply
Fingerprint = tuple[int, int, int, int]


def join_inside(root: Path, relative: str) -> Path:
    """``safe_join`` with its refusal turned into an item-level reason."""
    try:
        return safe_join(root, relative)
    except UnsafePathError as exc:
        raise ItemError(f"unsafe path refused: {exc}") from None


def open_regular(path: Path, shown: str, what: str = "image file") -> tuple[int, os.stat_result]:
    """Open a regular file without following a final symlink; returns (fd, stat)."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        raise ItemError(f"{what} not found: {shown}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ItemError(f"symbolic link not followed: {shown}") from None
        raise ItemError(f"cannot open {shown}: {exc.strerror or exc}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise ItemError(f"not a regular file: {shown}")
    return fd, st


def fingerprint(st: os.stat_result) -> Fingerprint:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def read_fd(fd: int, st: os.stat_result, shown: str, limit: int = MAX_FILE_BYTES) -> bytes:
    if st.st_size > limit:
        raise ItemError(f"file too large to import: {shown} is {st.st_size:,} bytes (limit {limit:,})")
    chunks: list[bytes] = []
    remaining = limit + 1
    while remaining > 0:
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    data = b"".join(chunks)
    if len(data) > limit:
        raise ItemError(f"file too large to import: {shown} grew past {limit:,} bytes while reading")
    return data


def read_file(path: Path, shown: str, what: str = "file", limit: int = MAX_FILE_BYTES) -> bytes:
    fd, st = open_regular(path, shown, what)
    try:
        return read_fd(fd, st, shown, limit)
    finally:
        os.close(fd)


class SafeJoiner:
    """:func:`join_inside` under one root, memoised per import.

    Why: a table often names the same file in many rows (the 100k-row case), and
    ``safe_join`` resolves the whole path each time. Refusals are not cached, and the
    file is still opened with ``O_NOFOLLOW`` on every read.
    """

    def __init__(self, root: Path, limit: int = 65_536) -> None:
        self.root = root
        self.limit = limit
        self._cache: dict[str, Path] = {}

    def __call__(self, relative: str) -> Path:
        path = self._cache.get(relative)
        if path is None:
            path = join_inside(self.root, relative)
            if len(self._cache) >= self.limit:
                self._cache.clear()
            self._cache[relative] = path
        return path
