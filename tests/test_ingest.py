"""Importers against real files and a real SQLite workspace: every format, every bad-input class.

Each bad input asserts its specific reason *and* that it left no partial rows
(``assert_consistent``: no orphan caption, no image with two alt-texts, every stored file
present). Sources refused as a whole assert that nothing at all was written.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tarfile
import time
import tracemalloc
from pathlib import Path

import pytest

from backend.images import DEFAULT_MAX_PIXELS
from backend.ingest import ImportReport, SourceError, detect_format, import_source
from backend.ingest import writer as writer_module
from backend.workspace import Workspace
from tests.ingest_fixtures import (
    LATIN1_CAPTION,
    LEGACY_CAPTIONS,
    NOT_TEXT,
    SVG,
    Member,
    assert_consistent,
    bad_items,
    bomb_png,
    build_hostile_json,
    build_source,
    corrupt_png,
    dataset_rows,
    hostile_json,
    ico_bytes,
    image_bytes,
    nothing_written,
    query,
    sample,
    snapshot,
    stored_json,
    truncated_jpeg,
    write,
    write_tar,
)

pytestmark = pytest.mark.engines("sqlite", "postgresql")


def reasons(report: ImportReport) -> dict[str, str]:
    return {s.item: s.reason for s in report.skipped}


# -- folder ----------------------------------------------------------------------------------


def test_folder_with_txt_and_caption_sidecars(ws: Workspace, tmp_path: Path) -> None:
    src = tmp_path / "photos"
    write(src / "a.jpg", image_bytes(1))
    write(src / "a.txt", "a red square\n")
    write(src / "b.png", image_bytes(2, fmt="PNG"))
    write(src / "b.caption", "\ufeffa green square")  # BOM dropped
    write(src / "both.jpg", image_bytes(3))
    write(src / "both.txt", "from txt")
    write(src / "both.caption", "from caption")
    write(src / "sub" / "deep" / "c.webp", image_bytes(4, fmt="WEBP"))
    write(src / "sub" / "deep" / "c.txt", "nested")
    write(src / "nocap.jpg", image_bytes(5))
    write(src / "notes.md", "ignored")
    write(src / ".hidden" / "h.jpg", image_bytes(6))  # hidden folders are ignored
    calls: list[tuple[int, int | None, str]] = []

    report = import_source(ws, src, "photos", progress=lambda d, t, m: calls.append((d, t, m)))

    assert report.as_dict() == {
        "dataset": "photos",
        "imported": 5,
        "duplicates": 0,
        "skipped": [],
        "not_utf8": [],
    }
    assert dataset_rows(ws, "photos") == {
        "a.jpg": ["a red square"],
        "b.png": ["a green square"],
        "both.jpg": ["from txt"],
        "nocap.jpg": [],
        "sub/deep/c.webp": ["nested"],
    }
    kind, source, provenance, status = query(
        ws, "SELECT kind, source, provenance, status FROM caption WHERE text = 'nested'"
    )[0]
    assert (kind, source, status) == ("alttext", "import:photos", "final")
    assert stored_json(provenance) == {
        "source": str(src),
        "format": "folder",
        "sidecar": "sub/deep/c.txt",
        "path": "sub/deep/c.webp",
    }
    assert calls[0][1] == 5 and calls[-1][:2] == (5, 5)  # total known up front
    assert_consistent(ws)


def test_folder_bad_inputs_are_skipped_with_specific_reasons(ws: Workspace, tmp_path: Path) -> None:
    src = tmp_path / "mixed"
    outside = write(tmp_path / "outside" / "secret.jpg", image_bytes(99))
    write(tmp_path / "outside" / "secret.txt", "secret caption")
    write(src / "good.jpg", image_bytes(1))
    write(src / "good.txt", "good one")
    write(src / "empty.jpg", b"")
    write(src / "empty.txt", "caption of an empty file")
    write(src / "trunc.jpg", truncated_jpeg())
    write(src / "trunc.txt", "caption of a truncated file")
    write(src / "corrupt.png", corrupt_png())
    write(src / "huge.png", bomb_png(9000, 9000))  # 81 MP > default 64 MP
    write(src / "bomb.png", bomb_png(20000, 20000))  # beyond Pillow's own limit too
    write(src / "text.jpg", b"this is not an image at all")
    write(src / "icon.png", ico_bytes())  # an .ico renamed .png
    write(src / "favicon.ico", ico_bytes())
    write(src / "logo.svg", SVG)
    write(src / "latin.jpg", image_bytes(2))
    write(src / "latin.txt", LATIN1_CAPTION)
    (src / "link.jpg").symlink_to(outside)
    write(src / "linkedcap.jpg", image_bytes(3))
    (src / "linkedcap.txt").symlink_to(tmp_path / "outside" / "secret.txt")
    (src / "linkdir").symlink_to(tmp_path / "outside", target_is_directory=True)
    os.mkfifo(src / "fifo.jpg")  # would hang a naive reader

    report = import_source(ws, src, "mixed")

    why = reasons(report)
    assert report.imported == 2 and report.duplicates == 0  # good.jpg, latin.jpg
    assert why["empty.jpg"] == "empty file (0 bytes)"
    assert why["trunc.jpg"].startswith("truncated image")
    assert why["corrupt.png"].startswith("corrupt image")
    assert why["huge.png"].startswith("image too large: 9000x9000")
    assert "--max-pixels" in why["huge.png"]
    assert (
        why["bomb.png"].startswith("image too large: 20000x20000") and "decompression bomb" in why["bomb.png"]
    )
    assert why["text.jpg"].startswith("not a recognisable image")
    assert why["icon.png"].startswith("unsupported image format ICO")
    assert why["favicon.ico"].startswith("unsupported image format .ico")
    assert why["logo.svg"].startswith("unsupported image format .svg")
    assert "latin.jpg" not in why  # a Latin-1 sidecar no longer costs the image (issue 9)
    assert why["link.jpg"].startswith("symbolic link not followed")
    assert why["linkedcap.jpg"] == "unsafe path refused: symbolic link not allowed: linkedcap.txt"
    assert why["linkdir"].startswith("symbolic link not followed")
    assert why["fifo.jpg"] == "not a regular file: fifo.jpg"
    assert len(report.skipped) == 13
    assert dataset_rows(ws, "mixed") == {"good.jpg": ["good one"], "latin.jpg": ["café au lait"]}
    assert query(ws, "SELECT count(*) FROM caption WHERE text LIKE 'secret%'") == [(0,)]
    assert_consistent(ws)


def test_max_pixels_is_configurable(ws: Workspace, tmp_path: Path) -> None:
    src = tmp_path / "sizes"
    write(src / "small.png", image_bytes(1, size=(10, 10), fmt="PNG"))
    write(src / "big.png", image_bytes(2, size=(40, 40), fmt="PNG"))
    report = import_source(ws, src, "sizes", max_pixels=500)
    assert report.imported == 1
    assert reasons(report)["big.png"].startswith(
        "image too large: 40x40 = 1,600 pixels exceeds the limit of 500"
    )
    with pytest.raises(SourceError):
        import_source(ws, src, "sizes", max_pixels=0)


def test_duplicates_counted_without_captions_and_reimport_is_idempotent(
    ws: Workspace, tmp_path: Path
) -> None:
    src = tmp_path / "dups"
    for name, seed in (("a.jpg", 1), ("copy_of_a.jpg", 1), ("b.jpg", 2)):
        write(src / name, image_bytes(seed))
        write(src / name.replace(".jpg", ".txt"), f"caption of {name}")

    first = import_source(ws, src, "dups")
    assert (first.imported, first.duplicates, first.skipped) == (2, 1, [])
    assert dataset_rows(ws, "dups") == {"a.jpg": ["caption of a.jpg"], "b.jpg": ["caption of b.jpg"]}

    again = import_source(ws, src, "dups")
    assert (again.imported, again.duplicates, again.skipped) == (0, 3, [])
    assert query(ws, "SELECT count(*) FROM image") == [(2,)]
    assert query(ws, "SELECT count(*) FROM caption") == [(2,)]

    # the same files go into a second dataset as new images (dedupe is per dataset)
    other = import_source(ws, src, "other")
    assert (other.imported, other.duplicates) == (2, 1)
    assert_consistent(ws)


def test_import_appends_to_an_existing_dataset(ws: Workspace, tmp_path: Path) -> None:
    write(tmp_path / "one" / "a.jpg", image_bytes(1))
    write(tmp_path / "two" / "a_again.jpg", image_bytes(1))
    write(tmp_path / "two" / "c.jpg", image_bytes(3))
    import_source(ws, tmp_path / "one", "grow")
    report = import_source(ws, tmp_path / "two", "grow")
    assert (report.imported, report.duplicates) == (1, 1)
    assert set(dataset_rows(ws, "grow")) == {"a.jpg", "c.jpg"}
    assert query(ws, "SELECT count(*) FROM dataset") == [(1,)]


@pytest.mark.parametrize("fmt", ["folder", "csv", "jsonl", "parquet", "webdataset", "hf"])
def test_every_bad_input_class_in_every_format(ws: Workspace, tmp_path: Path, fmt: str) -> None:
    """The same good, bad and duplicate items, written in each format, give the same outcome.

    The Latin-1 caption is imported in every format (it was a skip before issue 9), read as
    windows-1252, with the encoding in its provenance and the report.
    """
    source = build_source(fmt, tmp_path / fmt)
    report = import_source(ws, source, fmt)

    expected = [why for _, _, _, why in bad_items() if why not in (None, "duplicate")]
    imported = [name for name, _, _, why in bad_items() if why is None]
    got = sorted(s.reason for s in report.skipped)
    assert len(got) == len(expected), got
    for fragment in expected:
        assert sum(fragment in reason for reason in got) == 1, (fragment, got)
    assert (report.imported, report.duplicates) == (len(imported), 1)
    captions = sorted(text for texts in dataset_rows(ws, fmt).values() for text in texts)
    assert captions == ["a good caption", "café au lait"]  # the duplicate's caption was not added
    assert query(ws, "SELECT count(*) FROM image") == [(len(imported),)]
    [recoded] = report.as_dict()["not_utf8"]
    assert recoded["read_as"] == "cp1252"
    provenance = stored_json(query(ws, "SELECT provenance FROM caption WHERE text = 'café au lait'")[0][0])
    assert provenance["encoding"] == "cp1252"
    good = stored_json(query(ws, "SELECT provenance FROM caption WHERE text = 'a good caption'")[0][0])
    assert "encoding" not in good  # absent means UTF-8
    assert_consistent(ws)
    again = import_source(ws, source, fmt)
    assert (again.imported, again.duplicates, len(again.skipped)) == (0, len(imported) + 1, len(expected))
    assert again.not_utf8 == []  # listed when a caption is stored, not for a duplicate
    assert query(ws, "SELECT count(*) FROM caption") == [(2,)]


# -- tables ------------------------------------------------------------------------------------


def _table_images(root: Path, n: int = 3) -> list[str]:
    names = []
    for i in range(n):
        write(root / "imgs" / f"{i}.jpg", image_bytes(i + 10))
        names.append(f"imgs/{i}.jpg")
    return names


def test_csv_auto_detects_columns_and_skips_bad_rows(ws: Workspace, tmp_path: Path) -> None:
    root = tmp_path / "table"
    names = _table_images(root)
    write(tmp_path / "outside.jpg", image_bytes(77))
    (root / "imgs" / "link.jpg").symlink_to(tmp_path / "outside.jpg")
    lines = [
        b"\xef\xbb\xbfid,File_Name,TEXT,other",  # BOM, mixed-case names
        f"1,{names[0]},first caption,x".encode(),
        f'2,{names[1]},"quoted, with comma\nand a newline",y'.encode(),
        f"3,{names[2]},caf\xe9,z".encode("latin-1"),  # caption not UTF-8: read as cp1252
        b"4,imgs/missing.jpg,gone,",
        b"5,../outside.jpg,escape,",
        f"6,{tmp_path / 'outside.jpg'},absolute,".encode(),
        b"7,imgs/link.jpg,linked,",
        b"8,,no image,",
        b"9,http://example.com/x.jpg,remote,",
        f"10,{names[2]},,other bytes \xff here are not read".encode("latin-1"),  # a duplicate of row 3
        "11,imgs/caf\xe9.jpg,path not UTF-8,".encode("latin-1"),  # an image path is never guessed
    ]
    table = write(root / "meta.csv", b"\n".join(lines) + b"\n")

    report = import_source(ws, table, "csv")

    why = reasons(report)
    assert report.imported == 3 and report.duplicates == 1
    assert why["row 11"].startswith("text is not valid UTF-8 (invalid byte e9")
    assert "column 'File_Name'" in why["row 11"]
    assert why["row 4 (imgs/missing.jpg)"] == "image file not found: imgs/missing.jpg"
    assert why["row 5"] == "unsafe path refused: path leaves its folder ('..'): ../outside.jpg"
    assert why["row 6"].startswith("unsafe path refused: absolute path not allowed")
    assert why["row 7"] == "unsafe path refused: symbolic link not allowed: imgs/link.jpg"
    assert why["row 8"] == "missing value in column 'File_Name'"
    assert why["row 9"].startswith("remote URL not downloaded")
    assert len(report.skipped) == 7
    assert dataset_rows(ws, "csv") == {
        names[0]: ["first caption"],
        names[1]: ["quoted, with comma\nand a newline"],
        names[2]: ["café"],
    }
    assert report.as_dict()["not_utf8"] == [
        {"item": f"row 3 ({names[2]})", "text": "column 'TEXT'", "read_as": "cp1252"}
    ]
    source, provenance = query(ws, "SELECT source, provenance FROM caption WHERE text = 'first caption'")[0]
    assert source == "import:meta.csv#TEXT"
    assert stored_json(provenance) == {"source": str(table), "format": "table", "column": "TEXT", "row": 1}
    assert_consistent(ws)


def test_csv_configured_columns_and_tsv(ws: Workspace, tmp_path: Path) -> None:
    names = _table_images(tmp_path)
    table = tmp_path / "t.tsv"
    table.write_text("pic\talt_txt\tcaption\n" + "".join(f"{n}\tcustom {n}\tdecoy\n" for n in names))
    report = import_source(ws, table, "tsv", image_column="pic", caption_column="ALT_TXT")
    assert (report.imported, report.skipped) == (3, [])
    assert dataset_rows(ws, "tsv")[names[0]] == [f"custom {names[0]}"]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"caption_column": "nope"}, "has no column 'nope'; its columns are: 'path', 'words'"),
        ({}, "cannot tell which column of t.csv holds the captions: its columns are 'path', 'words'"),
    ],
)
def test_table_column_errors_write_nothing(
    ws: Workspace, tmp_path: Path, kwargs: dict, expected: str
) -> None:
    names = _table_images(tmp_path, 1)
    table = write(tmp_path / "t.csv", f"path,words\n{names[0]},hello\n")
    with pytest.raises(SourceError) as err:
        import_source(ws, table, "nothing", **kwargs)
    assert expected in str(err.value)
    assert nothing_written(ws)


def test_jsonl_streams_and_reports_bad_lines(ws: Workspace, tmp_path: Path) -> None:
    names = _table_images(tmp_path)
    lines = [
        json.dumps({"image": names[0], "caption": "one"}).encode(),
        b'{"image": "imgs/1.jpg", "caption": ',  # broken JSON
        json.dumps({"image": names[1], "caption": 5}).encode(),  # not text
        b"",
        json.dumps([1, 2]).encode(),
        b'{"image": "imgs/2.jpg", "caption": "caf\xe9"}',
        json.dumps({"caption": "no image key"}).encode(),
        json.dumps({"image": names[2], "caption": "three"}).encode(),
    ]
    table = write(tmp_path / "rows.json", b"\n".join(lines))  # .json holding JSON lines
    report = import_source(ws, table, "jsonl")
    why = reasons(report)
    assert (report.imported, report.duplicates) == (2, 1)
    assert why["line 2"].startswith("this line is not valid JSON: Expecting value at column 35")
    assert why["line 3 (imgs/1.jpg)"] == "column 'caption' holds int, not text"
    assert why["line 5"] == "not a JSON object but list"
    assert why["line 7"] == "missing value in column 'image'"
    assert len(why) == 4
    # line 6 is not UTF-8: read as cp1252 (and line 8 is then a duplicate of its image)
    assert dataset_rows(ws, "jsonl") == {names[0]: ["one"], names[2]: ["café"]}
    provenance = stored_json(query(ws, "SELECT provenance FROM caption WHERE text = 'café'")[0][0])
    assert provenance == {
        "source": str(table),
        "format": "table",
        "column": "caption",
        "row": 6,
        "encoding": "cp1252",
    }
    assert_consistent(ws)


def test_json_array_and_unreadable_tables_are_source_errors(ws: Workspace, tmp_path: Path) -> None:
    array = write(tmp_path / "a.json", '[{"image": "x.jpg", "caption": "y"}]')
    with pytest.raises(SourceError, match="JSON array"):
        import_source(ws, array, "x")
    garbage = write(tmp_path / "g.parquet", b"not parquet at all")
    with pytest.raises(SourceError, match="cannot read Parquet file g.parquet"):
        import_source(ws, garbage, "x")
    empty = write(tmp_path / "e.csv", b"")
    with pytest.raises(SourceError, match="empty"):
        import_source(ws, empty, "x")
    assert nothing_written(ws)


def test_parquet_with_paths_and_with_embedded_bytes(ws: Workspace, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = _table_images(tmp_path)
    pq.write_table(
        pa.table({"image_path": names + [None], "alt": ["a", "b", None, "d"]}),
        tmp_path / "p.parquet",
        row_group_size=2,
    )
    calls: list[int | None] = []
    report = import_source(ws, tmp_path / "p.parquet", "pq", progress=lambda d, t, m: calls.append(t))
    assert report.imported == 3
    assert reasons(report) == {"row 4": "missing value in column 'image_path'"}
    assert calls[0] == 4  # num_rows from the footer
    assert dataset_rows(ws, "pq") == {names[0]: ["a"], names[1]: ["b"], names[2]: []}

    structs = [{"bytes": image_bytes(50), "path": "x.jpg"}, {"bytes": b"", "path": None}]
    pq.write_table(pa.table({"image": structs, "text": ["embedded", "empty"]}), tmp_path / "b.parquet")
    report = import_source(ws, tmp_path / "b.parquet", "pqb")
    assert report.imported == 1
    assert reasons(report) == {"row 2": "empty file (0 bytes)"}
    assert dataset_rows(ws, "pqb") == {"x.jpg": ["embedded"]}
    assert_consistent(ws)


def test_100k_row_csv_is_streamed(ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """100k rows over a handful of files: each file is decoded once, memory stays flat."""
    n_rows, n_files = 100_000, 5
    for i in range(n_files):
        write(tmp_path / "imgs" / f"{i}.jpg", image_bytes(i))
    with (tmp_path / "big.csv").open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["image", "caption"])
        for i in range(n_rows):
            out.writerow([f"imgs/{i % n_files}.jpg", f"row {i}: " + "a fairly long alt text " * 4])
    decodes = 0
    real_decode = writer_module.decode_image

    def counting_decode(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS):  # noqa: ANN202
        nonlocal decodes
        decodes += 1
        return real_decode(data, max_pixels)

    monkeypatch.setattr(writer_module, "decode_image", counting_decode)
    tracemalloc.start()
    started = time.perf_counter()
    report = import_source(ws, tmp_path / "big.csv", "big")
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert (report.imported, report.duplicates, report.skipped) == (n_files, n_rows - n_files, [])
    assert decodes == n_files
    assert peak < 8 * 2**20, f"peak traced memory {peak / 2**20:.1f} MiB"  # the CSV alone is ~10 MiB
    print(f"\n100k-row CSV: {elapsed:.1f} s ({n_rows / elapsed:,.0f} rows/s), peak {peak / 2**20:.1f} MiB")
    assert query(ws, "SELECT count(*) FROM caption") == [(n_files,)]


# -- webdataset -----------------------------------------------------------------------------------


def test_webdataset_tar_in_img2dataset_layout(ws: Workspace, tmp_path: Path) -> None:
    shard = write_tar(
        tmp_path / "00000.tar",
        [
            *sample("00000/000000000", 1, "a cat", '{"url": "http://x/0.jpg", "width": 16}'),
            *sample("00000/000000001", 2, "a dog"),
            *sample("00000/000000002", 3),  # no caption
            Member("00000/000000003.cls", b"7"),  # other fields are ignored
        ],
    )
    report = import_source(ws, shard, "wds")
    assert (report.imported, report.skipped) == (3, [])
    assert dataset_rows(ws, "wds") == {
        "00000.tar:00000/000000000": ["a cat"],
        "00000.tar:00000/000000001": ["a dog"],
        "00000.tar:00000/000000002": [],
    }
    meta = query(ws, "SELECT meta FROM image WHERE original_key LIKE '%000000000'")[0][0]
    assert stored_json(meta) == {"url": "http://x/0.jpg", "width": 16}
    provenance = stored_json(query(ws, "SELECT provenance FROM caption WHERE text = 'a cat'")[0][0])
    assert provenance["member"] == "00000/000000000.txt" and provenance["shard"] == "00000.tar"
    assert provenance["format"] == "webdataset"
    assert_consistent(ws)


def test_webdataset_hostile_members_are_refused_and_nothing_written_outside(
    ws: Workspace, tmp_path: Path
) -> None:
    target = tmp_path / "escaped.jpg"
    abs_name = str(tmp_path / "absolute.jpg")
    shard = write_tar(
        tmp_path / "src" / "evil.tar",
        [
            *sample("ok", 1, "fine"),
            Member("../escaped.jpg", image_bytes(2)),
            Member("../escaped.txt", b"escaped caption"),
            Member(abs_name, image_bytes(3)),
            Member("link.jpg", kind=tarfile.SYMTYPE, linkname=str(target)),
            Member("hard.jpg", kind=tarfile.LNKTYPE, linkname="ok.jpg"),
            Member("dev.jpg", kind=tarfile.CHRTYPE),
            Member("pipe.jpg", kind=tarfile.FIFOTYPE),
            *sample("after", 4, "still imported"),
        ],
    )
    before = snapshot(tmp_path, exclude=ws.home)

    report = import_source(ws, shard, "evil")

    why = reasons(report)
    assert report.imported == 2
    assert why["evil.tar:../escaped.jpg"] == "member name leaves the archive ('..') refused: ../escaped.jpg"
    assert why["evil.tar:../escaped.txt"].startswith("member name leaves the archive")
    assert why[f"evil.tar:{abs_name}"] == f"absolute member name refused: {abs_name}"
    assert why["evil.tar:link.jpg"] == f"symbolic link member refused: link.jpg -> {target}"
    assert why["evil.tar:hard.jpg"] == "hard link member refused: hard.jpg -> ok.jpg"
    assert why["evil.tar:dev.jpg"] == "device or FIFO member refused: dev.jpg"
    assert why["evil.tar:pipe.jpg"] == "device or FIFO member refused: pipe.jpg"
    assert dataset_rows(ws, "evil") == {"evil.tar:ok": ["fine"], "evil.tar:after": ["still imported"]}
    assert snapshot(tmp_path, exclude=ws.home) == before
    assert not target.exists() and not Path(abs_name).exists()
    assert_consistent(ws)


def test_webdataset_bad_samples(ws: Workspace, tmp_path: Path) -> None:
    shard = write_tar(
        tmp_path / "bad.tar.gz",
        [
            *sample("good", 1, "good"),
            Member("trunc.jpg", truncated_jpeg()),
            Member("trunc.txt", b"truncated"),
            Member("empty.jpg", b""),
            Member("latin.jpg", image_bytes(2)),
            Member("latin.txt", LATIN1_CAPTION),
            Member("badmeta.jpg", image_bytes(3)),
            Member("badmeta.json", b"{not json"),
            Member("vector.svg", SVG),
            Member("orphan.txt", b"caption without image"),
            Member("two.jpg", image_bytes(4)),
            Member("two.png", image_bytes(5, fmt="PNG")),
            Member("split.jpg", image_bytes(6)),
            Member("between.jpg", image_bytes(7)),
            Member("split.txt", b"late caption"),
            *sample("dup", 1, "same bytes as good"),
        ],
        mode="w:gz",
    )
    report = import_source(ws, shard, "bad")
    why = reasons(report)
    assert (report.imported, report.duplicates) == (4, 1)  # good, latin, split (its first part), between
    assert why["bad.tar.gz:trunc"].startswith("truncated image")
    assert why["bad.tar.gz:empty"] == "empty file (0 bytes)"
    assert "bad.tar.gz:latin" not in why
    assert dataset_rows(ws, "bad")["bad.tar.gz:latin"] == ["café au lait"]
    assert why["bad.tar.gz:badmeta"].startswith("metadata badmeta.json is not valid JSON")
    assert why["bad.tar.gz:vector"] == "unsupported image format .svg"
    assert why["bad.tar.gz:orphan"] == "no image member for this key (found .txt)"
    assert why["bad.tar.gz:two"].startswith("several image members (.jpg, .png)")
    assert why["bad.tar.gz:split"].startswith("members of this key are not adjacent")
    assert dataset_rows(ws, "bad")["bad.tar.gz:good"] == ["good"]
    assert_consistent(ws)


def test_webdataset_folder_of_shards_glob_and_truncated_shard(ws: Workspace, tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    write_tar(shards / "00000.tar", [*sample("a", 1, "a"), *sample("b", 2, "b")])
    write_tar(shards / "00001.tar", [*sample("c", 3, "c"), *sample("d", 4, "d")])
    full = write_tar(
        tmp_path / "whole.tar", [*sample("e", 5, "e"), *sample("f", 6, "f"), *sample("g", 7, "g")]
    )
    with tarfile.open(full) as tar:
        cut = tar.getmember("f.jpg").offset_data + 100
    write(shards / "00002.tar", full.read_bytes()[:cut])  # cut inside the image of sample f
    write(shards / "00000_stats.json", "{}")

    assert detect_format(shards) == "webdataset"
    report = import_source(ws, shards, "shards")
    assert report.imported == 5  # a b c d e
    assert len(report.skipped) == 1
    assert report.skipped[0].item.startswith("00002.tar:")
    assert "shard unreadable from here on" in report.skipped[0].reason
    assert_consistent(ws)

    again = import_source(ws, Path(str(shards / "0000[01].tar")), "globbed")
    assert (again.imported, again.skipped) == (4, [])


# -- hugging face ---------------------------------------------------------------------------------


def _hf_images(root: Path, n: int) -> list[str]:
    paths = []
    for i in range(n):
        paths.append(str(write(root / "raw" / f"{i}.png", image_bytes(i + 30, fmt="PNG"))))
    return paths


def test_hf_dataset_with_image_feature(ws: Workspace, tmp_path: Path) -> None:
    import datasets

    paths = _hf_images(tmp_path, 3)
    ds = datasets.Dataset.from_dict({"image": paths, "text": ["zero", None, "two"], "n": [0, 1, 2]})
    ds.cast_column("image", datasets.Image()).save_to_disk(str(tmp_path / "hf"))
    calls: list[int | None] = []

    report = import_source(ws, tmp_path / "hf", "hf", progress=lambda d, t, m: calls.append(t))

    assert (report.imported, report.skipped) == (3, [])
    assert calls[0] == 3
    assert dataset_rows(ws, "hf") == {"row 0": ["zero"], "row 1": [], "row 2": ["two"]}
    source, provenance = query(ws, "SELECT source, provenance FROM caption WHERE text = 'two'")[0]
    assert source == "import:hf#text"
    assert stored_json(provenance) == {
        "source": str(tmp_path / "hf"),
        "format": "hf",
        "column": "text",
        "row": 2,
    }
    assert_consistent(ws)


def test_hf_dataset_dict_imports_every_split(ws: Workspace, tmp_path: Path) -> None:
    import datasets

    paths = _hf_images(tmp_path, 4)
    train = datasets.Dataset.from_dict({"img": paths[:3], "caption": ["a", "b", "c"]})
    test = datasets.Dataset.from_dict({"img": [paths[3], paths[0]], "caption": ["d", "a again"]})
    dd = datasets.DatasetDict({"train": train, "test": test}).cast_column("img", datasets.Image())
    dd.save_to_disk(str(tmp_path / "dd"))
    before = snapshot(tmp_path, exclude=ws.home)

    report = import_source(ws, tmp_path / "dd", "dd")

    assert (report.imported, report.duplicates, report.skipped) == (4, 1, [])
    rows = dataset_rows(ws, "dd")
    assert rows["train row 0"] == ["a"] and rows["test row 0"] == ["d"]
    [(meta,)] = query(ws, "SELECT meta FROM image WHERE original_key = 'test row 0'")
    assert stored_json(meta) == {"split": "test"}
    assert snapshot(tmp_path, exclude=ws.home) == before  # no cache files written beside the source


def test_hf_dataset_with_path_column_and_missing_column(ws: Workspace, tmp_path: Path) -> None:
    import datasets

    _hf_images(tmp_path / "hfp", 2)
    rel = ["raw/0.png", "raw/1.png", "../outside.png"]
    datasets.Dataset.from_dict({"file_name": rel, "prompt": ["p0", "p1", "p2"]}).save_to_disk(
        str(tmp_path / "hfp")
    )
    with pytest.raises(SourceError, match="has no column 'alt'; its columns are: 'file_name', 'prompt'"):
        import_source(ws, tmp_path / "hfp", "hfp", caption_column="alt")
    assert nothing_written(ws)

    report = import_source(ws, tmp_path / "hfp", "hfp")
    assert report.imported == 2
    assert reasons(report) == {"row 2": "unsafe path refused: path leaves its folder ('..'): ../outside.png"}
    assert dataset_rows(ws, "hfp") == {"raw/0.png": ["p0"], "raw/1.png": ["p1"]}


# -- detection and refused sources ------------------------------------------------------------------


def test_auto_detection(tmp_path: Path) -> None:
    write(tmp_path / "imgs" / "a.jpg", image_bytes(1))
    write(tmp_path / "t.csv", "image,caption\n")
    write(tmp_path / "t.jsonl", "{}")
    write(tmp_path / "t.parquet", b"")
    write_tar(tmp_path / "s.tar", [])
    write(tmp_path / "hf" / "state.json", "{}")
    assert detect_format(tmp_path / "imgs") == "folder"
    assert detect_format(tmp_path / "t.csv") == "table"
    assert detect_format(tmp_path / "t.jsonl") == "table"
    assert detect_format(tmp_path / "t.parquet") == "table"
    assert detect_format(tmp_path / "s.tar") == "webdataset"
    assert detect_format(tmp_path / "hf") == "hf"


@pytest.mark.parametrize(
    ("name", "fmt", "message"),
    [
        ("missing", "auto", "source not found"),
        ("missing", "folder", "source not found"),
        ("notes.txt", "auto", "unrecognised source"),
        ("empty_dir", "auto", "no image files"),
        ("imgs", "nonsense", "unknown format 'nonsense'"),
        ("imgs", "table", "not a file"),
        ("imgs", "hf", "is not a Hugging Face datasets folder"),
        ("notes.txt", "webdataset", "no readable shard"),
        ("*.nomatch", "auto", "no files match"),
    ],
)
def test_refused_sources_write_nothing(
    ws: Workspace, tmp_path: Path, name: str, fmt: str, message: str
) -> None:
    write(tmp_path / "notes.txt", "hello")
    (tmp_path / "empty_dir").mkdir()
    write(tmp_path / "imgs" / "a.jpg", image_bytes(1))
    with pytest.raises(SourceError, match=message):
        import_source(ws, tmp_path / name, "refused", fmt=fmt)
    assert nothing_written(ws)


# -- atomicity -----------------------------------------------------------------------------------


def test_an_item_failing_at_insert_rolls_back_alone(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(5):
        write(tmp_path / "src" / f"{i}.jpg", image_bytes(i))
        write(tmp_path / "src" / f"{i}.txt", "boom" if i == 2 else f"caption {i}")
    real_add_caption = writer_module.add_caption

    def flaky_add_caption(session, image_id, kind, text, **kw):  # noqa: ANN001, ANN202
        if text == "boom":
            raise ValueError("simulated failure while writing the caption")
        return real_add_caption(session, image_id, kind, text, **kw)

    monkeypatch.setattr(writer_module, "add_caption", flaky_add_caption)
    report = import_source(ws, tmp_path / "src", "flaky")
    assert report.imported == 4
    assert reasons(report) == {"2.jpg": "could not be saved: simulated failure while writing the caption"}
    assert set(dataset_rows(ws, "flaky")) == {
        "0.jpg",
        "1.jpg",
        "3.jpg",
        "4.jpg",
    }  # no image without its caption
    assert_consistent(ws)


def test_a_crash_mid_import_keeps_whole_committed_batches(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 100
    for i in range(n):
        write(tmp_path / "src" / f"{i:03d}.jpg", image_bytes(i))
        write(tmp_path / "src" / f"{i:03d}.txt", f"caption {i}")
    real_load = writer_module.ItemWriter._load
    loaded = 0

    def crashing_load(self, item):  # noqa: ANN001, ANN202
        nonlocal loaded
        loaded += 1
        if loaded == 80:
            raise KeyboardInterrupt  # like Ctrl-C in the middle of the second batch
        return real_load(self, item)

    monkeypatch.setattr(writer_module.ItemWriter, "_load", crashing_load)
    with pytest.raises(KeyboardInterrupt):
        import_source(ws, tmp_path / "src", "crash")
    monkeypatch.undo()
    rows = dataset_rows(ws, "crash")
    assert len(rows) == writer_module.BATCH_ITEMS
    assert all(captions == [f"caption {int(key[:3])}"] for key, captions in rows.items())
    assert_consistent(ws)

    report = import_source(ws, tmp_path / "src", "crash")  # resuming is just importing again
    assert (report.imported, report.duplicates) == (n - writer_module.BATCH_ITEMS, writer_module.BATCH_ITEMS)
    assert len(dataset_rows(ws, "crash")) == n


# -- bad input is skipped, never fatal (issue 9, section 4) ------------------------------------


@pytest.mark.parametrize("fmt", ["jsonl", "webdataset"])
def test_hostile_json_is_one_skipped_item_and_good_items_are_kept(
    ws: Workspace, tmp_path: Path, fmt: str
) -> None:
    """Deep nesting, huge integers, NaN ...: before, the first of these raised out of the import
    (RecursionError / ValueError, exit 1); a tar kept nothing, a JSON-lines table failed in
    its column scan."""
    source = build_hostile_json(fmt, tmp_path / fmt)

    report = import_source(ws, source, fmt)

    cases = hostile_json()
    label = {
        c.name: (f"hostile.tar:{c.name}" if fmt == "webdataset" else f"line {i + 1}")
        for i, c in enumerate(cases)
    }
    why = reasons(report)
    rows = dataset_rows(ws, fmt)
    for case in cases:
        expected = getattr(case, fmt)
        key = f"hostile.tar:{case.name}" if fmt == "webdataset" else f"imgs/{case.name}.jpg"
        if expected is None:
            assert rows[key] == [case.name], case.name
        else:
            assert expected in why[label[case.name]], (case.name, why.get(label[case.name]))
            assert key not in rows
    good = (
        {"hostile.tar:good1", "hostile.tar:good2"}
        if fmt == "webdataset"
        else {"imgs/good1.jpg", "imgs/good2.jpg"}
    )
    assert good <= set(rows)  # the good items before and after the hostile ones are kept
    assert report.imported == len(rows) and len(why) == sum(getattr(c, fmt) is not None for c in cases)
    # stored metadata stays standard JSON: NaN, Infinity and 1e400 were read as null
    if ws.db_url.startswith("sqlite"):  # PostgreSQL's json type refuses anything else itself
        assert query(ws, "SELECT count(*) FROM image WHERE meta IS NOT NULL AND NOT json_valid(meta)") == [
            (0,)
        ]
    if fmt == "webdataset":
        meta = query(ws, "SELECT meta FROM image WHERE original_key = 'hostile.tar:nonfinite'")[0][0]
        assert stored_json(meta) == {"nan": None, "inf": None, "ninf": None, "big": None}
    assert_consistent(ws)


def test_jsonl_whose_first_lines_are_all_hostile_still_reads_its_columns(
    ws: Workspace, tmp_path: Path
) -> None:
    """The column scan skips what it cannot parse; the rows report it with its line number."""
    write(tmp_path / "a.jpg", image_bytes(1))
    lines = [
        b'{"x": ' + b"[" * 200_000 + b"}",
        b'{"image": "a.jpg", "n": ' + b"7" * 5000 + b"}",
        b'{"image": "a.jpg", "text": "ok"}',
    ]
    table = write(tmp_path / "t.jsonl", b"\n".join(lines))
    report = import_source(ws, table, "scan")
    assert report.imported == 1
    assert reasons(report) == {
        "line 1": "this line nests too deeply to read",
        "line 2": "this line holds an integer of 5,000 digits (at most 4,300 are read)",
    }


def test_jsonl_cells_that_are_not_what_they_claim(ws: Workspace, tmp_path: Path) -> None:
    """Each of these raised out of the import before (TypeError, MemoryError, ValueError,
    UnicodeEncodeError) or failed at insert with an encoder's message."""
    write(tmp_path / "a.jpg", image_bytes(1))
    write(tmp_path / "b.jpg", image_bytes(2))
    lines = [
        b'{"image": {"bytes": "not bytes"}, "caption": "x"}',
        b'{"image": {"bytes": 99999999999999}, "caption": "x"}',
        b'{"image": {"bytes": null, "path": 5}, "caption": "x"}',
        b'{"image": "a.jpg\\u0000.png", "caption": "x"}',
        b'{"image": "\\ud800.jpg", "caption": "x"}',
        b'{"image": "a.jpg", "caption": "\\udc80"}',
        b'{"image": "a.jpg", "caption": NaN}',  # pandas' missing value: imported without alt-text
        b'{"image": "b.jpg", "caption": "kept"}',
    ]
    report = import_source(ws, write(tmp_path / "t.jsonl", b"\n".join(lines)), "cells")
    assert reasons(report) == {
        "line 1": "column 'image' holds an image whose 'bytes' is str, not bytes",
        "line 2": "column 'image' holds an image whose 'bytes' is int, not bytes",
        "line 3": "column 'image' holds an image whose 'path' is int, not text",
        "line 4": "column 'image' holds a path with a NUL character",
        "line 5": "column 'image' holds a path with an unpaired surrogate (\\ud800), which is not text",
        "line 6 (a.jpg)": "column 'caption' holds an unpaired surrogate (\\udc80), which is not text",
    }
    assert dataset_rows(ws, "cells") == {"a.jpg": [], "b.jpg": ["kept"]}


def test_csv_path_with_a_nul_character_is_one_skipped_row(ws: Workspace, tmp_path: Path) -> None:
    write(tmp_path / "a.jpg", image_bytes(1))
    table = write(tmp_path / "t.csv", b"image,caption\na.jpg\x00x,nul\na.jpg,kept\n")
    report = import_source(ws, table, "nul")  # raised "ValueError: embedded null byte" before
    assert reasons(report) == {"row 1": "column 'image' holds a path with a NUL character"}
    assert dataset_rows(ws, "nul") == {"a.jpg": ["kept"]}


def test_jsonl_line_longer_than_the_limit_is_skipped_without_reading_it_whole(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backend.ingest.sources import table as table_module

    monkeypatch.setattr(table_module, "MAX_LINE_BYTES", 4096)
    write(tmp_path / "a.jpg", image_bytes(1))
    write(tmp_path / "b.jpg", image_bytes(2))
    long_line = json.dumps({"image": "a.jpg", "caption": "x" * 20_000}).encode()
    table = write(tmp_path / "t.jsonl", b"\n".join([long_line, b'{"image": "b.jpg", "caption": "short"}']))
    report = import_source(ws, table, "long")
    assert reasons(report) == {"line 1": "line longer than 4,096 bytes, not read"}
    assert dataset_rows(ws, "long") == {"b.jpg": ["short"]}


def test_nan_caption_cell_means_no_alt_text_in_parquet(ws: Workspace, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = _table_images(tmp_path, 2)
    pq.write_table(pa.table({"image": names, "caption": [float("nan"), 1.5]}), tmp_path / "f.parquet")
    report = import_source(ws, tmp_path / "f.parquet", "nan")
    assert reasons(report) == {f"row 2 ({names[1]})": "column 'caption' holds float, not text"}
    assert dataset_rows(ws, "nan") == {names[0]: []}


def _not_utf8_strings(values: list[bytes | None]) -> object:
    """An Arrow string column holding bytes that are not UTF-8 (Arrow does not check them)."""
    import pyarrow as pa

    return pa.array(values, pa.binary()).view(pa.string())


def test_parquet_string_cells_that_are_not_utf8(ws: Workspace, tmp_path: Path) -> None:
    """One such cell raised UnicodeDecodeError out of the whole import before."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = _table_images(tmp_path, 3)
    images = _not_utf8_strings([n.encode() for n in names[:2]] + [b"imgs/caf\xe9.jpg"])
    captions = _not_utf8_strings(["Кошка сидит на диване".encode("cp1251"), b"plain", b"x"])
    pq.write_table(pa.table({"image": images, "caption": captions}), tmp_path / "s.parquet")

    report = import_source(ws, tmp_path / "s.parquet", "pqs")

    assert reasons(report) == {"row 3": "column 'image' is not valid UTF-8 (invalid byte e9 at byte 8)"}
    assert dataset_rows(ws, "pqs") == {names[0]: ["Кошка сидит на диване"], names[1]: ["plain"]}
    assert report.as_dict()["not_utf8"] == [
        {"item": f"row 1 ({names[0]})", "text": "column 'caption'", "read_as": "cp1251"}
    ]


def test_hf_string_cells_that_are_not_utf8(ws: Workspace, tmp_path: Path) -> None:
    """``Dataset.iter`` raised UnicodeDecodeError for the whole batch before."""
    import datasets
    import pyarrow as pa

    _hf_images(tmp_path / "hfs", 2)
    paths = ["raw/0.png", "raw/1.png"]  # relative to the dataset folder
    table = pa.table(
        {
            "file_name": _not_utf8_strings([p.encode() for p in paths] + [b"raw/caf\xe9.png"]),
            "caption": _not_utf8_strings([b"caf\xe9 cr\xe8me", b"fine", b"x"]),
        }
    )
    datasets.Dataset(table).save_to_disk(str(tmp_path / "hfs"))

    report = import_source(ws, tmp_path / "hfs", "hfs")

    assert reasons(report) == {"row 2": "column 'file_name' is not valid UTF-8 (invalid byte e9 at byte 7)"}
    assert dataset_rows(ws, "hfs") == {paths[0]: ["café crème"], paths[1]: ["fine"]}
    provenance = stored_json(query(ws, "SELECT provenance FROM caption WHERE text = 'café crème'")[0][0])
    assert provenance["encoding"] == "cp1252"


def test_legacy_encoded_sidecars_are_read_and_listed(ws: Workspace, tmp_path: Path) -> None:
    """A good image is not lost for its caption's encoding; what was guessed is listed."""
    src = tmp_path / "web"
    for i, (text, encoding) in enumerate(LEGACY_CAPTIONS):
        write(src / f"{i}.jpg", image_bytes(i))
        write(src / f"{i}.txt", text.encode(encoding))
    write(src / "utf8.jpg", image_bytes(50))
    write(src / "utf8.txt", "déjà vu in UTF-8")
    write(src / "junk.jpg", image_bytes(51))
    write(src / "junk.txt", NOT_TEXT)

    report = import_source(ws, src, "web")

    rows = dataset_rows(ws, "web")
    for i, (text, _) in enumerate(LEGACY_CAPTIONS):
        assert rows[f"{i}.jpg"] == [text]
    assert rows["utf8.jpg"] == ["déjà vu in UTF-8"]
    assert reasons(report) == {
        "junk.jpg": "caption sidecar junk.txt is not text: not valid UTF-8 (invalid byte 80 at byte 128) "
        "and no legacy web encoding reads it cleanly"
    }
    listed = {entry.item: (entry.text, entry.read_as) for entry in report.not_utf8}
    assert set(listed) == {f"{i}.jpg" for i in range(len(LEGACY_CAPTIONS))}  # not the UTF-8 one
    assert listed["0.jpg"] == ("caption sidecar 0.txt", "cp1252")
    assert listed["3.jpg"] == ("caption sidecar 3.txt", "cp1251")
    for (_, read_as), (_, written) in zip(
        (listed[f"{i}.jpg"] for i in range(len(LEGACY_CAPTIONS))), LEGACY_CAPTIONS, strict=True
    ):
        assert read_as.replace("-", "_") in {written.replace("-", "_"), "cp1252"}
    provenance = stored_json(
        query(ws, "SELECT provenance FROM caption WHERE text = ?", LEGACY_CAPTIONS[3][0])[0][0]
    )
    assert provenance == {
        "source": str(src),
        "format": "folder",
        "sidecar": "3.txt",
        "path": "3.jpg",
        "encoding": "cp1251",
    }
    assert_consistent(ws)


def test_file_and_member_names_that_are_not_utf8(ws: Workspace, tmp_path: Path) -> None:
    """Such names made the insert fail ("surrogates not allowed"): the image was lost for its
    name. They are now stored with \\xNN escapes, and the sidecar is still found."""
    src = tmp_path / "names"
    src.mkdir()
    base = os.fsencode(src)
    with open(base + b"/caf\xe9.jpg", "wb") as fh:
        fh.write(image_bytes(1))
    with open(base + b"/caf\xe9.txt", "wb") as fh:
        fh.write(b"a cup")
    with open(base + b"/broken\xff.jpg", "wb") as fh:
        fh.write(b"")
    report = import_source(ws, src, "names")
    assert dataset_rows(ws, "names") == {"caf\\xe9.jpg": ["a cup"]}
    assert reasons(report) == {"broken\\xff.jpg": "empty file (0 bytes)"}
    json.dumps(report.as_dict(), ensure_ascii=False).encode("utf-8")  # printable anywhere

    shard = tmp_path / "names.tar"
    with tarfile.open(shard, "w", format=tarfile.GNU_FORMAT, encoding="latin-1") as tar:
        for name, data in (("caf\xe9.jpg", image_bytes(2)), ("caf\xe9.txt", b"in a tar")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    report = import_source(ws, shard, "tarnames")
    assert (report.imported, report.skipped) == (1, [])
    assert dataset_rows(ws, "tarnames") == {"names.tar:caf\\xe9": ["in a tar"]}


def test_a_source_that_raises_keeps_the_items_it_yielded(ws: Workspace, tmp_path: Path) -> None:
    """Defence in depth: should a source still raise, what it already yielded is committed
    (before, the whole unflushed batch was lost with it, e.g. every sample of a small tar)."""
    from backend.datasets import get_or_create_dataset
    from backend.db import write_session
    from backend.ingest.items import Item
    from backend.ingest.writer import ItemWriter

    with write_session(ws) as session:
        dataset_id = get_or_create_dataset(session, "partial").id
    assert dataset_id is not None

    def items():  # noqa: ANN202
        yield Item(key="a", label="a", data=image_bytes(1), caption="first")
        yield Item(key="b", label="b", data=image_bytes(2))
        raise RuntimeError("a bug in a source")

    report = ImportReport(dataset="partial")
    with pytest.raises(RuntimeError, match="a bug in a source"):
        ItemWriter(ws, dataset_id, report).write_all(items(), None, None, "importing")
    assert report.imported == 2
    assert dataset_rows(ws, "partial") == {"a": ["first"], "b": []}
    assert_consistent(ws)
