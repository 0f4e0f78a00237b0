"""``recap-studio migrate``: a SQLite workspace copied into PostgreSQL and back, every table's
count checked, every value equal after the round trip, and a target that holds data refused.

Runs the real CLI in a subprocess against the session's private PostgreSQL server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import MetaData, create_engine, select

from backend.db import dispose_engines, migrate, normalise_url
from backend.demo import PASSWORD_ENV, create_demo
from backend.users import add_user
from backend.workspace import DB_URL_ENV, Workspace
from tests.postgres_cluster import PostgresCluster

PROJECT = Path(__file__).resolve().parents[1]


def cli(home: Path, *args: str, db: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != DB_URL_ENV}
    command = [sys.executable, "-m", "studio.cli", "--home", str(home)]
    command += ["--db", db] if db else []
    return subprocess.run(command + list(args), capture_output=True, text=True, env=env, cwd=PROJECT)


def _plain(value: object) -> object:
    """PostgreSQL hands back timestamps with their zone (UTC), SQLite without: compare in UTC."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def table_rows(url: str) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table (alembic's own excepted), in primary-key order."""
    engine = create_engine(normalise_url(url))
    try:
        meta = MetaData()
        meta.reflect(bind=engine)
        with engine.connect() as conn:
            return {
                t.name: [tuple(map(_plain, r)) for r in conn.execute(select(t).order_by(*t.primary_key.columns))]
                for t in meta.sorted_tables
                if t.name != "alembic_version"
            }
    finally:
        engine.dispose()


@pytest.fixture
def demo_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.delenv(DB_URL_ENV, raising=False)
    monkeypatch.setenv(PASSWORD_ENV, "copy-test-password")
    ws = Workspace(tmp_path / "home").ensure()
    migrate(ws)
    create_demo(ws)
    return ws


def test_sqlite_to_postgresql_and_back_keeps_every_row(
    demo_home: Workspace, pg_cluster: PostgresCluster, tmp_path: Path
) -> None:
    pg_url = pg_cluster.new_database(template=None)  # a new, empty database: the copy migrates it
    try:
        before = table_rows(demo_home.default_db_url)
        assert sum(map(len, before.values())) > 100  # the demo fills many tables

        there = cli(demo_home.home, "migrate", "--to", pg_url, "--json")
        assert there.returncode == 0, there.stderr
        report = json.loads(there.stdout.strip().splitlines()[-1])
        assert report["rows"] == {name: len(rows) for name, rows in before.items()}
        assert "copy-test" not in there.stdout + there.stderr  # no password in what it prints
        assert table_rows(pg_url) == before

        # the copy moved PostgreSQL's id sequences past the copied ids: new rows get new ids
        pg_ws = Workspace(demo_home.home, pg_url)
        added = add_user(pg_ws, "newcomer", "annotator", "a-long-enough-password")
        assert added.id > max(row[0] for row in before["user"])
        dispose_engines(pg_url)

        # a target that already holds data is refused and left as it was
        again = cli(demo_home.home, "migrate", "--to", pg_url)
        assert again.returncode != 0
        assert "already holds data" in again.stderr and "user (" in again.stderr
        assert len(table_rows(pg_url)["user"]) == len(before["user"]) + 1

        # and back: the PostgreSQL workspace copied into a new folder's SQLite file
        back_home = tmp_path / "back"
        back = cli(demo_home.home, "migrate", "--to", str(back_home), "--json", db=pg_url)
        assert back.returncode == 0, back.stderr
        returned = table_rows(Workspace(back_home).default_db_url)
        returned["user"] = [row for row in returned["user"] if row[1] != "newcomer"]
        assert returned == before
    finally:
        dispose_engines(pg_url)
        pg_cluster.drop_database(pg_url)


def test_copy_refuses_the_same_database_and_a_bad_url(demo_home: Workspace) -> None:
    same = cli(demo_home.home, "migrate", "--to", str(demo_home.home))
    assert same.returncode != 0 and "same database" in same.stderr
    bad = cli(demo_home.home, "migrate", "--to", "mysql://x@y/z")
    assert bad.returncode != 0 and "unsupported database" in bad.stderr
