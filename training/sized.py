"""Random-weight models at real architecture sizes, built offline from configs kept here as data.

Why: a GPU benchmark needs the FLOPs, memory traffic and kernel shapes of the models users run
(BLIP-base/-large, a Qwen2-VL-2B VLM, Stable Diffusion 1.5), and a random-weight model of the
same architecture costs exactly what a trained one costs per token or per step. This machine
(and a lent GPU machine) cannot download weights, so each architecture is written down here,
like open_clip keeps its model configs: ``training/model_configs/*.json`` holds the sizes of the
published checkpoint (layers, widths, vocabulary, image size) and its published parameter count,
which ``tests/test_sized_models.py`` checks against a model built on the meta device.

The tokenizers are the tiny ones of :mod:`training.tiny` (trained on a caption-like corpus),
padded with filler tokens to the real vocabulary size, so embedding and output layers have their
real size and every id a model can generate decodes; SD's tokenizer is the real CLIP BPE. Images
go through the family's real processor settings (384 px for BLIP, 14-pixel patches merged 2x2
for Qwen2-VL, 512 px for SD). ``fixed_new_tokens`` writes ``min_new_tokens`` into the generation
config, so a benchmark's captions all have the length it asks for (random weights would stop at
a random end token).

    python -m training.tiny --family blip --size base --out DIR   # or: recap-studio models tiny --size base
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).with_name("model_configs")
SIZES = ("base", "large")
#: (family, size) -> config file; a family lists only the sizes it has
SIZED: dict[tuple[str, str], str] = {
    ("blip", "base"): "blip-base.json",
    ("blip", "large"): "blip-large.json",
    ("qwen2_vl", "base"): "qwen2-vl-2b.json",
    ("sd", "base"): "sd15.json",
}


class SizeError(ValueError):
    """A family / size pair with no config here; the message lists what exists."""


@dataclass(frozen=True)
class SizedSpec:
    family: str
    size: str
    path: Path
    data: dict[str, Any]

    @property
    def dtype(self) -> str:
        return str(self.data.get("dtype", "float32"))


def available() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for family, size in SIZED:
        out.setdefault(family, []).append(size)
    return out


#: the depth keys cut by ``layers`` (tests: real widths and vocabulary, fewer layers)
DEPTH_KEYS = ("num_hidden_layers", "depth", "max_window_layers")


def spec(family: str, size: str, layers: int | None = None) -> SizedSpec:
    """The config of ``family`` at ``size`` (``base`` / ``large``), or a :class:`SizeError`;
    ``layers`` cuts every captioner stack to that many layers (for tests)."""
    name = SIZED.get((family, size))
    if name is None:
        listed = "; ".join(f"{f}: {', '.join(s)}" for f, s in available().items())
        raise SizeError(f"no {size!r} size of family {family!r} is kept here (real sizes: {listed})")
    path = CONFIG_DIR / name
    data = json.loads(path.read_text(encoding="utf-8"))
    if layers is not None and "config" in data:
        for part in data["config"].values():
            if isinstance(part, dict):
                part.update({k: int(layers) for k in DEPTH_KEYS if k in part})
    return SizedSpec(family, size, path, data)


def _torch_dtype(name: str) -> Any:
    import torch

    return getattr(torch, name)


def pad_vocab(vocab: dict[str, int], size: int, filler: str) -> dict[str, int]:
    """``vocab`` grown to ``size`` ids with filler tokens (``filler.format(i)``), ids unchanged."""
    if len(vocab) > size:
        raise SizeError(f"the trained vocabulary has {len(vocab)} tokens, more than the model's {size}")
    out = dict(vocab)
    i = 0
    while len(out) < size:
        token = filler.format(i)
        if token not in out:
            out[token] = len(out)
        i += 1
    return out


# --------------------------------------------------------------------------- configs and models


def blip_parts(s: SizedSpec) -> tuple[Any, Any]:
    """(config, processor) of a BLIP captioner at ``s``'s size."""
    from transformers import BertTokenizer, BlipConfig, BlipImageProcessor, BlipProcessor

    from training.tiny import train_wordpiece

    text = dict(s.data["config"]["text_config"])
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "[ENC]"]
    vocab = pad_vocab(train_wordpiece(specials), int(text["vocab_size"]), "[unused{}]")
    tokenizer = BertTokenizer(vocab=vocab, bos_token="[DEC]", extra_special_tokens=["[ENC]"])
    side = int(s.data["image_size"])
    processor = BlipProcessor(
        image_processor=BlipImageProcessor(size={"height": side, "width": side}), tokenizer=tokenizer
    )
    text.update(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.sep_token_id,
        sep_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    rest = {k: v for k, v in s.data["config"].items() if k not in ("text_config", "vision_config")}
    config = BlipConfig(text_config=text, vision_config=dict(s.data["config"]["vision_config"]), **rest)
    return config, processor


QWEN_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


def qwen2_vl_parts(s: SizedSpec) -> tuple[Any, Any]:
    """(config, processor) of a Qwen2-VL model at ``s``'s size."""
    import transformers as tf

    from training.tiny import QWEN_CHAT_TEMPLATE, train_byte_level_bpe

    text = dict(s.data["config"]["text_config"])
    vocab, merges = train_byte_level_bpe(QWEN_SPECIALS)
    vocab = pad_vocab(vocab, int(text["vocab_size"]), "<|extra_{}|>")
    tokenizer = tf.Qwen2Tokenizer(vocab=vocab, merges=merges, extra_special_tokens=QWEN_SPECIALS[1:])
    pixels = dict(s.data["image_processor"])
    processor = tf.Qwen2VLProcessor(
        image_processor=tf.Qwen2VLImageProcessor(**pixels),
        tokenizer=tokenizer,
        video_processor=tf.Qwen2VLVideoProcessor(**pixels),
        chat_template=QWEN_CHAT_TEMPLATE,
    )
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in QWEN_SPECIALS}
    text.update(
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"]
    )
    rest = {k: v for k, v in s.data["config"].items() if k not in ("text_config", "vision_config")}
    config = tf.Qwen2VLConfig(
        text_config=tf.Qwen2VLTextConfig(**text),
        vision_config=tf.Qwen2VLVisionConfig(**s.data["config"]["vision_config"]),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        **rest,
    )
    return config, processor


def captioner_model(s: SizedSpec, config: Any) -> Any:
    from transformers import BlipForConditionalGeneration, Qwen2VLForConditionalGeneration

    cls = {"blip": BlipForConditionalGeneration, "qwen2_vl": Qwen2VLForConditionalGeneration}[s.family]
    return cls(config)


def sd_modules(s: SizedSpec) -> dict[str, Any]:
    """The SD pipeline's learned modules at ``s``'s size (on the current default device)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from training.tiny_sd import build_clip_tokenizer

    tokenizer = build_clip_tokenizer()
    text = CLIPTextConfig(
        **s.data["text_encoder"],
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return {
        "tokenizer": tokenizer,
        "unet": UNet2DConditionModel(**s.data["unet"]),
        "vae": AutoencoderKL(**s.data["vae"]),
        "text_encoder": CLIPTextModel(text),
    }


def parameter_counts(family: str, size: str) -> dict[str, int]:
    """Parameters of each learned module, counted on the meta device (no memory, no init time)."""
    import torch

    s = spec(family, size)
    with torch.device("meta"):
        if s.family == "sd":
            modules = {k: v for k, v in sd_modules(s).items() if k != "tokenizer"}
        else:
            config, _ = (blip_parts if s.family == "blip" else qwen2_vl_parts)(s)
            modules = {"model": captioner_model(s, config)}
    return {name: sum(p.numel() for p in m.parameters()) for name, m in modules.items()}


# --------------------------------------------------------------------------- building


def build_sized(
    family: str,
    size: str,
    out_dir: str | Path,
    seed: int = 0,
    device: str = "cpu",
    fixed_new_tokens: int = 0,
    layers: int | None = None,
) -> Path:
    """Build ``family`` at ``size`` with random weights into ``out_dir`` (``save_pretrained``
    layout, loadable by ``from_pretrained`` / :func:`training.adapters.load_captioner` /
    ``StableDiffusionPipeline.from_pretrained``) and return the folder.

    ``device`` is where the weights are initialised (``cuda`` initialises a 2B model in a second
    instead of a minute); they are saved in the dtype of the published checkpoint. ``layers``
    (tests) cuts the captioner's stacks to that many layers, widths and vocabulary kept.
    """
    import torch

    s = spec(family, size, layers)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    dtype = _torch_dtype(s.dtype)
    if s.family == "sd":
        from diffusers import DDIMScheduler, StableDiffusionPipeline

        from training.tiny_sd import _SD_SCHEDULE

        with torch.device(device):
            parts = sd_modules(s)
        pipe = StableDiffusionPipeline(
            vae=parts["vae"].to(dtype),
            text_encoder=parts["text_encoder"].to(dtype),
            tokenizer=parts["tokenizer"],
            unet=parts["unet"].to(dtype),
            scheduler=DDIMScheduler(**_SD_SCHEDULE),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        pipe.save_pretrained(out)
    else:
        config, processor = (blip_parts if s.family == "blip" else qwen2_vl_parts)(s)
        with torch.device(device):
            model = captioner_model(s, config).to(dtype)
        generation = model.generation_config
        if s.family == "qwen2_vl":
            generation.eos_token_id = [config.text_config.eos_token_id, config.text_config.bos_token_id]
            generation.pad_token_id = config.text_config.pad_token_id
        if fixed_new_tokens:
            generation.min_new_tokens = int(fixed_new_tokens)
        model.save_pretrained(out)
        processor.save_pretrained(out)
    (out / "recap_sized.json").write_text(
        json.dumps(
            {"family": family, "size": size, "config": s.path.name, "seed": seed, "shape_of": s.data["shape_of"],
             "random_weights": True, "fixed_new_tokens": fixed_new_tokens, "layers": layers},
            indent=1,
        )
        + "\n",
        encoding="utf-8",
    )  # fmt: skip
    return out
