"""Recaption, CLIP scoring and t2i_eval's detection on Ray Data: the ``engine ray`` of those jobs.

The run stays an ordinary run: its runner process (``python -m training.runner``) is the Ray
*driver*. It plans exactly as the local job does (which captions this run still lacks, from the
database), joins the cluster (:func:`backend.ray_cluster.ray_session`), and builds one Ray Data
pipeline per captioner::

    what to read (one Arrow row per image: file path, or shard + offset, + SHA-256)
      → map_batches(read_images)          Ray tasks on any node's CPUs: read, check, decode
      → map_batches(CaptionActor, ...)    an actor pool, one model per actor (num_gpus each)
      → iter_batches()                    back in the runner: written to the database

Only the runner touches the database: each output batch is written in one transaction with
``INSERT ... ON CONFLICT DO NOTHING`` against the unique index on (image, kind, run), and the
plan skipped what the run already wrote. So a task Ray retries after a worker died (Ray Data
restarts a dead actor and resubmits its batch), a batch seen twice, or a whole rerun after the
runner itself was killed never writes a caption twice and never loses one. Progress, metrics and
the log go through the run's :class:`~backend.jobs.context.JobContext` as in the local job, so the
Runs tab shows a Ray run like any other.

``t2i_eval`` sends only its detection through such a pipeline (:class:`DetectActor`, driven by
:class:`RayDetection`): the rows come back to the runner, which scores them with the local code.

Where images come from: a workspace file (the nodes must see the workspace at the same path: a
shared filesystem; a node that does not see it fails the run with that message instead of
skipping every image) or a member of a shard registered by reference (:mod:`backend.shards`),
read straight out of the shard by offset and checked against its SHA-256.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import outerjoin
from sqlmodel import col, select

from backend.datasets import get_dataset
from backend.db import read_session
from backend.jobs.context import JobContext
from backend.models import Image
from backend.ray_cluster import cluster_resources, ray_session
from backend.shards import Shard, ShardMember
from backend.storage import MemberError, MemberRef, image_path, read_members
from backend.workspace import Workspace

log = logging.getLogger(__name__)

#: the columns that say where an image's bytes are (the read stage replaces them with pixels)
LOCATION = ("uri", "format", "offset", "size", "column", "sha256")
FILE = "file"  # ``format`` of a workspace file


class EngineError(RuntimeError):
    """A Ray run that cannot go on as configured; the message says what to change."""


# --------------------------------------------------------------------------- where the images are


@dataclass(frozen=True)
class Located:
    """One image and where its bytes are."""

    image_id: int
    uri: str
    format: str  # FILE, "webdataset" or "parquet"
    offset: int = -1
    size: int = -1
    column: str = ""
    sha256: str = ""


def dataset_locations(ws: Workspace, dataset: str) -> dict[int, Located]:
    """Every image of ``dataset`` with where its bytes are, in one query (by-reference images
    carry their shard and offset; the rest their content-addressed file)."""
    with read_session(ws) as s:
        ds = get_dataset(s, dataset)
        rows = s.exec(
            select(
                Image.id,
                Image.sha256,
                Image.ext,
                Image.nbytes,
                ShardMember.offset,
                Shard.uri,
                Shard.format,
                Shard.image_column,
            )  # fmt: skip
            .select_from(outerjoin(Image, ShardMember, col(ShardMember.image_id) == col(Image.id)))
            .outerjoin(Shard, col(Shard.id) == col(ShardMember.shard_id))
            .where(Image.dataset_id == ds.id)
            .order_by(col(Image.id))
        ).all()
    out: dict[int, Located] = {}
    for image_id, sha, ext, nbytes, offset, uri, fmt, column in rows:
        if uri is None:
            out[int(image_id)] = Located(int(image_id), str(image_path(ws, sha, ext)), FILE, sha256=sha)
        else:
            out[int(image_id)] = Located(int(image_id), uri, fmt, int(offset), int(nbytes), column or "", sha)
    return out


def location_blocks(located: list[Located], extra: dict[str, list[Any]], rows_per_block: int) -> list[Any]:
    """The pipeline's input: Arrow tables of ``rows_per_block`` rows (one read task each), with the
    location columns and the job's own columns (``extra``: image id, captions to score...)."""
    import pyarrow as pa

    table = pa.table(
        {
            "uri": [x.uri for x in located],
            "format": [x.format for x in located],
            "offset": pa.array([x.offset for x in located], pa.int64()),
            "size": pa.array([x.size for x in located], pa.int64()),
            "column": [x.column for x in located],
            "sha256": [x.sha256 for x in located],
            **extra,
        }
    )
    return [table.slice(start, rows_per_block) for start in range(0, table.num_rows, rows_per_block)]


# --------------------------------------------------------------------------- stage 1: read and decode (tasks)


def _decode(data: bytes) -> np.ndarray:
    """RGB pixels, decoded fully now (as the local loader does, so both engines see the same pixels)."""
    with PILImage.open(io.BytesIO(data)) as im:
        im.load()
        rgb = im.convert("RGB") if im.mode != "RGB" else im
        return np.asarray(rgb, dtype=np.uint8).copy()


def read_images(batch: dict[str, np.ndarray], images_root: str) -> dict[str, Any]:
    """Ray task: the pixels of each row's image, or why there are none (failures are data: one bad
    image must never end a run over a million). Columns other than the location pass through."""
    n = len(batch["uri"])
    datas: list[bytes | Exception | None] = [None] * n
    members = [i for i in range(n) if batch["format"][i] != FILE]
    if members:
        refs = [
            MemberRef(
                str(batch["uri"][i]),
                str(batch["format"][i]),
                int(batch["offset"][i]),
                int(batch["size"][i]),
                str(batch["column"][i]) or None,
                str(batch["sha256"][i]),
            )
            for i in members
        ]
        for i, data in zip(members, read_members(refs), strict=True):
            datas[i] = data
    for i in range(n):
        if batch["format"][i] != FILE:
            continue
        path = Path(str(batch["uri"][i]))
        try:
            datas[i] = path.read_bytes()
        except FileNotFoundError:
            if not os.path.isdir(images_root):
                raise EngineError(
                    f"this node ({os.uname().nodename}) does not see the workspace's images at {images_root}: "
                    "mount the workspace at the same path on every node, or register the corpus by "
                    "reference on storage every node can read (recap-studio import --by-reference)"
                ) from None
            datas[i] = FileNotFoundError(f"file missing: {path.name}")
        except OSError as exc:
            datas[i] = exc
    pixels, errors = [], []
    for data in datas:
        try:
            if isinstance(data, Exception):
                raise data
            assert data is not None
            pixels.append(_decode(data))
            errors.append("")
        except (
            MemberError,
            OSError,
            SyntaxError,
            ValueError,
            EOFError,
            PILImage.DecompressionBombError,
        ) as exc:
            pixels.append(np.zeros((1, 1, 3), np.uint8))
            errors.append(str(exc) or type(exc).__name__)
    out = {k: v for k, v in batch.items() if k not in LOCATION}
    out["image"] = pixels
    out["error"] = np.array(errors, dtype=object)
    return out


def _pil(pixels: Any) -> PILImage.Image:
    return PILImage.fromarray(np.asarray(pixels, dtype=np.uint8), "RGB")


# --------------------------------------------------------------------------- actors


def _actor_setup(device: str, threads: int) -> Any:
    """Torch threads and device inside an actor (Ray sets CUDA_VISIBLE_DEVICES to its GPUs)."""
    import torch

    from training.data import set_torch_threads
    from training.devices import pick_device

    set_torch_threads(threads)
    return pick_device(device, log), torch


class CaptionActor:
    """One captioner in one Ray actor (on its GPU, or CPU threads); writes nothing, returns rows."""

    def __init__(
        self,
        source: str,
        prompts: dict[str, str | None],
        settings: dict[str, dict[str, Any]],
        device: str,
        dtype: str,
        threads: int,
    ) -> None:
        from training.adapters import GenerationSettings, load_captioner
        from training.devices import effective_dtype

        started = time.perf_counter()
        self.device, self.torch = _actor_setup(device, threads)
        self.dtype = effective_dtype(dtype, self.device, log)
        self.adapter = load_captioner(source, device=str(self.device), dtype=self.dtype)  # type: ignore[arg-type]
        self.prompts = prompts
        self.settings = {kind: GenerationSettings(**values) for kind, values in settings.items()}
        self.meta = {
            kind: json.dumps(
                {
                    "family": self.adapter.family,
                    "prompt": prompt if prompt is not None else self.adapter.default_prompt,
                    "dtype": self.dtype,
                    "attn_implementation": self.adapter.attn_implementation,
                }
            )
            for kind, prompt in prompts.items()
        }
        # the run's log gets this line through Ray's log forwarding: which process holds a model
        print(
            f"captioner actor pid {os.getpid()} on {os.uname().nodename}: {self.adapter.family} on "
            f"{self.device} ({self.dtype}) loaded in {time.perf_counter() - started:.1f} s",
            flush=True,
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {
            k: [] for k in ("image_id", "kind", "text", "hit", "error", "meta", "busy_s")
        }
        t0 = time.time()  # wall clock: actors on several nodes are compared by the driver

        def row(image_id: int, kind: str, text: str, hit: bool, error: str, meta: str, busy: float) -> None:
            for key, value in zip(out, (image_id, kind, text, hit, error, meta, busy), strict=True):
                out[key].append(value)

        good = [i for i, error in enumerate(batch["error"]) if not error]
        for i, error in enumerate(batch["error"]):
            if error:
                row(int(batch["image_id"][i]), "", "", False, str(error), "", 0.0)
        if good:
            images = [_pil(batch["image"][i]) for i in good]
            for kind, prompt in self.prompts.items():
                started = time.perf_counter()
                inputs = self.adapter.prepare_batch(images, prompt=prompt)
                made = self.adapter.generate_captions(inputs, **self.settings[kind].as_kwargs())
                busy = (time.perf_counter() - started) / len(good)
                for i, caption in zip(good, made, strict=True):
                    row(
                        int(batch["image_id"][i]),
                        kind,
                        caption.text,
                        caption.hit_token_limit,
                        "",
                        self.meta[kind],
                        busy,
                    )
        n = len(out["image_id"])
        out["t0"], out["t1"] = [t0] * n, [time.time()] * n
        return out


class ClipActor:
    """One CLIP scorer in one Ray actor: scores every caption of each image in the batch."""

    def __init__(self, model: str, pretrained: str, device: str, threads: int) -> None:
        from training.clip import load_clip

        started = time.perf_counter()
        self.device, self.torch = _actor_setup(device, threads)
        self.scorer = load_clip(model, pretrained, device=str(self.device))
        print(
            f"clip actor pid {os.getpid()} on {os.uname().nodename}: {self.scorer.encoder} on {self.device}, "
            f"loaded in {time.perf_counter() - started:.1f} s",
            flush=True,
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {k: [] for k in ("image_id", "caption_id", "value", "truncated", "error")}
        good = [i for i, error in enumerate(batch["error"]) if not error]
        for i, error in enumerate(batch["error"]):
            if error:
                out["image_id"].append(int(batch["image_id"][i]))
                out["caption_id"].append(-1)
                out["value"].append(0.0)
                out["truncated"].append(False)
                out["error"].append(str(error))
        if good:
            features = self.scorer.image_features([_pil(batch["image"][i]) for i in good])
            rows, texts, ids, images = [], [], [], []
            for position, i in enumerate(good):
                for caption_id, text in json.loads(str(batch["captions"][i])):
                    rows.append(position)
                    texts.append(text)
                    ids.append(int(caption_id))
                    images.append(int(batch["image_id"][i]))
            values = self.scorer.score_features(features[rows], texts)
            for image_id, caption_id, text, value in zip(images, ids, texts, values, strict=True):
                out["image_id"].append(image_id)
                out["caption_id"].append(caption_id)
                out["value"].append(float(value))
                out["truncated"].append(bool(self.scorer.truncated(text)))
                out["error"].append("")
        return out


# --------------------------------------------------------------------------- the pipeline


@dataclass(frozen=True)
class Placement:
    """Where the actors run and how many: decided once per run from the config and the cluster."""

    device: str  # "cuda" or "cpu", what each actor asks torch for
    actors: int
    gpus_per_actor: float
    cpus_per_actor: float
    threads: int  # torch threads per actor

    def describe(self) -> str:
        where = f"{self.gpus_per_actor:g} GPU" if self.device == "cuda" else f"{self.cpus_per_actor:g} CPU"
        return f"{self.actors} actor(s) x {where} each, torch threads {self.threads}"


def place_actors(
    ray: Any, device: str, num_gpus: float, concurrency: int, threads: int, batches: int
) -> Placement:
    """Decide the actor pool from the run's ``device`` / ``num_gpus`` / ``concurrency`` and what
    the cluster has; an explicit request it cannot meet is an error (the local job's rule).

    One CPU of the cluster is always left to the read-and-decode tasks: actors holding every CPU
    would wait forever for input that no task can be scheduled to read.
    """
    resources = cluster_resources(ray)
    gpus, cpus = resources["GPU"], resources["CPU"]
    on_gpu = num_gpus > 0 and (device == "cuda" or (device == "auto" and gpus > 0))
    if device == "cuda" and num_gpus > 0 and gpus <= 0:
        raise EngineError(
            "device cuda, but the Ray cluster has no GPU; use device auto or cpu, or add GPU nodes"
        )
    if on_gpu and num_gpus > gpus:
        raise EngineError(f"num_gpus {num_gpus:g} per actor, but the whole Ray cluster has {gpus:g} GPU(s)")
    spare = max(1.0, cpus - 1)  # CPUs the actors may hold
    if on_gpu:
        fits = max(1, int(gpus // num_gpus))  # one model per GPU share
        threads = max(1, threads)
        cpus_per_actor = 1.0
    else:
        fits = 1  # CPU actors: one by default, with the spare CPUs as its torch threads
        threads = threads if threads > 0 else max(1, int(spare) // max(1, concurrency or 1))
        cpus_per_actor = float(threads)
    actors = max(1, min(concurrency or fits, batches))
    if actors * cpus_per_actor > spare:
        raise EngineError(
            f"{actors} actor(s) x {cpus_per_actor:g} CPU need more than the {spare:g} CPU(s) the cluster can "
            f"spare ({cpus:g} in all, one kept for reading images): lower concurrency or torch_threads"
        )
    return Placement(
        device="cuda" if on_gpu else "cpu",
        actors=actors,
        gpus_per_actor=num_gpus if on_gpu else 0.0,
        cpus_per_actor=cpus_per_actor,
        threads=threads,
    )


def pipeline(
    blocks: list[Any],
    actor: type,
    actor_args: dict[str, Any],
    placement: Placement,
    batch_size: int,
    images_root: str,
) -> Iterator[list[dict[str, Any]]]:
    """Stream the output rows of read → actor pool, one list per output block, as they finish."""
    from ray import data as ray_data

    context = ray_data.DataContext.get_current()
    context.enable_progress_bars = False  # the run's own progress is what the Runs tab shows
    ds = (
        ray_data.from_arrow(blocks)
        .map_batches(
            read_images, batch_size=None, batch_format="numpy", fn_kwargs={"images_root": images_root}
        )
        .map_batches(
            actor,
            batch_size=batch_size,
            batch_format="numpy",
            fn_constructor_kwargs=actor_args,
            compute=ray_data.ActorPoolStrategy(size=placement.actors),
            num_gpus=placement.gpus_per_actor or None,
            num_cpus=placement.cpus_per_actor,
        )
    )
    for out in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        yield out.to_pylist()


@dataclass
class Tally:
    """Where a Ray run's time went, for the log, the metrics and the benchmark."""

    started: float = field(default_factory=time.perf_counter)
    write_s: float = 0.0
    busy_s: float = 0.0  # summed over actors: model time (prepare + generate)
    images: int = 0
    skipped: int = 0
    captions: dict[str, int] = field(default_factory=dict)
    cut: dict[str, int] = field(default_factory=dict)
    # the actors' own clock: from the first batch any actor began to the last one any finished.
    # What the pool sustains once running, without connecting, scheduling and loading the model
    # in each actor (all of which wall_s includes)
    first_t0: float = 0.0
    last_t1: float = 0.0

    def batch_done(self, images: int, rows: list[dict[str, Any]]) -> None:
        self.images += images
        for r in rows:
            if r.get("t0"):
                self.first_t0 = min(self.first_t0 or r["t0"], r["t0"])
                self.last_t1 = max(self.last_t1, r["t1"])

    def summary(self, actors: int) -> dict[str, float]:
        now = time.perf_counter()
        wall = now - self.started
        pool = self.last_t1 - self.first_t0
        return {
            "wall_s": wall,
            "write_s": self.write_s,
            "images": self.images,
            "skipped": self.skipped,
            "images_per_s": self.images / wall if wall > 0 else 0.0,
            "steady_images_per_s": self.images / pool if pool > 0 else 0.0,
            # share of the pool's running time spent in the model (1.0 = never waiting for data)
            "busy_share": self.busy_s / (pool * actors) if pool > 0 and actors else 0.0,
        }


def blocks_for(n_rows: int, batch_size: int, actors: int) -> int:
    """Rows per input block: one batch each, so work spreads over the actors from the first batch."""
    return max(1, min(batch_size, math.ceil(n_rows / max(1, actors))))


# --------------------------------------------------------------------------- recaption


def recaption_on_ray(ctx: JobContext, cfg: Any, plan: Any) -> None:
    """The recaption job's passes on Ray (see :func:`training.jobs.recaption.run`, which plans)."""
    from training.jobs.recaption import caption_row, caption_template, insert_captions

    ws, logger = ctx.ws, ctx.logger
    located = dataset_locations(ws, cfg.dataset)
    done, total = plan.done, plan.total
    tally = Tally()
    with ray_session(cfg.ray_address) as ray:
        logger.info(
            "ray: connected to %s; cluster has %s",
            cfg.ray_address or "a local instance",
            cluster_resources(ray),
        )
        actors = 1
        for p in plan.passes:
            missing = {
                ref.image_id: [k for k in p.prompts if (ref.image_id, k) not in plan.written]
                for ref in plan.images
            }
            todo = [located[ref.image_id] for ref in plan.images if missing[ref.image_id]]
            if not todo:
                continue
            placement = place_actors(
                ray,
                cfg.device,
                cfg.num_gpus,
                cfg.concurrency,
                cfg.torch_threads,
                math.ceil(len(todo) / cfg.batch_size),
            )
            actors = placement.actors
            logger.info(
                "ray: captioner %s writes %s for %d images; %s, batch %d",
                p.model.label, list(p.prompts), len(todo), placement.describe(), cfg.batch_size,
            )  # fmt: skip
            base = {
                kind: {
                    "captioner": p.model.label,
                    "artifact_id": p.model.artifact.id if p.model.artifact is not None else None,
                    "generation": plan.settings[kind].to_dict(),
                    "engine": "ray",
                }
                for kind in p.prompts
            }
            args = {
                "source": p.model.source,
                "prompts": p.prompts,
                "settings": {kind: plan.settings[kind].to_dict() for kind in p.prompts},
                "device": placement.device,
                "dtype": cfg.dtype,
                "threads": placement.threads,
            }
            blocks = location_blocks(
                todo, {"image_id": [x.image_id for x in todo]}, blocks_for(len(todo), cfg.batch_size, actors)
            )
            metas: dict[str, dict[str, Any]] = {}
            for rows in pipeline(blocks, CaptionActor, args, placement, cfg.batch_size, str(ws.images_dir)):
                new, template = [], caption_template(ctx.run_id)
                for r in rows:
                    image_id = int(r["image_id"])
                    if r["error"]:
                        logger.warning("skipping image %d: %s", image_id, r["error"])
                        ctx.metric_once(image_id, "skipped", 1.0)
                        tally.skipped += 1
                        done += len(missing[image_id])
                        missing[image_id] = []
                        continue
                    kind = r["kind"]
                    tally.busy_s += r["busy_s"]
                    if kind not in missing[image_id]:  # a batch Ray delivered twice: written once
                        continue
                    missing[image_id].remove(kind)
                    meta = metas.get(r["meta"]) or metas.setdefault(r["meta"], json.loads(r["meta"]))
                    provenance = {**base[kind], **meta, "hit_token_limit": bool(r["hit"])}
                    new.append(caption_row(template, _Ref(image_id), kind, r["text"], provenance))
                    tally.captions[kind] = tally.captions.get(kind, 0) + 1
                    tally.cut[kind] = tally.cut.get(kind, 0) + bool(r["hit"])
                    done += 1
                started = time.perf_counter()
                insert_captions(ws, new)
                tally.write_s += time.perf_counter() - started
                tally.batch_done(len({int(r["image_id"]) for r in rows if not r["error"]}), rows)
                ctx.progress(done, total, f"{done}/{total} captions, {tally.skipped} images skipped (ray)")
                if ctx.stop_requested:
                    logger.info("stop requested: leaving after %d/%d captions", done, total)
                    return
    summary = tally.summary(actors)
    for name in ("images_per_s", "steady_images_per_s", "busy_share"):
        ctx.metric(done, name, summary[name])
    for kind, n in tally.captions.items():
        cut = tally.cut.get(kind, 0)
        ctx.metric(done, f"hit_token_limit/{kind}", float(cut))
        logger.info("%d of the %d %s captions written now stopped at the token limit", cut, n, kind)
    logger.info("recaption finished on ray: %s", {k: round(v, 3) for k, v in summary.items()})


@dataclass(frozen=True)
class _Ref:
    """The one attribute :func:`training.jobs.recaption.caption_row` reads of an image."""

    image_id: int


# --------------------------------------------------------------------------- CLIP scoring


def clip_score_on_ray(ctx: JobContext, cfg: Any) -> None:
    """The CLIP-score job on Ray: the same captions, keys and rows as the local job."""
    from backend.db import write_session
    from backend.scores import CLIP_SCORE, insert_scores
    from training.clip import load_clip
    from training.jobs.clip_score import plan

    ws, logger = ctx.ws, ctx.logger
    # the stored keys (model, pretrained) and the truncation rule, from the same loader the actors use
    scorer = load_clip(cfg.model, cfg.pretrained, device="cpu")
    model, pretrained = scorer.model_name, scorer.pretrained
    items, todo = plan(ws, cfg, model, pretrained)
    done, total = len(items) - len(todo), len(items)
    ctx.progress(done, total, f"{done}/{total} captions scored")
    by_image: dict[int, list[tuple[int, str]]] = {}
    for item in todo:
        by_image.setdefault(item.image_id, []).append((item.caption_id, item.text))
    located = dataset_locations(ws, cfg.dataset)
    images = [located[image_id] for image_id in by_image]
    skipped = 0
    with ray_session(cfg.ray_address) as ray:
        batch = max(1, cfg.batch_size // max(1, len(cfg.kinds)))  # images per batch ~ captions per batch
        placement = place_actors(
            ray, cfg.device, cfg.num_gpus, cfg.concurrency, cfg.torch_threads, math.ceil(len(images) / batch)
        )
        logger.info(
            "ray: clip_score with %s: %d captions of %d images, %d already scored; %s",
            scorer.encoder, total, len(images), done, placement.describe(),
        )  # fmt: skip
        if not images:
            return
        blocks = location_blocks(
            images,
            {"image_id": list(by_image), "captions": [json.dumps(v) for v in by_image.values()]},
            blocks_for(len(images), batch, placement.actors),
        )
        args = {
            "model": cfg.model,
            "pretrained": cfg.pretrained,
            "device": placement.device,
            "threads": placement.threads,
        }
        for rows in pipeline(blocks, ClipActor, args, placement, batch, str(ws.images_dir)):
            scores = []
            for r in rows:
                if r["error"]:
                    logger.warning("skipping the captions of image %d: %s", r["image_id"], r["error"])
                    ctx.metric_once(int(r["image_id"]), "skipped", 1.0)
                    n = len(by_image[int(r["image_id"])])
                    skipped += n
                    done += n
                    continue
                scores.append(
                    {
                        "caption_id": int(r["caption_id"]),
                        "metric": CLIP_SCORE,
                        "value": float(r["value"]),
                        "model": model,
                        "pretrained": pretrained,
                        "truncated": bool(r["truncated"]),
                        "run_id": ctx.run_id,
                    }
                )
            with write_session(ws) as s:
                insert_scores(s, scores)
            done += len(scores)
            ctx.progress(done, total, f"{done}/{total} captions scored, {skipped} skipped (ray)")
            if ctx.stop_requested:
                logger.info("stop requested: leaving after %d/%d captions", done, total)
                return
    summary = f"{total} captions scored by {scorer.encoder} on ray; {skipped} skipped"
    ctx.progress(done, total, summary)
    logger.info("clip_score finished: %s", summary)


# --------------------------------------------------------------------------- detection (t2i_eval)


def _detections_json(found: Sequence[Any]) -> str:
    """A row's detections as text: JSON keeps every float64 exactly, so the driver scores the very
    numbers the actor found (the local and Ray engines agree to the last bit)."""
    return json.dumps([[d.cls, float(d.score), [float(v) for v in d.box], d.color] for d in found])


def _detections_from_json(text: str) -> list[Any]:
    from backend.compositional.metrics import Detection

    return [Detection(cls, score, tuple(box), color) for cls, score, box, color in json.loads(text)]


def _png(picture: PILImage.Image) -> bytes:
    """A crop, losslessly, for the trip to the driver (where O-FID's extractor runs)."""
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


class DetectActor:
    """One detector in one Ray actor (with its CLIP colour classifier when it has one): each row's
    detections for the classes the row asks for, and the crops O-FID needs; writes nothing."""

    def __init__(self, spec: str, clip_model: str, clip_pretrained: str, device: str, threads: int) -> None:
        from training.detectors import load_detector

        started = time.perf_counter()
        self.device, self.torch = _actor_setup(device, threads)
        self.detector = load_detector(
            spec, device=str(self.device), clip_model=clip_model or None, clip_pretrained=clip_pretrained
        )
        self.provenance = json.dumps(self.detector.provenance())
        print(
            f"detector actor pid {os.getpid()} on {os.uname().nodename}: {self.detector.name} on {self.device}, "
            f"colours by CLIP: {bool(clip_model)}, loaded in {time.perf_counter() - started:.1f} s",
            flush=True,
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        from training.compositional_eval import crops

        errors = [str(e) for e in batch["error"]]
        good = [i for i, error in enumerate(errors) if not error]
        pictures = {i: _pil(batch["image"][i]) for i in good}
        started = time.perf_counter()
        found = (
            self.detector.detect(
                [pictures[i] for i in good], [json.loads(str(batch["queries"][i])) for i in good]
            )
            if good
            else []
        )
        busy = (time.perf_counter() - started) / max(1, len(good))
        by_row = dict(zip(good, found, strict=True))
        cut: list[list[bytes]] = []
        for i in range(len(errors)):
            wanted = json.loads(str(batch["crop_classes"][i]))
            keep = i in by_row and wanted is not None
            cut.append([_png(c) for c in crops(pictures[i], by_row[i], wanted)] if keep else [])
        n = len(errors)
        return {
            "position": [int(p) for p in batch["position"]],
            "detections": [_detections_json(by_row[i]) if i in by_row else "[]" for i in range(n)],
            "crops": cut,
            "error": errors,
            "provenance": [self.provenance] * n,
            "busy_s": [busy if i in by_row else 0.0 for i in range(n)],
        }


def unloadable_detector(exc: BaseException, spec: str) -> EngineError | None:
    """The local job's one line for a detector the actors could not load, instead of Ray's
    traceback of its actor start-up (None when ``exc`` is something else)."""
    from training.detectors import DetectorError

    # an actor that fails in __init__ reaches the driver as ActorDiedError, whose message holds the
    # actor's traceback as text (the exception object itself stays in the actor)
    marker = f"{DetectorError.__module__}.{DetectorError.__qualname__}: "
    seen: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in seen:
        seen.append(cause)
        lines = [line for line in str(cause).splitlines() if marker in line]
        if isinstance(cause, DetectorError) or lines:
            text = lines[-1].split(marker, 1)[1] if lines else str(cause)
            return EngineError(f"detector {spec!r} could not be loaded by the Ray actors: {text}")
        cause = cause.__cause__ or cause.__context__
    return None


def file_locations(paths: Sequence[str]) -> list[Located]:
    """Images given by path (a generated dataset's files, an ``eval --images`` folder)."""
    return [Located(-(i + 1), os.path.abspath(path), FILE) for i, path in enumerate(paths)]


class RayDetection:
    """A ``t2i_eval`` run's detector on Ray: :meth:`stream` answers what
    :func:`training.compositional_eval.detect_stream` answers (readable positions, detections,
    O-FID crops, in image order) from an actor pool, one detector per actor.

    Why only detection: it is the evaluation's real work (decode + model). Scoring, the bootstrap
    and the baseline are cheap and stay in the runner, the same code for both engines, so an
    engine can never change a number. One pool per call (per group, and once for O-FID's
    reference images): Ray Data's actor pools live as long as their dataset.
    """

    def __init__(self, ray: Any, cfg: Any, colours: bool, log: logging.Logger | Any) -> None:
        self.ray, self.cfg, self.log = ray, cfg, log
        self.clip_model = cfg.clip_model if colours else ""
        self._provenance: dict[str, Any] | None = None
        self.describe = ""  # the last pool's placement, for the stored details

    def provenance(self) -> dict[str, Any]:
        """What the actors said they loaded (known after the first :meth:`stream`)."""
        return dict(self._provenance or {"detector": self.cfg.detector})

    def stream(
        self,
        located: Sequence[Located],
        queries: Sequence[Sequence[str]],
        crop_classes: Sequence[Sequence[str]] | None,
        images_root: str,
    ) -> tuple[list[int], list[list[Any]], list[PILImage.Image]]:
        cfg = self.cfg
        batch = cfg.batch_size
        placement = place_actors(
            self.ray,
            cfg.device,
            cfg.num_gpus,
            cfg.concurrency,
            cfg.torch_threads,
            math.ceil(len(located) / batch),
        )
        self.describe = placement.describe()
        self.log.info(
            "ray: detecting in %d images with %s; %s, batch %d",
            len(located),
            cfg.detector,
            self.describe,
            batch,
        )
        extra = {
            "position": list(range(len(located))),
            "queries": [json.dumps(list(q)) for q in queries],
            "crop_classes": [
                json.dumps(list(crop_classes[i]) if crop_classes is not None else None)
                for i in range(len(located))
            ],
        }
        args = {
            "spec": cfg.detector,
            "clip_model": self.clip_model,
            "clip_pretrained": cfg.clip_pretrained,
            "device": placement.device,
            "threads": placement.threads,
        }
        rows: dict[int, dict[str, Any]] = {}  # by position: a batch Ray delivers twice counts once
        blocks = location_blocks(list(located), extra, blocks_for(len(located), batch, placement.actors))
        try:
            for out in pipeline(blocks, DetectActor, args, placement, batch, images_root):
                for r in out:
                    rows.setdefault(int(r["position"]), r)
        except Exception as exc:
            clear = unloadable_detector(exc, cfg.detector)
            if clear is None:
                raise
            raise clear from None
        kept, found, cut = [], [], []
        for position in sorted(rows):
            r = rows[position]
            self._provenance = self._provenance or json.loads(r["provenance"])
            if r["error"]:
                self.log.warning("skipping %s: %s", located[position].uri, r["error"])
                continue
            kept.append(position)
            found.append(_detections_from_json(r["detections"]))
            cut.extend(_pil(_decode(c)) for c in r["crops"] or [])
        return kept, found, cut
