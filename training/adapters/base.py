"""The one small interface every captioner family implements.

Why an adapter layer at all: BLIP, GIT, VisionEncoderDecoder, Florence-2 and chat-style VLMs
disagree on almost everything a captioning job touches — how an image and a prompt become
tensors, where the target caption goes, which positions the loss must ignore, what ``generate``
returns (prompt included or not) and which special tokens end a caption. The fine-tune and
recaption jobs should not know any of that, so each family hides it behind the same five
calls: :meth:`CaptionerAdapter.load`, :meth:`~CaptionerAdapter.prepare_batch`,
:meth:`~CaptionerAdapter.generate`, :meth:`~CaptionerAdapter.training_loss` and
:meth:`~CaptionerAdapter.save`.

Loading always goes through the real ``from_pretrained`` of transformers, whether the user
names a hub id or a local folder: the tiny test models are saved with ``save_pretrained``
and read back through exactly the code path a real checkpoint takes.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from PIL import Image

log = logging.getLogger(__name__)

DType = Literal["float32", "float16", "bfloat16"]
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}

# Long RECAP captions run to a few hundred tokens; anything longer is almost certainly junk
# and would only blow up memory, so targets are cut here (the end-of-caption marker is kept).
DEFAULT_MAX_TARGET_TOKENS = 256

Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings, stored with every recaption as part of its provenance.

    Why a dataclass rather than loose kwargs: a caption variant must record exactly how it was
    produced, and the same settings must be replayable when a run resumes.
    """

    max_new_tokens: int = 64
    num_beams: int = 1
    do_sample: bool = False
    temperature: float | None = None
    top_p: float | None = None
    repetition_penalty: float | None = None

    def as_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :meth:`CaptionerAdapter.generate` (unset options left out,
        so the checkpoint's own generation config keeps its say)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def to_dict(self) -> dict[str, Any]:
        """Everything, ``None`` included, for provenance records."""
        return asdict(self)


@dataclass(frozen=True)
class GeneratedCaption:
    """One generated caption and whether generation stopped at ``max_new_tokens`` instead of an
    end token (``hit_token_limit``): such a caption is cut, perhaps mid-sentence, and the
    recaption job records the flag in its provenance so cut captions can be counted and found."""

    text: str
    hit_token_limit: bool


def hit_token_limit(
    new_tokens: torch.Tensor, max_new_tokens: int, stop_ids: set[int], forced_end: set[int] | None = None
) -> list[bool]:
    """Per row of generated tokens (prompt excluded): did generation run into ``max_new_tokens``?

    ``generate`` stops a row at its first stop token and pads it afterwards; the batch ends when
    every row has stopped or the limit is reached. So a row hit the limit exactly when the batch
    is ``max_new_tokens`` wide and the row holds no stop token (a row whose last allowed token is
    the stop token ended by itself) — unless the checkpoint *forces* an end token at the limit
    (``forced_eos_token_id``, BART-style decoders such as Florence-2): then a row whose first stop
    token is that forced token in the last position was cut too, and is counted so (a caption
    that ended by itself in exactly that position cannot be told apart; it is counted as cut).
    """
    n = int(new_tokens.shape[0])
    if new_tokens.ndim != 2 or new_tokens.shape[1] < max_new_tokens:
        return [False] * n
    if not stop_ids:  # nothing ends a caption but the limit
        return [True] * n
    stops = torch.isin(new_tokens, torch.tensor(sorted(stop_ids), device=new_tokens.device))
    out = []
    for row, is_stop in zip(new_tokens.tolist(), stops.tolist(), strict=True):
        first = is_stop.index(True) if True in is_stop else None
        forced = first == len(row) - 1 and row[first] in (forced_end or set())
        out.append(first is None or forced)
    return out


def resolve_dtype(dtype: DType | torch.dtype | str) -> torch.dtype:
    """Accept the three names the UI and CLI offer, or a torch dtype."""
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[str(dtype)]
    except KeyError:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, not {dtype!r}") from None


def rgb(images: Sequence[Image.Image]) -> list[Image.Image]:
    """Every processor expects 3-channel images; palette, grey and RGBA inputs occur in real corpora."""
    return [im if im.mode == "RGB" else im.convert("RGB") for im in images]


def right_pad(rows: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    """Stack variable-length id rows into one tensor, padding at the end."""
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(list(row), dtype=torch.long)
    return out


def pad_targets(
    rows: Sequence[Sequence[int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-pad target rows: ``(ids, mask, labels)``, where labels are the ids with every
    padded position set to -100 (padding is never a training target)."""
    ids = right_pad(rows, pad_id)
    mask = right_pad([[1] * len(r) for r in rows], 0)
    return ids, mask, ids.masked_fill(mask == 0, -100)


class CaptionerAdapter(ABC):
    """One captioner family behind the interface the jobs use.

    Attributes: ``family`` (registry name), ``model``, ``processor``, ``device``,
    ``supports_prompt`` (whether a style/task prompt such as ``"<SHORT>"`` or ``"caption en"``
    conditions the caption) and ``default_prompt`` (used when the caller passes ``None``).

    ``max_target_tokens`` (default 256) caps the caption tokens of a training target; the
    end-of-caption marker is always kept so a truncated caption still teaches the model to stop.

    Mode handling: :meth:`generate` switches the model to eval mode and restores the previous
    mode afterwards; :meth:`training_loss` leaves the mode to the caller (a training loop calls
    ``adapter.model.train()`` once), because toggling per step would hide dropout choices.
    """

    family: ClassVar[str]
    #: ``config.model_type`` values this adapter serves (the registry keys).
    model_types: ClassVar[tuple[str, ...]]
    #: the transformers class whose ``from_pretrained`` builds the model (see :meth:`_model_class`)
    model_class_name: ClassVar[str]
    supports_prompt: ClassVar[bool] = False
    default_prompt: ClassVar[str | None] = None

    def __init__(self, model: torch.nn.Module, processor: Any, device: str | torch.device) -> None:
        self.model = model
        self.processor = processor
        self.device = torch.device(device)
        self.max_target_tokens = DEFAULT_MAX_TARGET_TOKENS

    # ------------------------------------------------------------------ loading and saving

    @classmethod
    def load(
        cls,
        name_or_path: str | Path,
        device: str | torch.device = "cpu",
        dtype: DType | torch.dtype = "float32",
        attn_implementation: str | None = "sdpa",
        **from_pretrained_kwargs: Any,
    ) -> CaptionerAdapter:
        """Load model and processor through transformers' ``from_pretrained``.

        ``attn_implementation`` defaults to SDPA (fused attention on GPUs); an architecture
        that has no SDPA path is loaded with eager attention instead of failing, and the choice
        actually made is visible as ``adapter.attn_implementation``.
        Extra keyword arguments (``revision``, ``local_files_only``, ``cache_dir`` …) go to both
        ``from_pretrained`` calls.
        """
        source = str(name_or_path)
        torch_dtype = resolve_dtype(dtype)
        processor = cls._load_processor(source, **from_pretrained_kwargs)
        model = cls._load_model(source, torch_dtype, attn_implementation, **from_pretrained_kwargs)
        model.to(device)
        model.eval()
        adapter = cls(model, processor, device)
        adapter._ensure_pad_token()
        adapter._after_load()
        return adapter

    @classmethod
    def _model_class(cls) -> Any:
        """The transformers class named by ``model_class_name`` (imported lazily, so importing
        the adapters costs nothing until a model is loaded)."""
        import transformers

        try:
            return getattr(transformers, cls.model_class_name)
        except AttributeError:  # what ``from transformers import <name>`` raises
            raise ImportError(f"cannot import name {cls.model_class_name!r} from 'transformers'") from None

    @classmethod
    def _load_model(
        cls, source: str, dtype: torch.dtype, attn_implementation: str | None, **kwargs: Any
    ) -> torch.nn.Module:
        model_class = cls._model_class()
        if attn_implementation is None:
            return model_class.from_pretrained(source, dtype=dtype, **kwargs)
        try:
            return model_class.from_pretrained(
                source, dtype=dtype, attn_implementation=attn_implementation, **kwargs
            )
        except ValueError as err:
            if attn_implementation == "eager" or "attention" not in str(err).lower():
                raise
            log.info("%s: %s attention unsupported, loading with eager", source, attn_implementation)
            return model_class.from_pretrained(source, dtype=dtype, attn_implementation="eager", **kwargs)

    @classmethod
    def _load_processor(cls, source: str, **kwargs: Any) -> Any:
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(source, **kwargs)

    def _ensure_pad_token(self) -> None:
        """Batching needs a pad id, and decoder-only checkpoints often ship without one. The
        end-of-text token is the usual stand-in: padded positions are masked out of attention
        and loss anyway. (``save`` then records it, which is harmless.)"""
        tok = self.tokenizer
        if tok.pad_token_id is None and tok.eos_token_id is not None:
            tok.pad_token = tok.eos_token

    def _after_load(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Hook for family-specific checks once model and processor exist."""

    def save(self, path: str | Path) -> Path:
        """``save_pretrained`` of model and processor into one folder that :meth:`load` reads back."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(out)
        self.processor.save_pretrained(out)
        return out

    # ------------------------------------------------------------------ properties

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def attn_implementation(self) -> str | None:
        return getattr(self.model.config, "_attn_implementation", None)

    # ------------------------------------------------------------------ the interface

    def prepare_batch(
        self,
        images: Sequence[Image.Image],
        texts: Sequence[str] | None = None,
        prompt: str | None = None,
    ) -> Batch:
        """Tensors on ``self.device`` for a batch of images.

        Without ``texts`` the batch is a generation input (prompt only). With ``texts`` (one
        training target per image) it also carries ``labels`` in which padding and prompt
        positions are -100, ready for :meth:`training_loss`.
        """
        prompt = self._resolve_prompt(prompt)
        images = rgb(images)
        if texts is not None and len(texts) != len(images):
            raise ValueError(f"{len(images)} images but {len(texts)} texts")
        return self._build_batch(images, texts, prompt)

    @abstractmethod
    def _build_batch(
        self, images: list[Image.Image], texts: Sequence[str] | None, prompt: str | None
    ) -> Batch:
        """The family's :meth:`prepare_batch`: RGB ``images``, ``texts`` None or one per image,
        ``prompt`` already resolved (the default filled in, refused where unsupported)."""

    def training_loss(self, batch: Batch) -> torch.Tensor:
        """Mean token cross-entropy of the targets in ``batch`` (a scalar with a graph)."""
        if "labels" not in batch:
            raise ValueError("training_loss needs a batch prepared with texts=[...]")
        return self.model(**batch).loss

    def generate(
        self,
        batch: Batch,
        max_new_tokens: int = 64,
        num_beams: int = 1,
        do_sample: bool = False,
        **kwargs: Any,
    ) -> list[str]:
        """One caption per image: batched, under ``torch.inference_mode``, with the prompt
        and special tokens stripped."""
        captions = self.generate_captions(batch, max_new_tokens, num_beams, do_sample, **kwargs)
        return [c.text for c in captions]

    def generate_captions(
        self,
        batch: Batch,
        max_new_tokens: int = 64,
        num_beams: int = 1,
        do_sample: bool = False,
        **kwargs: Any,
    ) -> list[GeneratedCaption]:
        """:meth:`generate`, with each caption's ``hit_token_limit`` flag (see
        :func:`hit_token_limit`)."""
        if "labels" in batch:
            raise ValueError("generate needs a batch prepared without texts (it would see the answers)")
        gen_kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "num_beams": num_beams,
            "do_sample": do_sample,
            **kwargs,
        }
        pad_id = self.tokenizer.pad_token_id
        if getattr(self.model.generation_config, "pad_token_id", None) is None and pad_id is not None:
            gen_kwargs.setdefault("pad_token_id", pad_id)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                new_tokens = self._generate_new_tokens(batch, gen_kwargs)
        finally:
            self.model.train(was_training)
        forced = gen_kwargs.get("forced_eos_token_id", self.model.generation_config.forced_eos_token_id)
        forced_end = set(forced if isinstance(forced, (list, tuple)) else [] if forced is None else [forced])
        hits = hit_token_limit(new_tokens, max_new_tokens, self.stop_token_ids(gen_kwargs), forced_end)
        texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return [GeneratedCaption(t.strip(), hit) for t, hit in zip(texts, hits, strict=True)]

    def stop_token_ids(self, gen_kwargs: dict[str, Any] | None = None) -> set[int]:
        """The token ids that end a caption in ``generate``: the call's ``eos_token_id``, else the
        checkpoint's generation config (what transformers stops on), plus the family's own end
        token (:meth:`_own_stop_ids`)."""
        eos = (gen_kwargs or {}).get("eos_token_id")
        if eos is None:
            eos = getattr(self.model.generation_config, "eos_token_id", None)
        ids = set(eos if isinstance(eos, (list, tuple)) else [] if eos is None else [eos])
        return {int(i) for i in ids} | self._own_stop_ids()

    def _own_stop_ids(self) -> set[int]:
        """End tokens a family's ``generate`` applies beyond the generation config (BLIP: [SEP])."""
        return set()

    @abstractmethod
    def _generate_new_tokens(self, batch: Batch, gen_kwargs: dict[str, Any]) -> torch.Tensor:
        """Only the tokens generated after the prompt, one row per image."""

    # ------------------------------------------------------------------ helpers

    def _resolve_prompt(self, prompt: str | None) -> str | None:
        if prompt is None:
            return self.default_prompt
        if not self.supports_prompt:
            # Silently dropping a style prompt would make a "one model, two styles" fine-tune
            # train and caption both styles identically; refuse instead.
            raise ValueError(f"{self.family} captioners take no prompt (got {prompt!r})")
        return prompt

    def _to_device(self, data: dict[str, Any]) -> Batch:
        """Move tensors to the adapter's device; floating tensors (pixels) take the model's dtype."""
        out: Batch = {}
        dtype = self.dtype
        for key, value in data.items():
            if not isinstance(value, torch.Tensor):
                continue
            out[key] = (
                value.to(self.device, dtype=dtype) if value.is_floating_point() else value.to(self.device)
            )
        return out

    def _target_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Caption token ids without special tokens, cut to ``max_target_tokens``."""
        ids = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [row[: self.max_target_tokens] for row in ids]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} family={self.family} device={self.device} dtype={self.dtype}>"


class PrefixDecoderAdapter(CaptionerAdapter):
    """A text decoder over the image tokens that reads ``[bos] prompt caption [sep]`` (BLIP, GIT).

    The optional prompt is a decoder prefix after ``[bos]``, masked from the loss together with
    the padding; the target ends with ``[sep]``, the token that stops generation. Subclasses name
    the two ids (``_bos_id``, ``_sep_id``) their checkpoint's ``generate`` actually uses.
    """

    supports_prompt = True
    #: whether a generation input ends with ``[sep]`` too (BLIP's ``generate`` drops that column)
    _generation_ends_with_sep: ClassVar[bool] = False

    @property
    @abstractmethod
    def _bos_id(self) -> int:
        """The token ``generate`` starts the caption from."""

    @property
    @abstractmethod
    def _sep_id(self) -> int:
        """The token that ends a caption."""

    def _own_stop_ids(self) -> set[int]:
        return {self._sep_id}

    def _build_batch(
        self, images: list[Image.Image], texts: Sequence[str] | None, prompt: str | None
    ) -> Batch:
        pixels = self.processor.image_processor(images, return_tensors="pt")["pixel_values"]
        prefix = [self._bos_id]
        if prompt:
            prefix += self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if texts is None:
            # one shared prompt, so every row has the same length and needs no padding
            row = prefix + [self._sep_id] if self._generation_ends_with_sep else prefix
            ids = torch.tensor([row] * len(images), dtype=torch.long)
            return self._to_device(
                {"pixel_values": pixels, "input_ids": ids, "attention_mask": torch.ones_like(ids)}
            )
        sep = self._sep_id
        rows = [prefix + target + [sep] for target in self._target_ids(texts)]
        ids, mask, labels = pad_targets(rows, self.tokenizer.pad_token_id)
        labels[:, : len(prefix)] = -100
        return self._to_device(
            {"pixel_values": pixels, "input_ids": ids, "attention_mask": mask, "labels": labels}
        )
