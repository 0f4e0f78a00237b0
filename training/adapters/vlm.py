"""Chat-style VLMs through ``AutoModelForImageTextToText``: Qwen2-VL / Qwen2.5-VL, Idefics3
(which SmolVLM v1 checkpoints use), and PaliGemma (prefix-LM, no chat template).

How a training example is built, and why:

1. The prompt part is what generation sees: the processor's chat template applied to a user
   turn ``[image, prompt]`` with ``add_generation_prompt=True``, run through the processor with
   the image so the image placeholder expands to the right number of tokens.
2. The target is whatever the template appends for the assistant's answer (the caption plus the
   template's end-of-turn marker, e.g. ``<|im_end|>``), found as the difference between the
   rendered conversation with and without the answer, and tokenized on its own.
3. ``input_ids`` is prompt + target, ``labels`` is -100 over the prompt and padding.

Tokenizing the target separately means the token boundary between prompt and caption is the
same one the model meets when it generates, and the image is processed once per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from PIL import Image

from training.adapters.base import Batch, CaptionerAdapter

# What a target token gets in each per-token tensor the processors return, and what padding gets.
_TARGET_FILL = {"attention_mask": 1, "token_type_ids": 1, "mm_token_type_ids": 0}
_PAD_FILL = {"attention_mask": 0, "token_type_ids": 0, "mm_token_type_ids": 0}


class ChatVLMAdapter(CaptionerAdapter):
    """Decoder-only VLM whose processor has a chat template."""

    model_class_name = "AutoModelForImageTextToText"
    supports_prompt = True
    default_prompt = "Describe this image."
    #: keys the processor may return that the model must not receive
    _drop_keys: ClassVar[tuple[str, ...]] = ("labels",)

    def _after_load(self) -> None:
        if getattr(self.processor, "chat_template", None) is None:
            raise ValueError(f"{self.family}: the processor has no chat template")

    # ------------------------------------------------------------------ text layout

    def _prompt_text(self, prompt: str) -> str:
        return self.processor.apply_chat_template(
            [self._user_turn(prompt)], add_generation_prompt=True, tokenize=False
        )

    def _target_text(self, prompt: str, caption: str) -> str:
        """The template's rendering of the assistant's answer, found as a suffix."""
        head = self._prompt_text(prompt)
        answer = {"role": "assistant", "content": [{"type": "text", "text": caption}]}
        full = self.processor.apply_chat_template([self._user_turn(prompt), answer], tokenize=False)
        if not full.startswith(head):
            raise ValueError(
                f"{self.family}: the chat template's answer does not extend its generation prompt; "
                "cannot tell prompt from target"
            )
        return full[len(head) :]

    @staticmethod
    def _user_turn(prompt: str) -> dict[str, Any]:
        return {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}

    def _target_rows(self, prompt: str, texts: Sequence[str]) -> list[list[int]]:
        """Target ids per caption; the caption (not the end-of-turn marker) is what gets cut
        to ``max_target_tokens``, so a long caption still teaches the model to stop."""
        rows = []
        for caption in texts:
            target = self._target_text(prompt, caption)
            at = target.find(caption) if caption else -1
            if at < 0:  # a template that rewrites the caption: keep the whole target
                rows.append(self.tokenizer(target, add_special_tokens=False)["input_ids"])
                continue
            body = self.tokenizer(target[: at + len(caption)], add_special_tokens=False)["input_ids"]
            tail = self.tokenizer(target[at + len(caption) :], add_special_tokens=False)["input_ids"]
            rows.append(body[: self.max_target_tokens] + tail)
        return rows

    # ------------------------------------------------------------------ the interface

    def _build_batch(
        self, images: list[Image.Image], texts: Sequence[str] | None, prompt: str | None
    ) -> Batch:
        prompt = prompt or ""
        prompt_text = self._prompt_text(prompt)
        side = "left" if texts is None else "right"
        enc = dict(
            self.processor(
                images=images,
                text=[prompt_text] * len(images),
                padding=True,
                padding_side=side,
                return_tensors="pt",
            )
        )
        for key in self._drop_keys:
            enc.pop(key, None)
        if texts is None:
            return self._to_device(enc)
        return self._to_device(self._append_targets(enc, self._target_rows(prompt, texts)))

    def _append_targets(self, enc: dict[str, Any], targets: list[list[int]]) -> dict[str, Any]:
        """Glue target ids after each (right-padded) prompt row and re-pad the batch."""
        ids = enc["input_ids"]
        lengths = enc["attention_mask"].sum(dim=1).tolist()
        per_token = ["input_ids", *(k for k in _TARGET_FILL if k in enc)]
        unknown = [
            k
            for k, v in enc.items()
            if k not in per_token
            and isinstance(v, torch.Tensor)
            and not v.is_floating_point()
            and v.shape == ids.shape
        ]
        if unknown:  # a processor output aligned with the tokens that we would silently truncate
            raise NotImplementedError(f"{self.family}: don't know how to extend {unknown} over targets")
        width = max(n + len(t) for n, t in zip(lengths, targets, strict=True))
        pad_id = self.tokenizer.pad_token_id
        out = {k: v for k, v in enc.items() if k not in per_token}
        new_ids = torch.full((len(targets), width), pad_id, dtype=ids.dtype)
        labels = torch.full((len(targets), width), -100, dtype=torch.long)
        for i, (n, target) in enumerate(zip(lengths, targets, strict=True)):
            new_ids[i, :n] = ids[i, :n]
            new_ids[i, n : n + len(target)] = torch.tensor(target, dtype=ids.dtype)
            labels[i, n : n + len(target)] = torch.tensor(target, dtype=torch.long)
        out["input_ids"] = new_ids
        for key in per_token:
            if key == "input_ids":
                continue
            src = enc[key]
            dst = torch.full((len(targets), width), _PAD_FILL[key], dtype=src.dtype)
            for i, (n, target) in enumerate(zip(lengths, targets, strict=True)):
                dst[i, :n] = src[i, :n]
                dst[i, n : n + len(target)] = _TARGET_FILL[key]
            out[key] = dst
        out["labels"] = labels
        return out

    def _generate_new_tokens(self, batch: Batch, gen_kwargs: dict[str, Any]) -> torch.Tensor:
        out = self.model.generate(**batch, **gen_kwargs)
        return out[:, batch["input_ids"].shape[1] :]


class Qwen2VLAdapter(ChatVLMAdapter):
    """Qwen2-VL: native-resolution images, so images of different sizes give prompts of
    different lengths (left-padded for generation, with M-RoPE positions taken from the mask)."""

    family = "qwen2_vl"
    model_types = ("qwen2_vl",)


class Qwen25VLAdapter(Qwen2VLAdapter):
    """Qwen2.5-VL: same processor layout and chat format as Qwen2-VL, windowed vision tower."""

    family = "qwen2_5_vl"
    model_types = ("qwen2_5_vl",)


class LlavaAdapter(ChatVLMAdapter):
    """LLaVA(-1.5): CLIP vision tower, MLP projector, Llama decoder — the captioner family
    behind Recap-DataComp-1B."""

    family = "llava"
    model_types = ("llava",)


class Idefics3Adapter(ChatVLMAdapter):
    """Idefics3, the architecture of SmolVLM (v1) checkpoints."""

    family = "idefics3"
    model_types = ("idefics3",)


class PaliGemmaAdapter(ChatVLMAdapter):
    """PaliGemma: a prefix-LM with task prefixes (``"caption en"``) instead of a chat template.

    The processor lays out ``<image>… <bos> prompt \\n``; the target is ``caption <eos>``.
    ``token_type_ids`` mark the prefix (0, attended bidirectionally) and the target (1, causal),
    matching what PaliGemma was trained with.
    """

    family = "paligemma"
    model_types = ("paligemma",)
    default_prompt = "caption en"

    def _after_load(self) -> None:
        """No chat template needed."""

    def _prompt_text(self, prompt: str) -> str:
        return self.processor.image_token + prompt

    def _target_text(self, prompt: str, caption: str) -> str:
        return caption + self.tokenizer.eos_token
