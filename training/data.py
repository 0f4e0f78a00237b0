"""Images and captions of a workspace dataset, as the model jobs consume them.

Two consumers, two shapes:

* **Recaption / scoring** stream every image of a dataset once. :class:`ImageFiles` reads and
  decodes one stored file per item and :class:`BatchPreparer` turns a list of decoded images
  into model inputs, both inside ``DataLoader`` workers, so reading, decoding and
  preprocessing of batch *n+1* overlap with ``generate`` on batch *n*. A file that cannot be
  decoded (truncated, overwritten on disk) comes back as a failure with its reason instead
  of an exception: one bad file must never end a run over a million images.
* **Fine-tuning** uses the approved human captions (:func:`approved_examples`), a seeded
  split by image (:func:`split_by_image`) and style-homogeneous batches
  (:func:`epoch_batches`), because a batch shares one style prompt.

No database access happens in workers: the main process queries what to do and hands the
workers plain records.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import multiprocessing
import os
import random
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image as PILImage
from sqlmodel import col, select

from backend.datasets import get_dataset
from backend.db import read_session
from backend.models import Caption, CaptionStatus, Image
from backend.storage import image_path
from backend.workspace import Workspace

Batch = dict[str, torch.Tensor]


class UnreadableImage(OSError):
    """A stored image file that cannot be decoded; the message is the reason."""


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class ImageRef:
    """One stored image: database id, absolute file path, and the path relative to the workspace
    (what sample files and logs show, so a workspace can move)."""

    image_id: int
    path: Path
    rel_path: str


def _ref(ws: Workspace, image: Image) -> ImageRef:
    path = image_path(ws, image.sha256, image.ext)
    return ImageRef(int(image.id), path, path.relative_to(ws.home).as_posix())  # type: ignore[arg-type]


def dataset_images(ws: Workspace, dataset: str) -> list[ImageRef]:
    """Every image of ``dataset`` in id order (a stable order makes progress and resumes readable)."""
    with read_session(ws) as s:
        ds = get_dataset(s, dataset)
        images = s.exec(select(Image).where(Image.dataset_id == ds.id).order_by(col(Image.id))).all()
        return [_ref(ws, im) for im in images]


def load_rgb(path: Path) -> PILImage.Image:
    """Decode a stored image fully (lazy decoding would defer the error into preprocessing)."""
    try:
        with PILImage.open(path) as im:
            im.load()
            return im.convert("RGB") if im.mode != "RGB" else im.copy()
    except (OSError, SyntaxError, ValueError, EOFError, PILImage.DecompressionBombError) as exc:
        raise UnreadableImage(f"{path.name}: {exc or type(exc).__name__}") from None


# --------------------------------------------------------------------------- streaming images


@dataclass
class Loaded:
    """What a worker returns for one image: the decoded image, or why there is none."""

    ref: ImageRef
    image: PILImage.Image | None
    error: str | None = None


class ImageFiles(torch.utils.data.Dataset):
    """Decodes one stored image per item; failures are data, not exceptions."""

    def __init__(self, refs: Sequence[ImageRef]) -> None:
        self.refs = list(refs)

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, index: int) -> Loaded:
        ref = self.refs[index]
        try:
            return Loaded(ref, load_rgb(ref.path))
        except UnreadableImage as exc:
            return Loaded(ref, None, str(exc))
        except FileNotFoundError:
            return Loaded(ref, None, f"file missing: {ref.rel_path}")


@dataclass
class PreparedBatch:
    """Model inputs for the readable images of one batch, one input per prompt key.

    ``inputs[key]`` holds CPU tensors for ``refs`` (in that order) prepared with
    ``prompts[key]``; ``failed`` lists the images that could not be read, with the reason.
    """

    refs: list[ImageRef]
    failed: list[tuple[ImageRef, str]]
    inputs: dict[str, Batch] = field(default_factory=dict)
    images: list[PILImage.Image] = field(default_factory=list)

    def pin_memory(self) -> PreparedBatch:
        """Called by the DataLoader's pinning thread (``pin_memory=True``, GPU runs), so the copy
        to the GPU in :func:`to_device` can be asynchronous."""
        self.inputs = {
            key: {k: t.pin_memory() for k, t in batch.items()} for key, batch in self.inputs.items()
        }
        return self


class BatchPreparer:
    """``collate_fn`` that runs the adapter's ``prepare_batch`` inside the DataLoader worker.

    Why a CPU view of the adapter: ``prepare_batch`` ends by moving tensors to the adapter's
    device, and a forked worker must not touch the GPU; the view shares the processor and
    model config but targets the CPU (pixels still take the model's dtype, so half-precision
    inputs are half the bytes to copy). The main process moves the batch with
    :func:`to_device`.
    """

    def __init__(self, adapter: Any, prompts: dict[str, str | None], keep_images: bool = False) -> None:
        view = copy.copy(adapter)
        view.device = torch.device("cpu")
        self.adapter = view
        self.prompts = dict(prompts)
        self.keep_images = keep_images

    def __call__(self, items: list[Loaded]) -> PreparedBatch:
        good = [item for item in items if item.image is not None]
        batch = PreparedBatch(
            refs=[item.ref for item in good],
            failed=[(item.ref, item.error or "unreadable") for item in items if item.image is None],
        )
        images = [item.image for item in good]
        if images:
            for key, prompt in self.prompts.items():
                batch.inputs[key] = self.adapter.prepare_batch(images, prompt=prompt)
            if self.keep_images:
                batch.images = images  # type: ignore[assignment]
        return batch


def collate_loaded(items: list[Loaded]) -> list[Loaded]:
    """The identity collate, for consumers that preprocess themselves (CLIP scoring)."""
    return items


def own_process_group(_worker_id: int) -> None:
    """``worker_init_fn``: put a DataLoader worker in a process group of its own.

    Why: a cancel sends SIGTERM to the run's process group (and torch elastic to each worker's
    group). A loader worker in that group dies of it at once (torch's worker handler exits on a
    SIGTERM not sent by its parent), and the training loop then raises "DataLoader worker ...
    is killed by signal: Terminated" instead of finishing its step, checkpointing and ending
    *cancelled*. Out of the group, the worker keeps feeding until the loop stops; it still ends
    with its parent (the loader shuts it down, or torch's watchdog sees the parent gone).
    """
    os.setpgid(0, 0)


def make_loader(
    refs: Sequence[ImageRef],
    collate: Callable[[list[Loaded]], Any],
    batch_size: int,
    num_workers: int,
    *,
    pin_memory: bool = False,
) -> torch.utils.data.DataLoader:
    """A DataLoader over stored images, in order, with ``num_workers`` decoding processes.

    Workers are forked where the platform can (the collate holds a model reference that
    must not be pickled); ``prefetch_factor`` 2 keeps two batches ready per worker, enough
    to hide decoding behind ``generate`` without holding many images in memory.
    """
    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        kwargs["prefetch_factor"] = 2
        if "fork" in multiprocessing.get_all_start_methods():
            kwargs["multiprocessing_context"] = "fork"
    return torch.utils.data.DataLoader(
        ImageFiles(refs),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        **kwargs,
    )


def to_device(batch: Batch, device: torch.device) -> Batch:
    """Move a prepared CPU batch to ``device`` (asynchronously from pinned memory on a GPU)."""
    if device.type == "cpu":
        return batch
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


# --------------------------------------------------------------------------- fine-tuning data


@dataclass(frozen=True)
class Example:
    """One approved human caption of one image, in one style (``mirrored``: the image flipped
    left-right, ``text`` already saying so; see :func:`mirrored_example`)."""

    image: ImageRef
    caption_id: int
    text: str
    style: str
    mirrored: bool = False


_LEFT_RIGHT = re.compile(r"\b(left|right)", re.IGNORECASE)


def swap_left_right(text: str) -> str:
    """``text`` as it reads of the mirror image: every word starting "left" or "right" swapped
    ("leftmost" -> "rightmost"), with its capitalisation.

    Only English, and only the two words: a caption that names writing, a hand or a driving
    side is wrong once mirrored, which is why mirroring is opt-in.
    """

    def swap(match: re.Match[str]) -> str:
        word = match.group(1)
        other = "right" if word.lower() == "left" else "left"
        if word.isupper():
            return other.upper()
        return other.capitalize() if word[0].isupper() else other

    return _LEFT_RIGHT.sub(swap, text)


def mirrored_example(example: Example) -> Example:
    """The same caption of the image flipped left-right: a second, exactly labelled example of
    every left/right relation the annotator wrote."""
    return dataclasses.replace(example, text=swap_left_right(example.text), mirrored=not example.mirrored)


def approved_examples(ws: Workspace, dataset: str, kinds: dict[str, str]) -> list[Example]:
    """Approved, current captions of ``kinds`` (kind -> style) in ``dataset``, by image then id.

    Several annotators may each have an approved caption of one image: each is an example
    (more references for the same image), and the split below keeps them on one side.
    """
    with read_session(ws) as s:
        ds = get_dataset(s, dataset)
        rows = s.exec(
            select(Caption, Image)
            .join(Image, col(Image.id) == col(Caption.image_id))
            .where(
                Image.dataset_id == ds.id,
                col(Caption.kind).in_(list(kinds)),
                Caption.status == CaptionStatus.approved.value,
                Caption.is_current == True,  # noqa: E712 - SQL expression
            )
            .order_by(col(Caption.image_id), col(Caption.id))
        ).all()
        return [
            Example(_ref(ws, image), int(caption.id), caption.text, kinds[caption.kind])
            for caption, image in rows
        ]


def split_by_image(
    examples: Sequence[Example], val_fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """Seeded train/validation split by image, so no validation image was seen in training.

    At least one validation image whenever there are two or more images, and at least one
    training image always; the same seed gives the same split (a resumed run trains on
    exactly the same set).
    """
    image_ids = sorted({e.image.image_id for e in examples})
    rng = random.Random(seed)
    rng.shuffle(image_ids)
    n_val = 0
    if len(image_ids) >= 2:
        n_val = min(len(image_ids) - 1, max(1, round(len(image_ids) * val_fraction)))
    val_ids = set(image_ids[:n_val])
    train = [e for e in examples if e.image.image_id not in val_ids]
    val = [e for e in examples if e.image.image_id in val_ids]
    return train, val


def epoch_batches(examples: Sequence[Example], batch_size: int, seed: int, epoch: int) -> list[list[Example]]:
    """This epoch's batches: shuffled with (seed, epoch), each batch of a single style.

    Deterministic, so a run resumed mid-epoch can skip exactly the batches it already did.
    """
    rng = random.Random(seed * 100_003 + epoch)
    by_style: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        by_style[example.style].append(example)
    batches: list[list[Example]] = []
    for style in sorted(by_style):
        items = list(by_style[style])
        rng.shuffle(items)
        batches += [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    rng.shuffle(batches)
    return batches


def steps_per_epoch(examples: Sequence[Example], batch_size: int, grad_accum: int) -> int:
    """Optimizer steps in one epoch (the last accumulation group may be short)."""
    counts: dict[str, int] = defaultdict(int)
    for example in examples:
        counts[example.style] += 1
    n_batches = sum(math.ceil(n / batch_size) for n in counts.values())
    return math.ceil(n_batches / grad_accum)


class ImageCache:
    """Decoded training images, kept in memory: a RECAP human set is a few hundred images,
    decoded once instead of once per epoch."""

    def __init__(self) -> None:
        self._images: dict[int, PILImage.Image] = {}

    def get(self, ref: ImageRef) -> PILImage.Image:
        image = self._images.get(ref.image_id)
        if image is None:
            image = self._images[ref.image_id] = load_rgb(ref.path)
        return image

    def of(self, example: Example) -> PILImage.Image:
        """The example's image, flipped left-right when the example is mirrored."""
        image = self.get(example.image)
        return image.transpose(PILImage.Transpose.FLIP_LEFT_RIGHT) if example.mirrored else image

    def readable(self, refs: Iterable[ImageRef]) -> dict[int, str]:
        """Decode every ref now; returns {image_id: reason} for those that fail."""
        bad: dict[int, str] = {}
        for ref in refs:
            if ref.image_id in bad or ref.image_id in self._images:
                continue
            try:
                self.get(ref)
            except (UnreadableImage, FileNotFoundError) as exc:
                bad[ref.image_id] = str(exc)
        return bad


# --------------------------------------------------------------------------- threads


def set_torch_threads(requested: int, reserved: int = 0) -> int:
    """Set torch's CPU threads and return the number in use.

    ``requested`` > 0 wins; else an explicit ``OMP_NUM_THREADS`` (torch already read it);
    else one thread per core this process may use, minus ``reserved`` cores (DataLoader
    workers decode on those). Why deliberate: on a shared or small machine, more OpenMP
    threads than free cores makes every small op wait for a descheduled thread — a tiny
    captioner generated 10x slower with 2 threads than with 1 on a busy 2-core box.
    """
    if requested < 0:
        raise ValueError(f"torch_threads must be 0 (automatic) or more (got {requested})")
    if requested == 0 and os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    if requested == 0:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        requested = max(1, cores - reserved)
    torch.set_num_threads(requested)
    return requested
