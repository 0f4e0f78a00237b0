"""open_clip models by name + pretrained tag or local checkpoint, without ever downloading.

Why this wrapper: open_clip resolves a pretrained *tag* (``ViT-B-32`` / ``openai``) by
downloading, which this machine cannot do and which would hang or fail deep inside a job.
:func:`resolve_weights` looks for the tag's file where open_clip itself would have cached it
(the Hugging Face hub cache, or ``~/.cache/clip`` for URL downloads) and, when it is not
there, raises :class:`ClipWeightsMissing` saying exactly where to put the file or how to pass
a local path. A local checkpoint is passed as ``pretrained=/path/to/file``; if its
architecture is not one open_clip knows, a ``<model_name>.json`` config next to the file is
registered first (that is how :func:`build_tiny_clip` models load, through the same call
users make).

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


@dataclass
class ClipScorer:
    """A loaded open_clip model with its preprocessing and tokenizer, in eval mode."""

    model: torch.nn.Module
    preprocess: Any
    tokenizer: Any
    device: torch.device
    model_name: str
    pretrained: str
    context_length: int

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

    def truncated(self, text: str) -> bool:
        """The caption needs more tokens than the text tower reads (its tail is ignored)."""
        return clip_token_count(text) > self.context_length


def load_clip(model_name: str = DEFAULT_MODEL, pretrained: str = "openai", device: str = "cpu") -> ClipScorer:
    """Load an open_clip model for scoring from a tag already on disk or a local checkpoint."""
    import open_clip

    checkpoint, extra = resolve_weights(model_name, pretrained)
    model, _, preprocess = open_clip.create_model_and_transforms(
        model_name, pretrained=checkpoint, device=device, **extra
    )
    model.eval()
    tokenizer = open_clip.get_tokenizer(model_name)
    context = int(getattr(tokenizer, "context_length", None) or getattr(model, "context_length", 77))
    return ClipScorer(model, preprocess, tokenizer, torch.device(device), model_name, pretrained, context)


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
