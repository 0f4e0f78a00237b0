"""GIT captioners (``GitForCausalLM``, e.g. microsoft/git-base-coco).

GIT is one decoder over ``[image patches] [CLS] prompt caption [SEP]``. ``generate`` starts
from ``[CLS]`` (the config's ``bos_token_id``) and stops at ``[SEP]`` (``eos_token_id``), so
training sequences are built with the same two tokens around the target.
"""

from __future__ import annotations

from typing import Any

import torch

from training.adapters.base import Batch, PrefixDecoderAdapter


class GitAdapter(PrefixDecoderAdapter):
    """GIT: the prompt (if any) is a text prefix after the image tokens, masked from the loss."""

    family = "git"
    model_types = ("git",)
    model_class_name = "AutoModelForCausalLM"

    @property
    def _bos_id(self) -> int:
        return int(self.model.config.bos_token_id)

    @property
    def _sep_id(self) -> int:
        eos = self.model.config.eos_token_id
        return int(eos[0] if isinstance(eos, list) else eos)

    def _generate_new_tokens(self, batch: Batch, gen_kwargs: dict[str, Any]) -> torch.Tensor:
        out = self.model.generate(**batch, **gen_kwargs)
        return out[:, batch["input_ids"].shape[1] :]
