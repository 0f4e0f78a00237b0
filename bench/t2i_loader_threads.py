"""``t2i_train`` steps/s on a CPU with the latents cached: the threads loader workers used to cost.

Why: on a CPU, ``set_torch_threads`` keeps one core per loader worker for image decoding, so on
a 2-core machine the default 2 workers left torch 1 thread, even when every latent came from the
cache and the workers had nothing to decode (the first cpu experiment's arms). ``t2i_train`` no
longer keeps those cores when it caches latents on one CPU process. This times, on the same workspace, base, mix
and seed, one after the other:

* ``old``: 2 workers and 1 torch thread, what the automatic setting gave before;
* ``auto``: 2 workers and automatic threads, as now;
* ``none``: no workers, automatic threads (what the cpu preset sets);

and prints each against ``old``. Use an experiment workspace whose latent cache is warm (any
finished t2i arm).

    .venv/bin/python bench/t2i_loader_threads.py --home WS [--base 1] [--steps 300]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend import jobs  # noqa: E402
from backend.jobs import store  # noqa: E402
from backend.jobs.configs import new_run  # noqa: E402
from backend.miniature.presets import preset  # noqa: E402
from backend.workspace import Workspace, open_workspace  # noqa: E402

TRAINED = re.compile(r"trained to step (\d+) in ([\d.]+) s")
THREADS = re.compile(r"threads (\d+)|torch takes all (\d+) cores")


def timed_t2i_run(ws: Workspace, values: dict[str, Any]) -> tuple[float, str, int]:
    """Run ``t2i_train`` with ``values`` in the foreground: (steps/s of its training loop, its log, run id).

    The rate is the job's own "trained to step N in S s" line, so loading and saving are left out.
    """
    run = new_run(ws, "t2i_train", values)
    final = jobs.run_foreground(ws, int(run.id))  # type: ignore[arg-type]
    log = store.log_path(ws, int(run.id)).read_text()  # type: ignore[arg-type]
    if final.status != "succeeded" or not TRAINED.search(log):
        raise SystemExit(f"run {run.id} {final.status}:\n{jobs.log_tail(ws, int(run.id), 40)}")  # type: ignore[arg-type]
    steps, secs = TRAINED.findall(log)[-1]
    return int(steps) / float(secs), log, int(run.id)  # type: ignore[arg-type]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", required=True)
    ap.add_argument("--dataset", default="miniature")
    ap.add_argument("--base", default="1", help="the experiment's miniature-sd-base artifact")
    ap.add_argument("--steps", type=int, default=300)
    args = ap.parse_args()
    ws = open_workspace(args.home)
    rates: dict[str, float] = {}
    for name, workers, threads_wanted in (("old", 2, 1), ("auto", 2, 0), ("none", 0, 0)):
        values = {**preset("cpu").t2i, "steps": args.steps, "num_workers": workers, "torch_threads": threads_wanted,
                  "validation_every": 10**6,
                  "checkpoint_every": 10**6, "dataset": args.dataset, "base": args.base, "mix": "alttext", "seed": 12}  # fmt: skip
        rates[name], log, run_id = timed_t2i_run(ws, values)
        threads = [a or b for a, b in THREADS.findall(log)]  # the last says what training used
        print(f"{name}: num_workers {workers}, torch threads {threads[-1] if threads else '?'}, "
              f"{rates[name]:.2f} steps/s (run {run_id})", flush=True)  # fmt: skip
    ratios = {name: rate / rates["old"] for name, rate in rates.items()}
    print("against old: " + ", ".join(f"{name} {ratio:.2f}x" for name, ratio in ratios.items()))
    print(json.dumps({"steps": args.steps, "steps_per_s": rates, "ratio_to_old": ratios}))


if __name__ == "__main__":
    main()
