"""BLIP captioners (``BlipForConditionalGeneration``, e.g. Salesforce/blip-image-captioning-*).

The trap this adapter exists for: ``BlipForConditionalGeneration.generate`` overwrites the
first input token with ``text_config.bos_token_id`` (the ``[DEC]`` token) and stops at
``sep_token_id``, whereas ``forward`` uses whatever ids it is given — and the BERT tokenizer
starts every sequence with ``[CLS]``. Training on ``[CLS] caption [SEP]`` would therefore teach
the decoder a start token it never sees at generation time. Here training and generation
sequences are built from the same pieces: ``[DEC] prompt caption [SEP]``.
"""

from __future__ import annotations

from typing import Any

import torch

from training.adapters.base import Batch, PrefixDecoderAdapter


class BlipAdapter(PrefixDecoderAdapter):
    """BLIP: ViT encoder, BERT-style decoder with cross-attention; an optional text prompt
    (BLIP's own captioner used ``"a picture of"``) is a decoder prefix, masked from the loss."""

    family = "blip"
    model_types = ("blip",)
    model_class_name = "BlipForConditionalGeneration"
    # generate() drops the last column (it expects the tokenizer's trailing [SEP])
    # and rewrites column 0 to [DEC]; give it exactly that shape.
    _generation_ends_with_sep = True

    @property
    def _bos_id(self) -> int:
        return int(self.model.config.text_config.bos_token_id)

    @property
    def _sep_id(self) -> int:
        return int(self.model.config.text_config.sep_token_id)

    def _generate_new_tokens(self, batch: Batch, gen_kwargs: dict[str, Any]) -> torch.Tensor:
        # BLIP's generate passes pad/eos ids itself (eos = [SEP]); a second copy would clash.
        gen_kwargs = {k: v for k, v in gen_kwargs.items() if k not in ("pad_token_id", "eos_token_id")}
        out = self.model.generate(**batch, **gen_kwargs)
        # The decoder was fed input_ids[:, :-1]; everything after that prefix is new.
        return out[:, batch["input_ids"].shape[1] - 1 :]
