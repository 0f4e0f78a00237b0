"""Object colour by CLIP zero-shot classification of the box crop, as GenEval does.

Why CLIP: detectors name classes, not attributes. GenEval crops each detected box and lets CLIP
choose among ten colour words, with three templates per colour averaged into one text embedding
(open_clip's zero-shot classifier recipe: normalise each template embedding, average, normalise).
Any loaded :class:`training.clip.ClipScorer` works (open_clip or a transformers CLIPModel).
GenEval masks the background of each crop with its segmentation masks; box detectors have no
masks, so the crop is the box itself (stated in the provenance).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from PIL import Image

from backend.compositional.metrics import Detection

#: GenEval's colour vocabulary (geneval/evaluation/evaluate_images.py)
GENEVAL_COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
TEMPLATES = (
    "a photo of a {color} {object}",
    "a photo of a {color}-colored {object}",
    "a photo of a {color} object",
)


class ColorClassifier:
    """Colour of each detection's crop among ``colors`` (one text classifier per class, cached)."""

    def __init__(self, scorer: Any, colors: Sequence[str] = GENEVAL_COLORS) -> None:
        if len(colors) < 2:
            raise ValueError("colour classification needs at least two colours")
        self.scorer = scorer
        self.colors = tuple(colors)
        self._classifiers: dict[str, torch.Tensor] = {}

    def describe(self) -> dict[str, Any]:
        return {
            "method": "CLIP zero-shot on the box crop (no mask)",
            "encoder": getattr(self.scorer, "encoder", type(self.scorer).__name__),
            "colors": list(self.colors),
            "templates": list(TEMPLATES),
        }

    def classifier(self, obj: str) -> torch.Tensor:
        """(colours, dim) unit text embeddings for objects called ``obj``."""
        if obj not in self._classifiers:
            rows = []
            for color in self.colors:
                texts = [t.format(color=color, object=obj) for t in TEMPLATES]
                emb = self.scorer.text_features(texts).float()  # already unit length per template
                mean = emb.mean(dim=0)
                rows.append(mean / mean.norm())
            self._classifiers[obj] = torch.stack(rows)
        return self._classifiers[obj]

    def classify(self, crops: Sequence[Image.Image], objects: Sequence[str]) -> list[str]:
        if len(crops) != len(objects):
            raise ValueError(f"{len(crops)} crops but {len(objects)} object names")
        if not crops:
            return []
        features = self.scorer.image_features(list(crops)).float()
        out = []
        for row, obj in zip(features, objects, strict=True):
            logits = self.classifier(obj).to(row.device) @ row
            out.append(self.colors[int(logits.argmax())])
        return out

    def paint(self, image: Image.Image, detections: Sequence[Detection]) -> list[Detection]:
        """``detections`` of ``image`` with their colour set from their crops."""
        w, h = image.size
        crops = []
        for d in detections:
            x0, y0, x1, y1 = d.box
            left, top = min(int(x0 * w), w - 1), min(int(y0 * h), h - 1)
            right, bottom = max(left + 1, round(x1 * w)), max(top + 1, round(y1 * h))
            crops.append(image.crop((left, top, right, bottom)))
        colors = self.classify(crops, [d.cls for d in detections])
        return [replace(d, color=c) for d, c in zip(detections, colors, strict=True)]
