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

* ``soa_c`` / ``soa_i`` / ``ca`` / ``pa_det`` / ``geneval`` (+ ``geneval:<tag>``) — issue 11's
  detector metrics (:mod:`backend.compositional.metrics`): a ``detector`` (the demo world's
  oracle, or a transformers detector) finds the objects each image's structured prompt asks for
  (:class:`training.compositional_eval.StructureSource` says where that prompt comes from).
  Proportions in [0, 1]; CA is TISE's counting RMSE (lower is better).
* ``pa_clip`` — TISE's CLIP form of PA: CLIP prefers the prompt over it with its spatial words
  swapped.
* ``o_fid`` — FID between the object crops of the generated images (the boxes of the classes
  their prompts name) and those the detector finds in ``reference_dataset``.

Every metric's stored ``details["interval"]`` is ``{value, lower, upper, n, chance, ...}``: a 95%
percentile bootstrap over prompts (the images of one prompt resampled together) and the
mismatched-prompt baseline (each image scored against another prompt by a seeded
derangement), in the units of the ``--json`` contract (R-precision as a proportion). FID, KID
and O-FID compare distributions, not prompts: no interval, no baseline (``null``).

``images`` (instead of ``dataset``) scores a folder of images made elsewhere against ``prompts``
(one checkpoint named after the folder, regime ``raw``, dataset ``images:<folder>``).

``engine ray`` (issue 13): the detection of the detector metrics (reading and decoding the
images, ``detector.detect``, CLIP colours, O-FID's crops) runs in a Ray Data actor pool, one
detector per actor (:class:`training.ray_engine.RayDetection`); this process, the Ray driver,
collects the detections in image order and everything after is the code above, so both engines
store the same numbers. CLIP metrics, FID/KID and O-FID's crop features stay in this process.

A stop request is honoured between groups (a group's results are stored together).
Idempotent and resumable: a (checkpoint, regime, metric) this run already stored is skipped
(the table is unique on run, checkpoint, regime, metric, and rows are inserted with
``ON CONFLICT DO NOTHING``), per-image scores likewise. Features are computed once per image
file (sha256) per run, so a reference dataset that shares files with the evaluated one costs
nothing extra.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sqlmodel import col, select

from backend.compositional.intervals import MetricValue, cluster_mean
from backend.compositional.metrics import ScoringSettings, mismatched_assignment
from backend.compositional.prompts import StructuredPrompt
from backend.datasets import get_dataset
from backend.db import read_session, write_session
from backend.evaluation import EvalResult
from backend.jobs.configs import CLIP_EVAL_METRICS, DETECTOR_METRICS, T2IEvalConfig, parse_config
from backend.jobs.context import JobContext
from backend.models import Caption, Image
from backend.scores import CLIP_SCORE, insert_scores
from backend.storage import image_path
from backend.workspace import Workspace
from training import compositional_eval as comp
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
from training.ray_engine import RayDetection, dataset_locations, file_locations

CLIP_METRICS = ("clip_score", "r_precision", "r_precision_all")
BOX_METRICS = comp.BOX_METRICS  # scored from the detector's boxes
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
    structured: StructuredPrompt | None = None  # what the image must show (issue 11), set when needed


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


def folder_images(cfg: T2IEvalConfig) -> list[GenImage]:
    """``images`` + ``prompts``: images made elsewhere, one checkpoint named after the folder."""
    found = comp.folder_images(cfg.images, cfg.prompts)
    label = Path(cfg.images).name or str(cfg.images)
    return [
        GenImage(-(i + 1), f.sha256, str(f.path), label, "raw", f.prompt.prompt, None,
                 {"file": f.path.name, "prompt_set": cfg.prompts}, f.prompt)
        for i, f in enumerate(found)
    ]  # fmt: skip


def dataset_label(cfg: T2IEvalConfig) -> str:
    """What EvalResult.dataset says: the generated dataset, or ``images:<folder>``."""
    return cfg.dataset if not cfg.images else f"images:{cfg.images}"


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
        # the scorer's own tokenizer and context (77 for open_clip, 248 for a LongCLIP-style model)
        self.truncated = {p for p in self.prompts if scorer.truncated(p)}


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


def interval_details(mv: MetricValue, cfg: T2IEvalConfig) -> dict[str, Any]:
    """What the ``--json`` contract reads back (:mod:`backend.eval_contract`)."""
    return {
        "interval": mv.as_json(),
        "interval_method": f"95% percentile bootstrap over prompts, {cfg.bootstrap_rounds} rounds, seed {cfg.seed}",
        "chance_method": f"mismatched prompts (seeded derangement, seed {cfg.seed})",
    }


def no_interval(value: float, n: int) -> dict[str, Any]:
    """Distribution metrics (FID, KID, O-FID) compare sets, not prompts: no interval, no baseline."""
    return {
        "interval": {"value": value, "lower": None, "upper": None, "n": n, "chance": None},
        "interval_method": "none: a distance between two image sets, not a mean over prompts",
    }


def prompt_clusters(group: Sequence[GenImage]) -> list[int]:
    """Each image's raw prompt as an integer: the bootstrap's cluster."""
    ids: dict[str, int] = {}
    return [ids.setdefault(im.prompt, len(ids)) for im in group]


def load_picture(path: str, log: Any) -> Any:
    try:
        return load_rgb(Path(path))
    except (UnreadableImage, FileNotFoundError) as exc:
        log.warning("skipping %s: %s", path, exc)
        return None


def clip_identity(scorer: ClipScorer) -> dict[str, Any]:
    """Which encoder scored (not the config's tag: a transformers model is named by its hash)."""
    return {
        "clip_model": scorer.model_name,
        "clip_pretrained": scorer.pretrained,
        "clip_backend": scorer.backend,
        "encoder": scorer.encoder,
        "context_length": scorer.context_length,
    }


def logit_scale_of(scorer: ClipScorer) -> float:
    """The model's own softmax temperature (100 for OpenAI CLIP, TISE's setting)."""
    scale = getattr(scorer.model, "logit_scale", None)
    try:
        return float(scale.exp()) if scale is not None else 100.0  # type: ignore[union-attr]
    except (AttributeError, TypeError, RuntimeError):
        return 100.0


# --------------------------------------------------------------------------- the job


def driver_device(cfg: T2IEvalConfig) -> str:
    """The device of this process. With engine ray, ``device`` says where the detector actors run;
    what stays here (CLIP metrics, FID/KID and O-FID features) takes this machine's GPU when it has
    one, and a driver without a GPU is no error."""
    if cfg.engine == "ray" and cfg.device != "cpu":
        return "auto"
    return cfg.device


def run(ctx: JobContext) -> None:
    """One attempt of the run; a Ray session (engine ray) lasts as long as it."""
    cfg: T2IEvalConfig = parse_config("t2i_eval", ctx.config)
    with contextlib.ExitStack() as stack:
        evaluate(ctx, cfg, stack)


def open_ray_detection(
    ctx: JobContext, cfg: T2IEvalConfig, colours: bool, stack: contextlib.ExitStack
) -> RayDetection:
    """Join the cluster for the rest of the run (a wrong address fails here, before any model
    loads) and say in the log what runs where."""
    from backend.ray_cluster import cluster_resources, ray_session

    ray = stack.enter_context(ray_session(cfg.ray_address))
    here = [m for m in cfg.metrics if m not in DETECTOR_METRICS]
    here += ["o_fid's crop features"] if "o_fid" in cfg.metrics else []
    ctx.logger.info(
        "ray: connected to %s; cluster has %s. Reading, decoding and detecting (%s%s) run in Ray actors; "
        "scoring, baselines and intervals%s run in this process",
        cfg.ray_address or "a local instance", cluster_resources(ray), cfg.detector,
        " + CLIP colours" if colours else "", "".join(f", {m}" for m in here),
    )  # fmt: skip
    return RayDetection(ray, cfg, colours, ctx.logger)


def evaluate(ctx: JobContext, cfg: T2IEvalConfig, stack: contextlib.ExitStack) -> None:
    ws, log = ctx.ws, ctx.logger
    if cfg.extractor not in EXTRACTORS and set(cfg.metrics) & {"fid", "kid", "o_fid"}:
        raise EvalError(f"extractor must be one of {', '.join(EXTRACTORS)} (got {cfg.extractor!r})")
    device = pick_device(driver_device(cfg), log)
    threads = set_torch_threads(cfg.torch_threads)
    dataset = dataset_label(cfg)
    if cfg.images:
        try:
            images, without_meta = folder_images(cfg), 0
        except (comp.StructureError, OSError) as exc:
            raise EvalError(str(exc)) from None
    else:
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
        dataset, len(images), len(groups), list(groups), cfg.metrics, done, total, device, threads,
    )  # fmt: skip
    ctx.progress(done, total, f"{done}/{total} results")
    if not todo_metrics:
        log.info("nothing left to evaluate")
        return

    structure: dict[str, Any] = {}
    if todo_metrics & (set(DETECTOR_METRICS) | {"pa_clip"}):
        try:
            source = comp.StructureSource.from_prompts("" if cfg.images else cfg.prompts)
        except comp.StructureError as exc:
            raise EvalError(str(exc)) from None
        images = [im if im.structured else dataclasses.replace(im, structured=source.of(im.prompt, im.meta))
                  for im in images]  # fmt: skip
        groups = group_images(images)
        if cfg.images:  # every image came paired with its entry of the prompts file
            source.counts["prompts"] = len(images)
        structure = {"structured_prompt_from": dict(source.counts), "prompts": cfg.prompts or None}
        log.info("structured prompts: %s", source.counts)

    distribution = bool(todo_metrics & set(DISTRIBUTION_METRICS))
    object_fid = "o_fid" in todo_metrics
    colours = (
        bool(todo_metrics & {"geneval"})
        and not cfg.detector.startswith("oracle")
        and any(o.color for im in images if im.structured for o in im.structured.objects)
    )
    on_ray = cfg.engine == "ray" and bool(todo_metrics & set(DETECTOR_METRICS))
    detector: Any = open_ray_detection(ctx, cfg, colours, stack) if on_ray else None
    needs_clip = (
        bool(todo_metrics & set(CLIP_EVAL_METRICS))
        or ((distribution or object_fid) and cfg.extractor == "clip")
        or (colours and not on_ray)  # on Ray the actors load the colour classifier's CLIP themselves
    )
    scorer, extractor = None, None
    if (distribution or object_fid) and cfg.extractor == "inception":
        extractor = make_extractor(cfg, None, device)  # fails at once when the weights are missing
    if needs_clip:
        scorer = load_clip(cfg.clip_model, cfg.clip_pretrained, device=str(device))
    if (distribution or object_fid) and extractor is None:
        extractor = make_extractor(cfg, scorer, device)
    if todo_metrics & set(DETECTOR_METRICS) and not on_ray:
        from training.detectors import DetectorError, load_detector

        try:
            detector = load_detector(cfg.detector, device=str(device), clip_model=scorer if colours else None)
        except (DetectorError, OSError) as exc:
            raise EvalError(f"detector {cfg.detector!r}: {exc}") from None
        log.info("detector %s (colours by CLIP: %s)", detector.provenance(), colours)
    config = dataclasses.asdict(cfg)

    clip_cache = text = None
    if scorer is not None:
        clip_cache = FeatureCache(lambda ims: scorer.image_features(ims).cpu().numpy(), cfg.batch_size, log)
        if todo_metrics & set(CLIP_METRICS):
            text = TextFeatures(scorer, [im.prompt for im in images], cfg.batch_size)
            log.info(
                "CLIP %s: %d distinct prompts, %d longer than %d tokens (truncated)",
                scorer.encoder, len(text.prompts), len(text.truncated), scorer.context_length,
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
        if distribution:
            ctx.progress(done, total, f"features of {len(reference)} reference images ({extractor.model})")
            ref_feats = feature_cache.get(reference)
            if ref_feats.shape[0] < 2:
                raise EvalError(
                    f"reference_dataset {cfg.reference_dataset!r} has {ref_feats.shape[0]} readable images; "
                    "FID/KID need at least 2 (thousands for stable numbers)"
                )
    # O-FID's reference: crops of every class any prompt of the run asks for, computed once per run
    ref_crops: dict[str, Any] = {
        "feats": None,
        "classes": sorted({o.cls for im in images if im.structured for o in im.structured.objects}),
    }

    for (checkpoint, regime), group in groups.items():
        missing = [m for m in cfg.metrics if (checkpoint, regime, m) not in stored]
        if not missing:
            continue
        common = {"config": config, "group": group_details(group), "images_in_group": len(group)}
        base = {"run_id": ctx.run_id, "dataset": dataset, "checkpoint": checkpoint, "regime": regime}
        if set(missing) & set(CLIP_METRICS):
            assert clip_cache is not None and text is not None and scorer is not None
            ctx.progress(done, total, f"CLIP features of {checkpoint}/{regime}")
            feats = clip_cache.get(group)
            readable = clip_cache.readable(group)
            clusters = prompt_clusters(readable)  # type: ignore[arg-type]
            clip_common = {
                **common,
                **clip_identity(scorer),
                "unreadable_images": len(group) - len(readable),
            }
            if "clip_score" in missing and readable:
                values, scored = clip_score_rows(readable, feats, text)  # type: ignore[arg-type]
                truncated_images = sum(im.prompt in text.truncated for im in scored)  # type: ignore[union-attr]
                insert_per_image(ws, ctx.run_id, scorer, scored, values, text)  # type: ignore[arg-type]
                n = len(values)
                mv = cluster_mean(values.tolist(), clusters, rounds=cfg.bootstrap_rounds, seed=cfg.seed)
                other = mismatched_assignment(clusters, cfg.seed)
                if other is not None:
                    prompt_of = {c: im.prompt for c, im in zip(clusters, readable, strict=True)}
                    wrong = text.matrix[[text.index[prompt_of[c]] for c in other]]
                    chance_values = 100.0 * (feats * wrong).sum(axis=1)
                    mv = mv.with_chance(cluster_mean(
                        chance_values.tolist(), clusters, rounds=cfg.bootstrap_rounds, seed=cfg.seed + 1
                    ))  # fmt: skip
                insert_result(ws, {
                    **base, "metric": "clip_score", "value": float(values.mean()),
                    "stderr": float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else None, "n": n,
                    "model": scorer.model_name, "weights": scorer.pretrained,
                    "reference": ", ".join(common["group"]["prompt_sets"]),
                    "details": {
                        **clip_common, "definition": "mean of 100 x cosine(CLIP image, CLIP raw prompt)",
                        "std": float(values.std(ddof=1)) if n > 1 else 0.0,
                        "truncated_prompts": len({im.prompt for im in scored} & text.truncated),  # type: ignore[union-attr]
                        "truncated_images": truncated_images,
                        **interval_details(mv, cfg),
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
                mv = cluster_mean(rp.per_image.tolist(), clusters, rounds=cfg.bootstrap_rounds, seed=cfg.seed)
                chance = 1.0 / rp.candidates  # exact: the own prompt is one of `candidates` equally likely
                mv = mv.with_chance(MetricValue(chance, chance, chance, mv.n))
                insert_result(ws, {
                    **base, "metric": "r_precision", "value": rp.value, "stderr": se, "n": len(readable),
                    "model": scorer.model_name, "weights": scorer.pretrained,
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
                        **interval_details(mv, cfg),
                        "chance_method": "exact: 1 / candidates",
                    },
                })  # fmt: skip
                done += 1
            if "r_precision_all" in missing and readable:
                hits, n = r_precision_all(readable, feats, text)  # type: ignore[arg-type]
                share = hits / n
                per_image = r_precision_all_hits(readable, feats, text)  # type: ignore[arg-type]
                mv = cluster_mean(per_image.tolist(), clusters, rounds=cfg.bootstrap_rounds, seed=cfg.seed)
                chance = 1.0 / len(text.prompts)
                mv = mv.with_chance(MetricValue(chance, chance, chance, mv.n))
                insert_result(ws, {
                    **base, "metric": "r_precision_all", "value": 100.0 * share,
                    "stderr": 100.0 * math.sqrt(share * (1 - share) / n), "n": n,
                    "model": scorer.model_name, "weights": scorer.pretrained,
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
                        **interval_details(mv, cfg),
                        "chance_method": "exact: 1 / candidates",
                    },
                })  # fmt: skip
                done += 1
            ctx.progress(done, total, f"{done}/{total} results")
        if set(missing) & (set(DETECTOR_METRICS) | {"pa_clip"}):
            done += compositional(
                ctx, cfg, group, missing, base, common, structure, detector, scorer, clip_cache,
                extractor, reference, ref_crops, done, total,
            )  # fmt: skip
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
                            **no_interval(fid.value, fid.n1),
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
                            **no_interval(kid.mean, kid.n1),
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
        interval = (row.details or {}).get("interval") or {}
        log.info(
            "%s / %s  %-15s %10.4f%s%s  (n=%d, %s)",
            row.checkpoint, row.regime, row.metric, row.value,
            f" ± {row.stderr:.4f} (standard error)" if row.stderr is not None
            else f" (s.d. over subsets {spread:.4f})" if spread is not None else "",
            f" [{interval['lower']:.4f}, {interval['upper']:.4f}] chance {interval.get('chance')}"
            if interval.get("lower") is not None else "",
            row.n, row.model,
        )  # fmt: skip
    ctx.progress(total, total, f"{len(rows)} results")


def compositional(
    ctx: JobContext,
    cfg: T2IEvalConfig,
    group: Sequence[GenImage],
    missing: Sequence[str],
    base: dict[str, Any],
    common: dict[str, Any],
    structure: dict[str, Any],
    detector: Any,
    scorer: ClipScorer | None,
    clip_cache: FeatureCache | None,
    extractor: FeatureExtractor | None,
    reference: Sequence[RefImage],
    ref_crops: dict[str, Any],
    done: int,
    total: int,
) -> int:
    """Issue 11's metrics of one group; returns how many results it stored (or settled)."""
    ws, log = ctx.ws, ctx.logger
    checkpoint, regime = base["checkpoint"], base["regime"]
    stored = 0
    rounds, seed = cfg.bootstrap_rounds, cfg.seed
    comp_common = {**common, **structure, "scoring": ScoringSettings().as_json()}
    if scorer is not None:
        comp_common.update(clip_identity(scorer))

    def store(metric: str, mv: MetricValue, model: str, weights: str, details: dict[str, Any]) -> bool:
        if not math.isfinite(mv.value):
            log.warning("%s/%s %s: no image of the group can be scored (%s)", checkpoint, regime, metric,
                        details.get("why_none", "nothing to score"))  # fmt: skip
            return False
        insert_result(ws, {
            **base, "metric": metric, "value": float(mv.value), "stderr": None, "n": int(mv.n),
            "model": model, "weights": weights, "reference": ", ".join(common["group"]["prompt_sets"]),
            "details": {**comp_common, **details, **interval_details(mv, cfg)},
        })  # fmt: skip
        return True

    if set(missing) & set(DETECTOR_METRICS):
        assert detector is not None
        ctx.progress(done, total, f"detecting objects in {checkpoint}/{regime}")
        # queries: each image's own classes and those of the prompt the baseline scores it against
        everyone = [im.structured for im in group]
        assert all(s is not None for s in everyone)
        all_prompts, all_index = comp.prompt_indices(everyone)  # type: ignore[arg-type]
        queries = comp.queries_for(all_prompts, all_index, mismatched_assignment(all_index, seed))
        # O-FID: the objects each prompt asks for (not its exclusions)
        own_classes = [[o.cls for o in s.objects] for s in everyone] if "o_fid" in missing else None  # type: ignore[union-attr]
        started = time.perf_counter()
        root = os.path.abspath(cfg.images) if cfg.images else str(ws.images_dir)
        positions, detections, own_crops = detect_images(
            detector, group, queries, cfg.batch_size, own_classes, root, log
        )
        detect_seconds = time.perf_counter() - started  # reading + detecting (bench/eval_throughput.py)
        prov = detector.provenance()  # on Ray: what the actors loaded
        kept = [group[i] for i in positions]
        structures = [im.structured for im in kept]
        details = {
            "detector": prov, "unreadable_images": len(group) - len(kept),
            "detections": sum(len(d) for d in detections), "detect_seconds": detect_seconds,
            **engine_details(detector),
        }  # fmt: skip
        box = comp.score_group(structures, detections, missing, ScoringSettings(), rounds=rounds, seed=seed)  # type: ignore[arg-type]
        weights = str(prov.get("weights_sha256") or "")
        for name in BOX_METRICS:
            if name not in missing:
                continue
            why = {"pa_det": "no prompt states a relation", "ca": "no prompt states a count"}.get(name, "")
            store(name, box.get(name, MetricValue(math.nan, math.nan, math.nan, 0)), prov["detector"], weights,
                  {**details, "why_none": why})  # fmt: skip
            stored += 1
            if name == "geneval":
                for tag_metric, mv in box.items():
                    if tag_metric.startswith("geneval:"):
                        store(tag_metric, mv, prov["detector"], weights, details)
        if "o_fid" in missing:
            assert extractor is not None
            stored += 1
            if ref_crops["feats"] is None:
                wanted = list(ref_crops["classes"])  # type: ignore[arg-type]
                ctx.progress(done, total, f"objects in {len(reference)} reference images")
                _, _, ref_list = detect_images(
                    detector, reference, [wanted] * len(reference), cfg.batch_size, [wanted] * len(reference),
                    str(ws.images_dir), log, dataset=cfg.reference_dataset, ws=ws,
                )  # fmt: skip
                ref_crops["feats"] = batched_features(extractor, ref_list, cfg.batch_size)
            ref = ref_crops["feats"]
            assert ref is not None
            feats = batched_features(extractor, own_crops, cfg.batch_size)
            if feats.shape[0] < 2 or ref.shape[0] < 2:
                log.warning("%s/%s o_fid: %d generated and %d reference object crops; needs at least 2 each",
                            checkpoint, regime, feats.shape[0], ref.shape[0])  # fmt: skip
            else:
                fid = fid_from_features(feats, ref)
                insert_result(ws, {
                    **base, "metric": "o_fid", "value": fid.value, "stderr": None, "n": fid.n1,
                    "model": extractor.model, "weights": extractor.weights, "reference": cfg.reference_dataset,
                    "details": {
                        **comp_common, **extractor.describe(), "detector": prov, **engine_details(detector),
                        "definition": "FID between object crops: boxes of the classes each generated image's "
                        "prompt names, against the boxes the same detector finds in the reference images",
                        "generated_crops": int(feats.shape[0]), "reference_crops": int(ref.shape[0]),
                        "reference_dataset": cfg.reference_dataset, "sqrtm_dims": fid.dims,
                        **no_interval(fid.value, fid.n1),
                    },
                })  # fmt: skip
    if "pa_clip" in missing:
        assert scorer is not None and clip_cache is not None
        stored += 1
        feats = clip_cache.get(group)
        readable = clip_cache.readable(group)
        scale = logit_scale_of(scorer)

        def text_features(texts: list[str]) -> np.ndarray:
            return np.concatenate([
                scorer.text_features(texts[i : i + cfg.batch_size]).cpu().numpy()
                for i in range(0, len(texts), cfg.batch_size)
            ]).astype(np.float64)  # fmt: skip

        mv = comp.pa_clip(
            [im.structured for im in readable],  # type: ignore[misc]
            feats, text_features, logit_scale=scale, rounds=rounds, seed=seed,
        )  # fmt: skip
        store("pa_clip", mv, scorer.model_name, scorer.pretrained, {
            "definition": "share of images (with spatial words in their prompt) whose CLIP prefers the prompt "
            "over it with every spatial word swapped, p(true) > 0.6 under a softmax with the model's logit "
            "scale (TISE)", "logit_scale": scale, "threshold": 0.6,
            "unreadable_images": len(group) - len(readable), "why_none": "no prompt has a spatial word",
        })  # fmt: skip
    return stored


def detect_images(
    detector: Any,
    items: Sequence[GenImage | RefImage],
    queries: Sequence[Sequence[str]],
    batch_size: int,
    crop_classes: Sequence[Sequence[str]] | None,
    images_root: str,
    log: Any,
    *,
    dataset: str = "",
    ws: Workspace | None = None,
) -> tuple[list[int], list[list[Any]], list[Any]]:
    """Detections of ``items`` in their order, whichever engine: the detector loaded here, or the
    run's Ray actor pool (``dataset`` names a dataset whose images Ray may read out of shards)."""
    if not isinstance(detector, RayDetection):
        return comp.detect_stream(
            detector,
            lambda i: load_picture(items[i].path, log),
            len(items),
            queries,
            batch_size,
            crop_classes,
        )
    if dataset and ws is not None:
        where = dataset_locations(ws, dataset)
        located = [where[im.image_id] for im in items]
    else:
        located = file_locations([im.path for im in items])
    return detector.stream(located, queries, crop_classes, images_root)


def engine_details(detector: Any) -> dict[str, Any]:
    """Which engine detected, for the stored details (as recaption's provenance says ``engine``)."""
    if isinstance(detector, RayDetection):
        return {"engine": "ray", "ray_actors": detector.describe}
    return {"engine": "local"}


def batched_features(extractor: FeatureExtractor, pictures: Sequence[Any], batch_size: int) -> np.ndarray:
    if not pictures:
        return np.zeros((0, extractor.dim))
    return np.concatenate(
        [extractor.features(pictures[i : i + batch_size]) for i in range(0, len(pictures), batch_size)]
    )


def r_precision_all_hits(
    group: Sequence[GenImage], image_feats: np.ndarray, text: TextFeatures
) -> np.ndarray:
    """Per image 1.0 when its own prompt is the top-1 match among all prompts (for the interval)."""
    out = []
    for start in range(0, len(group), SIMILARITY_ROWS):
        best = (image_feats[start : start + SIMILARITY_ROWS] @ text.matrix.T).argmax(axis=1)
        chunk = group[start : start + SIMILARITY_ROWS]
        out += [float(b == text.index[im.prompt]) for b, im in zip(best, chunk, strict=True)]
    return np.array(out)


def insert_per_image(
    ws: Workspace,
    run_id: int,
    scorer: ClipScorer,
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
            "model": scorer.model_name,
            "pretrained": scorer.pretrained,
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
