"""Arena statistics (backend/stats): Bradley–Terry with bootstrap, rates, agreement, annotator checks.

Simulated campaigns use fixed seeds, so every test is deterministic; tolerances are stated where a
simulation is compared with the truth, to show what the check could tolerate by chance.
"""

from __future__ import annotations

import math
import warnings

import krippendorff
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa
from statsmodels.stats.proportion import proportion_confint

from backend.stats import (
    DisconnectedComparisonWarning,
    VoteDataError,
    agreement,
    bootstrap_bt,
    bootstrap_samples,
    canonical_labels,
    cohen_kappa_pairs,
    fit_bt,
    fleiss,
    gold_accuracy,
    krippendorff_alpha,
    left_bias,
    ranks_from_intervals,
    swap_consistency,
    system_counts,
    votes_to_separate,
    wilson_interval,
    win_rate_matrix,
)

ELO = 400 / math.log(10)  # rating points per logit


def simulate(
    strengths: dict[str, float],
    n: int,
    seed: int,
    *,
    tie_share: float = 0.0,
    left_bonus: float = 0.0,
) -> pd.DataFrame:
    """Votes from a Bradley–Terry world: P(left wins) = sigmoid(s_left - s_right + left_bonus).

    Pairs and sides are drawn uniformly; a share ``tie_share`` of votes is a tie regardless of the
    systems (so the ½-tie fit is still centred on the truth's order).
    """
    rng = np.random.default_rng(seed)
    names = np.array(list(strengths))
    s = np.array(list(strengths.values()))
    k = len(names)
    a = rng.integers(0, k, n)
    b = (a + rng.integers(1, k, n)) % k
    p_left = 1.0 / (1.0 + np.exp(-(s[a] - s[b] + left_bonus)))
    u = rng.random(n)
    decisive = np.where(rng.random(n) < p_left, "a", "b")
    outcome = np.where(u < tie_share, "tie", decisive)
    return pd.DataFrame({"model_a": names[a], "model_b": names[b], "outcome": outcome})


def votes(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["model_a", "model_b", "outcome"])


# ---------------------------------------------------------------- Bradley–Terry


def test_fit_recovers_the_true_order_and_scale():
    truth = {"sd15": -0.8, "recap_short": 0.0, "recap_long": 0.5, "recap_mix": 1.1, "alt": -0.3}
    v = simulate(truth, 6000, seed=1)
    ratings = fit_bt(v)
    assert list(ratings) == sorted(truth, key=truth.get, reverse=True)  # best first
    assert np.mean(list(ratings.values())) == pytest.approx(1000.0)
    # gaps in logits come back on the Elo scale, within sampling noise (~0.07 logit here)
    assert ratings["recap_mix"] - ratings["sd15"] == pytest.approx(1.9 * ELO, abs=0.25 * ELO)

    table = bootstrap_bt(v, rounds=50, seed=3)
    assert list(table.columns) == ["system", "rating", "lower", "upper", "rank"]
    assert list(table["system"]) == list(ratings)
    assert (table["lower"] <= table["rating"]).all() and (table["rating"] <= table["upper"]).all()
    assert list(table["rank"]) == sorted(table["rank"]) and table["rank"].iloc[0] == 1


def test_elo_convention_ten_to_one_odds_is_400_points():
    v = votes([("A", "B", "a")] * 5000 + [("A", "B", "b")] * 500)
    r = fit_bt(v)
    assert r["A"] - r["B"] == pytest.approx(400.0, abs=1.0)  # the L2 prior shrinks by < 0.1 %
    assert r["A"] + r["B"] == pytest.approx(2000.0)


def test_bootstrap_intervals_cover_the_truth_at_about_the_nominal_rate():
    """100 simulated campaigns of 600 votes over 4 systems, 100 bootstrap rounds each.

    Tolerance: each system's coverage is a Binomial(100, 0.95) count if the intervals are right
    (sd 2.2 points); >= 87 % is ~3.6 sd below nominal, so a failure means the intervals are too
    narrow, not bad luck. The pooled rate over the 4 systems must lie in [0.90, 0.99]: +-2.2 sd even if
    the four were perfectly correlated, with room for the small under-coverage of percentile
    intervals from only 100 rounds. (Seeds are fixed, so the test is deterministic anyway.)
    """
    truth = {"A": 0.0, "B": 0.3, "C": 0.6, "D": 1.2}
    s = np.array(list(truth.values()))
    true_rating = pd.Series(1000.0 + ELO * (s - s.mean()), index=list(truth))
    hits = []
    for campaign in range(100):
        v = simulate(truth, 600, seed=1000 + campaign)
        t = bootstrap_bt(v, rounds=100, seed=campaign).set_index("system").loc[list(truth)]
        hits.append(((t["lower"] <= true_rating) & (true_rating <= t["upper"])).to_numpy())
    per_system = np.mean(hits, axis=0)
    assert per_system.min() >= 0.87, per_system
    assert 0.90 <= per_system.mean() <= 0.99, per_system


def test_bootstrap_is_seeded_and_reusable():
    v = simulate({"A": 0.0, "B": 0.4, "C": 0.8}, 900, seed=5)
    s1 = bootstrap_samples(v, rounds=30, seed=7)
    s2 = bootstrap_samples(v, rounds=30, seed=7)
    s3 = bootstrap_samples(v, rounds=30, seed=8)
    pd.testing.assert_frame_equal(s1, s2)
    assert not s1.equals(s3)
    assert s1.shape == (30, 3)
    pd.testing.assert_frame_equal(bootstrap_bt(v, rounds=30, seed=7), bootstrap_bt(v, samples=s1))


def test_joint_bootstrap_fit_equals_separate_fits():
    """All rounds are fitted in one L-BFGS-B call; each must equal its own standalone fit."""
    from backend.stats import bradley_terry as bt

    d = bt._design(simulate({"A": 0.0, "B": 0.5, "C": 1.0, "D": 1.5}, 800, seed=9, tie_share=0.1), "test")
    weights = np.random.default_rng(0).multinomial(d.n_votes, d.w / d.w.sum(), size=20).astype(float)
    joint = bt._fit_thetas(d, weights, 0.01)
    separate = np.stack([bt._fit_theta(d, w, 0.01) for w in weights])
    assert np.abs(joint - separate).max() < 1e-5  # logits; 1e-5 logit = 0.002 rating points


def test_unbeaten_system_gets_a_finite_rating_above_the_others():
    rows = [("champ", o, "a") for o in ("B", "C")] * 20 + [(o, "champ", "b") for o in ("B", "C")] * 20
    rows += [("B", "C", "a")] * 15 + [("B", "C", "b")] * 10
    r = fit_bt(votes(rows))
    assert all(math.isfinite(x) for x in r.values())
    assert list(r)[0] == "champ" and r["champ"] > r["B"] + 200
    t = bootstrap_bt(votes(rows), rounds=30, seed=0)
    assert np.isfinite(t[["rating", "lower", "upper"]].to_numpy()).all()
    assert t.set_index("system").loc["champ", "rank"] == 1


def test_ties_and_both_bad_count_half_each():
    all_ties = votes([("A", "B", "tie"), ("B", "C", "tie"), ("C", "A", "both_bad"), ("A", "C", "tie")] * 5)
    r = fit_bt(all_ties)
    assert r == pytest.approx({"A": 1000.0, "B": 1000.0, "C": 1000.0}, abs=1e-6)
    # a tie is the same evidence as "both bad", and as one win + one loss at half weight
    mixed = votes([("A", "B", "a")] * 6 + [("A", "B", "b")] * 2 + [("A", "B", "tie")] * 4)
    as_both_bad = mixed.replace({"outcome": {"tie": "both_bad"}})
    assert fit_bt(mixed) == pytest.approx(fit_bt(as_both_bad))
    split = votes([("A", "B", "a")] * 8 + [("A", "B", "b")] * 4)  # 6+2 wins, 2 ties → 2 halves
    assert fit_bt(mixed)["A"] - fit_bt(mixed)["B"] == pytest.approx(
        fit_bt(split)["A"] - fit_bt(split)["B"], rel=1e-4
    )


def test_left_right_are_synonyms_and_sides_do_not_matter_to_the_rating():
    v = votes([("A", "B", "a"), ("B", "A", "b"), ("A", "C", "tie"), ("C", "B", "a")] * 3)
    lr = v.replace({"outcome": {"a": "Left", "b": " right "}})
    assert fit_bt(lr) == pytest.approx(fit_bt(v))
    # the same judgements with sides flipped give the same ratings
    flipped = v.rename(columns={"model_a": "model_b", "model_b": "model_a"}).replace(
        {"outcome": {"a": "b", "b": "a"}}
    )
    assert fit_bt(flipped) == pytest.approx(fit_bt(v), abs=1e-6)


def test_anchor_pins_a_named_system():
    v = simulate({"base": 0.0, "x": 0.5, "y": 1.0}, 1500, seed=2)
    mean_centred = fit_bt(v)
    anchored = fit_bt(v, anchor="base")
    assert anchored["base"] == 1000.0
    assert anchored["y"] - anchored["x"] == pytest.approx(mean_centred["y"] - mean_centred["x"], abs=1e-6)
    t = bootstrap_bt(v, rounds=20, seed=0, anchor="base").set_index("system")
    assert t.loc["base", "lower"] == t.loc["base", "upper"] == 1000.0
    with pytest.raises(VoteDataError, match="anchor system 'nope'"):
        fit_bt(v, anchor="nope")


def test_ranks_from_non_overlapping_intervals():
    lower = np.array([1100.0, 1050.0, 900.0, 880.0])
    upper = np.array([1200.0, 1120.0, 1000.0, 960.0])
    # 2nd overlaps the 1st → shares rank 1; 3rd is below both; 4th overlaps the 3rd only
    assert list(ranks_from_intervals(lower, upper)) == [1, 1, 3, 3]


def test_votes_to_separate_neighbours():
    v = simulate({"A": 0.0, "B": 0.15, "C": 1.5}, 400, seed=4)
    samples = bootstrap_samples(v, rounds=100, seed=0)
    sep = votes_to_separate(v, samples=samples)
    assert list(sep["system_a"]) == ["C", "B"] and list(sep["system_b"]) == ["B", "A"]
    far, close = sep.iloc[0], sep.iloc[1]
    assert far["separated"] and far["votes_needed"] == 0
    assert not close["separated"] and isinstance(close["votes_needed"], int)
    expected = math.ceil(400 * (1.959964 * close["se_diff"] / abs(close["diff"])) ** 2 - 400)
    assert close["votes_needed"] == max(1, expected) > 0
    # a difference of exactly zero cannot be separated by more votes
    even = votes([("A", "B", "a"), ("A", "B", "b"), ("B", "A", "a"), ("B", "A", "b")] * 10)
    assert votes_to_separate(even, rounds=20)["votes_needed"].iloc[0] is None


def test_disconnected_systems_warn():
    v = votes([("A", "B", "a"), ("C", "D", "b")])
    with pytest.warns(DisconnectedComparisonWarning, match=r"\['A', 'B'\]"):
        fit_bt(v)


def test_validation_names_rows_and_columns_and_empty_input_is_empty():
    bad = pd.DataFrame(
        {"model_a": ["A", "B", "A"], "model_b": ["B", "C", "C"], "outcome": ["a", "draw", "LEFT"]},
        index=[10, 11, 12],
    )
    with pytest.raises(VoteDataError, match=r"unknown outcome value\(s\) 'draw' in row\(s\) 11"):
        fit_bt(bad)
    with pytest.raises(VoteDataError, match="lacks column"):
        fit_bt(pd.DataFrame({"model_a": ["A"], "outcome": ["a"]}))
    with pytest.raises(VoteDataError, match=r"same system in row\(s\) 0"):
        fit_bt(votes([("A", "A", "a")]))
    with pytest.raises(VoteDataError, match=r"model_b is empty in row\(s\) 1"):
        fit_bt(votes([("A", "B", "a"), ("A", None, "b")]))

    empty = votes([])
    assert fit_bt(empty) == {}
    t = bootstrap_bt(empty)
    assert t.empty and list(t.columns) == ["system", "rating", "lower", "upper", "rank"]
    assert votes_to_separate(empty).empty
    assert win_rate_matrix(empty).table.empty
    assert system_counts(empty).empty
    assert left_bias(empty).decisive == 0 and math.isnan(left_bias(empty).share)


# ---------------------------------------------------------------- rates


def test_wilson_matches_statsmodels():
    for k, n in [(0, 10), (3, 10), (10, 10), (37, 120), (7.5, 20)]:
        ref = proportion_confint(k, n, alpha=0.05, method="wilson")
        assert wilson_interval(k, n, z=1.959963984540054) == pytest.approx(ref, abs=1e-12)
    lo, hi = wilson_interval(np.array([1, 5]), np.array([4, 5]))
    assert lo[1] == pytest.approx(proportion_confint(5, 5, method="wilson")[0], abs=1e-3)
    assert all(math.isnan(x) for x in wilson_interval(0, 0))
    with pytest.raises(ValueError, match="0 <= k <= n"):
        wilson_interval(5, 3)


def test_win_rate_matrix_pools_both_sides_and_counts_ties_half():
    v = votes([("A", "B", "a"), ("B", "A", "b"), ("A", "B", "b"), ("B", "A", "tie"), ("A", "C", "both_bad")])
    m = win_rate_matrix(v)
    assert m.rate.loc["A", "B"] == pytest.approx(2.5 / 4)
    assert m.rate.loc["B", "A"] == pytest.approx(1.5 / 4)
    assert m.n.loc["A", "B"] == 4 and m.rate.loc["A", "C"] == 0.5
    assert math.isnan(m.rate.loc["B", "C"]) and math.isnan(m.rate.loc["A", "A"])
    row = m.table.set_index(["system", "opponent"]).loc[("A", "B")]
    assert (row["wins"], row["losses"], row["ties"], row["n"]) == (2, 1, 1, 4)
    assert (row["lower"], row["upper"]) == pytest.approx(wilson_interval(2.5, 4))
    counts = system_counts(v).set_index("system")
    assert counts.loc["A"].to_dict() == {"wins": 2, "losses": 1, "ties": 1, "both_bad": 1, "n": 5}


def test_left_bias_detects_a_planted_bias():
    equal = {"A": 0.0, "B": 0.0, "C": 0.0}
    biased = left_bias(simulate(equal, 3000, seed=6, left_bonus=0.4, tie_share=0.1))
    assert biased.share == pytest.approx(1 / (1 + math.exp(-0.4)), abs=0.03)  # ≈ 0.60
    assert biased.lower > 0.5 and biased.p_value < 1e-6
    assert biased.decisive + biased.n_undecided == 3000
    fair = left_bias(simulate(equal, 3000, seed=6, tie_share=0.1))
    assert fair.lower < 0.5 < fair.upper and fair.p_value > 0.01


# ---------------------------------------------------------------- agreement

SYSTEMS = ("X", "Y")


def judged(labels: dict[str, list[str]], seed: int = 0, swap_sides: bool = True) -> pd.DataFrame:
    """Votes of annotators on pairs 0..n-1 of systems X/Y from canonical labels (None = not judged).

    Sides are randomised per vote, so agreement must see through the orientation.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for annotator, per_item in labels.items():
        for item, label in enumerate(per_item):
            if label is None:
                continue
            left, right = SYSTEMS if (not swap_sides or rng.random() < 0.5) else SYSTEMS[::-1]
            outcome = {left: "left", right: "right"}.get(label, label)
            rows.append(
                {
                    "model_a": left,
                    "model_b": right,
                    "outcome": outcome,
                    "annotator": annotator,
                    "pair_id": item,
                    "criterion": "quality",
                }
            )
    return pd.DataFrame(rows)


LABELS = {
    "ann": ["X", "X", "Y", "tie", "X", "Y", "Y", "both_bad", "X", "Y", "X", None],
    "bob": ["X", "Y", "Y", "tie", "X", "Y", "X", "both_bad", "X", "X", "X", "Y"],
    "cid": ["X", "X", "Y", "X", "X", "Y", "Y", "tie", None, "Y", "X", "Y"],
}


def test_canonical_labels_see_through_sides():
    v = judged({"ann": ["X", "Y", "tie"]}, seed=1)
    assert set(zip(v["model_a"], v["outcome"], strict=True)) != {("X", "left")}  # sides did vary
    assert list(canonical_labels(v)["label"]) == ["first", "second", "tie"]  # X sorts before Y


def test_coin_flipping_annotators_over_many_systems_do_not_seem_to_agree():
    """Labels are relative to each pair's own order: with 8 systems, chance agreement stays ~1/2."""
    rng = np.random.default_rng(4)
    systems = [f"s{i}" for i in range(8)]
    rows = []
    for item in range(400):
        a, b = rng.choice(systems, size=2, replace=False)
        for annotator in ("p", "q", "r"):
            left, right = (a, b) if rng.random() < 0.5 else (b, a)
            rows.append(
                {"model_a": left, "model_b": right, "outcome": rng.choice(["left", "right"]),
                 "annotator": annotator, "pair_id": item, "criterion": "quality"}
            )  # fmt: skip
    votes = pd.DataFrame(rows)
    assert abs(fleiss(votes).kappa) < 0.1
    assert abs(krippendorff_alpha(votes).alpha) < 0.1
    assert cohen_kappa_pairs(votes)["kappa"].abs().max() < 0.15


def test_cohen_matches_sklearn_and_perfect_agreement_is_one():
    v = judged(LABELS)
    table = cohen_kappa_pairs(v).set_index(["annotator_1", "annotator_2"])
    for a1, a2 in [("ann", "bob"), ("ann", "cid"), ("bob", "cid")]:
        both = [
            (x, y) for x, y in zip(LABELS[a1], LABELS[a2], strict=True) if x is not None and y is not None
        ]
        y1, y2 = zip(*both, strict=True)
        assert table.loc[(a1, a2), "kappa"] == pytest.approx(cohen_kappa_score(y1, y2))
        assert table.loc[(a1, a2), "n_items"] == len(both)
        assert table.loc[(a1, a2), "agreement"] == pytest.approx(np.mean(np.array(y1) == np.array(y2)))
    same = judged({"p": LABELS["bob"], "q": LABELS["bob"]}, seed=3)
    assert cohen_kappa_pairs(same)["kappa"].iloc[0] == pytest.approx(1.0)
    # one label throughout: chance agreement is 1, kappa is 0/0 → NaN, not an error
    flat = judged({"p": ["X"] * 4, "q": ["X"] * 4})
    assert math.isnan(cohen_kappa_pairs(flat)["kappa"].iloc[0])


@pytest.mark.parametrize("seed", range(20))
def test_cohen_kappa_equals_sklearn_on_random_labels(seed: int) -> None:
    """The per-pair κ is computed from label codes (speed); it must be sklearn's coefficient."""
    from backend.stats.agreement import cohen_kappa

    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 5))
    n = int(rng.integers(1, 40))
    y1 = rng.integers(0, k, n)
    y2 = np.where(rng.random(n) < 0.5, y1, rng.integers(0, k, n))  # some agreement beyond chance
    kappa, agreement = cohen_kappa(y1, y2, k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns on 0/0 and returns NaN
        reference = cohen_kappa_score(y1, y2)
    assert agreement == pytest.approx(np.mean(y1 == y2)), f"seed {seed}"
    if math.isnan(reference):
        assert math.isnan(kappa), f"seed {seed}"
    else:
        assert kappa == pytest.approx(reference, abs=1e-12), f"seed {seed}"


def test_fleiss_matches_statsmodels_on_complete_items_and_reports_exclusions():
    v = judged(LABELS)
    result = fleiss(v)
    complete = [i for i in range(12) if all(LABELS[a][i] is not None for a in LABELS)]
    cats = sorted({x for a in LABELS for x in LABELS[a] if x is not None})
    data = np.array([[cats.index(LABELS[a][i]) for a in LABELS] for i in complete])
    table, _ = aggregate_raters(data, n_cat=len(cats))
    assert result.kappa == pytest.approx(fleiss_kappa(table, method="fleiss"))
    assert (result.n_items, result.raters_per_item, result.n_items_excluded) == (10, 3, 2)
    perfect = judged({a: LABELS["bob"] for a in ("p", "q", "r")}, seed=9)
    assert fleiss(perfect).kappa == pytest.approx(1.0)


def test_krippendorff_matches_the_package_with_missing_values():
    v = judged(LABELS)
    cats = sorted({x for a in LABELS for x in LABELS[a] if x is not None})
    matrix = [[np.nan if x is None else cats.index(x) for x in LABELS[a]] for a in sorted(LABELS)]
    ref = krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal")
    result = krippendorff_alpha(v)
    assert result.alpha == pytest.approx(ref)
    assert (result.n_items, result.n_annotators) == (12, 3)
    perfect = judged({"p": LABELS["ann"], "q": LABELS["ann"]}, seed=2)
    assert krippendorff_alpha(perfect).alpha == pytest.approx(1.0)
    summary = agreement(v).to_dict()
    assert summary["alpha"]["alpha"] == pytest.approx(ref) and len(summary["cohen"]) == 3


def test_agreement_ignores_repeats_and_keeps_criteria_apart():
    v = judged({"p": ["X", "Y"], "q": ["X", "Y"]}, swap_sides=False)
    v["is_repeat"] = False
    repeat = v.iloc[[0]].assign(outcome="right", is_repeat=True)  # p changes her mind on the repeat
    other_criterion = v.assign(criterion="prompt following", outcome=["left", "right", "right", "left"])
    all_votes = pd.concat([v, repeat, other_criterion], ignore_index=True)
    labels = canonical_labels(all_votes)
    assert len(labels) == 8  # 2 annotators × 2 pairs × 2 criteria, the repeat left out
    per = {
        c: cohen_kappa_pairs(all_votes[all_votes["criterion"] == c])["kappa"].iloc[0]
        for c in ("quality", "prompt following")
    }
    assert per["quality"] == pytest.approx(1.0) and per["prompt following"] == pytest.approx(-1.0)


# ---------------------------------------------------------------- annotator checks


def test_swap_consistency_hand_example():
    rows = [
        # ann: pair 1 X left then X right on the repeat, both times X wins → consistent
        ("X", "Y", "left", "ann", 1, False),
        ("Y", "X", "right", "ann", 1, True),
        # ann: pair 2 picks the LEFT side both times although sides were swapped → inconsistent
        ("X", "Y", "left", "ann", 2, False),
        ("Y", "X", "left", "ann", 2, True),
        # bob: tie both times → consistent; a repeat without a first judgement is ignored
        ("X", "Y", "tie", "bob", 1, False),
        ("Y", "X", "tie", "bob", 1, True),
        ("Y", "X", "a", "bob", 3, True),
    ]
    v = pd.DataFrame(rows, columns=["model_a", "model_b", "outcome", "annotator", "pair_id", "is_repeat"])
    out = swap_consistency(v).set_index("annotator")
    assert out.loc["ann", ["n_repeats", "n_swapped", "consistent"]].tolist() == [2, 2, 1]
    assert out.loc["ann", "rate"] == 0.5 and out.loc["bob", "rate"] == 1.0
    assert out.loc["bob", "n_repeats"] == 1
    assert (out.loc["ann", "lower"], out.loc["ann", "upper"]) == pytest.approx(wilson_interval(1, 2))
    assert swap_consistency(v[~v["is_repeat"]]).empty


def test_gold_accuracy_hand_example_and_side_answers_refused():
    rows = [
        ("X", "Y", "left", "ann", True, "X"),
        ("Y", "X", "right", "ann", True, "X"),  # X on the right, chosen → correct
        ("Y", "X", "left", "ann", True, "X"),  # chose Y → wrong
        ("X", "Y", "tie", "ann", True, "tie"),
        ("X", "Y", "left", "ann", False, None),  # not gold: ignored
        ("X", "Y", "both_bad", "bob", 1, "both_bad"),
    ]
    v = pd.DataFrame(rows, columns=["model_a", "model_b", "outcome", "annotator", "is_gold", "gold_answer"])
    out = gold_accuracy(v).set_index("annotator")
    assert out.loc["ann", ["n_gold", "correct"]].tolist() == [4, 3] and out.loc["ann", "accuracy"] == 0.75
    assert out.loc["bob", "accuracy"] == 1.0
    with pytest.raises(VoteDataError, match=r"gold_answer \['a'\] in row\(s\) 0 is a side"):
        gold_accuracy(v.assign(gold_answer=["a", "X", "X", "tie", None, "both_bad"]))
    with pytest.raises(VoteDataError, match="names neither system"):
        gold_accuracy(v.assign(gold_answer=["Z", "X", "X", "tie", None, "both_bad"]))
    with pytest.raises(VoteDataError, match=r"is_gold must be true/false.*row\(s\) 1"):
        gold_accuracy(v.assign(is_gold=[True, "maybe", True, True, False, True]))


# ---------------------------------------------------------------- correlated votes (issue 9, 7g)


def simulate_campaign(
    strengths: dict[str, float],
    prompts: int,
    seed: int,
    *,
    annotators: int = 3,
    criteria: int = 2,
    image_sd: float = 1.0,
    criterion_sd: float = 0.3,
) -> pd.DataFrame:
    """Votes as a campaign collects them: every system pair of every prompt judged by every
    annotator under every criterion. An image's quality is its system's strength plus a per-image
    random effect (shared by all pairs, annotators and criteria that show the image) plus a
    per-criterion part; each vote is a Bradley–Terry coin on the quality difference, sides random.
    """
    rng = np.random.default_rng(seed)
    names = np.array(list(strengths))
    s = np.array(list(strengths.values()))
    k = len(names)
    quality = (
        s[None, :, None]
        + rng.normal(0.0, image_sd, size=(prompts, k, 1))
        + rng.normal(0.0, criterion_sd, size=(prompts, k, criteria))
    )
    i, j = np.triu_indices(k, 1)
    p, pair, c, _ = np.meshgrid(np.arange(prompts), np.arange(len(i)), np.arange(criteria), np.arange(annotators), indexing="ij")  # fmt: skip
    p, pair, c = p.ravel(), pair.ravel(), c.ravel()
    swap = rng.random(p.size) < 0.5
    left = np.where(swap, j[pair], i[pair])
    right = np.where(swap, i[pair], j[pair])
    p_left = 1.0 / (1.0 + np.exp(-(quality[p, left, c] - quality[p, right, c])))
    return pd.DataFrame(
        {
            "model_a": names[left],
            "model_b": names[right],
            "outcome": np.where(rng.random(p.size) < p_left, "a", "b"),
            "prompt": np.char.add("prompt ", p.astype(str)),
            "criterion": np.char.add("c", c.astype(str)),
        }
    )


def marginal_truth(strengths: dict[str, float], image_sd: float, criterion_sd: float) -> pd.Series:
    """What the ratings converge to with infinitely many prompts: the BT fit to the marginal win
    probabilities (the random effects integrated out by Gauss–Hermite quadrature)."""
    from backend.stats import bradley_terry as bt

    s = np.array(list(strengths.values()))
    x, w = np.polynomial.hermite_e.hermegauss(80)
    sd = math.sqrt(2 * (image_sd**2 + criterion_sd**2))
    ia, ib = (a.ravel() for a in np.meshgrid(np.arange(len(s)), np.arange(len(s)), indexing="ij"))
    keep = ia != ib
    ia, ib = ia[keep], ib[keep]
    y = np.array([np.sum(w / (1 + np.exp(-(s[a] - s[b] + sd * x)))) / np.sum(w) for a, b in zip(ia, ib, strict=True)])
    design = bt._Design(list(strengths), ia, ib, y, np.full(len(y), 1e6))
    theta = bt._fit_theta(design, design.w, 1e-12)
    return pd.Series(1000.0 + ELO * (theta - theta.mean()), index=list(strengths))


def test_prompt_bootstrap_covers_the_truth_when_annotators_and_criteria_are_correlated():
    """100 simulated campaigns: 40 prompts × 6 pairs × 3 annotators × 2 criteria, a per-image
    random effect (sd 1 logit) shared by every vote that shows the image.

    Measured (bench/arena_coverage.py, 200 campaigns): resampling single votes, 95 % intervals
    held the truth in ~76 % of campaigns for one criterion and ~63 % with criteria pooled;
    resampling prompts, ~92 % for both (percentile intervals from 40 clusters run a little
    short). Tolerances as in the independent-votes test above: each
    system's coverage >= 0.87 and the mean in [0.90, 0.99] for the prompt bootstrap (40 clusters
    make percentile intervals a little short); the vote bootstrap must stay below 0.85 on the
    same data, showing what this test guards against. Seeds are fixed: deterministic.
    """
    truth_strengths = {"A": 0.0, "B": 0.3, "C": 0.6, "D": 1.2}
    truth = marginal_truth(truth_strengths, 1.0, 0.3)
    hits: dict[str, list[np.ndarray]] = {"prompts/primary": [], "prompts/pooled": [], "votes/primary": []}
    for campaign in range(100):
        v = simulate_campaign(truth_strengths, 40, seed=2000 + campaign)
        primary = v[v["criterion"] == "c0"]
        for key, sub, cluster in (
            ("prompts/primary", primary, "prompt"),
            ("prompts/pooled", v, "prompt"),
            ("votes/primary", primary, None),
        ):
            t = bootstrap_bt(sub, rounds=100, seed=campaign, cluster=cluster).set_index("system").loc[list(truth.index)]
            hits[key].append(((t["lower"] <= truth) & (truth <= t["upper"])).to_numpy())
    coverage = {key: np.mean(h, axis=0) for key, h in hits.items()}
    for key in ("prompts/primary", "prompts/pooled"):
        assert coverage[key].min() >= 0.87, coverage
        assert 0.90 <= coverage[key].mean() <= 0.99, coverage
    assert coverage["votes/primary"].mean() < 0.85, coverage


def test_prompt_bootstrap_sees_through_duplicated_votes():
    """Every vote copied 4 times within its prompt carries no more information: resampling
    prompts gives about the intervals of the votes without copies, resampling votes ones half
    as wide (1/sqrt(4))."""
    v = simulate({"A": 0.0, "B": 0.5, "C": 1.0}, 600, seed=11).assign(prompt=[f"p{i}" for i in range(600)])
    copies = pd.concat([v] * 4, ignore_index=True)
    width = lambda t: float((t["upper"] - t["lower"]).mean())  # noqa: E731
    single = width(bootstrap_bt(v, rounds=300, seed=1))
    by_prompt = width(bootstrap_bt(copies, rounds=300, seed=1, cluster="prompt"))
    by_vote = width(bootstrap_bt(copies, rounds=300, seed=1))
    assert by_prompt == pytest.approx(single, rel=0.15)
    assert by_vote == pytest.approx(single / 2, rel=0.15)
    # the point estimate does not depend on what is resampled
    pd.testing.assert_series_equal(
        bootstrap_bt(copies, rounds=10, cluster="prompt")["rating"], bootstrap_bt(copies, rounds=10)["rating"]
    )


def test_votes_to_separate_uses_the_same_clusters_as_the_intervals():
    v = simulate_campaign({"A": 0.0, "B": 0.15, "C": 1.5}, 30, seed=4, criteria=1)
    samples = bootstrap_samples(v, rounds=100, seed=0, cluster="prompt")
    assert samples.attrs == {"cluster": "prompt", "n_clusters": 30}
    sep = votes_to_separate(v, samples=samples)  # the cluster is read from the samples
    assert list(sep.columns)[-2:] == ["n_clusters", "clusters_needed"]
    close = sep.iloc[1]
    assert close["n_clusters"] == 30 and close["n_votes"] == len(v) == 30 * 3 * 3
    ratio = (1.959964 * close["se_diff"] / abs(close["diff"])) ** 2
    assert close["clusters_needed"] == max(1, math.ceil(30 * ratio - 30))
    assert close["votes_needed"] == max(1, math.ceil(len(v) * ratio - len(v)))
    # the same as drawing the samples inside, with the cluster named
    pd.testing.assert_frame_equal(sep, votes_to_separate(v, cluster="prompt", rounds=100, seed=0))
    # intervals from clusters are wider than from single votes: more votes needed to separate
    by_vote = votes_to_separate(v, rounds=100, seed=0).iloc[1]
    assert by_vote["se_diff"] < close["se_diff"] and by_vote["n_clusters"] == len(v)
    # samples drawn one way cannot be passed off as the other
    with pytest.raises(ValueError, match="resampled 'single votes', not clusters of 'prompt'"):
        votes_to_separate(v, cluster="prompt", samples=bootstrap_samples(v, rounds=10))
    blank = v.assign(prompt=v["prompt"].where(v.index != 5, " "))
    with pytest.raises(VoteDataError, match=r"cluster column 'prompt' is empty in row\(s\) 5"):
        bootstrap_bt(blank, cluster="prompt")
    with pytest.raises(VoteDataError, match="lacks column"):
        bootstrap_bt(v.drop(columns="prompt"), cluster="prompt")
