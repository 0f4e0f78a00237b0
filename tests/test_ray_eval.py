"""``t2i_eval``'s detector metrics on a real Ray cluster (issue 13): the same numbers as the local job.

One ``ray start --head --num-cpus 2`` per module (:mod:`tests.ray_cluster`); each run joins it by
address and is an ordinary run through the runner (the Ray driver). The images are demo-world
scenes drawn from structured prompts (``eval --images``), a few of them drawn from *another*
prompt and one corrupt file, so the metrics, their intervals and their baselines are not all
trivially perfect and the unreadable-image path is crossed too. The oracle is exact, so Ray and
local must agree to the last bit, O-FID included (its crops travel from the actors as PNG);
a tiny random DETR with CLIP colours checks the plumbing of a transformers detector.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from backend import jobs
from backend.compositional.demo_scenes import scene_for_prompt
from backend.compositional.loaders import load_any
from backend.demo import DEMO_DATASET, render_scene
from backend.evaluation import EvalResult, result_details
from backend.jobs.configs import ConfigError, new_run
from backend.workspace import Workspace

if TYPE_CHECKING:
    from tests.ray_cluster import RayCluster

pytest_plugins = ("tests.tiny_models", "tests.ray_cluster", "tests.demo_workspace")
pytestmark = pytest.mark.timeout(300)

BOX = ["soa_c", "soa_i", "ca", "pa_det", "geneval"]
LEAN = {"device": "cpu", "torch_threads": 1, "batch_size": 4, "bootstrap_rounds": 200, "concurrency": 1}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every fifth demo-world prompt (all GenEval tags) drawn as its scene; every fourth image is
    drawn from the next prompt instead (a miss), and one file is not an image."""
    root = tmp_path_factory.mktemp("ray-eval")
    images = root / "images"
    images.mkdir()
    prompts = list(load_any("demo_world"))[::5]
    lines = []
    for i, p in enumerate(prompts):
        drawn = prompts[(i + 1) % len(prompts)] if i % 4 == 3 else p
        name = f"img_{i:03d}.png"
        (images / name).write_bytes(render_scene(scene_for_prompt(drawn, seed=i)))
        lines.append({**p.to_json(), "file": name})
    (images / "zz_broken.png").write_bytes(b"not a png at all")
    lines.append({**prompts[0].to_json(), "file": "zz_broken.png", "key": "broken"})
    matched = root / "prompts.jsonl"
    matched.write_text("".join(json.dumps(x) + "\n" for x in lines))
    few = root / "few.jsonl"  # for the slower transformers detector: 8 scenes (every tag) + the broken file
    few.write_text("".join(json.dumps(x) + "\n" for x in lines[:-1:2] + lines[-1:]))
    return {"images": images, "prompts": matched, "few": few}


def evaluate(ws: Workspace, config: dict[str, Any]) -> tuple[dict[str, EvalResult], str]:
    run = new_run(ws, "t2i_eval", {**LEAN, **config})
    run_id = int(run.id)  # type: ignore[arg-type]
    final = jobs.run_foreground(ws, run_id)
    log = jobs.log_tail(ws, run_id, 200)
    assert final.status == "succeeded", f"{final.message}\n{log}"
    return {r.metric: r for r in result_details(ws, run_id)}, log


def both_engines(
    ws: Workspace, cluster: RayCluster, config: dict[str, Any]
) -> tuple[dict[str, EvalResult], dict[str, EvalResult], str]:
    local, _ = evaluate(ws, config)
    started = time.monotonic()
    on_ray, log = evaluate(ws, {**config, "engine": "ray", "ray_address": cluster.address})
    print(f"the Ray run took {time.monotonic() - started:.1f} s\n{log}")
    assert set(on_ray) == set(local) and set(local) >= set(BOX), (sorted(local), sorted(on_ray))
    for metric, row in on_ray.items():
        assert row.details["engine"] == "ray" and "actor" in row.details["ray_actors"], metric  # type: ignore[index]
        assert local[metric].details["engine"] == "local", metric  # type: ignore[index]
        assert row.details["detector"] == local[metric].details["detector"], metric  # type: ignore[index]
        if metric in BOX:
            assert row.details["unreadable_images"] == local[metric].details["unreadable_images"] == 1, metric  # type: ignore[index]
            assert row.details["detections"] == local[metric].details["detections"], metric  # type: ignore[index]
    return local, on_ray, log


def test_oracle_metrics_on_ray_equal_the_local_job_exactly(
    ray_cluster: RayCluster, demo_ws: Workspace, scenes: dict[str, Path], tiny_clip: tuple[str, Path]
) -> None:
    clip_name, clip_path = tiny_clip
    config = {
        "images": str(scenes["images"]), "prompts": str(scenes["prompts"]), "detector": "oracle",
        "metrics": [*BOX, "o_fid"], "reference_dataset": DEMO_DATASET, "extractor": "clip",
        "clip_model": clip_name, "clip_pretrained": str(clip_path),
    }  # fmt: skip
    local, on_ray, log = both_engines(demo_ws, ray_cluster, config)
    for metric, row in local.items():
        got = on_ray[metric]
        assert (got.value, got.n, got.stderr) == (row.value, row.n, row.stderr), metric
        assert got.details["interval"] == row.details["interval"], metric  # type: ignore[index]
    assert 0.0 < local["soa_i"].value < 1.0  # the misses count: not a trivially perfect score
    assert local["o_fid"].details["reference_crops"] == on_ray["o_fid"].details["reference_crops"] > 2  # type: ignore[index]
    assert local["o_fid"].details["generated_crops"] == on_ray["o_fid"].details["generated_crops"]  # type: ignore[index]
    assert "run in Ray actors" in log and "o_fid's crop features" in log
    assert "skipping" in log and "zz_broken.png" in log
    assert "detector actor pid" in log  # the actor's own line, forwarded by Ray to the run's log


def test_a_tiny_detr_with_clip_colours_runs_through_ray(
    ray_cluster: RayCluster,
    demo_ws: Workspace,
    scenes: dict[str, Path],
    tiny_clip: tuple[str, Path],
    tiny_model_dir: Callable[[str], Path],
) -> None:
    clip_name, clip_path = tiny_clip
    config = {
        "images": str(scenes["images"]), "prompts": str(scenes["few"]),
        "detector": str(tiny_model_dir("detr")), "metrics": BOX,
        "clip_model": clip_name, "clip_pretrained": str(clip_path),
    }  # fmt: skip
    local, on_ray, _ = both_engines(demo_ws, ray_cluster, config)
    assert on_ray["soa_i"].details["detector"]["colors"] is not None  # CLIP colours, loaded by the actor  # type: ignore[index]
    for metric, row in local.items():
        got = on_ray[metric]
        assert got.n == row.n and abs(got.value - row.value) <= 1e-6, (metric, got.value, row.value)
        for key in ("lower", "upper", "chance"):
            a, b = got.details["interval"][key], row.details["interval"][key]  # type: ignore[index]
            assert (a is None and b is None) or abs(a - b) <= 1e-6, (metric, key, a, b)


@pytest.fixture
def nothing_listening() -> Iterator[str]:
    from tests.conftest import free_port

    yield f"127.0.0.1:{free_port()}"


def test_a_wrong_address_fails_at_once_and_ray_needs_a_detector_metric(
    demo_ws: Workspace, scenes: dict[str, Path], nothing_listening: str
) -> None:
    base = {"images": str(scenes["images"]), "prompts": str(scenes["prompts"]), "detector": "oracle"}
    run = new_run(demo_ws, "t2i_eval", {**LEAN, **base, "metrics": BOX, "engine": "ray",
                                        "ray_address": nothing_listening})  # fmt: skip
    final = jobs.run_foreground(demo_ws, int(run.id))  # type: ignore[arg-type]
    assert final.status == "failed"
    assert f"cannot connect to the Ray cluster at {nothing_listening}" in final.message, final.message
    assert not result_details(demo_ws, int(run.id))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="engine ray runs the detector metrics"):
        new_run(demo_ws, "t2i_eval", {**base, "metrics": ["clip_score"], "engine": "ray"})
    with pytest.raises(ConfigError, match="engine ray only"):
        new_run(demo_ws, "t2i_eval", {**base, "metrics": BOX, "ray_address": nothing_listening})
