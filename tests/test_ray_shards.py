"""Corpora too large for the workspace: shards registered by reference, and Review paging through them.

Real tar and Parquet shards in the test's folder, a real SQLite workspace, the real importer and
Review queries; nothing is copied into ``images/`` at registration, and what Review shows is
read out of the shards (checked against each image's SHA-256). The Ray engine of the same
import runs in ``tests/test_ray_recaption.py`` against the session's cluster.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel, col, select

from backend import jobs
from backend.db import engines, read_session
from backend.ingest.by_reference import register_shards
from backend.ingest.report import SourceError
from backend.jobs.configs import new_run
from backend.models import Caption, Image
from backend.review import gallery_page, image_variants
from backend.shards import Shard, ShardMember
from backend.workspace import Workspace
from tests.conftest import run_cli
from tests.ingest_fixtures import Member, image_bytes, sample, truncated_jpeg, write_tar

pytest_plugins = ("tests.tiny_models",)
pytestmark = pytest.mark.timeout(300)


def build_shards(root: Path) -> Path:
    """Two tars (5 + 3 samples, one corrupt image, one image repeated) and one Parquet file (4 rows
    in row groups of 2): 12 distinct images."""
    folder = root / "shards"
    members: list[Member] = []
    for i in range(5):
        members += sample(f"a/{i:04d}", i, caption=f"alt text {i}")
    members.append(Member("a/bad.jpg", truncated_jpeg()))
    write_tar(folder / "part-0000.tar", members)
    again = sample("b/dup", 1, caption="the same picture as a/0001")
    write_tar(folder / "part-0001.tar", sum((sample(f"b/{i}", 10 + i, caption="b") for i in range(3)), []) + again)
    table = pa.table({"image": [image_bytes(20 + i) for i in range(4)], "caption": [f"row {i}" for i in range(4)]})
    pq.write_table(table, folder / "part-0002.parquet", row_group_size=2)
    return folder


def image_ids(ws: Workspace) -> list[int]:
    with read_session(ws) as s:
        return [int(i) for i in s.exec(select(Image.id).order_by(col(Image.id))).all()]


def stored_files(ws: Workspace) -> list[Path]:
    return [p for p in ws.images_dir.rglob("*") if p.is_file()]


def test_registration_copies_nothing_and_review_pages_through_the_shards(ws: Workspace, tmp_path: Path) -> None:
    folder = build_shards(tmp_path)
    report = register_shards(ws, folder, "corpus")
    assert (report.imported, report.duplicates) == (12, 1), report.as_dict()
    assert [s.item for s in report.skipped] == ["part-0000.tar:a/bad"]
    assert "truncated" in report.skipped[0].reason  # the same rule as an ordinary import
    assert stored_files(ws) == [] and not any(ws.thumbs_dir.rglob("*.jpg"))
    with read_session(ws) as s:
        shards = s.exec(select(Shard).order_by(col(Shard.uri))).all()
        assert [(sh.format, sh.members) for sh in shards] == [("webdataset", 5), ("webdataset", 3), ("parquet", 4)]
        for shard in shards:  # the whole-file hash the scan computed in its one pass
            assert shard.sha256 == hashlib.sha256(Path(shard.uri).read_bytes()).hexdigest()
        assert len(s.exec(select(ShardMember)).all()) == 12
        alt = s.exec(select(Caption.text).where(Caption.kind == "alttext")).all()
    assert len(alt) == 12 and "alt text 3" in alt and "row 2" in alt

    # a rerun registers nothing twice: every shard is already there, whole
    again = register_shards(ws, folder, "corpus")
    assert (again.imported, again.duplicates, again.skipped) == (0, 12, [])

    # Review: pages of 5, thumbnails read out of the shards on demand, one page at a time
    first = gallery_page(ws, "corpus", page_size=5)
    assert (first.total, first.pages) == (12, 3)
    assert len(list(ws.thumbs_dir.rglob("*.jpg"))) == 5  # only the page shown
    last = gallery_page(ws, "corpus", page=2, page_size=5)
    assert len(last.items) == 2
    for _, thumb, _ in first.items + last.items:
        assert Path(thumb).is_file() and Path(thumb).name != "unavailable.jpg"
    # opening an image reads its original out of the shard: the very bytes that were registered
    with read_session(ws) as s:
        parquet_image = s.exec(select(Image).where(col(Image.original_key).contains("parquet"))).first()
    assert parquet_image is not None
    detail = image_variants(ws, int(parquet_image.id))  # type: ignore[arg-type]
    assert hashlib.sha256(Path(detail.path).read_bytes()).hexdigest() == parquet_image.sha256
    assert [v.kind for v in detail.variants] == ["alttext"]


def test_a_changed_shard_is_refused_and_review_says_why(ws: Workspace, tmp_path: Path) -> None:
    folder = build_shards(tmp_path)
    register_shards(ws, folder, "corpus")
    tar = folder / "part-0001.tar"
    data = bytearray(tar.read_bytes())
    with read_session(ws) as s:
        image, offset = s.exec(
            select(Image, ShardMember.offset)
            .join(ShardMember, col(ShardMember.image_id) == col(Image.id))
            .where(Image.original_key == "part-0001.tar:b/0")
        ).one()
    data[offset + 100] ^= 0xFF  # same size, other bytes: the member is no longer the registered image
    tar.write_bytes(bytes(data))
    page = gallery_page(ws, "corpus", page_size=50)
    thumbs = {image_id: Path(path).name for image_id, path, _ in page.items}
    assert thumbs[int(image.id)] == "unavailable.jpg"  # type: ignore[arg-type]
    assert list(thumbs.values()).count("unavailable.jpg") == 1  # the others still show
    detail = image_variants(ws, int(image.id))  # type: ignore[arg-type]
    assert "shard changed" in (detail.meta or {}).get("unavailable", "")
    assert detail.variants  # its captions are still there to read

    tar.write_bytes(bytes(data) + b"\0" * 512)  # a different size: registering it again is refused
    report = register_shards(ws, folder, "corpus")
    assert [s.item for s in report.skipped] == ["part-0001.tar"]
    assert "changed since it was registered" in report.skipped[0].reason


def test_shards_that_cannot_be_read_by_offset_are_refused_with_the_fix(ws: Workspace, tmp_path: Path) -> None:
    gz = write_tar(tmp_path / "gz" / "part.tar.gz", sample("k", 1), mode="w:gz")
    with pytest.raises(SourceError, match="compressed.*decompress"):
        register_shards(ws, gz.parent, "corpus")
    disguised = tmp_path / "disguised" / "part.tar"  # gzip under a .tar name: found by its magic bytes
    disguised.parent.mkdir()
    disguised.write_bytes(gz.read_bytes())
    report = register_shards(ws, disguised.parent, "corpus")
    assert report.imported == 0 and "compressed" in report.skipped[0].reason
    paths = tmp_path / "paths.parquet"
    pq.write_table(pa.table({"image": ["a.jpg"], "caption": ["x"]}), paths)
    report = register_shards(ws, paths, "corpus")
    assert report.imported == 0 and "not image bytes" in report.skipped[0].reason
    with pytest.raises(SourceError, match="no .tar or .parquet shards"):
        register_shards(ws, tmp_path / "gz" / "nothing-*.tar", "corpus")


def test_cli_by_reference_and_the_local_engine_refuses_to_caption_what_it_cannot_read(
    tmp_path: Path, tiny_model_dir: Callable[[str], Path]
) -> None:
    home = tmp_path / "home"
    folder = build_shards(tmp_path)
    result = run_cli(home, "import", str(folder), "--dataset", "corpus", "--by-reference", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["imported"] == 12
    refused = run_cli(home, "import", str(folder), "--dataset", "x", "--engine", "ray")
    assert refused.returncode == 2 and "--by-reference" in refused.stderr
    ws = Workspace(home)
    run = new_run(ws, "recaption", {"dataset": "corpus", "captioner": str(tiny_model_dir("blip")), "num_workers": 0})
    final = jobs.run_foreground(ws, int(run.id))  # type: ignore[arg-type]
    assert final.status == "failed" and "registered by reference" in final.message
    assert "engine ray" in final.message


def test_the_migration_matches_the_tables(ws: Workspace) -> None:
    import backend.arena.models  # noqa: F401 - every table the migrations create
    import backend.evaluation  # noqa: F401
    import backend.jobs.models  # noqa: F401
    import backend.scores  # noqa: F401
    import backend.shards  # noqa: F401

    with engines(ws.db_url)[0].connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []
