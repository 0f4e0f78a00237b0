"""Caption → text-encoder hidden states, with the long-caption policy made explicit.

Why it matters: CLIP's text encoder reads at most ``model_max_length`` (77) tokens, start and
end included, and SD pipelines silently drop the rest — a RECAP long caption often loses its
second half. Two policies:

* ``truncate`` (what diffusers' ``train_text_to_image.py`` and the pipelines do): pad/cut to 77
  tokens. The job counts how many captions lose tokens and reports it.
* ``chunk`` (compel / AUTOMATIC1111 style): split the caption's tokens into windows of
  ``model_max_length - 2`` (75), wrap each in BOS/EOS, pad to 77, encode each window and
  concatenate the hidden states along the sequence axis (at most ``max_chunks`` windows).

One rule for the length in chunk mode: **every** caption — short or long, conditional or the
empty caption of classifier-free guidance — is encoded as exactly ``max_chunks`` windows, its
own followed by windows of the empty text. Why fixed: the UNet cross-attends over every
window, so padding is part of the conditioning; a caption padded to its batch's longest
caption in training, to its own window count at validation and to ``max_chunks`` at generation
(as before) met three different embeddings. With a fixed count an embedding depends on the
caption alone — never on its batch-mates — and training, validation images and the generate
job all call :meth:`CaptionEncoder.encode` / :meth:`CaptionEncoder.encode_with_uncond`, the one
place that applies it. The cost is text-encoder work for the padding windows of short captions.

Embeddings are never cached: the caption drawn for an image changes from step to step, and a
trained text encoder changes its output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

MODES = ("truncate", "chunk")


@dataclass
class CaptionEncoder:
    tokenizer: Any
    text_encoder: torch.nn.Module
    mode: str = "truncate"
    max_chunks: int = 3

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"long_captions must be one of {', '.join(MODES)} (got {self.mode!r})")
        if self.max_chunks < 1:
            raise ValueError(f"max_chunks must be at least 1 (got {self.max_chunks})")

    @property
    def max_length(self) -> int:
        return int(self.tokenizer.model_max_length)

    @property
    def window(self) -> int:
        """Caption tokens per chunk: the context minus BOS and EOS."""
        return self.max_length - 2

    def content_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` without BOS/EOS, never truncated."""
        return list(self.tokenizer(text, add_special_tokens=False, truncation=False, verbose=False).input_ids)

    def n_tokens(self, text: str) -> int:
        """Tokens the text encoder would need for ``text``, BOS and EOS included."""
        return len(self.content_ids(text)) + 2

    def is_long(self, text: str) -> bool:
        """Longer than the encoder's context: truncated by any standard SD pipeline."""
        return self.n_tokens(text) > self.max_length

    def loses_tokens(self, text: str) -> bool:
        """Does this policy drop part of ``text``? (``chunk`` keeps up to ``max_chunks`` × 75 tokens.)"""
        budget = self.window if self.mode == "truncate" else self.window * self.max_chunks
        return len(self.content_ids(text)) > budget

    # ------------------------------------------------------------------ token ids

    def _wrap(self, window: list[int]) -> list[int]:
        ids = [self.tokenizer.bos_token_id, *window, self.tokenizer.eos_token_id]
        return ids + [self.tokenizer.pad_token_id] * (self.max_length - len(ids))

    @property
    def n_windows(self) -> int:
        """Windows per caption: 1 in truncate mode, ``max_chunks`` in chunk mode (the module's rule)."""
        return 1 if self.mode == "truncate" else self.max_chunks

    def token_ids(self, texts: list[str]) -> torch.Tensor:
        """``(batch, n_windows, max_length)`` token ids (see :attr:`n_windows`)."""
        if self.mode == "truncate":
            ids = self.tokenizer(
                texts, padding="max_length", max_length=self.max_length, truncation=True, return_tensors="pt"
            ).input_ids
            return ids[:, None, :]
        chunked = []
        for text in texts:
            content = self.content_ids(text)
            chunks = [content[i : i + self.window] for i in range(0, len(content), self.window)]
            chunked.append(chunks[: self.max_chunks] or [[]])
        n = self.n_windows
        rows = [[self._wrap(c) for c in w] + [self._wrap([])] * (n - len(w)) for w in chunked]
        return torch.tensor(rows, dtype=torch.long)

    # ------------------------------------------------------------------ hidden states

    def encode_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Hidden states ``(batch, n_windows * max_length, hidden)`` of :meth:`token_ids` output."""
        batch, n, length = ids.shape
        device = next(self.text_encoder.parameters()).device
        hidden = self.text_encoder(ids.reshape(batch * n, length).to(device))[0]
        return hidden.reshape(batch, n * length, hidden.shape[-1])

    def encode(self, texts: list[str]) -> torch.Tensor:
        """Hidden states ``(batch, n_windows * max_length, hidden)``: what the UNet is conditioned
        on in training, in validation images and at generation (one rule, see the module)."""
        return self.encode_ids(self.token_ids(texts))

    def encode_with_uncond(self, prompts: str | list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(prompts, empty) embeddings of equal length, for classifier-free guidance at sampling:
        ``prompt_embeds`` and ``negative_prompt_embeds`` of a diffusers pipeline call."""
        texts = [prompts] if isinstance(prompts, str) else list(prompts)
        hidden = self.encode([*texts, *([""] * len(texts))])
        return hidden[: len(texts)], hidden[len(texts) :]
