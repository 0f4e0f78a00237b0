"""T2I probe: do human-style captions help once the text encoder is pre-trained, as SD's CLIP was?

Why: after the fourth cpu run (docs/miniature.md, "After the fourth cpu run"), an arm trained on
captions as accurate as the annotators' was no better than Alttext on the world's prompts
(SOA-I 0.60 and 0.60), while the ground-truth arm, with the same content in the prompts' own
template, reached 0.77: with a text encoder trained from scratch, each arm follows only the
wording it was trained on. RECAP's arms all started from SD's pre-trained CLIP text encoder. This
probe gives the miniature pipeline that: a base whose text encoder is pre-trained CLIP-style on
world texts of every writer (``miniature_base --text-steps``, :mod:`training.miniature_text`),
then the cpu preset's T2I training with the text encoder frozen (``train unet``, as diffusers'
``train_text_to_image`` fine-tunes SD), for Alttext, the annotator-quality Mix of
``t2i_caption_ceiling.py`` (a stand-in for RECAP Mix that needs no captioner) and, optionally,
the ground truth. Every step is an ordinary run in a fresh workspace, the same jobs the
experiment launches, with the cpu preset's settings; nothing of the experiment changes.

    P=".venv/bin/python bench/probes/t2i_pretrained_text.py"
    $P world --home /tmp/clipprobe                      # miniature_world, the cpu preset's corpus
    $P base --home /tmp/clipprobe --text-steps 1000     # miniature_base with the text pre-training
    .venv/bin/python bench/probes/t2i_caption_ceiling.py captions --home /tmp/clipprobe
    $P train --home /tmp/clipprobe --base ART --mix alttext
    $P train --home /tmp/clipprobe --base ART --mix probe_sim_short=0.5,probe_sim_long=0.5
    .venv/bin/python bench/miniature_more_prompts.py --home /tmp/clipprobe --preset cpu \\
        --arm "Alttext=A" --arm "Annotator-quality Mix=B" --pair "Annotator-quality Mix:Alttext"
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from probes.ordinary_run import run_to_end  # noqa: E402

from backend import jobs  # noqa: E402
from backend.compositional.loaders import load_structured_jsonl  # noqa: E402
from backend.db import migrate  # noqa: E402
from backend.jobs import store  # noqa: E402
from backend.miniature.presets import preset  # noqa: E402
from backend.workspace import open_workspace  # noqa: E402
from training.jobs.miniature import VALIDATION_PROMPTS  # noqa: E402

DATASET, SEED = "miniature", 12


def world(home: str, preset_name: str) -> None:
    plan = preset(preset_name)
    ws = open_workspace(home)
    migrate(ws)  # a fresh workspace, as the CLI makes one
    config = {"dataset": DATASET, "images": plan.images, "human_images": plan.human_images, "prompts": plan.prompts, "seed": SEED}
    run_to_end(ws, "miniature_world", config, "t2i", "the world")


def base(home: str, preset_name: str, text_steps: int) -> None:
    plan = preset(preset_name)
    ws = open_workspace(home)
    config = {"dataset": DATASET, "size": plan.size, "vae_steps": plan.vae_steps, "seed": SEED, "text_steps": text_steps}
    run_to_end(ws, "miniature_base", config, "t2i", f"base, text pre-training {text_steps} steps")


def prompts_path(home: str) -> Path:
    ws = open_workspace(home)
    world_run = next(r for r in jobs.list_runs(ws) if r.kind == "miniature_world" and r.status == "succeeded")
    return Path(json.loads((store.run_dir(ws, world_run) / "corpus.json").read_text())["prompts_path"])


def train(home: str, preset_name: str, base_artifact: str, mix: str, train_what: str) -> None:
    plan = preset(preset_name)
    ws = open_workspace(home)
    validation = [p.prompt for p in load_structured_jsonl(prompts_path(home))[:VALIDATION_PROMPTS]]
    config = {"dataset": DATASET, "base": base_artifact, "mix": mix, "seed": SEED, "validation_prompts": validation,
              **plan.t2i, "train": train_what}  # fmt: skip
    run_to_end(ws, "t2i_train", config, "t2i", f"mix {mix}, train {train_what}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("world", "base", "train"):
        p = sub.add_parser(name)
        p.add_argument("--home", required=True)
        p.add_argument("--preset", default="cpu")
        if name == "base":
            p.add_argument("--text-steps", type=int, default=1000)
        if name == "train":
            p.add_argument("--base", required=True, help="the base t2i artifact id")
            p.add_argument("--mix", required=True)
            p.add_argument("--train", default="unet", choices=("unet", "both", "text_encoder"))
    args = parser.parse_args()
    if args.command == "world":
        world(args.home, args.preset)
    elif args.command == "base":
        base(args.home, args.preset, args.text_steps)
    else:
        train(args.home, args.preset, args.base, args.mix, args.train)


if __name__ == "__main__":
    main()
