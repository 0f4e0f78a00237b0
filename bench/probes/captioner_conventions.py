"""Captioner probes of docs/miniature.md, "Fourth round": what the long fine-tune keeps of pre-training.

Why a patch and a script instead of product code: the probes train on captions the world never
writes (ground truth as pre-training data, relations added to faithful alt-text, long targets
rewritten from the scene). No arm may train on those, so they stay out of the studio; the patch
(``captioner_conventions.patch``) switches them on by environment variables in a separate
worktree, and every step is still an ordinary ``captioner_train`` run:

    git worktree add /tmp/probe e0651ae && cd /tmp/probe && git apply bench/probes/captioner_conventions.patch
    .venv-python bench/probes/captioner_conventions.py pretrain --home WS --base 2 --epochs 13 \\
        --env PROBE_PRETRAIN_KIND=truth PROBE_TRUTH_FLIP=1
    .venv-python bench/probes/captioner_conventions.py finetune --home WS --base ART [--env PROBE_LONG_KEEP=flipped]
    .venv-python bench/probes/captioner_conventions.py score --home WS --artifact ART [--prompt none]

The patch is against commit e0651ae (later commits changed the code it patches); the probes
that need no patch (``finetune --values``, ``score``) run from any checkout. A wider text
decoder (the patch's ``probe_wide_decoder`` size) is built in the patched tree with
``python -m training.miniature_captioner --out DIR --size probe_wide_decoder`` and passed as
``--base DIR``. Run it from the worktree's root (the job runner imports the code of the current directory), on a
copy of an experiment's workspace (WS; every run is added to it). Environment switches of the
patch: ``PROBE_PRETRAIN_KIND=truth`` (pre-train on, or rehearse, the truth captions),
``PROBE_TRUTH_FLIP=1`` (their relations either way round), ``PROBE_FAITHFUL_RELATIONS=1``
(faithful alt-text also states every clear relation), ``PROBE_LONG_KEEP=relations|canonical|flipped``
(the long fine-tune's targets: the human relation sentences only, or every clear relation
rewritten from the scene in one phrasing, subject first as in the truth captions or either way round).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.getcwd())  # the patched worktree, not this file's checkout
sys.path.insert(0, str(Path(os.getcwd()) / "bench"))

from miniature_long_captioner_probe import held_out_sample, score  # noqa: E402
from probes.ordinary_run import run_to_end  # noqa: E402

from backend.miniature.presets import preset  # noqa: E402
from backend.workspace import open_workspace  # noqa: E402


def _train(ws_home: str, values: dict, env: list[str]) -> None:
    os.environ.update(dict(e.split("=", 1) for e in env))  # the runner inherits the switches
    run_to_end(open_workspace(ws_home), "captioner_train", {"dataset": "miniature", "seed": 12, **values},
               "captioner", str(env))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    pre = sub.add_parser("pretrain", help="the cpu preset's alt-text pre-training (captions chosen by --env)")
    fine = sub.add_parser("finetune", help="the cpu preset's long fine-tune on the human set")
    for p in (pre, fine):
        p.add_argument("--home", required=True)
        p.add_argument("--base", required=True, help="captioner artifact id or folder")
        p.add_argument("--env", nargs="*", default=[], help="the patch's switches, NAME=VALUE")
    pre.add_argument("--epochs", type=int, default=20)
    fine.add_argument("--values", default="{}", help="captioner_train values over the preset's, as JSON")
    scoring = sub.add_parser("score", help="caption accuracy on held-out images")
    scoring.add_argument("--home", required=True)
    scoring.add_argument("--artifact", required=True)
    scoring.add_argument("--prompt", default="meta", help="meta (the artifact's long prompt), none, or a prompt")
    scoring.add_argument("--sample", type=int, default=1000)
    scoring.add_argument("--beams", type=int, default=1)
    args = parser.parse_args()

    plan = preset("cpu").captioner
    if args.command == "pretrain":
        values = {**plan.pretrain, "epochs": args.epochs, "captions": "alttext", "style": "short"}
        _train(args.home, {**values, "base": args.base}, args.env)
    elif args.command == "finetune":
        values = {**plan.finetune, "captions": "human", "style": "long", **json.loads(args.values)}
        _train(args.home, {**values, "base": args.base}, args.env)
    else:
        ws = open_workspace(args.home)
        prompt = {"meta": "meta", "none": None}.get(args.prompt, args.prompt)
        images = held_out_sample(ws, args.sample)
        cells, example = score(ws, args.artifact, images, prompt=prompt, num_beams=args.beams)
        pairs = ", ".join(f"{a} {p:.2f} / {r:.2f}" if p is not None else f"{a} n/a / {r:.2f}" for a, (p, r) in cells.items())
        print(f"artifact {args.artifact} (prompt {args.prompt}, beams {args.beams}, {len(images)} images): {pairs}")
        print(f"  e.g. {example!r}")

if __name__ == "__main__":
    main()
