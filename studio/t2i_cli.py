"""Commands for text-to-image work: ``t2i train``, ``generate``, ``eval``.

Registered on the main app at the end of :mod:`studio.cli` (``recap-studio t2i train``,
``recap-studio generate``, ``recap-studio eval``). They follow :mod:`studio.runs_cli`: the
run executes here in the foreground with a progress bar (the same runner subprocess the
studio launches), or queues for the studio with ``--detach``; ``--json`` prints one final
line whose keys are what a script of the T2I workflow needs next (the pipeline folder and the
caption kinds it saw; the generated dataset; the metrics).

Exit codes as in :mod:`studio.runs_cli`: 0 succeeded (or queued with ``--detach``),
1 the run failed or was interrupted, 2 bad usage (a bad ``--mix``, unknown dataset,
invalid setting), 3 cancelled, 143 / 129 cancelled by SIGTERM / SIGHUP (a ``timeout``, a
batch scheduler, a closed terminal: the runner is stopped, not left training).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from backend import jobs
from backend.jobs import configs
from backend.workspace import Workspace
from studio import run_forms
from studio.console import fail, out
from studio.runs_cli import (
    DetachOpt,
    DeviceOpt,
    JsonOpt,
    StopSignal,
    ThreadsOpt,
    _given,
    _ws,
    exit_unless_succeeded,
    foreground,
)

t2i_app = typer.Typer(help="Fine-tune text-to-image pipelines on a caption mix.", no_args_is_help=True)

D_T2I = configs.DEFAULTS["t2i_train"]
D_GEN = configs.DEFAULTS["generate"]
D_EVAL = configs.DEFAULTS["t2i_eval"]


# --------------------------------------------------------------------------- shared plumbing


def _submit(ctx: typer.Context, kind: str, values: dict[str, Any]) -> tuple[Workspace, int]:
    """Validate and create the queued run; a bad setting exits 2 with the config's own message."""
    ws = _ws(ctx)
    try:
        run = configs.new_run(ws, kind, values)
    except configs.ConfigError as exc:
        raise fail(str(exc)) from None
    return ws, int(run.id)  # type: ignore[arg-type]


def _execute(ws: Workspace, run_id: int, *, detach: bool, as_json: bool) -> tuple[jobs.Run, StopSignal]:
    """Run it here with a progress bar (SIGTERM/SIGHUP cancel it like Ctrl-C), or leave it to
    the queue (``--detach``)."""
    if detach:
        jobs.tick(ws)
        return jobs.get_run(ws, run_id), StopSignal()
    return foreground(ws, run_id, as_json=as_json)


def _finish(
    run: jobs.Run,
    summary: dict[str, Any],
    line: str,
    *,
    as_json: bool,
    detach: bool,
    stopped: StopSignal | None = None,
) -> None:
    """Print the JSON line or the human line, then exit as :func:`studio.runs_cli.report` does."""
    try:
        if as_json:
            print(json.dumps(summary), flush=True)
        elif detach:
            out.print(
                f"Run {run.id} ({run.kind}) is {run.status}. Follow it with `recap-studio runs show {run.id}` "
                "or in the studio's Runs tab.",
                markup=False,
                highlight=False,
            )
            return
        else:
            out.print(line, markup=False, highlight=False, soft_wrap=True)
    except OSError:
        if stopped is None or stopped.signum is None:
            raise  # after a SIGHUP the terminal may be gone; the exit status still tells
    if not detach:
        exit_unless_succeeded(run, stopped)


def _read_template(value: str | None) -> str | None:
    """``--template TEXT`` or ``--template @file``: the file's text (UTF-8)."""
    if value is None or not value.startswith("@"):
        return value
    path = Path(value[1:]).expanduser()
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"--template {value!r}: cannot read {path}: {exc}") from None


# --------------------------------------------------------------------------- t2i train


@t2i_app.command("train")
def t2i_train(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option(help="Dataset whose images and captions train the pipeline.")],
    base: Annotated[
        str,
        typer.Option(help="Pipeline to start from: a t2i artifact (name or id), a local folder or hub id."),
    ],
    mix: Annotated[
        str,
        typer.Option(
            help="Caption mix: a preset (recap_mix, dalle3, recap_datacomp:p=0.8, alttext) or weights "
            "such as recap_short=0.3,recap_long=0.7."
        ),
    ],
    train: Annotated[str, typer.Option("--train", help="Weights that learn: unet|text_encoder|both.")],
    steps: Annotated[int, typer.Option(help="Optimizer steps.")],
    empty_prob: Annotated[
        float | None,
        typer.Option(help=f"Probability of the empty caption (CFG dropout; default {D_T2I['empty_prob']})."),
    ] = None,
    fallback: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated caption kinds, in order, for images with none of the mix's kinds "
            "(default: none, so such images train with the empty caption and a control such as "
            "alttext never sees another kind)."
        ),
    ] = None,
    lora: Annotated[
        bool | None, typer.Option("--lora/--full", help="Train LoRA adapters (peft) instead of all weights.")
    ] = None,
    lora_rank: Annotated[int | None, typer.Option(help=f"LoRA rank (default {D_T2I['lora_rank']}).")] = None,
    lr_unet: Annotated[
        float | None, typer.Option(help=f"UNet learning rate (default {D_T2I['lr_unet']}).")
    ] = None,
    lr_text_encoder: Annotated[
        float | None,
        typer.Option(help=f"Text-encoder learning rate (default {D_T2I['lr_text_encoder']})."),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help=f"Batch size (default {D_T2I['batch_size']}).")
    ] = None,
    grad_accum: Annotated[
        int | None, typer.Option(help=f"Gradient accumulation steps (default {D_T2I['grad_accum']}).")
    ] = None,
    resolution: Annotated[
        int | None,
        typer.Option(help="Training resolution, a multiple of 8 (default 0: the base pipeline's own size)."),
    ] = None,
    center_crop: Annotated[
        bool | None, typer.Option("--center-crop/--random-crop", help="Crop images at the centre.")
    ] = None,
    random_flip: Annotated[
        bool | None,
        typer.Option("--random-flip/--no-random-flip", help="Flip images horizontally at random."),
    ] = None,
    ema: Annotated[
        bool | None, typer.Option("--ema/--no-ema", help="Keep an EMA of the UNet weights.")
    ] = None,
    ema_decay: Annotated[
        float | None, typer.Option(help=f"EMA decay (default {D_T2I['ema_decay']}).")
    ] = None,
    mixed_precision: Annotated[
        str | None, typer.Option(help=f"no|fp16|bf16 (GPU only; default {D_T2I['mixed_precision']}).")
    ] = None,
    gradient_checkpointing: Annotated[
        bool | None,
        typer.Option(
            "--gradient-checkpointing/--no-gradient-checkpointing", help="Trade compute for memory."
        ),
    ] = None,
    use_8bit_adam: Annotated[
        bool | None, typer.Option("--8bit-adam/--no-8bit-adam", help="bitsandbytes 8-bit AdamW (GPU).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help=f"Random seed (default {D_T2I['seed']}).")] = None,
    checkpoint_every: Annotated[
        int | None,
        typer.Option(
            help=f"Save a resumable checkpoint every N steps (default {D_T2I['checkpoint_every']})."
        ),
    ] = None,
    keep_checkpoints: Annotated[
        int | None, typer.Option(help=f"Checkpoints kept (default {D_T2I['keep_checkpoints']}).")
    ] = None,
    cache_latents: Annotated[
        bool | None,
        typer.Option("--cache-latents/--no-cache-latents", help="Encode images with the VAE once, up front."),
    ] = None,
    long_captions: Annotated[
        str | None,
        typer.Option(
            help="Captions past 77 CLIP tokens: truncate, or chunk (75-token windows concatenated; "
            f"default {D_T2I['long_captions']})."
        ),
    ] = None,
    max_chunks: Annotated[
        int | None, typer.Option(help=f"Windows per caption with chunk (default {D_T2I['max_chunks']}).")
    ] = None,
    validation_prompts: Annotated[
        list[str] | None,
        typer.Option(
            "--validation-prompt",
            help="A validation prompt (repeat the option; default: three shape prompts).",
        ),
    ] = None,
    validation_every: Annotated[
        int | None,
        typer.Option(help=f"Render validation images every N steps (default {D_T2I['validation_every']})."),
    ] = None,
    validation_seed: Annotated[
        int | None, typer.Option(help=f"Seed of the validation images (default {D_T2I['validation_seed']}).")
    ] = None,
    validation_inference_steps: Annotated[
        int | None,
        typer.Option(
            help=f"Denoising steps of validation images (default {D_T2I['validation_inference_steps']})."
        ),
    ] = None,
    guidance_scale: Annotated[
        float | None,
        typer.Option(help=f"CFG scale of validation images (default {D_T2I['guidance_scale']})."),
    ] = None,
    num_workers: Annotated[
        int | None, typer.Option(help=f"Image-decoding worker processes (default {D_T2I['num_workers']}).")
    ] = None,
    device: DeviceOpt = None,
    torch_threads: ThreadsOpt = None,
    detach: DetachOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Fine-tune a Stable Diffusion pipeline on a dataset with a caption mix (RECAP step 4)."""
    ws, run_id = _submit(
        ctx,
        "t2i_train",
        _given(
            dataset=dataset,
            base=base,
            mix=mix,
            empty_prob=empty_prob,
            fallback=fallback,
            train=train,
            lora=lora,
            lora_rank=lora_rank,
            lr_unet=lr_unet,
            lr_text_encoder=lr_text_encoder,
            steps=steps,
            batch_size=batch_size,
            grad_accum=grad_accum,
            resolution=resolution,
            center_crop=center_crop,
            random_flip=random_flip,
            ema=ema,
            ema_decay=ema_decay,
            mixed_precision=mixed_precision,
            gradient_checkpointing=gradient_checkpointing,
            use_8bit_adam=use_8bit_adam,
            seed=seed,
            checkpoint_every=checkpoint_every,
            keep_checkpoints=keep_checkpoints,
            cache_latents=cache_latents,
            long_captions=long_captions,
            max_chunks=max_chunks,
            validation_prompts=validation_prompts or None,
            validation_every=validation_every,
            validation_seed=validation_seed,
            validation_inference_steps=validation_inference_steps,
            guidance_scale=guidance_scale,
            num_workers=num_workers,
            device=device,
            torch_threads=torch_threads,
        ),
    )
    run, stopped = _execute(ws, run_id, detach=detach, as_json=as_json)
    summary = run_forms.t2i_train_summary(ws, run)
    line = f"Run {run.id} (t2i_train) {run.status}: {run_forms.progress_text(run)}"
    if summary["output"]:
        line += f"; pipeline {summary['artifact']} in {summary['output']}"
    if summary["usage"]:
        line += "; captions used: " + ", ".join(f"{k} {n}" for k, n in summary["usage"].items())
    _finish(run, summary, line, as_json=as_json, detach=detach, stopped=stopped)


# --------------------------------------------------------------------------- generate


def generate_cmd(
    ctx: typer.Context,
    prompts: Annotated[
        str,
        typer.Option(
            help="A shipped prompt set (e.g. studio_prompts) or a file: PartiPrompts TSV, DrawBench CSV, "
            "CSV with a prompt column, or TXT."
        ),
    ],
    checkpoints: Annotated[
        list[str],
        typer.Option(
            "--checkpoint", help="A t2i artifact (name or id), local pipeline folder or hub id (repeatable)."
        ),
    ],
    seeds: Annotated[str | None, typer.Option(help="Comma-separated seeds, e.g. 0,1,2 (default 0).")] = None,
    regime: Annotated[
        str | None,
        typer.Option(
            help="raw prompts, upsampled prompts, or both (default raw; upsampled needs --upsampler)."
        ),
    ] = None,
    upsampler: Annotated[
        str | None,
        typer.Option(help="Causal language model that rewrites prompts: artifact, folder or hub id."),
    ] = None,
    template: Annotated[
        str | None,
        typer.Option(help="Upsampling instruction with {prompt}, or @file to read it from a file."),
    ] = None,
    upsample_max_new_tokens: Annotated[
        int | None,
        typer.Option(
            help=f"Token limit of an upsampled prompt (default {D_GEN['upsample_max_new_tokens']})."
        ),
    ] = None,
    category: Annotated[str | None, typer.Option(help="Only prompts of this category.")] = None,
    max_prompts: Annotated[
        int | None, typer.Option(help="At most this many prompts (default 0: all).")
    ] = None,
    steps: Annotated[
        int | None, typer.Option("--steps", help=f"Denoising steps (default {D_GEN['inference_steps']}).")
    ] = None,
    guidance_scale: Annotated[
        float | None,
        typer.Option(help=f"Classifier-free guidance scale (default {D_GEN['guidance_scale']})."),
    ] = None,
    resolution: Annotated[
        int | None, typer.Option(help="Image size, a multiple of 8 (default 0: the pipeline's own).")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help=f"Images per batch (default {D_GEN['batch_size']}).")
    ] = None,
    output_dataset: Annotated[
        str | None, typer.Option(help="Dataset the images go to (default generated-run-<run id>).")
    ] = None,
    safety_checker: Annotated[
        bool | None,
        typer.Option(
            "--safety-checker/--no-safety-checker",
            help="Screen every checkpoint's images with one safety checker (from the first checkpoint "
            "that ships one); default off for all, so no system's images alone come out black.",
        ),
    ] = None,
    dtype: Annotated[str | None, typer.Option(help="auto|float32|float16|bfloat16 (default auto).")] = None,
    device: DeviceOpt = None,
    torch_threads: ThreadsOpt = None,
    detach: DetachOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Generate images from a prompt set × checkpoints × seeds, raw and/or upsampled prompts."""
    ws, run_id = _submit(
        ctx,
        "generate",
        _given(
            prompts=prompts,
            checkpoints=checkpoints,
            seeds=seeds,
            regime=regime,
            upsampler=upsampler,
            upsample_template=_read_template(template),
            upsample_max_new_tokens=upsample_max_new_tokens,
            category=category,
            max_prompts=max_prompts,
            inference_steps=steps,
            guidance_scale=guidance_scale,
            resolution=resolution,
            batch_size=batch_size,
            output_dataset=output_dataset,
            safety_checker=safety_checker,
            dtype=dtype,
            device=device,
            torch_threads=torch_threads,
        ),
    )
    run, stopped = _execute(ws, run_id, detach=detach, as_json=as_json)
    summary = run_forms.generate_summary(ws, run)
    line = (
        f"Run {run.id} (generate) {run.status}: {summary['images']} images in dataset '{summary['dataset']}'"
    )
    _finish(run, summary, line, as_json=as_json, detach=detach, stopped=stopped)


# --------------------------------------------------------------------------- eval


def eval_cmd(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option(help="Dataset of generated images (generated-run-<id>).")],
    metrics: Annotated[
        str | None,
        typer.Option(
            help=f"Comma-separated, of {','.join(configs.EVAL_METRICS)} (default {','.join(D_EVAL['metrics'])})."
        ),
    ] = None,
    clip_model: Annotated[
        str | None, typer.Option(help=f"open_clip model (default {D_EVAL['clip_model']}).")
    ] = None,
    clip_pretrained: Annotated[
        str | None,
        typer.Option(
            help=f"open_clip pretrained tag or local checkpoint (default {D_EVAL['clip_pretrained']})."
        ),
    ] = None,
    reference: Annotated[
        str | None, typer.Option("--reference", help="Dataset of real images for FID/KID.")
    ] = None,
    extractor: Annotated[
        str | None,
        typer.Option(help=f"FID/KID feature extractor: inception|clip (default {D_EVAL['extractor']})."),
    ] = None,
    extractor_weights: Annotated[
        str | None, typer.Option(help="Local weights file of the feature extractor (nothing is downloaded).")
    ] = None,
    kid_subset_size: Annotated[
        int | None, typer.Option(help=f"KID subset size (default {D_EVAL['kid_subset_size']}).")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help=f"Images per forward pass (default {D_EVAL['batch_size']}).")
    ] = None,
    device: DeviceOpt = None,
    torch_threads: ThreadsOpt = None,
    detach: DetachOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Automatic metrics (CLIP score, R-precision, FID, KID) per checkpoint × prompt regime."""
    ws, run_id = _submit(
        ctx,
        "t2i_eval",
        _given(
            dataset=dataset,
            metrics=metrics,
            clip_model=clip_model,
            clip_pretrained=clip_pretrained,
            reference_dataset=reference,
            extractor=extractor,
            extractor_weights=extractor_weights,
            kid_subset_size=kid_subset_size,
            batch_size=batch_size,
            device=device,
            torch_threads=torch_threads,
        ),
    )
    run, stopped = _execute(ws, run_id, detach=detach, as_json=as_json)
    results = run_forms.eval_records(ws, int(run.id))  # type: ignore[arg-type]
    summary = {
        "run_id": run.id,
        "kind": run.kind,
        "status": run.status,
        "results": results,
        "message": run.message,
    }
    if not as_json and not detach and results:
        out.print(results_table(results, title=f"Run {run.id}: {dataset}"))
    line = f"Run {run.id} (t2i_eval) {run.status}: {len(results)} results"
    _finish(run, summary, line, as_json=as_json, detach=detach, stopped=stopped)


def results_table(results: list[dict[str, Any]], title: str = "") -> Table:
    """checkpoint × regime rows, one column per metric: ``value ± stderr (n)``."""
    metric_names = sorted({r["metric"] for r in results}, key=_metric_order)
    table = Table("checkpoint", "regime", *metric_names, title=title or None)
    cells: dict[tuple[str, str], dict[str, str]] = {}
    for r in results:
        cells.setdefault((r["checkpoint"], r["regime"]), {})[r["metric"]] = run_forms.fmt_metric(r)
    for (checkpoint, regime), by_metric in sorted(cells.items()):
        table.add_row(checkpoint, regime, *(by_metric.get(m, "—") for m in metric_names))
    return table


def _metric_order(name: str) -> tuple[int, str]:
    order = list(configs.EVAL_METRICS)
    return (order.index(name) if name in order else len(order), name)
