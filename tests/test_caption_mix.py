"""Caption-mix policy: counts match the requested mix, fallback rule, parsing, validation."""

from __future__ import annotations

import numpy as np
import pytest

from backend.caption_mix import (
    PRESETS,
    CaptionMix,
    MixUsage,
    binomial_tolerance,
    draw,
    expected_counts,
    kind_of,
    outcome_probs,
    parse_mix,
    preset,
)

N = 2000
ALL = {
    "recap_short": "a dog.",
    "recap_long": "a brown dog lying on a red rug next to a window.",
    "alttext": "IMG_2031.jpg dog",
    "human_long": "a dog on a rug",
}


def run(mix: CaptionMix, available, n: int = N, seed: int = 1234) -> MixUsage:
    rng = np.random.default_rng(seed)
    usage = MixUsage()
    for _ in range(n):
        label, text = draw(mix, available, rng, usage)
        if kind_of(label) == "empty":
            assert text == ""
        else:
            assert text == available[kind_of(label)]
    assert usage.total == n
    return usage


def assert_matches(usage: MixUsage, mix: CaptionMix, n: int, kinds=None) -> None:
    probs = outcome_probs(mix, kinds)
    exp = expected_counts(mix, n, kinds)
    got = usage.as_dict()
    assert set(got) <= set(probs), f"unexpected outcomes {set(got) - set(probs)}"
    for label, p in probs.items():
        tol = binomial_tolerance(n, p)
        assert abs(got.get(label, 0) - exp[label]) <= tol, (label, got, exp, tol)


MIXES = [
    preset("recap_mix"),
    preset("dalle3"),
    preset("recap_datacomp", p=0.8),
    preset("recap_datacomp", p=0.2),
    preset("alttext"),
    parse_mix("recap_short=0.3,recap_long=0.7"),
]


@pytest.mark.parametrize("mix", MIXES, ids=lambda m: m.name)
@pytest.mark.parametrize("empty_prob", [0.0, 0.1])
def test_counts_match_mix(mix: CaptionMix, empty_prob: float) -> None:
    m = CaptionMix(mix.weights, empty_prob=empty_prob, fallback=mix.fallback)
    usage = run(m, ALL)
    assert_matches(usage, m, N)
    if empty_prob == 0:
        assert usage["empty"] == 0
    else:
        assert usage["empty"] > 0


def test_preset_weights() -> None:
    assert preset("recap_mix").weights == {"recap_short": 0.5, "recap_long": 0.5}
    assert preset("dalle3").weights == pytest.approx({"recap_long": 0.95, "alttext": 0.05})
    assert preset("recap_datacomp", p=0.8).weights == pytest.approx({"alttext": 0.8, "recap_long": 0.2})
    assert preset("recap_datacomp", p=1.0).weights == {"alttext": 1.0}  # zero weight dropped
    assert preset("alttext").weights == {"alttext": 1.0}
    assert set(PRESETS) == {"recap_mix", "dalle3", "recap_datacomp", "alttext"}


def test_fallback_rule_counted() -> None:
    # image lacks recap_short: recap_mix renormalises onto recap_long
    mix = preset("recap_mix", empty_prob=0.1)
    only_long = {"recap_long": ALL["recap_long"], "alttext": ALL["alttext"], "recap_short": "  "}
    usage = run(mix, only_long)
    assert_matches(usage, mix, N, kinds={"recap_long", "alttext"})
    assert set(usage.as_dict()) == {"recap_long", "renorm:recap_long", "empty"}
    by_kind = usage.by_kind()
    assert by_kind["recap_long"] == usage["recap_long"] + usage["renorm:recap_long"]
    assert "recap_short" not in by_kind

    # image has none of the mix's kinds: first fallback it has
    mix = CaptionMix({"recap_short": 1, "recap_long": 1}, fallback=("human_long", "alttext"))
    usage = run(mix, {"alttext": "alt", "human_long": "human"})
    assert usage.as_dict() == {"fallback:human_long": N}
    usage = run(mix, {"alttext": "alt"})
    assert usage.as_dict() == {"fallback:alttext": N}

    # nothing usable: the empty caption, counted apart from dropout
    usage = run(mix, {"other": "x", "recap_long": None})
    assert usage.as_dict() == {"empty:missing": N}
    assert usage.by_kind() == {"empty": N}

    # renormalisation over a three-kind mix with one missing
    mix = CaptionMix({"recap_short": 0.2, "recap_long": 0.3, "alttext": 0.5})
    kinds = {"recap_short", "alttext"}
    usage = run(mix, {k: ALL[k] for k in kinds})
    assert_matches(usage, mix, N, kinds=kinds)
    assert outcome_probs(mix, kinds)["renorm:alttext"] == pytest.approx(0.3 * 0.5 / 0.7)


def test_mixed_population_usage() -> None:
    rng = np.random.default_rng(7)
    mix = preset("dalle3", empty_prob=0.05)
    usage = MixUsage()
    images = [ALL, {"alttext": "alt"}, {"recap_long": "long"}, {}]
    for i in range(400):
        draw(mix, images[i % 4], rng, usage)
    d = usage.as_dict()
    assert sum(d.values()) == 400
    assert d["empty:missing"] > 0 and d["renorm:alttext"] > 0 and d["renorm:recap_long"] > 0
    resumed = MixUsage.from_dict(d)
    resumed.update({"empty": 2})
    assert resumed["empty"] == d.get("empty", 0) + 2


def test_deterministic_with_seed() -> None:
    mix = preset("recap_mix", empty_prob=0.1)
    assert run(mix, ALL, seed=3).as_dict() == run(mix, ALL, seed=3).as_dict()


@pytest.mark.parametrize(
    "weights",
    [
        {},
        {"recap_long": -0.1, "alttext": 1},
        {"recap_long": 0, "alttext": 0},
        {"a": float("nan")},
        {"a": "x"},
        {"empty": 1},
        {"": 1},
        {"bad kind": 1},
    ],
)
def test_bad_weights_refused(weights) -> None:
    with pytest.raises(ValueError, match="caption mix"):
        CaptionMix(weights)


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_bad_empty_prob_refused(p: float) -> None:
    with pytest.raises(ValueError, match="empty_prob"):
        CaptionMix({"recap_long": 1}, empty_prob=p)


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "nonsense",
        "recap_long=abc",
        "recap_long=1,recap_long=2",
        "recap_datacomp",
        "recap_datacomp:p=1.5",
        "recap_mix:q=1",
        "recap_long",
        "a=0,b=0",
        "recap_datacomp:p",
    ],
)
def test_bad_specs_refused(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_mix(spec)


def test_parse_mix_round_trips() -> None:
    m = parse_mix("recap_short=0.3,recap_long=0.7")
    assert m.weights == pytest.approx({"recap_short": 0.3, "recap_long": 0.7})
    assert parse_mix(m.spec) == m
    m = parse_mix("recap_short=3, recap_long=1", empty_prob=0.1)
    assert m.weights == {"recap_short": 0.75, "recap_long": 0.25} and m.empty_prob == 0.1
    assert parse_mix(m.spec, empty_prob=0.1) == m
    assert parse_mix("recap_mix") == preset("recap_mix")
    assert parse_mix(" dalle3 ") == preset("dalle3")
    dc = parse_mix("recap_datacomp:p=0.8")
    assert dc == preset("recap_datacomp", p=0.8)
    assert dc.name == "recap_datacomp:p=0.8"
    assert parse_mix(dc.name) == dc and parse_mix(dc.spec, fallback=dc.fallback) == dc
    for name in ("recap_mix", "dalle3", "alttext"):
        mix = preset(name)
        assert parse_mix(mix.spec) == mix
    thirds = parse_mix("a=1,b=1,c=1")
    assert parse_mix(thirds.spec).weights == pytest.approx(thirds.weights)


def test_helpers() -> None:
    mix = preset("recap_mix", empty_prob=0.1)
    assert expected_counts(mix, 1000) == pytest.approx({"recap_short": 450, "recap_long": 450, "empty": 100})
    assert binomial_tolerance(2000, 0.5) == pytest.approx(4 * (2000 * 0.25) ** 0.5)
    assert binomial_tolerance(100, 0.0) == 0
    with pytest.raises(ValueError):
        binomial_tolerance(10, 1.5)
    assert kind_of("fallback:alttext") == "alttext" and kind_of("renorm:recap_long") == "recap_long"
    assert mix.as_dict()["weights"] == {"recap_short": 0.5, "recap_long": 0.5}


def test_a_mix_never_draws_a_kind_outside_its_weights_unless_asked() -> None:
    """The alt-text control trains on alt-text or on nothing: an image without alt-text gets the
    empty caption (``empty:missing``), never a recaption, unless the user opts into a fallback."""
    rng = np.random.default_rng(0)
    label, text = draw(parse_mix("alttext"), {"alttext": "", "recap_long": "A red cube…"}, rng)
    assert (label, text) == ("empty:missing", "")
    assert parse_mix("alttext").fallback == () and preset("recap_mix").fallback == ()
    opted_in = parse_mix("alttext", fallback=["recap_long"])
    assert draw(opted_in, {"recap_long": "A red cube…"}, rng) == ("fallback:recap_long", "A red cube…")

    # every preset and custom weights (zero weights included), over every subset of kinds an
    # image may have: the kind fed to the text encoder is one the mix weighs, or none
    kinds = ["alttext", "recap_short", "recap_long", "human_short", "human_long"]
    mixes = [preset(name) for name in ("recap_mix", "dalle3", "alttext")]
    mixes += [preset("recap_datacomp", p=p) for p in (0.0, 0.8, 1.0)]
    mixes += [parse_mix("recap_long=0.7,alttext=0.3"), parse_mix("recap_short=1,recap_long=0,alttext=0")]
    seed = 20240917
    rng = np.random.default_rng(seed)
    for mix in mixes:
        for mask in range(1 << len(kinds)):
            have = {k: f"text of {k}" for i, k in enumerate(kinds) if mask >> i & 1}
            usage = MixUsage()
            for _ in range(20):
                draw(mix, have, rng, usage)
            for label in usage.as_dict():
                kind = kind_of(label)
                assert kind == "empty" or kind in mix.weights, (seed, mix.name, have, label)
                assert not label.startswith("fallback:"), (seed, mix.name, have, label)
            if not set(have) & set(mix.weights):  # none of the mix's kinds
                assert usage.as_dict() == {"empty:missing": 20}, (seed, mix.name, have)
    # outcome_probs, the rule's exact form, agrees: no fallback, so the empty caption
    assert outcome_probs(preset("alttext"), {"recap_long"}) == {"empty:missing": 1.0}
