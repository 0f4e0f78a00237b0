"""Time the ``t2i_train`` step against a plain diffusers-style step, and the latent cache's gain.

Three loops on the same tiny SD config, batch and resolution, each warmed up and then timed
as the median of N optimizer steps (the three loops run interleaved, step by step,
in rotating order):

* **plain** — what diffusers' ``examples/text_to_image/train_text_to_image.py`` does per step,
  written out here: tokenize, VAE encode + sample, noise, timesteps, add noise, text encoder,
  UNet, MSE, backward, clip, AdamW step.
* **ours** — the loop body of :mod:`training.jobs.t2i_train`: caption-mix draw per example,
  per-step generator, :meth:`Trainer.micro_step` (VAE encode from pixels) and
  :func:`optimizer_step`.
* **ours + cache** — the same with the latents read from a warm :class:`LatentCache`.

The config is a "somewhat bigger tiny" SD built here: a 4-level VAE (scale factor 8, as real
SD) at 128 px so the VAE's share of the step is visible, a small two-level UNet, the tiny CLIP
text encoder. Goals: ours/plain ≤ 1.05, cached speed-up ≥ 1.3. CPU only unless ``--device cuda``.

    python bench/t2i_step.py [--steps 20] [--batch 4] [--resolution 128] [--threads 1]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_bench_sd(out_dir: Path, seed: int = 0) -> Path:
    """The tiny SD of :mod:`training.tiny_sd`, with an SD-shaped 4-level VAE (scale factor 8)."""
    import torch
    from diffusers import AutoencoderKL, StableDiffusionPipeline

    from training.tiny_sd import build_tiny_sd

    build_tiny_sd(out_dir, seed=seed)
    pipe = StableDiffusionPipeline.from_pretrained(out_dir)
    torch.manual_seed(seed)
    pipe.vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(32, 64, 128, 128),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=32,
    )
    pipe.register_modules(vae=pipe.vae)
    pipe.save_pretrained(out_dir)
    return out_dir


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--model", default=None, help="an SD pipeline folder (default: the bench SD built here)"
    )
    parser.add_argument(
        "--autocast", default="no", choices=("no", "bf16"), help="bf16 autocast in every loop (GPU)"
    )
    args = parser.parse_args()

    import numpy as np
    import torch
    import torch.nn.functional as F  # noqa: N812

    from backend.caption_mix import MixUsage, parse_mix
    from training.t2i.latents import LatentCache
    from training.t2i.loop import Trainer, optimizer_step
    from training.t2i.mixdata import (
        Augment,
        Example,
        MicroBatch,
        TrainImage,
        draw_captions,
        latent_key,
        torch_generator,
    )
    from training.t2i.pipeline import load_components
    from training.t2i.text import CaptionEncoder

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    tmp = Path(tempfile.mkdtemp(prefix="t2i-bench-"))
    source = Path(args.model) if args.model else build_bench_sd(tmp / "sd")
    autocast_dtype = torch.bfloat16 if args.autocast == "bf16" else None

    def autocast() -> Any:
        if autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=autocast_dtype)

    captions = ["a red circle on a white background", "two blue squares", "a green triangle", ""]
    rng = np.random.default_rng(0)
    n_images = 8
    pixels = [torch.tensor(rng.uniform(-1, 1, (3, args.resolution, args.resolution)), dtype=torch.float32)
              for _ in range(n_images)]  # fmt: skip
    images = [TrainImage(i, f"{i:064x}", tmp / f"{i}.png", {"recap_short": captions[i % 3], "recap_long": captions[(i + 1) % 3]})
              for i in range(n_images)]  # fmt: skip
    batches = [
        [(s * args.batch + j) % n_images for j in range(args.batch)] for s in range(args.warmup + args.steps)
    ]

    def setup() -> tuple[Any, list, torch.optim.Optimizer]:
        parts = load_components(str(source))
        parts.vae.requires_grad_(False)
        parts.text_encoder.requires_grad_(False)
        parts.unet.train()
        for m in (parts.vae, parts.text_encoder, parts.unet):
            m.to(device)
        trainable = list(parts.unet.parameters())
        return parts, trainable, torch.optim.AdamW(trainable, lr=1e-4, weight_decay=1e-2)

    # ------------------------------------------------------------------ plain (diffusers' recipe)
    torch.manual_seed(0)
    plain_parts, plain_trainable, plain_optimizer = setup()

    def plain_step(i: int) -> None:
        parts, trainable, optimizer = plain_parts, plain_trainable, plain_optimizer
        idx = batches[i]
        px = torch.stack([pixels[j] for j in idx]).to(device)
        texts = [captions[j % len(captions)] for j in idx]
        ids = parts.tokenizer(texts, max_length=parts.tokenizer.model_max_length, padding="max_length",
                              truncation=True, return_tensors="pt").input_ids.to(device)  # fmt: skip
        with torch.no_grad():
            latents = parts.vae.encode(px).latent_dist.sample() * parts.vae.config.scaling_factor
        noise = torch.randn_like(latents)
        t = torch.randint(
            0, parts.noise_scheduler.config.num_train_timesteps, (latents.shape[0],), device=device
        )
        noisy = parts.noise_scheduler.add_noise(latents, noise, t)
        with autocast():
            with torch.no_grad():
                hidden = parts.text_encoder(ids, return_dict=False)[0]
            pred = parts.unet(noisy, t, hidden, return_dict=False)[0]
        loss = F.mse_loss(pred.float(), noise.float(), reduction="mean")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    # ------------------------------------------------------------------ ours (the job's loop body)
    mix = parse_mix("recap_mix", empty_prob=0.1)

    def ours(cache_of: Callable[[], LatentCache | None]) -> tuple[Callable[[int], None], Trainer]:
        torch.manual_seed(0)
        parts, trainable, optimizer = setup()
        trainer = Trainer(
            parts,
            CaptionEncoder(parts.tokenizer, parts.text_encoder),
            device,
            train_text=False,
            autocast_dtype=autocast_dtype,
        )
        usage = MixUsage()

        def step(i: int) -> None:
            cache = cache_of()
            idx = batches[i]
            augments = [Augment() for _ in idx]
            if cache is None:
                examples = [Example(j, pixels=pixels[j]) for j in idx]
            else:  # what the loader worker hands over on a warm cache
                examples = [
                    Example(j, params=cache.get(latent_key(images[j], args.resolution, Augment())))
                    for j in idx
                ]
            batch = MicroBatch(i, 0, idx, augments, examples)
            drawn = draw_captions(mix, [images[j] for j in idx], 0, i, 0, usage)
            generator = torch_generator(0, i, 0, device)
            trainer.micro_step(batch, [t for _, t in drawn], images, args.resolution, cache, generator)
            optimizer_step(optimizer, trainable, None, None)

        return step, trainer

    ours_step, trainer = ours(lambda: None)
    cache = LatentCache(tmp / "cache", "bench")
    with torch.no_grad():
        for j, image in enumerate(images):
            cache.put(
                latent_key(image, args.resolution, Augment()), trainer.encode_pixels(pixels[j][None])[0]
            )
    cached_step, _ = ours(lambda: cache)

    # interleaved rounds: a load spike on a shared machine hits all three alike
    times: dict[str, list[float]] = {"plain": [], "ours": [], "cached": []}
    loops = {"plain": plain_step, "ours": ours_step, "cached": cached_step}
    names = list(loops)
    for i in range(args.warmup + args.steps):
        for name in names[i % 3 :] + names[: i % 3]:  # rotate, so no loop always runs first
            started = time.perf_counter()
            loops[name](i)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= args.warmup:
                times[name].append(time.perf_counter() - started)
    plain_ms, ours_ms, cached_ms = (1000 * statistics.median(times[k]) for k in ("plain", "ours", "cached"))
    fastest = {k: 1000 * min(v) for k, v in times.items()}  # least disturbed by other processes

    print(f"model {source}, autocast {args.autocast}")
    print(f"device {device.type}, torch threads {torch.get_num_threads()}, batch {args.batch}, "
          f"resolution {args.resolution}, median of {args.steps} steps after {args.warmup} warm-up")  # fmt: skip
    print(f"plain diffusers-style step : {plain_ms:8.1f} ms")
    print(f"ours (t2i_train loop body) : {ours_ms:8.1f} ms")
    print(f"ours + cached latents      : {cached_ms:8.1f} ms")
    print(
        f"fastest step plain/ours/cached: {fastest['plain']:.1f} / {fastest['ours']:.1f} / {fastest['cached']:.1f} ms"
    )
    print(
        f"ratio ours/plain           : {ours_ms / plain_ms:8.3f}  (goal <= 1.05; fastest steps: "
        f"{fastest['ours'] / fastest['plain']:.3f})"
    )
    print(f"speed-up from cached latents: {ours_ms / cached_ms:7.2f}x (goal >= 1.3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
