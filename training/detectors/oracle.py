"""The ``oracle`` detector: exact object detection for the synthetic shape worlds, from pixels only.

Why an oracle: on the demo world (and its reduced "miniature" version, ``backend.miniature.world``)
the content of an image is known by construction, so SOA, CA and PA can be computed without a
learned detector's errors — if, and only if, the detector really reads the generated pixels. It
never looks at stored scene metadata: a generated image has none, and a rendered one must score
the same way.

How it reads an image (a :class:`World` says which colours, backgrounds and shapes exist):

1. **Background**: the background colour most border pixels are within ``tolerance`` of (objects
   never touch the border in either world). None when fewer than half the border matches any.
2. **Colour segmentation**: each pixel takes the nearest of the background colour and the object
   colours that differ from it, or no colour when none is within ``tolerance`` (RGB distance).
   The default tolerance is half the smallest distance between two object colours, so an accepted
   pixel is never ambiguous. Anti-aliased edges (the miniature renderer) fall to the nearer colour
   or to none.
3. **Connected components** (8-connected) per object colour; components smaller than
   ``min_blob`` pixels (scaled with the image area) are speckle or text glyphs and are dropped.
4. **Shape by geometry**: fill ratio (area / bounding box), aspect ratio (width / height), vertical
   position of the centroid in the box and solidity (area / convex hull) are compared with each
   shape's ideal values, computed analytically from how the worlds draw them; the nearest wins.
5. **Counts and positions** are the components themselves: one detection each, with its pixel
   bounding box (as fractions of the image) and its pixel centroid in :class:`Blob`.

Limits (measured in tests/test_detectors_oracle.py and reported there): objects of one colour
that touch merge into one component, and an object partly covered by another one changes shape.
The demo scene generator keeps object centres apart but lets square corners touch now and then;
those scenes are counted separately in the validation.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from backend.compositional.metrics import Detection
from backend.miniature.world import MINIATURE_BACKGROUND, MINIATURE_COLORS, MINIATURE_SHAPES
from backend.miniature.world import SIZE as MINIATURE_SIZE
from training.detectors import labels

RGB = tuple[int, int, int]

#: ideal (fill ratio, aspect w/h, centroid height in box, solidity) of each shape as the worlds draw
#: it: circle and square fill pi/4 and 1; the apex-up isosceles triangle (base = height) fills 1/2
#: with its centroid 2/3 down; the diamond is 0.75 wide; the five-pointed star has an inner radius
#: of 0.45 (backend.demo._shape_points).
SHAPE_PROTOTYPES: Mapping[str, tuple[float, float, float, float]] = {
    "circle": (math.pi / 4, 1.0, 0.5, 1.0),
    "square": (1.0, 1.0, 0.5, 1.0),
    "triangle": (0.5, 1.0, 2 / 3, 1.0),
    "diamond": (0.5, 0.75, 0.5, 1.0),
    "star": (0.384, 1.051, 0.553, 0.556),
}


@dataclass(frozen=True)
class World:
    """What can appear in a world's images: the oracle's whole knowledge of it."""

    name: str
    size: int  # native image side in pixels (min_blob is given at this size)
    colors: Mapping[str, RGB]
    backgrounds: Mapping[str, RGB]
    shapes: tuple[str, ...]
    min_blob: int  # pixels at the native size: smaller components are speckle or text
    max_side: int  # pixels at the native size: a component with a longer box side is not an object
    tolerance: float = 0.0  # RGB distance; 0 = half the smallest distance between object colours
    #: a component whose features are farther than this from every shape's ideal is not an object
    #: (rasterised shapes of 8 px and more measure within 0.27; the closest two ideals, circle and
    #: square, are 0.215 apart)
    max_shape_distance: float = 0.35

    def __post_init__(self) -> None:
        unknown = [s for s in self.shapes if s not in SHAPE_PROTOTYPES]
        if unknown:
            raise ValueError(f"world {self.name}: no geometry for shapes {unknown}")
        if not self.tolerance:
            pairs = itertools.combinations(self.colors.values(), 2)
            closest = min(float(np.linalg.norm(np.subtract(a, b))) for a, b in pairs)
            object.__setattr__(self, "tolerance", round(closest / 2, 1))

    def describe(self) -> dict[str, Any]:
        return {
            "world": self.name,
            "size": self.size,
            "colors": list(self.colors),
            "backgrounds": list(self.backgrounds),
            "shapes": list(self.shapes),
        }


def _demo_world() -> World:
    from backend import demo

    # smallest object: a small star, 582 px at 256 x 256; largest text glyph ~120 px ("W" of NEW);
    # largest object: a large square, 111 px a side
    return World(
        "demo",
        demo.SIZE,
        dict(demo.COLORS),
        dict(demo.BACKGROUNDS),
        tuple(demo.SHAPES),
        min_blob=250,
        max_side=round(1.25 * (max(demo.SIZES.values()) + 1)),
    )


def miniature_world(side: int = 12, size: int = MINIATURE_SIZE) -> World:
    """The miniature world (``backend.miniature.world``) read with thresholds for objects of up to
    ``side`` pixels: specks under a quarter of a ``side`` px triangle (side²/2) are dropped.

    The default (12 px: min_blob 18, max_side 16) also reads that world's 8 px objects exactly
    (its smallest, a triangle, covers 28 px), and keeps speckle from noisy generations out."""
    return World(
        "miniature",
        size,
        MINIATURE_COLORS,
        MINIATURE_BACKGROUND,
        MINIATURE_SHAPES,
        min_blob=max(3, side * side // 8),
        max_side=round(1.25 * (side + 1)),
    )


def world_named(name: str) -> World:
    if name in ("", "demo"):
        return _demo_world()
    if name == "miniature":
        return miniature_world()
    raise ValueError(
        f"unknown oracle world {name!r}; choose demo or miniature (oracle:demo, oracle:miniature)"
    )


# ----------------------------------------------------------------------------- analysis


@dataclass(frozen=True)
class Blob:
    """One connected component of one object colour, with what the shape decision used."""

    color: str
    shape: str
    area: int
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, exclusive end
    centroid: tuple[float, float]  # x, y in pixels (pixel centres at +0.5)
    features: tuple[float, float, float, float]  # fill, aspect, centroid height, solidity

    def detection(self, width: int, height: int) -> Detection:
        x0, y0, x1, y1 = self.box
        return Detection(self.shape, 1.0, (x0 / width, y0 / height, x1 / width, y1 / height), self.color)


@dataclass(frozen=True)
class Analysis:
    """Everything the oracle saw in one image (for reports and debugging)."""

    background: str | None
    blobs: tuple[Blob, ...]
    specks: int  # components dropped as smaller than min_blob
    rejected: int  # components dropped as too large or unlike every shape
    size: tuple[int, int]  # width, height

    def detections(self) -> list[Detection]:
        return [b.detection(*self.size) for b in self.blobs]


def _rgb(image: Image.Image | np.ndarray) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float32)
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {arr.shape}")
    return arr


def _nearest(pixels: np.ndarray, palette: np.ndarray, tol: float) -> np.ndarray:
    """Index of the nearest palette colour per pixel, -1 where none is within ``tol``."""
    d = np.linalg.norm(pixels[..., None, :] - palette, axis=-1)
    idx = d.argmin(-1)
    idx[d.min(-1) > tol] = -1
    return idx


def _border(arr: np.ndarray) -> np.ndarray:
    return np.concatenate([arr[0], arr[-1], arr[1:-1, 0], arr[1:-1, -1]])


def find_background(rgb: np.ndarray, world: World) -> str | None:
    names = list(world.backgrounds)
    palette = np.array([world.backgrounds[n] for n in names], dtype=np.float32)
    idx = _nearest(_border(rgb), palette, world.tolerance)
    counts = np.bincount(idx[idx >= 0], minlength=len(names))
    if counts.sum() * 2 < len(idx):
        return None
    return names[int(counts.argmax())]


def _solidity(mask: np.ndarray) -> float:
    """Area over the area of the convex hull of the pixel squares (1 for convex shapes)."""
    ys, xs = np.nonzero(mask)
    corners = np.concatenate([np.stack([xs + dx, ys + dy], axis=1) for dx in (0, 1) for dy in (0, 1)]).astype(
        np.float64
    )
    try:
        hull = ConvexHull(corners).volume  # a 2-D hull's "volume" is its area
    except QhullError:  # a line of pixels
        return 1.0
    return float(min(1.0, mask.sum() / hull))


def features(mask: np.ndarray) -> tuple[float, float, float, float]:
    """(fill, aspect, centroid height in box, solidity) of a component cropped to its box."""
    h, w = mask.shape
    area = float(mask.sum())
    ys = np.nonzero(mask)[0]
    return (area / (h * w), w / h, (ys.mean() + 0.5) / h, _solidity(mask))


def classify_shape(feats: Sequence[float], shapes: Sequence[str]) -> tuple[str, float]:
    """The shape whose ideal features are nearest (Euclidean) to ``feats``, and that distance."""
    f = np.asarray(feats)
    distance = {s: float(np.linalg.norm(f - np.asarray(SHAPE_PROTOTYPES[s]))) for s in shapes}
    best = min(distance, key=distance.__getitem__)
    return best, distance[best]


def analyse(image: Image.Image | np.ndarray, world: World, *, tolerance: float | None = None,
            min_blob: int | None = None) -> Analysis:  # fmt: skip
    """Read one image: background, object components with colour and shape, dropped specks."""
    rgb = _rgb(image)
    height, width = rgb.shape[:2]
    tol = world.tolerance if tolerance is None else tolerance
    if tol != world.tolerance:
        world = replace(world, tolerance=tol)
    min_px = world.min_blob if min_blob is None else min_blob
    scale = math.sqrt(width * height) / world.size
    min_px = max(1, round(min_px * scale**2))
    max_side = world.max_side * scale
    background = find_background(rgb, world)
    names: list[str] = []
    palette: list[RGB] = []
    if background is not None:
        names.append("")  # index 0: the background
        palette.append(world.backgrounds[background])
    for name, rgb_value in world.colors.items():
        if background is not None and np.linalg.norm(np.subtract(rgb_value, palette[0])) <= tol:
            continue  # an object of the background's own colour cannot be seen (white on white)
        names.append(name)
        palette.append(rgb_value)
    idx = _nearest(rgb, np.array(palette, dtype=np.float32), tol)
    blobs: list[Blob] = []
    specks = rejected = 0
    eight = np.ones((3, 3), dtype=bool)
    for k, name in enumerate(names):
        if not name:
            continue
        components, n = ndimage.label(idx == k, structure=eight)
        for j, sl in enumerate(ndimage.find_objects(components), start=1):
            if sl is None:
                continue
            mask = components[sl] == j
            area = int(mask.sum())
            if area < min_px:
                specks += 1
                continue
            if max(mask.shape) > max_side:
                rejected += 1
                continue
            feats = features(mask)
            shape, distance = classify_shape(feats, world.shapes)
            if distance > world.max_shape_distance:
                rejected += 1
                continue
            ys, xs = np.nonzero(mask)
            y0, x0 = sl[0].start, sl[1].start
            blobs.append(
                Blob(
                    color=name,
                    shape=shape,
                    area=area,
                    box=(x0, y0, sl[1].stop, sl[0].stop),
                    centroid=(float(xs.mean() + x0 + 0.5), float(ys.mean() + y0 + 0.5)),
                    features=tuple(round(float(v), 4) for v in feats),  # type: ignore[arg-type]
                )
            )
    blobs.sort(key=lambda b: (b.centroid[1], b.centroid[0]))
    return Analysis(background, tuple(blobs), specks, rejected, (width, height))


# ----------------------------------------------------------------------------- the detector


@dataclass
class OracleDetector:
    """The :class:`~training.detectors.Detector` of a synthetic world (classes are its shapes)."""

    world: World
    tolerance: float | None = None
    min_blob: int | None = None
    name: str = field(init=False)

    def __post_init__(self) -> None:
        self.name = f"oracle:{self.world.name}"
        self._index = labels.label_index(self.world.shapes)

    def thresholds(self) -> dict[str, float]:
        return {
            "tolerance": self.world.tolerance if self.tolerance is None else self.tolerance,
            "min_blob": self.world.min_blob if self.min_blob is None else self.min_blob,
            "max_side": self.world.max_side,
            "max_shape_distance": self.world.max_shape_distance,
        }

    def provenance(self) -> dict[str, Any]:
        return {
            "detector": self.name,
            "kind": "oracle",
            "weights_sha256": None,  # no weights: the rules above, reading pixels only
            "thresholds": self.thresholds(),
            **self.world.describe(),
        }

    def analyse(self, image: Image.Image | np.ndarray) -> Analysis:
        return analyse(image, self.world, tolerance=self.tolerance, min_blob=self.min_blob)

    def detect(
        self, images: Sequence[Image.Image], queries: Sequence[Sequence[str] | None] | None = None
    ) -> list[list[Detection]]:
        """Detections per image. With queries, only the queried classes, named as queried
        ("squares" finds squares and calls them "squares"); a class this world does not have
        finds nothing. Without (or with None for an image), every object found."""
        queries = _check_queries(images, queries)
        out: list[list[Detection]] = []
        for image, wanted in zip(images, queries, strict=True):
            found = self.analyse(image).detections()
            if wanted is None:
                out.append(found)
                continue
            named: list[Detection] = []
            for q in dict.fromkeys(wanted):
                shape = labels.match(q, self._index)
                named += [replace(d, cls=q) for d in found if shape is not None and d.cls == shape]
            out.append(named)
        return out


def _check_queries(
    images: Sequence[Any], queries: Sequence[Sequence[str] | None] | None
) -> list[Sequence[str] | None]:
    if queries is None:
        return [None] * len(images)
    if len(queries) != len(images):
        raise ValueError(f"{len(images)} images but {len(queries)} query lists")
    return list(queries)
