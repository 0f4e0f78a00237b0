"""Spatial relations between boxes (GenEval's rule) and between words (TISE's swapped captions)."""

from __future__ import annotations

import math
import re

Box = tuple[float, float, float, float]

# GenEval's POSITION_THRESHOLD: centres must be apart by more than this fraction of the two
# objects' summed extent before any relation holds, so touching or overlapping objects are
# neither left nor right of each other.
POSITION_MARGIN = 0.1


def relative_position(a: Box, b: Box, *, margin: float = POSITION_MARGIN, aspect: float = 1.0) -> set[str]:
    """The relations ``a`` has to ``b`` ("left of", "right of", "above", "below"; maybe none, maybe two).

    GenEval's rule: the centre offset, shrunk on each axis by ``margin`` × (a's + b's extent on
    that axis), must point mostly along a direction (its unit component > 0.5). Boxes are
    ``(x0, y0, x1, y1)`` with y growing downwards; ``aspect`` (width / height) restores pixel
    proportions for boxes given as fractions of a non-square image.
    """
    ax0, ay0, ax1, ay1 = a
    bx0, by0, bx1, by1 = b
    dx = ((ax0 + ax1) - (bx0 + bx1)) / 2 * aspect
    dy = ((ay0 + ay1) - (by0 + by1)) / 2
    wx = (abs(ax1 - ax0) + abs(bx1 - bx0)) * aspect
    wy = abs(ay1 - ay0) + abs(by1 - by0)
    norm = math.hypot(dx, dy)
    rx = math.copysign(max(abs(dx) - margin * wx, 0.0), dx)
    ry = math.copysign(max(abs(dy) - margin * wy, 0.0), dy)
    if norm == 0 or (rx == 0 and ry == 0):
        return set()
    ux, uy = rx / norm, ry / norm
    out = set()
    if ux < -0.5:
        out.add("left of")
    if ux > 0.5:
        out.add("right of")
    if uy < -0.5:
        out.add("above")
    if uy > 0.5:
        out.add("below")
    return out


# word or phrase → its opposite, for TISE's "false caption" (longest phrases are tried first)
SPATIAL_SWAPS: dict[str, str] = {
    "left": "right",
    "right": "left",
    "above": "below",
    "below": "above",
    "over": "under",
    "under": "over",
    "beneath": "above",
    "underneath": "above",
    "on top of": "underneath",
    "top": "bottom",
    "bottom": "top",
    "upper": "lower",
    "lower": "upper",
    "in front of": "behind",
    "behind": "in front of",
}
_SWAP_RE = re.compile(
    r"\b("
    + "|".join(re.escape(k).replace(r"\ ", r"\s+") for k in sorted(SPATIAL_SWAPS, key=len, reverse=True))
    + r")\b",
    re.IGNORECASE,
)


def _match_case(src: str, word: str) -> str:
    if src.isupper() and len(src) > 1:
        return word.upper()
    if src[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def swap_spatial_words(prompt: str) -> str | None:
    """The prompt with every spatial word replaced by its opposite, or ``None`` if it has none.

    TISE's CLIP form of positional alignment asks whether an image matches its prompt better than
    the same prompt with the spatial words swapped ("a cat left of a dog" vs "a cat right of a
    dog"). All spatial words are swapped at once so the false caption stays self-consistent; the
    rest of the text is kept byte for byte. Words used non-spatially ("all over") are swapped too:
    the comparison then only asks the image to prefer its real prompt, which it should.
    """
    found = False

    def repl(m: re.Match[str]) -> str:
        nonlocal found
        found = True
        key = " ".join(m.group(0).lower().split())
        return _match_case(m.group(0), SPATIAL_SWAPS[key])

    swapped = _SWAP_RE.sub(repl, prompt)
    return swapped if found else None


def pa_clip_success(
    sim_true: float, sim_swapped: float, *, logit_scale: float = 100.0, threshold: float = 0.6
) -> bool:
    """TISE's decision for one image: CLIP prefers the true prompt with probability above ``threshold``.

    ``sim_*`` are cosine similarities of the image to the true and the swapped prompt; the
    probability is the softmax over the two with CLIP's logit scale (100 for OpenAI CLIP), as TISE
    computes it (``probs[0] > 0.6``).
    """
    z = logit_scale * (sim_true - sim_swapped)
    p_true = 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0
    return p_true > threshold
