"""Which images go into an annotation set: a seeded random sample, or one spread over strata.

Why strata: a hundred images drawn at random from a web dataset are mostly "ordinary"; the
caption set should also show the failure modes of alt-text (none, file names, URLs) and both
simple and busy scenes, so ``stratified`` samples every (alt-text, object count) stratum.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from typing import Any

from sqlmodel import Session, col, select

from backend.clip_tokens import word_count
from backend.models import Caption, CaptionKind, Image

_JUNK_ALT = re.compile(
    r"""^\s*(
        \S+\.(jpe?g|png|gif|webp|bmp|tiff?|heic)       # a file name
      | (https?://|www\.)\S*                         # a URL
      | (img|dsc|dscn|image|photo|pic|screenshot)[\s_-]*\d+\S*  # camera / export names
      | [\d\W_]+                                     # digits and punctuation only
    )\s*$""",
    re.IGNORECASE | re.VERBOSE,
)


def alttext_bucket(text: str | None) -> str:
    """Stratum of an alt-text: ``none``, ``junk`` (file name, URL, camera name, digits),
    or its length in words: ``1-4``, ``5-9``, ``10-19``, ``20+``."""
    if text is None or not text.strip():
        return "none"
    if _JUNK_ALT.match(text):
        return "junk"
    n = word_count(text)
    if n < 5:
        return "1-4"
    if n < 10:
        return "5-9"
    if n < 20:
        return "10-19"
    return "20+"


def object_count(meta: dict[str, Any] | None) -> int | None:
    """Objects in the image's ground truth, when ``Image.meta`` records them."""
    if not isinstance(meta, dict):
        return None
    for key in ("objects", "shapes", "annotations"):
        value = meta.get(key)
        if isinstance(value, list):
            return len(value)
    for key in ("n_objects", "num_objects", "object_count"):
        value = meta.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def stratum_of(alttext: str | None, meta: dict[str, Any] | None) -> tuple[str, str]:
    """The stratum used by ``sampling="stratified"``: (alt-text bucket, object-count bucket).

    The alt-text bucket separates missing and junk alt-text (file names, URLs, camera
    names — the web failure modes the caption set should show) from real alt-text by
    length; the object-count bucket (``1``, ``2``, ``3``, ``4+``, or ``-`` when
    ``Image.meta`` has no object list) spreads the set over simple and busy scenes.
    """
    n = object_count(meta)
    objects = "-" if n is None else (str(n) if n < 4 else "4+")
    return alttext_bucket(alttext), objects


def allocate(sizes: dict[Any, int], size: int) -> dict[Any, int]:
    """How many images each stratum gives: proportional to its size (largest remainder),
    with at least one from every stratum when ``size`` allows; never more than it holds."""
    keys = sorted(sizes, key=lambda k: (-sizes[k], str(k)))
    total = sum(sizes.values())
    if size >= total:
        return dict(sizes)
    quotas = {k: size * sizes[k] / total for k in keys}
    alloc = {k: min(sizes[k], int(quotas[k])) for k in keys}
    by_remainder = sorted(keys, key=lambda k: (-(quotas[k] - int(quotas[k])), -sizes[k], str(k)))
    while sum(alloc.values()) < size:
        for k in by_remainder:
            if sum(alloc.values()) >= size:
                break
            if alloc[k] < sizes[k]:
                alloc[k] += 1
    # cover every stratum once, taking from the largest allocations
    for k in sorted(keys, key=lambda k: (sizes[k], str(k)), reverse=True):
        if alloc[k] == 0 and sizes[k] > 0:
            donor = max(keys, key=lambda d: (alloc[d], sizes[d]))
            if alloc[donor] <= 1:
                break  # fewer images than strata: the largest strata keep theirs
            alloc[donor] -= 1
            alloc[k] = 1
    return alloc


def pick_images(session: Session, dataset_id: int, size: int, sampling: str, seed: int) -> list[int]:
    """Image ids of ``dataset_id`` for a new set, in the order annotators will meet them."""
    rng = random.Random(seed)
    if sampling == "random":
        ids = list(session.exec(select(Image.id).where(Image.dataset_id == dataset_id).order_by(Image.id)))
        return rng.sample(ids, size)
    rows = session.exec(
        select(Image.id, Image.meta).where(Image.dataset_id == dataset_id).order_by(Image.id)
    ).all()
    alt: dict[int, str] = {}
    alt_rows = session.exec(
        select(Caption.image_id, Caption.text)
        .join(Image, col(Image.id) == col(Caption.image_id))
        .where(
            Image.dataset_id == dataset_id,
            Caption.kind == CaptionKind.alttext.value,
            Caption.is_current == True,  # noqa: E712 - SQL expression
        )
        .order_by(Caption.image_id, Caption.id)
    ).all()
    for image_id, alt_text in alt_rows:
        alt.setdefault(image_id, alt_text)
    strata: dict[tuple[str, str], list[int]] = defaultdict(list)
    for image_id, meta in rows:
        strata[stratum_of(alt.get(image_id), meta)].append(image_id)
    alloc = allocate({k: len(v) for k, v in strata.items()}, size)
    chosen: list[int] = []
    for key in sorted(strata):
        members = strata[key]
        rng.shuffle(members)
        chosen.extend(members[: alloc[key]])
    rng.shuffle(chosen)  # annotators see the strata mixed, not one after the other
    return chosen
