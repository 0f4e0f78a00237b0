"""Statistics of pairwise human evaluation (the Arena): plain functions on pandas vote tables.

No database and no torch here: ``backend.arena`` reads the votes into a DataFrame with columns
``model_a`` (system shown LEFT), ``model_b`` (RIGHT), ``outcome`` (``a|b|tie|both_bad``, or
``left|right``) plus ``annotator, pair_id, criterion, is_repeat, is_gold, gold_answer`` where a
statistic needs them, and calls these functions. See each module's docstring for the method.
"""

from backend.stats._votes import (
    OUTCOMES,
    VoteDataError,
    aggregate_votes,
    normalize_votes,
    winner_label,
)
from backend.stats.agreement import (
    Agreement,
    AlphaResult,
    FleissResult,
    agreement,
    canonical_labels,
    cohen_kappa_pairs,
    fleiss,
    gold_accuracy,
    krippendorff_alpha,
    label_agreement,
    retest_consistency,
    swap_consistency,
)
from backend.stats.bradley_terry import (
    DEFAULT_L2,
    DisconnectedComparisonWarning,
    bootstrap_bt,
    bootstrap_samples,
    fit_bt,
    ranks_from_intervals,
    votes_to_separate,
)
from backend.stats.rates import (
    LeftBias,
    WinRateMatrix,
    left_bias,
    system_counts,
    wilson_interval,
    win_rate_matrix,
)
from backend.stats.success import RateBootstrap

__all__ = [
    "DEFAULT_L2",
    "OUTCOMES",
    "Agreement",
    "RateBootstrap",
    "AlphaResult",
    "DisconnectedComparisonWarning",
    "FleissResult",
    "LeftBias",
    "VoteDataError",
    "WinRateMatrix",
    "aggregate_votes",
    "agreement",
    "bootstrap_bt",
    "bootstrap_samples",
    "canonical_labels",
    "cohen_kappa_pairs",
    "fit_bt",
    "fleiss",
    "gold_accuracy",
    "krippendorff_alpha",
    "label_agreement",
    "left_bias",
    "normalize_votes",
    "ranks_from_intervals",
    "retest_consistency",
    "swap_consistency",
    "system_counts",
    "votes_to_separate",
    "wilson_interval",
    "win_rate_matrix",
    "winner_label",
]
