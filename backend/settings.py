"""Workspace settings an admin changes at run time: a small JSON file, ``settings.json``.

Why a file and not a table: a handful of switches need no schema or migration, live with
the workspace they govern (backed up and moved with it), and a person can read them. The
file is replaced atomically and readable by its owner only; an unreadable or hand-broken
file reads as "all defaults" with a warning in the log instead of stopping the studio.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from backend.workspace import Workspace

FILE_NAME = "settings.json"
log = logging.getLogger(__name__)
_lock = threading.Lock()


def settings_path(ws: Workspace) -> Path:
    return ws.home / FILE_NAME


def read_all(ws: Workspace) -> dict[str, Any]:
    path = settings_path(ws)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable %s (%s); using defaults", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def get(ws: Workspace, key: str, default: Any = None) -> Any:
    return read_all(ws).get(key, default)


def put(ws: Workspace, key: str, value: Any) -> None:
    """Set one setting (a JSON value), keeping the others."""
    json.dumps(value)  # refuse what cannot be stored before touching the file
    with _lock:
        data = read_all(ws)
        data[key] = value
        path = settings_path(ws)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".settings-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=2, sort_keys=True)
                fh.write("\n")
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
