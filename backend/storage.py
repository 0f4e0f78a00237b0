"""Content-addressed image storage inside the workspace.

Why content addressing: the same file imported twice (or into two datasets) is stored
once, dedupe is a hash lookup, and a stored file is never modified after it is written.
Writes go to a temporary file in the same folder and are renamed into place, so a kill
at any moment leaves either the whole file or nothing under its final name.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path

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


def store_image(ws: Workspace, data: bytes, sha256: str, ext: str, decoded: PILImage.Image) -> Path:
    """Store original bytes and a JPEG thumbnail; both idempotent."""
    path = image_path(ws, sha256, ext)
    if not path.exists():
        _atomic_write(path, data)
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
    return path
