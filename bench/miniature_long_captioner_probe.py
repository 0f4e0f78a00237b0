"""Long-caption accuracy of fine-tune variants of one alt-text captioner, on a sample of held-out images.

Why: in the third cpu run the long recaptions stated positions with 0.24 precision and 0.07
recall while the human long captions they learn from state them at 0.98, and position
accuracy (PA) is where RECAP Mix trailed the ground-truth arm most. This asks whether the
fine-tune is the bottleneck: each variant is an ordinary ``captioner_train`` run (human long
captions, from the experiment's alt-text captioner artifact), and each is scored with the
table's own :func:`backend.miniature.accuracy.caption_accuracy` on N images outside the
human set, generated directly (greedy, 120 tokens, the trained prompt) instead of through a
``recaption`` run of the whole corpus (which takes minutes per variant).

    .venv/bin/python bench/miniature_long_captioner_probe.py --home WS --pretrained ARTIFACT [--sample 1000]

Every run is added to WS (use a copy of an experiment's workspace).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image as PILImage  # noqa: E402
from sqlmodel import col, select  # noqa: E402

from backend import jobs  # noqa: E402
from backend.db import read_session  # noqa: E402
from backend.jobs.configs import new_run  # noqa: E402
from backend.jobs.store import artifact_path, get_artifact  # noqa: E402
from backend.miniature.accuracy import ASPECTS, caption_accuracy, summarise  # noqa: E402
from backend.miniature.presets import preset  # noqa: E402
from backend.miniature.world import Scene  # noqa: E402
from backend.models import HUMAN_KINDS, Caption, Image  # noqa: E402
from backend.storage import image_path  # noqa: E402
from backend.workspace import Workspace, open_workspace  # noqa: E402
from training.adapters import load_captioner  # noqa: E402

#: name -> captioner_train values over the cpu preset's fine-tune (the first is the preset itself)
VARIANTS: dict[str, dict[str, Any]] = {
    "preset (frozen vision, 40 epochs, lr 5e-4)": {},
    "vision unfrozen": {"freeze_vision": False},
    "120 epochs": {"epochs": 120},
    "lr 2e-3": {"lr": 2e-3},
    "vision unfrozen, 120 epochs": {"freeze_vision": False, "epochs": 120},
}
BATCH = 128


def held_out_sample(ws: Workspace, dataset_images: int) -> list[Image]:
    """Every k-th image with ground truth outside the human set, ``dataset_images`` of them."""
    with read_session(ws) as s:
        human = set(s.exec(select(Caption.image_id).where(col(Caption.kind).in_(list(HUMAN_KINDS)))).all())
        images = [
            im
            for im in s.exec(select(Image).order_by(col(Image.id))).all()
            if im.id not in human and (im.meta or {}).get("objects")
        ]
    return images[:: max(len(images) // dataset_images, 1)][:dataset_images]


def score(
    ws: Workspace, artifact_id: str, images: list[Image], prompt: str | None = "meta", num_beams: int = 1
) -> tuple[dict[str, list[float | None]], str]:
    """(aspect -> [precision, recall]) of the artifact's long captions of ``images``, and one caption.
    ``prompt`` "meta" is the artifact's own long prompt; None captions unprompted."""
    artifact = get_artifact(ws, artifact_id)
    if prompt == "meta":
        prompt = (artifact.meta.get("prompts") or {}).get("long")
    adapter = load_captioner(artifact_path(ws, artifact))
    texts: list[str] = []
    for start in range(0, len(images), BATCH):
        chunk = images[start : start + BATCH]
        pixels = [PILImage.open(image_path(ws, im.sha256, im.ext)).convert("RGB") for im in chunk]
        texts += adapter.generate(adapter.prepare_batch(pixels, prompt=prompt), max_new_tokens=120, num_beams=num_beams)
    summary = summarise([caption_accuracy(t, Scene.from_meta(im.meta)) for t, im in zip(texts, images, strict=True)],
                        rounds=50)  # fmt: skip
    out = {a: [summary.precision[a].value, summary.recall[a].value] for a in ASPECTS}
    return out, texts[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", required=True)
    ap.add_argument("--dataset", default="miniature")
    ap.add_argument("--pretrained", required=True, help="the experiment's alt-text captioner artifact")
    ap.add_argument("--sample", type=int, default=1000, help="held-out images scored per variant")
    ap.add_argument("--seed", type=int, default=12)
    args = ap.parse_args()
    ws = open_workspace(args.home)
    images = held_out_sample(ws, args.sample)
    finetune = dict(preset("cpu").captioner.finetune)
    results: dict[str, Any] = {}
    for name, extra in VARIANTS.items():
        values = {**finetune, "dataset": args.dataset, "seed": args.seed, "base": args.pretrained,
                  "captions": "human", "style": "long", **extra}  # fmt: skip
        started = time.perf_counter()
        run = new_run(ws, "captioner_train", values)
        final = jobs.run_foreground(ws, int(run.id))  # type: ignore[arg-type]
        if final.status != "succeeded":
            raise SystemExit(f"run {run.id} {final.status}:\n{jobs.log_tail(ws, int(run.id), 40)}")  # type: ignore[arg-type]
        trained_s = time.perf_counter() - started
        artifact = jobs.list_artifacts(ws, kind="captioner", run_id=int(run.id))[0]  # type: ignore[arg-type]
        table, example = score(ws, str(artifact.id), images)
        results[name] = {"run": run.id, "train_s": round(trained_s, 1), "precision_recall": table}
        cells = "  ".join(f"{a} {p:.2f}/{r:.2f}" if p is not None else f"{a} n/a/{r:.2f}" for a, (p, r) in table.items())
        print(f"{name:45s} {cells}  ({trained_s:.0f} s, run {run.id})", flush=True)
        print(f"{'':45s} e.g. {example!r}", flush=True)
    print(json.dumps({"sample": len(images), "variants": results}))


if __name__ == "__main__":
    main()
