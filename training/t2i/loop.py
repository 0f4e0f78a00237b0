"""The training step of ``t2i_train``, its checkpoints and its validation images.

The step is diffusers' ``train_text_to_image.py`` recipe: latents from the frozen VAE (or the
latent cache), Gaussian noise at a uniformly drawn timestep, the UNet predicts the noise (or
the velocity for v-prediction checkpoints such as SD 2.x 768), mean squared error. What differs:
every random number of a micro-batch comes from a generator seeded with ``(seed, step, micro)``
(see :mod:`training.t2i.mixdata`), the latent is drawn from cached distribution parameters
with that generator, and the text goes through :class:`training.t2i.text.CaptionEncoder`
(truncate or chunk). ``bench/t2i_step.py`` times exactly :meth:`Trainer.step_loss` against a
plain loop.

With several processes (:mod:`training.distributed`) each one holds a slice of the global
micro-batch: the generator still draws the whole micro-batch's latent samples, noise and
timesteps and the slice keeps its rows, and the slice's loss is weighted by its share of the
global batch, so the step is the one-process step up to float rounding. The learning modules
then run through DDP wrappers (``unet_ddp`` / ``text_ddp``); validation images use the plain
modules on rank 0 alone.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 - the usual name

from training.distributed import Dist
from training.t2i.latents import LatentCache, sample_latents
from training.t2i.mixdata import MicroBatch, TrainImage, latent_key
from training.t2i.pipeline import Components
from training.t2i.text import CaptionEncoder

MAX_GRAD_NORM = 1.0
CHECKPOINT_PREFIX = "step-"


@dataclass
class Trainer:
    """The modules and settings one training step needs."""

    parts: Components
    encoder: CaptionEncoder
    device: torch.device
    train_text: bool
    autocast_dtype: torch.dtype | None = None  # mixed precision on a GPU; None = full precision
    dist: Dist = Dist()
    unet_ddp: torch.nn.Module | None = None  # the UNet's DDP wrapper when it learns on several processes
    text_ddp: torch.nn.Module | None = None  # the text encoder's, likewise

    @property
    def ddp_modules(self) -> list[torch.nn.Module]:
        return [m for m in (self.unet_ddp, self.text_ddp) if m is not None]

    def _train_encoder(self) -> CaptionEncoder:
        """The caption encoder whose text encoder is the DDP wrapper (when there is one)."""
        if self.text_ddp is None:
            return self.encoder
        return dataclasses.replace(self.encoder, text_encoder=self.text_ddp)

    def autocast(self) -> Any:
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    # ------------------------------------------------------------------ latents

    @torch.no_grad()
    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """VAE latent-distribution parameters ``(B, 2C, h, w)`` of pixels in [-1, 1], float32."""
        vae = self.parts.vae
        dtype = next(vae.parameters()).dtype
        return vae.encode(pixels.to(self.device, dtype)).latent_dist.parameters.float()

    def batch_params(
        self, batch: MicroBatch, images: list[TrainImage], resolution: int, cache: LatentCache | None
    ) -> torch.Tensor:
        """Latent parameters of a loaded micro-batch: cached ones as read, the rest encoded now
        (and written to the cache when there is one)."""
        missing = [i for i, ex in enumerate(batch.examples) if ex.params is None]
        out: list[torch.Tensor | None] = [ex.params for ex in batch.examples]
        if missing:
            encoded = self.encode_pixels(torch.stack([batch.examples[i].pixels for i in missing]))  # type: ignore[misc]
            for j, i in enumerate(missing):
                out[i] = encoded[j]
                if cache is not None:
                    at = batch.position(i)
                    key = latent_key(images[batch.indices[at]], resolution, batch.augments[at])
                    cache.put(key, encoded[j])
        return torch.stack([p.to(self.device) for p in out])  # type: ignore[union-attr]

    # ------------------------------------------------------------------ the loss

    def step_loss(
        self,
        params: torch.Tensor,
        captions: list[str],
        generator: torch.Generator,
        total: int | None = None,
        rows: slice | None = None,
    ) -> torch.Tensor:
        """Diffusion loss (mean) of one micro-batch, or of rows ``rows`` of a micro-batch of
        ``total`` examples (this process's slice): the random numbers are drawn for all
        ``total`` rows in the one-process order and the slice keeps its own."""
        unet = self.unet_ddp if self.unet_ddp is not None else self.parts.unet
        scheduler = self.parts.noise_scheduler
        total = params.shape[0] if total is None else total
        rows = slice(0, total) if rows is None else rows
        latents = sample_latents(params, generator, float(self.parts.vae.config.scaling_factor), total, rows)
        noise = torch.randn((total, *latents.shape[1:]), generator=generator, device=self.device)[rows]
        timesteps = torch.randint(
            0,
            scheduler.config.num_train_timesteps,
            (total,),
            generator=generator,
            device=self.device,
        )[rows]
        noisy = scheduler.add_noise(latents, noise, timesteps)
        if scheduler.config.prediction_type == "v_prediction":
            target = scheduler.get_velocity(latents, noise, timesteps)
        else:
            target = noise
        with self.autocast():
            with nullcontext() if self.train_text else torch.no_grad():
                hidden = self._train_encoder().encode(captions)
            pred = unet(noisy, timesteps, hidden, return_dict=False)[0]
        return F.mse_loss(pred.float(), target.float(), reduction="mean")

    def micro_step(
        self,
        batch: MicroBatch,
        texts: list[str],
        images: list[TrainImage],
        resolution: int,
        cache: LatentCache | None,
        generator: torch.Generator,
        grad_accum: int = 1,
        scaler: Any | None = None,
    ) -> float:
        """Forward and backward of one micro-batch (gradients accumulate); returns its loss share.

        ``texts`` are the captions of this process's examples. With several processes the
        slice's mean loss is weighted by its share of the global micro-batch, and the backward
        pass multiplies that by the number of processes, which DDP's gradient averaging divides
        out again: the gradient is the mean over the global batch. The returned share summed over
        the processes is the one-process micro-batch loss.
        """
        params = self.batch_params(batch, images, resolution, cache)
        rows = slice(batch.position(0), batch.position(len(batch.examples)))
        share = self.step_loss(params, texts, generator, batch.size, rows) / grad_accum
        if len(batch.examples) != batch.size:
            share = share * (len(batch.examples) / batch.size)
        loss = share * self.dist.world if self.dist.active else share
        (scaler.scale(loss) if scaler is not None else loss).backward()
        return float(share.detach())


def optimizer_step(
    optimizer: torch.optim.Optimizer, trainable: list[torch.nn.Parameter], scaler: Any | None, ema: Any | None
) -> None:
    """Clip, step (through the fp16 gradient scaler when there is one), clear, update the EMA."""
    if scaler is not None:
        scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(trainable, MAX_GRAD_NORM)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if ema is not None:
        ema.step(trainable)


# --------------------------------------------------------------------------- checkpoints


def trainable_state(modules: dict[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    return {
        f"{prefix}.{name}": p.detach().to("cpu").clone()
        for prefix, module in modules.items()
        for name, p in module.named_parameters()
        if p.requires_grad
    }


def load_trainable(modules: dict[str, torch.nn.Module], state: dict[str, torch.Tensor]) -> None:
    params = {
        f"{prefix}.{name}": p for prefix, module in modules.items() for name, p in module.named_parameters()
    }
    missing = [n for n, p in params.items() if p.requires_grad and n not in state]
    if missing:
        raise ValueError(
            f"checkpoint lacks {len(missing)} trainable weights (e.g. {missing[0]}); was the config changed?"
        )
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)


def checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary folders of an interrupted write are ignored)."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX)]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]))


def save_checkpoint(folder: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write ``state`` as ``step-<N>/state.pt`` atomically (temp folder + rename); keep the last ``keep``."""
    final = folder / f"{CHECKPOINT_PREFIX}{step:08d}"
    tmp = folder / f".{final.name}.tmp"
    for stale in folder.glob(f".{CHECKPOINT_PREFIX}*.tmp"):  # left by a write that was killed
        shutil.rmtree(stale, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save(state, tmp / "state.pt")
    summary = {k: v for k, v in state.items() if k in ("step", "usage", "usage_by_kind", "truncated_draws")}
    (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in checkpoints(folder)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path) -> dict[str, Any]:
    return torch.load(path / "state.pt", map_location="cpu", weights_only=False)


def restore_checkpoint(
    saved: dict[str, Any],
    learn: dict[str, torch.nn.Module],
    optimizer: torch.optim.Optimizer,
    ema: Any | None,
    scaler: Any | None,
    device: torch.device,
) -> None:
    """Put a checkpoint read by :func:`load_checkpoint` back into the run's objects, on ``device``.

    Weights are copied into the parameters (which stay where they are) and the optimizer moves
    its state to each parameter's device by itself; the EMA does not: ``EMAModel.load_state_dict``
    keeps the CPU tensors ``map_location="cpu"`` gave it, and the next ``ema.step`` on a GPU fails
    on mixed devices. So the shadow is moved to the training device here, as diffusers'
    ``train_text_to_image.py`` does (``ema_unet.to(accelerator.device)`` after loading).
    """
    load_trainable(learn, saved["trainable"])
    optimizer.load_state_dict(saved["optimizer"])
    if ema is not None and saved.get("ema") is not None:
        ema.load_state_dict(saved["ema"])
        ema.to(device)
    if scaler is not None and saved.get("scaler") is not None:
        scaler.load_state_dict(saved["scaler"])


# --------------------------------------------------------------------------- validation


@torch.no_grad()
def validation_images(
    trainer: Trainer,
    prompts: list[str],
    seed: int,
    steps: int,
    guidance_scale: float,
    resolution: int,
) -> list[Any]:
    """One image per prompt, each from a generator seeded with ``seed`` (comparable across steps).

    Prompts go through the trainer's own :class:`CaptionEncoder` (the rule training and the
    generate job use too), so chunk mode is honoured and the empty (unconditional) embedding
    has the prompt's length.
    """
    from diffusers import StableDiffusionPipeline

    parts = trainer.parts
    pipe = StableDiffusionPipeline(
        vae=parts.vae,
        text_encoder=parts.text_encoder,
        tokenizer=parts.tokenizer,
        unet=parts.unet,
        scheduler=type(parts.scheduler).from_config(parts.scheduler.config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    modes = {m: m.training for m in (parts.unet, parts.text_encoder)}
    for module in modes:
        module.eval()
    images = []
    try:
        for prompt in prompts:
            cond, uncond = trainer.encoder.encode_with_uncond(prompt)
            dtype = next(parts.unet.parameters()).dtype
            with trainer.autocast():
                out = pipe(
                    prompt_embeds=cond.to(dtype),
                    negative_prompt_embeds=uncond.to(dtype),
                    height=resolution,
                    width=resolution,
                    num_inference_steps=steps,
                    guidance_scale=guidance_scale,
                    generator=torch.Generator(device=trainer.device).manual_seed(seed),
                )
            images.append(out.images[0])
    finally:
        for module, was_training in modes.items():
            module.train(was_training)
    return images
