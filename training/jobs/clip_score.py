"""``clip_score``: 100 × cosine(CLIP image, CLIP caption) for caption variants of a dataset.

Scores land in :class:`backend.scores.CaptionScore` with the model and weights that produced
them and a flag when the caption is longer than the text encoder's context (77 tokens for
open_clip's CLIP: its tail was never seen — the Recap-DataComp caveat: CLIP scores long captions
on their first sentence). ``model`` may also name a transformers CLIPModel folder or hub id
(LongCLIP-style, 248 positions; see :func:`training.clip.clip_backend`): its scores are stored
under the folder / id and ``sha256:<weights hash>``. The log and the run metrics ``truncated`` /
``context_length`` say which encoder scored and how many texts it cut.

Idempotent and resumable the same way recaption is: captions that already have this
(metric, model, pretrained) score are skipped up front, and each batch is written in one
``INSERT ... ON CONFLICT DO NOTHING`` transaction. The model is loaded before anything else,
so missing weights fail the run at once with instructions (see :mod:`training.clip`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import col, select

from backend.datasets import get_dataset
from backend.db import read_session, write_session
from backend.jobs.configs import ClipScoreConfig, parse_config
from backend.jobs.context import JobContext
from backend.models import Caption, Image
from backend.scores import CLIP_SCORE, insert_scores, scored_caption_ids
from backend.shards import by_reference_count
from backend.storage import image_path
from backend.workspace import Workspace
from training.clip import load_clip
from training.data import UnreadableImage, load_rgb, set_torch_threads
from training.devices import pick_device


@dataclass(frozen=True)
class Item:
    caption_id: int
    image_id: int
    text: str
    path: str


def captions_to_score(ws: Workspace, cfg: ClipScoreConfig) -> list[Item]:
    """Current captions of the configured kinds, grouped by image (each image decoded once per batch)."""
    with read_session(ws) as s:
        dataset = get_dataset(s, cfg.dataset)
        rows = s.exec(
            select(Caption.id, Caption.image_id, Caption.text, Image.sha256, Image.ext)
            .join(Image, col(Image.id) == col(Caption.image_id))
            .where(
                Image.dataset_id == dataset.id,
                col(Caption.kind).in_(cfg.kinds),
                Caption.is_current == True,  # noqa: E712 - SQL expression
            )
            .order_by(col(Caption.image_id), col(Caption.id))
        ).all()
    return [
        Item(int(cid), int(iid), text, str(image_path(ws, sha, ext))) for cid, iid, text, sha, ext in rows
    ]


def plan(ws: Workspace, cfg: ClipScoreConfig, model: str, pretrained: str) -> tuple[list[Item], list[Item]]:
    """(every caption to score, those without a score under this model and weights yet): what a
    run, or its resume, still has to do — one rule for both engines."""
    items = captions_to_score(ws, cfg)
    with read_session(ws) as s:
        done_ids = scored_caption_ids(
            s, (i.caption_id for i in items), metric=CLIP_SCORE, model=model, pretrained=pretrained
        )
    return items, [i for i in items if i.caption_id not in done_ids]


def run(ctx: JobContext) -> None:
    cfg: ClipScoreConfig = parse_config("clip_score", ctx.config)
    if cfg.engine == "ray":  # the same captions, keys and rows, scored by actors on a Ray cluster
        from training.ray_engine import clip_score_on_ray

        clip_score_on_ray(ctx, cfg)
        return
    ws, log = ctx.ws, ctx.logger
    with read_session(ws) as s:
        dataset_id = int(get_dataset(s, cfg.dataset).id)  # type: ignore[arg-type]
    if by_reference := by_reference_count(ws, dataset_id):
        raise ValueError(
            f"{by_reference} images of {cfg.dataset!r} are registered by reference (they stay in their "
            "shards): score them with engine ray, which reads them out of the shards"
        )
    device = pick_device(cfg.device, log)
    threads = set_torch_threads(cfg.torch_threads)
    scorer = load_clip(cfg.model, cfg.pretrained, device=str(device))
    model, pretrained = scorer.model_name, scorer.pretrained  # what the stored scores are keyed by
    items, todo = plan(ws, cfg, model, pretrained)
    done, total = len(items) - len(todo), len(items)
    cut = sum(scorer.truncated(i.text) for i in items)
    ctx.metric_once(0, "truncated", float(cut))
    ctx.metric_once(0, "context_length", float(scorer.context_length))
    log.info(
        "clip_score with %s on %s %s: %d captions (%d longer than %d tokens, truncated), %d already scored, "
        "device %s, threads %d",
        scorer.encoder, cfg.dataset, cfg.kinds, total, cut, scorer.context_length, done, device, threads,
    )  # fmt: skip
    ctx.progress(done, total, f"{done}/{total} captions scored")
    skipped = 0
    for start in range(0, len(todo), cfg.batch_size):
        chunk = todo[start : start + cfg.batch_size]
        images, bad = {}, set()
        for item in chunk:
            if item.image_id in images or item.image_id in bad:
                continue
            try:
                images[item.image_id] = load_rgb(item.path)  # type: ignore[arg-type]
            except (UnreadableImage, FileNotFoundError) as exc:
                log.warning("skipping the captions of image %d: %s", item.image_id, exc)
                ctx.metric_once(item.image_id, "skipped", 1.0)
                bad.add(item.image_id)
        good = [item for item in chunk if item.image_id in images]
        skipped += len(chunk) - len(good)
        if good:
            order = list(images)
            features = scorer.image_features([images[i] for i in order])
            rows_of = {image_id: row for row, image_id in enumerate(order)}
            values = scorer.score_features(
                features[[rows_of[i.image_id] for i in good]], [i.text for i in good]
            )
            rows = [
                {
                    "caption_id": item.caption_id,
                    "metric": CLIP_SCORE,
                    "value": value,
                    "model": model,
                    "pretrained": pretrained,
                    "truncated": scorer.truncated(item.text),
                    "run_id": ctx.run_id,
                }
                for item, value in zip(good, values, strict=True)
            ]
            with write_session(ws) as s:
                insert_scores(s, rows)
        done += len(chunk)
        ctx.progress(done, total, f"{done}/{total} captions scored, {skipped} skipped")
        if ctx.stop_requested:
            log.info("stop requested: leaving after %d/%d captions", done, total)
            return
    log.info(
        "clip_score finished: %d captions scored by %s; %d truncated, %d skipped (unreadable images)",
        total, scorer.encoder, cut, skipped,
    )  # fmt: skip
