"""SOA-C, SOA-I, CA, PA (detector and CLIP decision), GenEval, bootstrap intervals over prompts and
the mismatched-prompt baseline, on hand-made detections."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from backend.compositional.intervals import MetricValue, cluster_mean, mismatched_prompts, ratio_bootstrap
from backend.compositional.loaders import load_any
from backend.compositional.metrics import (
    METRICS,
    Detection,
    ScoringSettings,
    aggregate,
    mismatched_assignment,
    score_detections,
    score_image,
)
from backend.compositional.prompts import ObjectSpec, Relation, StructuredPrompt, exact_counts
from backend.compositional.spatial import pa_clip_success, relative_position, swap_spatial_words

SEED = 20240611
CELLS = [(c, r) for r in range(3) for c in range(3)]


def _instances(cls: str, color: str | None, cell: tuple[int, int], n: int) -> list[Detection]:
    col, row = cell
    out = []
    for j in range(n):
        x = col / 3 + 0.02 + 0.075 * j
        y = row / 3 + 0.12
        out.append(Detection(cls, 0.95, (x, y, x + 0.06, y + 0.06), color))
    return out


def perfect_detections(prompt: StructuredPrompt) -> list[Detection]:
    """What an exact detector would report for an image that does everything the prompt asks:
    each object group in its own cell of a 3x3 grid, cells chosen so every relation holds."""
    for cells in itertools.permutations(CELLS, len(prompt.objects)):
        groups = [_instances(o.cls, o.color, c, o.count) for o, c in zip(prompt.objects, cells, strict=True)]
        if all(
            r.relation in relative_position(a.box, b.box)
            for r in prompt.relations
            for a in groups[r.subject]
            for b in groups[r.object]
        ):
            return [d for g in groups for d in g]
    raise AssertionError(f"no layout satisfies {prompt.prompt!r}")


def P(text: str, *objects: ObjectSpec, relations=(), exclude=(), tag=None) -> StructuredPrompt:
    return StructuredPrompt(text, tuple(objects), tuple(relations), tuple(exclude), tag=tag)


def box(x: float, y: float, w: float = 0.1) -> tuple[float, float, float, float]:
    return (x - w / 2, y - w / 2, x + w / 2, y + w / 2)


# ---------------------------------------------------------------- acceptance on the demo world


def test_perfect_detections_score_perfectly_and_shuffled_prompts_land_on_the_baseline() -> None:
    demo = load_any("demo_world").prompts
    # two images per prompt, as a generated run with two seeds would have
    index = [i for i in range(len(demo)) for _ in range(2)]
    dets = [perfect_detections(demo[i]) for i in index]
    got = score_detections(demo, dets, index, rounds=300, seed=SEED)

    for name in ("soa_c", "soa_i", "pa_det", "geneval"):
        assert (got[name].value, got[name].lower, got[name].upper) == (1.0, 1.0, 1.0), (name, SEED)
    assert (got["ca"].value, got["ca"].lower, got["ca"].upper) == (0.0, 0.0, 0.0)
    assert got["soa_i"].n == 2 * len(demo) and got["soa_i"].n_prompts == len(demo)
    assert got["pa_det"].n_prompts == sum(bool(p.relations) for p in demo)
    assert got["ca"].n_prompts == sum(bool(p.exclude) for p in demo)
    for tag in ("single_object", "two_object", "counting", "colors", "position", "color_attr"):
        assert got[f"geneval:{tag}"].value == 1.0

    # chance level: far below perfect, and exactly what the same images score against the
    # shuffled prompts (the same derangement, scored as if they were the true prompts)
    assert got["soa_i"].chance < 0.7 and got["geneval"].chance < 0.3 and got["ca"].chance > 0.5, SEED
    targets = mismatched_assignment(index, SEED)
    assert targets is not None and all(t != i for t, i in zip(targets, index, strict=True))
    shuffled = score_detections(demo, dets, targets, rounds=300, seed=SEED, chance=False)
    for name in METRICS:
        assert shuffled[name].value == pytest.approx(got[name].chance), (name, SEED)
        assert got[name].chance_lower <= got[name].chance <= got[name].chance_upper, (name, SEED)

    # another shuffle of the same images lands inside the baseline's interval
    other = mismatched_assignment(index, SEED + 7)
    assert other is not None
    again = score_detections(demo, dets, other, rounds=300, seed=SEED, chance=False)
    for name in ("soa_i", "geneval", "ca"):
        assert got[name].chance_lower <= again[name].value <= got[name].chance_upper, (name, SEED)


# ---------------------------------------------------------------- SOA


def test_soa_c_averages_classes_and_soa_i_pools_image_object_pairs() -> None:
    prompts = [
        P("a cat", ObjectSpec("cat")),
        P("another cat", ObjectSpec("cat")),
        P("a dog", ObjectSpec("dog")),
        P("a cat and a dog", ObjectSpec("cat"), ObjectSpec("dog")),
    ]
    cat, dog = Detection("cat", 0.9, box(0.3, 0.5)), Detection("dog", 0.9, box(0.7, 0.5))
    dets = [[cat], [cat], [], [cat, dog]]
    got = score_detections(
        prompts, dets, [0, 1, 2, 3], ["soa_c", "soa_i"], rounds=200, seed=SEED, chance=False
    )
    assert got["soa_c"].value == pytest.approx((3 / 3 + 1 / 2) / 2)  # cat 3/3, dog 1/2
    assert got["soa_i"].value == pytest.approx(4 / 5)  # 4 of 5 (image, class) pairs
    assert got["soa_i"].lower <= got["soa_i"].value <= got["soa_i"].upper


def test_soa_ignores_colour_and_count_and_class_case() -> None:
    s = score_image(
        P("two red cats", ObjectSpec("cat", 2, "red")), [Detection("Cat", 0.5, box(0.5, 0.5), "blue")]
    )
    assert s.soa == {"cat": True}


# ---------------------------------------------------------------- CA


def test_ca_is_per_image_rmse_over_stated_counts_averaged_over_images() -> None:
    two_cats = P("two cats", ObjectSpec("cat", 2), exclude=exact_counts([ObjectSpec("cat", 2)]))
    mixed = P(
        "two dogs and three cups",
        ObjectSpec("dog", 2),
        ObjectSpec("cup", 3),
        exclude=exact_counts([ObjectSpec("dog", 2), ObjectSpec("cup", 3)]),
    )
    loose = P("a bird", ObjectSpec("bird"))  # no stated count: not in CA
    cats = [Detection("cat", 0.9, box(0.1 + 0.2 * i, 0.5)) for i in range(3)]  # 3 for 2: error 1
    dogs = [Detection("dog", 0.9, box(0.2 + 0.3 * i, 0.3)) for i in range(2)]  # 2 for 2, 0 for 3
    got = score_detections(
        [two_cats, mixed, loose], [cats, dogs, []], [0, 1, 2], ["ca"], rounds=200, seed=SEED, chance=False
    )
    assert got["ca"].value == pytest.approx((1.0 + math.sqrt((0 + 9) / 2)) / 2)
    assert got["ca"].n == 2 and got["ca"].n_prompts == 2
    assert score_image(mixed, dogs).counts == {("dog", None): (2, 2), ("cup", None): (3, 0)}


# ---------------------------------------------------------------- PA (detector form)


def test_pa_det_checks_box_centres_with_genevals_margin() -> None:
    prompt = P(
        "a cat left of a dog, a cup above the dog",
        ObjectSpec("cat"),
        ObjectSpec("dog"),
        ObjectSpec("cup"),
        relations=(Relation(0, "left of", 2 - 1), Relation(2, "above", 1)),
    )
    cat, dog = Detection("cat", 0.9, box(0.2, 0.6)), Detection("dog", 0.9, box(0.6, 0.6))
    cup_above, cup_beside = Detection("cup", 0.9, box(0.6, 0.2)), Detection("cup", 0.9, box(0.9, 0.6))
    assert score_image(prompt, [cat, dog, cup_above]).relations == (True, True)
    assert score_image(prompt, [cat, dog, cup_beside]).relations == (True, False)
    assert score_image(prompt, [cat, dog, cup_beside]).pa == 0.5
    assert score_image(prompt, [dog, cup_above]).relations == (False, True)  # no cat: not satisfied
    # centres 0.03 apart with boxes 0.2 wide: inside the margin, no relation at all
    near = [Detection("cat", 0.9, box(0.5, 0.5, 0.2)), Detection("dog", 0.9, box(0.53, 0.5, 0.2))]
    assert score_image(prompt, near).relations[0] is False


def test_relative_position_follows_genevals_rule() -> None:
    a, b = box(0.2, 0.5), box(0.8, 0.5)
    assert relative_position(a, b) == {"left of"} and relative_position(b, a) == {"right of"}
    assert relative_position(box(0.5, 0.1), box(0.5, 0.9)) == {"above"}
    assert relative_position(box(0.2, 0.2), box(0.8, 0.8)) == {"left of", "above"}
    assert relative_position(box(0.5, 0.5), box(0.5, 0.5)) == set()
    # dx 0.2 of the width, dy 0.4 of the height: on a square image only "below" holds; on a 2:1
    # image the horizontal offset is 0.4 of the height and "left of" holds too
    a, b = box(0.4, 0.9, 0.02), box(0.6, 0.5, 0.02)
    assert relative_position(a, b) == {"below"}
    assert relative_position(a, b, aspect=2.0) == {"left of", "below"}


# ---------------------------------------------------------------- GenEval


def test_geneval_rules() -> None:
    def ok(prompt: StructuredPrompt, dets: list[Detection], **kw: float) -> bool:
        return score_image(prompt, dets, ScoringSettings(**kw)).geneval

    clocks = P("two clocks", ObjectSpec("clock", 2), exclude=(ObjectSpec("clock", 3),), tag="counting")
    c = [Detection("clock", s, box(0.2 + 0.3 * i, 0.5)) for i, s in enumerate((0.95, 0.92, 0.5))]
    assert ok(clocks, c[:2]) and not ok(clocks, c[:1]) and not ok(clocks, c)
    # GenEval's counting threshold: the 0.5 box does not count at 0.9
    assert ok(clocks, c, counting_min_score=0.9)
    reason = score_image(clocks, c).reasons
    assert reason == ("expected clock<3, found 3",)

    red_car = P("a red car", ObjectSpec("car", 1, "red"), tag="colors")
    red, blue = Detection("car", 0.6, box(0.3, 0.5), "red"), Detection("car", 0.9, box(0.7, 0.5), "blue")
    assert ok(red_car, [red])
    assert not ok(red_car, [red, blue])  # the most confident car is judged, and it is blue
    assert not ok(red_car, [Detection("car", 0.9, box(0.5, 0.5))])  # no colour known

    pos = P(
        "a dog right of a cat", ObjectSpec("dog"), ObjectSpec("cat"), relations=(Relation(0, "right of", 1),)
    )
    dog, cat = Detection("dog", 0.9, box(0.8, 0.5)), Detection("cat", 0.9, box(0.2, 0.5))
    assert ok(pos, [dog, cat]) and not ok(pos, [cat, Detection("dog", 0.9, box(0.1, 0.5))])
    assert "no target for dog to be right of" in score_image(pos, [dog]).reasons[-1]

    # a class named twice: each clause takes unclaimed boxes of its colour
    two = P("a red circle and a blue circle", ObjectSpec("circle", 1, "red"), ObjectSpec("circle", 1, "blue"))
    r, b = Detection("circle", 0.9, box(0.2, 0.5), "red"), Detection("circle", 0.8, box(0.7, 0.5), "blue")
    assert (
        ok(two, [r, b])
        and not ok(two, [r])
        and not ok(two, [r, Detection("circle", 0.7, box(0.5, 0.2), "red")])
    )


def test_geneval_overall_is_the_mean_over_tags() -> None:
    a = P("a cat", ObjectSpec("cat"), tag="single_object")
    b = P("two dogs", ObjectSpec("dog", 2), exclude=(ObjectSpec("dog", 3),), tag="counting")
    cat = [Detection("cat", 0.9, box(0.5, 0.5))]
    got = score_detections(
        [a, b], [cat, [], [], []], [0, 1, 1, 1], ["geneval"], rounds=200, seed=SEED, chance=False
    )
    assert got["geneval:single_object"].value == 1.0 and got["geneval:counting"].value == 0.0
    assert got["geneval"].value == 0.5  # GenEval's "overall score (avg. over tasks)", not 1/4


# ---------------------------------------------------------------- intervals and baseline


def test_intervals_resample_prompts_not_images() -> None:
    """Five images of one prompt are one observation: replicating every image five times leaves
    the prompt-bootstrap interval unchanged, while treating images as independent narrows it."""
    rng = np.random.default_rng(SEED)
    hits = (rng.random(30) < 0.6).astype(float).tolist()
    once = cluster_mean(hits, list(range(30)), rounds=500, seed=SEED)
    five = cluster_mean(
        [h for h in hits for _ in range(5)], [i for i in range(30) for _ in range(5)], rounds=500, seed=SEED
    )
    naive = cluster_mean([h for h in hits for _ in range(5)], list(range(150)), rounds=500, seed=SEED)
    assert (five.value, five.lower, five.upper) == pytest.approx((once.value, once.lower, once.upper)), SEED
    assert five.n == 150 and five.n_prompts == 30
    assert naive.upper - naive.lower < 0.75 * (five.upper - five.lower), SEED


def test_bootstrap_interval_brackets_the_value_and_is_seeded() -> None:
    num = np.array([[1.0], [0.0], [1.0], [1.0], [0.0], [1.0]])
    den = np.ones_like(num)
    a = ratio_bootstrap(num, den, n_images=6, rounds=400, seed=SEED)
    b = ratio_bootstrap(num, den, n_images=6, rounds=400, seed=SEED)
    assert a == b and a.lower <= a.value <= a.upper and a.lower >= 0.0 and a.upper <= 1.0
    single = ratio_bootstrap(num[:1], den[:1], n_images=1)
    assert (single.value, single.lower, single.upper) == (1.0, 1.0, 1.0)
    empty = ratio_bootstrap(np.zeros((3, 1)), np.zeros((3, 1)), n_images=0)
    assert math.isnan(empty.value) and empty.as_json()["value"] is None


def test_mismatched_prompts_is_a_seeded_derangement() -> None:
    for n in (2, 3, 10, 200):
        perm = mismatched_prompts(n, SEED)
        assert sorted(perm.tolist()) == list(range(n)) and not np.any(perm == np.arange(n)), (n, SEED)
        assert np.array_equal(perm, mismatched_prompts(n, SEED))
    with pytest.raises(ValueError, match="at least 2 prompts"):
        mismatched_prompts(1)
    # images follow their prompt: both images of prompt 5 meet the same other prompt
    targets = mismatched_assignment([5, 5, 9, 7], SEED)
    assert targets is not None and targets[0] == targets[1] != 5 and targets[2] != 9 and targets[3] != 7
    assert mismatched_assignment([3, 3], SEED) is None


def test_one_prompt_has_no_baseline_and_json_says_null() -> None:
    got = score_detections([P("a cat", ObjectSpec("cat"))], [[]], [0], ["soa_i"], rounds=50)
    j = got["soa_i"].as_json()
    assert j["value"] == 0.0 and j["chance"] is None and j["n"] == 1
    assert set(j) >= {"value", "lower", "upper", "n", "chance"}


def test_metric_value_json() -> None:
    mv = MetricValue(0.5, 0.4, 0.6, 10, 0.1, 0.05, 0.2, 5)
    assert mv.as_json() == {
        "value": 0.5,
        "lower": 0.4,
        "upper": 0.6,
        "n": 10,
        "chance": 0.1,
        "chance_lower": 0.05,
        "chance_upper": 0.2,
        "n_prompts": 5,
    }


def test_detections_refuse_pixel_boxes() -> None:
    with pytest.raises(ValueError, match="divide pixel boxes"):
        Detection("cat", 0.9, (10, 20, 110, 220))
    with pytest.raises(ValueError, match="divide pixel boxes"):
        Detection("cat", 0.9, (0.6, 0.2, 0.4, 0.5))  # x1 < x0
    with pytest.raises(ValueError, match="4 finite numbers"):
        Detection("cat", 0.9, (0.1, 0.2, float("nan"), 0.5))
    assert Detection("cat", 0.9, [-0.1, 0.0, 1.2, 1.0]).box == (-0.1, 0.0, 1.2, 1.0)  # overshoot allowed


def test_bad_calls_are_refused() -> None:
    p = [P("a cat", ObjectSpec("cat")), P("a dog", ObjectSpec("dog"))]
    with pytest.raises(ValueError, match="unknown compositional metric"):
        score_detections(p, [[]], [0], ["soa", "fid"])
    with pytest.raises(ValueError, match="out of range"):
        score_detections(p, [[]], [2])
    with pytest.raises(ValueError, match="2 images' detections but 1 prompt"):
        score_detections(p, [[], []], [0])
    with pytest.raises(ValueError, match="1 image scores but 2 cluster"):
        aggregate([score_image(p[0], [])], [0, 1])


# ---------------------------------------------------------------- PA, CLIP form (TISE)


@pytest.mark.parametrize(
    ("prompt", "swapped"),
    [
        ("a cat to the left of a dog", "a cat to the right of a dog"),
        ("A clock Above a bus", "A clock Below a bus"),
        ("a cup on top of a book", "a cup underneath a book"),
        ("a dog under a table, top left", "a dog over a table, bottom right"),
        ("LEFT of the car", "RIGHT of the car"),
        ("a man in front of a bus", "a man behind a bus"),
        ("a cat on a mat", None),
    ],
)
def test_swap_spatial_words(prompt: str, swapped: str | None) -> None:
    assert swap_spatial_words(prompt) == swapped


def test_pa_clip_success_is_tises_softmax_decision() -> None:
    # softmax over (true, swapped) with logit scale 100: p(true) = sigmoid(100 * difference)
    assert pa_clip_success(0.305, 0.300)  # sigmoid(0.5) = 0.62 > 0.6
    assert not pa_clip_success(0.303, 0.300)  # sigmoid(0.3) = 0.57
    assert not pa_clip_success(0.2, 0.3)
    values = [1.0 if pa_clip_success(t, s) else 0.0 for t, s in [(0.31, 0.30), (0.30, 0.30), (0.32, 0.30)]]
    mv = cluster_mean([*values, None], [0, 1, 2, 3], rounds=100, seed=SEED)
    assert mv.value == pytest.approx(2 / 3) and mv.n == 3
