"""CLIP R-precision: does the number depend on how many prompts the set has? (issue 9, 7e)

The same simulated CLIP features (seeded) are scored with prompt sets of growing size, the
smaller sets nested in the larger ones (same prompts, same images). Text features come from
60 topics plus a prompt-specific part, image features are their prompt's text feature plus
noise, so related prompts compete, as in real CLIP space; the noise is set so that the
standard protocol (true prompt among 99 random others) gives about 93 %, RECAP's range.

``r_precision_all`` (the studio's metric before issue 9, and its name after) ranks the true
prompt among *all* distinct prompts of the set; ``r_precision`` after issue 9 follows the
standard protocol. Runs against whichever version of ``training.jobs.t2i_eval`` is importable
(before the change only the first exists, under the name ``r_precision``).

    .venv/bin/python bench/r_precision_protocol.py [--sizes 20,50,100,300,1000,3000] [--seeds 2]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable from a checkout without installing the package

import numpy as np  # noqa: E402

from training.jobs import t2i_eval  # noqa: E402

DIM, TOPICS, BETA, NOISE = 64, 60, 1.0, 0.6


@dataclass(frozen=True)
class Img:
    prompt: str


def features(n_prompts: int, seeds: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(text features n_prompts × d, image features (n_prompts·seeds) × d), unit length."""
    rng = np.random.default_rng(seed)
    topics = rng.normal(size=(TOPICS, DIM))
    text = topics[rng.integers(0, TOPICS, n_prompts)] + BETA * rng.normal(size=(n_prompts, DIM))
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    images = np.repeat(text, seeds, axis=0) + NOISE * 3 / np.sqrt(DIM) * rng.normal(size=(n_prompts * seeds, DIM))
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    return text, images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="20,50,100,300,1000,3000")
    ap.add_argument("--seeds", type=int, default=2, help="images per prompt")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    text_all, images_all = features(max(sizes), args.seeds)
    new_api = hasattr(t2i_eval, "r_precision_all")
    rows = []
    print(f"{'prompts':>8} {'images':>7}  {'r_precision_all %':>18}  {'r_precision (99 distractors) %':>31}  candidates")
    for n in sizes:
        prompts = [f"p{i}" for i in range(n)]
        text = SimpleNamespace(
            prompts=prompts, index={p: i for i, p in enumerate(prompts)}, matrix=text_all[:n], truncated=set()
        )
        group = [Img(p) for p in prompts for _ in range(args.seeds)]
        feats = images_all[: n * args.seeds]
        row: dict[str, object] = {"prompts": n, "images": len(group)}
        if new_api:
            hits, total = t2i_eval.r_precision_all(group, feats, text)
            row["r_precision_all"] = 100.0 * hits / total
            rp = t2i_eval.r_precision(group, feats, text)
            row["r_precision"] = rp.value
            row["candidates"] = rp.candidates
        else:  # before issue 9: r_precision ranked among all prompts of the set
            hits, total = t2i_eval.r_precision(group, feats, text)
            row["r_precision_all"] = 100.0 * hits / total
        rows.append(row)
        standard = f"{row['r_precision']:31.2f}" if "r_precision" in row else f"{'(not available)':>31}"
        print(f"{n:8d} {len(group):7d}  {row['r_precision_all']:18.2f}  {standard}  {row.get('candidates', n)}")
    print(json.dumps({"new_api": new_api, "rows": rows}))


if __name__ == "__main__":
    main()
