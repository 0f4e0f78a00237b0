"""Evaluation throughput with a detector: the ``t2i_eval`` job vs a bare loop over the same detector.

Why: the detector is the evaluation's real work; everything the job adds (pairing images with
structured prompts, the mismatched-prompt queries, scoring, 1000-round bootstraps over prompts,
one row per metric with provenance) should cost little beside it (goal: job >= 80 % of the bare
loop's images/s). "Job" is the real ``t2i_eval`` run executed by the real runner code
(:func:`training.runner.execute`: claim, config, detector load, images read from disk, detection,
scoring, storage, finish) on a folder of demo-world scenes rendered from their structured prompts
(``eval --images``); only the Python/torch import is outside the clock. "Bare" decodes the same
files and calls ``detector.detect`` in batches of the same size with each image's own classes,
the detector already loaded.

    .venv/bin/python bench/eval_throughput.py                        # oracle, 222 images, CPU
    .venv/bin/python bench/eval_throughput.py --detector tiny:detr   # a tiny random DETR built here
    .venv/bin/python bench/eval_throughput.py --detector PATH --device cuda   # a real detector
    .venv/bin/python bench/eval_throughput.py --engine ray --images 64        # + the job on Ray

Prints images/s of both paths and their ratio, the load average (this machine is shared), then
a JSON line with everything. ``--engine ray`` adds a third path in the same rounds: the same job
with ``engine ray`` (its detection in a Ray Data actor pool, issue 13) against ``--ray-address``
or, without one, a private ``ray start --head`` started for the benchmark (as bench/ray_recaption.py
does), timed end to end: connecting, starting the actors and loading a detector in each included.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable from a checkout without installing the package

from backend import jobs  # noqa: E402
from backend.compositional.demo_scenes import scene_for_prompt  # noqa: E402
from backend.compositional.loaders import load_any  # noqa: E402
from backend.db import migrate  # noqa: E402
from backend.demo import render_scene  # noqa: E402
from backend.evaluation import result_details  # noqa: E402
from backend.jobs.configs import new_run  # noqa: E402
from backend.workspace import Workspace  # noqa: E402
from training.data import load_rgb, set_torch_threads  # noqa: E402
from training.detectors import load_detector  # noqa: E402
from training.runner import execute  # noqa: E402

METRICS = ["soa_c", "soa_i", "ca", "pa_det", "geneval"]


def render(folder: Path, n_images: int) -> Path:
    """``n_images`` scenes cycling through the demo-world prompts (new seed each cycle) and the
    structured prompt file naming them."""
    prompts = list(load_any("demo_world"))
    lines = []
    for i in range(n_images):
        p = prompts[i % len(prompts)]
        name = f"{i:05d}.png"
        (folder / name).write_bytes(render_scene(scene_for_prompt(p, seed=i // len(prompts))))
        key = f"{p.key}#{i // len(prompts)}"  # each cycle's scenes are new images of the same prompts
        lines.append(json.dumps({**p.to_json(), "file": name, "key": key}))
    path = folder.parent / "prompts.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def detector_spec(spec: str, scratch: Path) -> str:
    if spec.startswith("tiny:"):
        from training.tiny import build_tiny

        return str(build_tiny(spec.split(":", 1)[1], scratch / "detector", seed=0))
    return spec


def job(
    ws: Workspace, images: Path, prompts: Path, spec: str, args: argparse.Namespace, ray_address: str = ""
) -> dict[str, Any]:
    """The real job through the runner's code; with ``ray_address``, on that Ray cluster."""
    on_ray = {
        "engine": "ray", "ray_address": ray_address, "concurrency": args.concurrency, "num_gpus": args.num_gpus,
    } if ray_address else {}  # fmt: skip
    run = new_run(ws, "t2i_eval", {
        "images": str(images), "prompts": str(prompts), "metrics": METRICS, "detector": spec,
        "device": args.device, "torch_threads": args.threads, "batch_size": args.batch_size,
        "bootstrap_rounds": args.rounds, **({"clip_model": args.clip} if args.clip else {}), **on_ray,
    })  # fmt: skip
    run_id = int(run.id)  # type: ignore[arg-type]
    started = time.perf_counter()
    code = execute(ws, run_id, advance_queue=False)
    wall = time.perf_counter() - started
    final = jobs.get_run(ws, run_id)
    if code != 0 or final.status != "succeeded":
        raise RuntimeError(f"t2i_eval run {run_id} ended {final.status}: {final.message}")
    soa = next(r for r in result_details(ws, run_id) if r.metric == "soa_i")
    return {"wall_s": wall, "detect_s": float((soa.details or {})["detect_seconds"]), "value": soa.value}


def bare(
    images: Path, prompts: Path, spec: str, args: argparse.Namespace, job_queries: bool = False
) -> dict[str, Any]:
    """The bare loop. ``job_queries``: ask for what the job asks (each image's own classes and those
    of the prompt its mismatched baseline uses), i.e. the same detector work; else own classes only."""
    clip = None
    if args.clip:  # colours by CLIP zero-shot on the box crops, as the job does for real detectors
        from training.clip import load_clip

        clip = load_clip(args.clip, device=args.device)
    detector = load_detector(spec, device=args.device, clip_model=clip)
    rows = [json.loads(line) for line in prompts.read_text().splitlines() if line.strip()]
    files = [images / r["file"] for r in rows]
    queries = [[o["class"] if "class" in o else o["cls"] for o in r["objects"]] for r in rows]
    if job_queries:
        from backend.compositional.metrics import mismatched_assignment
        from backend.compositional.prompts import StructuredPrompt
        from training.compositional_eval import prompt_indices, queries_for

        structured, index = prompt_indices([StructuredPrompt.from_json(r) for r in rows])
        queries = queries_for(structured, index, mismatched_assignment(index, 0))
    started = time.perf_counter()
    found = 0
    for start in range(0, len(files), args.batch_size):
        batch = [load_rgb(f) for f in files[start : start + args.batch_size]]
        found += sum(len(d) for d in detector.detect(batch, queries[start : start + args.batch_size]))
    return {"wall_s": time.perf_counter() - started, "detections": found}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=222, help="images (3 cycles of the 74 demo prompts)")
    parser.add_argument(
        "--detector", default="oracle", help="oracle, tiny:<family> (detr, owlv2, ...) or a path"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--clip",
        default="",
        help="CLIP for a real detector's colours (default: a tiny 248-position CLIPModel)",
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=1000, help="bootstrap rounds of the job")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = one per core)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs of each path, interleaved; the fastest counts"
    )
    parser.add_argument(
        "--engine", default="local", choices=("local", "ray"), help="ray: time the job on Ray too"
    )
    parser.add_argument("--ray-address", default="", help="join this cluster (default: start a private head)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the private head")
    parser.add_argument("--concurrency", type=int, default=1, help="detector actors (run config concurrency)")
    parser.add_argument("--num-gpus", type=float, default=1.0, help="GPUs per actor (run config num_gpus)")
    args = parser.parse_args(argv)
    set_torch_threads(args.threads)
    scratch = Path(tempfile.mkdtemp(prefix="eval-bench-"))
    try:
        folder = scratch / "images"
        folder.mkdir()
        prompts = render(folder, args.images)
        spec = detector_spec(args.detector, scratch)
        if not args.clip and not spec.startswith("oracle"):
            from training.tiny import build_tiny

            args.clip = str(build_tiny("longclip", scratch / "clip", seed=0))
        ws = Workspace(scratch / "home").ensure()
        migrate(ws)
        import scipy.stats  # noqa: F401 - imports are a process's one-time cost, outside both clocks

        import training.jobs.t2i_eval  # noqa: F401

        bare(folder, prompts, spec, args)  # warm-up: file cache, first-call costs
        ours_runs, loop_runs, same_runs, ray_runs = [], [], [], []
        with contextlib.ExitStack() as stack:
            address = ""
            if args.engine == "ray":
                from bench.ray_recaption import RAY_ENV, private_cluster

                os.environ.update({k: v for k, v in RAY_ENV.items() if k not in os.environ})
                gpus = 0 if args.device == "cpu" else None
                address = args.ray_address or stack.enter_context(private_cluster(args.cpus, gpus))
            for _ in range(args.repeats):  # interleaved: this machine is shared, its load drifts
                ours_runs.append(job(ws, folder, prompts, spec, args))
                loop_runs.append(bare(folder, prompts, spec, args))
                same_runs.append(bare(folder, prompts, spec, args, job_queries=True))
                if address:
                    ray_runs.append(job(ws, folder, prompts, spec, args, address))
        ours = min(ours_runs, key=lambda r: r["wall_s"])
        loop = min(loop_runs, key=lambda r: r["wall_s"])
        same = min(same_runs, key=lambda r: r["wall_s"])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    n = args.images
    ours_rate, loop_rate = n / ours["wall_s"], n / loop["wall_s"]
    print(
        f"job  (t2i_eval, {len(METRICS)} metrics, {args.rounds} bootstrap rounds): {ours_rate:8.1f} images/s"
    )
    print(f"bare (load + detector.detect, batch {args.batch_size}):              {loop_rate:8.1f} images/s")
    same_rate = n / same["wall_s"]
    print(f"bare with the job's queries (own + baseline classes):      {same_rate:8.1f} images/s")
    print(f"ratio job / bare: {ours_rate / loop_rate:.1%} (goal >= 80%); job / bare with the job's queries: "
          f"{ours_rate / same_rate:.1%}")  # fmt: skip
    share = ours["detect_s"] / ours["wall_s"]
    print(
        f"inside the job, reading + detecting took {share:.1%} of its wall time (the rest is the job's own cost)"
    )
    on_ray: dict[str, Any] = {}
    if ray_runs:
        best = min(ray_runs, key=lambda r: r["wall_s"])
        ray_rate = n / best["wall_s"]
        print(f"job on Ray (engine ray, {args.concurrency} actor(s), end to end):   {ray_rate:8.1f} images/s")
        print(f"ratio Ray job / local job: {ray_rate / ours_rate:.1%}; Ray job / bare: {ray_rate / loop_rate:.1%}; "
              f"inside it, the Ray detection took {best['detect_s'] / best['wall_s']:.1%} of its wall time "
              "(connect, actor start and model load included)")  # fmt: skip
        assert best["value"] == ours["value"], (best["value"], ours["value"])  # same numbers, either engine
        on_ray = {
            "ray_job_images_per_s": ray_rate, "ray_job_wall_s": best["wall_s"], "ray_detect_s": best["detect_s"],
            "ratio_ray_local": ray_rate / ours_rate, "ray_runs_s": [r["wall_s"] for r in ray_runs],
            "ray_actors": args.concurrency,
        }  # fmt: skip
    print(f"load average: {os.getloadavg()[0]:.2f}")
    print(json.dumps({
        "images": n, "detector": args.detector, "device": args.device, "batch_size": args.batch_size,
        "rounds": args.rounds, "job_images_per_s": ours_rate, "bare_images_per_s": loop_rate,
        "ratio": ours_rate / loop_rate, "job_wall_s": ours["wall_s"], "bare_wall_s": loop["wall_s"],
        "load_average": os.getloadavg()[0],
        "job_detect_share": share,
        "bare_job_queries_images_per_s": same_rate, "ratio_same_queries": ours_rate / same_rate,
        "detections_own": loop["detections"], "detections_job_queries": same["detections"],
        "job_runs_s": [r["wall_s"] for r in ours_runs], "bare_runs_s": [r["wall_s"] for r in loop_runs],
        **on_ray,
    }))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
