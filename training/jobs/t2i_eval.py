"""``t2i_eval``: automatic metrics of generated images, per (checkpoint, prompt regime).

Reads the images a ``generate`` run wrote (``contracts/GENERATED.md``): each image's
``meta["generated"]`` says which checkpoint and regime made it and from which raw prompt.
For each (checkpoint, regime) group and each requested metric it stores one
:class:`backend.evaluation.EvalResult` with everything needed to reproduce the number:

* ``clip_score`` — CLIP-S as in DALL-E 3: mean of 100 × cosine(CLIP image, CLIP **raw**
  prompt) over the group's images, with its standard error; how many prompts exceed CLIP's
  77-token context (their tail is never seen). Per-image scores also go to
  :class:`backend.scores.CaptionScore` on the image's ``prompt`` caption (Review shows them).
* ``r_precision`` — CLIP R-precision as RECAP reports it (RP), the standard protocol: the
  share (in %) of images whose own raw prompt is the best CLIP match among itself and 99
  prompts drawn at random from the dataset's other distinct raw prompts, averaged exactly over
  all draws (:func:`training.metrics.clip_r_precision`). With fewer than 100 distinct prompts
  all the others are used; the row then says ``standard_protocol: false`` with a warning, and
  its candidate count (chance is 100 / candidates). Standard error over prompts.
* ``r_precision_all`` — the studio's R-precision before issue 9: the own prompt among *all*
  distinct raw prompts of the dataset. It falls as the set grows (a 3,000-prompt set scores
  far lower than a 100-prompt one with the same model), so it is comparable only between
  sets of the same prompts; kept for continuity.
* ``fid`` / ``kid`` — against the images of ``reference_dataset`` with the declared feature
  extractor (:mod:`training.fid`: torchvision Inception from a local file, or the CLIP image
  embedding, i.e. FD in CLIP space). Missing weights fail the run before any work. KID's
  standard deviation over its random subsets is stored as ``details["std_over_subsets"]``,
  not in ``stderr``: it is the spread of one subset's estimate, not a standard error.

A stop request is honoured between groups (a group's results are stored together).
Idempotent and resumable: a (checkpoint, regime, metric) this run already stored is skipped
(the table is unique on run, checkpoint, regime, metric, and rows are inserted with
``ON CONFLICT DO NOTHING``), per-image scores likewise. Features are computed once per image
file (sha256) per run, so a reference dataset that shares files with the evaluated one costs
nothing extra.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sqlmodel import col, select

from backend.clip_tokens import clip_token_count
from backend.datasets import get_dataset
from backend.db import read_session, write_session
from backend.evaluation import EvalResult
from backend.jobs.configs import T2IEvalConfig, parse_config
from backend.jobs.context import JobContext
from backend.models import Caption, Image
from backend.scores import CLIP_SCORE, insert_scores
from backend.storage import image_path
from backend.workspace import Workspace
from training.clip import ClipScorer, load_clip
from training.data import UnreadableImage, load_rgb, set_torch_threads
from training.devices import pick_device
from training.fid import (
    EXTRACTORS,
    FeatureExtractor,
    clip_extractor,
    fid_from_features,
    kid_from_features,
    load_inception,
)
from training.metrics import RPrecision, clip_r_precision

CLIP_METRICS = ("clip_score", "r_precision", "r_precision_all")
SIMILARITY_ROWS = 2048  # images per similarity block: bounds memory on COCO-30K-sized sets
DISTRIBUTION_METRICS = ("fid", "kid")
Group = tuple[str, str]  # (checkpoint label, regime)


class EvalError(ValueError):
    """An evaluation that cannot run as configured; the message says what to change."""


# --------------------------------------------------------------------------- reading the datasets


@dataclass(frozen=True)
class GenImage:
    """One generated image and what its provenance says."""

    image_id: int
    sha256: str
    path: str
    checkpoint: str
    regime: str
    prompt: str
    caption_id: int | None  # its current ``prompt`` caption (CaptionScore attaches there)
    meta: dict[str, Any]


@dataclass(frozen=True)
class RefImage:
    image_id: int
    sha256: str
    path: str


def generated_images(ws: Workspace, dataset: str) -> tuple[list[GenImage], int]:
    """(images with ``meta["generated"]`` in id order, number of images without it)."""
    with read_session(ws) as s:
        ds = get_dataset(s, dataset)
        images = s.exec(select(Image).where(Image.dataset_id == ds.id).order_by(col(Image.id))).all()
        captions = s.exec(
            select(Caption.image_id, Caption.id)
            .join(Image, col(Image.id) == col(Caption.image_id))
            .where(
                Image.dataset_id == ds.id,
                Caption.kind == "prompt",
                Caption.is_current == True,  # noqa: E712 - SQL expression
            )
            .order_by(col(Caption.id))
        ).all()
        prompt_caption = {int(image_id): int(caption_id) for image_id, caption_id in captions}
        found, other = [], 0
        for im in images:
            gen = (im.meta or {}).get("generated")
            if not gen:
                other += 1
                continue
            found.append(
                GenImage(
                    int(im.id),  # type: ignore[arg-type]
                    im.sha256,
                    str(image_path(ws, im.sha256, im.ext)),
                    str(gen["checkpoint"]),
                    str(gen["regime"]),
                    str(gen["prompt"]),
                    prompt_caption.get(int(im.id)),  # type: ignore[arg-type]
                    dict(gen),
                )
            )
    return found, other


def reference_images(ws: Workspace, dataset: str) -> list[RefImage]:
    with read_session(ws) as s:
        ds = get_dataset(s, dataset)
        rows = s.exec(
            select(Image.id, Image.sha256, Image.ext).where(Image.dataset_id == ds.id).order_by(col(Image.id))
        ).all()
    return [RefImage(int(i), sha, str(image_path(ws, sha, ext))) for i, sha, ext in rows]


def group_images(images: Sequence[GenImage]) -> dict[Group, list[GenImage]]:
    groups: dict[Group, list[GenImage]] = defaultdict(list)
    for im in images:
        groups[(im.checkpoint, im.regime)].append(im)
    return dict(sorted(groups.items()))


def stored_units(ws: Workspace, run_id: int) -> set[tuple[str, str, str]]:
    """(checkpoint, regime, metric) this run already stored: what a resume skips."""
    with read_session(ws) as s:
        rows = s.exec(
            select(EvalResult.checkpoint, EvalResult.regime, EvalResult.metric).where(
                EvalResult.run_id == run_id
            )
        ).all()
    return {(c, r, m) for c, r, m in rows}


def insert_result(ws: Workspace, row: dict[str, Any]) -> bool:
    """Store one aggregate unless this (run, checkpoint, regime, metric) is already there."""
    with write_session(ws) as s:
        dialect = s.get_bind().dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        values = EvalResult(**row).model_dump(exclude={"id"})
        result = s.exec(insert(EvalResult).values(values).on_conflict_do_nothing())  # type: ignore[call-overload]
        return bool(result.rowcount)


# --------------------------------------------------------------------------- features


class FeatureCache:
    """Features per image file (sha256), computed once per run, in batches; unreadable files noted."""

    def __init__(self, encode: Callable[[list[Any]], np.ndarray], batch_size: int, log: Any) -> None:
        self.encode = encode
        self.batch_size = batch_size
        self.log = log
        self.features: dict[str, np.ndarray] = {}
        self.unreadable: dict[str, str] = {}

    def get(self, items: Sequence[GenImage | RefImage]) -> np.ndarray:
        """Rows for the readable ``items`` (in order, unreadable ones left out)."""
        todo = list(
            {
                im.sha256: im
                for im in items
                if im.sha256 not in self.features and im.sha256 not in self.unreadable
            }.values()
        )
        for start in range(0, len(todo), self.batch_size):
            chunk, pictures = [], []
            for im in todo[start : start + self.batch_size]:
                try:
                    pictures.append(load_rgb(im.path))  # type: ignore[arg-type]
                    chunk.append(im)
                except (UnreadableImage, FileNotFoundError) as exc:
                    self.log.warning("skipping image %d: %s", im.image_id, exc)
                    self.unreadable[im.sha256] = str(exc)
            if pictures:
                rows = self.encode(pictures)
                for im, row in zip(chunk, rows, strict=True):
                    self.features[im.sha256] = np.asarray(row, dtype=np.float64)
        rows = [self.features[im.sha256] for im in items if im.sha256 in self.features]
        return np.stack(rows) if rows else np.zeros((0, 0))

    def readable(self, items: Sequence[GenImage | RefImage]) -> list[GenImage | RefImage]:
        return [im for im in items if im.sha256 in self.features]


class TextFeatures:
    """CLIP text features of the distinct raw prompts, computed once."""

    def __init__(self, scorer: ClipScorer, prompts: Sequence[str], batch_size: int) -> None:
        self.prompts = list(dict.fromkeys(prompts))
        self.index = {p: i for i, p in enumerate(self.prompts)}
        chunks = [
            scorer.text_features(self.prompts[i : i + batch_size]).cpu().numpy()
            for i in range(0, len(self.prompts), batch_size)
        ]
        self.matrix = np.concatenate(chunks).astype(np.float64)
        self.truncated = {p for p in self.prompts if clip_token_count(p) > scorer.context_length}


# --------------------------------------------------------------------------- the metrics


def clip_score_rows(
    group: Sequence[GenImage], image_feats: np.ndarray, text: TextFeatures
) -> tuple[np.ndarray, list[GenImage]]:
    """Per-image CLIP-S (100 × cosine with the raw prompt) for the group's readable images."""
    own = text.matrix[[text.index[im.prompt] for im in group]]
    return 100.0 * (image_feats * own).sum(axis=1), list(group)


def r_precision_all(
    group: Sequence[GenImage], image_feats: np.ndarray, text: TextFeatures
) -> tuple[int, int]:
    """(hits, n): images whose own prompt is the top-1 CLIP match among all candidate prompts."""
    hits = 0
    for start in range(0, len(group), SIMILARITY_ROWS):
        best = (image_feats[start : start + SIMILARITY_ROWS] @ text.matrix.T).argmax(axis=1)
        chunk = group[start : start + SIMILARITY_ROWS]
        hits += sum(int(b == text.index[im.prompt]) for b, im in zip(best, chunk, strict=True))
    return hits, len(group)


def r_precision(group: Sequence[GenImage], image_feats: np.ndarray, text: TextFeatures) -> RPrecision:
    """The standard protocol: own prompt vs 99 random other prompts of the dataset, averaged exactly."""
    parts = []
    for start in range(0, len(group), SIMILARITY_ROWS):
        chunk = group[start : start + SIMILARITY_ROWS]
        own = np.array([text.index[im.prompt] for im in chunk], dtype=np.int64)
        parts.append(clip_r_precision(image_feats[start : start + SIMILARITY_ROWS] @ text.matrix.T, own))
    per_image = np.concatenate([p.per_image for p in parts]) if parts else np.zeros(0)
    pool = len(text.prompts) - 1
    value = 100.0 * float(per_image.mean()) if len(per_image) else 0.0
    return RPrecision(value, per_image, parts[0].distractors if parts else 0, pool)


def stderr_over_prompts(group: Sequence[GenImage], values: np.ndarray) -> float | None:
    """Standard error of a per-image mean, resampling prompts: the images of one prompt (its
    seeds) are not independent, so their mean is one observation."""
    by_prompt: dict[str, list[float]] = defaultdict(list)
    for im, value in zip(group, values.tolist(), strict=True):
        by_prompt[im.prompt].append(value)
    means = np.array([np.mean(v) for v in by_prompt.values()])
    return float(means.std(ddof=1) / math.sqrt(len(means))) if len(means) > 1 else None


def group_details(group: Sequence[GenImage]) -> dict[str, Any]:
    """What the generation side says about a group (for the stored details)."""

    def values(key: str) -> list[Any]:
        return sorted({json_safe(im.meta.get(key)) for im in group}, key=str)

    first = group[0].meta
    return {
        "checkpoint_ref": first.get("checkpoint_ref"),
        "artifact_id": first.get("artifact_id"),
        "generation_runs": values("run_id"),
        "prompt_sets": values("prompt_set"),
        "upsampler": first.get("upsampler"),
        "inference_steps": values("inference_steps"),
        "guidance_scale": values("guidance_scale"),
        "sizes": sorted({f"{im.meta.get('width')}x{im.meta.get('height')}" for im in group}),
        "seeds": values("seed"),
        "prompts": len({im.prompt for im in group}),
    }


def json_safe(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def make_extractor(cfg: T2IEvalConfig, scorer: ClipScorer | None, device: torch.device) -> FeatureExtractor:
    if cfg.extractor == "inception":
        return load_inception(cfg.extractor_weights, device=str(device))
    if cfg.extractor == "clip":
        assert scorer is not None
        return clip_extractor(scorer)
    raise EvalError(f"extractor must be one of {', '.join(EXTRACTORS)} (got {cfg.extractor!r})")


# --------------------------------------------------------------------------- the job


def run(ctx: JobContext) -> None:
    cfg: T2IEvalConfig = parse_config("t2i_eval", ctx.config)
    ws, log = ctx.ws, ctx.logger
    if cfg.extractor not in EXTRACTORS and set(cfg.metrics) & set(DISTRIBUTION_METRICS):
        raise EvalError(f"extractor must be one of {', '.join(EXTRACTORS)} (got {cfg.extractor!r})")
    device = pick_device(cfg.device, log)
    threads = set_torch_threads(cfg.torch_threads)
    images, without_meta = generated_images(ws, cfg.dataset)
    if not images:
        raise EvalError(
            f"dataset {cfg.dataset!r} has no generated images (Image.meta.generated); evaluate a dataset "
            "written by a generate run (generated-run-<id> or its output_dataset)"
        )
    if without_meta:
        log.warning(
            "%d images of %s have no generation provenance and are left out", without_meta, cfg.dataset
        )
    groups = group_images(images)
    units = [(g, m) for g in groups for m in cfg.metrics]
    stored = stored_units(ws, ctx.run_id)
    done, total = sum(1 for (c, r), m in units if (c, r, m) in stored), len(units)
    todo_metrics = {m for (c, r), m in units if (c, r, m) not in stored}
    log.info(
        "t2i_eval of %s: %d images in %d groups %s, metrics %s, %d/%d results already stored; device %s, "
        "threads %d",
        cfg.dataset, len(images), len(groups), list(groups), cfg.metrics, done, total, device, threads,
    )  # fmt: skip
    ctx.progress(done, total, f"{done}/{total} results")
    if not todo_metrics:
        log.info("nothing left to evaluate")
        return

    distribution = bool(todo_metrics & set(DISTRIBUTION_METRICS))
    needs_clip = bool(todo_metrics & set(CLIP_METRICS)) or (distribution and cfg.extractor == "clip")
    scorer, extractor = None, None
    if distribution and cfg.extractor == "inception":
        extractor = make_extractor(cfg, None, device)  # fails at once when the weights are missing
    if needs_clip:
        scorer = load_clip(cfg.clip_model, cfg.clip_pretrained, device=str(device))
    if distribution and extractor is None:
        extractor = make_extractor(cfg, scorer, device)
    config = dataclasses.asdict(cfg)

    clip_cache = text = None
    if scorer is not None:
        clip_cache = FeatureCache(lambda ims: scorer.image_features(ims).cpu().numpy(), cfg.batch_size, log)
        if todo_metrics & set(CLIP_METRICS):
            text = TextFeatures(scorer, [im.prompt for im in images], cfg.batch_size)
            log.info(
                "CLIP %s / %s: %d distinct prompts, %d longer than %d tokens (truncated)",
                cfg.clip_model, cfg.clip_pretrained, len(text.prompts), len(text.truncated), scorer.context_length,
            )  # fmt: skip
    feature_cache = ref_feats = None
    reference: list[RefImage] = []
    if extractor is not None:
        # the CLIP extractor shares the CLIP image features with the CLIP metrics
        feature_cache = (
            clip_cache if extractor.name == "clip" else FeatureCache(extractor.features, cfg.batch_size, log)
        )
        assert feature_cache is not None
        reference = reference_images(ws, cfg.reference_dataset)
        ctx.progress(done, total, f"features of {len(reference)} reference images ({extractor.model})")
        ref_feats = feature_cache.get(reference)
        if ref_feats.shape[0] < 2:
            raise EvalError(
                f"reference_dataset {cfg.reference_dataset!r} has {ref_feats.shape[0]} readable images; "
                "FID/KID need at least 2 (thousands for stable numbers)"
            )

    for (checkpoint, regime), group in groups.items():
        missing = [m for m in cfg.metrics if (checkpoint, regime, m) not in stored]
        if not missing:
            continue
        common = {"config": config, "group": group_details(group), "images_in_group": len(group)}
        base = {"run_id": ctx.run_id, "dataset": cfg.dataset, "checkpoint": checkpoint, "regime": regime}
        if set(missing) & set(CLIP_METRICS):
            assert clip_cache is not None and text is not None and scorer is not None
            ctx.progress(done, total, f"CLIP features of {checkpoint}/{regime}")
            feats = clip_cache.get(group)
            readable = clip_cache.readable(group)
            clip_common = {
                **common,
                "clip_model": cfg.clip_model,
                "clip_pretrained": cfg.clip_pretrained,
                "context_length": scorer.context_length,
                "unreadable_images": len(group) - len(readable),
            }
            if "clip_score" in missing and readable:
                values, scored = clip_score_rows(readable, feats, text)  # type: ignore[arg-type]
                truncated_images = sum(im.prompt in text.truncated for im in scored)  # type: ignore[union-attr]
                insert_per_image(ws, ctx.run_id, cfg, scored, values, text)  # type: ignore[arg-type]
                n = len(values)
                insert_result(ws, {
                    **base, "metric": "clip_score", "value": float(values.mean()),
                    "stderr": float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else None, "n": n,
                    "model": cfg.clip_model, "weights": cfg.clip_pretrained,
                    "reference": ", ".join(common["group"]["prompt_sets"]),
                    "details": {
                        **clip_common, "definition": "mean of 100 x cosine(CLIP image, CLIP raw prompt)",
                        "std": float(values.std(ddof=1)) if n > 1 else 0.0,
                        "truncated_prompts": len({im.prompt for im in scored} & text.truncated),  # type: ignore[union-attr]
                        "truncated_images": truncated_images,
                    },
                })  # fmt: skip
                done += 1
            if "r_precision" in missing and readable:
                rp = r_precision(readable, feats, text)  # type: ignore[arg-type]
                se = stderr_over_prompts(readable, 100.0 * rp.per_image)  # type: ignore[arg-type]
                warning = None
                if not rp.standard:
                    warning = (
                        f"only {len(text.prompts)} distinct prompts: each image's prompt was ranked against all "
                        f"{rp.distractors} others instead of 99 random ones, so this number is not comparable "
                        "with published R-precision (chance here is 100/"
                        f"{rp.candidates} = {100.0 / rp.candidates:.1f}%, not 1%)"
                    )
                    log.warning("%s/%s r_precision: %s", checkpoint, regime, warning)
                insert_result(ws, {
                    **base, "metric": "r_precision", "value": rp.value, "stderr": se, "n": len(readable),
                    "model": cfg.clip_model, "weights": cfg.clip_pretrained,
                    "reference": ", ".join(common["group"]["prompt_sets"]),
                    "details": {
                        **clip_common,
                        "definition": "% of images whose own raw prompt is the top-1 CLIP match among itself and "
                        "99 prompts drawn at random from the dataset's other distinct raw prompts (all others "
                        "when there are fewer), averaged exactly over all draws; ties count 1/(tied prompts)",
                        "protocol": "own prompt + 99 random distractors", "k": 1,
                        "distractors": rp.distractors, "candidates": rp.candidates,
                        "distractor_pool": rp.pool, "standard_protocol": rp.standard,
                        "expected_hits": float(rp.per_image.sum()),
                        "chance_percent": 100.0 / rp.candidates,
                        "stderr_over": "prompts (the images of one prompt are averaged first)",
                        "truncated_candidates": len(text.truncated), "warning": warning,
                    },
                })  # fmt: skip
                done += 1
            if "r_precision_all" in missing and readable:
                hits, n = r_precision_all(readable, feats, text)  # type: ignore[arg-type]
                share = hits / n
                insert_result(ws, {
                    **base, "metric": "r_precision_all", "value": 100.0 * share,
                    "stderr": 100.0 * math.sqrt(share * (1 - share) / n), "n": n,
                    "model": cfg.clip_model, "weights": cfg.clip_pretrained,
                    "reference": ", ".join(common["group"]["prompt_sets"]),
                    "details": {
                        **clip_common,
                        "definition": "% of images whose own raw prompt is the top-1 CLIP match among all "
                        "distinct raw prompts of the dataset (depends on the set's size: compare only sets "
                        "of the same prompts)",
                        "protocol": "own prompt among all prompts of the dataset",
                        "hits": hits, "k": 1, "candidates": len(text.prompts),
                        "chance_percent": 100.0 / len(text.prompts),
                        "truncated_candidates": len(text.truncated),
                    },
                })  # fmt: skip
                done += 1
            ctx.progress(done, total, f"{done}/{total} results")
        if set(missing) & set(DISTRIBUTION_METRICS):
            assert extractor is not None and feature_cache is not None and ref_feats is not None
            ctx.progress(done, total, f"{extractor.name} features of {checkpoint}/{regime}")
            feats = feature_cache.get(group)
            dist_common = {
                **common,
                **extractor.describe(),
                "reference_dataset": cfg.reference_dataset,
                "reference_images": len(reference),
                "reference_readable": int(ref_feats.shape[0]),
                "generated_readable": int(feats.shape[0]),
            }
            if feats.shape[0] < 2:
                log.warning("%s/%s: fewer than 2 readable images, no FID/KID", checkpoint, regime)
            else:
                if "fid" in missing:
                    fid = fid_from_features(feats, ref_feats)
                    few = min(fid.n1, fid.n2) < extractor.dim
                    insert_result(ws, {
                        **base, "metric": "fid", "value": fid.value, "stderr": None, "n": fid.n1,
                        "model": extractor.model, "weights": extractor.weights, "reference": cfg.reference_dataset,
                        "details": {
                            **dist_common, "sqrtm_dims": fid.dims, "eps_added": fid.eps_added,
                            "warning": (
                                f"fewer images than feature dimensions ({extractor.dim}): FID is strongly "
                                "biased upwards at this size; compare only runs with equal image counts"
                            ) if few else None,
                        },
                    })  # fmt: skip
                    done += 1
                if "kid" in missing:
                    kid = kid_from_features(feats, ref_feats, cfg.kid_subset_size)
                    insert_result(ws, {
                        # kid.std is the spread over random subsets, not a standard error: stored
                        # under its own name, and ``stderr`` stays empty
                        **base, "metric": "kid", "value": kid.mean, "stderr": None, "n": kid.n1,
                        "model": extractor.model, "weights": extractor.weights, "reference": cfg.reference_dataset,
                        "details": {
                            **dist_common, "kernel": "(x.y / d + 1)^3", "estimator": "unbiased MMD^2",
                            "subset_size": kid.subset_size, "num_subsets": kid.num_subsets, "seed": 0,
                            "std_over_subsets": kid.std,
                        },
                    })  # fmt: skip
                    done += 1
            ctx.progress(done, total, f"{done}/{total} results")
        if ctx.stop_requested:
            log.info("stop requested: leaving after %d/%d results", done, total)
            return
    with read_session(ws) as s:
        rows = s.exec(
            select(EvalResult).where(EvalResult.run_id == ctx.run_id).order_by(col(EvalResult.id))
        ).all()
    for row in rows:
        spread = (row.details or {}).get("std_over_subsets") if row.metric == "kid" else None
        log.info(
            "%s / %s  %-15s %10.4f%s  (n=%d, %s)",
            row.checkpoint, row.regime, row.metric, row.value,
            f" ± {row.stderr:.4f} (standard error)" if row.stderr is not None
            else f" (s.d. over subsets {spread:.4f})" if spread is not None else "",
            row.n, row.model,
        )  # fmt: skip
    ctx.progress(total, total, f"{len(rows)} results")


def insert_per_image(
    ws: Workspace,
    run_id: int,
    cfg: T2IEvalConfig,
    images: Sequence[GenImage],
    values: np.ndarray,
    text: TextFeatures,
) -> int:
    """Per-image CLIP-S on each image's ``prompt`` caption (kept if the same model already scored it)."""
    rows = [
        {
            "caption_id": im.caption_id,
            "metric": CLIP_SCORE,
            "value": float(value),
            "model": cfg.clip_model,
            "pretrained": cfg.clip_pretrained,
            "truncated": im.prompt in text.truncated,
            "run_id": run_id,
        }
        for im, value in zip(images, values, strict=True)
        if im.caption_id is not None
    ]
    new = 0
    for start in range(0, len(rows), 500):  # far below SQLite's bound-parameter limit
        with write_session(ws) as s:
            new += insert_scores(s, rows[start : start + 500])
    return new
