"""Database engines and sessions.

SQLite is a first-class store here (WAL, foreign keys, busy timeout), and the same code
runs on PostgreSQL when ``RECAP_STUDIO_DB_URL`` names one.

Why two engines on one file: in WAL mode a deferred transaction that first reads and
then writes fails at once with SQLITE_BUSY if another writer committed in between (the
busy timeout does not apply to that case). Write sessions therefore start with
``BEGIN IMMEDIATE``, which queues writers on the busy timeout instead, so concurrent
annotators never see "database is locked".
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, event, make_url, text
from sqlmodel import Session, create_engine

from backend.workspace import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, Workspace

if TYPE_CHECKING:
    from alembic.config import Config

BUSY_TIMEOUT_MS = 30_000
MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _sqlite_engine(url: str, begin: str) -> Engine:
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
        pool_pre_ping=False,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # noqa: ANN001 - DB-API objects
        # let SQLAlchemy's "begin" event below issue BEGIN, not the sqlite3 module
        dbapi_connection.isolation_level = None
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # noqa: ANN001
        conn.exec_driver_sql(begin)

    return engine


def create_private_file(url: str) -> None:
    """Create a missing SQLite database file with mode 0600 before SQLite does.

    Why here: SQLite creates the file with 0644 (less the umask), readable by every local
    user, and it gives the -wal and -shm files it makes later the database file's own mode,
    so making the empty file private first keeps all three private. An existing file is left
    as it is; an empty file is a valid empty database.
    """
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if path.exists():
        return
    path.parent.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):  # another process made it first
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE))


@lru_cache(maxsize=16)
def engines(url: str) -> tuple[Engine, Engine]:
    """(read engine, write engine) for a database URL, created once per process."""
    if url.startswith("sqlite"):
        create_private_file(url)
        return _sqlite_engine(url, "BEGIN"), _sqlite_engine(url, "BEGIN IMMEDIATE")
    engine = create_engine(url, pool_pre_ping=True)
    return engine, engine


@contextmanager
def read_session(ws: Workspace) -> Iterator[Session]:
    with Session(engines(ws.db_url)[0], expire_on_commit=False) as session:
        yield session


@contextmanager
def write_session(ws: Workspace) -> Iterator[Session]:
    """A session whose transaction takes the write lock up front; commits on success."""
    with Session(engines(ws.db_url)[1], expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


_REVISION_LINE = re.compile(r'^(down_)?revision\s*(?::[^=]*)?=\s*["\']([^"\']+)["\']', re.MULTILINE)


@lru_cache(maxsize=1)
def head_revision() -> str | None:
    """The newest migration's revision id, read from the migration files (no alembic import).

    None when the chain cannot be read that simply (then :func:`migrate` asks alembic).
    """
    revisions, parents = set(), set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        found = dict((bool(down), rev) for down, rev in _REVISION_LINE.findall(path.read_text(encoding="utf-8")))
        if not found:
            continue  # not a migration (e.g. __init__.py)
        if False not in found:
            return None
        revisions.add(found[False])
        if True in found:
            parents.add(found[True])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def current_revision(ws: Workspace) -> str | None:
    """The revision the database is at, or None (new database, no alembic table, unreadable)."""
    if ws.db_url.startswith("sqlite") and not ws.db_path.exists():
        return None
    try:
        with engines(ws.db_url)[0].connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except Exception:  # noqa: BLE001 - any doubt: let alembic decide
        return None


def migrate(ws: Workspace) -> None:
    """Bring the workspace database to the newest schema (creates it on first use, private).

    A database already at the newest revision is left alone without importing alembic, which
    costs a noticeable part of the studio's start-up (bench/cold_start.py).
    """
    ws.ensure()
    if ws.db_url.startswith("sqlite"):
        create_private_file(ws.db_url)  # alembic opens the file with an engine of its own
    head = head_revision()
    if head is not None and current_revision(ws) == head:
        return
    from alembic import command

    command.upgrade(alembic_config(ws.db_url), "head")
