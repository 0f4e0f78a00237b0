"""``t2i_train`` steps/s with loader workers (2) against none, on a CPU, with the latents cached.

Why: on a CPU, ``set_torch_threads`` keeps one core per loader worker for image decoding, so a
2-core machine with the default 2 workers trains on 1 torch thread, even when every latent
comes from the cache and the workers have nothing to decode. This times both settings on the
same workspace, base, mix and seed (the same run otherwise), one after the other, and prints the
ratio. Use an experiment workspace whose latent cache is warm (any finished t2i arm).

    .venv/bin/python bench/t2i_loader_threads.py --home WS [--base 1] [--steps 300]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend import jobs  # noqa: E402
from backend.jobs import store  # noqa: E402
from backend.jobs.configs import new_run  # noqa: E402
from backend.miniature.presets import preset  # noqa: E402
from backend.workspace import open_workspace  # noqa: E402

TRAINED = re.compile(r"trained to step (\d+) in ([\d.]+) s")
THREADS = re.compile(r"threads (\d+)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", required=True)
    ap.add_argument("--dataset", default="miniature")
    ap.add_argument("--base", default="1", help="the experiment's miniature-sd-base artifact")
    ap.add_argument("--steps", type=int, default=300)
    args = ap.parse_args()
    ws = open_workspace(args.home)
    rates: dict[int, float] = {}
    for workers in (2, 0):
        values = {**preset("cpu").t2i, "steps": args.steps, "num_workers": workers, "validation_every": 10**6,
                  "checkpoint_every": 10**6, "dataset": args.dataset, "base": args.base, "mix": "alttext", "seed": 12}  # fmt: skip
        run = new_run(ws, "t2i_train", values)
        final = jobs.run_foreground(ws, int(run.id))  # type: ignore[arg-type]
        log = store.log_path(ws, int(run.id)).read_text()  # type: ignore[arg-type]
        if final.status != "succeeded" or not TRAINED.search(log):
            raise SystemExit(f"run {run.id} {final.status}:\n{jobs.log_tail(ws, int(run.id), 40)}")  # type: ignore[arg-type]
        steps, secs = TRAINED.findall(log)[-1]
        rates[workers] = int(steps) / float(secs)
        threads = THREADS.search(log)
        print(f"num_workers {workers}: torch threads {threads.group(1) if threads else '?'}, "
              f"{rates[workers]:.2f} steps/s (run {run.id})", flush=True)  # fmt: skip
    print(f"no workers / 2 workers: {rates[0] / rates[2]:.2f}x")
    print(json.dumps({"steps": args.steps, "steps_per_s": rates, "ratio": rates[0] / rates[2]}))


if __name__ == "__main__":
    main()
