"""Success rates of absolute verdicts (faithful or not), with cluster-bootstrap intervals.

A *verdict* is one annotator's yes/no on one image. The unit whose rate is reported is the
image (an *item*): its score is the share of its annotators who said yes (1 or 0 with one
annotator), and a system's success rate is the mean score of its items, so an item judged by
five annotators weighs as much as one judged by two — what "% of generations judged
successful" (RECAP's human evaluation) means, and stable while a campaign is still filling up.

Intervals resample *prompts* (a cluster bootstrap, as :mod:`backend.stats.bradley_terry`
explains for ratings): every system's image of one prompt shares the prompt's difficulty, so
the items of a prompt are not independent, and the honest unit is the prompt. Each round draws
the prompts with replacement; a drawn prompt brings all of its items, of every system. Rates
in a round are ratios of sums, ``(multiplicity @ score sums) / (multiplicity @ item counts)``,
so the whole bootstrap is two matrix products, never a loop over items.

The relative improvement RECAP reports, ``(rate_a - rate_b) / rate_b`` against a baseline
``b``, takes its interval from the *same* rounds (the two rates move together when a hard
prompt is drawn twice, which a ratio of two separate intervals would ignore). A round in which
the baseline's rate is 0 has no ratio; such rounds are left out and counted (``undefined``).
Intervals are percentile intervals (the ``(1-level)/2`` and ``(1+level)/2`` quantiles).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

RATE_COLUMNS = ["system", "rate", "lower", "upper", "items", "prompts"]
IMPROVEMENT_COLUMNS = [
    "system",
    "baseline",
    "relative",
    "lower",
    "upper",
    "difference",
    "difference_lower",
    "difference_upper",
    "undefined",
]


class RateBootstrap:
    """Point rates and bootstrap rounds of per-system success rates (see the module docstring).

    ``items`` needs columns ``system``, ``cluster`` (the prompt) and ``score`` in [0, 1].
    """

    def __init__(
        self, items: pd.DataFrame, rounds: int = 1000, seed: int = 0, systems: list[str] | None = None
    ) -> None:
        missing = [c for c in ("system", "cluster", "score") if c not in items.columns]
        if missing:
            raise ValueError(f"success rates need column(s) {missing}; got {list(items.columns)}")
        if rounds < 1:
            raise ValueError(f"bootstrap rounds must be at least 1, not {rounds}")
        scores = items["score"].astype(float)
        if ((scores < 0) | (scores > 1) | scores.isna()).any():
            raise ValueError("item scores must lie in [0, 1]")
        self.systems = list(systems) if systems is not None else sorted(items["system"].astype(str).unique())
        self.rounds, self.seed = rounds, seed
        clusters = sorted(items["cluster"].astype(str).unique())
        s_index = {s: i for i, s in enumerate(self.systems)}
        c_index = {c: i for i, c in enumerate(clusters)}
        known = items["system"].astype(str).isin(s_index)
        rows = items[known]
        ci = rows["cluster"].astype(str).map(c_index).to_numpy(dtype=np.int64)
        si = rows["system"].astype(str).map(s_index).to_numpy(dtype=np.int64)
        shape = (len(clusters), len(self.systems))
        self.score_sums = np.zeros(shape)
        self.counts = np.zeros(shape)
        np.add.at(self.score_sums, (ci, si), scores[known].to_numpy())
        np.add.at(self.counts, (ci, si), 1.0)
        self.n_clusters = len(clusters)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.point = self.score_sums.sum(axis=0) / self.counts.sum(axis=0)
        if self.n_clusters:
            rng = np.random.default_rng(seed)
            drawn = rng.multinomial(
                self.n_clusters, np.full(self.n_clusters, 1 / self.n_clusters), size=rounds
            )
            with np.errstate(divide="ignore", invalid="ignore"):
                self.samples = (drawn @ self.score_sums) / (drawn @ self.counts)  # rounds x systems
        else:
            self.samples = np.full((rounds, len(self.systems)), np.nan)

    def table(self, level: float = 0.95) -> pd.DataFrame:
        """One row per system: rate, its interval, the items and prompts behind it."""
        lower, upper = _quantiles(self.samples, level)
        return pd.DataFrame(
            {
                "system": self.systems,
                "rate": self.point,
                "lower": lower,
                "upper": upper,
                "items": self.counts.sum(axis=0).astype(np.int64),
                "prompts": (self.counts > 0).sum(axis=0).astype(np.int64),
            }
        )[RATE_COLUMNS]

    def improvements(self, baseline: str, level: float = 0.95) -> pd.DataFrame:
        """Every other system against ``baseline``: relative improvement and difference, with intervals."""
        if baseline not in self.systems:
            raise ValueError(f"baseline {baseline!r} is not one of the systems {self.systems}")
        b = self.systems.index(baseline)
        rows = []
        for i, name in enumerate(self.systems):
            if i == b:
                continue
            diff = self.samples[:, i] - self.samples[:, b]
            with np.errstate(divide="ignore", invalid="ignore"):
                rel = diff / self.samples[:, b]
            defined = np.isfinite(rel)
            point_b = self.point[b]
            relative = (self.point[i] - point_b) / point_b if point_b > 0 else math.nan
            lo, hi = _quantiles(rel[defined][:, None], level) if defined.any() else ([math.nan], [math.nan])
            d_lo, d_hi = _quantiles(diff[:, None], level)
            rows.append(
                {
                    "system": name,
                    "baseline": baseline,
                    "relative": relative,
                    "lower": float(lo[0]),
                    "upper": float(hi[0]),
                    "difference": self.point[i] - point_b,
                    "difference_lower": float(d_lo[0]),
                    "difference_upper": float(d_hi[0]),
                    "undefined": int((~defined).sum()),
                }
            )
        return pd.DataFrame(rows, columns=IMPROVEMENT_COLUMNS)


def _quantiles(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval per column, ignoring rounds where the column is undefined (NaN)."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, not {level}")
    lower = np.full(samples.shape[1], np.nan)
    upper = np.full(samples.shape[1], np.nan)
    for j in range(samples.shape[1]):
        col = samples[:, j]
        col = col[np.isfinite(col)]
        if col.size:
            lower[j], upper[j] = np.quantile(col, [(1 - level) / 2, (1 + level) / 2])
    return lower, upper
