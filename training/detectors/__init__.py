"""Object detectors behind one interface, for the compositional metrics (SOA, CA, PA, GenEval).

Two kinds (``load_detector(spec)`` chooses by the spec):

* ``"oracle"`` / ``"oracle:demo"`` / ``"oracle:miniature"`` — exact detection for the synthetic
  shape worlds, from pixels only (:mod:`training.detectors.oracle`);
* a local folder or hub id of a transformers checkpoint — closed vocabulary
  (``AutoModelForObjectDetection``: DETR, RT-DETR, YOLOS, …; label names matched to the prompt's
  classes) or open vocabulary (``AutoModelForZeroShotObjectDetection``: OWLv2 / OWL-ViT, Grounding
  DINO; the prompt's classes are the text queries), chosen from the checkpoint's config
  (:mod:`training.detectors.hf`). Colours come from CLIP zero-shot on each box crop when a CLIP
  model is given, as GenEval does (:mod:`training.detectors.color`).

Every detector returns, per image, :class:`backend.compositional.metrics.Detection` objects named
by the query strings the caller passed (so metrics compare plain strings), boxes as fractions of
the image, and says in :meth:`Detector.provenance` what it is: name, weights hash, thresholds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from backend.compositional.metrics import Detection

if TYPE_CHECKING:
    from PIL import Image

    from training.clip import ClipScorer

__all__ = ["Detection", "Detector", "DetectorError", "load_detector"]


class DetectorError(ValueError):
    """A detector spec that cannot be loaded, or a call it cannot answer (a clear message)."""


@runtime_checkable
class Detector(Protocol):
    name: str  # "oracle:demo", or the model id / path as given

    def provenance(self) -> dict[str, Any]:
        """{"detector", "kind", "weights_sha256", "thresholds", ...}: goes into every result."""
        ...

    def detect(
        self, images: Sequence[Image.Image], queries: Sequence[Sequence[str] | None] | None = None
    ) -> list[list[Detection]]:
        """Detections per image. ``queries[i]`` are the classes to look for in image i; results
        carry those strings as ``cls``. None (for all images, or for one) means every class the
        detector knows (open-vocabulary detectors need queries)."""
        ...


def load_detector(
    spec: str,
    *,
    device: str | Any = "cpu",
    clip_model: ClipScorer | str | None = None,
    clip_pretrained: str = "openai",
    thresholds: Mapping[str, float] | None = None,
    colors: Sequence[str] | None = None,
) -> Detector:
    """The detector ``spec`` names.

    ``spec``: ``oracle`` (the demo world), ``oracle:<world>`` (demo, miniature), or a folder /
    hub id of a transformers detector. ``thresholds`` override defaults by name (oracle:
    ``tolerance``, ``min_blob``; transformers: ``score``, ``text``, ``nms_iou``,
    ``max_detections``). ``clip_model`` (a loaded :class:`training.clip.ClipScorer` or a
    reference :func:`training.clip.load_clip` takes, with ``clip_pretrained``) gives transformers
    detections a colour by zero-shot classification of the box crop among ``colors`` (GenEval's
    ten by default); without it their colour is None. The oracle reads colours from pixels.
    """
    spec = (spec or "").strip()
    if not spec:
        raise DetectorError("no detector given: use oracle, oracle:miniature, or a detector folder / hub id")
    thresholds = dict(thresholds or {})
    if spec == "oracle" or spec.startswith("oracle:"):
        from training.detectors.oracle import OracleDetector, world_named

        unknown = set(thresholds) - {"tolerance", "min_blob"}
        if unknown:
            raise DetectorError(
                f"the oracle has no thresholds {sorted(unknown)} (it has tolerance, min_blob)"
            )
        try:
            world = world_named(spec.partition(":")[2])
        except ValueError as exc:
            raise DetectorError(str(exc)) from exc
        min_blob = thresholds.get("min_blob")
        return OracleDetector(
            world,
            tolerance=thresholds.get("tolerance"),
            min_blob=None if min_blob is None else int(min_blob),
        )
    from training.detectors.hf import load_transformers_detector

    return load_transformers_detector(
        spec,
        device=device,
        clip_model=clip_model,
        clip_pretrained=clip_pretrained,
        thresholds=thresholds,
        colors=colors,
    )
