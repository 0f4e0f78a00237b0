"""A workspace state in which an annotator must learn nothing: a dataset of generated images
under an open Arena campaign, with everything the rest of the studio knows about it.

Every secret carries :data:`MARKER` (a word nobody types by chance), so a test can search
whatever an annotator received for it: the dataset's name, its alt-text (junk, so the
statistics would quote it verbatim), the checkpoints' names in each PNG's provenance chunk
and in the images' keys, a generate run's config and log, automatic metrics per checkpoint.
A second dataset, :data:`OPEN_DATASET`, is not judged and stays browsable.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

from PIL import Image as PILImage
from PIL import PngImagePlugin

from backend import arena
from backend.captions import add_caption
from backend.datasets import get_or_create_dataset
from backend.db import write_session
from backend.evaluation import EvalResult
from backend.images import add_image, decode_image
from backend.jobs.models import Artifact, Run
from backend.workspace import Workspace

MARKER = "zorblax"
BLIND_DATASET = f"{MARKER}-generated"
OPEN_DATASET = "plain-open-photos"
CAMPAIGN = "blind-check"
CHECKPOINTS = (f"{MARKER}-ckpt-a", f"{MARKER}-ckpt-b")
PROMPTS = ("a red cube on a table", "two birds above a lake")


@dataclass
class BlindWorld:
    blind_shas: list[str]  # stored images of the judged dataset
    open_shas: list[str]  # stored images of the open dataset
    blind_exts: list[str]
    run_id: int  # the generate run that made the judged images


def provenance_png(color: tuple[int, int, int], provenance: dict) -> bytes:
    """A PNG with the provenance JSON in a text chunk, as the generate job writes it."""
    img = PILImage.new("RGB", (40, 24), color)
    img.putpixel((3, 3), (255, 255, 255))
    info = PngImagePlugin.PngInfo()
    info.add_text("recap-studio", json.dumps(provenance))
    out = io.BytesIO()
    img.save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def make_blind_world(ws: Workspace, admin_id: int | None = None) -> BlindWorld:
    with write_session(ws) as s:
        run = Run(
            kind="generate",
            status="succeeded",
            config={"checkpoints": list(CHECKPOINTS), "dataset_name": BLIND_DATASET},
            message=f"wrote {BLIND_DATASET} with {', '.join(CHECKPOINTS)}",
            created_by=admin_id,
        )
        s.add(run)
        s.flush()
        run.output_dir = f"runs/{run.id}"
        run_id = int(run.id)
        judged = get_or_create_dataset(s, BLIND_DATASET)
        blind_shas, blind_exts = [], []
        for n, label in enumerate(CHECKPOINTS):
            artifact = Artifact(kind="t2i", name=label, path=f"runs/{label}/pipeline", meta={"mix": {}})
            s.add(artifact)
            s.flush()
            for index, prompt in enumerate(PROMPTS):
                generated = {
                    "run_id": run_id,
                    "checkpoint": label,
                    "artifact_id": artifact.id,
                    "prompt": prompt,
                    "prompt_index": index,
                    "seed": 0,
                    "regime": "raw",
                }
                decoded = decode_image(provenance_png((60 * n + 20, 40 * index + 30, 90), generated))
                image, _ = add_image(
                    s,
                    ws,
                    judged.id,
                    decoded,
                    f"{label}/raw/{index:05d}_seed0.png",
                    meta={"generated": generated},
                )
                add_caption(s, image.id, "alttext", f"{label}_render_{index:04d}.png", source="import:test")
                blind_shas.append(image.sha256)
                blind_exts.append(image.ext)
        plain = get_or_create_dataset(s, OPEN_DATASET)
        open_shas = []
        for index in range(2):
            buf = io.BytesIO()
            PILImage.new("RGB", (30, 20), (200, 20 * index, 10)).save(buf, format="PNG")
            image, _ = add_image(s, ws, plain.id, decode_image(buf.getvalue()), f"photo_{index}.png")
            add_caption(s, image.id, "alttext", f"a plain photo number {index}", source="import:test")
            open_shas.append(image.sha256)
        for label in CHECKPOINTS:
            s.add(
                EvalResult(
                    run_id=run_id,
                    dataset=BLIND_DATASET,
                    checkpoint=label,
                    regime="raw",
                    metric="clip_score",
                    value=30.0,
                    n=2,
                )
            )
    log = ws.runs_dir / str(run_id) / "log.txt"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"generating with {CHECKPOINTS[0]} into {BLIND_DATASET}\n", encoding="utf-8")
    arena.create_campaign_from_generated(
        ws, CAMPAIGN, [BLIND_DATASET], ["overall"], target_per_pair=1, repeat_share=0.0, created_by=admin_id
    )
    return BlindWorld(blind_shas=blind_shas, open_shas=open_shas, blind_exts=blind_exts, run_id=run_id)


def identifiable_png(
    size: tuple[int, int], colour: tuple[int, int, int], index: int, provenance: dict
) -> bytes:
    """A system's image as a leaky pipeline would store it: its own size and colour, a mark per
    prompt, and the provenance chunk naming the system (what blindness must never pass on)."""
    img = PILImage.new("RGB", size, colour)
    for x in range(8 + index * 20, 30 + index * 20):
        for y in range(20, 44):
            img.putpixel((x % size[0], y), (250, 250, 250))
    info = PngImagePlugin.PngInfo()
    info.add_text("recap-studio", json.dumps(provenance))
    out = io.BytesIO()
    img.save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def add_generated_systems(
    ws: Workspace,
    dataset_name: str,
    systems: dict[str, tuple[str, str, tuple[int, int], tuple[int, int, int]]],
    prompts: list[str],
) -> None:
    """A generated dataset: per system (name -> caption condition, mix name, native size,
    colour) a t2i artifact and one image per prompt, stored as the generate job stores them."""
    with write_session(ws) as s:
        dataset = get_or_create_dataset(s, dataset_name)
        for label, (condition, mix, size, colour) in systems.items():
            artifact = Artifact(
                kind="t2i",
                name=label,
                path=f"runs/{label}/pipeline",
                meta={"mix": {"name": mix, "weights": {"alttext": 1.0}}, "caption_condition": condition},
            )
            s.add(artifact)
            s.flush()
            for index, prompt in enumerate(prompts):
                generated = {
                    "checkpoint": label,
                    "artifact_id": artifact.id,
                    "prompt": prompt,
                    "prompt_index": index,
                    "seed": 0,
                    "regime": "raw",
                    "caption_condition": condition,
                }
                add_image(
                    s,
                    ws,
                    dataset.id,
                    decode_image(identifiable_png(size, colour, index, generated)),
                    f"{label}/raw/{index:05d}_seed0.png",
                    meta={"generated": generated},
                )
