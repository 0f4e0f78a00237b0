"""What the studio writes is readable by its owner only (issue 9, section 6c).

The workspace (password hashes, unreviewed captions) and the database with its -wal/-shm
files, the folders downloads are written to, and Gradio's copy of served files: each test
sets the usual umask 022 first, so what it checks is the code's choice, not the shell's.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy

from backend.db import migrate, read_session, write_session
from backend.workspace import Workspace, open_workspace
from tests.conftest import run_cli


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_workspace_and_its_database_are_private(tmp_path: Path) -> None:
    ws = open_workspace(tmp_path / "home")
    migrate(ws)
    with write_session(ws) as s:  # a write makes SQLite create the -wal and -shm files
        s.exec(sqlalchemy.text("CREATE TABLE IF NOT EXISTS probe (x INTEGER)"))
    with read_session(ws) as s:
        s.exec(sqlalchemy.text("SELECT count(*) FROM probe")).one()
        folders = [ws.home, ws.images_dir, ws.thumbs_dir, ws.runs_dir, ws.exports_dir, ws.uploads_dir]
        assert {str(d): oct(mode(d)) for d in folders} == {str(d): "0o700" for d in folders}
        db_files = [ws.db_path, ws.db_path.with_name("studio.db-wal"), ws.db_path.with_name("studio.db-shm")]
        assert all(p.exists() for p in db_files), [p.name for p in db_files if not p.exists()]
        assert {p.name: oct(mode(p)) for p in db_files} == {p.name: "0o600" for p in db_files}


def test_the_cli_creates_a_private_workspace(tmp_path: Path) -> None:
    home = tmp_path / "fresh"
    result = run_cli(home, "user", "add", "carol", "--password-stdin", stdin="carol-password\n")
    assert result.returncode == 0, result.stderr
    assert mode(home) == 0o700 and mode(home / "studio.db") == 0o600


def test_an_existing_folder_keeps_the_mode_its_owner_chose(tmp_path: Path) -> None:
    """A team may share a workspace on purpose: only what the studio creates is made private."""
    home = tmp_path / "shared"
    home.mkdir(mode=0o750)
    os.chmod(home, 0o750)
    ws = Workspace(home).ensure()
    migrate(ws)
    assert mode(home) == 0o750 and mode(ws.images_dir) == 0o700 and mode(ws.db_path) == 0o600


def test_the_metrics_download_goes_to_a_private_unpredictable_folder() -> None:
    from studio.results_auto import MetricRow, write_csv

    row = MetricRow(
        dataset="generated-run-1", checkpoint="ckpt", caption_condition="", mix="", captioners="",
        regime="raw", metric="clip_score", value=30.0, stderr=None, n=4, model="ViT-B-32",
        weights="", reference="", eval_run=1, evaluated_at="",
    )  # fmt: skip
    path = write_csv([row])
    folder = path.parent
    assert folder != Path("/tmp") / f"recap-studio-metrics-{os.getuid()}"  # the old fixed, shared path
    assert folder.name.startswith("recap-studio-downloads-") and mode(folder) == 0o700
    assert write_csv([row]) == path  # the same table reuses its file: no folder per page refresh


def test_gradio_copies_served_files_into_a_private_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    from studio.app import private_gradio_cache

    monkeypatch.delenv("GRADIO_TEMP_DIR", raising=False)
    folder = Path(private_gradio_cache())
    assert os.environ["GRADIO_TEMP_DIR"] == str(folder) and mode(folder) == 0o700
    monkeypatch.setenv("GRADIO_TEMP_DIR", "/srv/chosen")
    assert private_gradio_cache() == "/srv/chosen"  # a folder the user chose is kept
