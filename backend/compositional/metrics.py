"""Detector-based compositional metrics (SOA, CA, PA, GenEval) over structured prompts.

A detector (``training/detectors``) turns each generated image into :class:`Detection` s; this
module checks them against the :class:`~backend.compositional.prompts.StructuredPrompt` the image
was made from, then aggregates over images with a bootstrap over prompts and the
mismatched-prompt baseline (:mod:`backend.compositional.intervals`).

The metrics, as their papers define them:

- **SOA-C / SOA-I** (Hinz et al., semantic object accuracy): for every object class a prompt
  names, was at least one object of that class detected in the image? SOA-C averages the
  recall per class (each class weighs the same), SOA-I pools every (image, named class) pair
  (each image–object pair weighs the same; frequent classes dominate). Colour and count are
  ignored, as in SOA.
- **CA** (TISE's counting alignment): for the counts a prompt *states* (see
  :func:`~backend.compositional.prompts.stated_counts`), the root-mean-square difference between
  asked and detected counts within an image, averaged over images. We keep TISE's RMSE rather
  than an MAE because RECAP's table (CA 1.44 → 1.32) was computed with TISE's definition, so our
  numbers stay comparable to the paper; and within an image, RMSE lets one badly miscounted
  group (asked 2, got 9) weigh more than several off-by-ones, which is what a reader of "the
  model can count" cares about. With one stated group per image (most prompts) RMSE and MAE
  coincide. Lower is better; 0 is perfect.
- **PA, detector form**: for each relation a prompt states, do the detected boxes satisfy it
  (GenEval's relative-position rule with its margin, every chosen subject box against every
  chosen object box)? Per image the fraction of relations satisfied, averaged over images with
  relations. (TISE's CLIP form needs CLIP; the encoder runs in ``training/`` and hands its
  similarities to :func:`~backend.compositional.spatial.pa_clip_success`.)
- **GenEval** (Ghosh et al.): an image is correct when every include clause holds (the
  ``count`` most confident detections of the class exist, have the asked colour, and stand in
  the asked position to their target) and no exclude clause is hit (fewer than ``count`` of
  the class). Accuracy per tag; overall = mean over tags, as GenEval's summary does.
  GenEval's prompts never name one class twice; when ours do ("a red circle and a blue
  circle"), each clause takes the most confident *unclaimed* detections of its colour, so the
  clauses cannot both claim the same object.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from backend.compositional.intervals import (
    DEFAULT_LEVEL,
    DEFAULT_ROUNDS,
    MetricValue,
    column_mean,
    contrast_bootstrap,
    mismatched_prompts,
    pooled,
    ratio_bootstrap,
)
from backend.compositional.prompts import ObjectSpec, StructuredPrompt, normalize_class, stated_counts
from backend.compositional.spatial import (
    POSITION_MARGIN,
    pa_clip_success,
    relative_position,
    swap_spatial_words,
)

__all__ = [
    "METRICS",
    "Detection",
    "ImageScore",
    "MetricValue",
    "ScoringSettings",
    "aggregate",
    "mismatched_assignment",
    "pa_clip_success",
    "score_detections",
    "score_image",
    "swap_spatial_words",
]

METRICS: tuple[str, ...] = ("soa_c", "soa_i", "ca", "pa_det", "geneval")
UNTAGGED = "untagged"


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

    def __post_init__(self) -> None:
        try:
            coords = tuple(float(v) for v in self.box)
        except (TypeError, ValueError):
            raise ValueError(f"detection box must be 4 numbers (x0, y0, x1, y1), got {self.box!r}") from None
        if len(coords) != 4 or not all(math.isfinite(v) for v in coords):
            raise ValueError(f"detection box must be 4 finite numbers (x0, y0, x1, y1), got {self.box!r}")
        x0, y0, x1, y1 = coords
        # fractions of the image; a box centre-format head can overshoot the border by up to half
        # a box, so [-0.5, 1.5] is allowed, while pixel boxes (almost always > 1.5) are refused
        if x1 < x0 or y1 < y0 or min(coords) < -0.5 or max(coords) > 1.5:
            raise ValueError(
                f"detection box {self.box!r} is not (x0, y0, x1, y1) in fractions of the image; "
                "divide pixel boxes by the image width and height"
            )
        if not math.isfinite(float(self.score)):
            raise ValueError(f"detection score must be a finite number, got {self.score!r}")
        object.__setattr__(self, "box", coords)

    @property
    def center(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return ((x0 + x1) / 2, (y0 + y1) / 2)


@dataclass(frozen=True)
class ScoringSettings:
    """How detections are read; recorded with every result.

    ``min_score`` drops detections below it (GenEval: 0.3); ``counting_min_score``, when set,
    replaces it for prompts tagged ``counting`` (GenEval: 0.9, since a spurious low-confidence box
    ruins a count); ``max_objects`` keeps the most confident boxes per class (GenEval: 16);
    ``position_margin`` is GenEval's relative-position margin. The defaults keep every
    detection the detector returned, so its own thresholds (in its provenance) apply.
    """

    min_score: float = 0.0
    counting_min_score: float | None = None
    max_objects: int = 16
    position_margin: float = POSITION_MARGIN

    def as_json(self) -> dict[str, float | int | None]:
        return asdict(self)


@dataclass(frozen=True)
class ImageScore:
    """What one image got right against one prompt, with GenEval's reasons when it failed."""

    soa: dict[str, bool]  # named class -> detected
    counts: dict[tuple[str, str | None], tuple[int, int]]  # stated (class, colour) -> (asked, detected)
    relations: tuple[bool, ...]  # per prompt relation: satisfied
    geneval: bool
    tag: str
    reasons: tuple[str, ...] = ()

    @property
    def count_rmse(self) -> float | None:
        if not self.counts:
            return None
        return math.sqrt(sum((a - f) ** 2 for a, f in self.counts.values()) / len(self.counts))

    @property
    def pa(self) -> float | None:
        return sum(self.relations) / len(self.relations) if self.relations else None


def _group(detections: Sequence[Detection], min_score: float, max_objects: int) -> dict[str, list[Detection]]:
    """Detections by normalised class, most confident first, thresholded and capped."""
    by: dict[str, list[Detection]] = {}
    for d in detections:
        if d.score >= min_score:
            by.setdefault(normalize_class(d.cls), []).append(d)
    return {c: sorted(ds, key=lambda d: -d.score)[:max_objects] for c, ds in by.items()}


def _color_of(d: Detection) -> str | None:
    return normalize_class(d.color) if d.color else None


def _has(spec_color: str | None, d: Detection) -> bool:
    return spec_color is None or _color_of(d) == spec_color


def _choose(prompt: StructuredPrompt, by: dict[str, list[Detection]]) -> list[list[Detection]]:
    """Per include clause, the detections it is judged on (GenEval: the ``count`` most confident
    of the class; when a class is named by several clauses, the most confident unclaimed ones of
    the clause's colour)."""
    shared = {c for c in (o.cls for o in prompt.objects) if sum(o.cls == c for o in prompt.objects) > 1}
    claimed: set[int] = set()
    chosen: list[list[Detection]] = []
    for spec in prompt.objects:
        pool = by.get(spec.cls, [])
        if spec.cls in shared:
            picked = [d for d in pool if id(d) not in claimed and _has(spec.color, d)][: spec.count]
            claimed.update(id(d) for d in picked)
        else:
            picked = pool[: spec.count]
        chosen.append(picked)
    return chosen


def _relation_holds(
    subjects: list[Detection], objects: list[Detection], relation: str, margin: float
) -> tuple[bool, str]:
    pairs = [(a, b) for a in subjects for b in objects if a is not b]
    if not subjects or not objects or not pairs:
        return False, "missing"
    for a, b in pairs:
        found = relative_position(a.box, b.box, margin=margin)
        if relation not in found:
            return False, " and ".join(sorted(found)) or "no clear relation"
    return True, ""


def _count_of(by: dict[str, list[Detection]], cls: str, color: str | None) -> int:
    return sum(1 for d in by.get(cls, []) if _has(color, d))


def score_image(
    prompt: StructuredPrompt, detections: Sequence[Detection], settings: ScoringSettings | None = None
) -> ImageScore:
    """Check one image's detections against one prompt (see the module docstring for each metric)."""
    s = settings or ScoringSettings()
    tag = prompt.tag or UNTAGGED
    threshold = (
        s.counting_min_score if (tag == "counting" and s.counting_min_score is not None) else s.min_score
    )
    by = _group(detections, threshold, s.max_objects)

    soa = {o.cls: bool(by.get(o.cls)) for o in prompt.objects}
    counts = {key: (asked, _count_of(by, *key)) for key, asked in stated_counts(prompt).items()}

    chosen = _choose(prompt, by)
    # PA (detector form): positions only; presence of at least one box per side is enough
    present = [[d for d in by.get(o.cls, []) if _has(o.color, d)][: o.count] for o in prompt.objects]
    relations = tuple(
        _relation_holds(present[r.subject], present[r.object], r.relation, s.position_margin)[0]
        for r in prompt.relations
    )

    # GenEval
    reasons: list[str] = []
    matched: list[bool] = []
    for spec, picked in zip(prompt.objects, chosen, strict=True):
        ok = len(picked) >= spec.count
        if not ok:
            reasons.append(
                f"expected {_words(spec)}>={spec.count}, found {len(by.get(spec.cls, []))} {spec.cls}"
            )
        elif spec.color is not None and sum(_has(spec.color, d) for d in picked) < spec.count:
            ok = False
            seen = ", ".join(sorted({_color_of(d) or "unknown colour" for d in picked}))
            reasons.append(f"expected {_words(spec)}>={spec.count}, found colours {seen}")
        matched.append(ok)
    for rel in prompt.relations:
        if not matched[rel.subject]:
            continue  # already failed on the subject itself (GenEval checks position only when it matched)
        if not matched[rel.object]:
            matched[rel.subject] = False
            reasons.append(f"no target for {prompt.objects[rel.subject].cls} to be {rel.relation}")
            continue
        ok, found = _relation_holds(chosen[rel.subject], chosen[rel.object], rel.relation, s.position_margin)
        if not ok:
            matched[rel.subject] = False
            reasons.append(f"expected {prompt.describe_relation(rel)}, found {found}")
    for ex in prompt.exclude:
        n = _count_of(by, ex.cls, ex.color)
        if n >= ex.count:
            reasons.append(f"expected {_words(ex)}<{ex.count}, found {n}")
    return ImageScore(soa, counts, relations, not reasons, tag, tuple(reasons))


def _words(spec: ObjectSpec) -> str:
    return " ".join(w for w in (spec.color, spec.cls) if w)


# ---------------------------------------------------------------------------- aggregation


def _check_metrics(metrics: Sequence[str]) -> tuple[str, ...]:
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown compositional metric(s) {unknown}; choose from {', '.join(METRICS)}")
    return tuple(dict.fromkeys(metrics))


_REDUCERS = {"soa_c": column_mean, "soa_i": pooled, "ca": pooled, "pa_det": pooled, "geneval": column_mean}


def metric_sums(
    scores: Sequence[ImageScore],
    rows: Sequence[int],
    n_rows: int,
    metric: str,
    columns: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, int, list[str]]:
    """Per-prompt sums of one metric: ``(num, den, images that entered, columns)``.

    ``rows[i]`` is image ``i``'s prompt row. Columns are the classes (SOA), the GenEval tags, or one
    column (CA, PA); give ``columns`` to line two arms up on the same ones (a class one arm never
    saw is an all-zero column). The metric is ``_REDUCERS[metric](num.sum(0), den.sum(0))``.
    """
    per_image = {"ca": lambda s: s.count_rmse, "pa_det": lambda s: s.pa}
    if metric in ("soa_c", "soa_i"):
        cols = list(columns) if columns is not None else sorted({c for s in scores for c in s.soa})
    elif metric == "geneval":
        cols = list(columns) if columns is not None else list(dict.fromkeys(s.tag for s in scores))
    elif metric in per_image:
        cols = [metric]
    else:
        raise ValueError(f"no per-prompt sums for metric {metric!r}")
    col = {c: j for j, c in enumerate(cols)}
    num, den = np.zeros((n_rows, len(cols))), np.zeros((n_rows, len(cols)))
    n_img = 0
    for s, r in zip(scores, rows, strict=True):
        if metric in ("soa_c", "soa_i"):
            n_img += bool(s.soa)
            for c, hit in s.soa.items():
                num[r, col[c]] += hit
                den[r, col[c]] += 1
        elif metric == "geneval":
            n_img += 1
            num[r, col[s.tag]] += s.geneval
            den[r, col[s.tag]] += 1
        else:
            v = per_image[metric](s)
            if v is not None:
                num[r, 0] += v
                den[r, 0] += 1
                n_img += 1
    return num, den, n_img, cols


def aggregate(
    scores: Sequence[ImageScore],
    clusters: Sequence[int],
    metrics: Sequence[str] = METRICS,
    *,
    rounds: int = DEFAULT_ROUNDS,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> dict[str, MetricValue]:
    """Metric name → value with a bootstrap interval over ``clusters`` (the prompt of each image).

    ``geneval`` also yields ``geneval:<tag>`` for every tag present. No chance level here; see
    :func:`score_detections`.
    """
    metrics = _check_metrics(metrics)
    if len(scores) != len(clusters):
        raise ValueError(f"{len(scores)} image scores but {len(clusters)} cluster ids")
    row_of: dict[int, int] = {}
    rows = [row_of.setdefault(int(c), len(row_of)) for c in clusters]
    n_rows = len(row_of)
    kw = {"rounds": rounds, "seed": seed, "level": level}
    out: dict[str, MetricValue] = {}
    for name in ("soa_c", "soa_i", "ca", "pa_det", "geneval"):
        if name not in metrics:
            continue
        num, den, n_img, cols = metric_sums(scores, rows, n_rows, name)
        out[name] = ratio_bootstrap(num, den, _REDUCERS[name], n_images=n_img, **kw)
        if name == "geneval":
            for j, t in enumerate(cols):
                out[f"geneval:{t}"] = ratio_bootstrap(
                    num[:, j : j + 1], den[:, j : j + 1], pooled, n_images=int(den[:, j].sum()), **kw
                )
    return out


def paired_difference(
    treatment: Sequence[ImageScore],
    treatment_clusters: Sequence[int],
    control: Sequence[ImageScore],
    control_clusters: Sequence[int],
    metric: str,
    *,
    rounds: int = DEFAULT_ROUNDS,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> MetricValue:
    """``metric(treatment) - metric(control)`` with a 95% interval from resampling the prompts both
    arms were asked (:func:`~backend.compositional.intervals.difference_bootstrap`).

    Clusters name prompts in one numbering shared by both arms (the same held-out prompt has the
    same id in each). For CA (lower is better) a negative difference favours the treatment.
    """
    return paired_contrast(
        [(treatment, treatment_clusters), (control, control_clusters)], [1.0, -1.0], metric,
        rounds=rounds, seed=seed, level=level,
    )  # fmt: skip


def paired_contrast(
    arms: Sequence[tuple[Sequence[ImageScore], Sequence[int]]],
    weights: Sequence[float],
    metric: str,
    *,
    rounds: int = DEFAULT_ROUNDS,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> MetricValue:
    """``sum(w * metric(arm))`` over ``(scores, clusters)`` arms, resampling the prompts jointly
    (:func:`~backend.compositional.intervals.contrast_bootstrap`); e.g. the interaction
    ``(a - b) - (c - d)`` of a two-by-two design with weights ``(1, -1, -1, 1)``.

    Clusters name prompts in one numbering shared by every arm, as in :func:`paired_difference`.
    """
    row_of: dict[int, int] = {}
    for _, clusters in arms:
        for c in clusters:
            row_of.setdefault(int(c), len(row_of))
    everything = [s for scores, _ in arms for s in scores]
    columns = None
    if metric in ("soa_c", "soa_i"):
        columns = sorted({c for s in everything for c in s.soa})
    elif metric == "geneval":
        columns = list(dict.fromkeys(s.tag for s in everything))
    sums, n_images = [], 0
    for scores, clusters in arms:
        num, den, n, _ = metric_sums(scores, [row_of[int(c)] for c in clusters], len(row_of), metric, columns)
        sums.append((num, den))
        n_images += n
    return contrast_bootstrap(
        sums, weights, _REDUCERS[metric], n_images=n_images, rounds=rounds, seed=seed, level=level
    )


def mismatched_assignment(prompt_index: Sequence[int], seed: int = 0) -> list[int] | None:
    """For each image, the prompt it is scored against in the mismatched baseline.

    The prompts that have images are deranged (:func:`~backend.compositional.intervals.mismatched_prompts`)
    so every image of prompt ``i`` meets the same other prompt ``j != i``. ``None`` when fewer than
    two prompts have images (there is no other prompt). Use the same ``seed`` for every metric of
    a run (the eval job's CLIP form of PA, CLIP score) so all chance levels share one shuffle.
    """
    used = sorted(set(int(i) for i in prompt_index))
    if len(used) < 2:
        return None
    perm = mismatched_prompts(len(used), seed)
    target = {p: used[int(perm[k])] for k, p in enumerate(used)}
    return [target[int(i)] for i in prompt_index]


def score_detections(
    prompts: Sequence[StructuredPrompt],
    detections: Sequence[Sequence[Detection]],
    prompt_index: Sequence[int],
    metrics: Sequence[str] = METRICS,
    *,
    settings: ScoringSettings | None = None,
    rounds: int = DEFAULT_ROUNDS,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
    chance: bool = True,
) -> dict[str, MetricValue]:
    """Every requested metric with its 95% interval over prompts and its mismatched-prompt chance level.

    ``detections[i]`` are image ``i``'s detections and ``prompt_index[i]`` the prompt (index into
    ``prompts``) it was made from; several images may share a prompt. The baseline scores each
    image against :func:`mismatched_assignment`'s prompt (derangement seeded by ``seed``; its
    bootstrap uses ``seed + 1``). Proportions are in [0, 1]; CA is a count error (lower is better).
    """
    metrics = _check_metrics(metrics)
    if len(detections) != len(prompt_index):
        raise ValueError(f"{len(detections)} images' detections but {len(prompt_index)} prompt indices")
    bad = [i for i in prompt_index if not 0 <= int(i) < len(prompts)]
    if bad:
        raise ValueError(f"prompt index {bad[0]} is out of range for {len(prompts)} prompts")
    s = settings or ScoringSettings()
    true_scores = [score_image(prompts[int(p)], d, s) for p, d in zip(prompt_index, detections, strict=True)]
    out = aggregate(true_scores, prompt_index, metrics, rounds=rounds, seed=seed, level=level)
    targets = mismatched_assignment(prompt_index, seed) if chance else None
    if targets is None:
        return out
    chance_scores = [score_image(prompts[t], d, s) for t, d in zip(targets, detections, strict=True)]
    # cluster by the image's own prompt: each is paired with exactly one other prompt, so this is
    # the same partition as clustering by the prompt scored against
    base = aggregate(chance_scores, prompt_index, metrics, rounds=rounds, seed=seed + 1, level=level)
    return {
        name: mv.with_chance(base[name]) if name in base else mv.with_chance(_NAN) for name, mv in out.items()
    }


_NAN = MetricValue(math.nan, math.nan, math.nan, 0)
