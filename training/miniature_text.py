"""The miniature world's stand-in for CLIP's web pre-training of the T2I text encoder (issue 12).

Why: RECAP fine-tuned Stable Diffusion, whose CLIP text encoder had read web-scale text paired
with images before any arm trained, so every arm started from an encoder that reads a caption's
meaning whatever its wording. The miniature T2I arms trained theirs from scratch with their own
captions, and the probes after the fourth cpu run (docs/miniature.md) showed each arm then
follows only prompts worded the way it was trained: the upper bound falls to chance when asked
in the annotators' words. This module gives the miniature pipeline what SD had: before any arm
trains, the base stage pre-trains the text encoder contrastively (CLIP's symmetric InfoNCE)
against a small image tower, on freshly drawn world scenes described by every writer the world
has (its structured prompt, the annotator's short and long captions, faithful and partial
alt-text). The image tower is thrown away, as SD throws away CLIP's vision half.

What it sees: scenes drawn with their own seed from the *corpus* side of the held-out split
(never a held-out layout), not the corpus images themselves, so the text encoder knows the
world's language but none of the T2I arms' training pairs or held-out prompts. Every arm gets the
same encoder, so the arms still differ only by their captions.

It is plain torch on tensors in memory, like :func:`training.miniature_sd.train_vae`; the
``miniature_base`` job runs it and reports the retrieval accuracy per writer beside its chance.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from backend.miniature.world import Scene, held_out, sample_scene
from training import miniature_sd as msd

#: who writes the text paired with a scene; each example draws one uniformly
WRITERS: tuple[str, ...] = ("prompt", "annotator_short", "annotator_long", "alttext_faithful", "alttext_partial")


@dataclass(frozen=True)
class TextPretrainConfig:
    steps: int = 3000
    batch_size: int = 256
    lr: float = 1e-3
    warmup_steps: int = 200
    scenes: int = 20000  # the pre-training world's images, each with one text per writer (at most steps x batch)
    eval_scenes: int = 500  # held-back scenes (same side of the split) for retrieval accuracy
    embed_dim: int = 64
    seed: int = 0


def writer_texts(scene: Scene, rng: random.Random) -> list[str]:
    """One text per :data:`WRITERS` entry for ``scene``, in that order."""
    from backend.miniature.captions import SimulatedAnnotator, alttext

    annotator = SimulatedAnnotator()
    return [
        scene.structured().prompt,
        annotator.short(scene, rng).text,
        annotator.long(scene, rng).text,
        alttext(scene, "faithful", rng).text,
        alttext(scene, "partial", rng).text,
    ]


def pretraining_scenes(n: int, seed: int, split_seed: int, fraction: float) -> list[Scene]:
    """``n`` scenes from the corpus side of the world's held-out split, drawn with their own seed
    (so not the corpus's images), repeats allowed as on the web."""
    rng = random.Random(f"text-pretrain:{seed}")
    out: list[Scene] = []
    while len(out) < n:
        scene = sample_scene(rng)
        if not held_out(scene, split_seed, fraction):
            out.append(scene)
    return out


class ImageTower(torch.nn.Module):
    """A small CNN from 32 px pixels to an embedding. It flattens instead of pooling, because
    where an object sits is part of what the texts say."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 32, 4, stride=2, padding=1), torch.nn.GELU(),
            torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.GELU(),
            torch.nn.Conv2d(64, 96, 3, stride=2, padding=1), torch.nn.GELU(),
            torch.nn.Conv2d(96, 96, 3, stride=2, padding=1), torch.nn.GELU(),
            torch.nn.Flatten(), torch.nn.Linear(96 * 4 * 4, embed_dim),
        )  # fmt: skip

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net(pixels)


def multi_positive_clip_loss(text: torch.Tensor, image: torch.Tensor, same_text: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric InfoNCE, where two identical texts in a batch (a short caption fits many
    layouts) make each other's images positives too instead of false negatives."""
    logits = scale * F.normalize(text, dim=-1) @ F.normalize(image, dim=-1).T
    targets = same_text.float() / same_text.float().sum(dim=1, keepdim=True)
    text_to_image = -(targets * logits.log_softmax(dim=1)).sum(dim=1).mean()
    image_to_text = -(targets.T * logits.T.log_softmax(dim=1)).sum(dim=1).mean()
    return (text_to_image + image_to_text) / 2


def pooled(text_encoder: Any, ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """The text encoder's pooled output (the end-of-text token's state), as CLIP pools.

    The columns after the batch's longest text are cut first: CLIP's causal mask keeps every
    earlier state blind to them, so the result is the same and the step is shorter.
    """
    used = int((ids != pad_id).sum(dim=1).max()) + 1
    return text_encoder(ids[:, : min(used, ids.shape[1])]).pooler_output


@torch.no_grad()
def retrieval_accuracy(
    text_encoder: Any, text_proj: torch.nn.Module, tower: ImageTower, ids: torch.Tensor, pixels: torch.Tensor, pad_id: int
) -> list[float]:
    """Per writer (``ids`` is N x W x L), the share of texts whose own image is the nearest of all
    ``len(pixels)`` images (chance 1/N). The images are embedded once for all writers."""
    image = F.normalize(tower(pixels), dim=-1)
    own = torch.arange(len(pixels))
    scores = []
    for w in range(ids.shape[1]):
        text = F.normalize(text_proj(pooled(text_encoder, ids[:, w], pad_id)), dim=-1)
        scores.append(float(((text @ image.T).argmax(dim=1) == own).float().mean()))
    return scores


def pretrain_text_encoder(
    text_encoder: Any, tokenizer: Any, cfg: TextPretrainConfig, split_seed: int, fraction: float,
    log: Callable[[str], None] = print, progress: Callable[[int, float], bool] | None = None, every: int = 100,
) -> dict[str, Any]:  # fmt: skip
    """Train ``text_encoder`` in place against a fresh :class:`ImageTower`; return what it learned.

    ``progress(step, loss)`` is called every ``every`` steps and may return True to stop early
    (a stop request). The result holds the loss curve and, on held-back scenes, text-to-image
    retrieval accuracy per writer before and after, with chance beside it.
    """
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    # a short pre-training (the smoke preset's) draws no more scenes than its steps can use,
    # rather than rendering and tokenizing the full set for a handful of batches
    n_train = min(cfg.scenes, cfg.steps * cfg.batch_size)
    scenes = pretraining_scenes(n_train + cfg.eval_scenes, cfg.seed, split_seed, fraction)
    rng = random.Random(f"text-pretrain-writers:{cfg.seed}")
    texts = [writer_texts(scene, rng) for scene in scenes]
    ids = torch.stack([msd.tokenize(tokenizer, [t[w] for t in texts]) for w in range(len(WRITERS))], dim=1)  # N x W x L
    pixels = msd.images_tensor(scenes)
    train_ids, eval_ids = ids[:n_train], ids[n_train:]
    train_pixels, eval_pixels = pixels[:n_train], pixels[n_train:]
    hidden = text_encoder.config.hidden_size
    pad_id = int(tokenizer.pad_token_id)
    tower = ImageTower(cfg.embed_dim)
    text_proj = torch.nn.Linear(hidden, cfg.embed_dim, bias=False)
    log_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def accuracy() -> dict[str, float]:
        text_encoder.eval()
        tower.eval()
        return dict(zip(WRITERS, retrieval_accuracy(text_encoder, text_proj, tower, eval_ids, eval_pixels, pad_id), strict=True))

    before = accuracy()
    params = list(text_encoder.parameters()) + list(tower.parameters()) + list(text_proj.parameters()) + [log_scale]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.1)
    gen = torch.Generator().manual_seed(cfg.seed)
    curve: list[tuple[int, float]] = []
    avg = math.nan
    step = 0
    for step in range(1, cfg.steps + 1):
        text_encoder.train()
        tower.train()
        pick = torch.randperm(n_train, generator=gen)[: cfg.batch_size]
        writer = torch.randint(0, len(WRITERS), (len(pick),), generator=gen)
        batch_ids = train_ids[pick, writer]
        same = (batch_ids[:, None, :] == batch_ids[None, :, :]).all(dim=-1)
        scale = log_scale.clamp(max=math.log(100)).exp()
        loss = multi_positive_clip_loss(text_proj(pooled(text_encoder, batch_ids, pad_id)), tower(train_pixels[pick]), same, scale)
        warm = min(1.0, step / max(cfg.warmup_steps, 1))
        cosine = 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
        for group in opt.param_groups:
            group["lr"] = cfg.lr * warm * cosine
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        value = loss.item()
        avg = value if math.isnan(avg) else 0.95 * avg + 0.05 * value
        if step % every == 0 or step == cfg.steps:
            curve.append((step, avg))
            log(f"text pre-training step {step}/{cfg.steps}: loss {avg:.3f}")
            if progress is not None and progress(step, avg):
                break
    after = accuracy()
    text_encoder.eval()
    stats = {
        "steps": step, "seconds": time.perf_counter() - started, "loss_curve": curve,
        "retrieval": after, "retrieval_before": before, "retrieval_chance": 1 / max(cfg.eval_scenes, 1),
        "scenes": n_train, "eval_scenes": cfg.eval_scenes, "writers": list(WRITERS),
    }  # fmt: skip
    log(describe(stats))
    return stats


def describe(stats: dict[str, Any], writers: Sequence[str] = WRITERS) -> str:
    """One line for the run's log: retrieval accuracy per writer, before training, and chance."""
    after, before = stats["retrieval"], stats["retrieval_before"]
    parts = ", ".join(f"{w} {after[w]:.2f} (before {before[w]:.2f})" for w in writers)
    return f"text-to-image retrieval on {stats['eval_scenes']} held-back scenes: {parts} (chance {stats['retrieval_chance']:.3f})"
