"""CLIP models for scoring — open_clip by name + tag or checkpoint, or transformers folders / hub ids
(LongCLIP-style long text) — without ever downloading.

Why this wrapper: open_clip resolves a pretrained *tag* (``ViT-B-32`` / ``openai``) by
downloading, which this machine cannot do and which would hang or fail deep inside a job.
:func:`resolve_weights` looks for the tag's file where open_clip itself would have cached it
(the Hugging Face hub cache, or ``~/.cache/clip`` for URL downloads) and, when it is not
there, raises :class:`ClipWeightsMissing` saying exactly where to put the file or how to pass
a local path. A local checkpoint is passed as ``pretrained=/path/to/file``; if its
architecture is not one open_clip knows, a ``<model_name>.json`` config next to the file is
registered first (that is how :func:`build_tiny_clip` models load, through the same call
users make).

A transformers dual encoder is named by its folder or hub id instead (:func:`clip_backend`
decides from the reference): LongCLIP-style ``CLIPModel`` checkpoints with 248 text positions
read long captions whole where open_clip's CLIP stops at 77 tokens. Every scorer says which
encoder it is (``encoder``) and whether a text was cut at its context (``truncated``).

CLIP score = 100 × cosine(image embedding, text embedding), as in DALL-E 3's CLIP-S.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image as PILImage

from backend.clip_tokens import clip_token_count

DEFAULT_MODEL = "ViT-B-32"
TINY_CLIP_NAME = "RECAP-tiny-CLIP"
TINY_CLIP_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    # the real CLIP vocabulary and context, so open_clip's own tokenizer (bundled BPE) works
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


class ClipWeightsMissing(RuntimeError):
    """The requested CLIP weights are not on this machine (and cannot be downloaded here)."""


# --------------------------------------------------------------------------- resolving weights


def _register_config_beside(model_name: str, checkpoint: Path) -> None:
    """Make a custom architecture known to open_clip from ``<model_name>.json`` next to its weights."""
    import open_clip

    if model_name in open_clip.list_models():
        return
    config = checkpoint.parent / f"{model_name}.json"
    if not config.is_file():
        raise ClipWeightsMissing(
            f"open_clip has no model named {model_name!r}. For a custom architecture put its config as "
            f"{config} (open_clip model-config JSON with embed_dim, vision_cfg, text_cfg) next to the "
            f"weights; built-in names include {', '.join(open_clip.list_models()[:8])}, ..."
        )
    open_clip.add_model_config(config)


def _hf_cached(repo_and_file: str) -> tuple[str | None, str, str]:
    """(cached path or None, repo id, file name) for an open_clip ``hf_hub`` entry, offline."""
    from huggingface_hub import hf_hub_download
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    repo_id, filename = os.path.split(repo_and_file)
    filename = filename or HF_WEIGHTS_NAME
    candidates = [HF_SAFE_WEIGHTS_NAME, filename] if filename == HF_WEIGHTS_NAME else [filename]
    for name in candidates:
        try:
            return hf_hub_download(repo_id=repo_id, filename=name, local_files_only=True), repo_id, filename
        except Exception:  # noqa: BLE001 - "not in the cache" comes in several exception types
            continue
    return None, repo_id, filename


def resolve_weights(model_name: str, pretrained: str) -> tuple[str, dict[str, Any]]:
    """(checkpoint file, extra ``create_model`` kwargs) for a tag or a path, never downloading.

    For a tag, the kwargs carry what the tag implies (QuickGELU, normalisation), since
    open_clip only applies those itself when it resolves the tag.
    """
    import open_clip

    path = Path(pretrained).expanduser()
    if path.is_file():
        _register_config_beside(model_name, path)
        return str(path), {}
    if model_name not in open_clip.list_models():
        raise ClipWeightsMissing(
            f"unknown open_clip model {model_name!r} (pretrained {pretrained!r} is not a file either)"
        )
    cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not cfg:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(model_name))
        raise ClipWeightsMissing(
            f"pretrained {pretrained!r} is neither a file nor a known tag of {model_name} (tags: {tags})"
        )
    extra: dict[str, Any] = {"force_quick_gelu": bool(cfg.get("quick_gelu", False))}
    preprocess = {k: cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in cfg}
    if preprocess:
        extra["force_preprocess_cfg"] = preprocess
    hints: list[str] = []
    if cfg.get("hf_hub"):
        from huggingface_hub.constants import HF_HUB_CACHE

        found, repo_id, filename = _hf_cached(cfg["hf_hub"])
        if found:
            return found, extra
        hints.append(
            f"(a) on a machine with internet run `huggingface-cli download {repo_id} {filename}` and copy "
            f"its cache folder models--{repo_id.replace('/', '--')} into {HF_HUB_CACHE} here "
            "(HF_HOME / HF_HUB_CACHE move that folder)"
        )
    if cfg.get("url"):
        target = Path.home() / ".cache" / "clip" / os.path.basename(cfg["url"])
        if target.is_file():
            return str(target), extra
        hints.append(f"(b) download {cfg['url']} and put the file at {target}")
    hints.append(
        f"(c) put any open_clip checkpoint of {model_name} anywhere on this machine and pass its path as "
        f"pretrained (e.g. pretrained=/data/weights/{model_name}-{pretrained}.bin)"
    )
    raise ClipWeightsMissing(
        f"CLIP weights {model_name} / {pretrained!r} are not on this machine and it cannot download them. "
        + "; ".join(hints)
    )


# --------------------------------------------------------------------------- scoring


class ClipScorer:
    """A loaded CLIP-style image/text model in eval mode: unit-length features and CLIP-S.

    Two backends share this interface: :class:`OpenClipScorer` (open_clip models, 77 tokens) and
    :class:`TransformersClipScorer` (a transformers ``CLIPModel`` folder or hub id — LongCLIP-style
    checkpoints with 248 positions among them). ``model_name`` / ``pretrained`` identify the
    weights in stored scores; ``encoder`` says in words which text encoder and context it is.
    """

    model: Any
    preprocess: Any
    device: torch.device
    model_name: str
    pretrained: str
    context_length: int
    backend: str = ""

    def image_features(self, images: Sequence[PILImage.Image]) -> torch.Tensor:
        raise NotImplementedError

    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        raise NotImplementedError

    def token_count(self, text: str) -> int:
        """Tokens the text needs in this model's tokenizer, start and end tokens included."""
        raise NotImplementedError

    def truncated(self, text: str) -> bool:
        """The caption needs more tokens than the text tower reads (its tail is ignored)."""
        return self.token_count(text) > self.context_length

    @property
    def encoder(self) -> str:
        return f"{self.backend} {self.model_name} / {self.pretrained} ({self.context_length} text positions)"

    def score_features(self, image_features: torch.Tensor, texts: Sequence[str]) -> list[float]:
        """100 × cosine of each text with the image feature in the same row."""
        text_features = self.text_features(texts)
        return (100.0 * (image_features * text_features).sum(dim=-1)).tolist()

    def score(self, images: Sequence[PILImage.Image], texts: Sequence[str]) -> list[float]:
        if len(images) != len(texts):
            raise ValueError(f"{len(images)} images but {len(texts)} texts")
        if not texts:
            return []
        return self.score_features(self.image_features(images), texts)


@dataclass
class OpenClipScorer(ClipScorer):
    """An open_clip model with its preprocessing and tokenizer."""

    model: torch.nn.Module
    preprocess: Any
    tokenizer: Any
    device: torch.device
    model_name: str
    pretrained: str
    context_length: int
    backend: str = "open_clip"

    @torch.inference_mode()
    def image_features(self, images: Sequence[PILImage.Image]) -> torch.Tensor:
        pixels = torch.stack([self.preprocess(im.convert("RGB")) for im in images]).to(self.device)
        features = self.model.encode_image(pixels).float()
        return features / features.norm(dim=-1, keepdim=True)

    @torch.inference_mode()
    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        tokens = self.tokenizer(list(texts)).to(self.device)
        features = self.model.encode_text(tokens).float()
        return features / features.norm(dim=-1, keepdim=True)

    def token_count(self, text: str) -> int:
        return clip_token_count(text)


@dataclass
class TransformersClipScorer(ClipScorer):
    """A transformers dual encoder (``CLIPModel`` and kin) loaded with ``from_pretrained``.

    Why: LongCLIP-style checkpoints stretch CLIP's text position table from 77 to 248, so long
    captions are read whole; they ship as transformers ``CLIPModel`` folders, which open_clip does
    not load. Texts are cut at the model's own position count (``max_position_embeddings``), and
    :meth:`truncated` counts tokens with the checkpoint's own tokenizer.
    """

    model: Any
    processor: Any
    device: torch.device
    model_name: str
    pretrained: str
    context_length: int
    backend: str = "transformers"

    @property
    def preprocess(self) -> Any:  # what FID's CLIP extractor describes
        return self.processor.image_processor

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    @torch.inference_mode()
    def image_features(self, images: Sequence[PILImage.Image]) -> torch.Tensor:
        pixels = self.processor.image_processor(
            images=[im.convert("RGB") for im in images], return_tensors="pt"
        )
        out = self.model.get_image_features(pixel_values=pixels["pixel_values"].to(self.device))
        features = (out if isinstance(out, torch.Tensor) else out.pooler_output).float()
        return features / features.norm(dim=-1, keepdim=True)

    @torch.inference_mode()
    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        padding = "max_length" if "siglip" in self.model.config.model_type else True
        tokens = self.tokenizer(
            list(texts), padding=padding, truncation=True, max_length=self.context_length, return_tensors="pt"
        ).to(self.device)
        out = self.model.get_text_features(**tokens)
        features = (out if isinstance(out, torch.Tensor) else out.pooler_output).float()
        return features / features.norm(dim=-1, keepdim=True)

    def token_count(self, text: str) -> int:
        return len(self.tokenizer(text, truncation=False)["input_ids"])


TRANSFORMERS_PREFIX = "transformers:"


def clip_backend(model_name: str) -> str:
    """Which backend a CLIP model reference names: ``open_clip`` or ``transformers``.

    transformers: ``transformers:<folder or hub id>``, an existing folder, or a hub id
    (``org/name``: open_clip model names never contain a slash, and its own hub scheme is spelled
    ``hf-hub:org/name``). Anything else is an open_clip model name (ViT-B-32, …).
    """
    ref = model_name.strip()
    if ref.startswith(TRANSFORMERS_PREFIX):
        return "transformers"
    if ref.startswith("hf-hub:"):
        return "open_clip"
    if Path(ref).expanduser().is_dir() or "/" in ref:
        return "transformers"
    return "open_clip"


def load_transformers_clip(model_ref: str, device: str = "cpu") -> TransformersClipScorer:
    """Load a transformers CLIP-style model (folder or hub id) for scoring, never downloading."""
    from transformers import AutoModel, AutoProcessor

    from training.detectors.weights import WeightsNotFound, checkpoint_folder, weights_sha256
    from training.upsample import from_pretrained_cached_first

    ref = model_ref.strip().removeprefix(TRANSFORMERS_PREFIX)
    try:
        folder = checkpoint_folder(ref)
        weights = weights_sha256(folder)
    except WeightsNotFound as exc:
        raise ClipWeightsMissing(f"transformers CLIP model: {exc}") from exc
    try:
        processor = from_pretrained_cached_first(AutoProcessor.from_pretrained, str(folder))
        model = from_pretrained_cached_first(AutoModel.from_pretrained, str(folder))
    except (OSError, ValueError) as exc:
        raise ClipWeightsMissing(f"{ref!r} could not be loaded as a transformers CLIP model: {exc}") from exc
    if not (hasattr(model, "get_text_features") and hasattr(model, "get_image_features")):
        raise ClipWeightsMissing(
            f"{ref!r} is a {model.config.model_type!r} model, not an image/text dual encoder such as CLIPModel"
        )
    model.to(device).eval()
    text_config = getattr(model.config, "text_config", model.config)
    context = int(text_config.max_position_embeddings)
    name = str(folder) if Path(ref).expanduser().is_dir() else ref
    return TransformersClipScorer(
        model, processor, torch.device(device), name, f"sha256:{weights[:16]}", context
    )


def load_clip(model_name: str = DEFAULT_MODEL, pretrained: str = "openai", device: str = "cpu") -> ClipScorer:
    """Load a CLIP model for scoring from a tag already on disk or a local checkpoint.

    ``model_name`` picks the backend (:func:`clip_backend`): an open_clip name with ``pretrained``
    (tag or checkpoint file), or a transformers folder / hub id (``pretrained`` is then unused:
    the weights are the checkpoint's, identified by their hash).
    """
    if clip_backend(model_name) == "transformers":
        return load_transformers_clip(model_name, device=device)
    import open_clip

    checkpoint, extra = resolve_weights(model_name, pretrained)
    model, _, preprocess = open_clip.create_model_and_transforms(
        model_name, pretrained=checkpoint, device=device, **extra
    )
    model.eval()
    tokenizer = open_clip.get_tokenizer(model_name)
    context = int(getattr(tokenizer, "context_length", None) or getattr(model, "context_length", 77))
    return OpenClipScorer(model, preprocess, tokenizer, torch.device(device), model_name, pretrained, context)


def build_tiny_clip(out_dir: str | Path, seed: int = 0) -> tuple[str, Path]:
    """A tiny random open_clip model saved as ``(model_name, checkpoint_path)``, built offline.

    The folder holds ``RECAP-tiny-CLIP.json`` (the architecture) and ``RECAP-tiny-CLIP.pt``
    (a plain state dict); ``load_clip(name, str(path))`` loads it through open_clip's own
    ``create_model(name, pretrained=path)``, the path users take with real local weights.
    Scores from it are meaningless numbers in the right range; they test plumbing only.
    """
    import open_clip

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = out / f"{TINY_CLIP_NAME}.json"
    config.write_text(json.dumps(TINY_CLIP_CONFIG, indent=2) + "\n")
    open_clip.add_model_config(config)
    torch.manual_seed(seed)
    model = open_clip.create_model(TINY_CLIP_NAME, pretrained=None)
    checkpoint = out / f"{TINY_CLIP_NAME}.pt"
    torch.save(model.state_dict(), checkpoint)
    return TINY_CLIP_NAME, checkpoint


LONGCLIP_POSITIONS = 248  # LongCLIP's stretched text position table (Zhang et al. 2024)


def build_tiny_longclip(out_dir: str | Path, seed: int = 0) -> Path:
    """A tiny random transformers ``CLIPModel`` with 248 text positions (LongCLIP-style), offline.

    The folder is an ordinary ``save_pretrained`` checkpoint (config, safetensors, a
    ``CLIPProcessor`` with the real CLIP BPE tokenizer and a 32-pixel image processor), so
    ``load_clip(str(folder))`` loads it the way a real LongCLIP conversion loads. Scores are
    meaningless; the tests check plumbing and that 78–248-token texts are not truncated.
    """
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from training.tiny_sd import build_clip_tokenizer

    torch.manual_seed(seed)
    tokenizer = build_clip_tokenizer(model_max_length=LONGCLIP_POSITIONS)
    layers = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
    config = CLIPConfig(
        text_config={**layers, "max_position_embeddings": LONGCLIP_POSITIONS, "vocab_size": len(tokenizer)},
        vision_config={**layers, "image_size": 32, "patch_size": 8},
        projection_dim=32,
    )
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    CLIPModel(config).save_pretrained(out)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out)
    return out
