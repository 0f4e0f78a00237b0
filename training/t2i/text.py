"""Caption → text-encoder hidden states, with the long-caption policy made explicit.

Why it matters: CLIP's text encoder reads at most ``model_max_length`` (77) tokens, start and
end included, and SD pipelines silently drop the rest — a RECAP long caption often loses its
second half. Two policies:

* ``truncate`` (what diffusers' ``train_text_to_image.py`` and the pipelines do): pad/cut to 77
  tokens. The job counts how many captions lose tokens and reports it.
* ``chunk`` (compel / AUTOMATIC1111 style): split the caption's tokens into windows of
  ``model_max_length - 2`` (75), wrap each in BOS/EOS, pad to 77, encode each window and
  concatenate the hidden states along the sequence axis (at most ``max_chunks`` windows). In a
  batch every caption gets the same number of windows: shorter ones (and the empty caption of
  classifier-free guidance) are padded with windows of the empty text, so the unconditional
  embedding has exactly the same length handling as the conditional one.

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

    def token_ids(self, texts: list[str], windows: int | None = None) -> torch.Tensor:
        """``(batch, n_windows, max_length)`` token ids; ``n_windows`` is 1 in truncate mode.

        In chunk mode ``n_windows`` is the longest caption's count, or ``windows`` when given (at
        generation: ``max_chunks``, so an image never depends on the prompts batched with it).
        """
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
        n = max(max(len(w) for w in chunked), windows or 0)
        rows = [[self._wrap(c) for c in w] + [self._wrap([])] * (n - len(w)) for w in chunked]
        return torch.tensor(rows, dtype=torch.long)

    # ------------------------------------------------------------------ hidden states

    def encode_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Hidden states ``(batch, n_windows * max_length, hidden)`` of :meth:`token_ids` output."""
        batch, n, length = ids.shape
        device = next(self.text_encoder.parameters()).device
        hidden = self.text_encoder(ids.reshape(batch * n, length).to(device))[0]
        return hidden.reshape(batch, n * length, hidden.shape[-1])

    def encode(self, texts: list[str], windows: int | None = None) -> torch.Tensor:
        return self.encode_ids(self.token_ids(texts, windows))

    def encode_with_uncond(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(prompt, empty) embeddings of equal length, for classifier-free guidance at sampling."""
        hidden = self.encode([prompt, ""])
        return hidden[:1], hidden[1:]
