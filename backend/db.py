"""Database engines and sessions: SQLite embedded (the default), PostgreSQL for a team.

SQLite is a first-class store here (WAL, foreign keys, busy timeout); ``--db postgresql://...``
or ``RECAP_STUDIO_DB_URL`` runs the same code, migrations included, on PostgreSQL.

What a write session guarantees, and how each engine keeps it:

* **SQLite**: in WAL mode a deferred transaction that first reads and then writes fails at once
  with SQLITE_BUSY if another writer committed in between (the busy timeout does not apply to
  that case). Write sessions therefore start with ``BEGIN IMMEDIATE``, which queues writers on
  the busy timeout instead: writers run one at a time, so every read-check-write inside one
  write session is atomic, and concurrent annotators never see "database is locked".
* **PostgreSQL** (READ COMMITTED) runs writers side by side, so that atomicity must be asked
  for. A plain ``write_session`` asks for it wholesale: it takes one transaction-scoped advisory
  lock, exclusively (:data:`WRITERS_LOCK`), so it runs alone among writers exactly as under
  ``BEGIN IMMEDIATE`` and no code written against SQLite's guarantee can race. The hot paths of
  a team (annotation claims, drafts and submits; arena tickets and votes) were written for
  concurrency and open ``write_session(ws, concurrent=True)``: they take that lock *shared* (so
  they run side by side with each other, never beside an exclusive writer) and lock what they
  read and then change themselves — rows with ``SELECT ... FOR UPDATE [SKIP LOCKED]`` (which
  SQLite's dialect leaves out; BEGIN IMMEDIATE already holds more) and keyed advisory locks
  through :func:`lock` (a no-op on SQLite). Why not SERIALIZABLE with retries: a session is a
  ``with`` block that cannot be re-run from here, and its side effects (a run folder, a file)
  would run twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, event, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlmodel import Session, create_engine

from backend.workspace import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, Workspace

if TYPE_CHECKING:
    from alembic.config import Config

BUSY_TIMEOUT_MS = 30_000
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
POSTGRES_DRIVER = "postgresql+psycopg"  # psycopg 3; plain postgresql:// would mean psycopg2
# connections one process keeps to PostgreSQL: the studio serves each request in a thread
# (20 annotators at once), and a thread that waits for a pooled connection waits in Python,
# not in the database's fair lock queue
PG_POOL_SIZE, PG_MAX_OVERFLOW = 10, 30


class DatabaseURLError(ValueError):
    """A database URL the studio cannot use; the message says what it accepts."""


class DatabaseUnavailable(RuntimeError):
    """The database named by a good URL cannot be opened (server down, wrong password)."""


def redact(url: str | URL) -> str:
    """The URL with its password replaced by ``***`` (for messages and logs)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unreadable URL>"


def normalise_url(url: str) -> str:
    """``url`` in the form SQLAlchemy loads: ``postgresql://`` and ``postgres://`` use psycopg 3.

    Refuses anything but SQLite and PostgreSQL (through psycopg) with a message naming both forms.
    """
    accepted = "use sqlite:///path/to/studio.db or postgresql://user:password@host:5432/dbname"
    try:
        parsed = make_url(url.strip())
    except ArgumentError:
        raise DatabaseURLError(f"not a database URL: {url!r}; {accepted}") from None
    if parsed.get_backend_name() == "sqlite":
        return url.strip()
    if parsed.drivername in ("postgresql", "postgres", POSTGRES_DRIVER):
        if not parsed.database:
            raise DatabaseURLError(f"{redact(parsed)} names no database; {accepted}")
        return parsed.set(drivername=POSTGRES_DRIVER).render_as_string(hide_password=False)
    raise DatabaseURLError(f"unsupported database {redact(parsed)!r}; {accepted}")


def is_postgres(url: str) -> bool:
    return make_url(url).get_backend_name() in ("postgresql", "postgres")


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


def _postgres_engine(url: str) -> Engine:
    """One pool for reads and writes. Every connection works in UTC (timestamps are
    ``timestamptz``; plain SQL that prints one shows UTC as SQLite does) and waits at most the
    SQLite busy timeout for a lock, so a stuck writer fails the others as it would there."""
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=PG_POOL_SIZE,
        max_overflow=PG_MAX_OVERFLOW,
        connect_args={"options": f"-c timezone=UTC -c lock_timeout={BUSY_TIMEOUT_MS}"},
    )


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


_engines: dict[str, tuple[Engine, Engine]] = {}
_engines_lock = threading.Lock()


def engines(url: str) -> tuple[Engine, Engine]:
    """(read engine, write engine) for a database URL, created once per process."""
    with _engines_lock:
        found = _engines.get(url)
        if found is None:
            target = normalise_url(url)
            if target.startswith("sqlite"):
                create_private_file(target)
                found = _sqlite_engine(target, "BEGIN"), _sqlite_engine(target, "BEGIN IMMEDIATE")
            else:
                engine = _postgres_engine(target)
                found = engine, engine
            _engines[url] = found
        return found


def dispose_engines(url: str) -> None:
    """Close this process's connections to ``url`` and forget its engines (before dropping or
    copying a database; the next session opens new ones)."""
    with _engines_lock:
        found = _engines.pop(url, None)
    for engine in set(found or ()):
        engine.dispose()


def lock_key(*parts: Any) -> int:
    """A signed 64-bit advisory-lock key for a name such as ``("arena-campaign", 7)``.

    Why a hash computed here: the keys of different purposes must never meet, and a stable
    hash of the whole name keeps them apart without a registry of numbers.
    """
    name = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(name, digest_size=8).digest(), "big", signed=True)


WRITERS_LOCK = lock_key("recap-studio", "writers")


def lock(session: Session, *parts: Any) -> None:
    """Hold the advisory lock named ``parts`` until the session's transaction ends (PostgreSQL).

    A no-op on SQLite, where a write session already holds the one database-wide write lock.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key(*parts)})


@contextmanager
def read_session(ws: Workspace) -> Iterator[Session]:
    with Session(engines(ws.db_url)[0], expire_on_commit=False) as session:
        yield session


@contextmanager
def write_session(ws: Workspace, *, concurrent: bool = False) -> Iterator[Session]:
    """A session whose transaction takes the write lock up front; commits on success.

    ``concurrent=True`` (PostgreSQL only; SQLite ignores it): the caller locks what it reads and
    then changes itself, so it may run beside other concurrent writers (see the module's doc).
    """
    engine = engines(ws.db_url)[1]
    with Session(engine, expire_on_commit=False) as session:
        if engine.dialect.name == "postgresql":
            how = "pg_advisory_xact_lock_shared" if concurrent else "pg_advisory_xact_lock"

            @event.listens_for(session, "after_begin")
            def _writers_lock(_session, _transaction, connection) -> None:  # noqa: ANN001
                # every transaction of the session, a commit in the middle of the block included
                connection.execute(text(f"SELECT {how}(:k)"), {"k": WRITERS_LOCK})

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
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return cfg


_REVISION_LINE = re.compile(r'^(down_)?revision\s*(?::[^=]*)?=\s*["\']([^"\']+)["\']', re.MULTILINE)


@lru_cache(maxsize=1)
def head_revision() -> str | None:
    """The newest migration's revision id, read from the migration files (no alembic import).

    None when the chain cannot be read that simply (then :func:`migrate` asks alembic).
    """
    revisions, parents = set(), set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        found = dict(
            (bool(down), rev) for down, rev in _REVISION_LINE.findall(path.read_text(encoding="utf-8"))
        )
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
    url = ws.db_url
    if url.startswith("sqlite") and not Path(make_url(url).database or ws.db_path).exists():
        return None
    try:
        with engines(url)[0].connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except Exception:  # noqa: BLE001 - any doubt: let alembic decide
        return None


def migrate(ws: Workspace) -> None:
    """Bring the workspace database to the newest schema (creates it on first use, private).

    A database already at the newest revision is left alone without importing alembic, which
    costs a noticeable part of the studio's start-up (bench/cold_start.py).
    """
    ws.ensure()
    url = normalise_url(ws.db_url)  # a bad URL is one clear line, before anything is opened
    if url.startswith("sqlite"):
        create_private_file(url)  # alembic opens the file with an engine of its own
    head = head_revision()
    if head is not None and current_revision(ws) == head:
        return
    from alembic import command

    try:
        command.upgrade(alembic_config(url), "head")
    except OperationalError as exc:  # server down, wrong password, no such database
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise DatabaseUnavailable(f"cannot open the database {redact(url)}: {reason}") from exc
