"""The demo workspace built once per test module, and copies of it per test.

Building the demo (migrations, rendered images, captions, users) takes seconds; a copy of its
folder takes milliseconds. Use it from a test module with::

    pytest_plugins = ("tests.demo_workspace",)

    def test_something(demo_ws):          # a private copy: write to it freely
        ...

``demo_home`` is the module's read-only original; ``tiny_clip`` a tiny open_clip model
(name, weights file) built offline once per module.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from backend.db import migrate
from backend.demo import create_demo
from backend.workspace import Workspace


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo workspace, built once per module; tests work on copies."""
    ws = Workspace(tmp_path_factory.mktemp("demo") / "home").ensure()
    migrate(ws)
    create_demo(ws)
    with sqlite3.connect(ws.db_path) as con:  # fold the WAL into the file so a copy is complete
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return ws.home


@pytest.fixture
def demo_ws(demo_home: Path, tmp_path: Path) -> Workspace:
    home = tmp_path / "home"
    shutil.copytree(demo_home, home)
    return Workspace(home)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    from training.clip import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))
