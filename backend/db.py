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

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, event
from sqlmodel import Session, create_engine

from backend.workspace import Workspace

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


@lru_cache(maxsize=16)
def engines(url: str) -> tuple[Engine, Engine]:
    """(read engine, write engine) for a database URL, created once per process."""
    if url.startswith("sqlite"):
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
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(ws: Workspace) -> None:
    """Bring the workspace database to the newest schema (creates it on first use)."""
    ws.ensure()
    command.upgrade(alembic_config(ws.db_url), "head")
