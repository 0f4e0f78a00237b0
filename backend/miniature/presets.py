"""The presets of ``experiment miniature``: every stage's settings, as data.

Why data and not code: the experiment's claim rests on *the same* steps, seed and schedule for
every T2I arm, and on settings fixed before any result was seen. Keeping each preset as one
frozen dataclass makes both visible in one place (and in the run's stored config, which names the
preset), as open_clip keeps model configs as data.

* ``smoke`` runs every stage with tiny step counts (CI, under 3 minutes): plumbing only; its table
  means nothing and nothing asserts an effect on it.
* ``cpu`` is sized for the 90-minute budget of issue 12 on 2 cores: the decisive arms only
  (Alttext, RECAP Mix and the ground-truth upper bound), each with the same number of steps. It
  fits on the faster of the machines measured (66.2, 81.8 and 82.8 min), not on the slower ones
  (101.7; 139.2 in the eighth run, the encoder trained with each arm, on the slowest machine yet).
* ``gpu`` is a larger world, every arm and more steps, for a lent GPU.

The T2I settings come from ``docs/miniature.md`` ("T2I probe (measured)"): v-prediction with
cosine betas, batch 64, UNet lr 1e-3, EMA 0.995, 10 % empty captions, evaluation with 25 DDIM
steps and guidance 5 — fixed before the first experiment ran. Before the fifth cpu run the text
encoder changed from trained-from-scratch with each arm (lr 5e-4) to pre-trained once in the base
stage and frozen in every arm (``text_steps``, ``train="unet"``): a change of the model, made
before that run, with the evaluation left as it was (docs/miniature.md, "Fifth cpu run"). A
controlled probe after the seventh run found that freezing lifts the Alttext arm alone and puts
RECAP Mix behind it (interaction +0.095 [+0.056, +0.131] SOA-I on 400 new prompts), so the
``cpu`` preset went back, before the eighth run, to the untrained encoder trained with each arm
(``text_steps=0``, ``train="both"``, lr 5e-4: docs/miniature.md, "Eighth cpu run"). ``smoke``
and ``gpu`` keep the pre-trained, frozen design: ``smoke`` so that CI goes through the text
pre-training's plumbing, ``gpu`` because it has never been run and nothing measured it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from backend.miniature.corpus import TRUTH_KIND

PRESET_NAMES = ("smoke", "cpu", "gpu")

#: arm name -> the caption mix that trains it (``t2i_train --mix``); the table's row order
ARM_MIXES: dict[str, str] = {
    "Alttext": "alttext",
    "RECAP Short": "recap_short=1",
    "RECAP Long": "recap_long=1",
    "RECAP Mix": "recap_mix",
    "Ground truth (upper bound)": f"{TRUTH_KIND}=1",
}
#: the difference the table reports: treatment - control
TREATMENT, CONTROL = "RECAP Mix", "Alttext"
#: the detector metrics of the table (t2i_eval's names); CA is lower-is-better
TABLE_METRICS = ("soa_c", "soa_i", "ca", "pa_det", "geneval")


@dataclass(frozen=True)
class CaptionerPlan:
    """The captioner stages: pre-training on alt-text, then a fine-tune per style on the human set."""

    size: str
    pretrain: dict[str, Any]  # captioner_train values (captions alttext, style short)
    finetune: dict[str, Any]  # captioner_train values (human captions, style both, separate)
    recaption: dict[str, Any]  # recaption values (batch size, token limit)


@dataclass(frozen=True)
class Preset:
    name: str
    images: int  # corpus size
    human_images: int  # ≤ 200: the human set
    prompts: int  # held-out structured prompts
    size: str  # model sizes of miniature_base (smoke | cpu | gpu)
    vae_steps: int
    text_steps: int  # CLIP-style pre-training of the T2I text encoder in miniature_base (training.miniature_text)
    captioner: CaptionerPlan
    arms: tuple[str, ...]  # keys of ARM_MIXES
    t2i: dict[str, Any]  # t2i_train values shared by every arm
    seeds: tuple[int, ...]  # generation seeds per held-out prompt
    generate: dict[str, Any] = field(default_factory=dict)  # generate values
    bootstrap_rounds: int = 1000
    grid_prompts: int = 8  # prompts shown in each arm's sample grid


def _t2i(steps: int, **extra: Any) -> dict[str, Any]:
    return {
        # by default the arms train the UNet on the pre-trained text encoder, frozen, as RECAP
        # fine-tuned SD on its CLIP (diffusers' train_text_to_image freezes it too): docs/miniature.md,
        # "Fifth cpu run"; the cpu preset overrides it with "both" (an untrained encoder)
        "train": "unet",
        "steps": steps,
        "batch_size": 64,
        "lr_unet": 1e-3,
        "lr_text_encoder": 5e-4,
        "lr_warmup_steps": min(200, max(steps // 10, 1)),
        "empty_prob": 0.1,
        "ema": True,
        "ema_decay": 0.995,
        "cache_latents": True,
        "random_flip": False,  # left and right are what the prompts ask for
        "checkpoint_every": max(min(200, steps), 1),
        "keep_checkpoints": 1,
        "validation_every": max(steps // 4, 1),
        "validation_inference_steps": 25,
        "guidance_scale": 5.0,
        **extra,
    }


_GENERATE = {"inference_steps": 25, "guidance_scale": 5.0, "batch_size": 100, "safety_checker": False}

PRESETS: dict[str, Preset] = {
    "smoke": Preset(
        name="smoke",
        images=48,
        human_images=16,
        prompts=6,
        size="smoke",
        vae_steps=4,
        text_steps=4,
        captioner=CaptionerPlan(
            size="smoke",
            pretrain={"epochs": 1, "batch_size": 16, "lr": 1e-3, "eval_every": 1000, "val_fraction": 0.1},
            finetune={"epochs": 1, "batch_size": 8, "lr": 1e-3, "eval_every": 1000, "val_fraction": 0.2},
            recaption={"batch_size": 48, "max_new_tokens": 24},
        ),
        arms=("Alttext", "RECAP Mix", "Ground truth (upper bound)"),
        t2i=_t2i(4, batch_size=8, validation_inference_steps=2),
        seeds=(0,),
        generate={**_GENERATE, "inference_steps": 2},
        bootstrap_rounds=50,
        grid_prompts=4,
    ),
    "cpu": Preset(
        name="cpu",
        # 20,000 images: the captioner's alt-text pre-training learns from more different images, not
        # more epochs of the same ones (docs/miniature.md, "Third round": 20 epochs of 20,000 beat 80
        # of 5,000 at the same number of examples seen)
        images=20000,
        human_images=200,
        prompts=100,
        size="cpu",
        vae_steps=800,
        # no text pre-training: the arms train the untrained encoder with the UNet (``train="both"``
        # below). Frozen after 800 steps of CLIP-style pre-training (fifth to seventh runs), it lifted
        # Alttext alone: docs/miniature.md, "Seventh cpu run and the controlled encoder probe"
        text_steps=0,
        captioner=CaptionerPlan(
            size="cpu",
            # docs/miniature.md, "Third round": 20 epochs of alt-text pre-training on the 20,000 images
            # (15 min; the second run had 80 epochs of 5,000); the fine-tune keeps the vision tower
            pretrain={"epochs": 20, "batch_size": 64, "lr": 2e-3, "eval_every": 100000, "val_fraction": 0.02,
                      "max_new_tokens": 40},
            finetune={"epochs": 40, "batch_size": 16, "lr": 5e-4, "eval_every": 100000, "val_fraction": 0.1,
                      "max_new_tokens": 120, "freeze_vision": True},
            recaption={"batch_size": 128, "num_workers": 0, "max_new_tokens": 120},
        ),
        arms=("Alttext", "RECAP Mix", "Ground truth (upper bound)"),
        # no loader workers: on a CPU each one reserves a core (training.data.set_torch_threads), and
        # with the latents cached they have nothing to decode - 2 workers left torch 1 thread of 2
        # (1.71 steps/s; 2.94 with none, bench/t2i_loader_threads.py on this 2-core machine)
        t2i=_t2i(2000, num_workers=0, train="both"),
        seeds=(0, 1),
        generate=_GENERATE,
    ),
    "gpu": Preset(
        name="gpu",
        images=20000,
        human_images=200,
        prompts=200,
        size="gpu",
        vae_steps=2000,
        text_steps=5000,
        captioner=CaptionerPlan(
            size="gpu",
            pretrain={"epochs": 40, "batch_size": 128, "lr": 2e-3, "eval_every": 100000, "val_fraction": 0.02,
                      "max_new_tokens": 40},
            finetune={"epochs": 40, "batch_size": 16, "lr": 5e-4, "eval_every": 100000, "val_fraction": 0.1,
                      "max_new_tokens": 120},
            recaption={"batch_size": 512, "max_new_tokens": 120},
        ),
        arms=tuple(ARM_MIXES),
        t2i=_t2i(10000, batch_size=128),
        seeds=(0, 1, 2, 3),
        generate=_GENERATE,
    ),
}


def preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown miniature preset {name!r} (known: {', '.join(PRESETS)})") from None
