"""Intervals over prompts and the mismatched-prompt baseline.

Why resample prompts, not images: several images of one prompt share that prompt's difficulty
(a prompt asking for four giraffes is hard for every seed), so they are not independent. A
bootstrap that draws images would treat them as independent and give intervals that are too
narrow; drawing whole prompts (each with all of its images) keeps that dependence. The interval
is the percentile interval of the metric recomputed on each resample.

Why a mismatched baseline: a number such as "SOA-I 62%" means little without knowing what a
detector reports for images that were *not* made for the prompt (a model that always draws a
person scores well on COCO). Scoring every image against another prompt's requirements gives that
chance level on the same images with the same detector; the prompts are shuffled by a seeded
derangement so no image keeps its own prompt.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_ROUNDS = 1000
DEFAULT_LEVEL = 0.95
_CHUNK = 64  # bootstrap rounds computed at once (bounds memory for large prompt sets)


@dataclass(frozen=True)
class MetricValue:
    """A metric with its bootstrap interval and chance level.

    ``n`` counts the images that entered the metric, ``n_prompts`` the prompts they came from
    (the resampled unit). ``chance`` is the same metric on the mismatched-prompt baseline, with
    its own interval. Missing values are NaN here and ``null`` in :meth:`as_json`.
    """

    value: float
    lower: float
    upper: float
    n: int
    chance: float = math.nan
    chance_lower: float = math.nan
    chance_upper: float = math.nan
    n_prompts: int = 0

    def as_json(self) -> dict[str, Any]:
        """``{"value", "lower", "upper", "n", "chance"}`` plus the chance interval and ``n_prompts``."""

        def num(x: float) -> float | None:
            return None if x is None or not math.isfinite(x) else float(x)

        return {
            "value": num(self.value),
            "lower": num(self.lower),
            "upper": num(self.upper),
            "n": int(self.n),
            "chance": num(self.chance),
            "chance_lower": num(self.chance_lower),
            "chance_upper": num(self.chance_upper),
            "n_prompts": int(self.n_prompts),
        }

    def with_chance(self, chance: MetricValue) -> MetricValue:
        return MetricValue(
            self.value,
            self.lower,
            self.upper,
            self.n,
            chance.value,
            chance.lower,
            chance.upper,
            self.n_prompts,
        )


def mismatched_prompts(n: int, seed: int = 0) -> np.ndarray:
    """A seeded derangement of ``range(n)``: ``perm[i] != i`` for every i (uniform over derangements).

    Image(s) of prompt ``i`` are scored against prompt ``perm[i]``. Needs ``n >= 2``.
    """
    if n < 2:
        raise ValueError(f"a mismatched baseline needs at least 2 prompts, got {n}")
    rng = np.random.default_rng(seed)
    idx = np.arange(n)
    while True:  # rejection: about e ≈ 2.7 draws on average, for any n
        perm = rng.permutation(n)
        if not np.any(perm == idx):
            return perm


Reducer = Callable[[np.ndarray, np.ndarray], np.ndarray]


def pooled(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Σ numerators / Σ denominators over every column (a micro average)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return num.sum(axis=-1) / den.sum(axis=-1)


def column_mean(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Mean over columns (classes, tags) of each column's ratio, skipping empty columns (a macro average)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
        present = den > 0
        total = np.where(present, ratio, 0.0).sum(axis=-1)
        count = present.sum(axis=-1)
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def ratio_bootstrap(
    num: np.ndarray,
    den: np.ndarray,
    reducer: Reducer = pooled,
    *,
    n_images: int,
    rounds: int = DEFAULT_ROUNDS,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> MetricValue:
    """A metric of per-prompt sums, with a percentile interval from resampling prompts.

    ``num`` and ``den`` are prompts × columns: each prompt's summed numerators and denominators
    (e.g. detected / named objects per class). The metric is ``reducer(Σ num, Σ den)``; each
    bootstrap round redraws the prompts with replacement and recomputes it (scipy's percentile
    bootstrap over prompt indices).
    Only prompts with a positive denominator somewhere are kept.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level!r}")
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds!r}")
    num = np.atleast_2d(np.asarray(num, dtype=float))
    den = np.atleast_2d(np.asarray(den, dtype=float))
    if num.shape != den.shape:
        raise ValueError(f"numerators {num.shape} and denominators {den.shape} differ in shape")
    keep = den.sum(axis=1) > 0
    num, den = num[keep], den[keep]
    n_prompts = int(num.shape[0])
    if n_prompts == 0:
        return MetricValue(math.nan, math.nan, math.nan, 0, n_prompts=0)
    value = float(reducer(num.sum(axis=0), den.sum(axis=0)))
    if n_prompts == 1:  # every resample is the one prompt: the interval is the point
        return MetricValue(value, value, value, n_images, n_prompts=1)

    low, high = _prompt_bootstrap(
        n_prompts, lambda weights: reducer(weights @ num, weights @ den), rounds=rounds, seed=seed, level=level
    )
    return MetricValue(value, low, high, n_images, n_prompts=n_prompts)


def _prompt_bootstrap(
    n_prompts: int, of_counts: Callable[[np.ndarray], np.ndarray], *, rounds: int, seed: int, level: float
) -> tuple[float, float]:
    """The percentile interval of a statistic over prompts resampled with replacement.

    ``of_counts`` maps a rounds × prompts matrix of how often each prompt was drawn to one value
    per round. Why counts: a round then costs one matrix product instead of gathering prompts ×
    columns for every draw; every bootstrap here (one arm, a difference, a contrast) shares it.
    """

    def statistic(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        picked = np.moveaxis(idx, axis, -1).astype(np.int64)  # resampled prompt indices (..., n_prompts)
        flat = picked.reshape(-1, n_prompts)
        offsets = flat + n_prompts * np.arange(flat.shape[0])[:, None]
        counts = np.bincount(offsets.ravel(), minlength=flat.size).reshape(flat.shape).astype(float)
        return of_counts(counts).reshape(picked.shape[:-1])

    from scipy import stats  # imported on first use: keeps the studio's cold start light

    result = stats.bootstrap(
        (np.arange(n_prompts),), statistic, n_resamples=rounds, batch=_CHUNK, vectorized=True,
        confidence_level=level, method="percentile", rng=np.random.default_rng(seed),
    )  # fmt: skip
    ci = result.confidence_interval
    return float(ci.low), float(ci.high)


def cluster_mean(
    values: Sequence[float | None],
    clusters: Sequence[int],
    *,
    rounds: int = DEFAULT_ROUNDS,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> MetricValue:
    """Mean of per-image values (``None``/NaN skipped) with an interval from resampling clusters.

    For metrics computed elsewhere per image (TISE's CLIP form of PA, CLIP score, R-precision):
    ``clusters[i]`` is the prompt image ``i`` was made from (or, for a baseline, scored against).
    """
    if len(values) != len(clusters):
        raise ValueError(f"{len(values)} values but {len(clusters)} cluster ids")
    ids: dict[int, int] = {}
    rows: list[tuple[int, float]] = []
    for v, c in zip(values, clusters, strict=True):
        if v is None or not math.isfinite(float(v)):
            continue
        rows.append((ids.setdefault(int(c), len(ids)), float(v)))
    num = np.zeros((len(ids), 1))
    den = np.zeros((len(ids), 1))
    for row, v in rows:
        num[row, 0] += v
        den[row, 0] += 1
    return ratio_bootstrap(num, den, pooled, n_images=len(rows), rounds=rounds, seed=seed, level=level)


def difference_bootstrap(
    treatment: tuple[np.ndarray, np.ndarray],
    control: tuple[np.ndarray, np.ndarray],
    reducer: Reducer = pooled,
    *,
    n_images: int,
    rounds: int = DEFAULT_ROUNDS,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> MetricValue:
    """``reducer(treatment) - reducer(control)`` with a percentile interval from resampling prompts
    *jointly* (a paired bootstrap).

    ``treatment`` and ``control`` are ``(num, den)`` pairs, prompts × columns, with the same prompt
    on the same row (both arms generated every prompt). Why paired: the arms share the prompts'
    difficulty, so drawing the same prompts for both removes that shared variance from the
    difference; two independent intervals would overstate its uncertainty. Rows without a positive
    denominator in either arm are dropped (the metric says nothing about them). It is
    :func:`contrast_bootstrap` with weights ``(1, -1)``.
    """
    return contrast_bootstrap(
        [treatment, control], [1.0, -1.0], reducer, n_images=n_images, rounds=rounds, seed=seed, level=level
    )


def contrast_bootstrap(
    arms: Sequence[tuple[np.ndarray, np.ndarray]],
    weights: Sequence[float],
    reducer: Reducer = pooled,
    *,
    n_images: int,
    rounds: int = DEFAULT_ROUNDS,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> MetricValue:
    """``sum(w * reducer(arm))`` over arms with a percentile interval from resampling prompts jointly.

    Why beyond a difference: a two-by-two design (two caption mixes under two model designs) asks
    whether one design changes the *difference* between the mixes, the interaction
    ``(a - b) - (c - d)``, weights ``(1, -1, -1, 1)``. Its interval must come from one paired
    resample of all four arms, as a difference's does from two; subtracting two differences' own
    intervals would ignore that they share prompts. Every arm is a ``(num, den)`` pair, prompts ×
    columns, same prompt on the same row; rows without a positive denominator in any arm are dropped.
    """
    if len(arms) != len(weights) or not arms:
        raise ValueError(f"{len(arms)} arms need as many weights, got {len(weights)}")
    pairs = [tuple(np.atleast_2d(np.asarray(a, dtype=float)) for a in arm) for arm in arms]
    shapes = {a.shape for pair in pairs for a in pair}
    if len(shapes) != 1:
        raise ValueError(f"every arm must have the same prompts × columns, got shapes {sorted(shapes)}")
    keep = np.logical_and.reduce([den.sum(axis=1) > 0 for _, den in pairs])
    pairs = [(num[keep], den[keep]) for num, den in pairs]
    n_prompts = int(keep.sum())
    if n_prompts == 0:
        return MetricValue(math.nan, math.nan, math.nan, 0, n_prompts=0)

    def contrast(w: np.ndarray) -> np.ndarray:
        return sum(float(c) * reducer(w @ num, w @ den) for c, (num, den) in zip(weights, pairs, strict=True))

    value = float(contrast(np.ones((1, n_prompts)))[0])
    if n_prompts == 1:
        return MetricValue(value, value, value, n_images, n_prompts=1)

    low, high = _prompt_bootstrap(n_prompts, contrast, rounds=rounds, seed=seed, level=level)
    return MetricValue(value, low, high, n_images, n_prompts=n_prompts)
