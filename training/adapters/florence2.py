"""Florence-2 (transformers-native ``Florence2ForConditionalGeneration``, e.g.
florence-community/Florence-2-base).

Florence-2 is an encoder-decoder: image tokens plus a task prompt go into the BART encoder,
the caption comes out of the decoder. Task tokens such as ``<CAPTION>`` or
``<MORE_DETAILED_CAPTION>`` are expanded to natural-language prompts by the processor; any other
string (a RECAP style tag like ``<SHORT>``/``<LONG>``) is used verbatim, which is how one model
learns two caption styles. Labels are the tokenizer's full ``<s> caption </s>``: BART's decoder
starts from ``decoder_start_token_id`` and generation reproduces exactly that sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from training.adapters.base import Batch, CaptionerAdapter, pad_targets


class Florence2Adapter(CaptionerAdapter):
    family = "florence2"
    model_types = ("florence2",)
    model_class_name = "AutoModelForImageTextToText"
    supports_prompt = True
    default_prompt = "<CAPTION>"

    def _build_batch(
        self, images: list[Image.Image], texts: Sequence[str] | None, prompt: str | None
    ) -> Batch:
        enc = self.processor(
            images=images, text=[prompt or ""] * len(images), padding=True, return_tensors="pt"
        )
        data: dict[str, Any] = dict(enc)
        if texts is not None:
            tok = self.tokenizer
            targets = [[tok.bos_token_id] + row + [tok.eos_token_id] for row in self._target_ids(texts)]
            _, _, data["labels"] = pad_targets(targets, tok.pad_token_id)
        return self._to_device(data)

    def _generate_new_tokens(self, batch: Batch, gen_kwargs: dict[str, Any]) -> torch.Tensor:
        out = self.model.generate(**batch, **gen_kwargs)
        return out[:, 1:]  # the decoder start token; <s> goes with the special tokens
