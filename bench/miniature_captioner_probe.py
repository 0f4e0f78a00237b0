"""Recaption accuracy of the miniature captioner for one pre-training / fine-tune recipe (issue 12).

Why: the first cpu experiment showed the recaptions less precise than the alt-text they replace,
so RECAP Mix could not beat Alttext; this measures what more alt-text pre-training, a frozen
vision tower in the fine-tune, beams or more fine-tune epochs buy, each as ordinary runs
(``captioner_train``, ``recaption``) in an existing experiment workspace, scored with the
table's own ``caption_accuracy_by_kind`` on the images outside the human set. Alt-text is printed
beside the recaptions as the baseline they must beat.

    .venv/bin/python bench/miniature_captioner_probe.py --home WS --pretrain-from ARTIFACT \
        [--pretrain-epochs 30] [--pretrain-lr 2e-3] [--pretrain-lr-schedule constant|cosine] \
        [--pretrain-lr-warmup-steps 0] [--finetune-epochs 40] [--freeze-vision] [--beams 1]

``--pretrain-from`` is a captioner artifact (the experiment's alt-text artifact to continue its
pre-training, or the world base to start afresh); ``--pretrain-epochs 0`` fine-tunes it directly.
Every run is added to WS (use a copy of an experiment's workspace: recaptions are appended).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend import jobs  # noqa: E402
from backend.jobs.configs import LR_SCHEDULES, new_run  # noqa: E402
from backend.miniature.table import caption_accuracy_by_kind  # noqa: E402
from backend.workspace import open_workspace  # noqa: E402

ASPECTS = ("objects", "colors", "counts", "positions")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", required=True)
    ap.add_argument("--dataset", default="miniature")
    ap.add_argument("--pretrain-from", required=True)
    ap.add_argument("--pretrain-epochs", type=int, default=30)
    ap.add_argument("--pretrain-lr", type=float, default=2e-3)
    ap.add_argument("--pretrain-lr-schedule", choices=LR_SCHEDULES, default="constant")
    ap.add_argument("--pretrain-lr-warmup-steps", type=int, default=0)
    ap.add_argument("--finetune-epochs", type=int, default=40)
    ap.add_argument("--freeze-vision", action="store_true")
    ap.add_argument("--beams", type=int, default=1)
    ap.add_argument("--seed", type=int, default=12)
    args = ap.parse_args()
    ws = open_workspace(args.home)
    seconds: dict[str, float] = {}

    def run(key: str, kind: str, values: dict) -> int:
        started = time.perf_counter()
        created = new_run(ws, kind, values)
        final = jobs.run_foreground(ws, int(created.id))  # type: ignore[arg-type]
        if final.status != "succeeded":
            raise SystemExit(f"{kind} run {created.id} {final.status}:\n{jobs.log_tail(ws, int(created.id), 40)}")  # type: ignore[arg-type]
        seconds[key] = round(time.perf_counter() - started, 1)
        print(f"{key}: {kind} run {created.id}, {seconds[key]} s", flush=True)
        return int(created.id)  # type: ignore[arg-type]

    def artifact(run_id: int, **meta: str) -> str:
        found = [a for a in jobs.list_artifacts(ws, kind="captioner", run_id=run_id)
                 if all((a.meta or {}).get(k) == v for k, v in meta.items())]  # fmt: skip
        return str(found[0].id)

    common = {"dataset": args.dataset, "seed": args.seed, "eval_every": 100000}
    base = args.pretrain_from
    if args.pretrain_epochs:
        pre = run("pretrain", "captioner_train", {
            **common, "base": base, "captions": "alttext", "style": "short", "epochs": args.pretrain_epochs,
            "batch_size": 64, "lr": args.pretrain_lr, "lr_schedule": args.pretrain_lr_schedule,
            "lr_warmup_steps": args.pretrain_lr_warmup_steps,
            "val_fraction": 0.02, "max_new_tokens": 40,
        })  # fmt: skip
        base = artifact(pre)
    fine = run("finetune", "captioner_train", {
        **common, "base": base, "style": "both", "both_mode": "separate", "epochs": args.finetune_epochs,
        "batch_size": 16, "lr": 5e-4, "val_fraction": 0.1, "max_new_tokens": 120, "freeze_vision": args.freeze_vision,
    })  # fmt: skip
    for style in ("short", "long"):
        run(f"recaption_{style}", "recaption", {
            "dataset": args.dataset, "captioner": artifact(fine, style=style), "style": style, "batch_size": 128,
            "num_workers": 0, "max_new_tokens": 120, "num_beams": args.beams,
        })  # fmt: skip
    accuracy = caption_accuracy_by_kind(ws, args.dataset, rounds=200, seed=args.seed)
    table = {}
    for kind in ("alttext", "recap_short", "recap_long"):
        row = accuracy[kind]
        table[kind] = {a: [None if row[a][m]["value"] is None else round(row[a][m]["value"], 3)
                           for m in ("precision", "recall")] for a in ASPECTS}  # fmt: skip
        print(f"{kind:12s} " + "  ".join(f"{a} P/R {p}/{r}" for a, (p, r) in table[kind].items()))
    print(json.dumps({"args": vars(args), "seconds": seconds, "precision_recall": table}))


if __name__ == "__main__":
    main()
