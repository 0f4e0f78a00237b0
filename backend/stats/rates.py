"""Win rates with Wilson intervals, per-system vote counts and the left-side (position) bias.

These are the model-free companions of the Bradley–Terry ratings: a win-rate matrix shows *who beat
whom* directly (and exposes non-transitive results the BT model would average away), and the
left-bias estimate checks the assumption, built into the ratings, that the side a system is shown
on does not matter.

Ties and "both bad" count half a win for each side, as in the ratings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from backend.stats._votes import BOTH_BAD, LEFT_SCORE, TIE, A, B, normalize_votes, systems_of

WIN_RATE_COLUMNS = ["system", "opponent", "wins", "losses", "ties", "n", "rate", "lower", "upper"]
COUNT_COLUMNS = ["system", "wins", "losses", "ties", "both_bad", "n"]


def wilson_interval(k: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for ``k`` successes in ``n`` trials (``k`` may be fractional: ½ per tie).

    Chosen over the normal (Wald) interval because it stays inside [0, 1] and keeps close to its
    nominal coverage for small ``n`` and rates near 0 or 1 — the usual case early in a campaign.
    ``n == 0`` gives ``(nan, nan)``: nothing is known yet. Also works elementwise on numpy arrays.
    """
    k_arr = np.asarray(k, dtype=float)
    n_arr = np.asarray(n, dtype=float)
    if np.any(n_arr < 0) or np.any(k_arr < 0) or np.any(k_arr > n_arr):
        raise ValueError(f"wilson_interval needs 0 <= k <= n, got k={k!r}, n={n!r}")
    if not z > 0:
        raise ValueError(f"z must be positive, got {z!r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k_arr / n_arr
        denom = 1.0 + z * z / n_arr
        centre = (p + z * z / (2.0 * n_arr)) / denom
        half = z * np.sqrt(p * (1.0 - p) / n_arr + z * z / (4.0 * n_arr * n_arr)) / denom
        lower = np.where(n_arr > 0, np.clip(centre - half, 0.0, 1.0), np.nan)
        upper = np.where(n_arr > 0, np.clip(centre + half, 0.0, 1.0), np.nan)
    if lower.ndim == 0:
        return float(lower), float(upper)
    return lower, upper  # type: ignore[return-value]


def _both_orientations(votes: pd.DataFrame) -> pd.DataFrame:
    """Each vote twice: once from the left system's view, once from the right's (score = 1 - left)."""
    left = pd.DataFrame(
        {"system": votes["model_a"], "opponent": votes["model_b"], "score": votes["outcome"].map(LEFT_SCORE)}
    )
    right = pd.DataFrame(
        {"system": votes["model_b"], "opponent": votes["model_a"], "score": 1.0 - left["score"]}
    )
    both = pd.concat([left, right], ignore_index=True)
    outcome = pd.concat([votes["outcome"], votes["outcome"]], ignore_index=True)
    both["win"] = both["score"] == 1.0
    both["loss"] = both["score"] == 0.0
    both["tie"] = outcome == TIE
    both["both_bad"] = outcome == BOTH_BAD
    return both


def system_counts(votes: pd.DataFrame) -> pd.DataFrame:
    """Per system: ``wins, losses, ties, both_bad, n`` over all its votes, best win share first."""
    clean = normalize_votes(votes, "system_counts")
    if clean.empty:
        return pd.DataFrame({c: pd.Series(dtype=object if c == "system" else "int64") for c in COUNT_COLUMNS})
    both = _both_orientations(clean)
    g = both.groupby("system", sort=True)
    out = pd.DataFrame(
        {
            "wins": g["win"].sum(),
            "losses": g["loss"].sum(),
            "ties": g["tie"].sum(),
            "both_bad": g["both_bad"].sum(),
            "n": g.size(),
        }
    ).astype("int64")
    out = out.reset_index()
    return out[COUNT_COLUMNS]


@dataclass(frozen=True)
class WinRateMatrix:
    """Win rate of the row system over the column system (ties ½), with Wilson bounds and counts.

    ``rate``, ``lower``, ``upper`` and ``n`` are square DataFrames indexed by system (row = system,
    column = opponent; NaN where the two never met, diagonal NaN). ``table`` is the same as a tidy
    long table with columns ``system, opponent, wins, losses, ties, n, rate, lower, upper`` (``ties``
    includes "both bad"), one row per ordered pair that met — the form to serialise.
    """

    rate: pd.DataFrame
    lower: pd.DataFrame
    upper: pd.DataFrame
    n: pd.DataFrame
    table: pd.DataFrame


def win_rate_matrix(votes: pd.DataFrame, z: float = 1.96) -> WinRateMatrix:
    """Head-to-head win rates pooled over both display orientations (see :class:`WinRateMatrix`)."""
    clean = normalize_votes(votes, "win_rate_matrix")
    systems = systems_of(clean)
    if clean.empty:
        table = pd.DataFrame(
            {c: pd.Series(dtype=object if c in ("system", "opponent") else float) for c in WIN_RATE_COLUMNS}
        )
    else:
        both = _both_orientations(clean)
        g = both.groupby(["system", "opponent"], sort=True)
        table = pd.DataFrame(
            {
                "wins": g["win"].sum().astype("int64"),
                "losses": g["loss"].sum().astype("int64"),
                "ties": (g["tie"].sum() + g["both_bad"].sum()).astype("int64"),
                "n": g.size().astype("int64"),
                "score": g["score"].sum(),
            }
        ).reset_index()
        table["rate"] = table["score"] / table["n"]
        lower, upper = wilson_interval(table["score"].to_numpy(), table["n"].to_numpy(), z)
        table["lower"] = lower
        table["upper"] = upper
        table = table[WIN_RATE_COLUMNS]

    def square(col: str) -> pd.DataFrame:
        if table.empty:
            return pd.DataFrame(
                index=pd.Index(systems, name="system"),
                columns=pd.Index(systems, name="opponent"),
                dtype=float,
            )
        m = table.pivot(index="system", columns="opponent", values=col).astype(float)
        return m.reindex(index=systems, columns=systems)

    return WinRateMatrix(
        rate=square("rate"), lower=square("lower"), upper=square("upper"), n=square("n"), table=table
    )


@dataclass(frozen=True)
class LeftBias:
    """Share of decisive votes (``a`` or ``b``) won by the system shown on the LEFT.

    ``share`` 0.5 means no position effect. ``lower``/``upper``: Wilson interval; ``p_value``: exact
    two-sided binomial test of share = 0.5 (``scipy.stats.binomtest``). Ties and "both bad" say
    nothing about a side preference, so they are left out (counted in ``n_undecided``). NaN fields
    when there is no decisive vote. Because sides are randomised per ticket, a share away from 0.5
    is position bias of the annotators (or a broken randomiser), not a quality difference.
    """

    left_wins: int
    decisive: int
    n_undecided: int
    share: float
    lower: float
    upper: float
    p_value: float

    def to_dict(self) -> dict[str, float | int]:
        return {
            "left_wins": self.left_wins,
            "decisive": self.decisive,
            "n_undecided": self.n_undecided,
            "share": self.share,
            "lower": self.lower,
            "upper": self.upper,
            "p_value": self.p_value,
        }


def left_bias(votes: pd.DataFrame, z: float = 1.96) -> LeftBias:
    """Estimate the left-side bias of a set of votes (see :class:`LeftBias`)."""
    clean = normalize_votes(votes, "left_bias")
    left_wins = int((clean["outcome"] == A).sum()) if not clean.empty else 0
    right_wins = int((clean["outcome"] == B).sum()) if not clean.empty else 0
    decisive = left_wins + right_wins
    undecided = len(clean) - decisive
    if decisive == 0:
        return LeftBias(0, 0, undecided, math.nan, math.nan, math.nan, math.nan)
    lower, upper = wilson_interval(left_wins, decisive, z)
    p_value = float(binomtest(left_wins, decisive, 0.5, alternative="two-sided").pvalue)
    return LeftBias(left_wins, decisive, undecided, left_wins / decisive, lower, upper, p_value)
