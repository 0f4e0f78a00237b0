"""The training data of a T2I run: images with their captions of every kind, and the batches.

Why per-step determinism: every random choice of step ``s`` — which images, which caption kind
per image (:func:`backend.caption_mix.draw`), flips, crops, noise — comes from a generator
seeded with ``(seed, s)``, never from a stream that runs through the whole training. So a run
resumed from a checkpoint at step ``s`` draws exactly what an uninterrupted run draws, and the
recorded caption-kind counts of both are equal.

Captions: the *current* caption of each kind per image; human captions count only when
approved (``submitted`` and ``rejected`` ones are left out); where several current captions of
one kind exist (several annotators), the newest is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sqlmodel import col, select

from backend.caption_mix import CaptionMix, MixUsage, draw
from backend.datasets import get_dataset
from backend.db import read_session
from backend.jobs.models import Run
from backend.models import HUMAN_KINDS, Caption, CaptionStatus, Image
from backend.storage import image_path
from backend.workspace import Workspace
from training.data import UnreadableImage, load_rgb
from training.distributed import Dist, shard
from training.t2i.latents import LatentCache, LatentKey

EXCLUDED_STATUSES = (CaptionStatus.submitted.value, CaptionStatus.rejected.value)
IMPORTED = "imported"
HUMAN = "human"


@dataclass
class TrainImage:
    """One image of the dataset with the caption texts (and caption ids) it has, by kind."""

    image_id: int
    sha256: str
    path: Path
    captions: dict[str, str] = field(default_factory=dict)
    caption_ids: dict[str, int] = field(default_factory=dict)


def load_train_images(ws: Workspace, dataset: str) -> list[TrainImage]:
    """Every image of ``dataset`` (id order) with its usable current captions."""
    with read_session(ws) as s:
        ds = get_dataset(s, dataset)
        images = s.exec(select(Image).where(Image.dataset_id == ds.id).order_by(col(Image.id))).all()
        out = {
            int(im.id): TrainImage(int(im.id), im.sha256, image_path(ws, im.sha256, im.ext)) for im in images
        }  # type: ignore[arg-type]
        captions = s.exec(
            select(Caption)
            .join(Image, col(Image.id) == col(Caption.image_id))
            .where(
                Image.dataset_id == ds.id,
                Caption.is_current == True,  # noqa: E712 - SQL expression
                col(Caption.status).not_in(EXCLUDED_STATUSES),
            )
            .order_by(col(Caption.id))
        ).all()
    for caption in captions:  # ascending id: the newest of a kind wins
        if caption.text and caption.text.strip():
            record = out[caption.image_id]
            record.captions[caption.kind] = caption.text
            record.caption_ids[caption.kind] = int(caption.id)  # type: ignore[arg-type]
    return list(out.values())


def captioner_refs(ws: Workspace, images: Sequence[TrainImage], kinds: Sequence[str]) -> dict[str, list[str]]:
    """For each caption kind: the distinct sources of the captions of that kind in the data.

    A machine caption names the captioner of the run that wrote it (``Run.config["captioner"]``);
    human kinds are ``"human"``; captions from no run (alt-text, imports) are ``"imported"``.
    """
    ids = {kind: sorted({im.caption_ids[kind] for im in images if kind in im.caption_ids}) for kind in kinds}
    wanted = sorted({i for v in ids.values() for i in v})
    with read_session(ws) as s:
        runs_of: dict[int, int | None] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            for cid, run_id in s.exec(
                select(Caption.id, Caption.run_id).where(col(Caption.id).in_(chunk))
            ).all():
                runs_of[int(cid)] = run_id  # type: ignore[arg-type]
        run_ids = sorted({r for r in runs_of.values() if r is not None})
        configs = {
            int(r.id): dict(r.config or {}) for r in s.exec(select(Run).where(col(Run.id).in_(run_ids))).all()
        }  # type: ignore[arg-type]
    out: dict[str, list[str]] = {}
    for kind, caption_ids in ids.items():
        refs: set[str] = set()
        for cid in caption_ids:
            run_id = runs_of.get(cid)
            if kind in HUMAN_KINDS:
                refs.add(HUMAN)
            elif run_id is None:
                refs.add(IMPORTED)
            else:
                refs.add(str(configs.get(run_id, {}).get("captioner") or f"run-{run_id}"))
        out[kind] = sorted(refs)
    return out


# --------------------------------------------------------------------------- per-step choices


def step_rng(seed: int, step: int, micro: int, stream: int) -> np.random.Generator:
    """The generator of one random stream (batch, captions, flips) of one micro-batch."""
    return np.random.default_rng([seed, step, micro, stream])


def torch_generator(seed: int, step: int, micro: int, device: torch.device) -> torch.Generator:
    """Noise, timesteps and latent samples of one micro-batch."""
    value = int(step_rng(seed, step, micro, 3).integers(0, 2**63 - 1))
    return torch.Generator(device=device).manual_seed(value)


def batch_indices(
    n_images: int, batch_size: int, grad_accum: int, seed: int, step: int, micro: int
) -> list[int]:
    """Image indices of micro-batch ``micro`` of optimizer step ``step`` (0-based).

    Epochs walk a seeded permutation per epoch, so every image is seen once per epoch.
    """
    first = (step * grad_accum + micro) * batch_size
    out = []
    for g in range(first, first + batch_size):
        epoch, pos = divmod(g, n_images)
        out.append(int(_permutation(n_images, seed, epoch)[pos]))
    return out


@lru_cache(maxsize=4)
def _permutation(n_images: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch, 7]).permutation(n_images)


def draw_captions(
    mix: CaptionMix, images: Sequence[TrainImage], seed: int, step: int, micro: int, usage: MixUsage
) -> list[tuple[str, str]]:
    """The (label, text) of each example of a micro-batch, recorded into ``usage``."""
    rng = step_rng(seed, step, micro, 1)
    return [draw(mix, im.captions, rng, usage) for im in images]


@dataclass(frozen=True)
class Augment:
    """Crop and flip of one example (drawn per step, applied in the loader worker)."""

    flip: bool = False
    crop_u: float | None = None  # None: centre crop; else relative offsets of a random crop
    crop_v: float | None = None


def draw_augments(
    n: int, seed: int, step: int, micro: int, random_flip: bool, center_crop: bool
) -> list[Augment]:
    rng = step_rng(seed, step, micro, 2)
    flips = rng.random(n) < 0.5 if random_flip else np.zeros(n, dtype=bool)
    offsets = rng.random((n, 2))
    return [
        Augment(
            bool(flips[i]),
            None if center_crop else float(offsets[i, 0]),
            None if center_crop else float(offsets[i, 1]),
        )
        for i in range(n)
    ]


# --------------------------------------------------------------------------- pixels


def preprocess(image: Any, resolution: int, augment: Augment) -> torch.Tensor:
    """Resize the short side to ``resolution``, crop a square, maybe flip; ``(3, r, r)`` in [-1, 1]."""
    import torchvision.transforms.functional as tf
    from torchvision.transforms import InterpolationMode

    image = tf.resize(image, resolution, interpolation=InterpolationMode.BILINEAR, antialias=True)
    if augment.crop_u is None:
        image = tf.center_crop(image, [resolution, resolution])
    else:
        width, height = image.size
        top = int(round((height - resolution) * float(augment.crop_v or 0.0)))
        left = int(round((width - resolution) * augment.crop_u))
        image = tf.crop(image, top, left, resolution, resolution)
    if augment.flip:
        image = tf.hflip(image)
    return tf.normalize(tf.to_tensor(image), [0.5], [0.5])


def latent_key(image: TrainImage, resolution: int, augment: Augment) -> LatentKey:
    return LatentKey(image.sha256, resolution, "center", augment.flip)


@dataclass
class Example:
    """One example as the loader worker hands it over: latent parameters from the cache, else pixels."""

    index: int
    params: torch.Tensor | None = None
    pixels: torch.Tensor | None = None
    error: str | None = None


@dataclass
class MicroBatch:
    """One micro-batch: ``indices`` and ``augments`` of the whole (global) micro-batch, and the
    loaded ``examples`` of this process's slice ``shard`` of it (all of it in one process)."""

    step: int
    micro: int
    indices: list[int]
    augments: list[Augment]
    examples: list[Example]
    shard: slice = field(default_factory=lambda: slice(0, None))

    @property
    def size(self) -> int:
        """Examples in the global micro-batch."""
        return len(self.indices)

    def position(self, i: int) -> int:
        """Position in the global micro-batch of ``examples[i]``."""
        return (self.shard.start or 0) + i


class MicroBatches(torch.utils.data.Dataset):
    """Item ``k`` = micro-batch ``k % grad_accum`` of optimizer step ``k // grad_accum``.

    Decoding, resizing and cache reads happen here, inside DataLoader workers; the captions
    are drawn in the main process (they are cheap and feed the run's usage counts). With
    several processes (``dist``), every process computes the same global indices and crops and
    loads only its own slice (:func:`training.distributed.shard`).
    """

    def __init__(
        self,
        images: Sequence[TrainImage],
        *,
        batch_size: int,
        grad_accum: int,
        seed: int,
        resolution: int,
        random_flip: bool,
        center_crop: bool,
        cache: LatentCache | None,
        dist: Dist | None = None,
    ) -> None:
        self.images = list(images)
        self.batch_size, self.grad_accum, self.seed = batch_size, grad_accum, seed
        self.resolution, self.random_flip, self.center_crop = resolution, random_flip, center_crop
        self.cache = cache
        self.dist = dist or Dist()

    def __len__(self) -> int:  # the sampler decides which items are read
        return 2**62

    def __getitem__(self, k: int) -> MicroBatch:
        step, micro = divmod(int(k), self.grad_accum)
        indices = batch_indices(len(self.images), self.batch_size, self.grad_accum, self.seed, step, micro)
        augments = draw_augments(len(indices), self.seed, step, micro, self.random_flip, self.center_crop)
        mine = shard(len(indices), self.dist)
        examples = [self.example(i, a) for i, a in zip(indices[mine], augments[mine], strict=True)]
        return MicroBatch(step, micro, indices, augments, examples, mine)

    def example(self, index: int, augment: Augment) -> Example:
        image = self.images[index]
        if self.cache is not None:
            params = self.cache.get(latent_key(image, self.resolution, augment))
            if params is not None:
                return Example(index, params=params)
        try:
            return Example(index, pixels=preprocess(load_rgb(image.path), self.resolution, augment))
        except (UnreadableImage, FileNotFoundError) as exc:
            return Example(index, error=str(exc))


def collate_one(items: list[MicroBatch]) -> MicroBatch:
    return items[0]
