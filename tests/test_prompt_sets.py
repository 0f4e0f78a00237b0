"""Prompt-set loading: published layouts, user CSV/TXT, errors, the shipped set."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from backend.prompt_sets import (
    Prompt,
    PromptSetError,
    builtin_prompt_sets,
    load_builtin,
    load_prompt_set,
)

# ../shared/data beside the checkout (as on developers' machines and in CI), or wherever
# RECAP_STUDIO_SHARED_DATA points
PARTI = (
    Path(os.environ.get("RECAP_STUDIO_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
    / "PartiPrompts.tsv"
)


def test_partiprompts_tsv() -> None:
    assert PARTI.is_file(), f"reference data missing: {PARTI} (see ../shared/data/README.md)"
    ps = load_prompt_set(PARTI)
    assert ps.layout == "partiprompts" and ps.name == "PartiPrompts"
    assert len(ps) == 1632
    first = ps.prompts[0]
    assert first == Prompt(
        "bond", "Abstract", "Basic", "Biology-inspired concepts with multiple meanings", line=2
    )
    assert ps.prompts[-1].line == 1633 and ps.prompts[-1].note is None
    # no CSV quote handling in the TSV: a prompt starting with a quote is kept verbatim
    assert any(p.text.startswith('"G I G G L E"') for p in ps)
    cats = ps.categories()
    assert "Abstract" in cats and sum(cats.values()) == 1632
    assert all(p.category and p.challenge for p in ps)


def test_drawbench_csv(tmp_path: Path) -> None:
    f = tmp_path / "drawbench.csv"
    f.write_text(
        "Prompts,Category\n"
        "A red colored car.,Colors\n"
        '"A sign that says ""Hello, world"".",Text\n'
        "\n"
        "A red colored car.,Colors\n"
        "Two cats.,Counting\n",
        encoding="utf-8",
    )
    ps = load_prompt_set(f)
    assert ps.layout == "drawbench"
    assert ps.texts == [
        "A red colored car.",
        'A sign that says "Hello, world".',
        "A red colored car.",
        "Two cats.",
    ]
    assert [p.line for p in ps] == [2, 3, 5, 6]
    assert ps.prompts[1].category == "Text"
    assert ps.duplicates == {"A red colored car.": [2, 5]}


def test_user_csv_and_bom(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    f = tmp_path / "mine.csv"
    f.write_bytes("\ufeffprompt,category\ncafé au lait,food\na dog,\na dog,\n".encode())
    with caplog.at_level(logging.WARNING):
        ps = load_prompt_set(f)
    assert ps.layout == "csv"
    assert ps.prompts[0] == Prompt("café au lait", "food", line=2)
    assert ps.prompts[1].category is None
    assert ps.duplicates == {"a dog": [3, 4]} and "more than once" in caplog.text
    g = tmp_path / "only.csv"
    g.write_text("Prompt\nx\ny\n", encoding="utf-8")
    assert load_prompt_set(g).texts == ["x", "y"]


def test_txt(tmp_path: Path) -> None:
    f = tmp_path / "p.txt"
    f.write_text("# my prompts\na cat\n\n   \n  a dog on a skateboard  \n#skip\na cat\n", encoding="utf-8")
    ps = load_prompt_set(f)
    assert ps.layout == "txt"
    assert [(p.text, p.line) for p in ps] == [("a cat", 2), ("a dog on a skateboard", 5), ("a cat", 7)]
    assert all(p.category is None for p in ps)
    assert ps.duplicates == {"a cat": [2, 7]}


def test_bad_encoding(tmp_path: Path) -> None:
    f = tmp_path / "latin.csv"
    f.write_bytes("prompt\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(PromptSetError, match=r"latin\.csv.*not UTF-8"):
        load_prompt_set(f)
    t = tmp_path / "latin.txt"
    t.write_bytes(b"\xff\xfeabc")
    with pytest.raises(PromptSetError, match="latin.txt"):
        load_prompt_set(t)


def test_missing_columns(tmp_path: Path) -> None:
    f = tmp_path / "bad.csv"
    f.write_text("text,label\nhello,x\n", encoding="utf-8")
    with pytest.raises(PromptSetError, match=r"bad\.csv.*columns found: \['text', 'label'\]"):
        load_prompt_set(f)
    d = tmp_path / "db.csv"
    d.write_text("Prompts,Kind\nx,y\n", encoding="utf-8")
    with pytest.raises(
        PromptSetError, match=r"db\.csv.*missing column\(s\) \['Category'\].*found: \['Prompts', 'Kind'\]"
    ):
        load_prompt_set(d)
    p = tmp_path / "parti.tsv"
    p.write_text("Prompt\tCategory\tChallenge\nx\ty\tz\n", encoding="utf-8")
    with pytest.raises(PromptSetError, match=r"parti\.tsv.*\['Note'\]"):
        load_prompt_set(p)


def test_empty_and_missing_files(tmp_path: Path) -> None:
    e = tmp_path / "empty.csv"
    e.write_text("", encoding="utf-8")
    with pytest.raises(PromptSetError, match="empty.csv"):
        load_prompt_set(e)
    h = tmp_path / "header.csv"
    h.write_text("prompt,category\n", encoding="utf-8")
    with pytest.raises(PromptSetError, match="no prompts"):
        load_prompt_set(h)
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_prompt_set(tmp_path / "nope.csv")


def test_shipped_prompt_set() -> None:
    sets = builtin_prompt_sets()
    assert "studio_prompts" in sets
    ps = load_prompt_set(sets["studio_prompts"])
    assert ps.layout == "csv" and 30 <= len(ps) <= 60
    assert not ps.duplicates
    cats = ps.categories()
    assert {"counting", "spatial", "colour", "text-in-image", "composition"} <= set(cats)
    assert all(p.category for p in ps)
    assert any('"' in p.text for p in ps)  # quoted text survives CSV quoting
    assert load_builtin("studio_prompts").texts == ps.texts
    # only our own sets ship: no published sets copied into assets
    assert not any("parti" in n.lower() or "drawbench" in n.lower() for n in sets)
