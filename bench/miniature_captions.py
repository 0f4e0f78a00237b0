"""Caption accuracy of the miniature world's caption sources against the ground truth (issue 12).

Why: the experiment's premise is that alt-text is a poor description of the image and careful
human captions a good one; before any model is trained, this measures how poor and how good the
groundwork's simulated sources are, with the same reader and scoring the experiment will apply to
the recaptions (``backend.miniature.accuracy``). It also times the pieces the corpus builder and
the evaluation lean on (sampling, rendering, the oracle detector).

    .venv/bin/python bench/miniature_captions.py [--images 1000] [--seed 12] [--rounds 1000]

Prints one table row per source — alt-text per failure mode and all together, the simulated
annotator's short and long captions at the default mistake rate — with precision and recall of
objects, colours, counts and positions and their 95% intervals over images, then a JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable from a checkout without installing the package

from backend.miniature.accuracy import ASPECTS, CaptionAccuracy, caption_accuracy, fmt, summarise  # noqa: E402
from backend.miniature.captions import ALTTEXT_MODES, MISTAKE_RATE, SimulatedAnnotator, alttext, assign_modes  # noqa: E402
from backend.miniature.corpus import corpus_scenes  # noqa: E402
from backend.miniature.world import render  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=1000, help="bootstrap resamples")
    args = ap.parse_args()

    t0 = time.perf_counter()
    scenes = corpus_scenes(args.images, args.seed)
    t_sample = time.perf_counter() - t0
    t0 = time.perf_counter()
    images = [render(s) for s in scenes]
    t_render = time.perf_counter() - t0
    from training.detectors import load_detector  # the only torch-free training import here

    t0 = time.perf_counter()
    load_detector("oracle:miniature").detect(images)
    t_oracle = time.perf_counter() - t0

    modes = assign_modes(len(scenes), random.Random(f"modes:{args.seed}"))
    sources: dict[str, list[CaptionAccuracy]] = {f"alttext {m}": [] for m in ALTTEXT_MODES}
    ids: dict[str, list[int]] = {k: [] for k in sources}
    annotator = SimulatedAnnotator()
    short: list[CaptionAccuracy] = []
    long: list[CaptionAccuracy] = []
    mistakes = 0
    t0 = time.perf_counter()
    for i, (scene, mode) in enumerate(zip(scenes, modes, strict=True)):
        alt = alttext(scene, mode, random.Random(f"alt:{args.seed}:{i}"))
        sources[f"alttext {mode}"].append(caption_accuracy(alt.text, scene))
        ids[f"alttext {mode}"].append(i)
        rng = random.Random(f"human:{args.seed}:{i}")
        s, lo = annotator.short(scene, rng), annotator.long(scene, rng)
        mistakes += bool(s.mistakes) + bool(lo.mistakes)
        short.append(caption_accuracy(s.text, scene))
        long.append(caption_accuracy(lo.text, scene))
    t_score = time.perf_counter() - t0
    all_alt = [c for m in ALTTEXT_MODES for c in sources[f"alttext {m}"]]
    all_ids = [i for m in ALTTEXT_MODES for i in ids[f"alttext {m}"]]
    rows = {
        **{k: summarise(v, ids[k], rounds=args.rounds, seed=1) for k, v in sources.items()},
        "alttext (all modes)": summarise(all_alt, all_ids, rounds=args.rounds, seed=1),
        f"human short ({MISTAKE_RATE:.0%} mistakes)": summarise(short, rounds=args.rounds, seed=1),
        f"human long ({MISTAKE_RATE:.0%} mistakes)": summarise(long, rounds=args.rounds, seed=1),
    }

    print(
        f"miniature world, {len(scenes)} corpus scenes (seed {args.seed}); alt-text modes "
        + ", ".join(f"{m} {p:.0%}" for m, p in ALTTEXT_MODES.items())
        + f"; annotator mistakes in {mistakes} of {2 * len(scenes)} captions"
    )
    print(
        f"timing: sample {t_sample:.2f} s, render {t_render:.2f} s, oracle {t_oracle:.2f} s, "
        f"read + score {3 * len(scenes)} captions {t_score:.2f} s"
    )
    print("precision / recall with 95% intervals over images (n/a: nothing claimed)")
    for aspect in ASPECTS:
        print(f"\n{aspect}")
        for name, summary in rows.items():
            print(
                f"  {name:28s} n={summary.n_captions:4d}  P {fmt(summary.precision[aspect]):20s}"
                f"  R {fmt(summary.recall[aspect])}"
            )
    print(
        json.dumps(
            {
                "images": len(scenes),
                "seed": args.seed,
                "seconds": {
                    "sample": round(t_sample, 3),
                    "render": round(t_render, 3),
                    "oracle": round(t_oracle, 3),
                    "score": round(t_score, 3),
                },
                "annotator_mistakes": mistakes,
                "sources": {k: v.as_json() for k, v in rows.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
