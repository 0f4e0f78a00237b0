"""The workspace: one folder that holds everything the studio stores.

Why a single folder: users can back it up, move it, or delete it as a unit, and every
path the studio writes can be checked against one root (nothing is ever written outside).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "RECAP_STUDIO_HOME"
DB_URL_ENV = "RECAP_STUDIO_DB_URL"  # a database URL (postgresql://...) instead of the folder's studio.db
PRIVATE_DIR_MODE = 0o700  # new workspace folders: the owner only (mkdir applies the umask on top)
PRIVATE_FILE_MODE = 0o600  # the database and its -wal / -shm files
DEFAULT_HOME = Path.home() / "recap-studio"


class UnsafePathError(ValueError):
    """A path built from user input would leave the folder it must stay in."""


def safe_join(root: Path, relative: str | os.PathLike[str]) -> Path:
    """Join ``relative`` under ``root``, refusing anything that could escape it.

    Refused: absolute paths, ``..`` components, and any existing component that is a
    symlink (a link inside the source could point anywhere). The result is also checked
    after resolution, so a symlinked ``root`` itself is fine but nothing below it may jump out.
    """
    rel = str(relative).replace("\\", "/")
    if not rel or rel.startswith("/") or (len(rel) > 1 and rel[1] == ":"):
        raise UnsafePathError(f"absolute path not allowed: {relative!s}")
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise UnsafePathError(f"path leaves its folder ('..'): {relative!s}")
    if not parts:
        raise UnsafePathError(f"empty path: {relative!s}")
    root_resolved = root.resolve()
    current = root_resolved
    for part in parts:
        current = current / part
        if current.is_symlink():
            raise UnsafePathError(f"symbolic link not allowed: {relative!s}")
    resolved = current.resolve()
    if resolved != root_resolved and root_resolved not in resolved.parents:
        raise UnsafePathError(f"path resolves outside its folder: {relative!s}")
    return current


@dataclass(frozen=True)
class Workspace:
    """Where the database, images, runs and exports of one studio live.

    ``db`` names the database when it is not the folder's own ``studio.db`` (a PostgreSQL URL
    for a team); None reads ``RECAP_STUDIO_DB_URL``, then falls back to ``studio.db``. Images,
    runs and exports stay in the folder either way.
    """

    home: Path
    db: str | None = None

    @property
    def db_path(self) -> Path:
        return self.home / "studio.db"

    @property
    def db_url(self) -> str:
        return self.db or os.environ.get(DB_URL_ENV) or self.default_db_url

    @property
    def default_db_url(self) -> str:
        """The embedded database: ``studio.db`` in the folder (SQLite)."""
        return f"sqlite:///{self.db_path}"

    @property
    def images_dir(self) -> Path:
        return self.home / "images"

    @property
    def thumbs_dir(self) -> Path:
        return self.home / "thumbs"

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @property
    def exports_dir(self) -> Path:
        return self.home / "exports"

    @property
    def uploads_dir(self) -> Path:
        return self.home / "uploads"

    def ensure(self) -> Workspace:
        """Create the folders that are missing, readable by their owner only (0700).

        Why private: the workspace holds password hashes, unreviewed captions and images that
        may not be public. Folders that exist already keep their mode (a team may share one on
        purpose); the database file gets the same rule in :mod:`backend.db`.
        """
        for d in (
            self.home,
            self.images_dir,
            self.thumbs_dir,
            self.runs_dir,
            self.exports_dir,
            self.uploads_dir,
        ):
            if not d.is_dir():
                d.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        return self

    def inside(self, relative: str | os.PathLike[str]) -> Path:
        """A path inside the workspace built from user input, guarded by :func:`safe_join`."""
        return safe_join(self.home, relative)


def resolve_home(home: str | os.PathLike[str] | None = None) -> Path:
    """``--home`` wins, then ``RECAP_STUDIO_HOME``, then ``~/recap-studio``."""
    if home:
        return Path(home).expanduser().resolve()
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return DEFAULT_HOME.resolve()


def open_workspace(home: str | os.PathLike[str] | None = None, db: str | None = None) -> Workspace:
    return Workspace(resolve_home(home), db or None).ensure()
