"""Demo-world scenes that do exactly what a structured prompt asks (the ground truth for the oracle).

The acceptance check of the compositional metrics is that images drawn *from* a prompt score
perfectly with the exact (oracle) detector and drop to the mismatched baseline against other
prompts. This module turns a :class:`~backend.compositional.prompts.StructuredPrompt` over the
demo world's shapes into a scene dict for :func:`backend.demo.render_scene`: every object group
with its count and colour (a free colour where the prompt names none), every relation satisfied
with room to spare, a background the prompt names or one every object stands out on.
"""

from __future__ import annotations

import random
import re
from typing import Any

from backend.compositional.prompts import StructuredPrompt
from backend.compositional.spatial import relative_position
from backend.demo import _LOW_CONTRAST, BACKGROUNDS, COLORS, SHAPES, SIZE, SIZES, region_of

# relations are checked on the nominal boxes with twice GenEval's margin, so the drawn shapes
# (whose pixel boxes are a little smaller than the nominal square) keep the relation
_SAFETY_MARGIN = 0.2
_TRIES = 5000
_GAP = 8  # pixels between object boxes


class SceneError(ValueError):
    """A prompt the demo world cannot draw (unknown shape or colour, too many objects to place)."""


def _size_for(prompt: StructuredPrompt, shape: str, n_total: int) -> str:
    m = re.search(rf"\b(small|medium|large)\s+(?:[a-z]+\s+)?{shape}", prompt.prompt.lower())
    if m:
        return m.group(1)
    return "medium" if n_total <= 2 else "small"


def scene_for_prompt(prompt: StructuredPrompt, seed: int = 0) -> dict[str, Any]:
    """A scene dict (``background``, ``objects``, ``text``) that satisfies ``prompt``; seeded.

    Raises :class:`SceneError` for classes that are not demo-world shapes, colours it does not
    have, or a layout it cannot find in a few thousand tries.
    """
    rng = random.Random(seed)
    for o in prompt.objects:
        if o.cls not in SHAPES:
            raise SceneError(f"{o.cls!r} is not a demo-world shape ({', '.join(SHAPES)})")
        if o.color is not None and o.color not in COLORS:
            raise SceneError(f"{o.color!r} is not a demo-world colour ({', '.join(COLORS)})")
    asked = {o.color for o in prompt.objects if o.color}
    text = prompt.prompt.lower()
    named = [bg for bg in sorted(BACKGROUNDS, key=len, reverse=True) if f"{bg} background" in text]
    if named:
        background = named[0]
    else:
        choices = [bg for bg in BACKGROUNDS if not (asked & _LOW_CONTRAST[bg])]
        if not choices:
            raise SceneError(f"no background shows all of {sorted(asked)}")
        background = rng.choice(choices)
    palette = [c for c in COLORS if c not in _LOW_CONTRAST[background]]

    n_total = sum(o.count for o in prompt.objects)
    groups: list[list[dict[str, Any]]] = []
    for o in prompt.objects:
        color = o.color or rng.choice(palette)
        size = _size_for(prompt, o.cls, n_total)
        groups.append([{"shape": o.cls, "color": color, "size": size} for _ in range(o.count)])

    for _ in range(_TRIES):
        placed: list[tuple[float, float, float]] = []
        ok = True
        for group in groups:
            for obj in group:
                half = SIZES[obj["size"]] / 2
                x = rng.uniform(half + 6, SIZE - half - 6)
                y = rng.uniform(half + 6, SIZE - half - 6)
                # boxes apart by a gap on one axis at least (centre distance is not enough: two
                # squares at a diagonal overlap), so same-coloured shapes never merge into one blob
                if any(max(abs(x - px), abs(y - py)) <= half + pr + _GAP for px, py, pr in placed):
                    ok = False
                    break
                placed.append((x, y, half))
                obj["x"], obj["y"] = int(round(x)), int(round(y))
            if not ok:
                break
        if ok and all(_holds(groups, r.subject, r.relation, r.object) for r in prompt.relations):
            objects = [dict(obj, region=region_of(obj["x"], obj["y"])) for g in groups for obj in g]
            return {"background": background, "objects": objects, "text": None}
    raise SceneError(f"could not place {prompt.prompt!r} in {_TRIES} tries")


def _box(obj: dict[str, Any]) -> tuple[float, float, float, float]:
    h = SIZES[obj["size"]] / 2
    return ((obj["x"] - h) / SIZE, (obj["y"] - h) / SIZE, (obj["x"] + h) / SIZE, (obj["y"] + h) / SIZE)


def _holds(groups: list[list[dict[str, Any]]], subject: int, relation: str, obj: int) -> bool:
    return all(
        relation in relative_position(_box(a), _box(b), margin=_SAFETY_MARGIN)
        for a in groups[subject]
        for b in groups[obj]
    )
