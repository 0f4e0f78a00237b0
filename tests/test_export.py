"""Export round-trips in every format, with provenance, and refuses to overwrite."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image as PILImage

from backend.captions import add_caption, review_caption, revise_human_caption
from backend.datasets import get_or_create_dataset
from backend.db import write_session
from backend.export import FORMATS, ExportError, export_dataset
from backend.images import add_image, decode_image
from backend.models import User
from backend.workspace import Workspace
from tests.conftest import run_cli

USERS = (("alice", "annotator"), ("bob", "annotator"), ("boss", "admin"))


@dataclass
class Fixture:
    ws: Workspace
    sha: dict[str, str]  # original_key -> sha256
    expected: dict[str, dict[str, str | None]]  # original_key -> kind -> exported text
    caption_ids: dict[str, dict[str, int]]  # original_key -> kind -> exported caption id


def _png(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", (32, 24), color).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def data(ws: Workspace) -> Fixture:
    """Three images with alt-text, machine captions from two runs and several human revisions."""
    sha, ids = {}, {}
    with write_session(ws) as s:
        # users without a real password hash: these tests never log in (and Argon2 is slow)
        ann_a, ann_b, admin = (User(name=n, role=r, password_hash="-") for n, r in USERS)
        s.add_all([ann_a, ann_b, admin])
        s.flush()
        ds = get_or_create_dataset(s, "toy")
        get_or_create_dataset(s, "other")
        images = {}
        for key, color in (("a.png", (255, 0, 0)), ("b.png", (0, 255, 0)), ("c.png", (0, 0, 255))):
            img, _ = add_image(s, ws, ds.id, decode_image(_png(color)), key, meta={"colour": list(color)})
            images[key] = img
            sha[key] = img.sha256
        ids = {key: {} for key in images}
        for key, img in images.items():
            ids[key]["alttext"] = add_caption(s, img.id, "alttext", f"alt of {key}", source="import:t.csv").id
        a, b, c = images["a.png"].id, images["b.png"].id, images["c.png"].id
        # recap_long: two runs on a.png, the newer one wins; b.png has one; c.png none
        add_caption(s, a, "recap_long", "old recap of a", run_id=7, provenance={"model": "tiny"})
        ids["a.png"]["recap_long"] = add_caption(s, a, "recap_long", "new recap of a", run_id=8).id
        ids["b.png"]["recap_long"] = add_caption(s, b, "recap_long", "recap of b", run_id=8).id
        # human_short on a.png: bob writes after alice, but alice's is approved last -> alice's wins
        ca = revise_human_caption(s, a, "human_short", ann_a.id, "alice says a")
        cb = revise_human_caption(s, a, "human_short", ann_b.id, "bob says a")
        review_caption(s, cb.id, admin.id, approve=True)
        review_caption(s, ca.id, admin.id, approve=True)
        ids["a.png"]["human_short"] = ca.id
        # human_short on b.png: only submitted -> not exported
        revise_human_caption(s, b, "human_short", ann_a.id, "pending b")
        # human_long on c.png: approved first revision, then a rejected newer one is current -> not exported
        first = revise_human_caption(s, c, "human_long", ann_a.id, "long c v1")
        review_caption(s, first.id, admin.id, approve=True)
        second = revise_human_caption(s, c, "human_long", ann_a.id, "long c v2")
        review_caption(s, second.id, admin.id, approve=False, comment="missing the blue")
        # human_long on b.png: approved, current
        hb = revise_human_caption(s, b, "human_long", ann_b.id, "long b, by bob\nwith a second line")
        review_caption(s, hb.id, admin.id, approve=True)
        ids["b.png"]["human_long"] = hb.id
    expected = {
        "a.png": {
            "alttext": "alt of a.png",
            "recap_long": "new recap of a",
            "human_short": "alice says a",
            "human_long": None,
        },
        "b.png": {
            "alttext": "alt of b.png",
            "recap_long": "recap of b",
            "human_short": None,
            "human_long": "long b, by bob\nwith a second line",
        },
        "c.png": {"alttext": "alt of c.png", "recap_long": None, "human_short": None, "human_long": None},
    }
    return Fixture(ws=ws, sha=sha, expected=expected, caption_ids=ids)


KINDS = ("alttext", "human_short", "human_long", "recap_long")
ANNOTATOR = {"human_short": "alice", "human_long": "bob"}


def _check_record(rec: dict, data: Fixture) -> None:
    key = rec["original_key"]
    assert rec["sha256"] == data.sha[key]
    assert (rec["width"], rec["height"]) == (32, 24)
    assert json.loads(rec["meta"])["colour"]
    assert rec["file_name"] == f"{rec['key']}.png"
    for kind in KINDS:
        want = data.expected[key][kind]
        assert rec[f"caption_{kind}"] == want, (key, kind)
        prov = rec[f"provenance_{kind}"]
        if want is None:
            assert prov is None
            continue
        prov = json.loads(prov)
        assert prov["caption_id"] == data.caption_ids[key][kind]
        assert prov["kind"] == kind and prov["created_at"]
        if kind in ANNOTATOR:
            assert prov["status"] == "approved" and prov["reviewed_by"] == "boss"
            assert prov["annotator"] in ("alice", "bob") and prov["run_id"] is None
        elif kind == "recap_long":
            assert prov["run_id"] == 8 and prov["annotator"] is None and prov["status"] == "final"
        else:
            assert prov["source"] == "import:t.csv"


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def test_export_jsonl(data: Fixture) -> None:
    report = export_dataset(data.ws, "toy", "jsonl", "toy-jsonl")
    assert report.path == data.ws.exports_dir / "toy-jsonl"
    summary = report.as_dict()
    assert summary["images"] == 3 and summary["format"] == "jsonl" and summary["dataset"] == "toy"
    assert summary["captions"] == {"alttext": 3, "human_short": 1, "human_long": 1, "recap_long": 2}
    lines = (report.path / "metadata.jsonl").read_text().splitlines()
    assert len(lines) == 3
    for line in lines:
        rec = json.loads(line)
        _check_record(rec, data)
        assert _sha((report.path / rec["file_name"]).read_bytes()) == rec["sha256"]
    assert "caption" not in json.loads(lines[0])  # only with --kind


def test_export_parquet(data: Fixture) -> None:
    import pyarrow.parquet as pq

    report = export_dataset(data.ws, "toy", "parquet", "toy-parquet", kind="recap_long")
    table = pq.read_table(report.path / "data.parquet")
    assert table.num_rows == 3
    assert {f"caption_{k}" for k in KINDS} | {f"provenance_{k}" for k in KINDS} <= set(table.column_names)
    for rec in table.to_pylist():
        _check_record(rec, data)
        assert _sha(rec["image"]["bytes"]) == rec["sha256"]
        assert rec["caption"] == data.expected[rec["original_key"]]["recap_long"]
    assert b"huggingface" in table.schema.metadata  # datasets decodes the image column


def test_export_webdataset(data: Fixture) -> None:
    report = export_dataset(data.ws, "toy", "webdataset", "toy-wds", progress=None, shard_size=2)
    shards = sorted(report.path.glob("*.tar"))
    assert [p.name for p in shards] == ["shard-000000.tar", "shard-000001.tar"] and report.files == 2
    members: dict[str, bytes] = {}
    for shard in shards:
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                members[m.name] = tar.extractfile(m).read()
    keys = sorted({name.split(".")[0] for name in members})
    assert len(keys) == 3
    for key in keys:
        rec = json.loads(members[f"{key}.json"])
        _check_record(rec, data)
        assert _sha(members[f"{key}.png"]) == rec["sha256"]
        assert members[f"{key}.txt"].decode() == rec["caption_alttext"]  # no --kind: alt-text


def test_export_webdataset_kind_missing_txt(data: Fixture) -> None:
    report = export_dataset(data.ws, "toy", "webdataset", "toy-wds-h", kind="human_long")
    assert report.missing_kind == 2
    with tarfile.open(report.path / "shard-000000.tar") as tar:
        names = tar.getnames()
    assert sum(n.endswith(".txt") for n in names) == 1 and sum(n.endswith(".json") for n in names) == 3


def test_export_hf(data: Fixture) -> None:
    import datasets

    report = export_dataset(data.ws, "toy", "hf", "toy-hf", kind="alttext")
    ds = datasets.load_from_disk(str(report.path))
    assert len(ds) == 3 and isinstance(ds.features["image"], datasets.Image)
    for row in ds:
        assert row["image"].size == (32, 24)
        _check_record(row, data)
        assert row["caption"] == row["caption_alttext"]
    assert not list(report.path.parent.glob(".*"))  # staging files are gone


def test_export_folder(data: Fixture) -> None:
    report = export_dataset(data.ws, "toy", "folder", "toy-folder", kind="recap_long")
    summary = report.as_dict()
    assert (
        summary["images"] == 2 and summary["missing_kind"] == 1 and summary["captions"] == {"recap_long": 2}
    )
    txts = sorted(report.path.glob("*.txt"))
    assert len(txts) == 2 and len(list(report.path.glob("*.png"))) == 2
    by_sha = {v: k for k, v in data.sha.items()}
    for txt in txts:
        key = by_sha[_sha(txt.with_suffix(".png").read_bytes())]
        assert txt.read_text() == data.expected[key]["recap_long"]


def test_export_folder_human_kind_uses_latest_approval(data: Fixture) -> None:
    report = export_dataset(data.ws, "toy", "folder", "short", kind="human_short")
    assert [p.read_text() for p in report.path.glob("*.txt")] == ["alice says a"]


def test_export_refuses_to_overwrite_and_bad_requests(data: Fixture, tmp_path: Path) -> None:
    ws = data.ws
    taken = ws.exports_dir / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    for fmt in FORMATS:
        with pytest.raises(ExportError, match="not empty"):
            export_dataset(ws, "toy", fmt, "taken", kind="alttext")
    assert [p.name for p in taken.iterdir()] == ["keep.txt"] and (taken / "keep.txt").read_text() == "mine"
    (ws.exports_dir / "a-file").write_text("x")
    with pytest.raises(ExportError, match="is a file"):
        export_dataset(ws, "toy", "jsonl", "a-file")
    with pytest.raises(ExportError, match="unknown export format"):
        export_dataset(ws, "toy", "zip", "x1")
    with pytest.raises(ExportError, match="no dataset named"):
        export_dataset(ws, "nope", "jsonl", "x2")
    with pytest.raises(ExportError, match="--kind"):
        export_dataset(ws, "toy", "folder", "x3")
    with pytest.raises(ExportError, match="no recap_short captions"):
        export_dataset(ws, "toy", "folder", "x4", kind="recap_short")
    with pytest.raises(ExportError):
        export_dataset(ws, "toy", "jsonl", "../outside")
    assert not (ws.home / "outside").exists()
    assert sorted(p.name for p in ws.exports_dir.iterdir()) == ["a-file", "taken"]  # nothing half-written

    # an empty existing folder and an absolute path are fine
    (tmp_path / "empty").mkdir()
    report = export_dataset(ws, "toy", "jsonl", tmp_path / "empty")
    assert report.images == 3 and (tmp_path / "empty" / "metadata.jsonl").exists()
    # an empty dataset exports nothing, but validly
    assert export_dataset(ws, "other", "parquet", "other").images == 0


def test_export_failure_leaves_nothing(data: Fixture) -> None:
    from backend.storage import image_path

    image_path(data.ws, data.sha["b.png"], "png").unlink()
    with pytest.raises(ExportError, match="missing"):
        export_dataset(data.ws, "toy", "parquet", "broken")
    assert list(data.ws.exports_dir.iterdir()) == []


def test_export_progress_reports(data: Fixture) -> None:
    calls = []
    export_dataset(data.ws, "toy", "jsonl", "p", progress=lambda d, t, m: calls.append((d, t)))
    assert calls[0] == (0, 3) and calls[-1] == (3, 3)


def test_export_cli(tmp_path: Path) -> None:
    from backend.db import migrate
    from backend.demo import create_demo

    home = tmp_path / "home"
    ws = Workspace(home).ensure()
    migrate(ws)
    create_demo(ws)
    result = run_cli(home, "export", "demo-shapes", "--format", "jsonl", "--out", "demo-jsonl", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["images"] == 60 and summary["captions"]["human_long"] == 6
    assert summary["path"] == str(home / "exports" / "demo-jsonl")
    lines = (home / "exports" / "demo-jsonl" / "metadata.jsonl").read_text().splitlines()
    rec = json.loads(lines[0])
    assert json.loads(rec["provenance_alttext"])["details"]["demo_alttext_style"]
    assert json.loads(rec["meta"])["objects"]

    again = run_cli(home, "export", "demo-shapes", "--format", "jsonl", "--out", "demo-jsonl")
    assert again.returncode == 2 and "not empty" in again.stderr
    assert again.stderr.count("\n") == 1  # one clear line, however long the path
    folder = run_cli(
        home, "export", "demo-shapes", "--format", "folder", "--out", "f", "--kind", "human_short"
    )
    assert folder.returncode == 0, folder.stderr
    assert "Exported 6 images" in folder.stdout and "54 images had no human_short" in folder.stdout


# --------------------------------------------------------------------------- CSV injection (issue 9, §6)

FORMULA_CELLS = ["=1+1", "+SUM(A1:A9)", "-2+3", "@SUM(A1)", "\t=1", "\r=1", "'=1", "''@x", '=HYPERLINK("x")']
SAFE_CELLS = ["a cat", "", "1", "-0.5", "+3", "1e-4", "-.25", "'quoted", "x=1", "e-mail"]


def test_csv_cells_neutralise_formulas_and_keep_numbers() -> None:
    from backend.csv_cells import csv_cell

    for text in FORMULA_CELLS:
        assert csv_cell(text) == "'" + text, text
    for value in [*SAFE_CELLS, -0.5, -3, 0.0, None, True]:
        assert csv_cell(value) == value, value


def test_csv_text_undoes_csv_cell_exactly() -> None:
    """Export then import gives back every text; seeded strings over the risky characters."""
    import random

    from backend.csv_cells import csv_cell, csv_text

    seed = 9
    rng = random.Random(seed)
    alphabet = "'=+-@\t\r a1.e"
    texts = [*FORMULA_CELLS, *SAFE_CELLS] + [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6))) for _ in range(3000)
    ]
    for text in texts:
        assert csv_text(csv_cell(text)) == text, f"seed {seed}: {text!r}"


def test_arena_csv_exports_hold_no_formula_and_read_back_the_same(ws: Workspace, tmp_path: Path) -> None:
    import csv as csvlib

    from backend import arena

    hostile = tmp_path / "votes.csv"
    rows = [
        ["prompt", "left", "right", "winner", "annotator", "criterion"],
        ['=HYPERLINK("http://evil/")', "@sys", "-sys", "left", "+ann", "overall"],
        ["a cat", "@sys", "-sys", "right", "+ann", "overall"],
        ["a dog", "-sys", "@sys", "left", "plain", "overall"],
    ]
    with hostile.open("w", newline="") as fh:
        csvlib.writer(fh).writerows(rows)
    arena.import_votes_csv(ws, "hostile", hostile)

    exported = tmp_path / "export.csv"
    arena.export_votes_csv(ws, "hostile", exported)
    cells = [cell for row in csvlib.reader(exported.open(newline="")) for cell in row]
    risky = [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r") and not _is_number(c)]
    assert risky == [], risky
    assert '\'=HYPERLINK("http://evil/")' in cells and "'@sys" in cells and "'+ann" in cells

    arena.import_votes_csv(ws, "copy", exported)  # what we wrote reads back as the original names
    again = tmp_path / "again.csv"
    arena.export_votes_csv(ws, "copy", again)
    names = {r["annotator"] for r in csvlib.DictReader(again.open(newline=""))}
    assert names == {"'+ann", "plain"}  # i.e. "+ann" in the database, quoted again on the way out

    results = tmp_path / "results.csv"
    arena.export_results_csv(ws, "hostile", results, bootstrap_rounds=10)
    table = list(csvlib.DictReader(results.open(newline="")))
    assert {r["system"] for r in table} == {"'@sys", "'-sys"}
    assert all(_is_number(r["rating"]) for r in table)  # numeric columns stay plain numbers


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def test_automatic_metrics_csv_quotes_text_cells_not_numbers() -> None:
    from studio.results_auto import MetricRow, csv_text

    row = MetricRow(
        dataset="=cmd|'/C calc'!A0", checkpoint="@ckpt", caption_condition="-", mix="recap_mix",
        captioners="", regime="raw", metric="clip_score", value=-0.5, stderr=0.25, n=4, model="ViT",
        weights="+w", reference="", eval_run=3, evaluated_at="2030-01-01T00:00:00",
    )  # fmt: skip
    text = csv_text([row])
    import csv as csvlib

    record = next(csvlib.DictReader(io.StringIO(text)))
    assert record["dataset"] == "'=cmd|'/C calc'!A0" and record["checkpoint"] == "'@ckpt"
    assert record["caption_condition"] == "'-" and record["weights"] == "'+w"
    assert record["value"] == "-0.5" and record["stderr"] == "0.25" and record["n"] == "4"
