"""The T2I jobs end to end at a real size: training steps/s (latent cache off / on, EMA), the cost
of a stop and EMA resume, and generation images/s of the ``generate`` job vs a bare pipeline loop.

Why jobs and not loop bodies: ``bench/t2i_step.py`` times one training step against the
diffusers-script step; what a user waits for is the whole job (image reading, latent caching,
checkpoints with EMA, validation, storing every generated image with provenance). Each job runs
through the runner's ``execute`` in this process (the Python / torch import is outside every
clock), on a throwaway workspace of demo-world scenes with ``recap_short`` / ``recap_long``
captions.

* **train** — ``t2i_train`` with EMA: ``steps`` steps without the latent cache, then with it
  (the first cached run fills the cache; the figure is a second, warm run). Steps/s counts the
  job's whole wall time, reading and caching included; the log's own per-step time is not used.
* **resume** — the same config started as the studio starts it (a runner process), cancelled
  once its first checkpoint is on disk, and resumed: the extra wall time over the uninterrupted
  run is what a stop and resume cost (the runner's start and Python imports, the checkpoint with
  its EMA copy, the re-read of the images, the steps after the checkpoint done twice), and the
  resumed EMA weights are compared with the uninterrupted run's (max |difference|).
* **generate** — the ``generate`` job over ``--prompts`` prompts vs
  ``StableDiffusionPipeline`` called on the same prompts in batches of the same size with the
  same steps, guidance, resolution and dtype; the job's busy share is the bare loop's wall time
  over the job's.

    .venv/bin/python bench/gpu_jobs.py --model SD_FOLDER --device cuda      # bench/gpu.sh does this
    .venv/bin/python bench/gpu_jobs.py --dry-run                             # tiny SD on the CPU

Prints one line per measurement, then a JSON line with everything.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable from a checkout without installing the package

from backend import jobs  # noqa: E402
from backend.captions import add_caption  # noqa: E402
from backend.datasets import get_or_create_dataset  # noqa: E402
from backend.db import migrate, write_session  # noqa: E402
from backend.demo import human_long_caption, human_short_caption, make_scene, render_scene  # noqa: E402
from backend.images import add_image, decode_image  # noqa: E402
from backend.jobs.configs import new_run  # noqa: E402
from backend.workspace import Workspace  # noqa: E402
from training.runner import execute  # noqa: E402

DATASET = "bench-t2i"


def make_workspace(home: Path, n_images: int, seed: int) -> Workspace:
    ws = Workspace(home).ensure()
    migrate(ws)
    rng = random.Random(seed)
    with write_session(ws) as s:
        dataset = get_or_create_dataset(s, DATASET)
        for i in range(n_images):
            scene = make_scene(rng)
            image, _ = add_image(
                s, ws, int(dataset.id), decode_image(render_scene(scene)), f"bench/{i:05d}.png", meta=scene
            )  # type: ignore[arg-type]
            add_caption(s, int(image.id), "recap_short", human_short_caption(scene), source="bench")  # type: ignore[arg-type]
            add_caption(s, int(image.id), "recap_long", human_long_caption(scene), source="bench")  # type: ignore[arg-type]
    return ws


def run_job(ws: Workspace, kind: str, config: dict[str, Any], cancel_at: int | None = None) -> dict[str, Any]:
    """Execute one run here and return its wall time. ``cancel_at``: first start it as the studio
    does (``jobs.launch``: a runner process), cancel it once checkpoint ``cancel_at`` is on disk
    (SIGTERM: the job checkpoints and stops), then resume it here; both walls are returned."""
    run_id = int(new_run(ws, kind, config).id)  # type: ignore[arg-type]
    walls = []
    if cancel_at is not None:
        from backend.jobs import store

        folder = ws.runs_dir / str(run_id) / "checkpoints" / f"step-{cancel_at:08d}"
        started = time.perf_counter()
        jobs.launch(ws, run_id)
        while not folder.is_dir():
            if jobs.get_run(ws, run_id).status not in ("queued", "running"):
                raise RuntimeError(
                    f"run {run_id} ended before checkpoint {cancel_at}: {jobs.log_tail(ws, run_id, 30)}"
                )
            time.sleep(0.05)
        first = jobs.cancel_run(ws, run_id)
        walls.append(time.perf_counter() - started)
        if first.status != "cancelled":
            raise RuntimeError(f"run {run_id} did not stop: {first.status} {first.message}")
        store.requeue(ws, run_id)
    started = time.perf_counter()
    execute(ws, run_id, advance_queue=False)
    walls.append(time.perf_counter() - started)
    final = jobs.get_run(ws, run_id)
    if final.status != "succeeded":
        raise RuntimeError(
            f"{kind} run {run_id} ended {final.status}: {final.message}\n{jobs.log_tail(ws, run_id, 30)}"
        )
    return {"run_id": run_id, "walls": walls, "wall_s": sum(walls)}


def ema_weights(ws: Workspace, run_id: int) -> dict[str, Any]:
    from safetensors.torch import load_file

    (artifact,) = jobs.list_artifacts(ws, kind="t2i", run_id=run_id)
    folder = ws.inside(artifact.path) / "unet"
    out: dict[str, Any] = {}
    for path in sorted(folder.glob("*.safetensors")):
        out.update(load_file(path))
    return out


def bare_generate(model: str, prompts: list[str], args: argparse.Namespace) -> tuple[float, int]:
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    dtype = getattr(torch, args.dtype) if args.dtype != "auto" else torch.float32
    pipe = StableDiffusionPipeline.from_pretrained(model, torch_dtype=dtype, safety_checker=None)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.to(args.device)
    pipe.set_progress_bar_config(disable=True)
    side = args.gen_resolution or None
    kwargs = {"num_inference_steps": args.gen_steps, "guidance_scale": 7.5, "height": side, "width": side}
    pipe(prompts[: args.gen_batch], **kwargs)  # warm-up
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    started = time.perf_counter()
    for i in range(0, len(prompts), args.gen_batch):
        generator = torch.Generator(args.device).manual_seed(0)
        pipe(prompts[i : i + args.gen_batch], generator=generator, **kwargs)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - started, len(prompts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="SD pipeline folder (default: the tiny SD, built here)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument(
        "--dry-run", action="store_true", help="tiny SD, CPU, few steps: proves the script runs"
    )
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40, help="training steps per run")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--mixed-precision", default="bf16", choices=("no", "fp16", "bf16"))
    parser.add_argument("--prompts", type=int, default=64, help="prompts of the generation runs")
    parser.add_argument("--gen-steps", type=int, default=25)
    parser.add_argument("--gen-batch", type=int, default=8)
    parser.add_argument("--gen-resolution", type=int, default=512)
    parser.add_argument("--dtype", default="float16", choices=("auto", "float32", "float16", "bfloat16"))
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: train,resume,generate")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    if args.dry_run:
        args.device, args.mixed_precision, args.dtype = "cpu", "no", "float32"
        args.images, args.steps, args.batch_size, args.resolution = 8, 4, 2, 32
        args.prompts, args.gen_steps, args.gen_batch, args.gen_resolution = 4, 2, 2, 32
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}

    tmp = Path(tempfile.mkdtemp(prefix="recap-gpu-jobs-"))
    result: dict[str, Any] = {"device": args.device, "dry_run": args.dry_run}
    try:
        model = args.model
        if model is None:
            from training.tiny_sd import build_tiny_sd

            model = str(build_tiny_sd(tmp / "tiny-sd"))
        result["model"] = model
        ws = make_workspace(tmp / "home", args.images, 0)
        train = {
            "dataset": DATASET, "base": model, "mix": "recap_mix", "steps": args.steps,
            "batch_size": args.batch_size, "resolution": args.resolution, "ema": True,
            "checkpoint_every": max(1, args.steps // 2), "validation_every": 10**6, "validation_prompts": [],
            "device": args.device, "mixed_precision": args.mixed_precision, "num_workers": 2,
        }  # fmt: skip
        print(
            f"model {model}, device {args.device}, {args.images} images, {args.steps} steps of batch "
            f"{args.batch_size} at {args.resolution} px, mixed precision {args.mixed_precision}, EMA on",
            flush=True,
        )
        if "train" not in skip:
            plain = run_job(ws, "t2i_train", train)
            cold = run_job(ws, "t2i_train", {**train, "cache_latents": True})
            warm = run_job(ws, "t2i_train", {**train, "cache_latents": True})
            for name, r in (("no cache", plain), ("cache, cold", cold), ("cache, warm", warm)):
                print(
                    f"t2i_train {name:12s}: {args.steps / r['wall_s']:7.2f} steps/s  ({r['wall_s']:.1f} s)",
                    flush=True,
                )
            result.update(
                train_steps_per_s_no_cache=args.steps / plain["wall_s"],
                train_steps_per_s_cache_cold=args.steps / cold["wall_s"],
                train_steps_per_s_cache_warm=args.steps / warm["wall_s"],
                train_wall_s={"no_cache": plain["wall_s"], "cache_cold": cold["wall_s"], "cache_warm": warm["wall_s"]},
            )  # fmt: skip
            if "resume" not in skip:
                resumed = run_job(ws, "t2i_train", train, cancel_at=train["checkpoint_every"])
                extra = resumed["wall_s"] - plain["wall_s"]
                a, b = ema_weights(ws, plain["run_id"]), ema_weights(ws, resumed["run_id"])
                worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
                print(
                    f"stop + EMA resume: {resumed['wall_s']:.1f} s in two attempts ({', '.join(f'{w:.1f}' for w in resumed['walls'])}) "
                    f"vs {plain['wall_s']:.1f} s uninterrupted: +{extra:.1f} s; max |EMA UNet difference| {worst:.3g}",
                    flush=True,
                )  # fmt: skip
                result.update(resume_extra_s=extra, resume_walls=resumed["walls"], resume_max_abs_diff=worst)
        if "generate" not in skip:
            from training.jobs.generate import load_prompts

            prompts = [p.text for p in load_prompts("studio_prompts").prompts][: args.prompts]
            gen = {
                "prompts": "studio_prompts", "checkpoints": [model], "seeds": [0], "max_prompts": args.prompts,
                "inference_steps": args.gen_steps, "resolution": args.gen_resolution, "batch_size": args.gen_batch,
                "dtype": args.dtype, "device": args.device, "output_dataset": "bench-generated",
            }  # fmt: skip
            job = run_job(ws, "generate", gen)
            bare_s, n = bare_generate(model, prompts, args)
            print(
                f"generate job : {n / job['wall_s']:7.2f} images/s  ({n} images, {args.gen_steps} steps, batch "
                f"{args.gen_batch}, {args.gen_resolution} px, {args.dtype})",
                flush=True,
            )
            print(
                f"bare pipeline: {n / bare_s:7.2f} images/s; the job's busy share {100 * bare_s / job['wall_s']:.0f}%"
            )
            result.update(
                generate_ips_job=n / job["wall_s"], generate_ips_bare=n / bare_s, generate_busy_share=bare_s / job["wall_s"]
            )  # fmt: skip
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
