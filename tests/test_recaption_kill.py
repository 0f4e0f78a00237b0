"""Recaption survives kill -9 anywhere: every image ends with exactly one caption per kind.

A real recaption run (runner subprocess in its own process group, DataLoader worker, real
SQLite, the tiny BLIP through ``from_pretrained``) over the demo's 60 images is SIGKILLed —
process group and all — at seeded random moments: once during start-up, then at random
points of the caption stream (mostly inside ``generate``, sometimes between generate and the
batch's commit), and resumed each time. Batches are small and beam search makes each one
take a noticeable slice of time, so the kills land mid-run without any sleep in the job.
Set ``RECAPTION_KILL_SEED`` to replay a failure.
"""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import func
from sqlmodel import select

from backend import jobs
from backend.db import migrate, read_session
from backend.demo import DEMO_DATASET, create_demo
from backend.jobs.configs import new_run
from backend.jobs.launch import group_alive
from backend.models import Caption, Image
from backend.workspace import Workspace
from tests.conftest import wait_for as shared_wait_for

T = TypeVar("T")

pytest_plugins = ("tests.tiny_models",)
pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("recap_short", "recap_long")
CONFIG = {"dataset": DEMO_DATASET, "style": "both", "batch_size": 2, "num_workers": 1, "num_beams": 3,
          "max_new_tokens": 32, "torch_threads": 1}  # fmt: skip


@pytest.fixture
def demo_ws(tmp_path: Path) -> Workspace:
    ws = Workspace(tmp_path / "home").ensure()
    migrate(ws)
    create_demo(ws)
    with sqlite3.connect(ws.db_path) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return ws


def wait_for(check: Callable[[], T], timeout: float = 60.0, what: str = "") -> T:
    """The shared poll with a longer default (a resume reloads the model) and a short interval
    (the kill tests stop a run at a chosen point of its progress)."""
    return shared_wait_for(check, timeout, what, interval=0.02)


def written(ws: Workspace, run_id: int) -> int:
    with read_session(ws) as s:
        return int(s.exec(select(func.count()).select_from(Caption).where(Caption.run_id == run_id)).one())


def kill_group(ws: Workspace, run_id: int) -> None:
    run = jobs.get_run(ws, run_id)
    assert run.status == "running", f"run {run_id} is {run.status}, expected running: {run.message}"
    pgid = run.pgid or run.pid
    os.killpg(pgid, signal.SIGKILL)  # the runner and its DataLoader worker, at once
    wait_for(lambda: not group_alive(pgid), 10, f"group {pgid} to vanish")


def assert_exactly_once(ws: Workspace, run_id: int) -> None:
    with read_session(ws) as s:
        image_ids = set(s.exec(select(Image.id)).all())
        pairs = Counter(s.exec(select(Caption.image_id, Caption.kind).where(Caption.run_id == run_id)).all())
    expected = {(image_id, kind) for image_id in image_ids for kind in KINDS}
    assert set(pairs) == expected, (
        f"lost: {sorted(expected - set(pairs))[:5]}, extra: {sorted(set(pairs) - expected)[:5]}"
    )
    assert max(pairs.values()) == 1, f"duplicated: {[p for p, n in pairs.items() if n > 1][:5]}"


def test_kill9_at_random_moments_then_resume_writes_every_caption_exactly_once(
    demo_ws: Workspace, tiny_model_dir: Callable[[str], Path]
) -> None:
    ws = demo_ws
    seed = int(os.environ.get("RECAPTION_KILL_SEED", time.time_ns() % 100_000))
    rng = random.Random(seed)
    run = new_run(ws, "recaption", {**CONFIG, "captioner": str(tiny_model_dir("blip"))})
    run_id = int(run.id)  # type: ignore[arg-type]
    total = 60 * len(KINDS)
    # where the kills land, as numbers of captions already committed (5 of them, spread over the run)
    targets = sorted(rng.sample(range(4, total - 20, 2), 5))
    jobs.launch(ws, run_id)

    kills, seen = 0, [0]
    time.sleep(rng.uniform(0.1, 3.0))  # first kill: somewhere in start-up (imports, model load, batch 1)
    for target in [None, *targets]:
        if target is not None:
            wait_for(lambda t=target: written(ws, run_id) >= t, what=f"seed {seed}: {target} captions")
            time.sleep(rng.uniform(0.0, 0.25))  # anywhere inside the next batch (mostly in generate)
        kill_group(ws, run_id)
        kills += 1
        interrupted = wait_for(
            lambda: (r := jobs.get_run(ws, run_id)).status == "interrupted" and r, 15, "interrupted"
        )
        assert "SIGKILL" in interrupted.message
        now = written(ws, run_id)
        assert now >= seen[-1], f"seed {seed}: captions went from {seen[-1]} to {now}"
        seen.append(now)
        assert_partial_is_clean(ws, run_id)
        assert jobs.resume_run(ws, run_id).status in ("running", "succeeded")

    final = wait_for(
        lambda: (r := jobs.get_run(ws, run_id)).status in ("succeeded", "failed") and r, 120, "end"
    )
    assert final.status == "succeeded", f"seed {seed}: {final.message}\n{jobs.log_tail(ws, run_id, 40)}"
    assert kills == 6 and final.attempt == kills + 1
    assert seen[-1] < total, f"seed {seed}: the last kill came after the run had finished ({seen})"
    assert_exactly_once(ws, run_id)
    assert (final.done, final.total) == (total, total)
    log = jobs.log_tail(ws, run_id, 400)
    assert f"attempt {kills + 1} starting" in log  # (a kill in start-up can precede an attempt's log)
    # the attempts that got as far as planning started from exactly what was committed
    starts = [int(m) for m in re.findall(r"(\d+) already written", log)]
    assert starts == sorted(starts) and set(starts) <= set(seen), f"seed {seed}: {starts} vs {seen}"
    print(f"seed {seed}: captions committed at each kill {seen[1:]}, attempts started at {starts}")


def assert_partial_is_clean(ws: Workspace, run_id: int) -> None:
    """Between attempts: nothing twice, and only whole batches (one transaction writes both
    kinds for the batch's two images, so a half-written batch would show up here)."""
    with read_session(ws) as s:
        pairs = Counter(s.exec(select(Caption.image_id, Caption.kind).where(Caption.run_id == run_id)).all())
    assert not pairs or max(pairs.values()) == 1
    per_image = Counter(image_id for image_id, _kind in pairs)
    assert set(per_image.values()) <= {len(KINDS)}, "an image has one kind without the other"
    assert len(per_image) % CONFIG["batch_size"] == 0


def test_studio_restart_marks_the_orphan_interrupted_and_resume_completes_it(
    demo_ws: Workspace, tiny_model_dir: Callable[[str], Path]
) -> None:
    ws = demo_ws
    run = new_run(ws, "recaption", {**CONFIG, "captioner": str(tiny_model_dir("blip"))})
    run_id = int(run.id)  # type: ignore[arg-type]
    # launched by a short-lived process (a studio that then died): nobody is left to reap it
    launcher = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from backend.jobs import launch; "
            "from backend.workspace import Workspace; print(launch(Workspace(Path(sys.argv[1])), int(sys.argv[2])))",
            str(ws.home),
            str(run_id),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    pid = int(launcher.stdout.strip())
    wait_for(lambda: written(ws, run_id) >= 10, what="some captions")
    assert jobs.reconcile_orphans(ws) == []  # a live runner is left alone

    os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: not group_alive(pid), 10, "the runner's group to vanish")
    assert jobs.get_run(ws, run_id).status == "running"  # nobody noticed yet
    assert jobs.reconcile_orphans(ws) == [run_id]  # the studio starting again
    orphan = jobs.get_run(ws, run_id)
    assert orphan.status == "interrupted" and "is gone" in orphan.message
    before = written(ws, run_id)

    final = jobs.resume_run(ws, run_id, foreground=True)
    assert final.status == "succeeded", jobs.log_tail(ws, run_id, 40)
    assert final.attempt == 2 and before < 120
    assert_exactly_once(ws, run_id)


def test_a_retried_batch_inserts_nothing_twice(
    demo_ws: Workspace, tiny_model_dir: Callable[[str], Path]
) -> None:
    """The write path on its own: replaying a committed batch (as after a lost acknowledgement)
    is absorbed by the unique (image, kind, run) index."""
    from training.data import dataset_images
    from training.jobs.recaption import caption_row, caption_template, insert_captions

    ws = demo_ws
    run = new_run(ws, "recaption", {**CONFIG, "captioner": str(tiny_model_dir("blip"))})
    refs = dataset_images(ws, DEMO_DATASET)[:4]
    template = caption_template(int(run.id))  # type: ignore[arg-type]
    rows = [caption_row(template, r, kind, f"caption {r.image_id}", {}) for r in refs for kind in KINDS]
    assert insert_captions(ws, rows) == 8
    assert insert_captions(ws, rows) == 0
    more = rows + [
        caption_row(template, r, "recap_short", "x", {}) for r in dataset_images(ws, DEMO_DATASET)[4:6]
    ]
    assert insert_captions(ws, more) == 2
    assert written(ws, int(run.id)) == 10  # type: ignore[arg-type]
