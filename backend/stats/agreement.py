"""Annotator agreement and annotator quality checks for pairwise votes.

**Canonical label.** "left" when system X was on the left and "right" when X was on the right are the
same judgement, so before comparing annotators each vote becomes an orientation-free label relative
to a fixed order of the pair's two systems (sorted by name): ``"first"`` or ``"second"`` for the
winner, ``"tie"`` or ``"both_bad"``. Why not the winner's name: an item can only ever be won by its
own two systems, but κ and α take chance agreement from label frequencies pooled over all items, so
with k systems chance would look like ~1/k instead of ~1/2 and coin-flipping annotators would seem
to agree (κ ≈ 0.44 with 8 systems). An *item* is one ``(pair_id, criterion)``: the
same two outputs judged on the same question. Without a ``criterion`` column all votes are taken as
one criterion.

**Which votes count.** Agreement uses first judgements only: rows with ``is_repeat`` true (the planned
swapped-order repeats) are left out, because they would count one annotator twice on an item; if an
annotator still has several rows on one item, the first row (input order) is used.

Measures (from maintained packages, per RULES.md, except the per-pair κ loop noted below):

- Cohen's κ per annotator pair over the items both judged, with that item count and the raw
  agreement share beside it: the coefficient of ``sklearn.metrics.cohen_kappa_score`` (the tests
  compare the two), computed for all pairs from one table of label codes (:func:`cohen_kappa`),
  since one sklearn call per pair made a 50-annotator campaign's results take seconds.
- Fleiss' κ — ``statsmodels.stats.inter_rater.aggregate_raters`` + ``fleiss_kappa``. Fleiss' κ needs
  the same number of ratings on every item, so it uses the items judged by the most common number
  ``m >= 2`` of annotators (ties: the larger ``m``); items with any other count are excluded and
  counted in ``n_items_excluded``. Krippendorff's α below has no such restriction.
- Krippendorff's α, nominal — ``krippendorff.alpha`` on an annotators × items matrix with NaN where an
  annotator did not judge an item; it uses every item with at least two judgements.

A coefficient is NaN when it is undefined: no shared items, or a single label used throughout
(chance agreement is then 1, so κ = 0/0 even when everyone agreed).

Quality checks: :func:`swap_consistency` (same verdict on the planned repeat, after un-swapping)
and :func:`gold_accuracy` (verdict equals the known answer of a gold pair), per annotator, with
Wilson intervals.

Labels that are already orientation-free — the yes/no verdicts on single images of a verdict
campaign — go through :func:`label_agreement` (the same three measures on an ``item, annotator,
label`` table) and :func:`retest_consistency` (same label when an item is asked again).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from itertools import combinations

import krippendorff
import numpy as np
import pandas as pd
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

from backend.stats._votes import (
    BOTH_BAD,
    OUTCOME_SYNONYMS,
    TIE,
    VoteDataError,
    describe_rows,
    normalize_votes,
    winner_label,
)
from backend.stats.rates import wilson_interval

LABEL_COLUMNS = ["pair_id", "criterion", "annotator", "label"]
COHEN_COLUMNS = ["annotator_1", "annotator_2", "n_items", "agreement", "kappa"]
SWAP_COLUMNS = ["annotator", "n_repeats", "n_swapped", "consistent", "rate", "lower", "upper"]
GOLD_COLUMNS = ["annotator", "n_gold", "correct", "accuracy", "lower", "upper"]


def _flag(votes: pd.DataFrame, col: str, what: str) -> pd.Series:
    """A boolean column (bool, 0/1, "true"/"false"); missing values are refused with their rows."""
    values = votes[col]
    if values.dtype == bool:
        return values
    text = values.astype("string").str.strip().str.lower()
    mapped = text.map({"true": True, "1": True, "false": False, "0": False, "1.0": True, "0.0": False})
    bad = mapped.isna()
    if bad.any():
        raise VoteDataError(
            f"{what}: {col} must be true/false, got {sorted({repr(v) for v in values[bad]})[:5]} "
            f"in row(s) {describe_rows(votes.index[bad])}"
        )
    return mapped.astype(bool)


def _prepared(votes: pd.DataFrame, what: str, extra: tuple[str, ...]) -> pd.DataFrame:
    """Normalised votes with a ``label`` column and a ``criterion`` column (``""`` if absent)."""
    clean = normalize_votes(votes, what, extra=extra)
    if "criterion" not in clean.columns:
        clean["criterion"] = ""
    if clean.empty:
        clean["label"] = pd.Series(dtype=object)
        return clean
    blank = clean["annotator"].isna() if "annotator" in clean.columns else None
    if blank is not None and blank.any():
        raise VoteDataError(f"{what}: annotator is empty in row(s) {describe_rows(clean.index[blank])}")
    clean["label"] = winner_label(clean)
    return clean


def canonical_labels(votes: pd.DataFrame) -> pd.DataFrame:
    """One orientation-free label per (pair_id, criterion, annotator), first judgements only.

    Needs ``model_a, model_b, outcome, annotator, pair_id``; uses ``criterion`` and ``is_repeat``
    when present. Returns columns ``pair_id, criterion, annotator, label``.
    """
    clean = _prepared(votes, "agreement", ("annotator", "pair_id"))
    if clean.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in LABEL_COLUMNS})
    if "is_repeat" in clean.columns:
        clean = clean[~_flag(clean, "is_repeat", "agreement")]
    first = clean.drop_duplicates(["pair_id", "criterion", "annotator"], keep="first").copy()
    first["label"] = _pair_order_label(first)
    return first[LABEL_COLUMNS].reset_index(drop=True)


def _pair_order_label(clean: pd.DataFrame) -> pd.Series:
    """``"first"``/``"second"`` for the winner by the sorted order of the pair's systems; ties kept."""
    label = clean["label"].astype(object).copy()
    decisive = ~label.isin(["tie", "both_bad"])
    first_system = clean[["model_a", "model_b"]].min(axis=1)
    label[decisive] = np.where(label[decisive] == first_system[decisive], "first", "second")
    return label


def _quiet(fn, *args, **kwargs) -> float:
    """Call a coefficient; NaN instead of warnings/errors when it is undefined (0/0)."""
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore")
        try:
            value = float(fn(*args, **kwargs))
        except (ValueError, ZeroDivisionError):
            return math.nan
    return value if math.isfinite(value) else math.nan


PAIR_ITEM = ("pair_id", "criterion")  # what one pairwise label is about


def cohen_kappa_pairs(votes: pd.DataFrame) -> pd.DataFrame:
    """Cohen's κ for every pair of annotators over the items both judged.

    Columns ``annotator_1, annotator_2, n_items, agreement, kappa`` (``agreement`` = share of shared
    items with the same label; κ NaN when undefined — see the module docstring). Pairs that share no
    item are listed with ``n_items`` 0, so a sparse design is visible rather than silently dropped.
    """
    return _cohen(canonical_labels(votes), PAIR_ITEM)


def _cohen(labels: pd.DataFrame, item: tuple[str, ...]) -> pd.DataFrame:
    rows: list[dict[str, object]] = []
    if labels.empty:
        return pd.DataFrame(rows, columns=COHEN_COLUMNS)
    wide = labels.pivot(index=list(item), columns="annotator", values="label")
    annotators = sorted(wide.columns, key=str)
    # integer codes, -1 where an annotator did not judge the item: one pass over the table
    # instead of a DataFrame selection per pair (50 annotators are 1,225 pairs)
    categories = sorted({str(v) for v in labels["label"]})
    code_of = {c: i for i, c in enumerate(categories)}
    codes = np.full((len(annotators), len(wide)), -1, dtype=np.int64)
    for row, annotator in enumerate(annotators):
        column = wide[annotator]
        present = column.notna().to_numpy()
        codes[row, present] = [code_of[str(v)] for v in column[present]]
    for (i1, a1), (i2, a2) in combinations(enumerate(annotators), 2):
        both = (codes[i1] >= 0) & (codes[i2] >= 0)
        n = int(both.sum())
        kappa, agreement = (
            cohen_kappa(codes[i1][both], codes[i2][both], len(categories)) if n else (math.nan, math.nan)
        )
        rows.append(
            {"annotator_1": a1, "annotator_2": a2, "n_items": n, "agreement": agreement, "kappa": kappa}
        )
    return pd.DataFrame(rows, columns=COHEN_COLUMNS)


def cohen_kappa(y1: np.ndarray, y2: np.ndarray, n_labels: int) -> tuple[float, float]:
    """(Cohen's κ, raw agreement) of two label-code vectors of equal length > 0.

    The unweighted κ of ``sklearn.metrics.cohen_kappa_score``, (p_o − p_e) / (1 − p_e), from the
    confusion matrix in exact integer arithmetic; NaN when chance agreement is 1 (a single label
    used throughout), as sklearn's 0/0. Computed here rather than by one sklearn call per pair
    because sklearn's input validation costs ~3 ms a call: 1,225 annotator pairs took 8 s of a
    campaign's results. ``tests/test_arena_stats.py`` checks it equals sklearn's on random labels.
    """
    n = len(y1)
    confusion = np.bincount(y1 * n_labels + y2, minlength=n_labels * n_labels).reshape(n_labels, n_labels)
    observed = int(np.trace(confusion))
    chance = int(confusion.sum(axis=1) @ confusion.sum(axis=0))  # n² · p_e
    denominator = n * n - chance
    kappa = (n * observed - chance) / denominator if denominator else math.nan
    return kappa, observed / n


@dataclass(frozen=True)
class FleissResult:
    """Fleiss' κ over the ``n_items`` items judged by exactly ``raters_per_item`` annotators."""

    kappa: float
    n_items: int
    raters_per_item: int
    n_items_excluded: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def fleiss(votes: pd.DataFrame) -> FleissResult:
    """Fleiss' κ; items whose annotator count differs from the most common one are excluded."""
    return _fleiss(canonical_labels(votes), PAIR_ITEM)


def _fleiss(labels: pd.DataFrame, item: tuple[str, ...]) -> FleissResult:
    if labels.empty:
        return FleissResult(math.nan, 0, 0, 0)
    per_item = labels.groupby(list(item), sort=True)["label"].agg(list)
    sizes = per_item.map(len)
    multi = sizes[sizes >= 2]
    if multi.empty:
        return FleissResult(math.nan, 0, 0, len(per_item))
    freq = multi.value_counts()
    m = int(max(freq[freq == freq.max()].index))
    used = per_item[sizes == m]
    codes = {lab: i for i, lab in enumerate(sorted({str(x) for x in labels["label"]}))}
    data = np.array([[codes[str(x)] for x in item] for item in used], dtype=int)
    table, _ = aggregate_raters(data, n_cat=len(codes))
    kappa = _quiet(fleiss_kappa, table, method="fleiss")
    return FleissResult(kappa, len(used), m, len(per_item) - len(used))


@dataclass(frozen=True)
class AlphaResult:
    """Krippendorff's α (nominal) over ``n_items`` items with at least two judgements."""

    alpha: float
    n_items: int
    n_annotators: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def krippendorff_alpha(votes: pd.DataFrame) -> AlphaResult:
    """Krippendorff's α, nominal level, from the annotators × items matrix (NaN = not judged)."""
    return _alpha(canonical_labels(votes), PAIR_ITEM)


def _alpha(labels: pd.DataFrame, item: tuple[str, ...]) -> AlphaResult:
    if labels.empty:
        return AlphaResult(math.nan, 0, 0)
    codes = {lab: float(i) for i, lab in enumerate(sorted({str(x) for x in labels["label"]}))}
    coded = labels.assign(code=labels["label"].astype(str).map(codes))
    wide = coded.pivot(index="annotator", columns=list(item), values="code")
    matrix = wide.to_numpy(dtype=float)
    pairable = int((np.sum(~np.isnan(matrix), axis=0) >= 2).sum())
    if pairable == 0:
        return AlphaResult(math.nan, 0, matrix.shape[0])
    alpha = _quiet(
        krippendorff.alpha,
        reliability_data=matrix,
        value_domain=sorted(codes.values()),
        level_of_measurement="nominal",
    )
    return AlphaResult(alpha, pairable, matrix.shape[0])


@dataclass(frozen=True)
class Agreement:
    """All agreement measures of one set of votes (e.g. one criterion)."""

    cohen: pd.DataFrame
    fleiss: FleissResult
    alpha: AlphaResult

    def to_dict(self) -> dict[str, object]:
        return {
            "cohen": self.cohen.to_dict(orient="records"),
            "fleiss": self.fleiss.to_dict(),
            "alpha": self.alpha.to_dict(),
        }


def agreement(votes: pd.DataFrame) -> Agreement:
    """Cohen's κ per pair, Fleiss' κ and Krippendorff's α of the same votes."""
    return Agreement(cohen_kappa_pairs(votes), fleiss(votes), krippendorff_alpha(votes))


def _first_labels(labels: pd.DataFrame, item: tuple[str, ...], what: str) -> pd.DataFrame:
    """``labels`` checked, first label per (item, annotator) in input order, repeats left out."""
    need = [*item, "annotator", "label"]
    missing = [c for c in need if c not in labels.columns]
    if missing:
        raise VoteDataError(
            f"{what}: the label table lacks column(s) {missing}; it has {list(labels.columns)}"
        )
    clean = labels.copy()
    if clean.empty:
        return clean[need]
    blank = clean["annotator"].isna() | clean["label"].isna()
    if blank.any():
        raise VoteDataError(
            f"{what}: annotator or label is empty in row(s) {describe_rows(clean.index[blank])}"
        )
    if "is_repeat" in clean.columns:
        clean = clean[~_flag(clean, "is_repeat", what)]
    return clean.drop_duplicates([*item, "annotator"], keep="first")[need].reset_index(drop=True)


def label_agreement(labels: pd.DataFrame, item: tuple[str, ...] = ("item",)) -> Agreement:
    """Cohen's κ per pair, Fleiss' κ and Krippendorff's α of orientation-free labels.

    ``labels`` has the ``item`` column(s), ``annotator`` and ``label`` (any hashable verdict, e.g.
    ``"yes"``/``"no"``), optionally ``is_repeat`` (those rows are left out); an annotator's first
    label of an item counts. Cohen's table lists its ``n_items`` as the items both annotators judged.
    """
    first = _first_labels(labels, tuple(item), "label_agreement")
    return Agreement(_cohen(first, tuple(item)), _fleiss(first, tuple(item)), _alpha(first, tuple(item)))


RETEST_COLUMNS = ["annotator", "n_repeats", "consistent", "rate", "lower", "upper"]


def retest_consistency(labels: pd.DataFrame, item: tuple[str, ...] = ("item",)) -> pd.DataFrame:
    """Per annotator: share of repeated items (``is_repeat`` true) given their first label again.

    The test-retest check of orientation-free labels (verdicts), as :func:`swap_consistency` is for
    pairs. Columns ``annotator, n_repeats, consistent, rate, lower, upper`` (Wilson interval).
    """
    what = "retest_consistency"
    key = [*item, "annotator"]
    if "is_repeat" not in labels.columns:
        raise VoteDataError(f"{what}: the label table lacks column 'is_repeat'")
    first = _first_labels(labels, tuple(item), what)
    if labels.empty or first.empty:
        return pd.DataFrame(columns=RETEST_COLUMNS)
    again = labels[_flag(labels, "is_repeat", what)][[*key, "label"]]
    matched = again.merge(first, on=key, suffixes=("", "_first"))
    if matched.empty:
        return pd.DataFrame(columns=RETEST_COLUMNS)
    matched["same"] = matched["label"].astype(str) == matched["label_first"].astype(str)
    out = _per_annotator(matched, "same", "n_repeats", "consistent", "rate")
    return out[RETEST_COLUMNS]


def _per_annotator(frame: pd.DataFrame, hit: str, n_name: str, k_name: str, rate_name: str) -> pd.DataFrame:
    """Count, hits, share and its Wilson interval per annotator."""
    g = frame.groupby("annotator", sort=True)
    out = pd.DataFrame({n_name: g.size(), k_name: g[hit].sum()}).astype("int64").reset_index()
    out[rate_name] = out[k_name] / out[n_name]
    lower, upper = wilson_interval(out[k_name].to_numpy(), out[n_name].to_numpy())
    out["lower"] = lower
    out["upper"] = upper
    return out


def swap_consistency(votes: pd.DataFrame) -> pd.DataFrame:
    """Per annotator: share of planned repeats given the same verdict as the first judgement.

    Needs ``model_a, model_b, outcome, annotator, pair_id, is_repeat`` (``criterion`` if present).
    A repeat (``is_repeat`` true) is matched with the same annotator's first non-repeat judgement of
    the same (pair_id, criterion); verdicts are compared as canonical labels, i.e. after un-swapping
    the sides, so "left" then "right" on a swapped repeat is consistent. ``n_swapped`` counts the
    repeats actually shown the other way round; unswapped ones still count (a plain test-retest).
    Repeats without a first judgement are ignored. Columns: ``annotator, n_repeats, n_swapped,
    consistent, rate, lower, upper`` (Wilson interval); annotators without repeats are not listed.
    """
    clean = _prepared(votes, "swap_consistency", ("annotator", "pair_id", "is_repeat"))
    if clean.empty:
        return pd.DataFrame(columns=SWAP_COLUMNS)
    repeat = _flag(clean, "is_repeat", "swap_consistency")
    key = ["annotator", "pair_id", "criterion"]
    first = clean[~repeat].drop_duplicates(key, keep="first")[[*key, "label", "model_a"]]
    again = clean[repeat][[*key, "label", "model_a"]]
    matched = again.merge(first, on=key, suffixes=("", "_first"))
    if matched.empty:
        return pd.DataFrame(columns=SWAP_COLUMNS)
    matched["same"] = matched["label"].astype(str) == matched["label_first"].astype(str)
    matched["swapped"] = matched["model_a"] != matched["model_a_first"]
    out = _per_annotator(matched, "same", "n_repeats", "consistent", "rate")
    out["n_swapped"] = matched.groupby("annotator", sort=True)["swapped"].sum().astype("int64").to_numpy()
    return out[SWAP_COLUMNS]


def gold_accuracy(votes: pd.DataFrame) -> pd.DataFrame:
    """Per annotator: share of gold pairs answered as the known answer.

    Needs ``model_a, model_b, outcome, annotator, is_gold, gold_answer``. ``gold_answer`` is the
    orientation-free right answer: the NAME of the system that should win, or ``tie``/``both_bad``.
    ``"a"``/``"b"``/``"left"``/``"right"`` are refused (unless they are a system name in that row):
    sides are randomised per ticket, so a side letter does not say which system is right — translate
    ``EvalPair.gold_answer`` to the system of that pair's a/b image first. Every gold judgement counts,
    repeats included. Columns: ``annotator, n_gold, correct, accuracy, lower, upper``.
    """
    what = "gold_accuracy"
    clean = _prepared(votes, what, ("annotator", "is_gold", "gold_answer"))
    if clean.empty:
        return pd.DataFrame(columns=GOLD_COLUMNS)
    gold = clean[_flag(clean, "is_gold", what)].copy()
    if gold.empty:
        return pd.DataFrame(columns=GOLD_COLUMNS)
    answer = gold["gold_answer"]
    missing = answer.isna() | (answer.astype("string").str.strip() == "")
    if missing.any():
        raise VoteDataError(
            f"{what}: gold_answer is empty on gold row(s) {describe_rows(gold.index[missing])}"
        )
    answer = answer.astype(str).str.strip()
    is_system = (answer == gold["model_a"]) | (answer == gold["model_b"])
    lowered = answer.str.lower()
    is_neutral = lowered.isin([TIE, BOTH_BAD])
    side = ~is_system & ~is_neutral & lowered.isin(OUTCOME_SYNONYMS)
    if side.any():
        raise VoteDataError(
            f"{what}: gold_answer {sorted(set(answer[side]))} in row(s) {describe_rows(gold.index[side])} is a side, "
            "not a system; give the name of the system that should win (or tie/both_bad)"
        )
    unknown = ~is_system & ~is_neutral
    if unknown.any():
        raise VoteDataError(
            f"{what}: gold_answer in row(s) {describe_rows(gold.index[unknown])} names neither system of the row "
            f"({sorted(set(answer[unknown]))[:5]}); expected model_a, model_b, tie or both_bad"
        )
    gold["expected"] = answer.where(is_system, lowered)
    gold["correct"] = gold["label"].astype(str) == gold["expected"]
    out = _per_annotator(gold, "correct", "n_gold", "correct", "accuracy")
    return out[GOLD_COLUMNS]
