"""Coverage of the Arena's 95 % rating intervals when annotators and criteria are correlated (issue 9, 7g).

Simulated campaigns as the studio runs them: 4 systems, ``--prompts`` prompts, one image per
system and prompt, every system pair of a prompt judged by ``--annotators`` annotators under
``--criteria`` criteria. An image's quality under a criterion is its system's strength plus a
per-image random effect shared by every pair, annotator and criterion that sees the image
(sd ``--image-sd``) plus a per-criterion part (sd ``--criterion-sd``); each judgment is then a
Bradley–Terry coin with that quality difference. Votes on one prompt are therefore correlated,
which a bootstrap over single votes ignores.

The estimand is what the fit converges to with infinitely many prompts: the Bradley–Terry fit to
the marginal win probabilities (integrated over the random effects by Gauss–Hermite quadrature).
Coverage = share of campaigns whose interval holds it, per system, for the primary criterion
alone and for all criteria pooled; with ``cluster`` support (issue 9) both the vote bootstrap and
the cluster bootstrap over prompts are reported.

    .venv/bin/python bench/arena_coverage.py [--campaigns 200] [--prompts 40] [--rounds 100]
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable from a checkout without installing the package

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from backend.stats import bootstrap_bt  # noqa: E402
from backend.stats import bradley_terry as bt  # noqa: E402

STRENGTHS = {"A": 0.0, "B": 0.3, "C": 0.6, "D": 1.2}
ELO = 400 / math.log(10)


def simulate(prompts: int, annotators: int, criteria: int, image_sd: float, criterion_sd: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    names = list(STRENGTHS)
    s = np.array(list(STRENGTHS.values()))
    k = len(names)
    image = rng.normal(0.0, image_sd, size=(prompts, k))
    quality = s[None, :, None] + image[:, :, None] + rng.normal(0.0, criterion_sd, size=(prompts, k, criteria))
    rows = []
    for p in range(prompts):
        for i in range(k):
            for j in range(i + 1, k):
                for c in range(criteria):
                    for a in range(annotators):
                        left, right = (i, j) if rng.random() < 0.5 else (j, i)
                        p_left = 1 / (1 + math.exp(-(quality[p, left, c] - quality[p, right, c])))
                        rows.append((names[left], names[right], "a" if rng.random() < p_left else "b",
                                     f"prompt {p}", f"c{c}", f"ann{a}"))  # fmt: skip
    return pd.DataFrame(rows, columns=["model_a", "model_b", "outcome", "prompt", "criterion", "annotator"])


def estimand(image_sd: float, criterion_sd: float) -> pd.Series:
    """Ratings the fit converges to: BT on the marginal win probabilities of every ordered pair."""
    names = list(STRENGTHS)
    s = np.array(list(STRENGTHS.values()))
    x, w = np.polynomial.hermite_e.hermegauss(80)  # E f(Z), Z ~ N(0, 1)
    sd = math.sqrt(2 * (image_sd**2 + criterion_sd**2))
    ia, ib, y = [], [], []
    for i in range(len(s)):
        for j in range(len(s)):
            if i != j:
                ia.append(i)
                ib.append(j)
                y.append(float(np.sum(w / (1 + np.exp(-(s[i] - s[j] + sd * x)))) / np.sum(w)))
    design = bt._Design(names, np.array(ia), np.array(ib), np.array(y), np.full(len(y), 1e6))
    theta = bt._fit_theta(design, design.w, 1e-12)
    return pd.Series(1000.0 + ELO * (theta - theta.mean()), index=names)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--campaigns", type=int, default=200)
    ap.add_argument("--prompts", type=int, default=40)
    ap.add_argument("--annotators", type=int, default=3)
    ap.add_argument("--criteria", type=int, default=2)
    ap.add_argument("--image-sd", type=float, default=1.0)
    ap.add_argument("--criterion-sd", type=float, default=0.3)
    ap.add_argument("--rounds", type=int, default=100)
    args = ap.parse_args()
    clustered = "cluster" in inspect.signature(bootstrap_bt).parameters
    truth = estimand(args.image_sd, args.criterion_sd)
    methods = {"votes": {}}
    if clustered:
        methods["prompts"] = {"cluster": "prompt"}
    hits = {(m, scope): [] for m in methods for scope in ("primary", "pooled")}
    widths = {key: [] for key in hits}
    t0 = time.perf_counter()
    for campaign in range(args.campaigns):
        votes = simulate(args.prompts, args.annotators, args.criteria, args.image_sd, args.criterion_sd, 1000 + campaign)
        for scope, sub in (("primary", votes[votes["criterion"] == "c0"]), ("pooled", votes)):
            for method, extra in methods.items():
                t = bootstrap_bt(sub, rounds=args.rounds, seed=campaign, **extra).set_index("system").loc[list(truth.index)]
                hits[(method, scope)].append(((t["lower"] <= truth) & (truth <= t["upper"])).to_numpy())
                widths[(method, scope)].append((t["upper"] - t["lower"]).to_numpy())
    seconds = time.perf_counter() - t0
    n_votes = args.prompts * 6 * args.annotators
    print(
        f"{args.campaigns} campaigns: {args.prompts} prompts x 6 pairs x {args.annotators} annotators x "
        f"{args.criteria} criteria ({n_votes} votes per criterion); image sd {args.image_sd}, criterion sd "
        f"{args.criterion_sd}; {args.rounds} bootstrap rounds; estimand {truth.round(1).to_dict()}"
    )
    out = {}
    for (method, scope), h in hits.items():
        per_system = np.mean(h, axis=0)
        width = float(np.mean(widths[(method, scope)]))
        out[f"{method}/{scope}"] = {"per_system": per_system.round(3).tolist(), "mean": float(per_system.mean()),
                                    "mean_width": width}  # fmt: skip
        print(f"bootstrap over {method:7s} {scope:7s}: coverage per system {per_system.round(3).tolist()}, "
              f"mean {per_system.mean():.3f}; mean interval width {width:.1f} points")  # fmt: skip
    print(f"{seconds:.1f} s")
    print(json.dumps({"args": vars(args), "clustered": clustered, "coverage": out}))


if __name__ == "__main__":
    main()
