"""The detector side of ``t2i_eval`` (issue 11): structured prompts per image, detections, crops.

Why a module of its own: :mod:`training.jobs.t2i_eval` drives groups and storage; here is what
turns one group of images into the compositional metrics — which structured prompt each image
answers to, which classes the detector is asked for, the scoring through
:func:`backend.compositional.metrics.score_detections` (intervals over prompts, mismatched-prompt
baseline), TISE's CLIP form of PA, and the object crops O-FID compares. The benchmark
``bench/eval_throughput.py`` times this against a bare loop over the same detector.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage

from backend.compositional.extract import Extractor
from backend.compositional.intervals import MetricValue, cluster_mean
from backend.compositional.loaders import StructuredSet, load_any
from backend.compositional.metrics import (
    Detection,
    ScoringSettings,
    mismatched_assignment,
    score_detections,
)
from backend.compositional.prompts import PromptFormatError, StructuredPrompt
from backend.compositional.spatial import pa_clip_success, swap_spatial_words

#: the metrics score_detections computes (the rest here: pa_clip, o_fid)
BOX_METRICS = ("soa_c", "soa_i", "ca", "pa_det", "geneval")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MIN_CROP = 4  # pixels: smaller object crops say nothing to a feature extractor


class StructureError(ValueError):
    """Images and prompts that cannot be paired (a clear message says which)."""


# ----------------------------------------------------------------------------- which prompt an image answers


@dataclass
class StructureSource:
    """Where the structured prompt of each generated image comes from, first match wins:

    1. the generation's record (``meta["generated"]["structured"]``), written by ``generate``
       from a structured prompt set;
    2. the entry of the evaluation's ``prompts`` set with the same text as the raw prompt;
    3. the caption extractor's reading of the raw prompt (COCO vocabulary).

    The requirements are always those of the *raw* prompt: an upsampled prompt is a rewrite the
    model saw, not a new request (so both regimes are judged on the same requirements).
    """

    by_text: dict[str, StructuredPrompt] = field(default_factory=dict)
    extractor: Extractor | None = None
    counts: dict[str, int] = field(default_factory=lambda: {"generation": 0, "prompts": 0, "extracted": 0})

    @classmethod
    def from_prompts(cls, prompts: str) -> StructureSource:
        src = cls()
        if prompts:
            for p in load_prompt_source(prompts):
                src.by_text.setdefault(p.prompt, p)
        return src

    def of(self, raw_prompt: str, meta: Mapping[str, Any]) -> StructuredPrompt:
        stored = meta.get("structured")
        if stored:
            self.counts["generation"] += 1
            return StructuredPrompt.from_json(dict(stored))
        if raw_prompt in self.by_text:
            self.counts["prompts"] += 1
            return self.by_text[raw_prompt]
        self.counts["extracted"] += 1
        if self.extractor is None:
            self.extractor = Extractor()
        return self.extractor.extract(raw_prompt, source="extracted")


def load_prompt_source(ref: str) -> StructuredSet:
    try:
        return load_any(ref)
    except PromptFormatError as exc:
        raise StructureError(f"prompts {ref!r}: {exc}") from None


@dataclass(frozen=True)
class FolderImage:
    """An image made elsewhere (``eval --images``) with the structured prompt it answers to."""

    path: Path
    sha256: str
    prompt: StructuredPrompt


def folder_images(folder: str | Path, prompts: str) -> list[FolderImage]:
    """Pair the images of ``folder`` with the entries of ``prompts``.

    With a ``file`` field on every entry, that names the image (relative to the folder); without
    any, the i-th entry belongs to the i-th image in sorted file-name order and the counts must
    match. Mixed use, a missing file or a count mismatch is an error naming the culprit.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise StructureError(f"images {str(folder)!r} is not a folder")
    loaded = list(load_prompt_source(prompts))
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    named = [p for p in loaded if p.file]
    if named and len(named) != len(loaded):
        raise StructureError(
            f"prompts {prompts!r}: {len(named)} of {len(loaded)} entries have a file field; give it on "
            "every entry or on none (then the line order pairs prompts with sorted file names)"
        )
    if named:
        pairs = []
        for p in loaded:
            path = root / str(p.file)
            if not path.is_file():
                raise StructureError(
                    f"prompts {prompts!r}: entry {p.key!r} names {p.file!r}, not found in {root}"
                )
            pairs.append((path, p))
    else:
        if len(files) != len(loaded):
            raise StructureError(
                f"{len(files)} images in {root} but {len(loaded)} prompts in {prompts!r}: without a file "
                "field the i-th prompt goes with the i-th image in sorted file-name order, so the counts "
                "must match"
            )
        pairs = list(zip(files, loaded, strict=True))
    if not pairs:
        raise StructureError(f"no images in {root} ({', '.join(IMAGE_SUFFIXES)})")
    return [FolderImage(path, hashlib.sha256(path.read_bytes()).hexdigest(), p) for path, p in pairs]


# ----------------------------------------------------------------------------- detections


def prompt_indices(structures: Sequence[StructuredPrompt]) -> tuple[list[StructuredPrompt], list[int]]:
    """Distinct prompts and each image's index into them: the bootstrap's clusters.

    Two entries are one prompt when they ask for the same thing in the same words (text, objects,
    relations, exclusions, tag): several seeds of one prompt, listed on several lines of an
    ``--images`` file, stay one cluster however their ``key`` and ``file`` differ."""
    index: dict[str, int] = {}
    prompts: list[StructuredPrompt] = []
    out = []
    for s in structures:
        data = {k: v for k, v in s.to_json().items() if k not in ("key", "file", "source")}
        ident = json.dumps(data, sort_keys=True)
        if ident not in index:
            index[ident] = len(prompts)
            prompts.append(s)
        out.append(index[ident])
    return prompts, out


def classes_of(prompt: StructuredPrompt) -> list[str]:
    return [o.cls for o in prompt.objects] + [e.cls for e in prompt.exclude]


def queries_for(
    prompts: Sequence[StructuredPrompt], own: Sequence[int], other: Sequence[int] | None
) -> list[list[str]]:
    """Per image: the classes of its own prompt and of the prompt the baseline scores it against
    (an open-vocabulary detector only finds what it is asked for, so the baseline needs its
    classes asked too; asking for more never changes the own-prompt scores, which read only
    the classes they name)."""
    out = []
    for k, p in enumerate(own):
        wanted = classes_of(prompts[p]) + (classes_of(prompts[other[k]]) if other is not None else [])
        out.append(list(dict.fromkeys(wanted)))
    return out


def detect_stream(
    detector: Any,
    load: Callable[[int], PILImage.Image | None],
    n: int,
    queries: Sequence[Sequence[str]],
    batch_size: int,
    crop_classes: Sequence[Sequence[str]] | None = None,
) -> tuple[list[int], list[list[Detection]], list[PILImage.Image]]:
    """Detect in images ``0..n-1`` batch by batch (``load(i)`` decodes one, None when unreadable).

    Returns the readable positions, their detections and, with ``crop_classes``, the crops of
    those classes' boxes (O-FID). Only one batch of decoded images is held at a time, so a
    30,000-image set costs no more memory than a small one.
    """
    kept: list[int] = []
    found: list[list[Detection]] = []
    cut: list[PILImage.Image] = []
    for start in range(0, n, batch_size):
        batch = [(i, load(i)) for i in range(start, min(n, start + batch_size))]
        batch = [(i, picture) for i, picture in batch if picture is not None]
        if not batch:
            continue
        result = detector.detect([picture for _, picture in batch], [list(queries[i]) for i, _ in batch])
        for (i, picture), dets in zip(batch, result, strict=True):
            kept.append(i)
            found.append(dets)
            if crop_classes is not None:
                cut.extend(crops(picture, dets, crop_classes[i]))
    return kept, found, cut


@dataclass
class GroupScores:
    """The compositional metrics of one group plus what O-FID and provenance need."""

    metrics: dict[str, MetricValue]
    detections: list[list[Detection]]
    prompts: list[StructuredPrompt]
    prompt_index: list[int]


def score_group(
    structures: Sequence[StructuredPrompt],
    detections: Sequence[Sequence[Detection]],
    metrics: Sequence[str],
    settings: ScoringSettings,
    *,
    rounds: int,
    seed: int,
) -> dict[str, MetricValue]:
    prompts, index = prompt_indices(structures)
    wanted = [m for m in BOX_METRICS if m in metrics]
    if not wanted:
        return {}
    return score_detections(prompts, detections, index, wanted, settings=settings, rounds=rounds, seed=seed)


# ----------------------------------------------------------------------------- TISE's CLIP form of PA


def pa_clip(
    structures: Sequence[StructuredPrompt],
    image_feats: np.ndarray,
    text_features: Callable[[list[str]], np.ndarray],
    *,
    logit_scale: float = 100.0,
    rounds: int,
    seed: int,
) -> MetricValue:
    """Share of images whose CLIP prefers their prompt over it with the spatial words swapped
    (TISE: p(true) > 0.6 under a softmax over the two), over images whose prompt has spatial
    words; its chance level is the same test against the mismatched prompt (and its swap)."""
    prompts, index = prompt_indices(structures)
    swapped = [swap_spatial_words(p.prompt) for p in prompts]
    texts = sorted({p.prompt for p in prompts} | {s for s in swapped if s})
    if not any(swapped):
        return MetricValue(float("nan"), float("nan"), float("nan"), 0)
    feats = text_features(texts)
    row = {t: i for i, t in enumerate(texts)}

    def success(img: int, p: int) -> float | None:
        if swapped[p] is None:
            return None
        true = float(image_feats[img] @ feats[row[prompts[p].prompt]])
        false = float(image_feats[img] @ feats[row[swapped[p]]])  # type: ignore[index]
        return float(pa_clip_success(true, false, logit_scale=logit_scale))

    own = cluster_mean([success(i, p) for i, p in enumerate(index)], index, rounds=rounds, seed=seed)
    targets = mismatched_assignment(index, seed)
    if targets is None:
        return own
    base = cluster_mean([success(i, t) for i, t in enumerate(targets)], index, rounds=rounds, seed=seed + 1)
    return own.with_chance(base)


# ----------------------------------------------------------------------------- O-FID crops


def crops(
    image: PILImage.Image, found: Sequence[Detection], classes: Sequence[str]
) -> Iterator[PILImage.Image]:
    """The image cut to each box of the named ``classes`` (the objects its prompt asked for)."""
    w, h = image.size
    wanted = set(classes)
    for d in found:
        if d.cls not in wanted:
            continue
        x0, y0, x1, y1 = d.box
        box = (
            max(0, int(x0 * w)),
            max(0, int(y0 * h)),
            min(w, int(round(x1 * w))),
            min(h, int(round(y1 * h))),
        )
        if box[2] - box[0] >= MIN_CROP and box[3] - box[1] >= MIN_CROP:
            yield image.crop(box)
