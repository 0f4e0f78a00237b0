"""Recaption throughput on Ray: the Ray engine vs the local job vs a bare batched ``generate``.

Same images, same model, same generation settings, one run of this script. Three numbers:

- **bare batched**: ``prepare_batch`` + ``generate`` over images already decoded in memory, one
  model in this process (the ceiling of one model).
- **local job**: the real ``recaption`` job with ``engine local`` through the runner's code
  (DataLoader workers, one transaction per batch, progress), timed end to end.
- **Ray job**: the same job with ``engine ray`` against a Ray cluster: connect, plan, Ray Data
  read/decode tasks and the captioner actor pool, results written back by the driver. Timed end
  to end (connect and actor start-up included: what a user waits for), and as the engine's own
  steady rate (``steady_images_per_s`` metric: images over the span from the first batch an
  actor began to the last one an actor finished, on the actors' clocks: without connecting,
  scheduling and loading the model in each actor).

Only the Python/torch import is outside every clock. Without ``--ray-address`` the script starts
a private ``ray start --head`` for its duration (its own ports and temp folder, stopped at the
end), so the Ray job joins a running cluster as a user's would.

    .venv/bin/python bench/ray_recaption.py                       # tiny BLIP on CPU, 1 actor
    .venv/bin/python bench/ray_recaption.py --model PATH --device cuda --concurrency 4   # GPU node

On a CPU-only machine the actors share the same cores as everything else; the figure that
matters there is the overhead ratio. On GPUs, ``--concurrency N`` actors (one GPU each) is the
point of the engine: the ratio to bare batched should approach N.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable from a checkout without installing the package

from backend import jobs  # noqa: E402
from backend.jobs.configs import DEFAULTS, new_run  # noqa: E402
from bench.recaption_throughput import DATASET, bare_batched, make_workspace, our_job, timed  # noqa: E402
from training.adapters import GenerationSettings, load_captioner  # noqa: E402
from training.data import dataset_images, load_rgb, set_torch_threads  # noqa: E402
from training.devices import effective_dtype, pick_device  # noqa: E402
from training.runner import execute  # noqa: E402

RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def private_cluster(cpus: int, gpus: int | None) -> Iterator[str]:
    """``ray start --head`` on 127.0.0.1 for the benchmark's duration; yields its address."""
    temp = Path(tempfile.mkdtemp(prefix="raybench", dir="/tmp"))
    port = _port()
    command = [
        str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", "--num-cpus", str(cpus),
        "--node-ip-address", "127.0.0.1", "--port", str(port), "--include-dashboard", "false",
        "--dashboard-agent-listen-port", str(_port()), "--disable-usage-stats", "--temp-dir", str(temp),
    ]  # fmt: skip
    if gpus is not None:
        command += ["--num-gpus", str(gpus)]
    log = temp / "head.log"
    head = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in log.read_text(errors="replace"):
            if head.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start --head failed:\n{log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(timeout=10)
        import psutil  # the workers have process groups of their own, but stay in the head's session

        for proc in psutil.process_iter(["pid"]):
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                if os.getsid(proc.info["pid"]) == head.pid:
                    os.kill(proc.info["pid"], signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


def ray_job(ws: Any, captioner: str, args: argparse.Namespace, address: str) -> dict[str, float]:
    """The recaption job with engine ray, run by the runner's ``execute`` in this process (the
    process is the Ray driver, as the runner subprocess is in the studio)."""
    run = new_run(
        ws,
        "recaption",
        {
            "dataset": DATASET,
            "captioner": captioner,
            "style": "short",
            "batch_size": args.batch_size,
            "max_new_tokens": args.max_new_tokens,
            "torch_threads": args.threads,
            "device": args.device,
            "engine": "ray",
            "ray_address": address,
            "num_gpus": args.num_gpus,
            "concurrency": args.concurrency,
        },
    )
    run_id = int(run.id)  # type: ignore[arg-type]
    wall, code = timed(lambda: execute(ws, run_id, advance_queue=False))
    final = jobs.get_run(ws, run_id)
    if code != 0 or final.status != "succeeded":
        raise RuntimeError(f"ray recaption run {run_id} ended {final.status}: {final.message}")
    metrics = {m.name: m.value for m in jobs.run_metrics(ws, run_id)}
    return {
        "wall_s": wall,
        "images": final.done,
        "engine_ips": metrics["steady_images_per_s"],
        "busy_share": metrics["busy_share"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--num-workers", type=int, default=DEFAULTS["recaption"]["num_workers"], help="local job"
    )
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for every path and per actor")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of (bare, local job, Ray job)")
    parser.add_argument("--model", default=None, help="captioner folder or hub id (default: a tiny BLIP)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--ray-address", default="", help="join this cluster (default: start a private head)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the private head")
    parser.add_argument("--num-gpus", type=float, default=1.0, help="GPUs per actor (run config num_gpus)")
    parser.add_argument("--concurrency", type=int, default=1, help="actors (run config concurrency)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.update({k: v for k, v in RAY_ENV.items() if k not in os.environ})

    threads = set_torch_threads(args.threads)
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="recap-raybench-"))
    try:
        if args.model is None:
            from training.tiny import build_tiny

            captioner = str(build_tiny("blip", tmp / "tiny-blip", seed=args.seed))
        else:
            captioner = args.model
        ws = make_workspace(tmp / "home", args.images, args.seed)
        device = pick_device(args.device)
        dtype = effective_dtype("auto", device)
        adapter = load_captioner(captioner, device=str(device), dtype=dtype)  # type: ignore[arg-type]
        settings = GenerationSettings(max_new_tokens=args.max_new_tokens)
        images = [load_rgb(r.path) for r in dataset_images(ws, DATASET)]
        adapter.generate(adapter.prepare_batch(images[: args.batch_size]), **settings.as_kwargs())  # warm-up
        n = len(images)
        gpus = None if device.type == "cuda" else 0
        with contextlib.ExitStack() as stack:
            address = args.ray_address or stack.enter_context(private_cluster(args.cpus, gpus))
            bare, local, ray = [], [], []
            for _ in range(args.repeats):  # one round = the three paths back to back, same load
                bare.append(bare_batched(adapter, images, args.batch_size, settings)[0])
                local.append(our_job(ws, captioner, args)["wall_s"])
                ray.append(ray_job(ws, captioner, args, address))
        best_ray = min(ray, key=lambda r: r["wall_s"])
        result = {
            "images": n,
            "model": "tiny blip (training.tiny)" if args.model is None else args.model,
            "device": str(device),
            "dtype": dtype,
            "batch_size": args.batch_size,
            "max_new_tokens": args.max_new_tokens,
            "torch_threads": threads,
            "num_workers_local": args.num_workers,
            "ray_actors": args.concurrency,
            "ray_num_gpus": args.num_gpus if device.type == "cuda" else 0,
            "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "load_avg_before": [round(x, 2) for x in load_before],
            "load_avg_after": [round(x, 2) for x in os.getloadavg()],
            "bare_batched_ips": n / min(bare),
            "local_job_ips": n / min(local),
            "ray_job_ips": n / best_ray["wall_s"],
            "ray_engine_ips": max(r["engine_ips"] for r in ray),
            "ray_busy_share": best_ray["busy_share"],
            # what the Ray run cost beyond its steady rate: connect, plan, start and load the actors
            "ray_fixed_s": best_ray["wall_s"] - n / best_ray["engine_ips"],
            "bare_runs_ips": [n / s for s in bare],
            "local_runs_ips": [n / s for s in local],
            "ray_runs_ips": [n / r["wall_s"] for r in ray],
            "ratio_ray_local": min(local) / best_ray["wall_s"],
            "ratio_ray_bare": min(bare) / best_ray["wall_s"],
            "ratio_ray_engine_bare": max(r["engine_ips"] for r in ray) / (n / min(bare)),
            "ratio_local_bare": min(bare) / min(local),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"images {n}, model {result['model']}, device {result['device']}, dtype {dtype}, batch {args.batch_size}, "
          f"max_new_tokens {args.max_new_tokens}, torch threads {threads}, cpus {result['cpus']}, "
          f"load average {result['load_avg_before']} -> {result['load_avg_after']}")  # fmt: skip
    print(
        f"bare batched generate : {result['bare_batched_ips']:8.1f} images/s  (one model, images in memory)"
    )
    print(f"local job             : {result['local_job_ips']:8.1f} images/s  (engine local, {args.num_workers} loader workers)")  # fmt: skip
    print(f"Ray job, end to end   : {result['ray_job_ips']:8.1f} images/s  ({args.concurrency} actor(s); "
          f"connect + actor start-up included: {result['ray_fixed_s']:.1f} s fixed)")  # fmt: skip
    print(f"Ray engine, steady    : {result['ray_engine_ips']:8.1f} images/s  (actors' clock, first batch begun to last finished; "
          f"model busy {100 * result['ray_busy_share']:.0f}% of it)")  # fmt: skip
    print(f"Ray / local job       : {result['ratio_ray_local']:.2f}x    Ray / bare batched: "
          f"{result['ratio_ray_bare']:.2f}x (steady {result['ratio_ray_engine_bare']:.2f}x)    "
          f"local / bare: {result['ratio_local_bare']:.2f}x")  # fmt: skip
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
