"""Captioner adapters: one interface over BLIP, GIT, VisionEncoderDecoder, Florence-2 and chat VLMs.

Use :func:`load_captioner` with a hub id or a local folder; it reads the checkpoint's
``config.json`` (``model_type``) and picks the adapter, so a job never has to be told the family.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.adapters.base import CaptionerAdapter, DType, GeneratedCaption, GenerationSettings
from training.adapters.blip import BlipAdapter
from training.adapters.florence2 import Florence2Adapter
from training.adapters.git import GitAdapter
from training.adapters.ved import VisionEncoderDecoderAdapter
from training.adapters.vlm import (
    Idefics3Adapter,
    LlavaAdapter,
    PaliGemmaAdapter,
    Qwen2VLAdapter,
    Qwen25VLAdapter,
)

#: family name -> adapter class. Only families that pass the tiny round-trip tests are listed.
ADAPTERS: dict[str, type[CaptionerAdapter]] = {
    cls.family: cls
    for cls in (
        BlipAdapter,
        GitAdapter,
        VisionEncoderDecoderAdapter,
        PaliGemmaAdapter,
        Qwen2VLAdapter,
        Qwen25VLAdapter,
        Idefics3Adapter,
        LlavaAdapter,
        Florence2Adapter,
    )
}

#: ``config.model_type`` -> adapter class
BY_MODEL_TYPE: dict[str, type[CaptionerAdapter]] = {
    model_type: cls for cls in ADAPTERS.values() for model_type in cls.model_types
}


def adapter_for(name_or_path: str | Path, **config_kwargs: Any) -> type[CaptionerAdapter]:
    """The adapter class for a checkpoint, detected from its saved config's ``model_type``."""
    from transformers import AutoConfig

    model_type = AutoConfig.from_pretrained(str(name_or_path), **config_kwargs).model_type
    try:
        return BY_MODEL_TYPE[model_type]
    except KeyError:
        known = ", ".join(sorted(BY_MODEL_TYPE))
        raise ValueError(f"no captioner adapter for model_type {model_type!r} (supported: {known})") from None


def load_captioner(
    name_or_path: str | Path,
    device: str = "cpu",
    dtype: DType = "float32",
    attn_implementation: str | None = "sdpa",
    **from_pretrained_kwargs: Any,
) -> CaptionerAdapter:
    """Load any supported captioner by hub id or local path, through ``from_pretrained``."""
    cls = adapter_for(name_or_path, **from_pretrained_kwargs)
    return cls.load(
        name_or_path,
        device=device,
        dtype=dtype,
        attn_implementation=attn_implementation,
        **from_pretrained_kwargs,
    )


__all__ = [
    "ADAPTERS",
    "BY_MODEL_TYPE",
    "CaptionerAdapter",
    "GeneratedCaption",
    "GenerationSettings",
    "adapter_for",
    "load_captioner",
]
