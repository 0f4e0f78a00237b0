"""Decode and validate untrusted image bytes, and record them in a dataset.

Every importer (and the demo) goes through :func:`decode_image` and :func:`add_image`,
so the rules for bad input live in one place: empty files, unsupported formats,
decompression bombs (pixel limit checked from the header *before* decoding), corrupt
or truncated data are all refused with a specific reason, and nothing is stored.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

from PIL import Image as PILImage
from PIL import UnidentifiedImageError
from sqlmodel import Session, select

from backend.models import Image
from backend.storage import sha256_bytes, store_image
from backend.workspace import Workspace

DEFAULT_MAX_PIXELS = 64_000_000  # about 8000 x 8000; configurable per import
# We check the pixel count ourselves, from the header, before decoding (with the
# per-import limit). Pillow's own global limit would otherwise cap every import at
# about 179 M pixels whatever --max-pixels says.
PILImage.MAX_IMAGE_PIXELS = None
FORMAT_EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


class BadImage(ValueError):
    """The bytes are not an image we accept; the message is the reason shown to users."""


@dataclass
class DecodedImage:
    data: bytes
    sha256: str
    ext: str
    width: int
    height: int
    pil: PILImage.Image


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    if not data:
        raise BadImage("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            img = PILImage.open(io.BytesIO(data))
            fmt = img.format or ""
            if fmt not in FORMAT_EXT:
                raise BadImage(f"unsupported image format {fmt or 'unknown'}; accepted: {', '.join(FORMAT_EXT)}")
            width, height = img.size
            if width * height > max_pixels:
                raise BadImage(
                    f"image too large: {width}x{height} = {width * height:,} pixels exceeds the limit of "
                    f"{max_pixels:,} (possible decompression bomb; raise --max-pixels to allow it)"
                )
            img.load()  # decodes fully: truncated or corrupt data fails here
    except BadImage:
        raise
    except UnidentifiedImageError:
        raise BadImage("not a recognisable image (corrupt file or unsupported format)") from None
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
        raise BadImage(f"image too large (decompression bomb): {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        msg = str(exc) or type(exc).__name__
        if "truncated" in msg.lower():
            raise BadImage(f"truncated image: {msg}") from None
        raise BadImage(f"corrupt image: {msg}") from None
    return DecodedImage(data=data, sha256=sha256_bytes(data), ext=FORMAT_EXT[fmt], width=width, height=height, pil=img)


def find_image(session: Session, dataset_id: int, sha256: str) -> Image | None:
    return session.exec(select(Image).where(Image.dataset_id == dataset_id, Image.sha256 == sha256)).first()


def add_image(
    session: Session,
    ws: Workspace,
    dataset_id: int,
    decoded: DecodedImage,
    original_key: str,
    meta: dict[str, Any] | None = None,
) -> tuple[Image, bool]:
    """Store the file and add its row; returns (image, created). Duplicates are not re-added."""
    existing = find_image(session, dataset_id, decoded.sha256)
    if existing is not None:
        return existing, False
    store_image(ws, decoded.data, decoded.sha256, decoded.ext, decoded.pil)
    image = Image(
        dataset_id=dataset_id,
        sha256=decoded.sha256,
        ext=decoded.ext,
        width=decoded.width,
        height=decoded.height,
        nbytes=len(decoded.data),
        original_key=original_key,
        meta=meta,
    )
    session.add(image)
    session.flush()
    return image, True
