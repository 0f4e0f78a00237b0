"""Alt-text modes and the simulated annotator, scored against the truth with the caption extractor."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from backend.miniature.accuracy import ASPECTS, CaptionAccuracy, caption_accuracy, summarise
from backend.miniature.captions import (
    ALTTEXT_MODES,
    SimulatedAnnotator,
    all_templates,
    alttext,
    assign_modes,
)
from backend.miniature.world import Scene, WorldObject, sample_scene

SEED = 4242


@pytest.fixture(scope="module")
def scenes() -> list[Scene]:
    rng = random.Random(SEED)
    return [sample_scene(rng) for _ in range(240)]


def test_modes_come_in_the_stated_proportions() -> None:
    modes = assign_modes(100, random.Random(0))
    assert Counter(modes) == {"junk": 30, "partial": 30, "wrong": 20, "faithful": 20}
    assert modes != sorted(modes)  # shuffled
    assert modes == assign_modes(100, random.Random(0))  # seeded
    assert len(assign_modes(7, random.Random(1))) == 7
    assert Counter(assign_modes(10, random.Random(1), {"junk": 1, "faithful": 1})) == {
        "junk": 5,
        "faithful": 5,
    }
    with pytest.raises(ValueError, match="unknown alt-text modes"):
        assign_modes(3, random.Random(0), {"memes": 1.0})


def _scores(scenes: list[Scene], mode: str) -> list[CaptionAccuracy]:
    rng = random.Random(mode)
    return [caption_accuracy(alttext(s, mode, rng).text, s) for s in scenes]


def test_alttext_modes_score_as_their_failures(scenes: list[Scene]) -> None:
    junk = _scores(scenes, "junk")
    assert all(a.claims == 0 and a.recalled == 0 for s in junk for a in s.aspects.values())

    faithful = summarise(_scores(scenes, "faithful"), rounds=100)
    for aspect in ("objects", "colors", "counts"):
        assert faithful.precision[aspect].value == 1.0 and faithful.recall[aspect].value == 1.0
    assert faithful.recall["positions"].value == 0.0  # alt-text states no positions

    partial = summarise(_scores(scenes, "partial"), rounds=100)
    for aspect in ("objects", "colors", "counts"):
        assert partial.precision[aspect].value >= 0.95
        assert partial.recall[aspect].upper < partial.precision[aspect].lower, aspect

    rng = random.Random(1)
    errors = Counter()
    for scene in scenes:
        alt = alttext(scene, "wrong", rng)
        errors[alt.error] += 1
        score = caption_accuracy(alt.text, scene)
        aspect = {"color": "colors", "shape": "objects", "count": "counts", "position": "positions"}[
            alt.error
        ]
        assert score.aspects[aspect].precision is not None and score.aspects[aspect].precision < 1, alt
        assert alt.provenance() == {"alttext_mode": "wrong", "alttext_error": alt.error}
    assert set(errors) == {"color", "shape", "count", "position"}


def test_faithful_annotator_is_exactly_right(scenes: list[Scene]) -> None:
    annotator = SimulatedAnnotator(mistake_rate=0.0)
    rng = random.Random(2)
    shorts, longs = [], []
    for scene in scenes:
        short, long = annotator.short(scene, rng), annotator.long(scene, rng)
        assert short.mistakes == () == long.mistakes
        assert short.text.count(".") == 1 and short.text.endswith(".")  # one sentence
        shorts.append(caption_accuracy(short.text, scene))
        longs.append(caption_accuracy(long.text, scene))
        for aspect, a in longs[-1].aspects.items():  # every fact, nothing else, in every caption
            assert a.correct == a.claims and a.recalled == a.facts, (aspect, long.text)
    s, lo = summarise(shorts, rounds=100), summarise(longs, rounds=100)
    for aspect in ASPECTS:
        assert lo.recall[aspect].value == 1.0
    for aspect in ("objects", "colors", "counts"):
        assert s.precision[aspect].value == 1.0 and lo.precision[aspect].value == 1.0
        assert s.recall[aspect].value < 1.0  # the short caption names the main subject, not everything


def test_every_template_is_used_and_read(scenes: list[Scene]) -> None:
    """Over faithful and mistaken captions the annotator uses every template, and the extractor
    reads each caption as written: faithful ones exactly, mistaken ones wrong only where the
    recorded mistake says."""
    used: set[str] = set()
    rng = random.Random(3)
    for rate in (0.0, 1.0):
        annotator = SimulatedAnnotator(mistake_rate=rate)
        for scene in scenes:
            for caption in (annotator.short(scene, rng), annotator.long(scene, rng)):
                used.update(caption.templates)
                score = caption_accuracy(caption.text, scene)
                if rate == 0.0:
                    assert all(a.correct == a.claims for a in score.aspects.values()), caption.text
                    continue
                [mistake] = caption.mistakes
                affected = {
                    "color": "colors", "shape": "objects", "count": "counts", "position": "positions",
                    "omission": "objects",
                }[mistake["kind"]]  # fmt: skip
                a = score.aspects[affected]
                if mistake["kind"] == "omission":
                    assert (
                        a.recalled < a.facts
                        or score.aspects["colors"].recalled < score.aspects["colors"].facts
                    )
                else:
                    assert a.correct < a.claims, (mistake, caption.text)
                if mistake["kind"] not in ("shape", "omission"):
                    assert score.aspects["objects"].correct == score.aspects["objects"].claims
    every = {t for part in all_templates().values() for t in part}
    assert every - used == set()


def test_mistakes_come_at_the_stated_rate(scenes: list[Scene]) -> None:
    annotator = SimulatedAnnotator()  # the default 3%
    rng = random.Random(4)
    captions = [c for s in scenes * 4 for c in (annotator.short(s, rng), annotator.long(s, rng))]
    rate = sum(bool(c.mistakes) for c in captions) / len(captions)
    assert 0.015 < rate < 0.05
    kinds = Counter(m["kind"] for c in captions for m in c.mistakes)
    assert len(kinds) >= 3
    assert all(c.provenance()["annotator"] == "simulated" for c in captions)


def test_counts_and_positions_by_hand() -> None:
    scene = Scene(
        (
            WorldObject("circle", "red", (0, 0)),
            WorldObject("circle", "red", (2, 0)),
            WorldObject("square", "blue", (1, 2)),
        )
    )
    good = caption_accuracy(
        "Two red circles and a blue square. The blue square is right of the red circles.", scene
    )
    assert {k: (a.precision, a.recall) for k, a in good.aspects.items()} == {
        "objects": (1.0, 1.0), "colors": (1.0, 1.0), "counts": (1.0, 1.0), "positions": (1.0, 1.0),
    }  # fmt: skip
    vague = caption_accuracy("Some red circles above a green square.", scene)
    assert vague.aspects["counts"].claims == 1  # "a green square" states one; "some circles" no count
    assert vague.aspects["colors"].precision == 0.5 and vague.aspects["positions"].precision == 0.0
    assert ALTTEXT_MODES == {"junk": 0.3, "partial": 0.3, "wrong": 0.2, "faithful": 0.2}


@pytest.mark.parametrize("blank", ["", "   ", "\n"])
def test_a_blank_caption_claims_nothing(blank: str) -> None:
    # a small captioner can emit its end token first; the table must score that image, not fail
    scene = Scene((WorldObject("circle", "red", (0, 0)), WorldObject("square", "blue", (2, 0))))
    read = caption_accuracy(blank, scene)
    assert {k: (a.claims, a.precision, a.recall) for k, a in read.aspects.items()} == {
        "objects": (0, None, 0.0), "colors": (0, None, 0.0), "counts": (0, None, 0.0), "positions": (0, None, 0.0),
    }  # fmt: skip
