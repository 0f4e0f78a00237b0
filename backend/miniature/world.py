"""The miniature world of issue 12: 32 x 32 images on white, 3 shapes x 4 colours, 1-3 objects on a 3 x 3 grid.

Why a reduced world: the demo world (256 px, 5 shapes, 11 colours, text) is far too rich to train a
text-to-image model on two CPU cores, and an earlier attempt showed that an unlearned model scores
at the mismatched-prompt baseline. This world is small enough to learn, and every image's content
is known exactly, so captions and generated images can be scored against the truth.

Geometry (all in output pixels): object centres sit at :data:`CELL_CENTRES` (6, 16, 26 on each axis)
plus an integer jitter of at most :data:`JITTER` px; objects are :data:`OBJECT_SIDE` px wide and
high, so every box starts and ends on a pixel edge. Jitter is re-drawn until the boxes of any two
objects are :data:`MIN_GAP` px apart: anti-aliased edges then never touch, so two objects of one
colour cannot merge into one blob for the oracle detector, and no object touches the image border.

Images are drawn 4x supersampled and box-downsampled (anti-aliased edges), the way the oracle
detector was validated (``tests/test_detectors_oracle.py``). The colours, background and shapes
live here, not in ``training/``, because the backend must not import training; the oracle
(``training.detectors.oracle``) imports them from this module.

Spatial relations are GenEval's rule (:func:`backend.compositional.spatial.relative_position`) on
the true pixel boxes. A relation counts as ground truth only when it holds with twice GenEval's
margin (:data:`CLEAR_MARGIN`), so a detector that reads the boxes a pixel off still confirms it;
diagonal neighbours (one cell right and one down) usually have no clear relation and get none.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from backend.compositional.prompts import (
    ObjectSpec,
    PromptFormatError,
    Relation,
    StructuredPrompt,
    exact_counts,
)
from backend.compositional.spatial import POSITION_MARGIN, relative_position
from backend.compositional.vocabulary import Vocabulary

RGB = tuple[int, int, int]
Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, end exclusive

WORLD = "miniature"
MINIATURE_COLORS: Mapping[str, RGB] = {
    "red": (220, 40, 40),
    "green": (40, 160, 70),
    "blue": (40, 90, 220),
    "yellow": (240, 200, 30),
}
MINIATURE_BACKGROUND: Mapping[str, RGB] = {"white": (250, 250, 250)}
MINIATURE_SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
BACKGROUND = "white"

SIZE = 32  # image side in pixels
SUPERSAMPLE = 4  # drawn at 4x, then box-downsampled: anti-aliased edges
GRID = 3
CELL_CENTRES: tuple[int, ...] = (6, 16, 26)  # centre of each row / column in pixels
OBJECT_SIDE = 8
JITTER = 1  # pixels, each axis, each object
MIN_GAP = 1  # pixels of background between any two object boxes
MAX_OBJECTS = 3
CLEAR_MARGIN = 2 * POSITION_MARGIN

ROW_NAMES = ("top", "middle", "bottom")
COL_NAMES = ("left", "center", "right")

#: the caption reader's words for this world. Star and diamond are not drawn here, but a caption
#: that names one is read, so a wrong shape in a caption counts against its precision.
VOCABULARY = Vocabulary.from_lists(
    {
        "circle": ["circle", "disc", "dot"],
        "square": ["square"],
        "triangle": ["triangle"],
        "star": ["star"],
        "diamond": ["diamond", "rhombus"],
    }
)


def region_name(cell: tuple[int, int]) -> str:
    """The region of a (row, column) cell: "top left", "top", …, "center", …, "bottom right"."""
    row, col = cell
    parts = [p for p in (("top", "", "bottom")[row], ("left", "", "right")[col]) if p]
    return " ".join(parts) or "center"


# ----------------------------------------------------------------------------- drawing


@dataclass(frozen=True)
class Drawn:
    """One shape to draw: its centre in output pixels (floats allowed) and its side."""

    shape: str
    color: str
    cx: float
    cy: float
    side: float = OBJECT_SIDE


def _draw(draw: ImageDraw.ImageDraw, obj: Drawn, fill: RGB | int, s: int) -> None:
    cx, cy, h = obj.cx * s, obj.cy * s, obj.side / 2 * s
    if obj.shape == "circle":
        draw.ellipse((cx - h, cy - h, cx + h, cy + h), fill=fill)
    elif obj.shape == "square":
        draw.rectangle((cx - h, cy - h, cx + h - 1, cy + h - 1), fill=fill)
    elif obj.shape == "triangle":
        draw.polygon([(cx, cy - h), (cx + h, cy + h), (cx - h, cy + h)], fill=fill)
    else:
        raise ValueError(f"the miniature world draws {', '.join(MINIATURE_SHAPES)}, not {obj.shape!r}")


def draw_shapes(objects: Sequence[Drawn], size: int = SIZE, supersample: int = SUPERSAMPLE) -> Image.Image:
    """Shapes on the white background, ``supersample`` x oversampled and box-downsampled.

    The low-level renderer: :func:`render` draws a :class:`Scene` with it, and the oracle's tests
    draw other grids and object sizes with it.
    """
    s = supersample
    img = Image.new("RGB", (size * s, size * s), MINIATURE_BACKGROUND[BACKGROUND])
    draw = ImageDraw.Draw(img)
    for obj in objects:
        _draw(draw, obj, MINIATURE_COLORS[obj.color], s)
    return img.resize((size, size), Image.Resampling.BOX)


@lru_cache(maxsize=8192)
def coverage_box(obj: Drawn, size: int = SIZE, supersample: int = SUPERSAMPLE) -> Box:
    """The pixel box of the pixels at least half covered by ``obj`` drawn alone (the true box)."""
    s = supersample
    mask = Image.new("L", (size * s, size * s), 0)
    _draw(ImageDraw.Draw(mask), obj, 255, s)
    cover = np.asarray(mask, dtype=np.float32).reshape(size, s, size, s).mean(axis=(1, 3)) / 255
    ys, xs = np.nonzero(cover >= 0.5)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


# ----------------------------------------------------------------------------- scenes


@dataclass(frozen=True)
class WorldObject:
    """One object with its exact ground truth: ``cell`` is (row, column), ``box`` its pixel box."""

    shape: str
    color: str
    cell: tuple[int, int]
    offset: tuple[int, int] = (0, 0)  # jitter (dx, dy) in pixels

    @property
    def center(self) -> tuple[int, int]:
        row, col = self.cell
        return CELL_CENTRES[col] + self.offset[0], CELL_CENTRES[row] + self.offset[1]

    @property
    def drawn(self) -> Drawn:
        cx, cy = self.center
        return Drawn(self.shape, self.color, cx, cy)

    @property
    def nominal_box(self) -> Box:
        """The square the shape is drawn in (integer pixel edges)."""
        cx, cy = self.center
        h = OBJECT_SIDE // 2
        return cx - h, cy - h, cx + h, cy + h

    @property
    def box(self) -> Box:
        return coverage_box(self.drawn)

    @property
    def region(self) -> str:
        return region_name(self.cell)


@dataclass(frozen=True)
class Group:
    """Objects of one shape and colour (how prompts and captions count them)."""

    shape: str
    color: str
    members: tuple[WorldObject, ...]

    @property
    def count(self) -> int:
        return len(self.members)


@dataclass(frozen=True)
class Scene:
    """A miniature image's exact content; objects in reading order (top to bottom, left to right)."""

    objects: tuple[WorldObject, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "objects", tuple(sorted(self.objects, key=lambda o: o.cell)))
        cells = [o.cell for o in self.objects]
        if not 1 <= len(cells) <= GRID * GRID or len(set(cells)) != len(cells):
            raise ValueError(f"a scene has 1-{GRID * GRID} objects in different cells, got cells {cells}")
        for o in self.objects:
            if o.shape not in MINIATURE_SHAPES or o.color not in MINIATURE_COLORS:
                raise ValueError(f"not a miniature-world object: {o.color} {o.shape}")

    @property
    def layout(self) -> str:
        """Cells, shapes and colours without the jitter: ``"r0c1 red circle|r2c2 blue square"``."""
        return "|".join(f"r{o.cell[0]}c{o.cell[1]} {o.color} {o.shape}" for o in self.objects)

    def groups(self) -> tuple[Group, ...]:
        """(shape, colour) groups in order of first appearance."""
        by: dict[tuple[str, str], list[WorldObject]] = {}
        for o in self.objects:
            by.setdefault((o.shape, o.color), []).append(o)
        return tuple(Group(shape, color, tuple(m)) for (shape, color), m in by.items())

    def relations(self) -> tuple[Relation, ...]:
        """Clear relations between groups (indices into :meth:`groups`): every member of the
        subject stands in the relation to every member of the object at :data:`CLEAR_MARGIN`.
        One direction per pair (the lower index is the subject)."""
        groups = self.groups()
        boxes = [[m.box for m in g.members] for g in groups]
        out: list[Relation] = []
        for i, j in itertools.combinations(range(len(groups)), 2):
            found = None
            for a in boxes[i]:
                for b in boxes[j]:
                    rel = relative_position(a, b, margin=CLEAR_MARGIN)
                    found = rel if found is None else found & rel
            out += [Relation(i, r, j) for r in sorted(found or ())]
        return tuple(out)

    def tag(self) -> str:
        """GenEval-style tag: single_object, counting (a group of two or more), position, multi_object."""
        if len(self.objects) == 1:
            return "single_object"
        if any(g.count > 1 for g in self.groups()):
            return "counting"
        return "position" if self.relations() else "multi_object"

    def structured(self, *, key: str = "", source: str = "recap-studio miniature world") -> StructuredPrompt:
        """What an image made for this scene must show: every group with its exact count and
        colour, and every clear relation (see the module docstring)."""
        objects = tuple(ObjectSpec(g.shape, g.count, g.color) for g in self.groups())
        return StructuredPrompt(
            prompt=prompt_text(self),
            objects=objects,
            relations=self.relations(),
            exclude=exact_counts(objects),
            tag=self.tag(),
            source=source,
            key=key,
        )

    def to_meta(self) -> dict[str, Any]:
        """The ground truth stored in ``Image.meta`` (JSON); :meth:`from_meta` reads it back."""
        return {
            "world": WORLD,
            "background": BACKGROUND,
            "layout": self.layout,
            "objects": [
                {
                    "shape": o.shape,
                    "color": o.color,
                    "cell": list(o.cell),
                    "region": o.region,
                    "offset": list(o.offset),
                    "box": list(o.box),
                }
                for o in self.objects
            ],
        }

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> Scene:
        if meta.get("world") != WORLD or not isinstance(meta.get("objects"), list):
            raise PromptFormatError(f"not a miniature-world ground truth: {dict(meta)!r:.120}")
        return cls(
            tuple(
                WorldObject(o["shape"], o["color"], tuple(o["cell"]), tuple(o.get("offset", (0, 0))))  # type: ignore[arg-type]
                for o in meta["objects"]
            )
        )


def _gap(a: Box, b: Box) -> int:
    """Pixels of background between two boxes along the axis that separates them most."""
    return max(b[0] - a[2], a[0] - b[2], b[1] - a[3], a[1] - b[3])


def _jitter_ok(objects: Sequence[WorldObject]) -> bool:
    return all(_gap(a.nominal_box, b.nominal_box) >= MIN_GAP for a, b in itertools.combinations(objects, 2))


CELLS: tuple[tuple[int, int], ...] = tuple((r, c) for r in range(GRID) for c in range(GRID))


def sample_scene(rng: random.Random, n_objects: int | None = None) -> Scene:
    """A random scene: 1-3 objects (uniform) in distinct cells, random shape, colour and jitter."""
    n = rng.randint(1, MAX_OBJECTS) if n_objects is None else n_objects
    cells = rng.sample(CELLS, n)
    kinds = [(rng.choice(MINIATURE_SHAPES), rng.choice(list(MINIATURE_COLORS))) for _ in cells]
    while True:  # jitter is re-drawn until boxes keep MIN_GAP (most draws pass at once)
        objects = [
            WorldObject(shape, color, cell, (rng.randint(-JITTER, JITTER), rng.randint(-JITTER, JITTER)))
            for (shape, color), cell in zip(kinds, cells, strict=True)
        ]
        if _jitter_ok(objects):
            return Scene(tuple(objects))


def render(scene: Scene) -> Image.Image:
    """The scene's 32 x 32 RGB image (deterministic)."""
    return draw_shapes([o.drawn for o in scene.objects])


def png_bytes(image: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def held_out(scene: Scene, seed: int, fraction: float) -> bool:
    """Whether the scene's layout belongs to the held-out part of the world for ``seed``.

    A seeded hash of the layout (cells, shapes, colours; not the jitter) splits the world once
    and for all, so the corpus and the held-out prompt set never share a layout whatever their
    sizes, and growing either keeps the other unchanged.
    """
    digest = hashlib.sha256(f"{seed}:{scene.layout}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


# ----------------------------------------------------------------------------- prompt text


_NUMBERS = {1: "a", 2: "two", 3: "three"}


def plural(shape: str) -> str:
    return shape + "s"


def group_phrase(count: int, color: str | None, shape: str) -> str:
    """A group as a prompt reads it: "a red circle", "two blue squares" (both stated counts)."""
    words = " ".join(w for w in (color, shape if count == 1 else plural(shape)) if w)
    return f"{_NUMBERS.get(count, str(count))} {words}"


def join_phrases(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


RELATION_WORDS = {
    "left of": "to the left of",
    "right of": "to the right of",
    "above": "above",
    "below": "below",
}


def prompt_text(scene: Scene) -> str:
    """The held-out prompt for a scene: its groups, then one sentence per clear relation.

    Written so :class:`~backend.compositional.extract.Extractor` with :data:`VOCABULARY` reads
    back exactly :meth:`Scene.structured`'s objects and relations (tested).
    """
    groups = scene.groups()
    text = join_phrases([group_phrase(g.count, g.color, g.shape) for g in groups])
    sentences = [text[0].upper() + text[1:] + "."]
    for rel in scene.relations():
        a, b = groups[rel.subject], groups[rel.object]
        sentences.append(
            f"The {a.color} {a.shape if a.count == 1 else plural(a.shape)} "
            f"{'is' if a.count == 1 else 'are'} {RELATION_WORDS[rel.relation]} "
            f"the {b.color} {b.shape if b.count == 1 else plural(b.shape)}."
        )
    return " ".join(sentences)
