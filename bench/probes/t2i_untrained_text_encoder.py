"""T2I probe after the fifth cpu run: one arm with the *fourth* run's text-encoder design.

Why: the fifth run changed the text encoder (pre-trained CLIP-style, frozen in every arm) and,
without being asked to, got worse recaptions than the fourth run (a new machine). RECAP Mix fell
from 0.68 to 0.59 SOA-I. This probe separates the two: it trains one arm on the fifth run's own
recaptions with the fourth run's design, an untrained text encoder trained with the arm
(``train both``), everything else the fifth run's arm config. The untrained encoder is the one
the base stage builds before pre-training it (same seed, same tokenizer, same init order), so the
base pipeline's VAE, UNet and tokenizer are the run's, byte for byte; it is saved as a plain
pipeline folder that ``t2i_train`` takes as a local path, as users pass theirs.

    .venv/bin/python bench/probes/t2i_untrained_text_encoder.py --home /tmp/minicpu7 --like 9
    .venv/bin/python bench/miniature_more_prompts.py --home /tmp/minicpu7 --experiment 1 \\
        --extra "RECAP Mix, text encoder trained with the arm=ARTIFACT"
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from probes.ordinary_run import run_to_end  # noqa: E402

from backend import jobs  # noqa: E402
from backend.workspace import open_workspace  # noqa: E402


def untrained_text_base(home: str, base_artifact: int, out: Path) -> Path:
    """The base pipeline with its text encoder as the base stage built it before pre-training."""
    import torch
    from diffusers import StableDiffusionPipeline

    from training import miniature_sd as msd
    from training.jobs.miniature_base import SIZES

    ws = open_workspace(home)
    artifact = jobs.get_artifact(ws, base_artifact)
    meta = artifact.meta or {}
    pipe = StableDiffusionPipeline.from_pretrained(ws.home / artifact.path)
    torch.manual_seed(int(meta["seed"]))
    text_encoder = msd.build_text_encoder(pipe.tokenizer, SIZES[meta["size"]].text)
    unet = msd.build_unet(SIZES[meta["size"]].unet)  # built next, as the base stage does: the same init
    if any(not torch.equal(v, pipe.unet.state_dict()[k]) for k, v in unet.state_dict().items()):
        raise SystemExit("the rebuilt UNet differs from the base's: this is not the base stage's init order")
    msd.save_pipeline(out, pipe.vae, text_encoder, pipe.tokenizer, pipe.unet)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", required=True)
    parser.add_argument("--like", required=True, type=int, help="the experiment's RECAP Mix t2i_train run id")
    parser.add_argument("--mix", default=None, help="another caption mix (default: the run's)")
    args = parser.parse_args()
    ws = open_workspace(args.home)
    config = dict(jobs.get_run(ws, args.like).config)
    folder = untrained_text_base(args.home, int(config["base"]), ws.home / "probes" / "sd-base-untrained-text")
    config.update({"base": str(folder), "train": "both"})
    if args.mix:
        config["mix"] = args.mix
    run_to_end(ws, "t2i_train", config, "t2i", f"mix {config['mix']}, untrained text encoder trained with the arm")


if __name__ == "__main__":
    main()
