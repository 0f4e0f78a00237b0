"""Recaption, CLIP scoring and import by reference on a real Ray cluster.

One ``ray start --head --num-cpus 2`` per module (:mod:`tests.ray_cluster`); every run joins it
by address, as a user points the studio at a cluster, and is an ordinary run: a runner process
(the Ray driver) started by the job system, its progress and log in the database. The tiny
models are the ones the local tests use, loaded by ``from_pretrained`` inside the Ray actors.

The central check: a Ray worker holding the captioner is SIGKILLed mid-run (Ray Data restarts
the actor and resubmits its batch) and then the runner itself is SIGKILLed and the run resumed;
every image still ends with exactly one caption per kind. Kept lean for CI's two cores: small
batches of a one-beam tiny BLIP, one actor.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from sqlalchemy import func
from sqlmodel import col, select

from backend import jobs
from backend.db import migrate, read_session
from backend.demo import DEMO_DATASET
from backend.ingest.by_reference import register_shards
from backend.jobs.configs import ConfigError, new_run
from backend.jobs.launch import group_alive
from backend.models import Caption, Image
from backend.scores import CaptionScore
from backend.shards import Shard, ShardMember
from backend.workspace import Workspace
from tests.conftest import wait_for as shared_wait_for
from tests.test_ray_shards import build_shards

if TYPE_CHECKING:
    from tests.ray_cluster import RayCluster

T = TypeVar("T")

pytest_plugins = ("tests.tiny_models", "tests.ray_cluster", "tests.demo_workspace")
pytestmark = pytest.mark.timeout(300)

KINDS = ("recap_short", "recap_long")
# one beam, short outputs, batches of 3: the run lasts long enough to be hit mid-way, no longer
RAY = {"engine": "ray", "style": "both", "batch_size": 3, "max_new_tokens": 12, "num_beams": 1,
       "torch_threads": 1, "concurrency": 1}  # fmt: skip


def wait_for(check: Callable[[], T], timeout: float = 120.0, what: str = "") -> T:
    return shared_wait_for(check, timeout, what, interval=0.05)


def written(ws: Workspace, run_id: int) -> int:
    with read_session(ws) as s:
        return int(s.exec(select(func.count()).select_from(Caption).where(Caption.run_id == run_id)).one())


def assert_exactly_once(ws: Workspace, run_id: int, kinds: tuple[str, ...] = KINDS) -> None:
    with read_session(ws) as s:
        image_ids = set(s.exec(select(Image.id)).all())
        pairs = Counter(s.exec(select(Caption.image_id, Caption.kind).where(Caption.run_id == run_id)).all())
    expected = {(image_id, kind) for image_id in image_ids for kind in kinds}
    assert set(pairs) == expected, (
        f"lost: {sorted(expected - set(pairs))[:5]}, extra: {sorted(set(pairs) - expected)[:5]}"
    )
    assert max(pairs.values()) == 1, f"duplicated: {[p for p, n in pairs.items() if n > 1][:5]}"


def finished(ws: Workspace, run_id: int, timeout: float = 240.0) -> jobs.Run:
    return wait_for(
        lambda: (r := jobs.get_run(ws, run_id)).status not in ("queued", "running") and r,
        timeout,
        "the run's end",
    )


def actor_pids(cluster: RayCluster) -> list[int]:
    return cluster.processes("CaptionActor")


def test_a_ray_worker_and_then_the_runner_killed_mid_run_every_image_gets_exactly_one_caption(
    ray_cluster: RayCluster, demo_ws: Workspace, tiny_model_dir: Callable[[str], Path]
) -> None:
    ws = demo_ws
    total = 60 * len(KINDS)
    config = {**RAY, "dataset": DEMO_DATASET, "captioner": str(tiny_model_dir("blip")),
              "ray_address": ray_cluster.address}  # fmt: skip
    run_id = int(new_run(ws, "recaption", config).id)  # type: ignore[arg-type]
    jobs.launch(ws, run_id)

    # 1. the Ray worker process that holds the model dies (OOM killer, a node lost) after a few batches
    wait_for(lambda: written(ws, run_id) >= 6, what="the first batches on the cluster")
    (victim,) = wait_for(lambda: actor_pids(ray_cluster), what="the actor")
    os.kill(victim, signal.SIGKILL)
    at_kill = written(ws, run_id)
    # Ray Data starts another actor and resubmits the batch the dead one held; the run goes on
    wait_for(lambda: [p for p in actor_pids(ray_cluster) if p != victim], what="a new actor")
    assert jobs.get_run(ws, run_id).status == "running"

    # 2. then the runner (the Ray driver) is SIGKILLed, process group and all; resume finishes it
    wait_for(lambda: written(ws, run_id) >= at_kill + 6, what="captions from the new actor")
    run = jobs.get_run(ws, run_id)
    os.killpg(run.pgid or run.pid, signal.SIGKILL)  # type: ignore[arg-type]
    wait_for(lambda: not group_alive(run.pgid or run.pid), 10, "the runner's group to vanish")  # type: ignore[arg-type]
    interrupted = finished(ws, run_id, 30)
    assert interrupted.status == "interrupted" and "SIGKILL" in interrupted.message
    at_driver_kill = written(ws, run_id)
    assert at_kill < at_driver_kill < total, (at_kill, at_driver_kill)  # both kills landed mid-run
    final = jobs.resume_run(ws, run_id, foreground=True)

    log = jobs.log_tail(ws, run_id, 400)
    assert final.status == "succeeded", f"{final.message}\n{log}"
    assert_exactly_once(ws, run_id)
    assert (final.done, final.total, final.attempt) == (total, total, 2)
    starts = [int(m) for m in re.findall(r"(\d+) already written", log)]
    assert starts == [0, at_driver_kill], starts  # the resume planned from exactly what was committed
    # provenance: the local job's fields, plus the engine; the generation settings as configured
    with read_session(ws) as s:
        captions = s.exec(select(Caption).where(Caption.run_id == run_id)).all()
    for c in captions:
        p = c.provenance
        assert (p["engine"], p["family"], p["captioner"], p["prompt"]) == (
            "ray",
            "blip",
            config["captioner"],
            None,
        )
        assert p["generation"]["max_new_tokens"] == 12 and p["generation"]["num_beams"] == 1
        assert p["dtype"] == "float32" and isinstance(p["hit_token_limit"], bool)
        assert c.source == "recaption" and c.text.strip()
    metrics = {m.name for m in jobs.run_metrics(ws, run_id)}
    assert {"images_per_s", "busy_share"} <= metrics
    print(
        f"captions committed at the worker kill: {at_kill}, at the runner kill: {at_driver_kill} of {total}"
    )


def test_clip_score_on_ray_matches_the_local_job(
    ray_cluster: RayCluster, demo_home: Path, tmp_path: Path, tiny_clip: tuple[str, Path]
) -> None:
    clip_name, clip_path = tiny_clip
    values = {"dataset": DEMO_DATASET, "kinds": ["alttext", "human_short"], "model": clip_name,
              "pretrained": str(clip_path), "batch_size": 16, "torch_threads": 1}  # fmt: skip
    scores: dict[str, dict[int, float]] = {}
    for engine in ("local", "ray"):
        ws = Workspace(shutil.copytree(demo_home, tmp_path / engine))
        extra = {"engine": "ray", "ray_address": ray_cluster.address} if engine == "ray" else {}
        run = new_run(ws, "clip_score", {**values, **extra})
        final = jobs.run_foreground(ws, int(run.id))  # type: ignore[arg-type]
        assert final.status == "succeeded", f"{engine}: {final.message}\n{jobs.log_tail(ws, int(run.id), 40)}"
        with read_session(ws) as s:
            rows = s.exec(select(CaptionScore).where(CaptionScore.run_id == run.id)).all()
        scores[engine] = {int(r.caption_id): float(r.value) for r in rows}
        assert final.done == final.total == len(rows) > 0
    # a second Ray run scores nothing twice (scores are keyed by caption, metric and model)
    again = jobs.run_foreground(ws, int(new_run(ws, "clip_score", {**values, **extra}).id))  # type: ignore[arg-type]
    assert again.status == "succeeded" and (again.done, again.total) == (len(rows), len(rows))
    with read_session(ws) as s:
        assert int(s.exec(select(func.count()).select_from(CaptionScore)).one()) == len(rows)
    assert scores["ray"].keys() == scores["local"].keys()
    worst = max(abs(scores["ray"][k] - scores["local"][k]) for k in scores["local"])
    assert worst < 1e-3, f"ray and local CLIP scores differ by up to {worst}"


def shard_facts(ws: Workspace) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    with read_session(ws) as s:
        shards = s.exec(
            select(Shard.uri, Shard.nbytes, Shard.sha256, Shard.members).order_by(col(Shard.uri))
        ).all()
        members = s.exec(
            select(Image.original_key, Image.sha256, Image.nbytes, Image.width, ShardMember.offset)
            .join(ShardMember, col(ShardMember.image_id) == col(Image.id))
            .order_by(col(Image.original_key))
        ).all()
    return [tuple(r) for r in shards], [tuple(r) for r in members]


def test_shards_registered_by_the_cluster_are_recaptioned_there(
    ray_cluster: RayCluster, tmp_path: Path, tiny_model_dir: Callable[[str], Path]
) -> None:
    folder = build_shards(tmp_path)
    local, remote = (Workspace(tmp_path / name).ensure() for name in ("local", "ray"))
    for ws in (local, remote):
        migrate(ws)
    by_local = register_shards(local, folder, "corpus")
    by_ray = register_shards(remote, folder, "corpus", engine="ray", ray_address=ray_cluster.address)
    assert by_ray.as_dict() == by_local.as_dict()
    assert shard_facts(remote) == shard_facts(local)  # keys, sizes, SHA-256 and offsets as computed here
    assert not any(remote.images_dir.rglob("*.*"))  # nothing copied

    # one member changes on disk after registration: that image is skipped with the reason, the run goes on
    with read_session(remote) as s:
        victim, offset = s.exec(
            select(Image.id, ShardMember.offset)
            .join(ShardMember, col(ShardMember.image_id) == col(Image.id))
            .where(Image.original_key == "part-0001.tar:b/2")
        ).one()
    tar = folder / "part-0001.tar"
    data = bytearray(tar.read_bytes())
    data[offset + 50] ^= 0xFF
    tar.write_bytes(bytes(data))

    config = {**RAY, "style": "short", "batch_size": 4, "dataset": "corpus",
              "captioner": str(tiny_model_dir("blip")), "ray_address": ray_cluster.address}  # fmt: skip
    run = new_run(remote, "recaption", config)
    final = jobs.run_foreground(remote, int(run.id))  # type: ignore[arg-type]
    log = jobs.log_tail(remote, int(run.id), 200)
    assert final.status == "succeeded", f"{final.message}\n{log}"
    with read_session(remote) as s:
        captioned = Counter(s.exec(select(Caption.image_id).where(Caption.run_id == run.id)).all())
        every = set(s.exec(select(Image.id)).all())
    assert set(captioned) == every - {victim} and set(captioned.values()) == {1}
    assert f"skipping image {victim}" in log and "shard changed" in log
    assert {m.step for m in jobs.run_metrics(remote, int(run.id)) if m.name == "skipped"} == {victim}


def test_ray_settings_are_checked_before_anything_runs(
    demo_ws: Workspace, tiny_model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    ws = demo_ws
    base = {"dataset": DEMO_DATASET, "captioner": str(tiny_model_dir("blip"))}
    with pytest.raises(ConfigError, match="engine ray only"):
        new_run(ws, "recaption", {**base, "ray_address": "127.0.0.1:6379"})
    with pytest.raises(ConfigError, match="engine"):
        new_run(ws, "recaption", {**base, "engine": "spark"})


@pytest.fixture
def nothing_listening() -> Iterator[str]:
    from tests.conftest import free_port

    yield f"127.0.0.1:{free_port()}"


def test_a_cluster_that_cannot_be_reached_fails_the_run_with_the_address(
    demo_ws: Workspace, tiny_model_dir: Callable[[str], Path], nothing_listening: str
) -> None:
    ws = demo_ws
    config = {**RAY, "dataset": DEMO_DATASET, "captioner": str(tiny_model_dir("blip")),
              "ray_address": nothing_listening}  # fmt: skip
    started = time.monotonic()
    run = new_run(ws, "recaption", config)
    final = jobs.run_foreground(ws, int(run.id))  # type: ignore[arg-type]
    assert final.status == "failed"
    assert f"cannot connect to the Ray cluster at {nothing_listening}" in final.message, final.message
    assert written(ws, int(run.id)) == 0
    print(f"an unreachable cluster failed the run after {time.monotonic() - started:.0f} s")
