"""Detector-based compositional metrics (SOA, CA, PA, GenEval) over structured prompts."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Detection:
    """One detected object in one image.

    ``box`` is ``(x0, y0, x1, y1)`` as fractions of the image's width and height, so scores do
    not depend on the resolution a model generated at; ``color`` is set when the detector (or a
    CLIP zero-shot pass on the box crop) named one.
    """

    cls: str
    score: float
    box: tuple[float, float, float, float]
    color: str | None = None

    @property
    def center(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return ((x0 + x1) / 2, (y0 + y1) / 2)
