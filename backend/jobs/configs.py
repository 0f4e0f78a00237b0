"""Run configurations of the model jobs: their keys, defaults and validation, in one place.

Why here: the CLI, the Runs tab and the jobs themselves must agree on one contract. The
studio builds a config with :func:`make_config` (defaults + the user's values, validated,
with clear errors) and stores exactly these keys in ``Run.config``; a job reads it back with
:func:`parse_config`, which fills keys an older run lacks from today's defaults.

Kinds: ``captioner_train`` (fine-tune a captioner on approved human captions),
``recaption`` (write ``recap_short`` / ``recap_long`` captions), ``clip_score`` (score
caption variants with open_clip), ``t2i_train`` (fine-tune a Stable Diffusion pipeline on a
caption mix), ``generate`` (prompt sets × checkpoints × seeds, optionally upsampled) and
``t2i_eval`` (CLIP-S, R-precision, FID/KID of generated images). All want the GPU (the queue
runs one at a time).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.caption_mix import DEFAULT_FALLBACK, parse_mix
from backend.jobs import store
from backend.jobs.models import Run
from backend.references import ArtifactKind, resolve_reference
from backend.workspace import Workspace

STYLES = ("short", "long", "both")
BOTH_MODES = ("separate", "prompt")
MIXED_PRECISION = ("no", "fp16", "bf16", "auto")  # auto: mixed precision only on a GPU (training.devices)
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "float16", "bfloat16")
CAPTION_KINDS_FOR_STYLE = {
    "short": ("recap_short",),
    "long": ("recap_long",),
    "both": ("recap_short", "recap_long"),
}

DEFAULT_CAPTIONER_BASE = "Salesforce/blip-image-captioning-base"
CAPTIONER_ARTIFACT = ArtifactKind.captioner  # Artifact.kind of fine-tuned captioners (kept importable)



class ConfigError(store.JobError, ValueError):
    """A run configuration that cannot run; the message says which field and why."""


# --------------------------------------------------------------------------- the schemas


@dataclass
class CaptionerTrainConfig:
    """``captioner_train``: fine-tune ``base`` on the approved human captions of ``dataset``.

    ``style="both"`` trains two models (``both_mode="separate"``, as RECAP did) or one
    model with a style prompt (``"prompt"``, like Florence-2 / PaliGemma task prefixes).
    Validation runs every ``eval_every`` optimizer steps and at the end of training.
    """

    dataset: str = ""
    base: str = DEFAULT_CAPTIONER_BASE
    style: str = "short"
    both_mode: str = "separate"
    lora: bool = False
    lora_rank: int = 16
    freeze_vision: bool = False
    lr: float = 5e-5
    epochs: int = 3
    batch_size: int = 8
    grad_accum: int = 1
    mixed_precision: str = "no"
    seed: int = 0
    val_fraction: float = 0.1
    eval_every: int = 50
    max_new_tokens: int = 0  # validation captions; 0 = per style: DEFAULT_MAX_NEW_TOKENS
    device: str = "auto"
    # optional CLIP score of the validation captions at each evaluation (open_clip model name
    # + pretrained tag or local checkpoint); empty = off, so no CLIP weights are needed to train
    clip_model: str = ""
    clip_pretrained: str = ""
    torch_threads: int = 0  # CPU threads for torch; 0 = one per core (OMP_NUM_THREADS wins if set)

    def validate(self) -> None:
        _require_name("dataset", self.dataset)
        _require_name("base", self.base, "a hub id, a local folder or a captioner artifact")
        _choice("style", self.style, STYLES)
        _choice("both_mode", self.both_mode, BOTH_MODES)
        _at_least("lora_rank", self.lora_rank, 1)
        _positive_float("lr", self.lr)
        if self.lr >= 1:
            raise ConfigError(f"lr must be below 1 (got {self.lr}); typical values are 1e-5 to 1e-3")
        _at_least("epochs", self.epochs, 1)
        _at_least("batch_size", self.batch_size, 1)
        _at_least("grad_accum", self.grad_accum, 1)
        _choice("mixed_precision", self.mixed_precision, MIXED_PRECISION)
        _at_least("seed", self.seed, 0)
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be between 0 and 1, exclusive (got {self.val_fraction})")
        _at_least("eval_every", self.eval_every, 1)
        _between("max_new_tokens", self.max_new_tokens, 0, 4096)
        _choice("device", self.device, DEVICES)


#: token limit per caption style when ``max_new_tokens`` is 0. Long captions (every object, count,
#: position, colour, text, background) run to a few hundred tokens; a limit of 128 cut them mid-
#: sentence, so long gets 384. Each caption records whether it hit its limit (provenance
#: ``hit_token_limit``), and Review shows the share.
DEFAULT_MAX_NEW_TOKENS = {"short": 128, "long": 384}


def max_new_tokens_for(style: str, configured: int) -> int:
    """The token limit of captions of ``style`` ("short" or "long"): ``configured``, or the
    style's default (:data:`DEFAULT_MAX_NEW_TOKENS`) when it is 0."""
    return configured if configured else DEFAULT_MAX_NEW_TOKENS[style]


@dataclass
class RecaptionConfig:
    """``recaption``: caption every image of ``dataset`` with ``captioner``.

    Writes ``recap_short`` and/or ``recap_long`` (see :data:`CAPTION_KINDS_FOR_STYLE`);
    ``prompt`` overrides the captioner's own prompt (chat VLMs, style-prompted models).
    ``max_new_tokens`` 0 means each style's own limit (:data:`DEFAULT_MAX_NEW_TOKENS`); a
    number applies to both styles.
    """

    dataset: str = ""
    captioner: str = ""
    style: str = "short"
    prompt: str | None = None
    batch_size: int = 16
    num_workers: int = 2
    max_new_tokens: int = 0  # 0 = per style: DEFAULT_MAX_NEW_TOKENS
    num_beams: int = 1
    dtype: str = "auto"
    device: str = "auto"
    # CPU threads for torch; 0 = cores left after the DataLoader workers (OMP_NUM_THREADS wins if set)
    torch_threads: int = 0

    def validate(self) -> None:
        _require_name("dataset", self.dataset)
        _require_name("captioner", self.captioner, "a captioner artifact, a hub id or a local folder")
        _choice("style", self.style, STYLES)
        if self.prompt is not None and not isinstance(self.prompt, str):
            raise ConfigError("prompt must be text or empty")
        _between("batch_size", self.batch_size, 1, 4096)
        _between("num_workers", self.num_workers, 0, 64)
        _between("max_new_tokens", self.max_new_tokens, 0, 4096)
        _between("num_beams", self.num_beams, 1, 64)
        _choice("dtype", self.dtype, DTYPES)
        _choice("device", self.device, DEVICES)


@dataclass
class ClipScoreConfig:
    """``clip_score``: 100 × cosine(image, caption) for each caption of the given kinds."""

    dataset: str = ""
    kinds: list[str] = field(default_factory=lambda: ["alttext", "recap_short", "recap_long"])
    model: str = "ViT-B-32"
    pretrained: str = "openai"
    batch_size: int = 64  # captions per forward pass (one write transaction each)
    device: str = "auto"
    torch_threads: int = 0  # CPU threads for torch; 0 = one per core (OMP_NUM_THREADS wins if set)

    def validate(self) -> None:
        _require_name("dataset", self.dataset)
        if not isinstance(self.kinds, list) or not self.kinds:
            raise ConfigError("kinds must name at least one caption kind (e.g. alttext,recap_long)")
        for kind in self.kinds:
            if not isinstance(kind, str) or not kind.strip():
                raise ConfigError(f"kinds holds an empty or non-text entry: {kind!r}")
        if len(set(self.kinds)) != len(self.kinds):
            raise ConfigError(f"kinds lists a kind twice: {self.kinds}")
        _require_name("model", self.model, "an open_clip model name such as ViT-B-32")
        _require_name("pretrained", self.pretrained, "an open_clip pretrained tag or a local checkpoint")
        _between("batch_size", self.batch_size, 1, 4096)
        _choice("device", self.device, DEVICES)


T2I_TRAIN_TARGETS = ("unet", "text_encoder", "both")
LONG_CAPTIONS = ("truncate", "chunk")
PROMPT_REGIMES = ("raw", "upsampled", "both")
T2I_ARTIFACT = ArtifactKind.t2i  # Artifact.kind of fine-tuned text-to-image pipelines (kept importable)
DEFAULT_T2I_BASE = "stable-diffusion-v1-5/stable-diffusion-v1-5"
DEFAULT_VALIDATION_PROMPTS = [
    "a red cube to the left of a blue sphere",
    "three yellow triangles on a white background",
    "a small green circle above a large purple square",
]
DEFAULT_UPSAMPLE_TEMPLATE = (
    "Rewrite the short image prompt into one detailed, literal description of the image: "
    "name every object with its colour, size, count and position, and the background. "
    "Do not add objects that the prompt does not imply.\n"
    "Short prompt: {prompt}\n"
    "Detailed description:"
)


@dataclass
class T2ITrainConfig:
    """``t2i_train``: fine-tune a Stable Diffusion pipeline on ``dataset`` with a caption mix.

    ``mix`` is a preset or weights (see :func:`backend.caption_mix.parse_mix`), drawn per
    example per step; ``empty_prob`` drops the caption for classifier-free guidance.
    ``fallback`` (empty by default: opt in) orders the kinds used for images that have none
    of the mix's kinds; without one such images train with the empty caption, counted as
    ``empty:missing``, so a control such as ``alttext`` never sees another kind.
    ``resolution`` 0 is the base pipeline's own size (UNet ``sample_size`` × VAE scale
    factor, as diffusers pipelines default ``height``/``width``); validation images use it too.
    ``train`` picks the weights that learn (RECAP's RQ4): the UNet, the text encoder or both,
    fully or as LoRA adapters, each with its own learning rate.
    """

    dataset: str = ""
    base: str = DEFAULT_T2I_BASE
    mix: str = "recap_mix"
    empty_prob: float = 0.05
    fallback: list[str] = field(default_factory=lambda: list(DEFAULT_FALLBACK))
    train: str = "unet"
    lora: bool = False
    lora_rank: int = 4
    lr_unet: float = 1e-5
    lr_text_encoder: float = 5e-6
    steps: int = 1000
    batch_size: int = 4
    grad_accum: int = 1
    resolution: int = 0  # 0 = the base pipeline's own size
    center_crop: bool = True
    random_flip: bool = False
    ema: bool = False
    ema_decay: float = 0.9999
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    use_8bit_adam: bool = False
    seed: int = 0
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    cache_latents: bool = False
    long_captions: str = "truncate"  # or "chunk": encode 75-token windows and concatenate
    max_chunks: int = 3
    validation_prompts: list[str] = field(default_factory=lambda: list(DEFAULT_VALIDATION_PROMPTS))
    validation_every: int = 500
    validation_seed: int = 0
    validation_inference_steps: int = 20
    guidance_scale: float = 7.5
    num_workers: int = 2
    device: str = "auto"
    torch_threads: int = 0

    def validate(self) -> None:
        _require_name("dataset", self.dataset)
        _require_name("base", self.base, "a t2i artifact, a local pipeline folder or a hub id")
        try:
            parse_mix(self.mix, empty_prob=self.empty_prob, fallback=self.fallback)
        except ValueError as exc:
            raise ConfigError(f"mix: {exc}") from None
        _choice("train", self.train, T2I_TRAIN_TARGETS)
        _at_least("lora_rank", self.lora_rank, 1)
        for name in ("lr_unet", "lr_text_encoder"):
            value = getattr(self, name)
            _positive_float(name, value)
            if value >= 1:
                raise ConfigError(f"{name} must be below 1 (got {value}); typical values are 1e-6 to 1e-4")
        _between("steps", self.steps, 1, 10_000_000)
        _between("batch_size", self.batch_size, 1, 4096)
        _at_least("grad_accum", self.grad_accum, 1)
        if self.resolution and (self.resolution % 8 or not 8 <= self.resolution <= 4096):
            raise ConfigError(
                "resolution must be 0 (the base pipeline's own size) or a multiple of 8 (the VAE's "
                f"scale factor) up to 4096, got {self.resolution}"
            )
        if not 0 < self.ema_decay < 1:
            raise ConfigError(f"ema_decay must be between 0 and 1, exclusive (got {self.ema_decay})")
        _choice("mixed_precision", self.mixed_precision, MIXED_PRECISION)
        _at_least("seed", self.seed, 0)
        _at_least("checkpoint_every", self.checkpoint_every, 1)
        _at_least("keep_checkpoints", self.keep_checkpoints, 1)
        _choice("long_captions", self.long_captions, LONG_CAPTIONS)
        _between("max_chunks", self.max_chunks, 1, 16)
        _at_least("validation_every", self.validation_every, 1)
        _at_least("validation_seed", self.validation_seed, 0)
        _between("validation_inference_steps", self.validation_inference_steps, 1, 1000)
        if self.guidance_scale < 0:
            raise ConfigError(f"guidance_scale must be 0 or more (got {self.guidance_scale})")
        _between("num_workers", self.num_workers, 0, 64)
        _choice("device", self.device, DEVICES)


@dataclass
class GenerateConfig:
    """``generate``: prompts × checkpoints × seeds → images stored with full provenance.

    ``prompts`` is a shipped set's name (``assets/prompts``) or a PartiPrompts TSV, DrawBench
    CSV, CSV or TXT file. ``regime`` generates from the raw prompts, from prompts rewritten by
    the ``upsampler`` language model (DALL-E 3 §3.5, stored as caption kind ``upsampled``), or
    both. Images land in dataset ``output_dataset`` (default ``generated-run-<id>``).
    ``safety_checker`` false (the default) generates every checkpoint without a safety checker,
    as trained pipelines are saved (a hub baseline's own checker would black out its images
    alone); true screens the images of every checkpoint with one checker, the one of the first
    checkpoint that ships it. Each image's provenance records which (or none) and whether it
    was blacked out.
    """

    prompts: str = "studio_prompts"
    checkpoints: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])
    regime: str = "raw"
    upsampler: str = ""
    upsample_template: str = DEFAULT_UPSAMPLE_TEMPLATE
    upsample_max_new_tokens: int = 77
    category: str = ""  # only prompts of this category; empty = all
    max_prompts: int = 0  # 0 = all
    inference_steps: int = 30
    guidance_scale: float = 7.5
    resolution: int = 0  # 0 = the pipeline's own size
    batch_size: int = 4
    output_dataset: str = ""
    safety_checker: bool = False
    dtype: str = "auto"
    device: str = "auto"
    torch_threads: int = 0

    def validate(self) -> None:
        _require_name("prompts", self.prompts, "a shipped prompt set's name or a prompt file")
        if not self.checkpoints:
            raise ConfigError(
                "checkpoints must name at least one t2i artifact, local pipeline folder or hub id"
            )
        for ref in self.checkpoints:
            _require_name("checkpoints", ref)
        if not self.seeds:
            raise ConfigError("seeds must list at least one seed (e.g. 0,1,2)")
        for seed in self.seeds:
            _at_least("seeds", seed, 0)
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds lists a seed twice: {self.seeds}")
        _choice("regime", self.regime, PROMPT_REGIMES)
        if self.regime != "raw" and not self.upsampler:
            raise ConfigError(
                f"regime {self.regime!r} needs an upsampler (a causal language model: hub id or local folder)"
            )
        if self.regime != "raw" and "{prompt}" not in self.upsample_template:
            raise ConfigError("upsample_template must contain {prompt} where the short prompt goes")
        _between("upsample_max_new_tokens", self.upsample_max_new_tokens, 1, 1024)
        _at_least("max_prompts", self.max_prompts, 0)
        _between("inference_steps", self.inference_steps, 1, 1000)
        if self.guidance_scale < 0:
            raise ConfigError(f"guidance_scale must be 0 or more (got {self.guidance_scale})")
        if self.resolution and (self.resolution % 8 or not 8 <= self.resolution <= 4096):
            raise ConfigError(
                f"resolution must be 0 (model default) or a multiple of 8 up to 4096 (got {self.resolution})"
            )
        _between("batch_size", self.batch_size, 1, 1024)
        _choice("dtype", self.dtype, DTYPES)
        _choice("device", self.device, DEVICES)


@dataclass
class T2IEvalConfig:
    """``t2i_eval``: automatic metrics of the generated images of ``dataset``, per checkpoint × regime.

    CLIP-S (100 × cosine with the prompt) and CLIP R-precision (is the image's own prompt the
    best match against 99 random other prompts of the set, the standard protocol; ``r_precision_all``
    ranks it among all prompts of the set) with open_clip ``clip_model``/``clip_pretrained``;
    FID and KID against the images of ``reference_dataset`` with a declared feature
    ``extractor`` whose weights are a local file (nothing is downloaded).
    """

    dataset: str = ""
    metrics: list[str] = field(default_factory=lambda: ["clip_score", "r_precision"])
    clip_model: str = "ViT-B-32"
    clip_pretrained: str = "openai"
    reference_dataset: str = ""
    extractor: str = "inception"
    extractor_weights: str = ""
    kid_subset_size: int = 1000
    batch_size: int = 32
    device: str = "auto"
    torch_threads: int = 0

    def validate(self) -> None:
        _require_name("dataset", self.dataset, "the dataset of generated images (generated-run-<id>)")
        if not self.metrics:
            raise ConfigError(f"metrics must name at least one of {', '.join(EVAL_METRICS)}")
        for metric in self.metrics:
            _choice("metrics", metric, EVAL_METRICS)
        if len(set(self.metrics)) != len(self.metrics):
            raise ConfigError(f"metrics lists a metric twice: {self.metrics}")
        if {"fid", "kid"} & set(self.metrics) and not self.reference_dataset:
            raise ConfigError("fid/kid need reference_dataset: a dataset of real images to compare with")
        _require_name("clip_model", self.clip_model)
        _require_name("clip_pretrained", self.clip_pretrained)
        _choice("extractor", self.extractor, FID_EXTRACTORS)
        _at_least("kid_subset_size", self.kid_subset_size, 2)
        _between("batch_size", self.batch_size, 1, 4096)
        _choice("device", self.device, DEVICES)


EVAL_METRICS = ("clip_score", "r_precision", "r_precision_all", "fid", "kid")
FID_EXTRACTORS = ("inception", "clip")  # torchvision Inception-v3 pool features, or the open_clip image embedding


SCHEMAS: dict[str, type] = {
    "captioner_train": CaptionerTrainConfig,
    "recaption": RecaptionConfig,
    "clip_score": ClipScoreConfig,
    "t2i_train": T2ITrainConfig,
    "generate": GenerateConfig,
    "t2i_eval": T2IEvalConfig,
}
NEEDS_GPU: dict[str, bool] = {kind: True for kind in SCHEMAS}
DEFAULTS: dict[str, dict[str, Any]] = {kind: dataclasses.asdict(cls()) for kind, cls in SCHEMAS.items()}


# --------------------------------------------------------------------------- building / reading


def make_config(kind: str, values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Defaults of ``kind`` overridden by ``values``, type-checked and validated.

    Unknown keys are refused (a typo must not silently fall back to a default). Returns
    the plain dict to store in ``Run.config``: exactly the schema's keys.
    """
    return dataclasses.asdict(_build(kind, dict(values or {})))


def parse_config(kind: str, config: Mapping[str, Any]) -> Any:
    """The typed, validated config of a stored run (for the job that executes it).

    Keys the run lacks (it was created by an older studio) take today's defaults; keys it
    has that the schema no longer knows are refused, so a job never ignores a setting.
    """
    return _build(kind, dict(config))


def _build(kind: str, values: dict[str, Any]) -> Any:
    cls = schema(kind)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{kind}: unknown setting(s) {', '.join(unknown)} (known: {', '.join(fields)})")
    merged = {**DEFAULTS[kind], **values}
    instance = cls(**{name: _coerce(kind, name, merged[name], f.type) for name, f in fields.items()})
    instance.validate()
    return instance


def schema(kind: str) -> type:
    try:
        return SCHEMAS[kind]
    except KeyError:
        raise ConfigError(f"unknown run kind {kind!r} (known: {', '.join(SCHEMAS)})") from None


def _coerce(kind: str, name: str, value: Any, annotation: Any) -> Any:
    """Accept what forms and command lines send (3.0 for an int, "1e-4" for a float)."""
    text = str(annotation)
    where = name
    if text == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ConfigError(f"{where} must be true or false (got {value!r})")
    if text == "int":
        if isinstance(value, bool):
            raise ConfigError(f"{where} must be a whole number (got {value!r})")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where} must be a whole number (got {value!r})") from None
        if not math.isfinite(number) or number != int(number):
            raise ConfigError(f"{where} must be a whole number (got {value!r})")
        return int(number)
    if text == "float":
        if isinstance(value, bool):
            raise ConfigError(f"{where} must be a number (got {value!r})")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where} must be a number (got {value!r})") from None
        if not math.isfinite(number):
            raise ConfigError(f"{where} must be a finite number (got {value!r})")
        return number
    if text == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be text (got {value!r})")
        return value.strip()
    if text == "str | None":
        if value is None:
            return None
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be text or empty (got {value!r})")
        return value if value.strip() else None
    if text == "list[int]":
        if isinstance(value, str):
            value = [part for part in (p.strip() for p in value.split(",")) if part]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list of whole numbers (got {value!r})")
        return [_coerce(kind, name, v, "int") for v in value]
    if text == "list[str]":
        if isinstance(value, str):
            value = [part for part in (p.strip() for p in value.split(",")) if part]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list of names (got {value!r})")
        return [str(v).strip() for v in value]
    return value


def _require_name(name: str, value: str, what: str = "") -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name} is required" + (f": {what}" if what else ""))


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)} (got {value!r})")


def _at_least(name: str, value: int, low: int) -> None:
    if value < low:
        raise ConfigError(f"{name} must be at least {low} (got {value})")


def _between(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high} (got {value})")


def _positive_float(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{name} must be greater than 0 (got {value})")


# --------------------------------------------------------------------------- workspace checks


def resolve_model_reference(
    ws: Workspace, ref: str, field_name: str, expected: ArtifactKind | None = None
) -> str:
    """The stored form of a model reference: see :func:`backend.references.resolve_reference`."""
    return resolve_reference(ws, ref, expected=expected, field=field_name)


def check_workspace(ws: Workspace, kind: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """What only the workspace can tell: datasets exist, model references and files resolve.

    Returns the config with local paths made absolute (see :func:`resolve_model_reference`).
    """
    checked = dict(config)
    if kind != "generate":
        _check_dataset(ws, "dataset", checked.get("dataset", ""))
    if kind == "captioner_train":
        checked["base"] = resolve_model_reference(ws, checked["base"], "base", CAPTIONER_ARTIFACT)
    elif kind == "recaption":
        checked["captioner"] = resolve_model_reference(
            ws, checked["captioner"], "captioner", CAPTIONER_ARTIFACT
        )
    elif kind == "clip_score":
        checked["pretrained"] = _local_file_or_tag(checked["pretrained"])
    elif kind == "t2i_train":
        checked["base"] = resolve_model_reference(ws, checked["base"], "base", T2I_ARTIFACT)
    elif kind == "generate":
        checked["prompts"] = resolve_prompt_set(ws, checked["prompts"])
        checked["checkpoints"] = [
            resolve_model_reference(ws, ref, "checkpoint", T2I_ARTIFACT) for ref in checked["checkpoints"]
        ]
        if checked.get("upsampler"):
            checked["upsampler"] = resolve_model_reference(
                ws, checked["upsampler"], "upsampler", ArtifactKind.upsampler
            )
    elif kind == "t2i_eval":
        if checked.get("reference_dataset"):
            _check_dataset(ws, "reference_dataset", checked["reference_dataset"])
        checked["clip_pretrained"] = _local_file_or_tag(checked["clip_pretrained"])
        if checked.get("extractor_weights"):
            weights = Path(checked["extractor_weights"]).expanduser()
            if not weights.exists():
                raise ConfigError(f"extractor_weights {checked['extractor_weights']!r} does not exist")
            checked["extractor_weights"] = str(weights.resolve())
    return checked


def _check_dataset(ws: Workspace, field_name: str, name: str) -> None:
    from backend.datasets import dataset_names

    names = dataset_names(ws)
    if name not in names:
        known = ", ".join(names[:20]) or "none yet; import one first"
        raise ConfigError(f"{field_name}: no dataset named {name!r} (datasets: {known})")


def _local_file_or_tag(value: str) -> str:
    """A checkpoint file becomes its absolute path; anything else is an open_clip pretrained tag."""
    local = Path(value).expanduser()
    return str(local.resolve()) if local.is_file() else value


def resolve_prompt_set(ws: Workspace, ref: str) -> str:
    """A shipped prompt set's name as given, or an existing prompt file as its absolute path."""
    from backend.prompt_sets import builtin_prompt_sets

    ref = ref.strip()
    shipped = builtin_prompt_sets()
    if ref in shipped:
        return ref
    for candidate in (Path(ref).expanduser(), ws.home / ref):
        if candidate.is_file():
            return str(candidate.resolve())
    raise ConfigError(
        f"prompts {ref!r} is neither a shipped prompt set ({', '.join(shipped) or 'none'}) nor an "
        "existing file (PartiPrompts TSV, DrawBench CSV, CSV with a prompt column, or TXT)"
    )


def new_run(
    ws: Workspace,
    kind: str,
    values: Mapping[str, Any] | None = None,
    *,
    created_by: int | None = None,
) -> Run:
    """Validate ``values`` for ``kind`` and create the queued run (nothing starts yet).

    The single entry point of the CLI and the Runs tab, so both store the same config.
    """
    config = check_workspace(ws, kind, make_config(kind, values))
    return store.create_run(ws, kind, config, needs_gpu=NEEDS_GPU[kind], created_by=created_by)


def captioner_choices(ws: Workspace) -> list[tuple[str, str]]:
    """(label, value) of every captioner artifact, newest first; the value is what a config stores.

    The value is the artifact's name, or its id where a newer artifact shares that name
    (a name always means the newest one).
    """
    seen: set[str] = set()
    choices = []
    for artifact in store.list_artifacts(ws, kind=CAPTIONER_ARTIFACT):
        value = artifact.name if artifact.name not in seen else str(artifact.id)
        seen.add(artifact.name)
        origin = f"run #{artifact.run_id}" if artifact.run_id is not None else "imported"
        choices.append((f"{artifact.name}  ({origin}, artifact {artifact.id})", value))
    return choices
