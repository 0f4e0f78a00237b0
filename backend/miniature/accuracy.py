"""Caption accuracy against the ground truth of a miniature scene: precision and recall per aspect.

Why: issue 12 asks whether recaptions beat alt-text *against the truth*, not against each other
or a learned scorer. A caption is read with the rule-based extractor (what it claims), then each
claim is checked against the scene (precision) and each true fact looked for among the claims
(recall), for four aspects:

- ``objects``: the shape classes named (a set per caption, as SOA counts named classes).
- ``colors``: (shape, colour) pairs named with a colour.
- ``counts``: counts stated per (shape, colour) group — a number word, or one object written with
  "a"/"an" (a singular noun says one). A vague plural ("circles", "some circles") states no count.
  A count given without a colour ("two circles") is checked against all objects of the shape.
- ``positions``: relations between two named groups; a claim is right when every object matching
  its subject stands in that relation to every object matching its object, by GenEval's rule on
  the true boxes. The facts to recall are the scene's clear relations
  (:meth:`~backend.miniature.world.Scene.relations`), stated either way round.

A caption that claims nothing about an aspect has no precision there (None), a scene without a
fact of that aspect (one object: no relations) no recall; aggregates pool claims and facts over
images (micro averages) and take 95% intervals by resampling images
(:func:`backend.compositional.intervals.ratio_bootstrap`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from backend.compositional.extract import Extractor
from backend.compositional.intervals import (
    DEFAULT_LEVEL,
    DEFAULT_ROUNDS,
    MetricValue,
    pooled,
    ratio_bootstrap,
)
from backend.compositional.prompts import OPPOSITE, ObjectSpec, StructuredPrompt, stated_counts
from backend.compositional.spatial import POSITION_MARGIN, relative_position
from backend.miniature.world import VOCABULARY, Scene, WorldObject

ASPECTS: tuple[str, ...] = ("objects", "colors", "counts", "positions")


@dataclass(frozen=True)
class AspectScore:
    """Claims checked against the truth (``correct`` of ``claims``) and facts found (``recalled`` of ``facts``)."""

    correct: int
    claims: int
    recalled: int
    facts: int

    @property
    def precision(self) -> float | None:
        return self.correct / self.claims if self.claims else None

    @property
    def recall(self) -> float | None:
        return self.recalled / self.facts if self.facts else None


@dataclass(frozen=True)
class CaptionAccuracy:
    """One caption's score per aspect, with the structured prompt the extractor read from it."""

    aspects: dict[str, AspectScore]
    read: StructuredPrompt

    def as_json(self) -> dict[str, Any]:
        return {a: {"precision": s.precision, "recall": s.recall} for a, s in self.aspects.items()}


def _matches(spec: ObjectSpec, o: WorldObject) -> bool:
    return spec.cls == o.shape and (spec.color is None or spec.color == o.color)


def _count_claims(read: StructuredPrompt) -> dict[tuple[str, str | None], int]:
    claims = dict(stated_counts(read))
    for o in read.objects:
        if o.count == 1:  # "a red circle": one (a plural without a number is read as 2, inexact)
            claims.setdefault((o.cls, o.color), 1)
    return claims


def score_read(read: StructuredPrompt, scene: Scene) -> CaptionAccuracy:
    """Score what the extractor read from a caption against the scene (see the module docstring)."""
    objects = scene.objects
    groups = scene.groups()
    aspects: dict[str, AspectScore] = {}

    named = {o.cls for o in read.objects}
    shapes = {o.shape for o in objects}
    aspects["objects"] = AspectScore(len(named & shapes), len(named), len(named & shapes), len(shapes))

    colored = {(o.cls, o.color) for o in read.objects if o.color is not None}
    pairs = {(o.shape, o.color) for o in objects}
    aspects["colors"] = AspectScore(len(colored & pairs), len(colored), len(colored & pairs), len(pairs))

    claims = _count_claims(read)

    def true_count(cls: str, color: str | None) -> int:
        return sum(1 for o in objects if o.shape == cls and (color is None or o.color == color))

    right = {key for key, n in claims.items() if true_count(*key) == n}
    recalled = sum(
        (g.shape, g.color) in right
        or ((g.shape, None) in right and sum(h.shape == g.shape for h in groups) == 1)
        for g in groups
    )
    aspects["counts"] = AspectScore(len(right), len(claims), recalled, len(groups))

    correct = 0
    for rel in read.relations:
        subj = [o for o in objects if _matches(read.objects[rel.subject], o)]
        obj = [o for o in objects if _matches(read.objects[rel.object], o)]
        correct += bool(subj and obj and not set(subj) & set(obj)) and all(
            rel.relation in relative_position(a.box, b.box, margin=POSITION_MARGIN) for a in subj for b in obj
        )
    facts = scene.relations()
    found = 0
    for fact in facts:
        ga, gb = groups[fact.subject], groups[fact.object]
        for rel in read.relations:
            s, o = read.objects[rel.subject], read.objects[rel.object]
            if (rel.relation == fact.relation and _hits(s, ga) and _hits(o, gb)) or (
                rel.relation == OPPOSITE[fact.relation] and _hits(s, gb) and _hits(o, ga)
            ):
                found += 1
                break
    aspects["positions"] = AspectScore(correct, len(read.relations), found, len(facts))
    return CaptionAccuracy(aspects, read)


def _hits(spec: ObjectSpec, group: Any) -> bool:
    return spec.cls == group.shape and spec.color in (None, group.color)


_EXTRACTOR: Extractor | None = None


def caption_accuracy(caption: str, scene: Scene, extractor: Extractor | None = None) -> CaptionAccuracy:
    """Read ``caption`` with the miniature world's vocabulary and score it against ``scene``.

    A blank caption (a small captioner can emit an end token first) claims nothing: it scores no
    precision and zero recall, rather than failing the whole table on one image.
    """
    global _EXTRACTOR
    if not caption.strip():
        return score_read(StructuredPrompt(prompt="(blank caption)", objects=()), scene)
    if extractor is None:
        _EXTRACTOR = _EXTRACTOR or Extractor(VOCABULARY)
        extractor = _EXTRACTOR
    return score_read(extractor.extract(caption), scene)


@dataclass(frozen=True)
class AccuracySummary:
    """Precision and recall per aspect over a set of captions, each with its 95% interval over images."""

    precision: dict[str, MetricValue]
    recall: dict[str, MetricValue]
    n_captions: int

    def as_json(self) -> dict[str, Any]:
        return {
            "n_captions": self.n_captions,
            **{
                a: {"precision": self.precision[a].as_json(), "recall": self.recall[a].as_json()}
                for a in ASPECTS
            },
        }


def summarise(
    scores: Sequence[CaptionAccuracy],
    images: Sequence[int] | None = None,
    *,
    rounds: int = DEFAULT_ROUNDS,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> AccuracySummary:
    """Pooled precision and recall per aspect; ``images[i]`` is the image caption ``i`` describes
    (the resampled unit; default: one image per caption)."""
    ids = list(range(len(scores))) if images is None else [int(i) for i in images]
    if len(ids) != len(scores):
        raise ValueError(f"{len(scores)} caption scores but {len(ids)} image ids")
    row_of: dict[int, int] = {}
    rows = [row_of.setdefault(i, len(row_of)) for i in ids]
    precision: dict[str, MetricValue] = {}
    recall: dict[str, MetricValue] = {}
    for aspect in ASPECTS:
        table = np.zeros((4, max(len(row_of), 1), 1))
        for s, r in zip(scores, rows, strict=True):
            a = s.aspects[aspect]
            table[:, r, 0] += (a.correct, a.claims, a.recalled, a.facts)
        n_p = sum(s.aspects[aspect].claims > 0 for s in scores)
        n_r = sum(s.aspects[aspect].facts > 0 for s in scores)
        precision[aspect] = ratio_bootstrap(
            table[0], table[1], pooled, n_images=n_p, rounds=rounds, seed=seed, level=level
        )
        recall[aspect] = ratio_bootstrap(
            table[2], table[3], pooled, n_images=n_r, rounds=rounds, seed=seed, level=level
        )
    return AccuracySummary(precision, recall, len(scores))


def fmt(value: MetricValue) -> str:
    """``0.93 [0.90, 0.95]``, or ``n/a`` when nothing was claimed or there was nothing to find."""
    if not math.isfinite(value.value):
        return "n/a"
    return f"{value.value:.2f} [{value.lower:.2f}, {value.upper:.2f}]"
