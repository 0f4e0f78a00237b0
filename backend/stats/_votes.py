"""Validation and normalisation of vote tables shared by every statistic in this package.

A *vote* is one row ``(model_a, model_b, outcome)`` where ``model_a`` is the system shown on the
LEFT and ``model_b`` the one shown on the RIGHT. ``outcome`` is one of ``"a"``, ``"b"``, ``"tie"``,
``"both_bad"``; ``"left"`` and ``"right"`` are accepted as synonyms of ``"a"`` and ``"b"`` (the
Judgment table stores ``choice`` as left/right, so a caller can pass it through unchanged).
Values are matched after stripping blanks and lower-casing.

Every function validates through :func:`normalize_votes`, so all of them reject bad input with the
same messages: the missing column, or the offending values together with their row index labels.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

A, B, TIE, BOTH_BAD = "a", "b", "tie", "both_bad"
OUTCOMES: tuple[str, ...] = (A, B, TIE, BOTH_BAD)
#: accepted spellings → canonical outcome
OUTCOME_SYNONYMS: dict[str, str] = {"a": A, "b": B, "tie": TIE, "both_bad": BOTH_BAD, "left": A, "right": B}
#: score of the LEFT system for each outcome: a tie and "both bad" count half a win each (as Chatbot
#: Arena scores "tie (bothbad)"): neither system was preferred, which is what a tie means.
LEFT_SCORE: dict[str, float] = {A: 1.0, B: 0.0, TIE: 0.5, BOTH_BAD: 0.5}

VOTE_COLUMNS: tuple[str, ...] = ("model_a", "model_b", "outcome")

_MAX_LISTED = 10


class VoteDataError(ValueError):
    """A vote table the statistics cannot use; the message says which column/rows and why."""


def describe_rows(index: Iterable[object]) -> str:
    rows = list(index)
    shown = ", ".join(repr(r) if isinstance(r, str) else str(r) for r in rows[:_MAX_LISTED])
    more = f" and {len(rows) - _MAX_LISTED} more" if len(rows) > _MAX_LISTED else ""
    return f"{shown}{more}"


def require_columns(votes: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """Raise :class:`VoteDataError` naming every column of ``columns`` that ``votes`` lacks."""
    if not isinstance(votes, pd.DataFrame):
        raise VoteDataError(f"{what}: expected a pandas DataFrame of votes, got {type(votes).__name__}")
    missing = [c for c in columns if c not in votes.columns]
    if missing:
        raise VoteDataError(
            f"{what}: the vote table lacks column(s) {missing}; it has {list(votes.columns)}. "
            f"Needed: {list(columns)}."
        )


def canonical_outcomes(values: pd.Series, what: str) -> pd.Series:
    """Map outcome spellings to ``a|b|tie|both_bad``; unknown values are named with their row index."""
    text = values.astype("string").str.strip().str.lower()
    mapped = text.map(OUTCOME_SYNONYMS)
    bad = mapped.isna()
    if bad.any():
        examples = sorted({repr(v) for v in values[bad].tolist()})[:_MAX_LISTED]
        raise VoteDataError(
            f"{what}: unknown outcome value(s) {', '.join(examples)} in row(s) {describe_rows(values.index[bad])}; "
            f"allowed: a, b, tie, both_bad (or left/right for a/b)."
        )
    return mapped.astype(object)


def normalize_votes(votes: pd.DataFrame, what: str = "votes", extra: Sequence[str] = ()) -> pd.DataFrame:
    """Validated copy of ``votes`` with canonical outcomes and system names as ``str``.

    Checks: the columns ``model_a, model_b, outcome`` (plus ``extra``) exist; no system name is
    missing/blank; a system never faces itself; every outcome is known. The index is kept, so error
    messages (and callers) can refer to the caller's row labels.
    """
    require_columns(votes, (*VOTE_COLUMNS, *extra), what)
    out = votes.copy()
    if out.empty:
        return out
    for col in ("model_a", "model_b"):
        names = out[col]
        blank = names.isna() | (names.astype("string").str.strip() == "")
        if blank.any():
            raise VoteDataError(f"{what}: {col} is empty in row(s) {describe_rows(out.index[blank])}")
        out[col] = names.astype(str)
    same = out["model_a"] == out["model_b"]
    if same.any():
        raise VoteDataError(
            f"{what}: model_a and model_b are the same system in row(s) {describe_rows(out.index[same])}; "
            "a vote must compare two different systems"
        )
    out["outcome"] = canonical_outcomes(out["outcome"], what)
    return out


def systems_of(votes: pd.DataFrame) -> list[str]:
    """Sorted system names appearing on either side (deterministic order for matrices)."""
    if votes.empty:
        return []
    return sorted(set(votes["model_a"]).union(votes["model_b"]))


def aggregate_votes(votes: pd.DataFrame) -> pd.DataFrame:
    """Unique ``(model_a, model_b, outcome)`` rows with their ``count`` (input already normalised).

    The Bradley–Terry likelihood only depends on these counts, so fitting (and bootstrapping, by a
    multinomial draw over the rows) costs the number of distinct rows, not the number of votes.
    """
    if votes.empty:
        return pd.DataFrame(
            {"model_a": [], "model_b": [], "outcome": [], "count": np.array([], dtype=np.int64)}
        )
    counts = votes.groupby(["model_a", "model_b", "outcome"], sort=True).size()
    return counts.rename("count").reset_index()


def winner_label(votes: pd.DataFrame) -> pd.Series:
    """Orientation-free verdict per row: the winning system's name, ``"tie"`` or ``"both_bad"``.

    "left" when X was on the left and "right" when X was on the right are the same judgement; this
    label makes them equal, which agreement, swap consistency and gold accuracy require.
    """
    out = votes["outcome"].copy().astype(object)
    out[votes["outcome"] == A] = votes.loc[votes["outcome"] == A, "model_a"]
    out[votes["outcome"] == B] = votes.loc[votes["outcome"] == B, "model_b"]
    return out
