"""VisionEncoderDecoder captioners (e.g. ViT + GPT-2 as in nlpconnect/vit-gpt2-image-captioning,
or TrOCR-style checkpoints).

Such checkpoints usually ship an image processor and a tokenizer side by side with no processor
class tying them together (``AutoProcessor`` would hand back only one of them), so this adapter
loads both with their own ``from_pretrained`` and keeps them in :class:`ImageTextProcessor`,
which saves them the same way. The decoder input is built here from the same start token that
``generate`` uses (``decoder_start_token_id``), and the loss target ends with the token that
stops generation, so training and decoding agree even when pad and eos share an id (GPT-2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from training.adapters.base import Batch, CaptionerAdapter, pad_targets, right_pad


@dataclass
class ImageTextProcessor:
    """An image processor and a tokenizer that are saved into (and loaded from) one folder."""

    image_processor: Any
    tokenizer: Any

    def save_pretrained(self, path: str | Path) -> None:
        self.image_processor.save_pretrained(path)
        self.tokenizer.save_pretrained(path)


class VisionEncoderDecoderAdapter(CaptionerAdapter):
    """Any image encoder + autoregressive text decoder pair; no prompt (the decoder starts cold)."""

    family = "ved"
    model_types = ("vision-encoder-decoder",)
    model_class_name = "VisionEncoderDecoderModel"
    supports_prompt = False
    default_prompt = None

    @classmethod
    def _load_processor(cls, source: str, **kwargs: Any) -> ImageTextProcessor:
        from transformers import AutoImageProcessor, AutoTokenizer

        return ImageTextProcessor(
            image_processor=AutoImageProcessor.from_pretrained(source, **kwargs),
            tokenizer=AutoTokenizer.from_pretrained(source, **kwargs),
        )

    def _after_load(self) -> None:
        gen, config = self.model.generation_config, self.model.config
        start = gen.decoder_start_token_id
        if start is None:
            start = config.decoder_start_token_id
        if start is None:
            raise ValueError("vision-encoder-decoder checkpoint has no decoder_start_token_id")
        eos = gen.eos_token_id if gen.eos_token_id is not None else config.decoder.eos_token_id
        if eos is None:
            eos = (
                self.tokenizer.eos_token_id
                if self.tokenizer.eos_token_id is not None
                else self.tokenizer.sep_token_id
            )
        if isinstance(eos, list):
            eos = eos[0]
        if eos is None:
            raise ValueError("vision-encoder-decoder checkpoint has no end-of-sequence token")
        pad = self.tokenizer.pad_token_id
        self._start_id, self._eos_id = int(start), int(eos)
        self._pad_id = int(pad if pad is not None else eos)

    def _build_batch(
        self, images: list[Image.Image], texts: Sequence[str] | None, prompt: str | None
    ) -> Batch:
        pixels = self.processor.image_processor(images, return_tensors="pt")["pixel_values"]
        if texts is None:
            return self._to_device({"pixel_values": pixels})
        targets = [row + [self._eos_id] for row in self._target_ids(texts)]
        inputs = [[self._start_id] + row[:-1] for row in targets]
        _, mask, labels = pad_targets(targets, self._pad_id)
        return self._to_device(
            {
                "pixel_values": pixels,
                "decoder_input_ids": right_pad(inputs, self._pad_id),
                "decoder_attention_mask": mask,
                "labels": labels,
            }
        )

    def _own_stop_ids(self) -> set[int]:
        return {self._eos_id}

    def _generate_new_tokens(self, batch: Batch, gen_kwargs: dict[str, Any]) -> torch.Tensor:
        gen_kwargs.setdefault("decoder_start_token_id", self._start_id)
        gen_kwargs.setdefault("eos_token_id", self._eos_id)
        gen_kwargs.setdefault("pad_token_id", self._pad_id)
        out = self.model.generate(**batch, **gen_kwargs)
        return out[:, 1:]  # the decoder start token
