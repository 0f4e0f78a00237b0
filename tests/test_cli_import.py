"""The ``recap-studio import`` and ``stats`` commands, run as real subprocesses.

Contract checked here: exit 0 when the source could be read (even with skipped items),
``--json`` puts exactly the report as the last stdout line, and a source that cannot be
read exits 2 with one ``error:`` line on stderr and writes nothing (no dataset).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.workspace import Workspace
from tests.conftest import run_cli
from tests.ingest_fixtures import (
    LATIN1_CAPTION,
    bomb_png,
    build_hostile_json,
    hostile_json,
    image_bytes,
    nothing_written,
    sample,
    write,
    write_tar,
)


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def test_import_folder_json_then_stats(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "photos"
    write(src / "a.jpg", image_bytes(1))
    write(src / "a.txt", "red")
    write(src / "b.jpg", image_bytes(2))
    write(src / "b.caption", "green")
    write(src / "copy.jpg", image_bytes(1))
    write(src / "nocap.png", image_bytes(3, fmt="PNG"))
    write(src / "broken.jpg", b"")
    missing = run_cli(home, "stats", "photos", "--json")
    assert missing.returncode == 2 and missing.stderr.startswith("error: no dataset named 'photos'")

    result = run_cli(home, "import", str(src), "--dataset", "photos", "--json")

    assert result.returncode == 0, result.stderr
    assert last_json(result.stdout) == {
        "dataset": "photos",
        "imported": 3,
        "duplicates": 1,
        "skipped": [{"item": "broken.jpg", "reason": "empty file (0 bytes)"}],
        "not_utf8": [],
    }
    stats = run_cli(home, "stats", "photos", "--json")
    assert stats.returncode == 0, stats.stderr
    assert last_json(stats.stdout) == {"images": 3, "captions": {"alttext": 2}}


def test_import_every_other_format_by_auto_detection(home: Path, tmp_path: Path) -> None:
    import datasets

    write(tmp_path / "t" / "imgs" / "x.jpg", image_bytes(10))
    write(tmp_path / "t" / "table.csv", "file_name,alt_text\nimgs/x.jpg,from csv\n")
    write_tar(tmp_path / "s.tar", [*sample("k1", 11, "from tar"), *sample("k2", 12)])
    hf_img = write(tmp_path / "raw" / "h.png", image_bytes(13, fmt="PNG"))
    datasets.Dataset.from_dict({"image": [str(hf_img)], "caption": ["from hf"]}).cast_column(
        "image", datasets.Image()
    ).save_to_disk(str(tmp_path / "hf"))

    for source, expected in (("t/table.csv", 1), ("s.tar", 2), ("hf", 1)):
        result = run_cli(home, "import", str(tmp_path / source), "--dataset", "mixed", "--json")
        assert result.returncode == 0, result.stderr
        assert last_json(result.stdout)["imported"] == expected
    stats = run_cli(home, "stats", "mixed", "--json")
    assert last_json(stats.stdout) == {"images": 4, "captions": {"alttext": 3}}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{tmp}/does-not-exist"], "error: source not found:"),
        (["{tmp}/notes.txt"], "error: unrecognised source"),
        (
            ["{tmp}/t.csv", "--caption-column", "nope"],
            "error: t.csv has no column 'nope'; its columns are: 'path', 'words'",
        ),
        (["{tmp}/t.csv"], "error: cannot tell which column of t.csv holds the captions"),
        (["{tmp}/imgs", "--format", "parquet"], "error: unknown format 'parquet'"),
    ],
)
def test_unreadable_sources_exit_2_with_one_line_and_write_nothing(
    home: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    write(tmp_path / "notes.txt", "hello")
    write(tmp_path / "imgs" / "a.jpg", image_bytes(1))
    write(tmp_path / "t.csv", "path,words\nimgs/a.jpg,hello\n")

    result = run_cli(home, "import", *[a.format(tmp=tmp_path) for a in args], "--dataset", "never", "--json")

    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(message)
    assert nothing_written(Workspace(home))  # no dataset row, no stored file


def test_max_pixels_flag_and_human_output(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "sizes"
    write(src / "small.png", image_bytes(1, size=(10, 10), fmt="PNG"))
    write(src / "big.png", image_bytes(2, size=(40, 40), fmt="PNG"))
    write(src / "bomb.png", bomb_png(9000, 9000))

    result = run_cli(home, "import", str(src), "--dataset", "sizes", "--max-pixels", "500")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Imported 1 images into 'sizes': 0 duplicates, 2 skipped."
    assert lines[1].startswith(
        "  skipped big.png: image too large: 40x40 = 1,600 pixels exceeds the limit of 500"
    )
    assert lines[2].startswith("  skipped bomb.png: image too large: 9000x9000")
    assert len(lines) == 3 and not result.stdout.endswith("\n\n")  # no stray empty line

    bad = run_cli(home, "import", str(src), "--dataset", "sizes", "--max-pixels", "0")
    assert bad.returncode == 2


@pytest.mark.parametrize("fmt", ["webdataset", "jsonl"])
def test_hostile_json_exits_0_and_keeps_the_good_items(home: Path, tmp_path: Path, fmt: str) -> None:
    """Before: a traceback (RecursionError / ValueError), exit 1 and, for a tar, an empty dataset."""
    source = build_hostile_json(fmt, tmp_path / fmt)

    result = run_cli(home, "import", str(source), "--dataset", "hostile", "--json")

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    report = last_json(result.stdout)
    assert len(report["skipped"]) == sum(getattr(case, fmt) is not None for case in hostile_json())
    assert report["imported"] == len(hostile_json()) + 2 - len(report["skipped"])
    stats = last_json(run_cli(home, "stats", "hostile", "--json").stdout)
    assert stats["images"] == report["imported"]


def test_captions_not_in_utf8_are_imported_and_listed(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "web"
    write(src / "latin.jpg", image_bytes(1))
    write(src / "latin.txt", LATIN1_CAPTION)
    write(src / "cyrillic.jpg", image_bytes(2))
    write(src / "cyrillic.txt", "Кошка сидит на красном диване".encode("cp1251"))
    write(src / "plain.jpg", image_bytes(3))
    write(src / "plain.txt", "plain")

    result = run_cli(home, "import", str(src), "--dataset", "web", "--json")

    assert result.returncode == 0, result.stderr
    report = last_json(result.stdout)
    assert (report["imported"], report["skipped"]) == (3, [])
    assert report["not_utf8"] == [
        {"item": "cyrillic.jpg", "text": "caption sidecar cyrillic.txt", "read_as": "cp1251"},
        {"item": "latin.jpg", "text": "caption sidecar latin.txt", "read_as": "cp1252"},
    ]
    human = run_cli(home, "import", str(src), "--dataset", "web2")
    assert human.returncode == 0, human.stderr
    assert human.stdout.splitlines()[1:] == [
        "  not UTF-8, read as cp1251: cyrillic.jpg (caption sidecar cyrillic.txt)",
        "  not UTF-8, read as cp1252: latin.jpg (caption sidecar latin.txt)",
    ]


def test_import_summary_in_the_datasets_tab_lists_texts_not_in_utf8() -> None:
    from studio.tab_datasets import import_result_md

    summary = {
        "dataset": "web",
        "imported": 2,
        "duplicates": 0,
        "skipped": [],
        "not_utf8": [{"item": "latin.jpg", "text": "caption sidecar latin.txt", "read_as": "cp1252"}],
    }
    md = import_result_md(summary, "/data/web")
    assert "1 text not in UTF-8, read as a legacy encoding: `latin.jpg` (cp1252)" in md
    assert "not in UTF-8" not in import_result_md({**summary, "not_utf8": []}, "/data/web")
