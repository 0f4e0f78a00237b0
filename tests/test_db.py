"""The SQLite store: schema by migration, pragmas, append-only history, concurrent writers."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy
from alembic.script import ScriptDirectory
from sqlmodel import func, select

from backend.captions import (
    add_caption,
    caption_history,
    current_captions,
    review_caption,
    revise_human_caption,
)
from backend.db import (
    alembic_config,
    current_revision,
    dispose_engines,
    head_revision,
    migrate,
    read_session,
    write_session,
)
from backend.models import Caption, Dataset, Image
from backend.users import add_user
from backend.workspace import DB_URL_ENV, Workspace

pytestmark = pytest.mark.engines("sqlite", "postgresql")


def _image(ws: Workspace, n: int = 1) -> list[int]:
    with write_session(ws) as s:
        dataset = Dataset(name=f"d{time.monotonic_ns()}")
        s.add(dataset)
        s.flush()
        images = [
            Image(
                dataset_id=dataset.id,
                sha256=f"{i:064x}",
                ext="png",
                width=1,
                height=1,
                nbytes=1,
                original_key=f"{i}.png",
            )
            for i in range(n)
        ]
        s.add_all(images)
        s.flush()
        return [im.id for im in images]


def test_fresh_workspace_is_at_the_newest_migration(ws: Workspace) -> None:
    head = ScriptDirectory.from_config(alembic_config(ws.db_url)).get_current_head()
    with read_session(ws) as s:
        assert s.exec(sqlalchemy.text("SELECT version_num FROM alembic_version")).one()[0] == head
    migrate(ws)  # idempotent
    with read_session(ws) as s:
        assert s.exec(sqlalchemy.text("SELECT count(*) FROM alembic_version")).one()[0] == 1


def test_a_database_at_the_newest_migration_starts_without_alembic(
    ws: Workspace, engine: str, request: pytest.FixtureRequest
) -> None:
    """The studio's start-up skips alembic (a slow import) when nothing is to migrate; the head
    it reads from the migration files is alembic's own."""
    assert head_revision() == ScriptDirectory.from_config(alembic_config(ws.db_url)).get_current_head()
    assert current_revision(ws) == head_revision()
    code = (
        "import sys; from pathlib import Path; from backend.db import migrate; "
        "from backend.workspace import Workspace; migrate(Workspace(Path(sys.argv[1]))); "
        "print('alembic' in sys.modules)"
    )

    def start(home: Path, url: str | None) -> str:
        env = {k: v for k, v in os.environ.items() if k != DB_URL_ENV} | ({DB_URL_ENV: url} if url else {})
        done = subprocess.run(
            [sys.executable, "-c", code, str(home)], capture_output=True, text=True, env=env
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert start(ws.home, ws.db) == "False"
    # a new workspace (an empty database): alembic creates the schema
    new_url = (
        request.getfixturevalue("pg_cluster").new_database(template=None) if engine == "postgresql" else None
    )
    new_home = ws.home.parent / "new-home"
    assert start(new_home, new_url) == "True"
    assert current_revision(Workspace(new_home, new_url)) == head_revision()
    if new_url:
        dispose_engines(new_url)


def test_sqlite_runs_in_wal_mode_with_foreign_keys_and_busy_timeout(ws: Workspace, engine: str) -> None:
    """SQLite: WAL, foreign keys on, a busy timeout. PostgreSQL: foreign keys are always on; its
    sessions work in UTC and wait for a lock no longer than SQLite's busy timeout."""
    with read_session(ws) as s:
        if engine == "sqlite":
            assert s.exec(sqlalchemy.text("PRAGMA journal_mode")).one()[0] == "wal"
            assert s.exec(sqlalchemy.text("PRAGMA foreign_keys")).one()[0] == 1
            assert s.exec(sqlalchemy.text("PRAGMA busy_timeout")).one()[0] >= 5000
        else:
            assert s.exec(sqlalchemy.text("SHOW timezone")).one()[0] == "UTC"
            assert s.exec(sqlalchemy.text("SHOW lock_timeout")).one()[0] == "30s"
    with pytest.raises(sqlalchemy.exc.IntegrityError), write_session(ws) as s:
        s.add(Caption(image_id=999_999, kind="alttext", text="orphan"))
        s.flush()


def test_human_edits_are_append_only_and_history_keeps_every_text(ws: Workspace) -> None:
    (image_id,) = _image(ws)
    ann = add_user(ws, "ann", "annotator", "pw-123456789")
    admin = add_user(ws, "boss", "admin", "pw-123456789")
    texts = ["a cat", "a black cat", "a black cat on a red sofa"]
    with write_session(ws) as s:
        for text in texts:
            last = revise_human_caption(s, image_id, "human_long", ann.id, text)
        again = revise_human_caption(s, image_id, "human_long", ann.id, texts[-1])
        assert again.id == last.id  # identical resubmission is not a new revision
        review_caption(s, last.id, admin.id, approve=False, comment="mention the window")
    with write_session(ws) as s:
        fixed = revise_human_caption(s, image_id, "human_long", ann.id, texts[-1] + " by a window")
    history = caption_history(ws, fixed.id)
    assert [c.text for c in history] == [*texts, texts[-1] + " by a window"]
    assert history[-2].status == "rejected" and history[-2].review_comment == "mention the window"
    assert [c.is_current for c in history] == [False, False, False, True]
    with read_session(ws) as s:
        current = [c for c in current_captions(s, image_id) if c.kind == "human_long"]
        assert [c.id for c in current] == [fixed.id]
    # the database itself refuses an in-place edit of text, whatever code path tries it
    with pytest.raises(sqlalchemy.exc.IntegrityError, match="append-only"), write_session(ws) as s:
        s.exec(
            sqlalchemy.text("UPDATE caption SET text = 'overwritten' WHERE id = :id").bindparams(
                id=history[0].id
            )
        )
    assert caption_history(ws, fixed.id)[0].text == "a cat"


def test_twenty_threads_writing_captions_at_once_lose_nothing(ws: Workspace) -> None:
    """20 writers at once, 15 writes each: zero errors and every acknowledged write is stored.

    A fixed number of writes, not a duration: how many writes a second this machine manages is
    a benchmark's question (bench/arena_load.py), not a test's."""
    image_ids = _image(ws, 8)
    users = [add_user(ws, f"writer{i}", "annotator", "pw-123456789") for i in range(20)]
    writes_each = 15
    acknowledged: Counter[tuple[str, int]] = Counter()  # (kind, writer) -> rows expected
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(len(users))

    def writer(index: int) -> None:
        user = users[index]
        start.wait()
        n = 0
        try:
            while n < writes_each:
                image_id = image_ids[n % len(image_ids)]
                with write_session(ws) as s:
                    if n % 2:
                        revise_human_caption(s, image_id, "human_short", user.id, f"w{index} edit {n}")
                        kind = "human_short"
                    else:
                        add_caption(s, image_id, "alttext", f"w{index} alt {n}", source=f"writer{index}")
                        kind = "alttext"
                with lock:
                    acknowledged[(kind, user.id)] += 1
                n += 1
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(len(users))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    total = sum(acknowledged.values())
    assert total == writes_each * len(users)
    print(f"20 writers: {total} acknowledged writes, 0 errors, 0 lost")
    with read_session(ws) as s:
        rows = s.exec(
            select(Caption.kind, Caption.annotator_id, Caption.source, func.count()).group_by(
                Caption.kind, Caption.annotator_id, Caption.source
            )
        ).all()
        stored: Counter[tuple[str, int]] = Counter()
        by_source = {u.id: f"writer{i}" for i, u in enumerate(users)}
        source_to_user = {v: k for k, v in by_source.items()}
        for kind, annotator_id, source, count in rows:
            stored[(kind, annotator_id if kind == "human_short" else source_to_user[source])] += count
        assert stored == acknowledged
        # exactly one current human caption per writer and image they touched
        dupes = s.exec(
            sqlalchemy.text(
                "SELECT image_id, annotator_id, count(*) FROM caption WHERE is_current AND annotator_id IS NOT NULL "
                "GROUP BY image_id, kind, annotator_id HAVING count(*) > 1"
            )
        ).all()
        assert dupes == []
