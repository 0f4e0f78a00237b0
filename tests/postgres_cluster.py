"""A private PostgreSQL server for the tests and benchmarks: ``initdb`` + ``pg_ctl`` in a temp folder.

Why a real server started here: the PostgreSQL paths (the append-only trigger, ``SKIP LOCKED``
claims, advisory locks, the copy command) are only tested by running them on PostgreSQL, and a
server of our own needs no service, no password and no network: it listens on a unix socket in
its own folder only (``listen_addresses=''``), on a port checked free so the socket's name cannot
meet another cluster's.

Run as root (CI containers, this machine), ``initdb`` and ``postgres`` refuse to start, so they
run as the ``postgres`` system user through ``runuser`` (or ``su``); run as anyone else, as that
user. The binaries are found on ``$RECAP_STUDIO_PG_BIN``, then on PATH, then in Debian's
``/usr/lib/postgresql/<version>/bin``.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

PG_BIN_ENV = "RECAP_STUDIO_PG_BIN"
TEMPLATE = "recap_template"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries here, or the server would not start; the message says which."""


def find_bin_dir() -> Path:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``."""
    candidates = []
    if os.environ.get(PG_BIN_ENV):
        candidates.append(Path(os.environ[PG_BIN_ENV]))
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for folder in candidates:
        if all((folder / name).exists() for name in ("initdb", "pg_ctl", "postgres")):
            return folder
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: install Debian's "
        f"postgresql package (apt-get install postgresql) or point ${PG_BIN_ENV} at their folder"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user() -> list[str]:
    """The command prefix that runs a server binary as a user it accepts."""
    if os.geteuid() != 0:
        return []
    if shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--"]
    return ["su", "postgres", "-s", "/bin/sh", "-c", '"$0" "$@"']


@dataclass
class PostgresCluster:
    """A running private cluster; :meth:`url` names a database on it."""

    root: Path
    port: int
    bin_dir: Path
    settings: dict[str, str] = field(default_factory=dict)
    _names: itertools.count = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        """``postgresql://`` URL of ``database`` over the cluster's unix socket, as the superuser."""
        return f"postgresql://postgres@/{database}?host={self.root}&port={self.port}"

    def _server(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*_as_server_user(), *args], capture_output=True, text=True, timeout=timeout, cwd=self.root
        )
        if result.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise PostgresUnavailable(
                f"{Path(args[0]).name} failed ({result.returncode}): {result.stderr.strip()}\n{tail}"
            )
        return result

    def start(self) -> PostgresCluster:
        self._server(
            str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
            "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        options = {"listen_addresses": "''", "unix_socket_directories": str(self.root), **self.settings}
        flags = " ".join(f"-c {k}={v}" for k, v in options.items())
        self._server(
            str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.root / "server.log"),
            "-o", f"-p {self.port} {flags}", "-w", "-t", "60", "start",
        )  # fmt: skip
        return self

    def stop(self) -> None:
        with contextlib.suppress(PostgresUnavailable, subprocess.TimeoutExpired):
            self._server(
                str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"
            )
        shutil.rmtree(self.root, ignore_errors=True)

    def execute(self, *statements: str, database: str = "postgres") -> None:
        """Run statements outside a transaction (CREATE / DROP DATABASE)."""
        import psycopg

        with psycopg.connect(host=str(self.root), port=self.port, user="postgres", dbname=database) as conn:
            conn.autocommit = True
            for statement in statements:
                conn.execute(statement)  # type: ignore[arg-type]

    def new_database(self, template: str | None = TEMPLATE, prefix: str = "t") -> str:
        """A fresh database (a copy of ``template``, a migrated empty workspace) and its URL."""
        with self._lock:
            name = f"{prefix}{next(self._names)}"
        copy = f" TEMPLATE {template}" if template else ""
        self.execute(f"CREATE DATABASE {name}{copy}")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop a database made by :meth:`new_database` (connections still open are ended)."""
        from sqlalchemy import make_url

        name = make_url(url).database
        self.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# Settings for a throwaway test cluster: nothing here must survive a crash, so nothing is synced.
TEST_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
}


def start_cluster(settings: dict[str, str] | None = None) -> PostgresCluster:
    """Start a private cluster in a fresh temp folder (owned by the server's user when run as root)."""
    bin_dir = find_bin_dir()
    # short and outside pytest's 0700 temp tree: the server user must reach it, and a unix
    # socket path must stay under ~100 characters
    root = Path(tempfile.mkdtemp(prefix="recap-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    cluster = PostgresCluster(root, _free_port(), bin_dir, dict(settings or {}))
    try:
        return cluster.start()
    except BaseException:
        cluster.stop()
        raise


def make_template(cluster: PostgresCluster) -> None:
    """Create :data:`TEMPLATE`: an empty workspace database at the newest migration, so each test's
    database is a file copy instead of a run of every migration."""
    from backend.db import dispose_engines, migrate
    from backend.workspace import Workspace

    cluster.execute(f"CREATE DATABASE {TEMPLATE}")
    url = cluster.url(TEMPLATE)
    migrate(Workspace(cluster.root / "template-home", url))
    dispose_engines(url)  # CREATE DATABASE ... TEMPLATE needs it without connections
    shutil.rmtree(cluster.root / "template-home", ignore_errors=True)
