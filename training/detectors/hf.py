"""transformers object detectors (closed and open vocabulary) behind the Detector interface.

Why both kinds: a closed-vocabulary detector (DETR, RT-DETR, YOLOS … trained on COCO) is what SOA
and GenEval use and is fast, but only sees its own label set; an open-vocabulary one (OWLv2 /
OWL-ViT, Grounding DINO) takes the prompt's classes as text queries and so scores any prompt.
The kind comes from the checkpoint's config (``model_type`` in transformers' object-detection or
zero-shot-object-detection mapping); loading is ``from_pretrained`` from a folder or a hub id
(the local cache first, never a silent download on an offline machine).

Post-processing is ours on purpose, and the same for every family:

* boxes as fractions of the *original* image (OWLv2 predicts on the image padded to a square at
  the bottom and right, so its boxes are rescaled by that padding);
* scores above ``score``; Grounding DINO scores each query by the best of its own tokens (query
  spans found from the tokenizer's character offsets), so a box maps to exactly one query, and
  ``text`` must hold as well; OWL scores only the image's real queries (a batch pads the query
  lists, and transformers' own post-processing can then name a padding query);
* optional class-wise NMS (``nms_iou`` < 1), then the ``max_detections`` best per image.

Defaults follow GenEval (score 0.3, no NMS, at most 16 objects an image); GenEval's stricter
counting threshold (0.9) is a metric's choice over the returned scores, not the detector's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from PIL import Image

from backend.compositional.metrics import Detection
from training.detectors import DetectorError, labels
from training.detectors.color import GENEVAL_COLORS, ColorClassifier
from training.detectors.weights import WeightsNotFound, checkpoint_folder, weights_sha256
from training.upsample import from_pretrained_cached_first

#: open-vocabulary families whose inputs and outputs this module knows (OmDet-Turbo takes its
#: classes and a task prompt in another form and is not wired yet)
OPEN_FAMILIES = ("owlv2", "owlvit", "grounding-dino", "mm-grounding-dino")


@dataclass(frozen=True)
class Thresholds:
    score: float = 0.3  # detection confidence (GenEval's THRESHOLD)
    text: float = 0.25  # Grounding DINO: the query's own token score must pass this too
    nms_iou: float = 1.0  # class-wise NMS IoU; 1.0 = off (GenEval's NMS_THRESHOLD)
    max_detections: int = 16  # best detections kept per image (GenEval's MAX_OBJECTS)

    @classmethod
    def with_overrides(cls, overrides: Mapping[str, float]) -> Thresholds:
        names = {f.name for f in fields(cls)}
        unknown = set(overrides) - names
        if unknown:
            raise DetectorError(f"unknown detector thresholds {sorted(unknown)}; known: {sorted(names)}")
        values = {k: (int(v) if k == "max_detections" else float(v)) for k, v in overrides.items()}
        t = cls(**values)  # type: ignore[arg-type]
        if not (0.0 <= t.score <= 1.0 and 0.0 <= t.text <= 1.0 and 0.0 < t.nms_iou <= 1.0):
            raise DetectorError(f"thresholds out of range (score, text in [0, 1]; nms_iou in (0, 1]): {t}")
        if t.max_detections < 1:
            raise DetectorError("max_detections must be at least 1")
        return t


# ----------------------------------------------------------------------------- the detector


def _kind_of(model_type: str) -> str | None:
    from transformers.models.auto import modeling_auto as auto

    if model_type in auto.MODEL_FOR_ZERO_SHOT_OBJECT_DETECTION_MAPPING_NAMES:
        return "open"
    if model_type in auto.MODEL_FOR_OBJECT_DETECTION_MAPPING_NAMES:
        return "closed"
    return None


class TransformersDetector:
    """A transformers object detector with the studio's post-processing (see the module doc)."""

    def __init__(
        self,
        spec: str,
        model: Any,
        processor: Any,
        kind: str,
        thresholds: Thresholds,
        weights: str,
        device: torch.device,
        colors: ColorClassifier | None = None,
        batch_size: int = 8,
    ) -> None:
        self.name = spec
        self.model = model
        self.processor = processor
        self.kind = kind
        self.thresholds = thresholds
        self.weights = weights
        self.device = device
        self.colors = colors
        self.batch_size = batch_size
        self.family = model.config.model_type
        if kind == "closed":
            id2label = {int(k): str(v) for k, v in model.config.id2label.items()}
            self._id2label = id2label
            self._index = labels.label_index(id2label.values())

    # -- identity

    def provenance(self) -> dict[str, Any]:
        return {
            "detector": self.name,
            "kind": f"transformers-{self.kind}-vocabulary",
            "family": self.family,
            "architecture": type(self.model).__name__,
            "weights_sha256": self.weights,
            "thresholds": asdict(self.thresholds),
            "colors": self.colors.describe() if self.colors is not None else None,
        }

    def known_labels(self) -> list[str]:
        """The closed vocabulary (empty for open-vocabulary detectors)."""
        return sorted(set(self._id2label.values())) if self.kind == "closed" else []

    # -- detection

    def detect(
        self, images: Sequence[Image.Image], queries: Sequence[Sequence[str] | None] | None = None
    ) -> list[list[Detection]]:
        if queries is not None and len(queries) != len(images):
            raise ValueError(f"{len(images)} images but {len(queries)} query lists")
        wanted = list(queries) if queries is not None else [None] * len(images)
        rgb = [im.convert("RGB") for im in images]
        out: list[list[Detection]] = []
        for start in range(0, len(rgb), self.batch_size):
            chunk, asked = rgb[start : start + self.batch_size], wanted[start : start + self.batch_size]
            raw = self._closed(chunk, asked) if self.kind == "closed" else self._open(chunk, asked)
            for image, found in zip(chunk, raw, strict=True):
                kept = self._select(found)
                if self.colors is not None and kept:
                    kept = self.colors.paint(image, kept)
                out.append(kept)
        return out

    @torch.inference_mode()
    def _closed(self, images: list[Image.Image], asked: list[Sequence[str] | None]) -> list[list[Detection]]:
        inputs = self.processor(images=images, return_tensors="pt").to(self.device)
        outputs = self.model(**inputs)
        results = self.processor.post_process_object_detection(outputs, threshold=self.thresholds.score)
        out = []
        for result, queries in zip(results, asked, strict=True):
            # each label -> the query strings that mean it (None: the label's own name)
            names: dict[str, list[str]] = {}
            if queries is None:
                names = {label: [label] for label in self._id2label.values()}
            else:
                for q in dict.fromkeys(queries):
                    label = labels.match(q, self._index)
                    if label is not None:
                        names.setdefault(label, []).append(q)
            found = []
            for score, label_id, box in zip(result["scores"], result["labels"], result["boxes"], strict=True):
                label = self._id2label.get(int(label_id), str(int(label_id)))
                for name in names.get(label, []):
                    found.append(Detection(name, float(score), _clip_box(box.tolist())))
            out.append(found)
        return out

    @torch.inference_mode()
    def _open(self, images: list[Image.Image], asked: list[Sequence[str] | None]) -> list[list[Detection]]:
        if any(q is None for q in asked):
            raise DetectorError(
                f"{self.name} is an open-vocabulary detector: it needs the classes to look for"
            )
        texts = [list(dict.fromkeys(q or [])) or [" "] for q in asked]  # one blank query keeps shapes
        if "grounding" in self.family:
            return self._grounding(images, texts, asked)
        # OWL tokenizes each image's query list on its own: pad every list to the same fixed length
        inputs = self.processor(
            text=texts, images=images, return_tensors="pt", padding="max_length", truncation=True
        ).to(self.device)
        outputs = self.model(**inputs)
        probs = torch.sigmoid(outputs.logits.float())  # (images, boxes, padded queries)
        boxes = _corners(outputs.pred_boxes.float())
        pads = bool(getattr(self.processor.image_processor, "do_pad", False)) and self.family == "owlv2"
        out = []
        for i, (image, qs) in enumerate(zip(images, texts, strict=True)):
            n = len(qs) if asked[i] else 0
            found = []
            if n:
                score, idx = probs[i, :, :n].max(dim=-1)
                scale = _pad_scale(image) if pads else (1.0, 1.0)
                for s, j, box in zip(score.tolist(), idx.tolist(), boxes[i].tolist(), strict=True):
                    if s > self.thresholds.score:
                        found.append(Detection(qs[j], s, _clip_box(box, scale)))
            out.append(found)
        return out

    def _grounding(
        self, images: list[Image.Image], texts: list[list[str]], asked: list[Sequence[str] | None]
    ) -> list[list[Detection]]:
        prompts, spans = zip(*(_grounding_text(qs) for qs in texts), strict=True)
        inputs = self.processor(images=images, text=list(prompts), return_tensors="pt", padding=True)
        outputs = self.model(**inputs.to(self.device))
        probs = torch.sigmoid(outputs.logits.float())  # (images, boxes, text tokens)
        boxes = _corners(outputs.pred_boxes.float())
        tokenizer = self.processor.tokenizer
        out = []
        for i, (prompt, qs) in enumerate(zip(prompts, texts, strict=True)):
            if not asked[i]:
                out.append([])
                continue
            enc = tokenizer(prompt, return_offsets_mapping=True, add_special_tokens=True)
            ids = inputs["input_ids"][i].tolist()
            if enc["input_ids"] != ids[: len(enc["input_ids"])]:
                raise DetectorError(f"{self.name}: tokenizer offsets do not match the processor's input ids")
            columns = []
            for start, end in spans[i]:
                toks = [
                    t for t, (a, b) in enumerate(enc["offset_mapping"]) if b > a and a >= start and b <= end
                ]
                columns.append(toks)
            per_query = torch.stack(
                [probs[i, :, c].max(dim=-1).values if c else torch.zeros(probs.shape[1]) for c in columns],
                dim=-1,
            )
            score, idx = per_query.max(dim=-1)
            floor = max(self.thresholds.score, self.thresholds.text)
            out.append(
                [
                    Detection(qs[j], s, _clip_box(box))
                    for s, j, box in zip(score.tolist(), idx.tolist(), boxes[i].tolist(), strict=True)
                    if s > floor
                ]
            )
        return out

    def _select(self, found: list[Detection]) -> list[Detection]:
        """Class-wise NMS (when on), then the best ``max_detections``, best first."""
        found = sorted(found, key=lambda d: -d.score)
        if self.thresholds.nms_iou < 1.0 and found:
            from torchvision.ops import batched_nms

            classes = {c: k for k, c in enumerate(dict.fromkeys(d.cls for d in found))}
            keep = batched_nms(
                torch.tensor([d.box for d in found], dtype=torch.float32),
                torch.tensor([d.score for d in found], dtype=torch.float32),
                torch.tensor([classes[d.cls] for d in found]),
                self.thresholds.nms_iou,
            ).tolist()
            found = [found[k] for k in sorted(keep)]
        return found[: self.thresholds.max_detections]


# ----------------------------------------------------------------------------- helpers


def _corners(cxcywh: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = cxcywh.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def _pad_scale(image: Image.Image) -> tuple[float, float]:
    """Factors from boxes relative to the bottom/right-padded square to boxes relative to the image."""
    side = max(image.size)
    return side / image.size[0], side / image.size[1]


def _clip_box(
    box: Sequence[float], scale: tuple[float, float] = (1.0, 1.0)
) -> tuple[float, float, float, float]:
    sx, sy = scale
    x0, y0, x1, y1 = (min(1.0, max(0.0, v * s)) for v, s in zip(box, (sx, sy, sx, sy), strict=True))
    return (x0, y0, max(x0, x1), max(y0, y1))


def _grounding_text(queries: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """Grounding DINO's prompt ("a cat. a dog.", lower case) and each query's character span."""
    parts, spans, pos = [], [], 0
    for q in queries:
        q = " ".join(q.lower().replace(".", " ").split()) or " "
        spans.append((pos, pos + len(q)))
        parts.append(q + ".")
        pos += len(q) + 2  # the "." and the space after it
    return " ".join(parts), spans


def load_transformers_detector(
    spec: str,
    *,
    device: str | Any = "cpu",
    clip_model: Any = None,
    clip_pretrained: str = "openai",
    thresholds: Mapping[str, float] | None = None,
    colors: Sequence[str] | None = None,
) -> TransformersDetector:
    from transformers import (
        AutoConfig,
        AutoImageProcessor,
        AutoModelForObjectDetection,
        AutoModelForZeroShotObjectDetection,
        AutoProcessor,
    )

    limits = Thresholds.with_overrides(thresholds or {})
    try:
        folder = checkpoint_folder(spec)
    except WeightsNotFound as exc:
        raise DetectorError(f"detector: {exc}") from exc
    try:
        config = from_pretrained_cached_first(AutoConfig.from_pretrained, spec)
    except (OSError, ValueError) as exc:
        raise DetectorError(f"detector {spec!r}: no readable transformers config ({exc})") from exc
    kind = _kind_of(config.model_type)
    if kind is None:
        from transformers.models.auto import modeling_auto as auto

        closed = ", ".join(auto.MODEL_FOR_OBJECT_DETECTION_MAPPING_NAMES)
        opened = ", ".join(auto.MODEL_FOR_ZERO_SHOT_OBJECT_DETECTION_MAPPING_NAMES)
        raise DetectorError(
            f"{spec!r} is a {config.model_type!r} checkpoint, not an object detector "
            f"(closed vocabulary: {closed}; open vocabulary: {opened})"
        )
    if kind == "open" and config.model_type not in OPEN_FAMILIES:
        raise DetectorError(
            f"{spec!r} is a {config.model_type!r} open-vocabulary detector; supported: {', '.join(OPEN_FAMILIES)}"
        )
    model_cls = AutoModelForZeroShotObjectDetection if kind == "open" else AutoModelForObjectDetection
    processor_cls = AutoProcessor if kind == "open" else AutoImageProcessor
    try:
        processor = from_pretrained_cached_first(processor_cls.from_pretrained, spec)
        model = from_pretrained_cached_first(model_cls.from_pretrained, spec)
    except (OSError, ValueError) as exc:
        raise DetectorError(f"detector {spec!r} could not be loaded ({model_cls.__name__}): {exc}") from exc
    torch_device = torch.device(device)
    model.to(torch_device).eval()
    painter = None
    if clip_model is not None:
        if isinstance(clip_model, str):
            from training.clip import load_clip

            clip_model = load_clip(clip_model, clip_pretrained, device=str(torch_device))
        painter = ColorClassifier(clip_model, tuple(colors or GENEVAL_COLORS))
    try:
        weights = weights_sha256(folder)
    except WeightsNotFound as exc:
        raise DetectorError(f"detector {spec!r}: {exc}") from exc
    return TransformersDetector(spec, model, processor, kind, limits, weights, torch_device, painter)
