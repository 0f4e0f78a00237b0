"""``t2i_train`` steps/s on a CPU with and without the runners' glibc malloc tuning.

Why: by default glibc serves each few-MiB activation tensor of a CPU training step by ``mmap``
and returns its pages at once, so every step page-faults them in again and a good share of
the time goes to the kernel. ``backend.jobs.launch.MALLOC_TUNING`` keeps such blocks on the
heap. This times, on one workspace, base, mix and seed, alternating the order each round:

* ``glibc defaults``: ``RECAP_STUDIO_MALLOC_TUNING=0``;
* ``tuned``: what every runner gets now;

and prints, per run, steps/s with the runner's user and kernel seconds and minor page faults
(``getrusage`` of the finished child), then the median ratio tuned / defaults. The machine's
own speed drifts (other tenants), hence the alternation and the median. Use an experiment
workspace whose latent cache is warm (any finished t2i arm).

    .venv/bin/python bench/cpu_allocator.py --home WS [--base 1] [--steps 60] [--rounds 4]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.jobs.launch import MALLOC_TUNING, MALLOC_TUNING_SWITCH  # noqa: E402
from backend.miniature.presets import preset  # noqa: E402
from backend.workspace import open_workspace  # noqa: E402
from bench.t2i_loader_threads import timed_t2i_run  # noqa: E402

SETTINGS = {"glibc defaults": "0", "tuned": "1"}  # the value of RECAP_STUDIO_MALLOC_TUNING


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", required=True)
    ap.add_argument("--dataset", default="miniature")
    ap.add_argument("--base", default="1", help="the experiment's miniature-sd-base artifact")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    for name in MALLOC_TUNING:  # the runner's own defaults, not this shell's, are compared
        os.environ.pop(name, None)
    ws = open_workspace(args.home)
    rates: dict[str, list[float]] = {name: [] for name in SETTINGS}
    for round_ in range(args.rounds):
        order = list(SETTINGS) if round_ % 2 == 0 else list(reversed(SETTINGS))
        for name in order:
            os.environ[MALLOC_TUNING_SWITCH] = SETTINGS[name]
            values = {**preset("cpu").t2i, "steps": args.steps, "validation_every": 10**6,
                      "checkpoint_every": 10**6, "dataset": args.dataset, "base": args.base, "mix": "alttext",
                      "seed": 12}  # fmt: skip
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            rate, _, run_id = timed_t2i_run(ws, values)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            rates[name].append(rate)
            print(f"round {round_} {name}: {rates[name][-1]:.2f} steps/s, user {after.ru_utime - before.ru_utime:.1f} s, "
                  f"kernel {after.ru_stime - before.ru_stime:.1f} s, minor faults {after.ru_minflt - before.ru_minflt} "
                  f"(run {run_id})", flush=True)  # fmt: skip
    medians = {name: statistics.median(v) for name, v in rates.items()}
    ratio = medians["tuned"] / medians["glibc defaults"]
    print("median steps/s: " + ", ".join(f"{n} {m:.2f}" for n, m in medians.items()) + f"; tuned / defaults {ratio:.3f}x")
    print(json.dumps({"steps": args.steps, "rounds": args.rounds, "steps_per_s": rates, "median": medians,
                      "ratio_tuned_to_defaults": ratio}))  # fmt: skip


if __name__ == "__main__":
    main()
