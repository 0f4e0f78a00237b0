"""A finished miniature experiment's T2I arms, scored again on held-out prompts it never used.

Why: the cpu preset scores each arm on 100 held-out prompts × 2 seeds, and its 95 % intervals of
RECAP Mix − Alttext are about ±0.05 wide, as wide as the differences it found. This measures the
same checkpoints on *new* held-out prompts (prompts ``--first`` … ``--first + --prompts - 1`` of
the world's held-out sequence, which the experiment's own 100 precede; the sequence is
prefix-stable, so they are disjoint from them), with the experiment's seeds, oracle detector,
metrics and bootstrap: an ordinary ``generate`` run, then the table's own
:func:`backend.miniature.table.arm_rows`. It is a second, larger sample of the same models, not a
replacement for the experiment's table, and its size is fixed by the arguments before it runs.

``--extra "NAME=ARTIFACT"`` adds a probe's T2I checkpoint (e.g. ``bench/probes/t2i_caption_ceiling.py``)
as one more arm on the same prompts and seeds; each extra arm is compared, paired, with RECAP Mix
and with the upper bound. ``--contrast "+A|-B|-C|+D"`` adds any signed sum of arms (by name), paired
over the prompts in one resample: the interaction ``(A − B) − (C − D)`` asks whether the design that
separates A, B from C, D changes the difference between the two caption mixes.

``--prompt-style annotator`` asks the T2I models in the annotators' words instead of the world's
one template: each prompt's text becomes the simulated annotator's long caption of its held-out
scene, without mistakes (seeded per prompt), while what is scored (objects, counts, colours,
relations) stays the prompt's. It is a probe of prompt style, like DALL-E 3's prompt upsampling,
with one difference to say aloud: the annotator also writes where each object sits, which the
world's prompt does not state.

    .venv/bin/python bench/miniature_more_prompts.py --home WS --experiment RUN_ID [--first 100] [--prompts 400] \
        [--extra "NAME=ARTIFACT" ...] [--contrast "+A|-B|-C|+D" ...]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend import jobs  # noqa: E402
from backend.jobs import store  # noqa: E402
from backend.jobs.configs import new_run  # noqa: E402
from backend.miniature.captions import SimulatedAnnotator  # noqa: E402
from backend.miniature.corpus import held_out_scenes, write_prompts  # noqa: E402
from backend.miniature.presets import TABLE_METRICS, preset  # noqa: E402
from backend.miniature.table import (  # noqa: E402
    METRIC_LABELS,
    ArmImages,
    arm_contrast,
    arm_difference,
    arm_rows,
    detect_arm,
    sort_generated,
)
from backend.miniature.world import Scene  # noqa: E402
from backend.workspace import open_workspace  # noqa: E402
from training.detectors import load_detector  # noqa: E402
from training.jobs.t2i_eval import generated_images  # noqa: E402


def cell(v: dict) -> str:
    return f"{v['value']:+.3f} [{v['lower']:+.3f}, {v['upper']:+.3f}]"


def parse_contrast(spec: str, names: set[str]) -> list[tuple[float, str]]:
    """``"+A|-B"`` as ``[(1.0, "A"), (-1.0, "B")]``; every name must be an arm of this scoring."""
    terms = []
    for term in spec.split("|"):
        term = term.strip()
        if term[:1] not in "+-" or term[1:].strip() not in names:
            raise SystemExit(f"--contrast term {term!r} must be + or - and one of the arms: {sorted(names)}")
        terms.append((1.0 if term[0] == "+" else -1.0, term[1:].strip()))
    return terms


def annotator_wording(seed: int) -> Callable[[int, Scene], str]:
    """Held-out prompt ``i`` worded as the annotator's long caption of its scene, without mistakes."""
    annotator = SimulatedAnnotator(mistake_rate=0.0)
    return lambda i, scene: annotator.long(scene, random.Random(f"prompt-style:{seed}:{i}")).text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", required=True)
    ap.add_argument("--experiment", required=True, type=int, help="the miniature experiment's run id")
    ap.add_argument("--first", type=int, default=100, help="first held-out prompt (the experiment used 0..N-1)")
    ap.add_argument("--prompts", type=int, default=400)
    ap.add_argument("--prompt-style", choices=("world", "annotator"), default="world")
    ap.add_argument("--extra", nargs="*", default=[], help="probe arms, NAME=ARTIFACT (a t2i artifact id)")
    ap.add_argument("--contrast", nargs="*", default=[], help='signed sums of arms by name, "+A|-B|-C|+D"')
    args = ap.parse_args()
    ws = open_workspace(args.home)
    table = json.loads((store.run_dir(ws, jobs.get_run(ws, args.experiment)) / "table.json").read_text())
    plan = preset(table["preset"])
    if args.first < table["prompts"]:
        raise SystemExit(f"--first {args.first} overlaps the experiment's own {table['prompts']} prompts")
    arms = {a["arm"]: (a["caption_condition"], str(a["artifact"])) for a in table["arms"]}
    extra = dict(e.rsplit("=", 1) for e in args.extra)
    arms.update({name: ("probe", artifact) for name, artifact in extra.items()})
    contrasts = [parse_contrast(c, set(arms)) for c in args.contrast]  # refused before anything runs
    dataset, seed = table["dataset"], int(table["seed"])

    scenes = held_out_scenes(args.first + args.prompts, seed)[args.first :]
    span = f"{args.first}-{args.first + args.prompts - 1}"
    style = "" if args.prompt_style == "world" else f"-{args.prompt_style}"
    path = ws.home / "prompts" / f"{dataset}-heldout{style}-{span}.jsonl"
    rewrite = annotator_wording(seed) if args.prompt_style == "annotator" else None
    write_prompts(path, scenes, dataset, first=args.first, rewrite=rewrite)
    out_ds = f"{dataset}-more-prompts{style}-run{args.experiment}-{span}"
    started = time.perf_counter()
    run = new_run(ws, "generate", {"prompts": str(path), "checkpoints": [a for _, a in arms.values()],
                                   "seeds": list(table["seeds"]), "output_dataset": out_ds, **plan.generate})  # fmt: skip
    final = jobs.run_foreground(ws, int(run.id))  # type: ignore[arg-type]
    if final.status != "succeeded":
        raise SystemExit(f"generate run {run.id} {final.status}:\n{jobs.log_tail(ws, int(run.id), 40)}")  # type: ignore[arg-type]
    generate_s = time.perf_counter() - started

    images, _ = generated_images(ws, out_ds)
    by_artifact = {artifact: ArmImages(arm, mix, artifact) for arm, (mix, artifact) in arms.items()}
    prompts = sort_generated(images, by_artifact)
    detector = load_detector("oracle:miniature")
    for arm in by_artifact.values():
        detect_arm(arm, detector)
    result = arm_rows(prompts, list(by_artifact.values()), rounds=plan.bootstrap_rounds, seed=seed)

    print(f"{len(prompts)} new held-out prompts ({args.prompt_style} style) x seeds {table['seeds']} (generate run {run.id}, {generate_s:.0f} s)")
    print("| arm | " + " | ".join(METRIC_LABELS[m] for m in TABLE_METRICS) + " |")
    print("|---|" + "---|" * len(TABLE_METRICS))
    for row in result["arms"]:
        values = [f"{row['metrics'][m]['value']:.2f} [{row['metrics'][m]['lower']:.2f}, {row['metrics'][m]['upper']:.2f}]"
                  for m in TABLE_METRICS]  # fmt: skip
        print(f"| {row['arm']} | " + " | ".join(values) + " |")
        chance = [f"{result['chance'][m][row['arm']]['value']:.2f}" for m in TABLE_METRICS]
        print(f"| chance ({row['arm']}'s images) | " + " | ".join(chance) + " |")
    if result["differences"]:
        print("| **RECAP Mix − Alttext** | " + " | ".join(cell(result["differences"][m]) for m in TABLE_METRICS) + " |")
    named = {a.arm: a for a in by_artifact.values()}
    probes = {}
    for name in extra:
        for other in ("RECAP Mix", "Ground truth (upper bound)"):
            if other not in named:
                continue
            d = arm_difference(prompts, named[name], named[other], rounds=plan.bootstrap_rounds, seed=seed)
            probes[f"{name} − {other}"] = d
            print(f"| {name} − {other} | " + " | ".join(cell(d[m]) for m in TABLE_METRICS) + " |")
    result["probe_differences"] = probes
    result["contrasts"] = {}
    for spec, terms in zip(args.contrast, contrasts, strict=True):
        c = arm_contrast(prompts, [(w, named[name]) for w, name in terms], rounds=plan.bootstrap_rounds, seed=seed)
        result["contrasts"][spec] = c
        label = " ".join(f"{'+' if w > 0 else '−'} {name}" for w, name in terms)  # no | inside a table cell
        print(f"| {label} | " + " | ".join(cell(c[m]) for m in TABLE_METRICS) + " |")
    print(json.dumps({"experiment": args.experiment, "first": args.first, "prompts": len(prompts), "prompt_style": args.prompt_style,
                      "generate_run": run.id, "generate_s": round(generate_s, 1), **result}))  # fmt: skip


if __name__ == "__main__":
    main()
