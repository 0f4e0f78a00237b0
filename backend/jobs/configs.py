"""Run configurations of the job kinds: their keys, defaults, help and validation, in one place.

Why here: the CLI, the Runs tab and the jobs themselves must agree on one contract. Each kind's
config is a dataclass whose fields are declared with :func:`backend.jobs.schema.opt` — label,
help, group, choices, bounds, what a value refers to — and :data:`KINDS` lists the kinds. The
Runs tab renders its forms and the CLI its options from these declarations, so **adding an
option is one field here** (plus the job code that uses it).

The studio builds a config with :func:`make_config` (defaults + the user's values, coerced by
the field's type, validated, with clear errors) and stores exactly these keys in ``Run.config``;
a job reads it back with :func:`parse_config`, which fills keys an older run lacks from today's
defaults. :func:`new_run` adds the workspace check (datasets exist, model references resolve)
and creates the queued run: the single entry point of the CLI and the Runs tab.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from backend.caption_mix import DEFAULT_FALLBACK, parse_mix
from backend.jobs import store
from backend.jobs.kinds import JobKind, resolve_prompt_set
from backend.jobs.models import Run
from backend.jobs.schema import (
    ConfigError,
    check_field,
    choice,
    coerce,
    exclusive_unit,
    fields_of,
    opt,
    positive_float,
    require_name,
)
from backend.references import ArtifactKind, resolve_reference
from backend.workspace import Workspace

__all__ = ["ConfigError", "KINDS", "make_config", "new_run", "parse_config", "resolve_prompt_set"]

STYLES = ("short", "long", "both")
BOTH_MODES = ("separate", "prompt")
LR_SCHEDULES = ("constant", "cosine")  # captioner_train, t2i_train; the maths is training.lr_schedule.lr_factor
LR_SCHEDULE_HELP = (
    "constant: the learning rate throughout; cosine: decays from it to zero over the optimizer steps "
    "after the warm-up, which usually ends long training runs at a lower loss."
)
LR_WARMUP_HELP = (
    "Optimizer steps over which the learning rate rises linearly to its value (0: none); a short "
    "warm-up keeps the first updates of a fresh optimizer from disturbing the base."
)
MIXED_PRECISION = ("no", "fp16", "bf16", "auto")  # auto: mixed precision only on a GPU (training.devices)
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "float16", "bfloat16")
# the policy of training.devices: an explicit request that cannot be honoured is an error, auto chooses
MIXED_PRECISION_HELP = (
    "fp16 and bf16 need a CUDA GPU (an error without one); auto: bf16 (else fp16) on a GPU, none on the CPU."
)
DTYPE_HELP = "Dtype of the weights; float16 needs a CUDA GPU; auto: bfloat16 (else float16) on a GPU, float32 on the CPU."
CAPTION_KINDS_FOR_STYLE = {
    "short": ("recap_short",),
    "long": ("recap_long",),
    "both": ("recap_short", "recap_long"),
}
CAPTION_KINDS = ("alttext", "human_short", "human_long", "recap_short", "recap_long", "upsampled")

DEFAULT_CAPTIONER_BASE = "Salesforce/blip-image-captioning-base"
CAPTIONER_ARTIFACT = ArtifactKind.captioner  # Artifact.kind of fine-tuned captioners (kept importable)

#: token limit per caption style when ``max_new_tokens`` is 0. Long captions (every object, count,
#: position, colour, text, background) run to a few hundred tokens; a limit of 128 cut them mid-
#: sentence, so long gets 384. Each caption records whether it hit its limit (provenance
#: ``hit_token_limit``), and Review shows the share.
DEFAULT_MAX_NEW_TOKENS = {"short": 128, "long": 384}


def max_new_tokens_for(style: str, configured: int) -> int:
    """The token limit of captions of ``style`` ("short" or "long"): ``configured``, or the
    style's default (:data:`DEFAULT_MAX_NEW_TOKENS`) when it is 0."""
    return configured if configured else DEFAULT_MAX_NEW_TOKENS[style]


# --------------------------------------------------------------------------- options several kinds share


def _device() -> Any:
    return opt(
        "auto",
        label="Device",
        help="Where the job runs: cuda needs a GPU (an error without one); auto takes the GPU when there is one.",
        choices=DEVICES,
    )


def _threads(help: str = "CPU threads for torch; 0 = one per core (OMP_NUM_THREADS wins if set).") -> Any:  # noqa: A002
    return opt(0, label="CPU threads for torch (0 = automatic)", help=help, group="advanced", minimum=0)


def _processes() -> Any:
    return opt(
        1,
        label="Processes (one per GPU; DDP under accelerate launch)",
        help="Training processes under accelerate launch (DDP): one per GPU, or CPU processes with device "
        "cpu; 1 = a single process. batch_size is the global batch, split across them.",
        group="advanced",
        minimum=1,
        maximum=64,
    )


def check_processes(batch_size: int, processes: int) -> None:
    """Every process trains on a slice of the global batch: it needs at least one example each."""
    if batch_size < processes:
        raise ConfigError(
            f"batch_size {batch_size} is the global batch, split across processes {processes}: "
            f"it must be at least {processes} (one example per process)"
        )


def _dataset(help: str, ref: str = "dataset", label: str = "Dataset") -> Any:  # noqa: A002
    return opt("", label=label, help=help, ref=ref, required=True)


#: where a model job runs: its own process, or Ray Data actors on a Ray cluster (docs/scale-out.md)
ENGINES = ("local", "ray")


def _engine() -> Any:
    return opt(
        "local",
        label="Engine",
        help="local: this job process; ray: Ray Data on a Ray cluster, one model per actor (docs/scale-out.md).",
        choices=ENGINES,
        group="advanced",
    )


def _ray_address() -> Any:
    return opt(
        "",
        label="Ray cluster address (engine ray)",
        help="With engine ray: the cluster to join (host:port that `ray start --head` printed, or auto); "
        "empty starts a Ray instance on this machine for the run.",
        group="advanced",
    )


def _num_gpus() -> Any:
    return opt(
        1.0,
        label="GPUs per actor (engine ray)",
        help="With engine ray on GPUs: GPUs per model actor (0.5 puts two on one GPU); 0, device cpu, or auto "
        "on a cluster without GPUs runs the actors on CPUs.",
        group="advanced",
        minimum=0,
        maximum=8,
    )


def _concurrency() -> Any:
    return opt(
        0,
        label="Actors (engine ray; 0 = one per GPU)",
        help="With engine ray: model actors, each holding one model; 0 = as many as the cluster's GPUs hold "
        "(1 on CPUs).",
        group="advanced",
        minimum=0,
        maximum=4096,
    )


def check_engine(engine: str, ray_address: str) -> None:
    """A cluster address with the local engine would be silently ignored: say so instead."""
    if engine != "ray" and ray_address.strip():
        raise ConfigError(f"ray_address is used with engine ray only (engine is {engine}); set engine ray")


# --------------------------------------------------------------------------- the schemas


@dataclass
class CaptionerTrainConfig:
    """``captioner_train``: fine-tune ``base`` on the approved human captions of ``dataset``
    (``captions="alttext"``: on its alt-text, any review status, short style only).

    ``style="both"`` trains two models (``both_mode="separate"``, as RECAP did) or one
    model with a style prompt (``"prompt"``, like Florence-2 / PaliGemma task prefixes).
    Validation runs every ``eval_every`` optimizer steps and at the end of training.
    """

    dataset: str = _dataset("Dataset whose approved human captions train the model.")
    base: str = opt(
        DEFAULT_CAPTIONER_BASE,
        label="Base model (captioner artifact, hub id or local folder)",
        help="Model to start from: a captioner artifact (name or id), a hub id or a local folder.",
        ref="artifact:captioner",
        required=True,
    )
    style: str = opt(
        "short", label="Caption style", help="Caption style.", choices=STYLES, widget="radio", required=True
    )
    both_mode: str = opt(
        "separate",
        label="With 'both': two models or one style-prompted model",
        help="With style both: separate models, or one model prompted with the style.",
        choices=BOTH_MODES,
        widget="radio",
    )
    captions: str = opt(
        "human",
        label="Train on: approved human captions, or alt-text (pretraining)",
        help="Captions to train on: the approved human_short/human_long captions, or the current "
        "alttext captions of any review status (the stand-in for web pretraining; style short only).",
        choices=("human", "alttext"),
        widget="radio",
    )
    lora: bool = opt(
        False,
        label="LoRA (peft) instead of full fine-tune",
        help="Train LoRA adapters (peft) instead of all weights.",
        off_aliases=("--full",),
    )
    lora_rank: int = opt(16, label="LoRA rank", help="LoRA rank.", minimum=1)
    freeze_vision: bool = opt(
        False,
        label="Freeze vision encoder",
        help="Freeze the vision encoder.",
        off_aliases=("--train-vision",),
    )
    lr: float = opt(5e-5, label="Learning rate", help="Learning rate (typically 1e-5 to 1e-3).")
    lr_schedule: str = opt(
        "constant",
        label="Learning-rate schedule",
        help=LR_SCHEDULE_HELP + " Per style: each style's steps have their own schedule.",
        choices=LR_SCHEDULES,
        group="advanced",
    )
    lr_warmup_steps: int = opt(
        0,
        label="Learning-rate warm-up steps (0 = none)",
        help=LR_WARMUP_HELP + " Per style, like the schedule.",
        group="advanced",
        minimum=0,
    )
    epochs: int = opt(3, label="Epochs", help="Epochs.", minimum=1)
    batch_size: int = opt(8, label="Batch size", help="Batch size.", minimum=1)
    grad_accum: int = opt(1, label="Grad. accumulation", help="Gradient accumulation steps.", minimum=1)
    mixed_precision: str = opt(
        "no", label="Mixed precision (GPU)", help=MIXED_PRECISION_HELP, choices=MIXED_PRECISION
    )
    seed: int = opt(0, label="Seed", help="Random seed.", minimum=0)
    val_fraction: float = opt(
        0.1, label="Validation fraction", help="Share of images held out for validation."
    )
    eval_every: int = opt(
        50, label="Evaluate every N steps", help="Validate every N optimizer steps.", minimum=1
    )
    max_new_tokens: int = opt(
        0,
        label="Max new tokens (0 = the style's default)",
        help="Token limit of validation captions; 0 = each style's own (short 128, long 384).",
        minimum=0,
        maximum=4096,
    )
    replay: int = opt(
        0,
        label="Rehearsal: alt-text captions trained alongside (0 = none)",
        help="Train this many of the dataset's alt-text captions (a seeded sample of images outside "
        "the human set, the same every epoch) alongside the human captions, unprompted as in alt-text "
        "pre-training, while each human style gets its style prompt: the fine-tune rehearses what "
        "pre-training taught. Needs a captioner that takes a prompt.",
        group="advanced",
        minimum=0,
    )
    mirror: bool = opt(
        False,
        label="Also train on each example mirrored left-right",
        help="Train every training example a second time with its image flipped left-right and "
        "left/right swapped in its caption: twice the examples of every left/right relation. "
        "Only for images whose mirror image is as plausible as the original (no writing, no "
        "handedness), and English captions.",
        group="advanced",
    )
    device: str = _device()
    # optional CLIP score of the validation captions at each evaluation (open_clip model name
    # + pretrained tag or local checkpoint); empty = off, so no CLIP weights are needed to train
    clip_model: str = opt(
        "",
        label="CLIP-score validation with (open_clip model; empty = off)",
        help="open_clip model to CLIP-score validation captions (empty: off).",
    )
    clip_pretrained: str = opt(
        "",
        label="… its pretrained tag or local checkpoint",
        help="Its pretrained tag or local checkpoint (with clip_model).",
        ref="local_file_or_tag",
    )
    torch_threads: int = _threads()
    processes: int = _processes()

    def validate(self) -> None:
        require_name("dataset", self.dataset)
        require_name("base", self.base, "a hub id, a local folder or a captioner artifact")
        check_processes(self.batch_size, self.processes)
        positive_float("lr", self.lr)
        if self.lr >= 1:
            raise ConfigError(f"lr must be below 1 (got {self.lr}); typical values are 1e-5 to 1e-3")
        exclusive_unit("val_fraction", self.val_fraction)
        if self.replay and self.captions != "human":
            raise ConfigError(
                f"replay rehearses alt-text during a fine-tune on human captions; with captions "
                f"{self.captions!r} the alt-text is the training data already (set replay 0)"
            )
        if self.captions == "alttext" and self.style != "short":
            raise ConfigError(
                f"captions alttext trains a short captioner only (alt-text is one short caption per image), "
                f"got style {self.style!r}; use style short, or captions human for long or both"
            )


@dataclass
class RecaptionConfig:
    """``recaption``: caption every image of ``dataset`` with ``captioner``.

    Writes ``recap_short`` and/or ``recap_long`` (see :data:`CAPTION_KINDS_FOR_STYLE`);
    ``prompt`` overrides the captioner's own prompt (chat VLMs, style-prompted models).
    ``max_new_tokens`` 0 means each style's own limit (:data:`DEFAULT_MAX_NEW_TOKENS`); a
    number applies to both styles.
    """

    dataset: str = _dataset("Dataset to recaption.")
    captioner: str = opt(
        "",
        label="Captioner (artifact, hub id or local folder)",
        help="Captioner: a captioner artifact (name or id), a hub id or a local folder.",
        ref="artifact:captioner",
        required=True,
    )
    style: str = opt(
        "short",
        label="Style",
        help="Captions to write: recap_short, recap_long or both.",
        choices=STYLES,
        widget="radio",
        required=True,
    )
    prompt: str | None = opt(
        None,
        label="Prompt (optional; for prompted / chat captioners)",
        help="Prompt for prompted / chat captioners (default: the captioner's own).",
    )
    batch_size: int = opt(16, label="Batch size", help="Images per batch.", minimum=1, maximum=4096)
    num_workers: int = opt(
        2, label="Loader workers", help="Image-decoding worker processes.", minimum=0, maximum=64
    )
    max_new_tokens: int = opt(
        0,
        label="Max new tokens (0 = the style's default)",
        help="Token limit per caption; 0 = each style's own (short 128, long 384); captions that "
        "reach it are flagged hit_token_limit.",
        minimum=0,
        maximum=4096,
    )
    num_beams: int = opt(1, label="Beams", help="Beam search width.", minimum=1, maximum=64)
    dtype: str = opt("auto", label="Dtype", help=DTYPE_HELP, choices=DTYPES)
    device: str = _device()
    torch_threads: int = _threads(
        "CPU threads for torch; 0 = the cores left after the loader workers (OMP_NUM_THREADS wins if set)."
    )
    engine: str = _engine()
    ray_address: str = _ray_address()
    num_gpus: float = _num_gpus()
    concurrency: int = _concurrency()

    def validate(self) -> None:
        require_name("dataset", self.dataset)
        require_name("captioner", self.captioner, "a captioner artifact, a hub id or a local folder")
        check_engine(self.engine, self.ray_address)


@dataclass
class ClipScoreConfig:
    """``clip_score``: 100 × cosine(image, caption) for each caption of the given kinds."""

    dataset: str = _dataset("Dataset whose captions to score.")
    kinds: list[str] = opt(
        label="Caption kinds",
        help="Caption kinds to score.",
        choices=CAPTION_KINDS,
        open_choices=True,
        default_factory=lambda: ["alttext", "recap_short", "recap_long"],
    )
    # an open_clip name, or a transformers CLIPModel folder / hub id (LongCLIP-style long text;
    # training.clip.clip_backend decides): no new option, the reference says which backend
    model: str = opt(
        "ViT-B-32",
        label="CLIP model (open_clip name, or transformers CLIPModel folder / hub id)",
        help="open_clip model name (ViT-B-32), or a transformers CLIPModel folder or hub id such as a "
        "248-position LongCLIP checkpoint (pretrained is then unused).",
    )
    pretrained: str = opt(
        "openai",
        label="Pretrained tag or local checkpoint",
        help="open_clip pretrained tag or local checkpoint (unused for a transformers model).",
        ref="local_file_or_tag",
    )
    batch_size: int = opt(
        64,
        label="Batch size",
        help="Captions per forward pass (one write transaction each).",
        minimum=1,
        maximum=4096,
    )
    device: str = _device()
    torch_threads: int = _threads()
    engine: str = _engine()
    ray_address: str = _ray_address()
    num_gpus: float = _num_gpus()
    concurrency: int = _concurrency()

    def validate(self) -> None:
        require_name("dataset", self.dataset)
        if not isinstance(self.kinds, list) or not self.kinds:
            raise ConfigError("kinds must name at least one caption kind (e.g. alttext,recap_long)")
        for kind in self.kinds:
            if not isinstance(kind, str) or not kind.strip():
                raise ConfigError(f"kinds holds an empty or non-text entry: {kind!r}")
        if len(set(self.kinds)) != len(self.kinds):
            raise ConfigError(f"kinds lists a kind twice: {self.kinds}")
        require_name("model", self.model, "an open_clip model name such as ViT-B-32, or a CLIPModel folder")
        require_name("pretrained", self.pretrained, "an open_clip pretrained tag or a local checkpoint")
        check_engine(self.engine, self.ray_address)


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
#: caption-mix presets the form offers (any spec :func:`backend.caption_mix.parse_mix` reads works)
MIX_PRESETS = (
    ("RECAP Mix (50% short, 50% long)", "recap_mix"),
    ("DALL-E 3 blend (95% long, 5% alt-text)", "dalle3"),
    ("Recap-DataComp, p=0.8 alt-text", "recap_datacomp:p=0.8"),
    ("Recap-DataComp, p=0.5 alt-text", "recap_datacomp:p=0.5"),
    ("Alt-text only", "alttext"),
    ("Short recaptions only", "recap_short=1"),
    ("Long recaptions only", "recap_long=1"),
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

    dataset: str = _dataset("Dataset whose images and captions train the pipeline.", ref="dataset:real")
    base: str = opt(
        DEFAULT_T2I_BASE,
        label="Base pipeline (t2i artifact, local folder or hub id)",
        help="Pipeline to start from: a t2i artifact (name or id), a local folder or a hub id.",
        ref="artifact:t2i",
        required=True,
    )
    mix: str = opt(
        "recap_mix",
        label="Caption mix (a preset, or weights such as recap_short=0.3,recap_long=0.7)",
        help="Caption mix: a preset (recap_mix, dalle3, recap_datacomp:p=0.8, alttext) or weights such "
        "as recap_short=0.3,recap_long=0.7.",
        choices=MIX_PRESETS,
        open_choices=True,
        required=True,
    )
    empty_prob: float = opt(
        0.05,
        label="Empty-caption probability",
        help="Probability of the empty caption (CFG dropout).",
        minimum=0,
    )
    fallback: list[str] = opt(
        label="Fallback caption kinds, in order (empty = none)",
        help="Caption kinds, in order, for images with none of the mix's kinds (default none: such "
        "images train with the empty caption, so a control such as alttext never sees another kind).",
        group="advanced",
        default_factory=lambda: list(DEFAULT_FALLBACK),
    )
    train: str = opt(
        "unet",
        label="Train",
        help="Weights that learn.",
        choices=T2I_TRAIN_TARGETS,
        widget="radio",
        required=True,
    )
    lora: bool = opt(
        False,
        label="LoRA (peft) instead of full fine-tune",
        help="Train LoRA adapters (peft) instead of all weights.",
        off_aliases=("--full",),
    )
    lora_rank: int = opt(4, label="LoRA rank", help="LoRA rank.", minimum=1)
    lr_unet: float = opt(1e-5, label="UNet learning rate", help="UNet learning rate.")
    lr_text_encoder: float = opt(5e-6, label="Text-encoder learning rate", help="Text-encoder learning rate.")
    lr_warmup_steps: int = opt(
        0,
        label="Learning-rate warm-up steps (0 = none)",
        help=LR_WARMUP_HELP,
        group="advanced",
        minimum=0,
    )
    lr_schedule: str = opt(
        "constant",
        label="Learning-rate schedule",
        help=LR_SCHEDULE_HELP,
        choices=LR_SCHEDULES,
        group="advanced",
    )
    steps: int = opt(
        1000, label="Steps", help="Optimizer steps.", minimum=1, maximum=10_000_000, required=True
    )
    batch_size: int = opt(4, label="Batch size", help="Batch size.", minimum=1, maximum=4096)
    grad_accum: int = opt(
        1, label="Grad. accumulation", help="Gradient accumulation steps.", group="advanced", minimum=1
    )
    resolution: int = opt(
        0,
        label="Resolution (0 = the base's own size)",
        help="Training resolution, a multiple of 8; 0 = the base pipeline's own size.",
        minimum=0,
        maximum=4096,
    )
    center_crop: bool = opt(
        True,
        label="Crop at the centre (else at random)",
        help="Crop images at the centre (else at random).",
        group="advanced",
        off_aliases=("--random-crop",),
    )
    random_flip: bool = opt(
        False, label="Random horizontal flips", help="Flip images horizontally at random.", group="advanced"
    )
    ema: bool = opt(False, label="EMA of the UNet", help="Keep an EMA of the UNet weights.")
    ema_decay: float = opt(0.9999, label="EMA decay", help="EMA decay.", group="advanced")
    mixed_precision: str = opt(
        "no", label="Mixed precision (GPU)", help=MIXED_PRECISION_HELP, choices=MIXED_PRECISION
    )
    gradient_checkpointing: bool = opt(
        False, label="Gradient checkpointing", help="Trade compute for memory.", group="advanced"
    )
    use_8bit_adam: bool = opt(
        False,
        label="8-bit AdamW (bitsandbytes, GPU)",
        help="bitsandbytes 8-bit AdamW (GPU).",
        group="advanced",
        aliases=("--8bit-adam",),
        off_aliases=("--no-8bit-adam",),
    )
    seed: int = opt(0, label="Seed", help="Random seed.", group="advanced", minimum=0)
    checkpoint_every: int = opt(
        500,
        label="Checkpoint every N steps",
        help="Save a resumable checkpoint every N steps.",
        group="advanced",
        minimum=1,
    )
    keep_checkpoints: int = opt(
        2, label="Checkpoints kept", help="Checkpoints kept.", group="advanced", minimum=1
    )
    cache_latents: bool = opt(False, label="Cache latents", help="Encode images with the VAE once, up front.")
    long_captions: str = opt(
        "truncate",
        label="Captions past 77 tokens",
        help="Captions past 77 CLIP tokens: truncate, or chunk (75-token windows concatenated).",
        choices=LONG_CAPTIONS,
        widget="radio",
    )
    max_chunks: int = opt(
        3, label="Windows per caption (chunk)", help="Windows per caption with chunk.", group="advanced",
        minimum=1, maximum=16,
    )  # fmt: skip
    validation_prompts: list[str] = opt(
        label="Validation prompts (one per line)",
        help="A validation prompt (repeat the option; default: three shape prompts; none: no validation images).",
        lines=3,
        split=False,
        aliases=("--validation-prompt",),
        default_factory=lambda: list(DEFAULT_VALIDATION_PROMPTS),
    )
    validation_every: int = opt(
        500, label="Validate every N steps", help="Render validation images every N steps.", minimum=1
    )
    validation_seed: int = opt(
        0, label="Validation seed", help="Seed of the validation images.", group="advanced", minimum=0
    )
    validation_inference_steps: int = opt(
        20,
        label="Validation denoising steps",
        help="Denoising steps of validation images.",
        minimum=1,
        maximum=1000,
    )
    guidance_scale: float = opt(
        7.5,
        label="Validation guidance scale",
        help="CFG scale of validation images.",
        group="advanced",
        minimum=0,
    )
    num_workers: int = opt(
        2, label="Loader workers", help="Image-decoding worker processes.", minimum=0, maximum=64
    )
    device: str = _device()
    torch_threads: int = _threads()
    processes: int = _processes()

    def validate(self) -> None:
        require_name("dataset", self.dataset)
        require_name("base", self.base, "a t2i artifact, a local pipeline folder or a hub id")
        check_processes(self.batch_size, self.processes)
        try:
            parse_mix(self.mix, empty_prob=self.empty_prob, fallback=self.fallback)
        except ValueError as exc:
            raise ConfigError(f"mix: {exc}") from None
        for name in ("lr_unet", "lr_text_encoder"):
            value = getattr(self, name)
            positive_float(name, value)
            if value >= 1:
                raise ConfigError(f"{name} must be below 1 (got {value}); typical values are 1e-6 to 1e-4")
        if self.resolution and (self.resolution % 8 or not 8 <= self.resolution <= 4096):
            raise ConfigError(
                "resolution must be 0 (the base pipeline's own size) or a multiple of 8 (the VAE's "
                f"scale factor) up to 4096, got {self.resolution}"
            )
        exclusive_unit("ema_decay", self.ema_decay)


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

    prompts: str = opt(
        "studio_prompts",
        label="Prompt set (shipped set or a file path)",
        help="A shipped prompt set (e.g. studio_prompts) or a file: PartiPrompts TSV, DrawBench CSV, CSV "
        "with a prompt column, or TXT.",
        ref="prompt_set",
        required=True,
    )
    checkpoints: list[str] = opt(
        label="Checkpoints (t2i artifacts, folders or hub ids)",
        help="A t2i artifact (name or id), local pipeline folder or hub id (repeat the option).",
        ref="artifact:t2i",
        item_name="checkpoint",
        split=False,
        aliases=("--checkpoint",),
        required=True,
        default_factory=list,
    )
    seeds: list[int] = opt(
        label="Seeds (comma-separated)", help="Seeds, e.g. 0,1,2.", minimum=0, default_factory=lambda: [0]
    )
    regime: str = opt(
        "raw",
        label="Prompt regime",
        help="raw prompts, upsampled prompts (needs an upsampler), or both.",
        choices=PROMPT_REGIMES,
        widget="radio",
    )
    upsampler: str = opt(
        "",
        label="Upsampler (language model: artifact, folder or hub id)",
        help="Causal language model that rewrites prompts: an upsampler artifact, a folder or a hub id.",
        ref="artifact:upsampler",
    )
    upsample_template: str = opt(
        DEFAULT_UPSAMPLE_TEMPLATE,
        label="Upsampling template ({prompt} is replaced by the short prompt)",
        help="Upsampling instruction with {prompt}, or @file to read it from a file.",
        lines=4,
        at_file=True,
        aliases=("--template",),
    )
    upsample_max_new_tokens: int = opt(
        77,
        label="Upsampled prompt's token limit",
        help="Token limit of an upsampled prompt.",
        group="advanced",
        minimum=1,
        maximum=1024,
    )
    category: str = opt(
        "", label="Only prompts of this category (empty = all)", help="Only prompts of this category.",
        group="advanced",
    )  # fmt: skip
    max_prompts: int = opt(
        0, label="Max prompts (0 = all)", help="At most this many prompts (0: all).", minimum=0
    )
    inference_steps: int = opt(
        30, label="Denoising steps", help="Denoising steps.", minimum=1, maximum=1000, aliases=("--steps",)
    )
    guidance_scale: float = opt(
        7.5, label="Guidance scale", help="Classifier-free guidance scale.", minimum=0
    )
    resolution: int = opt(
        0,
        label="Resolution (0 = the pipeline's own size)",
        help="Image size, a multiple of 8; 0 = the pipeline's own.",
        group="advanced",
        minimum=0,
        maximum=4096,
    )
    batch_size: int = opt(4, label="Batch size", help="Images per batch.", minimum=1, maximum=1024)
    output_dataset: str = opt(
        "",
        label="Output dataset (empty = generated-run-<id>)",
        help="Dataset the images go to (empty: generated-run-<run id>).",
    )
    safety_checker: bool = opt(
        False,
        label="Screen every checkpoint's images with one safety checker",
        help="Screen every checkpoint's images with one safety checker (from the first checkpoint that "
        "ships one); off for all by default, so no system's images alone come out black.",
        group="advanced",
    )
    dtype: str = opt("auto", label="Dtype", help=DTYPE_HELP, choices=DTYPES, group="advanced")
    device: str = _device()
    torch_threads: int = _threads()

    def validate(self) -> None:
        require_name("prompts", self.prompts, "a shipped prompt set's name or a prompt file")
        if not self.checkpoints:
            raise ConfigError(
                "checkpoints must name at least one t2i artifact, local pipeline folder or hub id"
            )
        for ref in self.checkpoints:
            require_name("checkpoints", ref)
        if not self.seeds:
            raise ConfigError("seeds must list at least one seed (e.g. 0,1,2)")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds lists a seed twice: {self.seeds}")
        choice("regime", self.regime, PROMPT_REGIMES)
        if self.regime != "raw" and not self.upsampler:
            raise ConfigError(
                f"regime {self.regime!r} needs an upsampler (a causal language model: hub id or local folder)"
            )
        if self.regime != "raw" and "{prompt}" not in self.upsample_template:
            raise ConfigError("upsample_template must contain {prompt} where the short prompt goes")
        if self.resolution and (self.resolution % 8 or not 8 <= self.resolution <= 4096):
            raise ConfigError(
                f"resolution must be 0 (model default) or a multiple of 8 up to 4096 (got {self.resolution})"
            )


EVAL_METRICS = (
    "clip_score",
    "r_precision",
    "r_precision_all",
    "fid",
    "kid",
    # issue 11: detector-based compositional metrics (training.detectors + backend.compositional)
    "soa_c",
    "soa_i",
    "ca",
    "pa_det",
    "pa_clip",
    "geneval",
    "o_fid",
)
#: shorthands accepted in ``metrics`` (``--metrics soa,ca,pa,geneval``), expanded when validated
EVAL_METRIC_ALIASES = {"soa": ("soa_c", "soa_i"), "pa": ("pa_det", "pa_clip")}
#: metrics that read a detector's boxes
DETECTOR_METRICS = ("soa_c", "soa_i", "ca", "pa_det", "geneval", "o_fid")
#: metrics that read CLIP features (TISE's CLIP form of PA among them)
CLIP_EVAL_METRICS = ("clip_score", "r_precision", "r_precision_all", "pa_clip")
DETECTORS = ("oracle", "oracle:demo", "oracle:miniature")
# torchvision Inception-v3 pool features, or the open_clip image embedding
FID_EXTRACTORS = ("inception", "clip")


@dataclass
class T2IEvalConfig:
    """``t2i_eval``: automatic metrics of the generated images of ``dataset``, per checkpoint × regime.

    CLIP-S (100 × cosine with the prompt) and CLIP R-precision (is the image's own prompt the
    best match against 99 random other prompts of the set, the standard protocol; ``r_precision_all``
    ranks it among all prompts of the set) with ``clip_model``/``clip_pretrained`` (open_clip, or
    a transformers CLIPModel folder / hub id such as a 248-position LongCLIP);
    FID and KID against the images of ``reference_dataset`` with a declared feature
    ``extractor`` whose weights are a local file (nothing is downloaded).

    Issue 11: with a ``detector`` (``oracle`` for the demo world, or a transformers detector
    folder / hub id), SOA-C, SOA-I, CA, PA (detector form ``pa_det``; TISE's CLIP form
    ``pa_clip``), GenEval (overall and per tag) and O-FID (FID on object crops) against each
    image's structured prompt: the one the generation stored with the image, else the entry of
    ``prompts`` with the same text, else what the caption extractor reads in the raw prompt.
    Instead of ``dataset``, ``images`` scores a folder of images made elsewhere against
    ``prompts`` (file names from a ``file`` field, else line order). Every metric is stored
    with its 95% bootstrap interval over prompts and its mismatched-prompt baseline.

    Issue 13: ``engine ray`` sends the detection (decoding + ``detector.detect``, CLIP colours,
    O-FID's crops) to a Ray actor pool; scoring, the CLIP metrics and FID/KID stay in the job.
    """

    dataset: str = opt(
        "",
        label="Generated dataset",
        help="Dataset of generated images (generated-run-<id>); or give images instead.",
        ref="dataset:generated",
    )
    metrics: list[str] = opt(
        label="Metrics",
        help="Metrics to compute (soa = soa_c,soa_i; pa = pa_det,pa_clip).",
        choices=EVAL_METRICS,
        default_factory=lambda: ["clip_score", "r_precision"],
    )
    detector: str = opt(
        "",
        label="Detector (SOA, CA, PA, GenEval, O-FID)",
        help="oracle (demo world), oracle:miniature, or a transformers detector folder / hub id "
        "(closed or open vocabulary).",
        choices=DETECTORS,
        open_choices=True,
    )
    images: str = opt(
        "",
        label="Images folder (made elsewhere)",
        help="Score a folder of images made elsewhere instead of a dataset (needs prompts).",
        ref="file",
        group="advanced",
    )
    prompts: str = opt(
        "",
        label="Structured prompts",
        help="Structured prompt set (JSONL: ours or GenEval's; COCO captions; plain list read by the "
        "extractor) or a shipped set's name; with images: one entry per image (file field or line order).",
        ref="prompt_set",
        group="advanced",
    )
    bootstrap_rounds: int = opt(
        1000,
        label="Bootstrap rounds",
        help="Resamples of the prompts for the 95% intervals.",
        group="advanced",
        minimum=10,
        maximum=100000,
    )
    seed: int = opt(
        0,
        label="Seed (bootstrap, mismatched baseline)",
        help="Seed of the bootstrap and of the mismatched-prompt derangement.",
        group="advanced",
        minimum=0,
    )
    clip_model: str = opt("ViT-B-32", label="CLIP model (open_clip)", help="open_clip model.")
    clip_pretrained: str = opt(
        "openai",
        label="CLIP pretrained tag or local checkpoint",
        help="open_clip pretrained tag or local checkpoint.",
        ref="local_file_or_tag",
    )
    reference_dataset: str = opt(
        "",
        label="Reference dataset (real images, FID/KID)",
        help="Dataset of real images for FID/KID.",
        ref="dataset:real",
        aliases=("--reference",),
    )
    extractor: str = opt(
        "inception",
        label="FID/KID feature extractor",
        help="FID/KID features: Inception-v3 pool features, or the open_clip image embedding.",
        choices=FID_EXTRACTORS,
    )
    extractor_weights: str = opt(
        "",
        label="Extractor weights (local file)",
        help="Local weights file of the feature extractor (nothing is downloaded).",
        ref="file",
    )
    kid_subset_size: int = opt(
        1000, label="KID subset size", help="KID subset size.", group="advanced", minimum=2
    )
    batch_size: int = opt(
        32, label="Batch size", help="Images per forward pass.", group="advanced", minimum=1, maximum=4096
    )
    device: str = _device()
    torch_threads: int = _threads()
    # issue 13: the detector metrics' detection on a Ray cluster (training.ray_engine.RayDetection)
    engine: str = _engine()
    ray_address: str = _ray_address()
    num_gpus: float = _num_gpus()
    concurrency: int = _concurrency()

    def validate(self) -> None:
        if self.images.strip() and self.dataset.strip():
            raise ConfigError("give either dataset (generated images) or images (a folder), not both")
        if self.images.strip():
            if not self.prompts.strip():
                raise ConfigError(
                    "images needs prompts: a structured prompt file naming each image (file field) or "
                    "listing them in the folder's sorted file-name order"
                )
        else:
            require_name("dataset", self.dataset, "the dataset of generated images (generated-run-<id>)")
        expanded = [m for name in self.metrics for m in EVAL_METRIC_ALIASES.get(name, (name,))]
        self.metrics = expanded
        if not self.metrics:
            raise ConfigError(f"metrics must name at least one of {', '.join(EVAL_METRICS)}")
        if len(set(self.metrics)) != len(self.metrics):
            raise ConfigError(f"metrics lists a metric twice: {self.metrics}")
        if {"fid", "kid", "o_fid"} & set(self.metrics) and not self.reference_dataset:
            raise ConfigError("fid/kid/o_fid need reference_dataset: a dataset of real images to compare with")
        needs_detector = [m for m in self.metrics if m in DETECTOR_METRICS]
        if needs_detector and not self.detector.strip():
            raise ConfigError(
                f"{', '.join(needs_detector)} need a detector: oracle (demo world), oracle:miniature, or a "
                "transformers detector folder / hub id"
            )
        require_name("clip_model", self.clip_model)
        require_name("clip_pretrained", self.clip_pretrained)
        check_engine(self.engine, self.ray_address)
        if self.engine == "ray" and not needs_detector:
            # only the detection goes to the cluster: a run without it would start Ray for nothing
            raise ConfigError(
                f"engine ray runs the detector metrics ({', '.join(DETECTOR_METRICS)}) on a Ray cluster; "
                f"{', '.join(self.metrics)} run in the job's own process: use engine local"
            )


@dataclass
class SelftestConfig:
    """``selftest``: a job without models that checks the job machinery (tests, smoke checks)."""

    items: int = opt(10, label="Items", help="Items to process.", minimum=0)
    delay_s: float = opt(
        0.05, label="Seconds per item", help="Seconds per item.", minimum=0, aliases=("--delay",)
    )
    fail_after: int | None = opt(
        None,
        label="Fail after N items (empty = never)",
        help="Fail (raise) after this many items.",
        minimum=0,
    )

    def validate(self) -> None:
        """Nothing beyond the declared bounds."""


MINIATURE_PRESETS = ("smoke", "cpu", "gpu")  # backend.miniature.presets.PRESET_NAMES, without its import


def _miniature_dataset() -> Any:
    return opt(
        "miniature",
        label="Dataset (created if missing)",
        help="Dataset of the miniature world (created if missing).",
    )


@dataclass
class MiniatureWorldConfig:
    """``miniature_world``: the miniature world's corpus (issue 12) as ordinary studio data.

    Images with their exact ground truth, alt-text in recorded failure modes, a ground-truth
    caption (``truth``), an approved human set by a simulated annotator, and held-out structured
    prompts (``<home>/prompts/<dataset>-heldout.jsonl``). Idempotent: a rerun adds nothing.
    """

    dataset: str = _miniature_dataset()
    images: int = opt(5000, label="Images", help="Corpus images.", minimum=1, maximum=1_000_000)
    human_images: int = opt(
        200, label="Human set (images)", help="Images captioned by the simulated annotator (at most 200).",
        minimum=0, maximum=200,
    )  # fmt: skip
    prompts: int = opt(100, label="Held-out prompts", help="Held-out structured prompts.", minimum=2, maximum=100_000)
    seed: int = opt(12, label="Seed", help="World seed.", minimum=0)

    def validate(self) -> None:
        require_name("dataset", self.dataset)
        if self.human_images > self.images:
            raise ConfigError(f"human_images ({self.human_images}) cannot exceed images ({self.images})")


@dataclass
class MiniatureBaseConfig:
    """``miniature_base``: the world's base models, registered as artifacts.

    A Stable Diffusion pipeline whose VAE is first trained on the dataset's images (so latents mean
    something), whose text encoder is untrained or, with ``text_steps``, pre-trained CLIP-style on
    world texts, and whose UNet is untrained (the arms train it), plus an
    untrained BLIP captioner with the world's vocabulary (pre-trained on alt-text by
    ``captioner_train --captions alttext``).
    """

    dataset: str = _dataset("Dataset of the miniature world (its images train the VAE).")
    size: str = opt(
        "cpu", label="Model sizes", help="Model sizes: smoke (seconds), cpu, gpu.", choices=MINIATURE_PRESETS,
        widget="radio",
    )  # fmt: skip
    vae_steps: int = opt(800, label="VAE steps", help="VAE training steps.", minimum=1, maximum=1_000_000)
    vae_batch_size: int = opt(64, label="VAE batch size", help="VAE batch size.", minimum=1, maximum=4096)
    text_steps: int = opt(
        0, label="Text encoder pre-training steps",
        help="CLIP-style pre-training of the text encoder on world scenes described by every writer "
        "(the stand-in for CLIP's web pre-training; 0 leaves it untrained).",
        minimum=0, maximum=1_000_000,
    )  # fmt: skip
    seed: int = opt(12, label="Seed", help="Random seed.", minimum=0)
    torch_threads: int = _threads()

    def validate(self) -> None:
        require_name("dataset", self.dataset)


@dataclass
class MiniatureExperimentConfig:
    """``miniature``: issue 12's whole experiment, every stage an ordinary run of its own.

    World → base models → captioner pre-training on alt-text → fine-tune on the human set →
    recaption → T2I arms → generate → evaluate → the RECAP-style table. Resumable: a stage whose
    run succeeded is not run again; an interrupted one is resumed.
    """

    preset: str = opt(
        "cpu",
        label="Preset",
        help="smoke: every stage with tiny step counts (plumbing only); cpu: the 90-minute 2-core "
        "experiment (Alttext, RECAP Mix, upper bound); gpu: a larger world with every arm.",
        choices=MINIATURE_PRESETS,
        widget="radio",
    )
    dataset: str = _miniature_dataset()
    seed: int = opt(12, label="Seed", help="Seed of the world and of every stage.", minimum=0)

    def validate(self) -> None:
        require_name("dataset", self.dataset)


# --------------------------------------------------------------------------- the kinds


def _names(values: list[str], limit: int = 3) -> str:
    return ", ".join(values[:limit]) + (f" +{len(values) - limit}" if len(values) > limit else "")


KINDS: dict[str, JobKind] = {
    kind.name: kind
    for kind in (
        JobKind(
            name="captioner_train",
            config=CaptionerTrainConfig,
            module="training.jobs.captioner_train",
            title="Fine-tune a captioner",
            help="Fine-tune a captioner on a dataset's approved human captions (short, long or both).",
            intro="Trains on the **approved human captions** of the dataset; validation captions are "
            "written at every evaluation and shown in the run's *Samples*.",
            summary=lambda c: f"{c['base']} on {c['dataset']} ({c['style']})",
            cli_command=("captioner", "train"),
            api_name="launch_captioner_train",
            button="Start fine-tune",
        ),
        JobKind(
            name="recaption",
            config=RecaptionConfig,
            module="training.jobs.recaption",
            title="Recaption a dataset",
            help="Recaption a dataset with a captioner: resumable, batched, one caption per image and kind.",
            intro="Writes `recap_short` / `recap_long` captions with full provenance; resumable.",
            summary=lambda c: f"{c['dataset']} with {c['captioner']} ({c['style']})",
            cli_command=("recaption",),
            api_name="launch_recaption",
            button="Start recaption",
        ),
        JobKind(
            name="clip_score",
            config=ClipScoreConfig,
            module="training.jobs.clip_score",
            title="CLIP-score captions",
            help="CLIP score (100 × cosine) of each caption of the given kinds, flagged past 77 tokens.",
            intro="100 × cosine(image, caption) per caption, flagged past CLIP's 77 tokens; shown in Review.",
            summary=lambda c: f"{c['dataset']}: {_names(c['kinds'])} with {c['model']}",
            cli_command=("score", "clip"),
            api_name="launch_clip_score",
            button="Start scoring",
        ),
        JobKind(
            name="t2i_train",
            config=T2ITrainConfig,
            module="training.jobs.t2i_train",
            title="Fine-tune a text-to-image model",
            help="Fine-tune a Stable Diffusion pipeline on a dataset with a caption mix (RECAP step 4).",
            intro="RECAP step 4: fine-tune a Stable Diffusion pipeline on the dataset's captions, drawn per "
            "example from a **caption mix** (RECAP Mix = 50/50 short/long recaptions). Validation images "
            "are rendered every N steps and shown in the run's *Validation samples*.",
            summary=lambda c: f"{c['base']} on {c['dataset']}, mix {c['mix']}, {c['steps']} steps",
            cli_command=("t2i", "train"),
            api_name="launch_t2i_train",
            button="Start text-to-image fine-tune",
        ),
        JobKind(
            name="generate",
            config=GenerateConfig,
            module="training.jobs.generate",
            title="Generate images",
            help="Generate images from a prompt set × checkpoints × seeds, raw and/or upsampled prompts.",
            intro="Prompts × checkpoints × seeds → a dataset of generated images (`generated-run-<id>`) with "
            "full provenance. *Upsampled* rewrites each prompt with a language model first (DALL-E 3).",
            summary=lambda c: (
                f"{c['prompts']} × {_names(c['checkpoints'])} × seeds "
                f"{_names([str(s) for s in c['seeds']])} ({c['regime']})"
            ),
            cli_command=("generate",),
            api_name="launch_generate",
            button="Start generation",
        ),
        JobKind(
            name="t2i_eval",
            config=T2IEvalConfig,
            module="training.jobs.t2i_eval",
            title="Evaluate generated images",
            help="Automatic metrics (CLIP score, R-precision, FID, KID; with a detector SOA, CA, PA, GenEval, "
            "O-FID) per checkpoint × prompt regime.",
            intro="CLIP score and CLIP R-precision against each image's prompt; FID/KID against a dataset "
            "of real images; with a detector, SOA-C/SOA-I, CA, PA, GenEval and O-FID against each image's "
            "structured prompt, with 95% intervals and the mismatched-prompt baseline. Results appear in "
            "**Results → Automatic metrics**.",
            summary=lambda c: f"{c['dataset'] or c.get('images', '')}: {_names(c['metrics'], 5)}",
            cli_command=("eval",),
            api_name="launch_t2i_eval",
            button="Start evaluation",
        ),
        JobKind(
            name="miniature_world",
            config=MiniatureWorldConfig,
            module="training.jobs.miniature_world",
            title="Miniature world: corpus",
            help="Build the miniature world's corpus: images with ground truth, alt-text, a human set, prompts.",
            intro="Issue 12's world: 32 px scenes with exact ground truth, alt-text in recorded failure modes, "
            "an approved human set by a simulated annotator and held-out structured prompts.",
            summary=lambda c: f"{c['dataset']}: {c['images']} images, {c['human_images']} human (seed {c['seed']})",
            cli_command=("miniature", "world"),
            api_name="launch_miniature_world",
            button="Build the corpus",
            needs_gpu=False,
        ),
        JobKind(
            name="miniature_base",
            config=MiniatureBaseConfig,
            module="training.jobs.miniature_base",
            title="Miniature world: base models",
            help="Train the miniature world's VAE and register its base SD pipeline and base captioner.",
            intro="Trains the VAE on the dataset's images and, with text encoder pre-training steps, the text "
            "encoder CLIP-style on world texts; then registers a Stable Diffusion pipeline (that text encoder, "
            "an untrained UNet) and an untrained BLIP captioner with the world's vocabulary.",
            summary=lambda c: f"{c['dataset']} ({c['size']}, VAE {c['vae_steps']} steps, "
            f"text encoder {c.get('text_steps', 0)} steps)",
            cli_command=("miniature", "base"),
            api_name="launch_miniature_base",
            button="Build the base models",
        ),
        JobKind(
            name="miniature",
            config=MiniatureExperimentConfig,
            module="training.jobs.miniature",
            title="RECAP in miniature (the whole experiment)",
            help="Run issue 12's experiment end to end, every stage a run of its own, and print the RECAP table.",
            intro="One click runs **every stage** as an ordinary run (world, base models, captioner pre-training "
            "and fine-tune, recaption, T2I arms, generation, evaluation) and ends with the RECAP-style table "
            "(**Results → Miniature**). *smoke* checks the plumbing in minutes; *cpu* takes about 90 minutes "
            "on 2 cores.",
            summary=lambda c: f"{c['preset']} preset on {c['dataset']} (seed {c['seed']})",
            cli_command=("experiment", "miniature"),
            api_name="launch_miniature",
            button="Run the experiment",
            needs_gpu=False,
        ),
        JobKind(
            name="selftest",
            config=SelftestConfig,
            module="training.jobs.selftest",
            title="Self-test job (developer mode)",
            help="A model-free job for checking the job machinery (tests, smoke checks).",
            intro="A job without models that checks the job machinery (`RECAP_STUDIO_DEV=1`).",
            summary=lambda c: f"{c['items']} items",
            cli_command=("runs", "selftest"),
            api_name="launch_selftest",
            button="Start self-test",
            needs_gpu=False,
            cli_hidden=True,
            dev_only=True,
        ),
    )
}
# views of the registry, kept importable under their old names
SCHEMAS: dict[str, type] = {name: kind.config for name, kind in KINDS.items()}
NEEDS_GPU: dict[str, bool] = {name: kind.needs_gpu for name, kind in KINDS.items()}
DEFAULTS: dict[str, dict[str, Any]] = {name: kind.defaults() for name, kind in KINDS.items()}


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
    spec = job_kind(kind)
    fields = fields_of(spec.config)
    known = [f.name for f in fields]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{kind}: unknown setting(s) {', '.join(unknown)} (known: {', '.join(known)})")
    merged = {**DEFAULTS[kind], **values}
    instance = spec.config(**{f.name: coerce(f, merged[f.name]) for f in fields})
    instance.validate()  # what needs several fields, or a message of its own, first
    for f in fields:
        check_field(f, getattr(instance, f.name))
    return instance


def job_kind(kind: str) -> JobKind:
    try:
        return KINDS[kind]
    except KeyError:
        raise ConfigError(f"unknown run kind {kind!r} (known: {', '.join(KINDS)})") from None


def schema(kind: str) -> type:
    """The config dataclass of ``kind``."""
    return job_kind(kind).config


# --------------------------------------------------------------------------- workspace checks


def resolve_model_reference(
    ws: Workspace, ref: str, field_name: str, expected: ArtifactKind | None = None
) -> str:
    """The stored form of a model reference: see :func:`backend.references.resolve_reference`."""
    return resolve_reference(ws, ref, expected=expected, field=field_name)


def check_workspace(ws: Workspace, kind: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """What only the workspace can tell: datasets exist, model references and files resolve.

    Returns the config to store (model references in their stored form, local paths absolute);
    see :meth:`backend.jobs.kinds.JobKind.check_workspace`.
    """
    return job_kind(kind).check_workspace(ws, config)


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
    spec = job_kind(kind)
    config = spec.check_workspace(ws, make_config(kind, values))
    return store.create_run(ws, kind, config, needs_gpu=spec.needs_gpu, created_by=created_by)


def artifact_choices(ws: Workspace, kind: str) -> list[tuple[str, str]]:
    """(label, value) of every artifact of ``kind``, newest first, for the launch forms; the value
    is what a config stores.

    The value is the artifact's name, or its id where a newer artifact shares that name (a name
    always means the newest one); a T2I fine-tune's label names its caption condition.
    """
    seen: set[str] = set()
    choices = []
    for artifact in store.list_artifacts(ws, kind=kind):
        value = artifact.name if artifact.name not in seen else str(artifact.id)
        seen.add(artifact.name)
        origin = f"run #{artifact.run_id}" if artifact.run_id is not None else "imported"
        condition = (artifact.meta or {}).get("caption_condition")
        extra = f", {condition}" if condition else ""
        choices.append((f"{artifact.name}  ({origin}{extra}, artifact {artifact.id})", value))
    return choices


def captioner_choices(ws: Workspace) -> list[tuple[str, str]]:
    """:func:`artifact_choices` of the captioners."""
    return artifact_choices(ws, CAPTIONER_ARTIFACT)
