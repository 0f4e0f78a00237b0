"""A latent Stable Diffusion pipeline built for the miniature world (issue 12), from configs only.

Why a world-specific pipeline: the earlier pixel-space attempt (2.8M UNet at 32 x 32, 1500 steps,
33 min) still drew noise, so the T2I arms need cheap steps. Here a small ``AutoencoderKL`` is
*trained first* on rendered world images (32 x 32 -> 8 x 8 x 4 latents, so latents mean something),
the corpus is encoded once (precomputed latents), and the UNet works on 8 x 8 latents with
v-prediction (the one non-epsilon target the studio's ``t2i_train`` loss also supports).

The text side is a tiny CLIP text encoder with a *world tokenizer*: a ``CLIPTokenizer`` whose
vocabulary is CLIP's 512 byte symbols plus whole-word merges for the words the world's captions
use (a few hundred tokens, not 49408), so the embedding table stays small and every world word is
one token. Any other text still tokenizes (it falls back to characters), so alt-text junk works.

Everything is saved as an ordinary ``StableDiffusionPipeline`` folder (:func:`save_pipeline`), so
``from_pretrained`` loads it and ``t2i_train`` can take it as its ``base``.

Sizes and schedules are data (:class:`VAEConfig`, :class:`TextConfig`, :class:`UNetConfig`,
:data:`SCHEDULER`), so a preset can change them without touching code.
"""

from __future__ import annotations

import dataclasses
import math
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from backend.miniature.world import CELL_CENTRES, Scene, render

IMAGE_SIZE = 32
LATENT_SIZE = 8

#: the diffusion schedule: cosine betas (near-zero terminal SNR, good for tiny images), v-prediction
#: (well-behaved at every noise level, supported by t2i_train's loss), DDIM with trailing spacing
#: so sampling starts at the last timestep.
SCHEDULER: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_schedule": "squaredcos_cap_v2",
    "prediction_type": "v_prediction",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "timestep_spacing": "trailing",
}


@dataclass(frozen=True)
class VAEConfig:
    """AutoencoderKL sizes: three encoder blocks, so 32 px -> 8 x 8 latents (scale factor 4)."""

    block_out_channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = 1
    latent_channels: int = 4
    norm_num_groups: int = 16


@dataclass(frozen=True)
class TextConfig:
    """Tiny CLIP text encoder; ``max_length`` 77 as every SD checkpoint (long captions truncate there)."""

    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    intermediate_size: int = 128
    max_length: int = 77


@dataclass(frozen=True)
class UNetConfig:
    """UNet on 8 x 8 x 4 latents, cross attention at both resolutions (placement is the task)."""

    block_out_channels: tuple[int, ...] = (64, 128)
    layers_per_block: int = 1
    attention_heads: int = 4
    norm_num_groups: int = 32
    cross_attention_dim: int = 64  # must equal TextConfig.hidden_size


# ----------------------------------------------------------------------------- tokenizer

_WORD = re.compile(r"[a-z]+|[0-9]|[^\sa-z0-9]+")


def caption_words(texts: Iterable[str]) -> Counter[str]:
    """Words as CLIP's pre-tokenizer splits lower-cased ASCII text (letter runs, digits, punctuation)."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(_WORD.findall(text.lower()))
    return counts


def learn_merges(words: Mapping[tuple[str, ...], int]) -> list[tuple[str, str]]:
    """BPE merges learned to the end on ``words`` (each a tuple of symbols, with its weight): the
    most frequent adjacent pair is merged everywhere, again and again, until every word is one
    symbol. Ties go to the smaller pair (as strings), so the same words always give the same merges.

    Why not ``tokenizers.trainers.BpeTrainer``: with an end-of-word suffix it assigns ids to the
    suffixed symbols in hash-map order, which changes from one process to the next, and ties
    between equally frequent pairs follow those ids (the cause named in huggingface/tokenizers
    PR 2066, for issue 1794). Two builds of the same world then gave some words different ids,
    and so different rows of the same randomly initialised embedding: the third and fourth cpu
    runs of issue 12 trained different T2I models from byte-identical data. The world has under
    200 words; this loop learns them in about two seconds.
    """
    seqs: dict[tuple[str, ...], int] = {}
    for symbols, weight in words.items():
        seqs[tuple(symbols)] = seqs.get(tuple(symbols), 0) + int(weight)
    merges: list[tuple[str, str]] = []
    while True:
        counts: Counter[tuple[str, str]] = Counter()
        for seq, weight in seqs.items():
            for pair in pairwise(seq):
                counts[pair] += weight
        if not counts:
            return merges
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        merges.append(best)
        merged: dict[tuple[str, ...], int] = {}
        for seq, weight in seqs.items():
            out: list[str] = []
            i = 0
            while i < len(seq):
                if i + 1 < len(seq) and (seq[i], seq[i + 1]) == best:
                    out.append(seq[i] + seq[i + 1])
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            merged[tuple(out)] = merged.get(tuple(out), 0) + weight
        seqs = merged


def build_world_tokenizer(words: Counter[str] | dict[str, int], model_max_length: int = 77) -> Any:
    """A ``CLIPTokenizer`` whose vocabulary is CLIP's 512 byte symbols plus BPE merges learned on ``words``.

    Why not the real CLIP BPE (``training.tiny_sd.build_clip_tokenizer``): its 49408-row embedding
    would be most of a 1M-parameter model and most of each optimizer step. BPE is learned to the
    end on the world's words (with their counts, capped at 50), so each of them encodes as one
    token; every merge result is in the vocabulary, so any other text still encodes (down to
    characters). The same words always give the same vocabulary (:func:`learn_merges`).
    """
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    byte_symbol = bytes_to_unicode()
    symbols = list(byte_symbol.values())

    def spelled(word: str) -> tuple[str, ...]:  # CLIP's symbols: one per UTF-8 byte, the last one ends the word
        chars = [byte_symbol[b] for b in word.encode("utf-8")]
        return (*chars[:-1], chars[-1] + "</w>")

    merges = learn_merges({spelled(w): min(int(c), 50) for w, c in sorted(words.items()) if w})
    vocab: dict[str, int] = {}
    for s in symbols + [s + "</w>" for s in symbols]:
        vocab.setdefault(s, len(vocab))
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab.setdefault(special, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


def world_caption_texts(scenes: Sequence[Scene], seed: int = 0) -> list[str]:
    """Every caption style of the world for ``scenes``: structured prompts, annotator short and
    long, alt-text of every mode. The tokenizer's words come from these."""
    from backend.miniature.captions import ALTTEXT_MODES, SimulatedAnnotator, alttext

    rng = random.Random(seed)
    annotator = SimulatedAnnotator()
    texts: list[str] = []
    for scene in scenes:
        texts += [scene.structured().prompt, annotator.short(scene, rng).text, annotator.long(scene, rng).text]
        texts += [alttext(scene, mode, rng).text for mode in ALTTEXT_MODES]
    return texts


# ----------------------------------------------------------------------------- builders


def build_vae(cfg: VAEConfig = VAEConfig()) -> Any:
    from diffusers import AutoencoderKL

    n = len(cfg.block_out_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=cfg.block_out_channels,
        layers_per_block=cfg.layers_per_block,
        latent_channels=cfg.latent_channels,
        norm_num_groups=cfg.norm_num_groups,
        sample_size=IMAGE_SIZE,
    )


def build_text_encoder(tokenizer: Any, cfg: TextConfig = TextConfig()) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=cfg.hidden_size,
            intermediate_size=cfg.intermediate_size,
            num_hidden_layers=cfg.num_hidden_layers,
            num_attention_heads=cfg.num_attention_heads,
            max_position_embeddings=tokenizer.model_max_length,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )


def build_unet(cfg: UNetConfig = UNetConfig()) -> Any:
    from diffusers import UNet2DConditionModel

    n = len(cfg.block_out_channels)
    return UNet2DConditionModel(
        sample_size=LATENT_SIZE,
        in_channels=4,
        out_channels=4,
        block_out_channels=cfg.block_out_channels,
        layers_per_block=cfg.layers_per_block,
        down_block_types=("CrossAttnDownBlock2D",) * n,
        up_block_types=("CrossAttnUpBlock2D",) * n,
        cross_attention_dim=cfg.cross_attention_dim,
        attention_head_dim=cfg.attention_heads,  # diffusers' legacy name: the number of heads
        norm_num_groups=cfg.norm_num_groups,
    )


def build_scheduler(config: dict[str, Any] | None = None) -> Any:
    from diffusers import DDIMScheduler

    return DDIMScheduler(**(config or SCHEDULER))


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def make_pipeline(vae: Any, text_encoder: Any, tokenizer: Any, unet: Any, scheduler: Any | None = None) -> Any:
    """An in-memory ``StableDiffusionPipeline`` (no safety checker) from the parts."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler or build_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_pipeline(out_dir: Path, vae: Any, text_encoder: Any, tokenizer: Any, unet: Any) -> Path:
    """Save the parts as a ``StableDiffusionPipeline`` folder (``save_pretrained`` layout)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    make_pipeline(vae, text_encoder, tokenizer, unet).save_pretrained(out_dir)
    return out_dir


# ----------------------------------------------------------------------------- images


def images_tensor(scenes: Sequence[Scene]) -> torch.Tensor:
    """Rendered scenes as a float tensor in [-1, 1], N x 3 x 32 x 32 (the VAE's input range)."""
    arr = np.stack([np.asarray(render(s), dtype=np.uint8) for s in scenes])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """[-1, 1] N x 3 x H x W -> uint8 N x H x W x 3."""
    return ((pixels.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


# ----------------------------------------------------------------------------- VAE training


@dataclass(frozen=True)
class VAETrainConfig:
    """How the VAE learns: a plain autoencoder loss (MSE) with a tiny KL so latents stay bounded."""

    steps: int = 1500
    batch_size: int = 64
    lr: float = 2e-3
    kl_weight: float = 1e-6
    sample_posterior: bool = False  # False: decode the posterior mean (a plain autoencoder; converges
    # much faster on 2 cores, and the UNet trains on the means anyway)
    seed: int = 0


def train_vae(
    vae: Any, pixels: torch.Tensor, cfg: VAETrainConfig, log: Callable[[str], None] = print, every: int = 100,
    check: Callable[[int], bool] | None = None,
    resume: dict[str, Any] | None = None,
    save: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, float]:
    """Train ``vae`` on ``pixels`` (N x 3 x 32 x 32 in [-1, 1]); returns steps done, seconds, last loss.

    ``check(step)`` runs at every log step in eval mode (e.g. the oracle fidelity of
    reconstructions); when it returns True training stops there (faithful enough: on 2 shared
    cores every VAE step is time the T2I arms do not get).
    ``save(state)`` gets the whole training state at every log step (weights, optimizer,
    schedule, sampler, step); given back as ``resume``, training continues exactly where it was.
    """
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.lr, weight_decay=0.0)
    warm = max(cfg.steps // 20, 1)  # linear warm-up, then cosine decay to 5 %

    def factor(i: int) -> float:
        return (i + 1) / warm if i < warm else 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (i - warm) / max(cfg.steps - warm, 1)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    first, loss_avg = 1, math.nan
    if resume is not None:
        vae.load_state_dict(resume["vae"])
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["schedule"])
        gen.set_state(resume["generator"])
        first, loss_avg = int(resume["step"]) + 1, float(resume["loss"])
    vae.train()
    t0 = time.perf_counter()
    step = first - 1
    for step in range(first, cfg.steps + 1):
        idx = torch.randint(0, pixels.shape[0], (cfg.batch_size,), generator=gen)
        x = pixels[idx]
        posterior = vae.encode(x).latent_dist
        z = posterior.mean
        if cfg.sample_posterior:
            z = z + posterior.std * torch.randn(posterior.mean.shape, generator=gen)
        rec = vae.decode(z).sample
        loss = F.mse_loss(rec, x) + cfg.kl_weight * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loss_avg = loss.item() if math.isnan(loss_avg) else 0.95 * loss_avg + 0.05 * loss.item()
        if step % every == 0 or step == cfg.steps:
            dt = time.perf_counter() - t0
            log(f"vae step {step}/{cfg.steps} loss {loss_avg:.5f} {(step - first + 1) / dt:.2f} steps/s")
            if save is not None:
                save({
                    "vae": vae.state_dict(), "optimizer": opt.state_dict(), "schedule": sched.state_dict(),
                    "generator": gen.get_state(), "step": step, "loss": loss_avg,
                })  # fmt: skip
            if check is not None:
                vae.eval()
                stop = check(step)
                vae.train()
                if stop:
                    break
    vae.eval()
    return {"steps": step, "seconds": time.perf_counter() - t0, "loss": loss_avg}


@torch.no_grad()
def encode_latents(vae: Any, pixels: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Posterior means (unscaled) of ``pixels``: the precomputed latents the UNet trains on."""
    return torch.cat([vae.encode(pixels[i : i + batch]).latent_dist.mean for i in range(0, len(pixels), batch)])


@torch.no_grad()
def decode_latents(vae: Any, latents: torch.Tensor, batch: int = 256) -> torch.Tensor:
    return torch.cat([vae.decode(latents[i : i + batch]).sample for i in range(0, len(latents), batch)])


# diffusers clamps the log-variance to [-30, 20]; -30 is a posterior std of about 3e-7
PINNED_LOGVAR = -30.0


@torch.no_grad()
def pin_posterior(vae: Any) -> None:
    """Make the VAE's posterior a point mass at its mean.

    Why: the VAE is trained as a plain autoencoder (it decodes the posterior *mean*, with a KL
    weight of 1e-6), so its log-variance head is never trained and stays near 0, a posterior std of
    about 1 against a latent signal of std ~0.5. ``t2i_train`` (like diffusers' scripts) samples
    ``mean + std * eps`` from the posterior, so without this the UNet would learn to denoise latents
    that are two-thirds noise and generate blobs: the first cpu run of the experiment did exactly
    that (every arm at the mismatched-prompt baseline, loss flat at 2.0 from step 160). Zeroing the
    log-variance half of ``quant_conv`` and pinning its bias makes every loader of the pipeline see
    the deterministic autoencoder it is.
    """
    conv = vae.quant_conv
    if conv is None:
        raise ValueError("this VAE has no quant_conv: its posterior cannot be pinned")
    half = conv.out_channels // 2
    conv.weight[half:].zero_()
    conv.bias[half:].fill_(PINNED_LOGVAR)


def set_scaling_factor(vae: Any, latents: torch.Tensor) -> float:
    """Set ``vae.config.scaling_factor`` to 1 / std of the latents (SD's convention: unit variance)."""
    factor = float(1.0 / latents.std())
    vae.register_to_config(scaling_factor=factor)
    return factor


def cell_of(x: float, y: float) -> tuple[int, int]:
    """The grid cell (row, column) whose centre is nearest a pixel position."""
    col = min(range(len(CELL_CENTRES)), key=lambda i: abs(CELL_CENTRES[i] - x))
    row = min(range(len(CELL_CENTRES)), key=lambda i: abs(CELL_CENTRES[i] - y))
    return row, col


def read_objects(detector: Any, image: Any) -> Counter[tuple[str, str, tuple[int, int]]]:
    """What the oracle reads in an image: (shape, colour, cell) with multiplicity."""
    return Counter((b.shape, b.color, cell_of(*b.centroid)) for b in detector.analyse(image).blobs)


def truth_objects(scene: Scene) -> Counter[tuple[str, str, tuple[int, int]]]:
    return Counter((o.shape, o.color, o.cell) for o in scene.objects)


def reconstruction_fidelity(vae: Any, scenes: Sequence[Scene], detector: Any) -> float:
    """Share of scenes whose VAE reconstruction the oracle reads exactly (every shape, colour and
    cell, nothing extra): the bar for latents that "mean something"."""
    pixels = images_tensor(scenes)
    with torch.no_grad():
        rec = to_uint8(decode_latents(vae, encode_latents(vae, pixels)))
    ok = sum(read_objects(detector, img) == truth_objects(s) for img, s in zip(rec, scenes, strict=True))
    return ok / max(len(scenes), 1)


# ----------------------------------------------------------------------------- T2I training


@dataclass(frozen=True)
class T2ITrainConfig:
    """The text encoder + UNet phase on precomputed latents (both from scratch)."""

    batch_size: int = 64
    lr: float = 1e-3
    text_lr: float = 5e-4
    warmup_steps: int = 200
    caption_dropout: float = 0.1  # empty caption, for classifier-free guidance
    ema_decay: float = 0.995
    grad_clip: float = 1.0
    seed: int = 0


class T2ITrainer:
    """Steps the UNet and text encoder on (latent, token ids) pairs; keeps an EMA of both.

    Why its own loop and not ``t2i_train``: this probe measures whether the model can learn at
    all within a CPU budget, on tensors held in memory; the loss is the same v-prediction MSE.
    """

    def __init__(
        self, unet: Any, text_encoder: Any, scheduler: Any, latents: torch.Tensor, ids: torch.Tensor,
        empty_ids: torch.Tensor, cfg: T2ITrainConfig,
    ) -> None:  # fmt: skip
        from diffusers import DDPMScheduler

        self.unet, self.text_encoder, self.cfg = unet, text_encoder, cfg
        self.noise = DDPMScheduler.from_config(scheduler.config)
        self.latents, self.ids, self.empty_ids = latents, ids, empty_ids
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.opt = torch.optim.AdamW(
            [
                {"params": list(unet.parameters()), "lr": cfg.lr},
                {"params": list(text_encoder.parameters()), "lr": cfg.text_lr},
            ],
            weight_decay=1e-2,
        )
        self.base_lrs = [cfg.lr, cfg.text_lr]
        self.ema = {k: v.detach().clone() for k, v in self._state().items()}
        self.step = 0
        self.loss_avg = math.nan

    def _state(self) -> dict[str, torch.Tensor]:
        out = {f"unet.{k}": v for k, v in self.unet.state_dict().items()}
        out.update({f"text.{k}": v for k, v in self.text_encoder.state_dict().items()})
        return out

    def train_step(self) -> float:
        cfg = self.cfg
        self.unet.train()
        self.text_encoder.train()
        idx = torch.randint(0, self.latents.shape[0], (cfg.batch_size,), generator=self.gen)
        x0 = self.latents[idx]
        ids = self.ids[idx].clone()
        drop = torch.rand(cfg.batch_size, generator=self.gen) < cfg.caption_dropout
        ids[drop] = self.empty_ids
        noise = torch.randn(x0.shape, generator=self.gen)
        t = torch.randint(0, self.noise.config.num_train_timesteps, (cfg.batch_size,), generator=self.gen)
        noisy = self.noise.add_noise(x0, noise, t)
        target = self.noise.get_velocity(x0, noise, t) if self.noise.config.prediction_type == "v_prediction" else noise
        hidden = self.text_encoder(ids)[0]
        pred = self.unet(noisy, t, hidden, return_dict=False)[0]
        loss = F.mse_loss(pred, target)
        self.step += 1
        warm = min(1.0, self.step / max(cfg.warmup_steps, 1))
        for group, base in zip(self.opt.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * warm
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(self.unet.parameters()) + list(self.text_encoder.parameters()), cfg.grad_clip)
        self.opt.step()
        self._update_ema()
        value = loss.item()
        self.loss_avg = value if math.isnan(self.loss_avg) else 0.98 * self.loss_avg + 0.02 * value
        return value

    @torch.no_grad()
    def _update_ema(self) -> None:
        decay = min(self.cfg.ema_decay, (1 + self.step) / (10 + self.step))
        for k, v in self._state().items():
            if v.dtype.is_floating_point:
                self.ema[k].mul_(decay).add_(v.detach(), alpha=1 - decay)
            else:
                self.ema[k].copy_(v)

    def ema_copies(self) -> tuple[Any, Any]:
        """Deep copies of the UNet and text encoder holding the EMA weights (for sampling)."""
        import copy

        unet, text = copy.deepcopy(self.unet), copy.deepcopy(self.text_encoder)
        unet.load_state_dict({k[5:]: v for k, v in self.ema.items() if k.startswith("unet.")})
        text.load_state_dict({k[5:]: v for k, v in self.ema.items() if k.startswith("text.")})
        return unet.eval(), text.eval()


def tokenize(tokenizer: Any, texts: Sequence[str]) -> torch.Tensor:
    """Token ids padded / truncated to ``model_max_length``, as the SD pipeline encodes prompts."""
    return tokenizer(
        list(texts), padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids


@torch.no_grad()
def generate(pipe: Any, prompts: Sequence[str], seeds: Sequence[int], *, steps: int, guidance: float,
             batch: int = 128) -> list[np.ndarray]:  # fmt: skip
    """Images (uint8 H x W x 3) for every (prompt, seed), prompt-major, through the diffusers pipeline."""
    jobs = [(p, s) for p in prompts for s in seeds]
    out: list[np.ndarray] = []
    for i in range(0, len(jobs), batch):
        chunk = jobs[i : i + batch]
        gens = [torch.Generator().manual_seed(s * 100_003 + i + j) for j, (_, s) in enumerate(chunk)]
        images = pipe(
            [p for p, _ in chunk], num_inference_steps=steps, guidance_scale=guidance, generator=gens, output_type="np"
        ).images
        out += [(np.clip(im, 0, 1) * 255).round().astype(np.uint8) for im in images]
    return out


def config_dict(*configs: Any) -> dict[str, Any]:
    """Dataclass configs as one printable dict (the probe prints its settings with every result)."""
    return {type(c).__name__: dataclasses.asdict(c) for c in configs}
