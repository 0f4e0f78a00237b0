"""Coverage of a verdict campaign's 95 % success-rate intervals when a prompt's images share its difficulty.

Simulated campaigns as the studio runs them (issue 11, absolute verdicts): two systems
("base", "recap"), ``--prompts`` prompts, ``--images`` images per system and prompt, one yes/no
verdict per image. A prompt has a difficulty ``d ~ N(0, --prompt-sd)`` shared by every image of
it; an image is judged faithful with probability ``sigmoid(strength + d)``. The estimand is the
population success rate ``E_d[sigmoid(strength + d)]`` (by Monte Carlo) and the relative
improvement ``(recap - base) / base`` of those rates.

Coverage = share of campaigns whose interval holds the estimand: the cluster bootstrap over
prompts (what :mod:`backend.stats.success` does) against a bootstrap over single images (each
image its own cluster), which treats correlated images as independent. Also the time of one
bootstrap at GenEval's size (553 prompts × 4 systems × 3 images, 1000 rounds).

    .venv/bin/python bench/verdict_coverage.py [--campaigns 300] [--prompts 40] [--rounds 500]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable from a checkout without installing the package

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.special import expit  # noqa: E402

from backend.stats import RateBootstrap  # noqa: E402

STRENGTHS = {"base": -0.3, "recap": 0.6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--campaigns", type=int, default=300)
    ap.add_argument("--prompts", type=int, default=40)
    ap.add_argument("--images", type=int, default=3)
    ap.add_argument("--prompt-sd", type=float, default=1.5)
    ap.add_argument("--rounds", type=int, default=500)
    ap.add_argument("--seed", type=int, default=2024)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    truth = {
        s: float(expit(v + rng.normal(0, args.prompt_sd, 2_000_000)).mean()) for s, v in STRENGTHS.items()
    }
    true_rel = (truth["recap"] - truth["base"]) / truth["base"]
    hits = {"prompts": 0, "images": 0}
    rel_hits = {"prompts": 0, "images": 0}
    for campaign in range(args.campaigns):
        d = rng.normal(0, args.prompt_sd, args.prompts)
        rows = [
            {
                "system": s,
                "prompt": f"p{p}",
                "image": f"p{p}-{s}-{k}",
                "score": float(rng.random() < expit(v + d[p])),
            }
            for p in range(args.prompts)
            for s, v in STRENGTHS.items()
            for k in range(args.images)
        ]
        items = pd.DataFrame(rows)
        for unit in hits:
            boot = RateBootstrap(
                items.assign(cluster=items["prompt" if unit == "prompts" else "image"]), args.rounds, campaign
            )
            table = boot.table().set_index("system")
            hits[unit] += bool(table.loc["base", "lower"] <= truth["base"] <= table.loc["base", "upper"])
            rel = boot.improvements("base").iloc[0]
            rel_hits[unit] += bool(rel["lower"] <= true_rel <= rel["upper"])
    n = args.campaigns
    print(
        f"{n} campaigns, {args.prompts} prompts x {args.images} images x 2 systems, prompt sd {args.prompt_sd}, "
        f"{args.rounds} rounds, seed {args.seed}"
    )
    for unit in hits:
        print(
            f"  resampling {unit:8s}: base rate interval holds the truth in {hits[unit] / n:.1%}, "
            f"relative improvement in {rel_hits[unit] / n:.1%} (nominal 95%)"
        )
    big = pd.DataFrame(
        {
            "system": np.repeat(["a", "b", "c", "d"], 553 * 3),
            "cluster": np.tile(np.repeat(np.arange(553), 3), 4).astype(str),
            "score": (rng.random(553 * 12) < 0.5).astype(float),
        }
    )
    started = time.perf_counter()
    boot = RateBootstrap(big, 1000, 0)
    boot.table()
    boot.improvements("a")
    print(
        f"  553 prompts x 4 systems x 3 images, 1000 rounds: {1000 * (time.perf_counter() - started):.0f} ms"
    )


if __name__ == "__main__":
    main()
