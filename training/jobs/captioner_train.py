"""``captioner_train``: fine-tune a captioner on a dataset's approved human captions (RECAP step 2).

Shaped like diffusers' training scripts: set-up helpers first, then :func:`fine_tune`, one
readable loop (epochs → accumulation groups → optimizer steps, evaluation every
``eval_every`` steps, a checkpoint every epoch), then saving. ``style="both"`` runs that loop
twice (``both_mode="separate"``, one captioner per style as RECAP did) or once over both
styles with a style prompt (``"prompt"``: ``<SHORT>`` / ``<LONG>`` task prefixes, as Florence-2
and PaliGemma use task prefixes).

Decisions worth knowing:

* Data = approved, current ``human_short`` / ``human_long`` captions; the train/validation
  split is by image and seeded, so a resumed run trains on exactly the same set. With
  ``captions="alttext"`` the data are the current ``alttext`` captions of any review status
  instead (the stand-in for RECAP's web pretraining; a short captioner), recorded in the
  artifact's meta as ``captions: "alttext"``.
* ``replay`` > 0 rehearses pre-training during a fine-tune on human captions: a seeded sample of
  that many alt-text captions (images outside the human set, the same sample every epoch) is
  trained alongside, unprompted as in alt-text pre-training, while each human style is given its
  style prompt so the model keeps the two apart. Why: a small captioner fine-tuned on 180 long
  human captions forgot the relations its pre-training had taught it (docs/miniature.md,
  "Positions"); continual-learning practice keeps old knowledge by mixing old data in.
* ``mirror`` trains every training example twice, the second time flipped left-right with
  "left" and "right" swapped in its caption. Why: in 180 long human captions each left/right
  relation is a handful of examples, and a small captioner fine-tuned on them kept few positions
  (docs/miniature.md, "Fifth round"); the mirror image is an exact, free second label wherever
  the world has no handedness (the miniature world has none: symmetric shapes, no writing).
* Mixed precision goes through ``accelerate`` on a GPU, under the one device and precision
  policy of :mod:`training.devices`: fp16/bf16 on the CPU is an error said before anything
  loads, ``auto`` takes mixed precision only where there is a GPU (a GPU config stays usable
  for a quick CPU check); the precision used is logged and recorded in the artifact.
* The learning rate is constant, or decays on a cosine to zero over each style's steps
  (``lr_schedule``), after an optional linear warm-up (``lr_warmup_steps``); the maths is
  :func:`training.lr_schedule.lr_factor`, shared with ``t2i_train``. On the miniature
  experiment's alt-text pre-training the cosine gained about 0.01 of precision (docs/miniature.md,
  "After the second cpu run"), so its presets keep the constant rate.
* LoRA (peft) targets the attention projections of each family (:data:`LORA_TARGETS`);
  weights are merged before ``save_pretrained`` so ``load_captioner`` loads the result like
  any checkpoint. ``freeze_vision`` freezes (and keeps LoRA out of) the vision tower.
* Resumable: trainable weights, optimizer state, RNG and position (epoch, batch, step) are
  checkpointed atomically every epoch, on a stop request and at the end; a resumed attempt
  continues from there (metrics are written once per step, so repeats are harmless). A
  style whose artifact is registered is not trained again.
* Several processes: ``processes`` > 1 runs the loop on that many workers under ``accelerate
  launch`` (DDP through ``accelerator.prepare``; :mod:`training.distributed`). ``batch_size`` stays
  the global batch: each rank takes a contiguous slice of every micro-batch, and its token-mean
  loss is weighted by its share of the micro-batch's target tokens (the model's own loss is a
  token mean over the batch), so the loss and gradient are those of one process up to float
  rounding — and up to dropout, where a model has any: each rank draws its slice's masks from
  its own RNG stream (checkpointed per rank, so a resumed run draws what an uninterrupted one
  draws). Rank 0 alone evaluates, writes metrics, samples, checkpoints (holding every rank's
  RNG state) and the artifact; all ranks stop after the same step.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from sqlmodel import col, func, select

from backend.datasets import get_dataset
from backend.db import read_session
from backend.jobs import store
from backend.jobs.configs import CAPTIONER_ARTIFACT, CaptionerTrainConfig, max_new_tokens_for, parse_config
from backend.jobs.context import JobContext
from backend.models import Caption, CaptionKind, Image
from backend.references import ResolvedModel, open_reference
from backend.storage import image_path
from training.adapters import CaptionerAdapter, adapter_for, load_captioner
from training.data import (
    Example,
    ImageCache,
    ImageRef,
    approved_examples,
    epoch_batches,
    mirrored_example,
    set_torch_threads,
    split_by_image,
    steps_per_epoch,
)
from training.devices import effective_precision, pick_device
from training.distributed import Dist, all_sum, gather, no_sync, setup, shard, step_sync
from training.lr_schedule import lr_factor
from training.metrics import bleu, cider, clip_score

STYLE_KIND = {"short": "human_short", "long": "human_long"}
STYLE_PROMPTS = {"short": "<SHORT>", "long": "<LONG>"}
REPLAY_STYLE = "alttext"  # Example.style of rehearsed alt-text; trained with the family's own prompt
MAX_GRAD_NORM = 1.0  # clipping keeps a tiny human set from blowing up the first steps


# path components that mark a vision tower across families (BLIP, GIT, Florence-2, VLMs)
VISION_PARTS = frozenset({"vision_model", "vision_tower", "image_encoder", "visual"})
LORA_TARGETS: dict[str, tuple[str, ...]] = {
    "blip": ("qkv", "query", "key", "value"),
    "git": ("q_proj", "k_proj", "v_proj", "query", "key", "value"),
    "ved": ("c_attn", "q_attn"),  # GPT-2-style decoders (Conv1D); others use the fallback
    "florence2": ("qkv", "q_proj", "k_proj", "v_proj"),
    "paligemma": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "qwen2_vl": ("qkv", "q_proj", "k_proj", "v_proj", "o_proj"),
    "qwen2_5_vl": ("qkv", "q_proj", "k_proj", "v_proj", "o_proj"),
    "idefics3": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "llava": ("q_proj", "k_proj", "v_proj", "o_proj"),
}
LORA_FALLBACK = ("q_proj", "k_proj", "v_proj", "query", "key", "value", "qkv")
# families whose decoder is fed the labels shifted right (encoder-decoders): every label position
# is a target; the others shift inside the model, so the first label position never is
UNSHIFTED_LABELS = frozenset({"ved", "florence2"})


class TrainError(ValueError):
    """A fine-tune that cannot run as configured; the message says what to change."""


# --------------------------------------------------------------------------- set-up helpers


def is_vision(name: str, family: str) -> bool:
    """Does this parameter/module name belong to the vision tower?"""
    parts = name.split(".")
    if family == "ved":  # VisionEncoderDecoder: the whole encoder is the vision side
        return parts[0] == "encoder"
    return any(part in VISION_PARTS for part in parts)


def freeze_vision(model: torch.nn.Module, family: str) -> int:
    """Freeze the vision tower; returns how many parameters were frozen (0 is an error)."""
    frozen = 0
    for name, param in model.named_parameters():
        if is_vision(name, family):
            param.requires_grad_(False)
            frozen += param.numel()
    if not frozen:
        raise TrainError(f"freeze_vision: found no vision tower in this {family} model")
    return frozen


def lora_targets(model: torch.nn.Module, family: str, skip_vision: bool) -> tuple[list[str], bool]:
    """Full names of the modules LoRA wraps, and whether they are Conv1D (``fan_in_fan_out``)."""
    from transformers.pytorch_utils import Conv1D

    def pick(suffixes: tuple[str, ...], types: tuple[type, ...]) -> list[str]:
        return [
            name
            for name, module in model.named_modules()
            if name.rsplit(".", 1)[-1] in suffixes
            and isinstance(module, types)
            and not (skip_vision and is_vision(name, family))
        ]

    names = pick(LORA_TARGETS.get(family, LORA_FALLBACK), (torch.nn.Linear, Conv1D))
    if not names:
        names = pick(LORA_FALLBACK, (torch.nn.Linear,))
    if not names:
        raise TrainError(f"LoRA: no attention projections found in this {family} model")
    modules = dict(model.named_modules())
    conv = [isinstance(modules[n], Conv1D) for n in names]
    if any(conv) and not all(conv):  # peft's fan_in_fan_out is one flag for all targets
        names = [n for n, c in zip(names, conv, strict=True) if c]
    return names, all(conv)


def apply_lora(model: torch.nn.Module, family: str, rank: int, skip_vision: bool) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model

    names, fan_in_fan_out = lora_targets(model, family, skip_vision)
    config = LoraConfig(
        r=rank, lora_alpha=2 * rank, lora_dropout=0.05, target_modules=names, fan_in_fan_out=fan_in_fan_out
    )
    return get_peft_model(model, config)


def check_replay_prompts(adapter: CaptionerAdapter, prompts: dict[str, str | None]) -> None:
    """Rehearsed alt-text is unprompted, so every human style needs a prompt the model can read."""
    if not adapter.supports_prompt:
        raise TrainError(
            f"{adapter.family} captioners take no prompt, so rehearsed alt-text and the human style(s) "
            "cannot be told apart; set replay 0"
        )
    for style, prompt in prompts.items():
        if not prompt or not adapter.tokenizer(prompt, add_special_tokens=False)["input_ids"]:
            raise TrainError(f"style {style!r} needs a non-empty prompt when alt-text is rehearsed")


def check_style_prompts(adapter: CaptionerAdapter, prompts: dict[str, str | None]) -> None:
    """One model, two styles needs a prompt the model can condition on, distinct per style."""
    if not adapter.supports_prompt:
        raise TrainError(
            f"{adapter.family} captioners take no prompt, so one model cannot learn two caption styles; "
            "use both_mode separate (one fine-tune per style)"
        )
    encoded = {tuple(adapter.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts.values()}
    if len(encoded) != len(prompts):
        raise TrainError(f"the style prompts {list(prompts.values())} tokenize identically for this model")


def target_tokens(batch: dict[str, Any], family: str) -> int:
    """How many label positions of a prepared batch the model's mean loss averages over."""
    labels = batch["labels"]
    if family not in UNSHIFTED_LABELS:
        labels = labels[:, 1:]
    return int((labels != -100).sum())


def loss_through(adapter: CaptionerAdapter, module: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
    """The adapter's training loss computed through ``module`` (its model's DDP wrapper), so the
    backward pass reduces gradients across processes; the adapter keeps its plain model."""
    plain = adapter.model
    adapter.model = module
    try:
        return adapter.training_loss(batch)
    finally:
        adapter.model = plain


def _alttext_query(dataset_id: int, *columns: Any) -> Any:
    """The current ``alttext`` captions of one dataset (any review status), by image then id."""
    return (
        select(*columns)
        .join(Image, col(Image.id) == col(Caption.image_id))
        .where(
            Image.dataset_id == dataset_id,
            Caption.kind == CaptionKind.alttext.value,
            Caption.is_current == True,  # noqa: E712 - SQL expression
            func.trim(Caption.text) != "",
        )
        .order_by(col(Caption.image_id), col(Caption.id))
    )


def alttext_examples(ws: Any, dataset: str, caption_ids: list[int] | None = None) -> list[Example]:
    """The current ``alttext`` captions of ``dataset``, any review status, as short-style
    examples, by image then id (alt-text is nobody's work to approve: it came with the image);
    only those of ``caption_ids`` when given."""
    with read_session(ws) as s:
        query = _alttext_query(int(get_dataset(s, dataset).id), Caption, Image)  # type: ignore[arg-type]
        rows = []
        if caption_ids is None:
            rows = list(s.exec(query).all())
        else:  # in chunks: SQLite caps the number of bound parameters
            for i in range(0, len(caption_ids), 500):
                rows += s.exec(query.where(col(Caption.id).in_(caption_ids[i : i + 500]))).all()
            rows.sort(key=lambda row: (row[1].id, row[0].id))
        refs: dict[int, ImageRef] = {}
        out = []
        for caption, image in rows:
            if not caption.text.strip():
                continue
            ref = refs.get(int(image.id))  # type: ignore[arg-type]
            if ref is None:
                ref = refs[int(image.id)] = _image_ref(ws, image)  # type: ignore[arg-type]
            out.append(Example(ref, int(caption.id), caption.text, "short"))  # type: ignore[arg-type]
        return out


def alttext_ids(ws: Any, dataset: str) -> list[tuple[int, int]]:
    """``(caption id, image id)`` of every current alt-text caption of ``dataset``, by image then id:
    what a rehearsal sample is drawn from without reading millions of captions' text."""
    with read_session(ws) as s:
        query = _alttext_query(int(get_dataset(s, dataset).id), Caption.id, Caption.image_id)  # type: ignore[arg-type]
        return [(int(c), int(i)) for c, i in s.exec(query).all()]


def _image_ref(ws: Any, image: Image) -> ImageRef:
    path = image_path(ws, image.sha256, image.ext)
    return ImageRef(int(image.id), path, path.relative_to(ws.home).as_posix())  # type: ignore[arg-type]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def _atomic_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint(
    path: Path,
    model: torch.nn.Module,
    optimizer: Any,
    position: dict[str, Any],
    rng_ranks: list[Any] | None = None,
) -> None:
    """Trainable weights + optimizer + RNG + position, written atomically (a kill mid-write
    leaves the previous checkpoint). ``rng_ranks``: every rank's RNG state (several processes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "trainable": {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad},
        "optimizer": optimizer.state_dict(),
        "rng": torch.get_rng_state(),
        **({"rng_ranks": rng_ranks} if rng_ranks else {}),
        **position,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def rng_state() -> dict[str, Any]:
    """This process's RNG state (CPU, and CUDA where there is one): dropout draws from it."""
    cuda = torch.cuda.get_rng_state() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return {"cpu": torch.get_rng_state(), "cuda": cuda}


def load_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: Any, dist: Dist | None = None
) -> dict[str, Any]:
    dist = dist or Dist()
    state = torch.load(path, map_location="cpu", weights_only=True)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.pop("trainable").items():
            params[name].copy_(value)
    optimizer.load_state_dict(state.pop("optimizer"))
    torch.set_rng_state(state.pop("rng"))
    ranks = state.pop("rng_ranks", None)
    if ranks and len(ranks) == dist.world:  # each rank continues its own dropout stream
        torch.set_rng_state(ranks[dist.rank]["cpu"])
        if ranks[dist.rank].get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state(ranks[dist.rank]["cuda"])
    return state


# --------------------------------------------------------------------------- evaluation


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def evaluate(
    ctx: JobContext,
    adapter: CaptionerAdapter,
    val: list[Example],
    prompts: dict[str, str | None],
    step: int,
    cfg: CaptionerTrainConfig,
    cache: ImageCache,
    scorer: Any | None,
) -> dict[str, float]:
    """Validation loss, captions for the validation images (``samples/step_<N>.json``) and
    BLEU / CIDEr (/ CLIP score) of those captions against the held-out human captions."""
    model = adapter.model
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for style, prompt in prompts.items():
            for chunk in _chunks([e for e in val if e.style == style], cfg.batch_size):
                batch = adapter.prepare_batch(
                    [cache.get(e.image) for e in chunk], [e.text for e in chunk], prompt
                )
                total += float(adapter.training_loss(batch)) * len(chunk)
                count += len(chunk)
    model.train()
    metrics: dict[str, float] = {"val_loss": total / max(count, 1)}
    rows: list[dict[str, Any]] = []
    per_style: dict[str, dict[str, float]] = {}
    for style, prompt in prompts.items():
        refs: dict[int, list[str]] = defaultdict(list)
        images = {}
        for e in val:
            if e.style == style:
                refs[e.image.image_id].append(e.text)
                images[e.image.image_id] = e.image
        ids = list(refs)
        generated: list[str] = []
        for chunk in _chunks(ids, cfg.batch_size):
            batch = adapter.prepare_batch([cache.get(images[i]) for i in chunk], prompt=prompt)
            generated += adapter.generate(batch, max_new_tokens=max_new_tokens_for(style, cfg.max_new_tokens))
        references = [refs[i] for i in ids]
        scores = {"bleu": bleu(generated, references), "cider": cider(generated, references)}
        if scorer is not None:
            scores["clip_score"] = clip_score(scorer, [cache.get(images[i]) for i in ids], generated)
        per_style[style] = scores
        for image_id, text in zip(ids, generated, strict=True):
            ref = images[image_id]
            rows.append(
                {
                    "image_id": image_id,
                    "image_path": ref.rel_path,
                    "human": refs[image_id][0],
                    "generated": text,
                    "style": style,
                    "references": refs[image_id],
                }
            )
    for name in next(iter(per_style.values()), {}):
        metrics[name] = sum(s[name] for s in per_style.values()) / len(per_style)
        if len(per_style) > 1:
            metrics.update({f"{name}_{style}": s[name] for style, s in per_style.items()})
    _atomic_json(ctx.run_dir / "samples" / f"step_{step}.json", rows)
    for name, value in metrics.items():
        ctx.metric_once(step, name, value)
    ctx.logger.info("eval at step %d: %s", step, {k: round(v, 4) for k, v in metrics.items()})
    return metrics


# --------------------------------------------------------------------------- the training loop


@dataclasses.dataclass
class Unit:
    """One fine-tune of the run: the style it produces and the styles (prompts) it learns."""

    style: str  # "short" | "long" | "both" (prompt mode)
    prompts: dict[str, str | None]
    train: list[Example]
    val: list[Example]
    steps: int  # optimizer steps over all epochs
    offset: int  # global step before this unit (metrics and sample files of a run never collide)
    replay: list[Example] = dataclasses.field(default_factory=list)  # rehearsed alt-text (REPLAY_STYLE)

    def prompt_for(self, style: str) -> str | None:
        return None if style == REPLAY_STYLE else self.prompts[style]


def fine_tune(
    ctx: JobContext,
    cfg: CaptionerTrainConfig,
    base: ResolvedModel,
    unit: Unit,
    device: torch.device,
    precision: str,
    total_steps: int,
    scorer: Any | None,
    dist: Dist | None = None,
) -> tuple[CaptionerAdapter, dict[str, float]] | None:
    """Train one unit to the end (or until a stop request: returns None) and return the
    adapter holding the final (LoRA-merged) model plus the last validation metrics."""
    from accelerate import Accelerator

    dist = dist or Dist()
    log = ctx.logger
    seed_everything(cfg.seed)
    accelerator = Accelerator(mixed_precision=precision, cpu=device.type == "cpu")
    adapter = load_captioner(base.source, device=str(accelerator.device), dtype="float32")
    if unit.style == "both":
        check_style_prompts(adapter, unit.prompts)
    if unit.replay:
        check_replay_prompts(adapter, unit.prompts)
    model = adapter.model
    if cfg.freeze_vision:
        log.info("froze %d vision parameters", freeze_vision(model, adapter.family))
    if cfg.lora:
        model = apply_lora(model, adapter.family, cfg.lora_rank, skip_vision=cfg.freeze_vision)
    trainable = [p for p in model.parameters() if p.requires_grad]
    log.info(
        "%s: %s %s, %d trainable of %d parameters, %d train / %d val examples (+%d alt-text rehearsed), "
        "%d steps, lr %g %s, warm-up %d",
        unit.style, adapter.family, "LoRA" if cfg.lora else "full", sum(p.numel() for p in trainable),
        sum(p.numel() for p in model.parameters()), len(unit.train), len(unit.val), len(unit.replay), unit.steps,
        cfg.lr, cfg.lr_schedule, cfg.lr_warmup_steps,
    )  # fmt: skip
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr)
    wrapped, optimizer = accelerator.prepare(model, optimizer)  # DDP on several processes
    model = accelerator.unwrap_model(wrapped)
    adapter.model = model  # evaluation, generation and saving use the plain model
    cache = ImageCache()

    checkpoint = ctx.checkpoint_dir / unit.style / "last.pt"
    position = {"epoch": 0, "batch": 0, "step": 0, "finished": False, "last_eval": -1}
    if checkpoint.exists():
        position = load_checkpoint(checkpoint, model, optimizer, dist)
        log.info("resuming %s from %s", unit.style, {k: v for k, v in position.items()})
    step, metrics = int(position["step"]), {}

    def save(epoch: int, batch: int, finished: bool = False) -> None:
        where = {"epoch": epoch, "batch": batch, "step": step, "finished": finished, "last_eval": last_eval}
        rngs = gather(rng_state(), dist) if dist.active else None  # a collective: every rank calls save
        if dist.main:
            save_checkpoint(checkpoint, model, optimizer, where, rngs)

    last_eval = int(position["last_eval"])
    model.train()
    for epoch in range(int(position["epoch"]), cfg.epochs):
        if position["finished"]:
            break
        batches = epoch_batches(unit.train + unit.replay, cfg.batch_size, cfg.seed, epoch)
        start = int(position["batch"]) if epoch == position["epoch"] else 0
        for first in range(start, len(batches), cfg.grad_accum):
            group = batches[first : first + cfg.grad_accum]
            n_examples = sum(len(b) for b in group)
            group_loss = 0.0
            for i, micro in enumerate(group):
                # this rank's slice; a rank left without an example runs one at weight 0, because
                # DDP's gradient all-reduce needs every rank's backward
                mine, weight = micro[shard(len(micro), dist)], 1.0
                if not mine:
                    mine, weight = micro[:1], 0.0
                inputs = adapter.prepare_batch(
                    [cache.of(e) for e in mine], [e.text for e in mine], unit.prompt_for(micro[0].style)
                )
                with no_sync([wrapped], skip=i < len(group) - 1):  # DDP reduces once per optimizer step
                    with accelerator.autocast():
                        share = loss_through(adapter, wrapped, inputs) * (len(micro) / n_examples)
                        if dist.active:  # the slice's share of the micro-batch's target tokens
                            tokens = target_tokens(inputs, adapter.family) * weight
                            share = share * (tokens / max(all_sum([tokens], dist)[0], 1.0))
                    accelerator.backward(share * dist.world if dist.active else share)
                group_loss += float(share.detach())
            group_loss, stop = step_sync(group_loss, ctx.stop_requested, dist)
            accelerator.clip_grad_norm_(trainable, MAX_GRAD_NORM)
            lr = cfg.lr * lr_factor(step, unit.steps, cfg.lr_schedule, cfg.lr_warmup_steps)
            for param_group in optimizer.param_groups:
                param_group["lr"] = lr
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            ctx.metric_once(unit.offset + step, "train_loss", group_loss)
            ctx.progress(
                unit.offset + step,
                total_steps,
                f"{unit.style}: epoch {epoch + 1}/{cfg.epochs}, step {step}/{unit.steps}, loss {group_loss:.4f}",
            )
            if unit.val and step % cfg.eval_every == 0:
                if dist.main:  # rank 0 evaluates alone; the others wait at the next all-reduce
                    metrics = evaluate(
                        ctx, adapter, unit.val, unit.prompts, unit.offset + step, cfg, cache, scorer
                    )
                last_eval = step
            if stop if dist.active else ctx.stop_requested:
                ctx.request_stop()  # a stop another rank received is this rank's too
                save(epoch, first + cfg.grad_accum)
                log.info("stop requested: checkpointed %s at step %d", unit.style, step)
                return None
        save(epoch + 1, 0)
        log.info("%s: epoch %d done (step %d), checkpointed", unit.style, epoch + 1, step)
    if unit.val and last_eval != step:
        if dist.main:
            metrics = evaluate(ctx, adapter, unit.val, unit.prompts, unit.offset + step, cfg, cache, scorer)
        last_eval = step
    save(cfg.epochs, 0, finished=True)
    if not metrics and last_eval >= 0:  # resumed after the last evaluation: its numbers are in the DB
        at = unit.offset + last_eval
        metrics = {m.name: m.value for m in store.run_metrics(ctx.ws, ctx.run_id) if m.step == at}
        metrics.pop("train_loss", None)

    final = model
    if cfg.lora and dist.main:
        final = final.merge_and_unload()  # plain weights: load_captioner needs no peft
    adapter.model = final
    return adapter, metrics


def save_artifact(
    ctx: JobContext,
    cfg: CaptionerTrainConfig,
    base: ResolvedModel,
    unit: Unit,
    adapter: CaptionerAdapter,
    metrics: dict[str, float],
    precision: str,
    device: torch.device,
) -> None:
    """``save_pretrained`` into ``runs/<id>/captioner-<style>`` (via a temporary folder, so a
    kill never leaves half a model under the final name) and register the artifact."""
    final = ctx.run_dir / f"captioner-{unit.style}"
    tmp = ctx.run_dir / f".captioner-{unit.style}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    adapter.save(tmp)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)

    def described(examples: list[Example]) -> dict[str, list[int]]:
        return {
            "image_ids": sorted({e.image.image_id for e in examples}),
            "caption_ids": sorted({e.caption_id for e in examples}),  # a mirrored example is its caption again
        }

    meta = {
        "base": base.label,
        "base_artifact_id": base.artifact.id if base.artifact is not None else None,
        "family": adapter.family,
        "style": unit.style,
        "captions": cfg.captions,
        "both_mode": cfg.both_mode if cfg.style == "both" else None,
        "prompts": unit.prompts,
        "training_set": described(unit.train),
        "replay_set": described(unit.replay) if unit.replay else None,
        "validation_set": described(unit.val),
        "validation_metrics": metrics,
        "steps": unit.steps,
        "config": {**dataclasses.asdict(cfg), "mixed_precision_used": precision, "device_used": device.type},
    }
    trained_on = "alttext" if cfg.captions == "alttext" else unit.style
    name = f"{cfg.dataset}-{adapter.family}-{trained_on}-run{ctx.run_id}"
    artifact = ctx.artifact(CAPTIONER_ARTIFACT, name, final, meta)
    ctx.logger.info("registered captioner artifact %s (id %s) at %s", name, artifact.id, artifact.path)


def plan_units(cfg: CaptionerTrainConfig, examples: list[Example], replay: list[Example] | None = None) -> list[Unit]:
    """The run's fine-tunes; every unit rehearses the same ``replay`` examples (if any)."""
    replay = replay or []
    train, val = split_by_image(examples, cfg.val_fraction, cfg.seed)
    if cfg.mirror:  # after the split: a validation image's mirror image is no training example
        train = train + [mirrored_example(e) for e in train]
    if cfg.style == "both" and cfg.both_mode == "prompt":
        groups = [("both", {"short": STYLE_PROMPTS["short"], "long": STYLE_PROMPTS["long"]})]
    else:
        styles = ["short", "long"] if cfg.style == "both" else [cfg.style]
        # None: the family's own default prompt, unless rehearsed alt-text takes it
        groups = [(s, {s: STYLE_PROMPTS[s] if replay else None}) for s in styles]
    units, offset = [], 0
    for style, prompts in groups:
        unit_train = [e for e in train if e.style in prompts]
        unit_val = [e for e in val if e.style in prompts]
        steps = cfg.epochs * steps_per_epoch(unit_train + replay, cfg.batch_size, cfg.grad_accum)
        units.append(Unit(style, prompts, unit_train, unit_val, steps, offset, list(replay)))
        offset += steps
    return units


def replay_sample(ws: Any, dataset: str, human: list[Example], n: int, seed: int) -> list[Example]:
    """``n`` alt-text examples of images outside the human set, seeded (a resumed run rehearses the
    same ones), in image order; fewer when the dataset has fewer. Only the sample's text is read."""
    human_images = {e.image.image_id for e in human}
    pool = [caption_id for caption_id, image_id in alttext_ids(ws, dataset) if image_id not in human_images]
    picked = random.Random(seed).sample(pool, min(n, len(pool)))
    return [dataclasses.replace(e, style=REPLAY_STYLE) for e in alttext_examples(ws, dataset, picked)]


def run(ctx: JobContext) -> None:
    cfg: CaptionerTrainConfig = parse_config("captioner_train", ctx.config)
    log = ctx.logger
    device = pick_device(cfg.device, log)
    dist = setup(device)
    device = torch.device(dist.device)
    precision = effective_precision(cfg.mixed_precision, device, log)
    threads = set_torch_threads(cfg.torch_threads)
    base = open_reference(ctx.ws, cfg.base, expected=CAPTIONER_ARTIFACT, field="base")
    if cfg.style == "both" and cfg.both_mode == "prompt" and not adapter_for(base.source).supports_prompt:
        raise TrainError(  # said before any data or weights are loaded
            f"{adapter_for(base.source).family} captioners take no prompt, so one model cannot learn two "
            "caption styles; use both_mode separate (one fine-tune per style)"
        )
    if cfg.replay and not adapter_for(base.source).supports_prompt:
        raise TrainError(
            f"{adapter_for(base.source).family} captioners take no prompt, so rehearsed alt-text and the "
            "human style(s) cannot be told apart; set replay 0"
        )
    styles = ["short", "long"] if cfg.style == "both" else [cfg.style]
    if cfg.captions == "alttext":  # validate() allows style short only
        examples = alttext_examples(ctx.ws, cfg.dataset)
        if not examples:
            raise TrainError(f"dataset {cfg.dataset!r} has no alttext captions to pretrain on")
    else:
        examples = approved_examples(ctx.ws, cfg.dataset, {STYLE_KIND[s]: s for s in styles})
    for style in styles:
        if cfg.captions == "human" and not any(e.style == style for e in examples):
            raise TrainError(
                f"dataset {cfg.dataset!r} has no approved {STYLE_KIND[style]} captions; "
                "annotate and approve some in the Annotate tab first"
            )
    replay: list[Example] = []
    if cfg.replay:
        replay = replay_sample(ctx.ws, cfg.dataset, examples, cfg.replay, cfg.seed)
        if not replay:
            raise TrainError(f"dataset {cfg.dataset!r} has no alttext captions outside the human set to rehearse")
    refs = list({e.image.image_id: e.image for e in [*examples, *replay]}.values())
    unreadable: dict[int, str] = {}
    for part in gather(ImageCache().readable(refs[dist.rank :: dist.world]), dist):  # each rank a share
        unreadable.update(part)
    for image_id, reason in sorted(unreadable.items()):
        log.warning("leaving out image %d of the training data: %s", image_id, reason)
        ctx.metric_once(image_id, "skipped", 1.0)
    examples = [e for e in examples if e.image.image_id not in unreadable]
    replay = [e for e in replay if e.image.image_id not in unreadable]
    units = plan_units(cfg, examples, replay)
    total_steps = sum(u.steps for u in units)
    log.info(
        "captioner_train on %s (%s captions): base %s, styles %s (%s), %d examples, %d alt-text rehearsed, "
        "device %s, precision %s, threads %d",
        cfg.dataset, cfg.captions, cfg.base, styles, cfg.both_mode if cfg.style == "both" else "single", len(examples),
        len(replay), device, precision, threads,
    )  # fmt: skip
    scorer = None
    if cfg.clip_model and dist.main:  # only rank 0 evaluates
        from training.clip import load_clip

        scorer = load_clip(cfg.clip_model, cfg.clip_pretrained or "openai", device=str(device))
    registered = {
        (a.meta or {}).get("style")
        for a in store.list_artifacts(ctx.ws, kind=CAPTIONER_ARTIFACT, run_id=ctx.run_id)
    }
    started = time.perf_counter()
    for unit in units:
        if unit.style in registered:
            log.info("%s captioner already registered by an earlier attempt; skipping", unit.style)
            continue
        result = fine_tune(ctx, cfg, base, unit, device, precision, total_steps, scorer, dist)
        if result is None:
            return  # stop requested; checkpointed
        adapter, metrics = result
        if dist.main:
            save_artifact(ctx, cfg, base, unit, adapter, metrics, precision, device)
        del adapter
    ctx.progress(
        total_steps, total_steps, f"done: {len(units)} captioner(s) in {time.perf_counter() - started:.1f} s"
    )
