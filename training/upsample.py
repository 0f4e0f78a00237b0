"""Prompt upsampling (DALL-E 3 §3.5): rewrite short prompts into descriptive ones with a local causal LM.

Why: a model fine-tuned on long, descriptive captions (RECAP's long captions, DALL-E 3's
descriptive synthetic captions) has learnt that distribution; a short user prompt is out of
it. DALL-E 3 therefore rewrites prompts with a language model before generation. The
``generate`` job does the same with any ``AutoModelForCausalLM`` checkpoint (hub id or local
folder) and stores the rewrite as caption kind ``upsampled`` next to the raw ``prompt``.

How a prompt is built — kept simple and predictable:

* ``template`` is the user's text with ``{prompt}`` where the short prompt goes. The
  placeholder is replaced literally (``str.replace``, not ``str.format``), so braces elsewhere
  in a template are harmless.
* If the tokenizer has a **chat template** (instruction-tuned models), the filled template is
  sent as a single user turn through ``apply_chat_template(add_generation_prompt=True)`` and
  tokenised without adding special tokens again (the chat template already has them).
  Otherwise (a plain completion model) the filled template is tokenised as is and the
  model continues it.
* Generation is greedy (deterministic: a resumed run rewrites a prompt exactly as before),
  batched with left padding, at most ``max_new_tokens`` new tokens.

Cleaning: the decoded continuation is cut at its first blank line (the first paragraph: models
often append notes or a second example), whitespace is collapsed and wrapping quotes
removed. If nothing is left, the raw prompt is used and the case is counted (``fallback``),
so an upsampled prompt is never empty.

Each distinct prompt is rewritten once per run and appended to ``upsampled.jsonl`` in the
run folder; a resumed run reads it back instead of loading the LM again.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

PLACEHOLDER = "{prompt}"
CACHE_FILE = "upsampled.jsonl"
_BLANK_LINE = re.compile(r"\n\s*\n")
_QUOTES = "\"'`“”‘’"


@dataclass(frozen=True)
class UpsampleSettings:
    """What determines a rewrite: a cached rewrite is reused only when all of these match."""

    upsampler: str  # the reference as configured (hub id, folder, artifact)
    template: str
    max_new_tokens: int

    def provenance(self) -> dict[str, Any]:
        """The provenance of an ``upsampled`` caption (GENERATED.md)."""
        return {"upsampler": self.upsampler, "template": self.template, "max_new_tokens": self.max_new_tokens}


@dataclass(frozen=True)
class Upsampled:
    """One rewrite: the raw ``prompt``, the ``text`` fed to the pipeline, and whether the
    model's output was empty after cleaning (``fallback``: ``text`` is the raw prompt)."""

    prompt: str
    text: str
    fallback: bool = False


def fill_template(template: str, prompt: str) -> str:
    """The template with the short prompt in place of ``{prompt}``."""
    if PLACEHOLDER not in template:
        raise ValueError(f"upsample_template must contain {PLACEHOLDER} where the short prompt goes")
    return template.replace(PLACEHOLDER, prompt)


def model_input(tokenizer: Any, template: str, prompt: str) -> tuple[str, bool]:
    """(text to tokenise, whether it already holds the special tokens) for one prompt."""
    filled = fill_template(template, prompt)
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": filled}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True), True
    return filled, False


def clean_output(text: str) -> str:
    """First paragraph of a generated continuation, whitespace collapsed, wrapping quotes removed."""
    first = _BLANK_LINE.split(text.strip(), maxsplit=1)[0]
    first = " ".join(first.split())
    while len(first) >= 2 and first[0] in _QUOTES and first[-1] in _QUOTES:
        first = first[1:-1].strip()
    return first


def from_pretrained_cached_first(loader: Callable[..., Any], source: str, **kwargs: Any) -> Any:
    """``loader(source)`` from the local Hugging Face cache first, then (for a hub id) online.

    Why: a hub id already in the cache must not wait on the network (offline machines retry
    for about a minute before failing); an uncached one is still fetched where the machine
    is online. Folders load directly.
    """
    if Path(source).is_dir():
        return loader(source, **kwargs)
    try:
        return loader(source, local_files_only=True, **kwargs)
    except (OSError, ValueError):
        return loader(source, **kwargs)


class PromptUpsampler:
    """A loaded causal LM that rewrites batches of prompts (greedy, left-padded)."""

    def __init__(self, model: Any, tokenizer: Any, settings: UpsampleSettings, device: torch.device) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings
        self.device = device

    @classmethod
    def load(
        cls, source: str, settings: UpsampleSettings, device: torch.device, dtype: str = "float32"
    ) -> PromptUpsampler:
        """Load ``source`` (folder or hub id) with ``from_pretrained``."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            tokenizer = from_pretrained_cached_first(AutoTokenizer.from_pretrained, source)
            model = from_pretrained_cached_first(
                AutoModelForCausalLM.from_pretrained, source, dtype=getattr(torch, dtype)
            )
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"upsampler {settings.upsampler!r} could not be loaded as a causal language model "
                f"(AutoModelForCausalLM + AutoTokenizer from {source}): {exc}"
            ) from exc
        tokenizer.padding_side = "left"  # decoder-only: new tokens must follow the prompt directly
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.to(device).eval()
        return cls(model, tokenizer, settings, device)

    @torch.inference_mode()
    def rewrite(self, prompts: Sequence[str]) -> list[Upsampled]:
        """Rewrite one batch of prompts."""
        if not prompts:
            return []
        inputs = [model_input(self.tokenizer, self.settings.template, p) for p in prompts]
        has_specials = inputs[0][1]
        encoded = self.tokenizer(
            [text for text, _ in inputs],
            return_tensors="pt",
            padding=True,
            add_special_tokens=not has_specials,
        ).to(self.device)
        output = self.model.generate(
            **encoded,
            max_new_tokens=self.settings.max_new_tokens,
            do_sample=False,
            num_beams=1,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        new_tokens = output[:, encoded["input_ids"].shape[1] :]
        texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        results = []
        for prompt, text in zip(prompts, texts, strict=True):
            cleaned = clean_output(text)
            results.append(Upsampled(prompt, cleaned or prompt, fallback=not cleaned))
        return results


# --------------------------------------------------------------------------- the per-run cache


def read_cache(path: Path, settings: UpsampleSettings) -> dict[str, Upsampled]:
    """Rewrites already made under ``settings`` (a line cut short by a kill is ignored)."""
    found: dict[str, Upsampled] = {}
    if not path.is_file():
        return found
    wanted = settings.provenance()
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
            if {k: entry.get(k) for k in wanted} != wanted:
                continue
            found[entry["prompt"]] = Upsampled(entry["prompt"], entry["text"], bool(entry.get("fallback")))
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return found


def append_cache(path: Path, settings: UpsampleSettings, items: Sequence[Upsampled]) -> None:
    """Append rewrites durably (fsync): a resume after a kill must not redo them."""
    if not items:
        return
    lines = "".join(
        json.dumps({**asdict(item), **settings.provenance()}, ensure_ascii=False) + "\n" for item in items
    )
    with path.open("a", encoding="utf-8") as fh:
        fh.write(lines)
        fh.flush()
        os.fsync(fh.fileno())


def upsample_prompts(
    prompts: Sequence[str],
    settings: UpsampleSettings,
    *,
    source: str,
    cache_path: Path,
    device: torch.device,
    dtype: str = "float32",
    batch_size: int = 8,
    logger: logging.Logger | None = None,
    stop_requested: Callable[[], bool] = lambda: False,
) -> dict[str, Upsampled]:
    """Rewrite every distinct prompt once (cached in ``cache_path``); returns prompt -> rewrite.

    The LM is loaded only if some prompt is not cached yet, and freed before returning (the
    diffusion pipeline needs the memory next). If a stop is requested between batches the
    result is partial; the caller checks ``stop_requested`` itself.
    """
    log = logger or logging.getLogger(__name__)
    distinct = list(dict.fromkeys(prompts))
    done = read_cache(cache_path, settings)
    todo = [p for p in distinct if p not in done]
    log.info(
        "upsampling %d distinct prompts with %s (%d cached in %s)",
        len(distinct), settings.upsampler, len(distinct) - len(todo), cache_path.name,
    )  # fmt: skip
    if todo:
        upsampler = PromptUpsampler.load(source, settings, device, dtype)
        for start in range(0, len(todo), batch_size):
            batch = upsampler.rewrite(todo[start : start + batch_size])
            append_cache(cache_path, settings, batch)
            done.update({item.prompt: item for item in batch})
            if stop_requested():
                break
        del upsampler
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return {p: done[p] for p in distinct if p in done}
