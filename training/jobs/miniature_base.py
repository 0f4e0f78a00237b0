"""``miniature_base``: the miniature world's base models, as artifacts later runs start from.

1. **VAE** — trained on the dataset's stored images as a plain autoencoder
   (:func:`training.miniature_sd.train_vae`): 32 px → 8 × 8 × 4 latents, so every T2I arm trains
   a small UNet on latents that mean something. It stops at ``vae_steps`` or once the oracle
   reads :data:`FIDELITY_TARGET` of 100 held-out reconstructions exactly. Its scaling factor is
   set to 1 / std of the corpus latents, as SD's convention asks.
2. **SD pipeline** — that VAE with a CLIP text encoder (untrained, or with ``text_steps``
   pre-trained CLIP-style on world texts: :mod:`training.miniature_text`), an untrained UNet
   (v-prediction, cosine betas) and a CLIP tokenizer learned on the world's words, saved as an ordinary
   ``StableDiffusionPipeline`` folder: artifact ``t2i`` named ``<dataset>-sd-base``.
3. **Captioner** — an untrained BLIP with the world's vocabulary
   (:func:`training.miniature_captioner.build_world_captioner`): artifact ``captioner`` named
   ``<dataset>-captioner-base``; ``captioner_train --captions alttext`` pre-trains it.

Resumable: the VAE's whole training state is saved every :data:`SAVE_EVERY` steps, so a run
killed with ``kill -9`` continues from there; an artifact already registered by this run is not
built again.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sqlmodel import col, select

from backend.datasets import get_dataset
from backend.db import read_session
from backend.jobs import store
from backend.jobs.configs import MiniatureBaseConfig, parse_config
from backend.jobs.context import JobContext
from backend.miniature.corpus import held_out_scenes
from backend.miniature.world import Scene
from backend.models import Image
from backend.references import ArtifactKind
from backend.storage import image_path
from training import miniature_sd as msd
from training.data import load_rgb, set_torch_threads

SAVE_EVERY = 50  # VAE steps between checkpoints (and stop checks)
FIDELITY_TARGET = 0.95  # share of held-out reconstructions the oracle must read exactly to stop early
FIDELITY_EVERY = 100  # VAE steps between fidelity checks
FIDELITY_SCENES = 100
TOKENIZER_SCENES = 2000  # scenes whose captions of every style teach the tokenizer its words


@dataclass(frozen=True)
class Sizes:
    vae: msd.VAEConfig
    text: msd.TextConfig
    unet: msd.UNetConfig


#: model sizes per preset; ``cpu`` is the probe's measured configuration (docs/miniature.md)
SIZES: dict[str, Sizes] = {
    "smoke": Sizes(
        msd.VAEConfig(block_out_channels=(8, 16, 16), norm_num_groups=8),
        msd.TextConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64),
        msd.UNetConfig(block_out_channels=(32, 32), attention_heads=2, norm_num_groups=16, cross_attention_dim=32),
    ),
    "cpu": Sizes(msd.VAEConfig(block_out_channels=(16, 32, 64)), msd.TextConfig(), msd.UNetConfig()),
    "gpu": Sizes(
        msd.VAEConfig(block_out_channels=(32, 64, 64)),
        msd.TextConfig(hidden_size=128, num_hidden_layers=4, intermediate_size=256),
        msd.UNetConfig(block_out_channels=(128, 256), attention_heads=8, cross_attention_dim=128),
    ),
}


def corpus(ws: Any, dataset: str) -> tuple[list[Scene], torch.Tensor]:
    """The dataset's scenes (from ``Image.meta``) and stored pixels, N x 3 x 32 x 32 in [-1, 1]."""
    with read_session(ws) as s:
        ds = get_dataset(s, dataset)
        rows = s.exec(select(Image).where(Image.dataset_id == ds.id).order_by(col(Image.id))).all()
        images = [(Scene.from_meta(im.meta), image_path(ws, im.sha256, im.ext)) for im in rows if (im.meta or {}).get("objects")]
    if not images:
        raise ValueError(f"dataset {dataset!r} has no miniature-world images (run miniature_world first)")
    pixels = torch.stack([
        torch.from_numpy(np.asarray(load_rgb(path), dtype=np.uint8).copy()).permute(2, 0, 1)
        for _, path in images
    ]).float().div(127.5).sub(1.0)  # fmt: skip
    if pixels.shape[-1] != msd.IMAGE_SIZE or pixels.shape[-2] != msd.IMAGE_SIZE:
        raise ValueError(f"miniature images must be {msd.IMAGE_SIZE} px, got {tuple(pixels.shape[-2:])}")
    return [scene for scene, _ in images], pixels


def save_atomic(state: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def pretrain_text(ctx: JobContext, cfg: MiniatureBaseConfig, text_encoder: Any, tokenizer: Any) -> dict[str, Any]:
    """The text encoder's CLIP-style pre-training (:mod:`training.miniature_text`), as the stand-in
    for the web pre-training SD's CLIP had before RECAP fine-tuned it. A few minutes on a CPU, so a
    killed run does it again from the start rather than checkpointing it."""
    from backend.miniature.corpus import HELD_OUT_FRACTION
    from training.miniature_text import TextPretrainConfig, pretrain_text_encoder

    def progress(step: int, loss: float) -> bool:
        ctx.progress(step, cfg.text_steps, f"text encoder pre-training step {step}/{cfg.text_steps}")
        ctx.metric_once(step, "text_pretrain_loss", loss)
        return ctx.stop_requested

    pre = TextPretrainConfig(steps=cfg.text_steps, seed=cfg.seed)
    return pretrain_text_encoder(text_encoder, tokenizer, pre, cfg.seed, HELD_OUT_FRACTION, log=ctx.logger.info, progress=progress)


def run(ctx: JobContext) -> None:
    cfg: MiniatureBaseConfig = parse_config("miniature_base", ctx.config)
    log = ctx.logger
    set_torch_threads(cfg.torch_threads)
    sizes = SIZES[cfg.size]
    registered = {a.kind for a in store.list_artifacts(ctx.ws, run_id=ctx.run_id)}
    if {ArtifactKind.t2i.value, ArtifactKind.captioner.value} <= registered:
        log.info("both base models are already registered by this run; nothing to do")
        ctx.progress(cfg.vae_steps, cfg.vae_steps, "done")
        return
    scenes, pixels = corpus(ctx.ws, cfg.dataset)
    log.info("miniature_base on %s: %d images, sizes %s", cfg.dataset, len(scenes), cfg.size)
    out = ctx.run_dir
    pipeline_dir = out / "pipeline"
    if ArtifactKind.t2i.value not in registered:
        torch.manual_seed(cfg.seed)
        vae = msd.build_vae(sizes.vae)
        state_path = ctx.checkpoint_dir / "vae.pt"
        resume = torch.load(state_path, weights_only=False) if state_path.exists() else None
        if resume is not None:
            log.info("resuming the VAE from step %d", resume["step"])
        from training.detectors import load_detector

        detector = load_detector("oracle:miniature")
        probe = held_out_scenes(FIDELITY_SCENES, cfg.seed + 2)
        fidelity: list[tuple[int, float]] = []
        stopped = False

        def check(step: int) -> bool:
            nonlocal stopped
            ctx.progress(step, cfg.vae_steps, f"VAE step {step}/{cfg.vae_steps}")
            if ctx.stop_requested:
                stopped = True
                return True
            if step % FIDELITY_EVERY and step != cfg.vae_steps:
                return False
            share = msd.reconstruction_fidelity(vae, probe, detector)
            fidelity.append((step, share))
            ctx.metric_once(step, "vae_fidelity", share)
            log.info("VAE step %d: the oracle reads %.2f of %d reconstructions exactly", step, share, len(probe))
            return share >= FIDELITY_TARGET

        def save(state: dict[str, Any]) -> None:
            save_atomic(state, state_path)
            ctx.metric_once(int(state["step"]), "vae_loss", float(state["loss"]))

        started = time.perf_counter()
        stats = msd.train_vae(
            vae, pixels, msd.VAETrainConfig(steps=cfg.vae_steps, batch_size=cfg.vae_batch_size, seed=cfg.seed),
            log=log.info, every=SAVE_EVERY, check=check, resume=resume, save=save,
        )  # fmt: skip
        if stopped:
            log.info("stop requested: the VAE is checkpointed at step %d", stats["steps"])
            return
        msd.pin_posterior(vae)
        scale = msd.set_scaling_factor(vae, msd.encode_latents(vae, pixels))
        ctx.progress(cfg.vae_steps, cfg.vae_steps, "building the pipeline")
        tokenizer = msd.build_world_tokenizer(
            msd.caption_words(msd.world_caption_texts(scenes[:TOKENIZER_SCENES], cfg.seed)), sizes.text.max_length
        )
        torch.manual_seed(cfg.seed)
        text_encoder = msd.build_text_encoder(tokenizer, sizes.text)
        unet = msd.build_unet(sizes.unet)
        text_stats = pretrain_text(ctx, cfg, text_encoder, tokenizer) if cfg.text_steps else None
        if text_stats is not None and text_stats["steps"] < cfg.text_steps:
            log.info("stop requested during the text encoder's pre-training; it starts again on resume")
            return
        msd.save_pipeline(pipeline_dir, vae, text_encoder, tokenizer, unet)
        final_fidelity = msd.reconstruction_fidelity(vae, probe, detector)
        meta = {
            "dataset": cfg.dataset, "size": cfg.size, "seed": cfg.seed, "world": "miniature",
            "vae_steps": int(stats["steps"]), "vae_seconds": time.perf_counter() - started,
            "vae_loss": float(stats["loss"]), "vae_fidelity": final_fidelity, "vae_fidelity_curve": fidelity,
            "scaling_factor": scale, "tokenizer_vocabulary": len(tokenizer),
            "parameters": {"vae": msd.n_params(vae), "text_encoder": msd.n_params(text_encoder),
                           "unet": msd.n_params(unet)},
            "configs": msd.config_dict(sizes.vae, sizes.text, sizes.unet),
            "caption_condition": "untrained (base)",
            "text_encoder": "untrained" if text_stats is None else "pre-trained CLIP-style on world texts",
            "text_pretraining": text_stats,
        }  # fmt: skip
        (out / "base.json").write_text(json.dumps(meta, indent=2, default=str))
        ctx.artifact(ArtifactKind.t2i.value, f"{cfg.dataset}-sd-base", pipeline_dir, meta)
        log.info("base pipeline: VAE fidelity %.2f, scaling factor %.3f, %s", final_fidelity, scale, meta["parameters"])
    if ArtifactKind.captioner.value not in registered:
        from training.miniature_captioner import build_world_captioner

        folder = build_world_captioner(out / "captioner", size=cfg.size, seed=cfg.seed)
        ctx.artifact(
            ArtifactKind.captioner.value, f"{cfg.dataset}-captioner-base", folder,
            {"dataset": cfg.dataset, "size": cfg.size, "seed": cfg.seed, "world": "miniature", "trained": False},
        )  # fmt: skip
    ctx.progress(cfg.vae_steps, cfg.vae_steps, "done: base pipeline and captioner registered")
