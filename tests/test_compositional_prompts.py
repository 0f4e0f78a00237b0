"""Structured prompt types and the prompt-set loaders (GenEval metadata, our JSONL, load_any)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from backend.compositional.loaders import builtin_sets, load_any, load_geneval, load_structured_jsonl
from backend.compositional.prompts import (
    ObjectSpec,
    PromptFormatError,
    Relation,
    StructuredPrompt,
    exact_counts,
    stated_counts,
)
from backend.compositional.show import prompt_rows

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
GENEVAL = DATA / "geneval_evaluation_metadata.jsonl"
needs_data = pytest.mark.skipif(
    not GENEVAL.is_file(), reason=f"reference data folder {DATA} is absent (tests read ../shared/data)"
)


def test_prompt_round_trips_through_json() -> None:
    p = StructuredPrompt(
        "two red circles left of a square",
        (ObjectSpec("circle", 2, "red"), ObjectSpec("square")),
        (Relation(0, "left of", 1),),
        exact_counts([ObjectSpec("circle", 2, "red")]),
        tag="position",
        source="test",
        key="k1",
        file="img_001.png",
    )
    back = StructuredPrompt.from_json(json.loads(p.to_json_line()))
    assert back == p and back.file == "img_001.png"
    assert stated_counts(back) == {("circle", "red"): 2}


def test_class_names_are_normalised() -> None:
    assert ObjectSpec("  Teddy   Bear ", 1, "RED") == ObjectSpec("teddy bear", 1, "red")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"prompt": "x", "objects": [{"class": "cat", "count": 0}]}, "count must be a whole number"),
        ({"prompt": "x", "objects": [{"count": 1}]}, "has no 'class'"),
        ({"prompt": "", "objects": []}, "non-empty 'prompt'"),
        ({"prompt": "x"}, "needs an 'objects' list"),
        (
            {
                "prompt": "x",
                "objects": [{"class": "a"}, {"class": "b"}],
                "relations": [{"subject": 0, "relation": "near", "object": 1}],
            },
            "relation must be one of",
        ),
        (
            {
                "prompt": "x",
                "objects": [{"class": "a"}],
                "relations": [{"subject": 0, "relation": "above", "object": 3}],
            },
            "points at object 3",
        ),
        ({"prompt": "x", "objects": "cat"}, "'objects' must be a list"),
    ],
)
def test_bad_prompts_say_what_is_wrong(data: dict, message: str) -> None:
    with pytest.raises(PromptFormatError, match=message):
        StructuredPrompt.from_json(data)


def test_stated_counts_follow_genevals_exclude_idiom() -> None:
    exact = StructuredPrompt("two clocks", (ObjectSpec("clock", 2),), exclude=(ObjectSpec("clock", 3),))
    assert stated_counts(exact) == {("clock", None): 2}
    at_least = StructuredPrompt("a clock", (ObjectSpec("clock"),))
    assert stated_counts(at_least) == {}
    other = StructuredPrompt("a cat, no dogs", (ObjectSpec("cat"),), exclude=(ObjectSpec("dog", 1),))
    assert stated_counts(other) == {}


@needs_data
def test_geneval_metadata_loads_all_553_prompts() -> None:
    prompts = load_geneval(GENEVAL)
    assert len(prompts) == 553
    assert Counter(p.tag for p in prompts) == {
        "position": 100,
        "color_attr": 100,
        "two_object": 99,
        "colors": 94,
        "single_object": 80,
        "counting": 80,
    }
    assert prompts[0].key == "geneval_evaluation_metadata.jsonl:1" and prompts[0].source == "geneval"
    raw = [json.loads(line) for line in GENEVAL.read_text(encoding="utf-8").splitlines() if line.strip()]
    for row, p in zip(raw, prompts, strict=True):
        assert p.prompt == row["prompt"]
        assert [(o.cls, o.count, o.color) for o in p.objects] == [
            (i["class"], i["count"], i.get("color")) for i in row["include"]
        ]
        positions = [(j, *i["position"]) for j, i in enumerate(row["include"]) if "position" in i]
        assert [(r.subject, r.relation, r.object) for r in p.relations] == positions
        assert [(e.cls, e.count) for e in p.exclude] == [
            (e["class"], e["count"]) for e in row.get("exclude", [])
        ]
    counting = [p for p in prompts if p.tag == "counting"]
    assert all(stated_counts(p) for p in counting), "every GenEval counting prompt states an exact count"


def test_geneval_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "meta.jsonl"
    path.write_text(
        '{"tag": "single_object", "include": [{"class": "cat", "count": 1}], "prompt": "a cat"}\n'
        '{"tag": "position", "include": [{"class": "cat", "count": 1}, '
        '{"class": "dog", "count": 1, "position": ["behind", 0]}], "prompt": "a dog behind a cat"}\n',
        encoding="utf-8",
    )
    with pytest.raises(PromptFormatError, match=r"meta.jsonl:2: .*relation must be one of"):
        load_geneval(path)


def test_structured_jsonl_keys_files_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    lines = [
        {"prompt": "a cat", "objects": [{"class": "cat"}], "file": "cat.png"},
        {"prompt": "a dog", "objects": [{"class": "dog"}], "key": "dog-1"},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n", encoding="utf-8")
    prompts = load_structured_jsonl(path)
    assert [p.key for p in prompts] == ["mine.jsonl:1", "dog-1"]
    assert prompts[0].file == "cat.png" and prompts[1].file is None
    assert load_any(path).layout == "structured"

    path.write_text(json.dumps(lines[1]) + "\n" + json.dumps(lines[1]) + "\n", encoding="utf-8")
    with pytest.raises(PromptFormatError, match="'dog-1' is used twice"):
        load_structured_jsonl(path)
    path.write_text(json.dumps(lines[0]) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(PromptFormatError, match=r"mine.jsonl:2: not valid JSON"):
        load_structured_jsonl(path)
    path.write_text("", encoding="utf-8")
    with pytest.raises(PromptFormatError, match="no prompts"):
        load_structured_jsonl(path)


def test_load_any_dispatches_and_rejects_unknown(tmp_path: Path) -> None:
    assert "demo_world" in builtin_sets()
    demo = load_any("demo_world")
    assert demo.layout == "structured" and demo.name == "demo_world"
    assert len({p.key for p in demo}) == len(demo)
    assert set(Counter(p.tag for p in demo)) == {
        "single_object",
        "two_object",
        "counting",
        "colors",
        "position",
        "color_attr",
    }

    plain = tmp_path / "mine.txt"
    plain.write_text("# my prompts\ntwo dogs to the left of a red car\n", encoding="utf-8")
    got = load_any(plain)
    assert got.layout == "extracted" and got.prompts[0].key == "mine.txt:2"
    assert [o.describe() for o in got.prompts[0].objects] == ["2x dog", "red car"]
    with pytest.raises(PromptFormatError, match="not a built-in structured set"):
        load_any("no_such_set")
    odd = tmp_path / "prompts.yaml"
    odd.write_text("x", encoding="utf-8")
    with pytest.raises(PromptFormatError, match="unknown prompt file type"):
        load_any(odd)
    neither = tmp_path / "x.jsonl"
    neither.write_text('{"text": "a cat"}\n', encoding="utf-8")
    with pytest.raises(PromptFormatError, match="neither 'objects'"):
        load_any(neither)


@needs_data
def test_load_any_reads_the_shared_files() -> None:
    assert load_any(GENEVAL).layout == "geneval"
    coco = load_any(DATA / "coco_captions_sample.json")
    assert coco.layout == "coco" and len(coco) == 57


@needs_data
def test_prompt_rows_show_the_extractors_reading() -> None:
    rows = prompt_rows(DATA / "coco_captions_sample.json")
    assert len(rows) == 57
    row = next(r for r in rows if r.key == "coco:500185:1024")  # "A two apples on a city street."
    assert row.objects == "2x apple" and row.exact_counts == "apple < 3"
    assert "two→2" in row.matched and "apples→apple" in row.matched
    under = next(r for r in rows if r.prompt == "A cat under a tree.")
    assert "under→below" in under.matched and "not scored" in under.notes
    demo = prompt_rows("demo_world")
    assert demo[0].matched == "" and set(demo[0].as_dict()) == {
        "key",
        "prompt",
        "tag",
        "objects",
        "relations",
        "exact_counts",
        "matched",
        "notes",
    }
