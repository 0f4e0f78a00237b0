"""Load the parts of a Stable Diffusion pipeline for training, and save the trained pipeline.

Why components instead of the pipeline object: training needs the DDPM *training* scheduler
(derived from the checkpoint's scheduler config, as diffusers' ``train_text_to_image.py``
does), separate train/eval modes and dtypes per module, and optional LoRA adapters; the
result is written back as an ordinary ``save_pretrained`` folder so
``StableDiffusionPipeline.from_pretrained`` (the generate job, users) loads it directly.

SDXL is refused with a clear message: it has two text encoders and extra time/size
conditioning, which this trainer does not implement.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


class T2IError(ValueError):
    """A T2I fine-tune that cannot run as configured; the message says what to change."""


@dataclass
class Components:
    """The modules of an SD pipeline as training uses them."""

    tokenizer: Any
    text_encoder: torch.nn.Module
    vae: torch.nn.Module
    unet: torch.nn.Module
    noise_scheduler: Any  # DDPMScheduler: adds noise at training time
    scheduler: Any  # the checkpoint's own (inference) scheduler, for validation and saving


def _check_not_sdxl(source: str) -> None:
    index = Path(source) / "model_index.json"
    if index.is_file():
        cls = json.loads(index.read_text(encoding="utf-8")).get("_class_name", "")
        if "XL" in cls or "text_encoder_2" in json.loads(index.read_text(encoding="utf-8")):
            raise T2IError(
                f"base {source!r} is an SDXL pipeline ({cls}); t2i_train supports SD 1.x/2.x "
                "(one CLIP text encoder) only — pick an SD 1.5 or SD 2.x base"
            )


def load_components(source: str) -> Components:
    """Load tokenizer, text encoder, VAE, UNet and schedulers from a pipeline folder or hub id."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    _check_not_sdxl(source)
    try:
        tokenizer = CLIPTokenizer.from_pretrained(source, subfolder="tokenizer")
        text_encoder = CLIPTextModel.from_pretrained(source, subfolder="text_encoder")
        vae = AutoencoderKL.from_pretrained(source, subfolder="vae")
        unet = UNet2DConditionModel.from_pretrained(source, subfolder="unet")
        noise_scheduler = DDPMScheduler.from_pretrained(source, subfolder="scheduler")
    except OSError as exc:
        raise T2IError(
            f"cannot load a Stable Diffusion pipeline from {source!r}: {exc}. Give a t2i artifact, a local "
            "folder written by save_pretrained, or a hub id already in the local cache (no network here)"
        ) from None
    if getattr(unet.config, "addition_embed_type", None) == "text_time":
        raise T2IError(f"base {source!r} has SDXL-style conditioning; t2i_train supports SD 1.x/2.x only")
    scheduler = _inference_scheduler(source)
    return Components(tokenizer, text_encoder, vae, unet, noise_scheduler, scheduler)


def native_resolution(unet: torch.nn.Module, vae: torch.nn.Module) -> tuple[int, str]:
    """The base's own image side and how it was found: UNet ``sample_size`` × VAE scale factor,
    the size diffusers' SD pipelines give ``height``/``width`` when none is passed (512 for SD 1.x,
    768 for SD 2.x 768-v, 32 for the tiny test pipeline).

    Why not a fixed 512: a small or 256-px base trained at 512 spends most of each step on
    upscaled pixels it was never made for (a 40-step run of the 32-px tiny pipeline took minutes).
    """
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    size = unet.config.sample_size
    if isinstance(size, (list, tuple)):  # (height, width): training crops squares, take the height
        size = size[0]
    return int(size) * scale, f"the base's own size: UNet sample_size {size} x VAE scale factor {scale}"


def _inference_scheduler(source: str) -> Any:
    """The checkpoint's own scheduler class (PNDM, DDIM, ...) from its config."""
    import diffusers

    config = diffusers.DDPMScheduler.load_config(source, subfolder="scheduler")
    cls = getattr(diffusers, str(config.get("_class_name", "DDIMScheduler")), diffusers.DDIMScheduler)
    return cls.from_config(config)


def vae_identity(vae: torch.nn.Module) -> str:
    """A short hash naming this exact VAE: its config plus every weight, byte for byte.

    Why weights and not the path: two checkpoints may share a folder name, and a fine-tune
    could change the VAE; cached latents are valid only for the VAE that made them.
    """
    # private keys (``_name_or_path``, ``_diffusers_version``) say where it came from, not what it is
    config = {k: v for k, v in dict(vae.config).items() if not k.startswith("_")}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(vae.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


# --------------------------------------------------------------------------- LoRA

UNET_LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


def add_lora(module: torch.nn.Module, targets: list[str], rank: int) -> None:
    """Attach a LoRA adapter (peft, via the diffusers/transformers integration) and freeze the base."""
    from peft import LoraConfig

    module.requires_grad_(False)
    config = LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=targets)
    module.add_adapter(config)  # type: ignore[operator]


def lora_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The adapter weights of ``module`` in diffusers' naming (for ``save_lora_weights``)."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    return convert_state_dict_to_diffusers(get_peft_model_state_dict(module, save_embedding_layers=False))


def merge_lora(module: torch.nn.Module) -> torch.nn.Module:
    """Fold every LoRA layer into its base weight and put the plain layer back (in place)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, child in list(module.named_modules()):
        if isinstance(child, BaseTunerLayer):
            child.merge()
            parent_name, _, attr = name.rpartition(".")
            parent = module.get_submodule(parent_name) if parent_name else module
            setattr(parent, attr, child.get_base_layer())
    if hasattr(module, "peft_config"):  # the model no longer carries adapters
        del module.peft_config
    if getattr(module, "_hf_peft_config_loaded", False):
        module._hf_peft_config_loaded = False  # type: ignore[attr-defined]
    return module


# --------------------------------------------------------------------------- saving


def save_pipeline(parts: Components, out_dir: Path) -> Path:
    """``save_pretrained`` an SD pipeline of ``parts`` into ``out_dir`` atomically (temp + rename),
    so a kill mid-write never leaves half a model under the final name."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=parts.vae,
        text_encoder=parts.text_encoder,
        tokenizer=parts.tokenizer,
        unet=parts.unet,
        scheduler=parts.scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    return out_dir


def save_lora(unet_layers: dict | None, text_layers: dict | None, out_dir: Path) -> Path:
    """The adapters alone, in diffusers' format (``pipe.load_lora_weights(out_dir)`` reads it)."""
    from diffusers import StableDiffusionPipeline

    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    StableDiffusionPipeline.save_lora_weights(
        tmp, unet_lora_layers=unet_layers, text_encoder_lora_layers=text_layers
    )
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    return out_dir
