"""``t2i_train``: fine-tune a Stable Diffusion pipeline on a dataset with a weighted caption mix.

RECAP step 4 (and the DALL-E 3 / Recap-DataComp blends): modelled on diffusers'
``examples/text_to_image/train_text_to_image.py``, with these differences:

* **Caption mix** — for every example of every step a caption kind is drawn by
  :func:`backend.caption_mix.draw` (dropout for classifier-free guidance, renormalisation
  over the mix's kinds an image has; a fallback to other kinds only when the user asks for
  one, else the empty caption). How often each kind was actually used is
  counted (:class:`~backend.caption_mix.MixUsage`), kept in every checkpoint, written as
  metrics ``usage/<kind>`` and into the artifact's meta, with the number of images that have
  none of the mix's kinds (``images_without_mix_kinds``).
* **Resolution** — ``resolution`` 0 (the default) trains and renders validation images at the
  base's own size (UNet ``sample_size`` × VAE scale factor); the log says which size and why.
* **Deterministic per step** — batch, captions, flips, crops and noise of step ``s`` come from
  generators seeded with ``(seed, s)``, so a run resumed after ``kill -9`` from its last
  checkpoint draws exactly what an uninterrupted run draws.
* **What trains** — UNet, text encoder or both (RECAP RQ4), fully or as LoRA adapters
  (merged into the saved pipeline; also saved alone under ``lora/``), each with its own
  learning rate (optionally warmed up linearly over ``lr_warmup_steps``, then constant or
  decaying on a cosine, ``lr_schedule``: :func:`training.lr_schedule.lr_factor`, shared with
  ``captioner_train``); optional EMA, gradient checkpointing, 8-bit Adam (needs bitsandbytes).
* **Long captions** — counted (``truncated_captions``) and either truncated at 77 tokens or
  encoded in 75-token chunks (see :mod:`training.t2i.text`).
* **Latent cache** — optional; VAE latents computed once per image and VAE
  (:mod:`training.t2i.latents`); the caption stays live.
* **Several processes** — ``processes`` > 1 runs this job on that many workers under
  ``accelerate launch`` (DDP; :mod:`training.distributed`): every rank draws the whole global
  micro-batch (captions, crops, noise) and trains on its slice, so usage counts and losses are
  those of one process with the same ``batch_size``; rank 0 alone writes metrics, checkpoints,
  samples and the artifact; all ranks stop after the same step.

Mixed precision runs only on a GPU (torch.autocast, with a gradient scaler for fp16), under the one
policy of :mod:`training.devices`: fp16/bf16 on the CPU is an error, ``auto`` takes it only where
there is a GPU, as in the captioner trainer. SDXL bases
are refused (two text encoders, extra conditioning): SD 1.x/2.x only.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import time
from typing import Any

import numpy as np
import torch

from backend.caption_mix import PRESETS, CaptionMix, MixUsage, has_mix_kind, parse_mix
from backend.jobs import store
from backend.jobs.configs import T2I_ARTIFACT, T2ITrainConfig, parse_config
from backend.jobs.context import JobContext
from backend.references import ResolvedModel, open_reference
from training.data import UnreadableImage, load_rgb, own_process_group, set_torch_threads
from training.devices import effective_precision, pick_device
from training.distributed import Dist, gather, no_sync, setup, shard, step_sync, wrap_ddp
from training.lr_schedule import lr_factor
from training.t2i.latents import LatentCache
from training.t2i.loop import (
    Trainer,
    checkpoints,
    load_checkpoint,
    optimizer_step,
    restore_checkpoint,
    save_checkpoint,
    trainable_state,
    validation_images,
)
from training.t2i.mixdata import (
    Augment,
    MicroBatches,
    TrainImage,
    captioner_refs,
    collate_one,
    draw_captions,
    latent_key,
    load_train_images,
    preprocess,
    torch_generator,
)
from training.t2i.pipeline import (
    TEXT_LORA_TARGETS,
    UNET_LORA_TARGETS,
    Components,
    T2IError,
    add_lora,
    load_components,
    lora_state,
    merge_lora,
    native_resolution,
    save_lora,
    save_pipeline,
    vae_identity,
)
from training.t2i.text import CaptionEncoder

PRESET_LABELS = {
    "recap_mix": "RECAP Mix",
    "alttext": "alt-text only",
    "dalle3": "DALL-E 3 mix",
    "recap_datacomp": "Recap-DataComp",
}


# --------------------------------------------------------------------------- set-up helpers


def caption_condition(mix: CaptionMix) -> str:
    """A short label of the caption condition for tables and the arena (e.g. "RECAP Mix").

    A fallback the user asked for is part of the label ("alt-text only + fallback recap_long"):
    such a run also trained on kinds outside the mix's weights, and its label must say so.
    """
    name = (mix.name or "").strip()
    head, _, params = name.partition(":")
    if head in PRESETS and head in PRESET_LABELS:
        label = PRESET_LABELS[head] + (f" ({params})" if params else "")
    else:
        label = "custom: " + ",".join(f"{k}={w:.2g}" for k, w in mix.weights.items())
    return label + (f" + fallback {','.join(mix.fallback)}" if mix.fallback else "")


def bitsandbytes() -> Any:
    """The bitsandbytes module for 8-bit Adam, or a clear error saying how to get it."""
    try:
        import bitsandbytes as bnb  # type: ignore[import-not-found]
    except ImportError:
        raise T2IError(
            "use_8bit_adam needs the bitsandbytes package, which is not installed here: "
            "pip install bitsandbytes (CUDA GPU only), or set use_8bit_adam to false"
        ) from None
    return bnb


def make_optimizer(groups: list[dict[str, Any]], use_8bit: bool) -> torch.optim.Optimizer:
    """AdamW with diffusers' defaults, or bitsandbytes' 8-bit AdamW when asked for."""
    adamw = bitsandbytes().optim.AdamW8bit if use_8bit else torch.optim.AdamW
    return adamw(groups, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)


def check_config(cfg: T2ITrainConfig) -> None:
    """Combinations the schema cannot see, refused before any weights load."""
    if cfg.cache_latents and not cfg.center_crop:
        raise T2IError(
            "cache_latents needs center_crop true: a random crop changes the latents every step, "
            "so they cannot be cached; turn one of them off"
        )
    if cfg.use_8bit_adam:
        bitsandbytes()


def prepare_modules(cfg: T2ITrainConfig, parts: Components, log: Any) -> dict[str, torch.nn.Module]:
    """Freeze what does not learn, add LoRA adapters, gradient checkpointing; returns the
    modules that learn (prefix -> module)."""
    parts.vae.requires_grad_(False)
    parts.unet.requires_grad_(False)
    parts.text_encoder.requires_grad_(False)
    learn: dict[str, torch.nn.Module] = {}
    if cfg.train in ("unet", "both"):
        learn["unet"] = parts.unet
    if cfg.train in ("text_encoder", "both"):
        learn["text_encoder"] = parts.text_encoder
    for prefix, module in learn.items():
        if cfg.lora:
            add_lora(module, UNET_LORA_TARGETS if prefix == "unet" else TEXT_LORA_TARGETS, cfg.lora_rank)
        else:
            module.requires_grad_(True)
        module.train()
    if cfg.gradient_checkpointing:
        parts.unet.enable_gradient_checkpointing()
        if "text_encoder" in learn:
            text = parts.text_encoder
            (getattr(text, "activation_checkpointing_enable", None) or text.gradient_checkpointing_enable)()
    n_train = sum(p.numel() for m in learn.values() for p in m.parameters() if p.requires_grad)
    log.info(
        "training %s (%s): %d trainable parameters", "+".join(learn), "LoRA" if cfg.lora else "full", n_train
    )
    return learn


def place(module: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> None:
    """Move to ``device``; cast only frozen modules under mixed precision (diffusers' recipe:
    what learns stays float32, what is frozen is stored in half precision)."""
    module.to(device)
    if dtype != torch.float32:
        module.to(dtype)


def scan_images(
    images: list[TrainImage],
    cfg: T2ITrainConfig,
    trainer: Trainer,
    cache: LatentCache | None,
    log: Any,
    dist: Dist | None = None,
) -> tuple[list[TrainImage], dict[int, str]]:
    """Decode every image once (precomputing its latents when caching) and drop unreadable ones.

    With a warm cache nothing is decoded: an image whose cached latents are all there is readable.
    With several processes each scans every N-th image and the unreadable ones are gathered, so
    all ranks train on the same list (in the dataset's order).
    """
    dist = dist or Dist()
    _, bad = _scan(images[dist.rank :: dist.world], cfg, trainer, cache, log)
    for other in gather(bad, dist):
        bad.update(other)
    return [im for im in images if im.image_id not in bad], bad


def _scan(
    images: list[TrainImage], cfg: T2ITrainConfig, trainer: Trainer, cache: LatentCache | None, log: Any
) -> tuple[list[TrainImage], dict[int, str]]:
    flips = (False, True) if cfg.random_flip else (False,)
    good, bad = [], {}
    pending: list[tuple[TrainImage, Augment, torch.Tensor]] = []

    def flush() -> None:
        if pending and cache is not None:
            params = trainer.encode_pixels(torch.stack([p for _, _, p in pending]))
            for (image, augment, _), value in zip(pending, params, strict=True):
                cache.put(latent_key(image, cfg.resolution, augment), value)
        pending.clear()

    for image in images:
        augments = [Augment(flip) for flip in flips]
        if cache is not None and all(cache.has(latent_key(image, cfg.resolution, a)) for a in augments):
            good.append(image)
            continue
        try:
            decoded = load_rgb(image.path)
        except (UnreadableImage, FileNotFoundError) as exc:
            bad[image.image_id] = str(exc)
            log.warning("leaving out image %d: %s", image.image_id, exc)
            continue
        good.append(image)
        if cache is not None:
            pending += [(image, a, preprocess(decoded, cfg.resolution, a)) for a in augments]
            if len(pending) >= cfg.batch_size:
                flush()
    flush()
    return good, bad


def long_caption_counts(images: list[TrainImage], kinds: set[str], encoder: CaptionEncoder) -> dict[str, Any]:
    """How many distinct captions the mix may draw are longer than the text encoder's context,
    and how many of them lose tokens under the chosen policy."""
    texts = {im.captions[k] for im in images for k in kinds if k in im.captions}
    long = {t for t in texts if encoder.is_long(t)}
    lost = {t for t in long if encoder.loses_tokens(t)}
    return {"captions": len(texts), "long": len(long), "lost": lost}


# --------------------------------------------------------------------------- the job


@dataclasses.dataclass
class State:
    """What a checkpoint restores besides weights: position and the counts of the run."""

    step: int = 0
    usage: MixUsage = dataclasses.field(default_factory=MixUsage)
    truncated_draws: int = 0


def run(ctx: JobContext) -> None:
    cfg: T2ITrainConfig = parse_config("t2i_train", ctx.config)
    log = ctx.logger
    check_config(cfg)
    mix = parse_mix(cfg.mix, empty_prob=cfg.empty_prob, fallback=cfg.fallback)
    device = pick_device(cfg.device, log)
    dist = setup(device)
    device = torch.device(dist.device)
    precision = effective_precision(cfg.mixed_precision, device, log)
    # Loader workers get a CPU core each for decoding images. With cached latents they decode
    # nothing (scan_images fills the cache first, in this process) and only read small files, so
    # torch keeps every core: 2 workers on 2 cores left it 1 thread, 1.71 against 2.94 steps/s
    # (bench/t2i_loader_threads.py). Several processes share the cores, so they keep the reserve.
    cached_on_one_cpu = device.type == "cpu" and cfg.cache_latents and not dist.active
    workers_decode = device.type == "cpu" and not cached_on_one_cpu
    threads = set_torch_threads(cfg.torch_threads, reserved=cfg.num_workers if workers_decode else 0)
    if dist.active:
        mine = shard(cfg.batch_size, dist)
        log.info(
            "rank %d of %d on %s: examples %d-%d of each global micro-batch of %d",
            dist.rank, dist.world, device, mine.start, mine.stop - 1, cfg.batch_size,
        )  # fmt: skip
    if store.list_artifacts(ctx.ws, kind=T2I_ARTIFACT, run_id=ctx.run_id):
        log.info(
            "the pipeline of this run is already registered (an earlier attempt finished); nothing to do"
        )
        ctx.progress(cfg.steps, cfg.steps, "done")
        return
    base = open_reference(ctx.ws, cfg.base, expected=T2I_ARTIFACT, field="base")
    images = load_train_images(ctx.ws, cfg.dataset)
    if not images:
        raise T2IError(f"dataset {cfg.dataset!r} has no images; import some first")
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)  # LoRA initialisation

    parts = load_components(base.source)
    if cfg.resolution:
        resolution_source = "set in the run's config"
    else:
        resolution, resolution_source = native_resolution(parts.unet, parts.vae)
        cfg = dataclasses.replace(cfg, resolution=resolution)  # training and validation images
    log.info("resolution %d px (%s)", cfg.resolution, resolution_source)
    learn = prepare_modules(cfg, parts, log)
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)
    place(parts.vae, device, weight_dtype)
    place(parts.unet, device, torch.float32 if "unet" in learn else weight_dtype)
    place(parts.text_encoder, device, torch.float32 if "text_encoder" in learn else weight_dtype)
    encoder = CaptionEncoder(parts.tokenizer, parts.text_encoder, cfg.long_captions, cfg.max_chunks)
    trainer = Trainer(
        parts, encoder, device, "text_encoder" in learn, None if precision == "no" else weight_dtype, dist,
        unet_ddp=wrap_ddp(parts.unet, dist) if "unet" in learn and dist.active else None,
        text_ddp=wrap_ddp(parts.text_encoder, dist) if "text_encoder" in learn and dist.active else None,
    )  # fmt: skip

    cache = None
    if cfg.cache_latents:
        vae_id = vae_identity(parts.vae)
        cache = LatentCache.for_workspace(ctx.ws, vae_id)
        log.info("latent cache %s", cache.folder)
    ctx.progress(0, cfg.steps, "reading images" + (" and caching latents" if cache else ""))
    images, unreadable = scan_images(images, cfg, trainer, cache, log, dist)
    if cached_on_one_cpu and cfg.num_workers and cfg.torch_threads == 0:
        log.info("latents cached: the loader workers decode nothing, so torch takes all %d cores", threads)
    if not images:
        raise T2IError(f"none of the {len(unreadable)} images of dataset {cfg.dataset!r} can be read")
    ctx.metric_once(0, "unreadable_images", len(unreadable))
    drawable = set(mix.kinds) | set(mix.fallback)
    counts = long_caption_counts(images, drawable, encoder)
    counts["without_mix_kinds"] = sum(1 for im in images if not has_mix_kind(mix, im.captions))
    ctx.metric_once(0, "images_without_mix_kinds", counts["without_mix_kinds"])
    if counts["without_mix_kinds"]:
        log.warning(
            "%d of %d images have none of the mix's kinds (%s): they train with %s",
            counts["without_mix_kinds"], len(images), ", ".join(mix.kinds),
            f"the first of fallback {list(mix.fallback)} they have, else the empty caption" if mix.fallback
            else "the empty caption (usage label empty:missing); set fallback to use other kinds instead",
        )  # fmt: skip
    ctx.metric_once(0, "truncated_captions", len(counts["lost"]))
    ctx.metric_once(0, "long_captions", counts["long"])
    log.info(
        "t2i_train on %s: %d images (%d unreadable), base %s, mix %s, train %s%s, device %s, precision %s, "
        "threads %d; %d of %d drawable captions exceed %d tokens, %d lose tokens (%s)",
        cfg.dataset, len(images), len(unreadable), base.label, mix.as_dict(), cfg.train, " LoRA" if cfg.lora else "",
        device, precision, threads, counts["long"], counts["captions"], encoder.max_length, len(counts["lost"]),
        cfg.long_captions,
    )  # fmt: skip

    trainable = [p for m in learn.values() for p in m.parameters() if p.requires_grad]
    lrs = {"unet": cfg.lr_unet, "text_encoder": cfg.lr_text_encoder}
    groups = [
        {"params": [p for p in m.parameters() if p.requires_grad], "lr": lrs[prefix], "name": prefix}
        for prefix, m in learn.items()
    ]
    log.info(
        "learning rates %s, %d warm-up steps, then %s",
        {k: lrs[k] for k in learn},
        cfg.lr_warmup_steps,
        cfg.lr_schedule,
    )
    optimizer = make_optimizer(groups, cfg.use_8bit_adam)
    ema = None
    if cfg.ema:
        from diffusers.training_utils import EMAModel

        ema = EMAModel(trainable, decay=cfg.ema_decay)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None

    state = State()
    found = checkpoints(ctx.checkpoint_dir)
    if found:
        saved = load_checkpoint(found[-1])
        restore_checkpoint(saved, learn, optimizer, ema, scaler, device)
        state = State(int(saved["step"]), MixUsage.from_dict(saved["usage"]), int(saved["truncated_draws"]))
        log.info(
            "resuming from %s (step %d, usage so far %s)", found[-1].name, state.step, state.usage.as_dict()
        )

    def checkpoint() -> None:
        if not dist.main:  # one writer: every rank holds the same state after a step
            return
        save_checkpoint(
            ctx.checkpoint_dir,
            state.step,
            {
                "step": state.step,
                "trainable": trainable_state(learn),
                "optimizer": optimizer.state_dict(),
                "ema": ema.state_dict() if ema is not None else None,
                "scaler": scaler.state_dict() if scaler is not None else None,
                "usage": state.usage.as_dict(),
                "usage_by_kind": state.usage.by_kind(),
                "truncated_draws": state.truncated_draws,
            },
            cfg.keep_checkpoints,
        )

    def validate(step: int) -> None:
        if (
            not dist.main
            or not cfg.validation_prompts
            or (ctx.run_dir / "samples" / f"step_{step}.json").exists()
        ):
            return
        if ema is not None:
            ema.store(trainable)
            ema.copy_to(trainable)
        try:
            write_samples(ctx, cfg, trainer, step)
        finally:
            if ema is not None:
                ema.restore(trainable)

    dataset = MicroBatches(
        images, batch_size=cfg.batch_size, grad_accum=cfg.grad_accum, seed=cfg.seed, resolution=cfg.resolution,
        random_flip=cfg.random_flip, center_crop=cfg.center_crop, cache=cache, dist=dist,
    )  # fmt: skip
    first_item = state.step * cfg.grad_accum
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=1,
        sampler=range(first_item, cfg.steps * cfg.grad_accum),
        num_workers=cfg.num_workers,
        collate_fn=collate_one,
        worker_init_fn=own_process_group,  # a cancel's SIGTERM to the group must not kill them
        **({"prefetch_factor": 2, "persistent_workers": False} if cfg.num_workers else {}),
    )
    lost = counts["lost"]
    cache_reads = 0
    started = time.perf_counter()
    group_loss = 0.0
    for batch in loader:
        if batch.micro == 0:
            group_loss = 0.0
        batch_images = [images[i] for i in batch.indices]  # the global micro-batch, on every rank
        drawn = draw_captions(mix, batch_images, cfg.seed, batch.step, batch.micro, state.usage)
        texts = [text for _, text in drawn]
        state.truncated_draws += sum(1 for t in texts if t in lost)
        cache_reads += sum(1 for example in batch.examples if example.params is not None)
        generator = torch_generator(cfg.seed, batch.step, batch.micro, device)
        last_micro = batch.micro == cfg.grad_accum - 1
        with no_sync(trainer.ddp_modules, skip=not last_micro):  # DDP reduces once per optimizer step
            group_loss += trainer.micro_step(
                batch, texts[batch.shard], images, cfg.resolution, cache, generator, cfg.grad_accum, scaler
            )
        if not last_micro:
            continue
        # one collective: the global loss, and a stop every rank obeys after this same step
        group_loss, stop = step_sync(group_loss, ctx.stop_requested, dist)
        # from the step alone: a resumed run continues the warm-up and the decay where they were
        factor = lr_factor(batch.step, cfg.steps, cfg.lr_schedule, cfg.lr_warmup_steps)
        for group in optimizer.param_groups:
            group["lr"] = lrs[group["name"]] * factor
        optimizer_step(optimizer, trainable, scaler, ema)
        state.step = batch.step + 1
        ctx.metric_once(state.step, "train_loss", group_loss)
        ctx.metric_once(state.step, "lr", optimizer.param_groups[0]["lr"])
        ctx.progress(state.step, cfg.steps, f"step {state.step}/{cfg.steps}, loss {group_loss:.4f}")
        if state.step % cfg.checkpoint_every == 0 or state.step == cfg.steps:
            checkpoint()
        if state.step % cfg.validation_every == 0 and state.step < cfg.steps:
            validate(state.step)
        if stop if dist.active else ctx.stop_requested:
            ctx.request_stop()  # a stop another rank received is this rank's too
            if state.step % cfg.checkpoint_every:
                checkpoint()
            log.info("stop requested: checkpointed at step %d", state.step)
            return
    if state.step < cfg.steps:  # the loader ended early: only a stop can do that
        raise T2IError(f"training ended at step {state.step} of {cfg.steps}")
    if cache is not None:
        log.info("latent cache: %d reads, %d writes this attempt", cache_reads, cache.writes)
    log.info("trained to step %d in %.1f s this attempt", state.step, time.perf_counter() - started)

    if ema is not None:
        ema.copy_to(trainable)
    validate(cfg.steps)
    if dist.main:
        finish(ctx, cfg, base, mix, parts, learn, state, images, counts)


def write_samples(ctx: JobContext, cfg: T2ITrainConfig, trainer: Trainer, step: int) -> None:
    """Validation PNGs under ``images/run-samples/<run>/`` and ``samples/step_<N>.json`` listing them."""
    pictures = validation_images(
        trainer, list(cfg.validation_prompts), cfg.validation_seed, cfg.validation_inference_steps,
        cfg.guidance_scale, cfg.resolution,
    )  # fmt: skip
    folder = ctx.ws.images_dir / "run-samples" / str(ctx.run_id)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (prompt, picture) in enumerate(zip(cfg.validation_prompts, pictures, strict=True)):
        path = folder / f"step_{step}_{i}.png"
        tmp = path.with_name(f".{path.name}.tmp")
        picture.save(tmp, format="PNG")
        os.replace(tmp, path)
        rel = path.resolve().relative_to(ctx.ws.home.resolve()).as_posix()
        seed = cfg.validation_seed
        rows.append(
            {"image_path": rel, "prompt": prompt, "seed": seed, "human": prompt, "generated": f"seed {seed}"}
        )
    out = ctx.run_dir / "samples" / f"step_{step}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    ctx.logger.info("validation images of step %d: %s", step, folder)


def finish(
    ctx: JobContext,
    cfg: T2ITrainConfig,
    base: ResolvedModel,
    mix: CaptionMix,
    parts: Components,
    learn: dict[str, torch.nn.Module],
    state: State,
    images: list[TrainImage],
    counts: dict[str, Any],
) -> None:
    """Save the pipeline (LoRA merged; adapters also alone), register the artifact, write usage metrics."""
    if cfg.lora:
        layers = {prefix: lora_state(module) for prefix, module in learn.items()}
        save_lora(layers.get("unet"), layers.get("text_encoder"), ctx.run_dir / "lora")
        for module in learn.values():
            merge_lora(module)
    frozen_in_half = [
        name
        for name in ("unet", "text_encoder", "vae")
        if name not in learn and next(getattr(parts, name).parameters()).dtype != torch.float32
    ]
    if frozen_in_half:
        # frozen parts ran in fp16/bf16: save the base's own float32 weights for them, not a lossy
        # round trip, so base-vs-trained comparisons differ only by what was trained
        fresh = load_components(base.source)
        for name in frozen_in_half:
            setattr(parts, name, getattr(fresh, name))
    for module in (parts.unet, parts.text_encoder, parts.vae):
        module.to("cpu")
        if next(module.parameters()).dtype != torch.float32:
            module.to(torch.float32)
    path = save_pipeline(parts, ctx.run_dir / "pipeline")
    usage = state.usage
    by_kind = usage.by_kind()
    for kind, n in by_kind.items():
        ctx.metric_once(cfg.steps, f"usage/{kind}", n)
    ctx.metric_once(cfg.steps, "truncated_draws", state.truncated_draws)
    used_kinds = [k for k in by_kind if k != "empty"]
    meta = {
        "base": base.label,
        "base_artifact_id": base.artifact_id,
        "dataset": cfg.dataset,
        "train": cfg.train,
        "lora": cfg.lora,
        "lora_path": (ctx.run_dir / "lora").relative_to(ctx.ws.home).as_posix() if cfg.lora else None,
        "steps": cfg.steps,
        "mix": mix.as_dict(),
        "usage": by_kind,
        "usage_labels": usage.as_dict(),
        "captioners": captioner_refs(ctx.ws, images, used_kinds),
        "caption_condition": caption_condition(mix),
        "truncated_captions": len(counts["lost"]),
        "long_captions": counts["long"],
        "long_caption_mode": cfg.long_captions,
        "truncated_draws": state.truncated_draws,
        "training_images": len(images),
        "images_without_mix_kinds": counts["without_mix_kinds"],
        "resolution": cfg.resolution,
        "config": dataclasses.asdict(cfg),
    }
    artifact = ctx.artifact(T2I_ARTIFACT, f"t2i-run-{ctx.run_id}", path, meta)
    ctx.logger.info(
        "registered t2i artifact %s (id %s) at %s; usage %s", artifact.name, artifact.id, path, by_kind
    )
    ctx.progress(cfg.steps, cfg.steps, f"done: usage {by_kind}")
