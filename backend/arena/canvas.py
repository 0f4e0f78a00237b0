"""One display size per campaign, so an image's size or shape never tells which system made it.

Why: systems often generate at their own native resolution or aspect ratio (a 512-px base next
to a 1024-px one, a 3:2 model next to a square one). Shown as they are, an annotator reads the
system off the picture's size. Every image of a text-to-image campaign is therefore shown on the
campaign's one *canvas*, fitted by the clean-fid rule (centre crop to the canvas's aspect, then
resize):

* when every image of the campaign has the same aspect ratio, the canvas keeps it (nothing is
  cropped, and the common shape reveals nothing);
* otherwise the canvas is square: images of another shape lose their edges to a centre crop;
* its long side is the campaign's largest long side, at most ``MAX_SIDE``: the biggest images
  are not shrunk below what judging needs, smaller ones are scaled up to it.

The canvas depends only on the set of all the campaign's images, never on the pair shown.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from fractions import Fraction

from sqlalchemy import text
from sqlmodel import Session

MAX_SIDE = 1024

_cache: dict[tuple[str, int, str], tuple[int, int] | None] = {}
_lock = threading.Lock()


def canvas_for(sizes: Iterable[tuple[int, int]], max_side: int = MAX_SIDE) -> tuple[int, int] | None:
    """(width, height) every image is shown at, from the (width, height) of all of them."""
    valid = {(int(w), int(h)) for w, h in sizes if w and h and int(w) > 0 and int(h) > 0}
    if not valid:
        return None
    side = min(max_side, max(max(w, h) for w, h in valid))
    aspects = {Fraction(w, h) for w, h in valid}
    if len(aspects) > 1:
        return side, side
    (aspect,) = aspects
    if aspect >= 1:
        return side, max(1, round(side / aspect))
    return max(1, round(side * aspect)), side


def campaign_canvas(
    session: Session, db_url: str, campaign_id: int, created_at: str
) -> tuple[int, int] | None:
    """The canvas of a campaign's images (None when it shows none), computed once per process.

    A campaign's images are fixed when it is created (imported votes add items without images),
    so the value is cached under the campaign's id and creation time.
    """
    key = (db_url, campaign_id, created_at)
    with _lock:
        if key in _cache:
            return _cache[key]
    rows = session.exec(
        text(
            "SELECT DISTINCT i.width, i.height FROM evalimage e JOIN image i ON i.id = e.image_id "
            "WHERE e.campaign_id = :c"
        ).bindparams(c=campaign_id)
    ).all()
    canvas = canvas_for((r[0], r[1]) for r in rows)
    with _lock:
        _cache[key] = canvas
    return canvas
