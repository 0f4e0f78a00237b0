"""T2I probe of docs/miniature.md, "After the fourth cpu run": RECAP Mix with a captioner as good as the annotators.

Why: RECAP Mix trails the ground-truth arm by far more than it leads Alttext, and two things
separate it from that upper bound: what its captions get wrong (the captioner's accuracy) and how
they are worded (the annotators' varied, long style against the truth's one template, which the
held-out prompts share). This probe trains one more T2I arm on RECAP Mix's weights (short 0.5,
long 0.5) over captions the simulated annotator writes from the ground truth for *every* corpus
image, with the annotators' own mistake rate: a recaptioner exactly as good as the human set.
If that arm reaches the upper bound, the captioner's accuracy is what RECAP Mix lacks; if it
stays near RECAP Mix, the caption style (or the T2I model's reading of it) is.

It trains on captions made from the ground truth, so it is a capability probe like the upper
bound, never an arm of the experiment: the kinds (``probe_sim_short``, ``probe_sim_long``) are
written into a *copy* of an experiment's workspace, and the training is an ordinary
``t2i_train`` run with the config of the experiment's RECAP Mix run, only ``mix`` changed:

    cp -a WS /tmp/ceiling
    .venv/bin/python bench/probes/t2i_caption_ceiling.py captions --home /tmp/ceiling
    .venv/bin/python bench/probes/t2i_caption_ceiling.py train --home /tmp/ceiling --like MIX_RUN_ID
    .venv/bin/python bench/miniature_more_prompts.py --home /tmp/ceiling --experiment 1 \\
        --extra "Annotator-quality Mix=ARTIFACT"
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from probes.ordinary_run import run_to_end  # noqa: E402
from sqlmodel import select  # noqa: E402

from backend import jobs  # noqa: E402
from backend.captions import add_caption  # noqa: E402
from backend.db import write_session  # noqa: E402
from backend.miniature.captions import SimulatedAnnotator  # noqa: E402
from backend.miniature.world import Scene  # noqa: E402
from backend.models import Caption, Dataset, Image  # noqa: E402
from backend.workspace import open_workspace  # noqa: E402

KINDS = ("probe_sim_short", "probe_sim_long")
MIX = "probe_sim_short=0.5,probe_sim_long=0.5"  # RECAP Mix's weights (backend.caption_mix.PRESETS)
SOURCE = "probe: simulated annotator on every image (bench/probes/t2i_caption_ceiling.py)"


def write_captions(home: str, dataset: str, chunk: int = 1000) -> None:
    """Both kinds for every image of ``dataset`` that lacks them, seeded per image id."""
    ws = open_workspace(home)
    annotator = SimulatedAnnotator()
    with write_session(ws) as s:
        ds = s.exec(select(Dataset).where(Dataset.name == dataset)).one()
        images = s.exec(select(Image.id, Image.meta).where(Image.dataset_id == ds.id).order_by(Image.id)).all()
        done = set(s.exec(select(Caption.image_id).where(Caption.kind == KINDS[1])))
    todo = [(i, meta) for i, meta in images if i not in done]
    started = time.perf_counter()
    for first in range(0, len(todo), chunk):
        with write_session(ws) as s:
            for image_id, meta in todo[first : first + chunk]:
                scene = Scene.from_meta(meta)
                rng = random.Random(f"probe-sim:{image_id}")
                for kind, write in zip(KINDS, (annotator.short, annotator.long), strict=True):
                    caption = write(scene, rng)
                    add_caption(s, image_id, kind, caption.text, source=SOURCE, provenance=caption.provenance())
        print(f"{min(first + chunk, len(todo))}/{len(todo)} images", flush=True)
    print(f"wrote {2 * len(todo)} captions for {len(todo)} images in {time.perf_counter() - started:.0f} s")


def train(home: str, like: int, mix: str) -> None:
    """An ordinary t2i_train run: the config of run ``like`` with ``mix`` replaced."""
    ws = open_workspace(home)
    config = dict(jobs.get_run(ws, like).config)
    config["mix"] = mix
    run_to_end(ws, "t2i_train", config, "t2i", f"mix {mix}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    cap = sub.add_parser("captions", help="write the probe's caption kinds into the workspace")
    cap.add_argument("--home", required=True)
    cap.add_argument("--dataset", default="miniature")
    tr = sub.add_parser("train", help="train the probe arm like the experiment's RECAP Mix run")
    tr.add_argument("--home", required=True)
    tr.add_argument("--like", required=True, type=int, help="the experiment's RECAP Mix t2i_train run id")
    tr.add_argument("--mix", default=MIX)
    args = parser.parse_args()
    if args.command == "captions":
        write_captions(args.home, args.dataset)
    else:
        train(args.home, args.like, args.mix)


if __name__ == "__main__":
    main()
