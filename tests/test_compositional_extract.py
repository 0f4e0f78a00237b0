"""The rule-based caption extractor: the COCO captions sample read caption by caption, the rules
one at a time, and the shipped demo-world set read back from its own prompt texts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.compositional.extract import Extractor, explain, extract
from backend.compositional.loaders import load_any, load_coco_captions
from backend.compositional.prompts import ObjectSpec, PromptFormatError, Relation
from backend.compositional.vocabulary import COCO, COCO_CLASSES, DEMO_WORLD, Vocabulary

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
COCO_SAMPLE = DATA / "coco_captions_sample.json"
needs_data = pytest.mark.skipif(
    not COCO_SAMPLE.is_file(), reason=f"reference data folder {DATA} is absent (tests read ../shared/data)"
)


def summary(
    caption: str, vocabulary: Vocabulary | None = None
) -> tuple[list[str], list[str], list[str], int]:
    """(objects, relations, exact counts, number of not-scored notes) as readable strings."""
    ex = explain(caption, vocabulary)
    p = ex.prompt
    return (
        [o.describe() for o in p.objects],
        [p.describe_relation(r) for r in p.relations],
        [f"{e.cls}<{e.count}" for e in p.exclude],
        len(ex.notes),
    )


# Every caption of ../shared/data/coco_captions_sample.json, read by hand with the default (COCO)
# vocabulary: objects (count, colour), relations, exact counts, and notes on phrases not scored.
# "tree", "window", "street" and "park" are not COCO classes, so "under a tree" has no object
# after it and "next to" names no direction: both are notes, neither is scored.
EXPECTED_COCO = {
    "A a bench on a wooden table.": (["bench", "dining table"], [], [], 0),
    "A a bench on a city street.": (["bench"], [], [], 0),
    "A a bench next to a window.": (["bench"], [], [], 1),
    "A a bench in a grassy park.": (["bench"], [], [], 0),
    "A a bench under a tree.": (["bench"], [], [], 1),
    "A cat under a tree.": (["cat"], [], [], 1),
    "A cat in a grassy park.": (["cat"], [], [], 0),
    "A cat next to a window.": (["cat"], [], [], 1),
    "A cat on a wooden table.": (["cat", "dining table"], [], [], 0),
    "A pizza on a wooden table.": (["pizza", "dining table"], [], [], 0),
    "A pizza on a city street.": (["pizza"], [], [], 0),
    "A pizza in a grassy park.": (["pizza"], [], [], 0),
    "A dog on a wooden table.": (["dog", "dining table"], [], [], 0),
    "A dog under a tree.": (["dog"], [], [], 1),
    "A dog next to a window.": (["dog"], [], [], 1),
    "A dog on a city street.": (["dog"], [], [], 0),
    "A red car under a tree.": (["red car"], [], [], 1),
    "A red car in a grassy park.": (["red car"], [], [], 0),
    "A red car next to a window.": (["red car"], [], [], 1),
    "A umbrella on a wooden table.": (["umbrella", "dining table"], [], [], 0),
    "A umbrella next to a window.": (["umbrella"], [], [], 1),
    "A umbrella on a city street.": (["umbrella"], [], [], 0),
    "A umbrella under a tree.": (["umbrella"], [], [], 1),
    "A two apples on a city street.": (["2x apple"], [], ["apple<3"], 0),
    "A two apples in a grassy park.": (["2x apple"], [], ["apple<3"], 0),
    "A two apples next to a window.": (["2x apple"], [], ["apple<3"], 1),
    "A two apples under a tree.": (["2x apple"], [], ["apple<3"], 1),
    "A clock under a tree.": (["clock"], [], [], 1),
    "A clock next to a window.": (["clock"], [], [], 1),
    "A clock on a city street.": (["clock"], [], [], 0),
    "A teddy bear in a grassy park.": (["teddy bear"], [], [], 0),
    "A teddy bear on a city street.": (["teddy bear"], [], [], 0),
    "A teddy bear under a tree.": (["teddy bear"], [], [], 1),
    "A teddy bear on a wooden table.": (["teddy bear", "dining table"], [], [], 0),
    "A bicycle next to a window.": (["bicycle"], [], [], 1),
    "A bicycle on a city street.": (["bicycle"], [], [], 0),
}

# The same captions with the vocabulary extended by the four scene nouns (what a user would do
# for an open-vocabulary detector): now "under a tree" is a relation; "next to" still has no
# direction and "on"/"in" are not spatial relations a box centre can check.
SCENE_NOUNS = {"tree": ["tree"], "window": ["window"], "street": ["street"], "park": ["park"]}
EXPECTED_EXTENDED = {
    "A cat under a tree.": (["cat", "tree"], ["cat below tree"], [], 0),
    "A two apples under a tree.": (["2x apple", "tree"], ["2x apple below tree"], ["apple<3"], 0),
    "A red car under a tree.": (["red car", "tree"], ["red car below tree"], [], 0),
    "A teddy bear under a tree.": (["teddy bear", "tree"], ["teddy bear below tree"], [], 0),
    "A cat next to a window.": (["cat", "window"], [], [], 1),
    "A a bench on a city street.": (["bench", "street"], [], [], 0),
    "A pizza in a grassy park.": (["pizza", "park"], [], [], 0),
}


@needs_data
def test_coco_sample_every_caption_read_as_written_by_hand() -> None:
    data = json.loads(COCO_SAMPLE.read_text(encoding="utf-8"))
    captions = [a["caption"] for a in data["annotations"]]
    assert len(captions) == 57
    assert set(captions) == set(EXPECTED_COCO), "the sample's captions changed: update EXPECTED_COCO"
    for caption in captions:
        assert summary(caption) == EXPECTED_COCO[caption], caption


@needs_data
def test_coco_sample_loader_keys_files_and_prompts() -> None:
    prompts = load_coco_captions(COCO_SAMPLE)
    assert len(prompts) == 57
    first = prompts[0]
    assert first.key == "coco:500000:1000" and first.source == "coco"
    assert first.file == "COCO_val2014_000000500000.jpg"
    assert first.objects == (ObjectSpec("bench"), ObjectSpec("dining table"))
    by_key = {p.key: p for p in prompts}
    apples = by_key["coco:500185:1024"]  # "A two apples on a city street."
    assert apples.objects == (ObjectSpec("apple", 2),) and apples.exclude == (ObjectSpec("apple", 3),)
    car = by_key["coco:500074:1009"]  # "A red car under a tree."
    assert car.objects == (ObjectSpec("car", 1, "red"),) and car.relations == ()
    assert len({p.key for p in prompts}) == 57


@needs_data
def test_coco_sample_with_scene_nouns_gives_relations() -> None:
    vocab = COCO.with_classes(SCENE_NOUNS)
    for caption, expected in EXPECTED_EXTENDED.items():
        assert summary(caption, vocab) == expected, caption
    prompts = load_coco_captions(COCO_SAMPLE, vocabulary=vocab)
    under = [p for p in prompts if " under " in p.prompt]
    assert under and all(p.relations and p.relations[0].relation == "below" for p in under)


def test_vocabulary_has_the_80_coco_classes_with_plurals_and_synonyms() -> None:
    assert len(COCO_CLASSES) == 80
    assert {"person", "dining table", "tv", "cell phone", "teddy bear", "hair drier"} <= set(COCO_CLASSES)
    for caption, cls in [
        ("two men", "person"),
        ("a sofa", "couch"),
        ("three puppies", "dog"),
        ("a motorbike", "motorcycle"),
        ("some knives", "knife"),
        ("a fridge", "refrigerator"),
        ("a pair of scissors", "scissors"),
    ]:
        assert extract(caption).objects[0].cls == cls, caption


@pytest.mark.parametrize(
    ("caption", "expected"),
    [
        # longest phrase first
        ("a teddy bear", (["teddy bear"], [], [], 0)),
        ("a hot dog and a dog", (["hot dog", "dog"], [], [], 0)),
        # counts: article = at least one; number words exact; bare plural and vague = at least two
        ("three cats", (["3x cat"], [], ["cat<4"], 0)),
        ("4 pizzas", (["4x pizza"], [], ["pizza<5"], 0)),
        ("a 1950s car in 2014", (["car"], [], [], 0)),
        ("a pair of skis", (["2x skis"], [], ["skis<3"], 0)),
        ("cats on a bed", (["2x cat", "bed"], [], [], 0)),
        ("several large red apples", (["2x red apple"], [], [], 0)),
        ("two men and a woman", (["3x person"], [], [], 0)),
        # colour/class ambiguity: a colour before a noun, a fruit otherwise
        ("an orange cat", (["orange cat"], [], [], 0)),
        ("an orange on a plate", (["orange"], [], [], 0)),
        ("orange flowers near a vase", (["vase"], [], [], 1)),
        ("a grey dog", (["gray dog"], [], [], 0)),
        # noun-noun compounds: the last noun is the head
        ("a baby elephant", (["elephant"], [], [], 0)),
        # references add nothing; "another" adds one
        ("a cat on a bed. the black cat sleeps.", (["black cat", "bed"], [], [], 0)),
        ("a cat on a bed. the cat is black.", (["cat", "bed"], [], [], 0)),  # colour only before the noun
        ("a dog and another dog", (["2x dog"], [], [], 0)),
        ("a circle left of a square", ([], [], [], 1)),  # not COCO classes: the relation has no objects
        # relations: nearest object before, object right after; sentences do not mix
        ("a cat to the left of a dog", (["cat", "dog"], ["cat left of dog"], [], 0)),
        ("a cup on top of a book", (["cup", "book"], ["cup above book"], [], 0)),
        (
            "a dog sitting underneath a big wooden table",
            (["dog", "dining table"], ["dog below dining table"], [], 0),
        ),
        ("a clock above the red bus", (["clock", "red bus"], ["clock above red bus"], [], 0)),
        ("a cat. above a dog", (["cat", "dog"], [], [], 1)),
        ("a man to the right of his dog", (["person", "dog"], ["person right of dog"], [], 0)),
        ("a kite over the beach", (["kite"], [], [], 1)),
    ],
)
def test_extraction_rules(caption: str, expected: tuple) -> None:
    assert summary(caption) == expected


def test_same_group_relation_is_a_note_not_a_relation() -> None:
    ex = explain("One circle is to the left of another circle.", DEMO_WORLD)
    assert ex.prompt.objects == (ObjectSpec("circle", 2),)
    assert ex.prompt.relations == ()
    assert any("itself" in n for n in ex.notes)


def test_spans_point_into_the_caption() -> None:
    caption = "Two red apples to the left of a teddy bear."
    ex = explain(caption)
    kinds = [(s.kind, s.text, s.value) for s in ex.spans]
    assert kinds == [
        ("count", "Two", "2"),
        ("color", "red", "red"),
        ("object", "apples", "apple"),
        ("relation", "to the left of", "left of"),
        ("count", "a", "1"),
        ("object", "teddy bear", "teddy bear"),
    ]
    for s in ex.spans:
        assert caption[s.start : s.end] == s.text
    assert ex.prompt.relations == (Relation(0, "left of", 1),)


def test_vocabulary_from_json_extends_coco(tmp_path: Path) -> None:
    path = tmp_path / "vocab.json"
    path.write_text(
        json.dumps(
            {
                "extend": "coco",
                "classes": {"tree": ["tree"], "goose": {"singular": ["goose"], "plural": ["geese"]}},
            }
        ),
        encoding="utf-8",
    )
    vocab = Vocabulary.from_json(path)
    assert summary("three geese under a tree", vocab) == (
        ["3x goose", "tree"],
        ["3x goose below tree"],
        ["goose<4"],
        0,
    )
    assert extract("a cat", vocab).objects == (ObjectSpec("cat"),)  # COCO kept


def test_vocabulary_rejects_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"classes": {"x": ["x"]}, "relations": {"near": "close to"}}), encoding="utf-8")
    with pytest.raises(PromptFormatError, match="near"):
        Vocabulary.from_json(bad)
    clash = tmp_path / "clash.json"
    clash.write_text(json.dumps({"extend": "coco", "classes": {"pet": ["pet", "dog"]}}), encoding="utf-8")
    with pytest.raises(PromptFormatError, match="'dog' names both"):
        Vocabulary.from_json(clash)
    with pytest.raises(PromptFormatError, match="cannot read"):
        Vocabulary.from_json(tmp_path / "missing.json")


def test_demo_world_set_reads_back_from_its_own_texts() -> None:
    """The shipped set's structures were written by hand; the extractor must read the same from
    each prompt's text, so the set and the extractor check each other."""
    demo = load_any("demo_world")
    assert 60 <= len(demo) <= 100
    reader = Extractor(DEMO_WORLD)
    for p in demo:
        got = reader.extract(p.prompt)
        assert (got.objects, got.relations, got.exclude) == (p.objects, p.relations, p.exclude), p.key
