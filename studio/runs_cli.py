"""Commands for runs: ``captioner train``, ``recaption``, ``score clip``, ``runs ...``, ``models tiny``.

Registered on the main app at the end of :mod:`studio.cli`. The model jobs run in the foreground by
default — the same runner subprocess the studio launches, with a progress bar (rate, ETA)
on stderr — or queue for the studio with ``--detach``. ``--json`` prints one final line.

Exit codes: 0 succeeded (or queued, with ``--detach``), 1 the run failed or was
interrupted (its last error lines on stderr), 2 bad usage (unknown dataset, invalid
setting, no such run), 3 cancelled (Ctrl-C cancels a foreground run cleanly), 128 + the
signal's number when SIGTERM or SIGHUP stopped a foreground run (143, 129): a ``timeout``,
a batch scheduler's cancel or a closed terminal cancels the run like Ctrl-C, so no runner is
left behind; ``--detach`` is the way to outlive the shell.

Every command that reads or changes runs first turns runs whose runner is gone into
``interrupted`` (:func:`backend.jobs.reconcile_orphans`, as the studio does at start), so a
headless server needs no studio to see and resume a job killed with ``kill -9``.

Why this module never imports ``studio.cli``: ``python -m studio.cli`` runs that file as
``__main__``, so importing it here would load a second copy; the workspace folder comes
from the root command's ``--home`` through the click context instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from backend import jobs
from backend.db import migrate
from backend.jobs import configs
from backend.references import ArtifactKind
from backend.workspace import UnsafePathError, Workspace, open_workspace, safe_join
from studio import run_forms
from studio.console import err, fail, out

EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED = 1, 2, 3
PROJECT_ROOT = Path(__file__).resolve().parents[1]
TINY_FAMILIES = "blip|git|ved|paligemma|qwen2_vl|qwen2_5_vl|idefics3|llava|florence2|sd|causal_lm"

captioner_app = typer.Typer(help="Fine-tune captioners.", no_args_is_help=True)
score_app = typer.Typer(help="Score captions.", no_args_is_help=True)
runs_app = typer.Typer(help="List, inspect, cancel and resume runs.", no_args_is_help=True)
models_app = typer.Typer(help="Model helpers.", no_args_is_help=True)

D_TRAIN = configs.DEFAULTS["captioner_train"]
D_RECAP = configs.DEFAULTS["recaption"]
D_CLIP = configs.DEFAULTS["clip_score"]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON summary as the last line of stdout.")]
ThreadsOpt = Annotated[
    int | None,
    typer.Option(help="CPU threads for torch (default 0: chosen from the cores; OMP_NUM_THREADS wins)."),
]
DetachOpt = Annotated[
    bool, typer.Option("--detach", help="Queue the run for the studio and return at once (no progress bar).")
]
DeviceOpt = Annotated[str | None, typer.Option(help="auto|cpu|cuda (default auto).")]


def _ws(ctx: typer.Context) -> Workspace:
    """The workspace named by the root command's ``--home`` (or the environment / default),
    with its orphaned runs reconciled.

    Why reconcile here: with no studio running, nothing else notices a runner killed with
    ``kill -9`` (or an OOM kill, a reboot); its row would say ``running`` for ever and
    ``runs resume`` would refuse it. Every runs and job command goes through here.
    """
    home = ctx.find_root().params.get("home")
    ws = open_workspace(home)
    migrate(ws)
    jobs.reconcile_orphans(ws)
    return ws


def _given(**values: Any) -> dict[str, Any]:
    """Only the options the user set: everything else takes the defaults of backend.jobs.configs."""
    return {k: v for k, v in values.items() if v is not None}


# --------------------------------------------------------------------------- foreground runs


@contextmanager
def run_progress(
    ws: Workspace, run_id: int, enabled: bool
) -> Iterator[Callable[[int, int | None, str], None]]:
    """A rich bar on stderr for one run; yields the ProgressFn the job system calls.

    Rate and ETA come from the run row (the job's own sliding window), not from the bar,
    so a resumed run that starts half done does not claim an absurd speed.
    """
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TextColumn("ETA {task.fields[eta]}"),
        TimeElapsedColumn(),
        console=err,
        disable=not enabled,
        transient=False,
    )
    task = progress.add_task(f"run {run_id}", total=None, rate="—", eta="—")

    def update(done: int, total: int | None, _message: str) -> None:
        try:
            run = jobs.get_run(ws, run_id)
        except jobs.JobError:
            return
        progress.update(
            task,
            completed=done,
            total=total,
            description=f"run {run_id} {run.kind} · {run.status}",
            rate=run_forms.fmt_rate(run.rate),
            eta=run_forms.fmt_eta(run),
        )

    with progress:
        yield update


def _busy_gpu_run(ws: Workspace, run_id: int) -> jobs.Run | None:
    """Another run holding the GPU, if this one needs it (one GPU job at a time)."""
    run = jobs.get_run(ws, run_id)
    if not run.needs_gpu:
        return None
    for other in jobs.list_runs(ws, status=jobs.RunStatus.running.value):
        if other.needs_gpu and other.id != run_id:
            return other
    return None


def follow(
    ws: Workspace, run_id: int, update: Callable[[int, int | None, str], None], poll_s: float = 0.5
) -> jobs.Run:
    """Wait for a run someone else executes (or the queue starts), showing its progress.

    While it is queued this process advances the queue itself, so it starts as soon as
    a slot frees up even with no studio open. Ctrl-C cancels it.
    """
    last_tick = 0.0
    try:
        while True:
            run = jobs.get_run(ws, run_id)
            update(run.done, run.total, run.status)
            if run.status not in jobs.ACTIVE:
                return run
            if run.status == jobs.RunStatus.queued.value and time.monotonic() - last_tick > 2.0:
                last_tick = time.monotonic()
                jobs.tick(ws)
            time.sleep(poll_s)
    except KeyboardInterrupt:
        try:
            return jobs.cancel_run(ws, run_id)
        except jobs.JobError:
            return jobs.get_run(ws, run_id)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


@dataclass
class StopSignal:
    """The SIGTERM or SIGHUP that stopped a foreground run (None: none arrived)."""

    signum: int | None = None

    @property
    def exit_code(self) -> int | None:
        """128 + the signal's number, as a shell reports a process the signal ended."""
        return None if self.signum is None else 128 + self.signum


@contextmanager
def stop_signals_cancel() -> Iterator[StopSignal]:
    """While a foreground run executes, SIGTERM and SIGHUP act like Ctrl-C.

    Why: their default action kills this process at once, and the runner, in its own
    process group so that a studio's Ctrl-C spares it, would run on as an orphan (a
    ``timeout 900 recap-studio t2i train`` trained on for 20 minutes). Raising
    KeyboardInterrupt sends them through the same clean cancel as Ctrl-C. Only the first
    signal interrupts; later ones are noted and ignored so they cannot cut the cancel short.
    """
    caught = StopSignal()

    def handler(signum: int, _frame: FrameType | None) -> None:
        if caught.signum is not None:
            return
        caught.signum = signum
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield caught
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)


def foreground(
    ws: Workspace, run_id: int, *, resume: bool = False, as_json: bool = False
) -> tuple[jobs.Run, StopSignal]:
    """:func:`run_in_foreground` with SIGTERM/SIGHUP treated as Ctrl-C; never leaves the run active.

    An interrupt that lands outside the runner's wait (before the runner started, or while
    it was being spawned) still cancels the run here: a run left ``queued`` would be
    started later by someone else's tick, long after its user gave up on it.
    """
    with stop_signals_cancel() as caught:
        try:
            return run_in_foreground(ws, run_id, resume=resume, as_json=as_json), caught
        except KeyboardInterrupt:
            run = jobs.get_run(ws, run_id)
            if run.status in jobs.ACTIVE:
                with contextlib.suppress(jobs.JobError):
                    run = jobs.cancel_run(ws, run_id)
            return run, caught


def run_in_foreground(ws: Workspace, run_id: int, *, resume: bool = False, as_json: bool = False) -> jobs.Run:
    """Execute a queued run (or resume a stopped one) here, with a progress bar."""
    enabled = sys.stderr.isatty() or not as_json
    busy = _busy_gpu_run(ws, run_id)
    if busy is not None:
        err.print(
            f"run {busy.id} ({busy.kind}) holds the GPU; run {run_id} waits in the queue (Ctrl-C cancels it)",
            markup=False,
            highlight=False,
        )
    with run_progress(ws, run_id, enabled) as update:
        try:
            if busy is not None:
                if resume:
                    jobs.resume_run(ws, run_id, foreground=False)
                return follow(ws, run_id, update)
            if resume:
                return jobs.resume_run(ws, run_id, foreground=True, progress=update)
            return jobs.run_foreground(ws, run_id, update)
        except jobs.RunNotFound:
            raise
        except jobs.JobError:
            # the studio's queue claimed it between our creating and claiming it: follow that
            return follow(ws, run_id, update)


def print_summary(ws: Workspace, run: jobs.Run) -> None:
    """The ``--json`` line: the run's final summary."""
    print(json.dumps(run_forms.final_summary(ws, run)), flush=True)


def report(ws: Workspace, run: jobs.Run, as_json: bool, stopped: StopSignal | None = None) -> None:
    """Print the outcome; exit non-zero unless it succeeded (the error's lines on stderr)."""
    # after a SIGHUP the terminal may be gone: the run is cancelled already, the exit status counts
    quiet_errors = stopped is not None and stopped.signum is not None
    try:
        if as_json:
            print_summary(ws, run)
        else:
            counts = run_forms.caption_counts(ws, int(run.id))  # type: ignore[arg-type]
            extra = "".join(f", {n} {kind}" for kind, n in counts.items())
            out.print(
                f"Run {run.id} ({run.kind}) {run.status}: {run_forms.progress_text(run)}{extra}",
                markup=False,
                highlight=False,
            )
    except OSError:
        if not quiet_errors:
            raise
    exit_unless_succeeded(run, stopped)


def exit_unless_succeeded(run: jobs.Run, stopped: StopSignal | None = None) -> None:
    """Exit 3 for a cancelled run, 1 (with its error lines on stderr) for a failed or interrupted
    one; 128 + the signal's number when SIGTERM/SIGHUP stopped it (143, 129), as a shell expects."""
    if stopped is not None and stopped.exit_code is not None and run.status != jobs.RunStatus.succeeded.value:
        name = signal.Signals(stopped.signum).name  # type: ignore[arg-type]
        with contextlib.suppress(OSError):
            err.print(
                f"run {run.id} was {run.status} on {name}: {run.message} "
                f"(`recap-studio runs resume {run.id}` continues it; --detach outlives the shell)",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        raise typer.Exit(stopped.exit_code)
    if run.status == jobs.RunStatus.succeeded.value:
        return
    if run.status == jobs.RunStatus.cancelled.value:
        err.print(f"run {run.id} was cancelled: {run.message}", markup=False, highlight=False)
        raise typer.Exit(EXIT_CANCELLED)
    err.print(
        f"error: run {run.id} {run.status}:\n{run.message}\n(log: {run.output_dir}/log.txt; "
        f"`recap-studio runs resume {run.id}` continues it)",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    raise typer.Exit(EXIT_FAILED)


def launch(
    ws: Workspace,
    run_id: int,
    *,
    detach: bool,
    as_json: bool,
    announce: Callable[[jobs.Run], None],
    resume: bool = False,
) -> None:
    """Run (or ``resume``) a run here with a progress bar and :func:`report` it; or, with
    ``detach``, leave it to the queue and print where it stands: its summary with ``as_json``,
    else ``announce``'s line."""
    if not detach:
        run, stopped = foreground(ws, run_id, resume=resume, as_json=as_json)
        report(ws, run, as_json, stopped)
        return
    if resume:
        try:
            run = jobs.resume_run(ws, run_id)
        except jobs.JobError as exc:
            raise fail(str(exc), EXIT_FAILED) from None
    else:
        jobs.tick(ws)
        run = jobs.get_run(ws, run_id)
    if as_json:
        print_summary(ws, run)
    else:
        announce(run)


def submit(ctx: typer.Context, kind: str, values: dict[str, Any], *, detach: bool, as_json: bool) -> None:
    """Create a run from CLI options, then run it here or leave it to the queue."""
    ws = _ws(ctx)
    try:
        run = configs.new_run(ws, kind, values)
    except configs.ConfigError as exc:
        raise fail(str(exc)) from None
    run_id = int(run.id)  # type: ignore[arg-type]

    def announce(run: jobs.Run) -> None:
        out.print(
            f"Run {run_id} ({kind}) is {run.status}. Follow it with `recap-studio runs show {run_id}` "
            "or in the studio's Runs tab.",
            markup=False,
            highlight=False,
        )

    launch(ws, run_id, detach=detach, as_json=as_json, announce=announce)


# --------------------------------------------------------------------------- captioner train


@captioner_app.command("train")
def captioner_train(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option(help="Dataset whose approved human captions train the model.")],
    base: Annotated[
        str, typer.Option(help="Model to start from: hub id, local folder, or a captioner artifact name/id.")
    ],
    style: Annotated[str, typer.Option(help="Caption style: short|long|both.")],
    both_mode: Annotated[
        str | None,
        typer.Option(
            help=f"With --style both: separate models or one prompted model (default {D_TRAIN['both_mode']})."
        ),
    ] = None,
    lora: Annotated[
        bool | None, typer.Option("--lora/--full", help="Train LoRA adapters (peft) instead of all weights.")
    ] = None,
    lora_rank: Annotated[
        int | None, typer.Option(help=f"LoRA rank (default {D_TRAIN['lora_rank']}).")
    ] = None,
    freeze_vision: Annotated[
        bool | None, typer.Option("--freeze-vision/--train-vision", help="Freeze the vision encoder.")
    ] = None,
    lr: Annotated[float | None, typer.Option(help=f"Learning rate (default {D_TRAIN['lr']}).")] = None,
    epochs: Annotated[int | None, typer.Option(help=f"Epochs (default {D_TRAIN['epochs']}).")] = None,
    batch_size: Annotated[
        int | None, typer.Option(help=f"Batch size (default {D_TRAIN['batch_size']}).")
    ] = None,
    grad_accum: Annotated[
        int | None, typer.Option(help=f"Gradient accumulation steps (default {D_TRAIN['grad_accum']}).")
    ] = None,
    mixed_precision: Annotated[
        str | None, typer.Option(help=f"no|fp16|bf16 (GPU only; default {D_TRAIN['mixed_precision']}).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help=f"Random seed (default {D_TRAIN['seed']}).")] = None,
    val_fraction: Annotated[
        float | None,
        typer.Option(help=f"Share of images held out for validation (default {D_TRAIN['val_fraction']})."),
    ] = None,
    eval_every: Annotated[
        int | None, typer.Option(help=f"Validate every N optimizer steps (default {D_TRAIN['eval_every']}).")
    ] = None,
    max_new_tokens: Annotated[
        int | None,
        typer.Option(help=f"Token limit of validation captions (default {D_TRAIN['max_new_tokens']}: 128 for short, 384 for long)."),
    ] = None,
    device: DeviceOpt = None,
    clip_model: Annotated[
        str | None, typer.Option(help="open_clip model to CLIP-score validation captions (default: off).")
    ] = None,
    clip_pretrained: Annotated[
        str | None, typer.Option(help="Its pretrained tag or local checkpoint (with --clip-model).")
    ] = None,
    torch_threads: ThreadsOpt = None,
    detach: DetachOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Fine-tune a captioner on a dataset's approved human captions (short, long or both)."""
    submit(
        ctx,
        "captioner_train",
        _given(
            dataset=dataset,
            base=base,
            style=style,
            both_mode=both_mode,
            lora=lora,
            lora_rank=lora_rank,
            freeze_vision=freeze_vision,
            lr=lr,
            epochs=epochs,
            batch_size=batch_size,
            grad_accum=grad_accum,
            mixed_precision=mixed_precision,
            seed=seed,
            val_fraction=val_fraction,
            eval_every=eval_every,
            max_new_tokens=max_new_tokens,
            device=device,
            clip_model=clip_model,
            clip_pretrained=clip_pretrained,
            torch_threads=torch_threads,
        ),
        detach=detach,
        as_json=as_json,
    )


# --------------------------------------------------------------------------- recaption


def recaption_cmd(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option(help="Dataset to recaption.")],
    captioner: Annotated[str, typer.Option(help="Captioner artifact (name or id), hub id, or local folder.")],
    style: Annotated[str, typer.Option(help="short|long|both: writes recap_short and/or recap_long.")],
    prompt: Annotated[str | None, typer.Option(help="Prompt for prompted / chat captioners.")] = None,
    batch_size: Annotated[
        int | None, typer.Option(help=f"Images per batch (default {D_RECAP['batch_size']}).")
    ] = None,
    num_workers: Annotated[
        int | None, typer.Option(help=f"Image-decoding worker processes (default {D_RECAP['num_workers']}).")
    ] = None,
    max_new_tokens: Annotated[
        int | None,
        typer.Option(
            help="Token limit per caption (default 0: per style, "
            + ", ".join(f"{k} {n}" for k, n in configs.DEFAULT_MAX_NEW_TOKENS.items())
            + "; captions that reach it are flagged hit_token_limit)."
        ),
    ] = None,
    num_beams: Annotated[
        int | None, typer.Option(help=f"Beam search width (default {D_RECAP['num_beams']}).")
    ] = None,
    dtype: Annotated[str | None, typer.Option(help="auto|float32|float16|bfloat16 (default auto).")] = None,
    device: DeviceOpt = None,
    torch_threads: ThreadsOpt = None,
    detach: DetachOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Recaption a dataset with a captioner: resumable, batched, one caption per image and kind."""
    submit(
        ctx,
        "recaption",
        _given(
            dataset=dataset,
            captioner=captioner,
            style=style,
            prompt=prompt,
            batch_size=batch_size,
            num_workers=num_workers,
            max_new_tokens=max_new_tokens,
            num_beams=num_beams,
            dtype=dtype,
            device=device,
            torch_threads=torch_threads,
        ),
        detach=detach,
        as_json=as_json,
    )


# --------------------------------------------------------------------------- score clip


@score_app.command("clip")
def score_clip(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option(help="Dataset whose captions to score.")],
    kinds: Annotated[
        str | None,
        typer.Option(help=f"Comma-separated caption kinds (default {','.join(D_CLIP['kinds'])})."),
    ] = None,
    model: Annotated[str | None, typer.Option(help=f"open_clip model (default {D_CLIP['model']}).")] = None,
    pretrained: Annotated[
        str | None,
        typer.Option(help=f"open_clip pretrained tag or local checkpoint (default {D_CLIP['pretrained']})."),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help=f"Captions per forward pass (default {D_CLIP['batch_size']}).")
    ] = None,
    device: DeviceOpt = None,
    torch_threads: ThreadsOpt = None,
    detach: DetachOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """CLIP score (100 × cosine) of each caption of the given kinds, flagged past 77 tokens."""
    submit(
        ctx,
        "clip_score",
        _given(
            dataset=dataset,
            kinds=kinds,
            model=model,
            pretrained=pretrained,
            batch_size=batch_size,
            device=device,
            torch_threads=torch_threads,
        ),
        detach=detach,
        as_json=as_json,
    )


# --------------------------------------------------------------------------- runs


def _get_run(ws: Workspace, run_id: int) -> jobs.Run:
    try:
        return jobs.get_run(ws, run_id)
    except jobs.RunNotFound as exc:
        raise fail(str(exc)) from None


@runs_app.command("list")
def runs_list(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, help="How many runs, newest first.")] = 50,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many of the newest.")] = 0,
    status: Annotated[str | None, typer.Option(help="Only runs in this status.")] = None,
    kind: Annotated[str | None, typer.Option(help="Only runs of this kind.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Runs, newest first, with status and progress."""
    runs = jobs.list_runs(_ws(ctx), status=status, kind=kind, limit=limit, offset=offset)
    if as_json:
        print(json.dumps([run_forms.run_record(r) for r in runs]))
        return
    if not runs:
        out.print("No runs yet.")
        return
    table = Table("id", "kind", "status", "progress", "rate", "ETA", "started", "message")
    for r in runs:
        table.add_row(
            str(r.id),
            r.kind,
            r.status,
            run_forms.progress_text(r),
            run_forms.fmt_rate(r.rate) if r.status == "running" else "—",
            run_forms.fmt_eta(r),
            run_forms.fmt_when(r.started_at),
            run_forms.headline(r, 60),
        )
    out.print(table)


@runs_app.command("show")
def runs_show(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument(help="Run id.")],
    log_lines: Annotated[int, typer.Option(min=0, help="Lines of the log's tail to show.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """One run: config, progress, metrics, outputs, log tail (and the error if it failed)."""
    ws = _ws(ctx)
    run = _get_run(ws, run_id)
    details = run_forms.run_details(ws, run, log_lines)
    if as_json:
        print(json.dumps(details))
        return
    p = lambda text="": out.print(text, markup=False, highlight=False, soft_wrap=True)  # noqa: E731
    p(f"Run {run.id}: {run.kind}  [{run.status}]  attempt {run.attempt}")
    p(
        f"  progress {run_forms.progress_text(run)}   rate {run_forms.fmt_rate(run.rate)}   "
        f"ETA {run_forms.fmt_eta(run)}   elapsed {run_forms.fmt_duration(details['elapsed_s'])}"
    )
    p(
        f"  created {run_forms.fmt_when(run.created_at)}   started {run_forms.fmt_when(run.started_at)}   "
        f"finished {run_forms.fmt_when(run.finished_at)}"
    )
    p(f"  folder  {run.output_dir}")
    if run.message:
        label = "error" if run.status == jobs.RunStatus.failed.value else "message"
        p(f"{label}:")
        for line in run.message.splitlines():
            p(f"  {line}")
    p("config:")
    for key, value in run.config.items():
        p(f"  {key}: {json.dumps(value)}")
    if details["metrics"]:
        table = Table("metric", "values", "steps", "last", "min", "max", title="metrics")
        for m in details["metrics"]:
            table.add_row(
                m["name"],
                str(m["count"]),
                f"{m['first_step']}–{m['last_step']}",
                f"{m['last']:.4g}",
                f"{m['low']:.4g}",
                f"{m['high']:.4g}",
            )
        out.print(table)
    if details["captions"]:
        p("captions written: " + ", ".join(f"{k} {n}" for k, n in details["captions"].items()))
    for a in details["artifacts"]:
        p(f"artifact {a['id']}: {a['kind']} {a['name']}  ({a['path']})")
    if details["sample_steps"]:
        p(f"validation samples at steps {', '.join(map(str, details['sample_steps']))}")
    if details["log_tail"]:
        p(f"log ({run.output_dir}/log.txt, last {log_lines} lines):")
        for line in details["log_tail"].splitlines():
            p(f"  {line}")


@runs_app.command("cancel")
def runs_cancel(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument(help="Run id.")],
    as_json: JsonOpt = False,
) -> None:
    """Cancel a queued or running run (its job stops after the current step)."""
    ws = _ws(ctx)
    _get_run(ws, run_id)
    try:
        run = jobs.cancel_run(ws, run_id)
    except jobs.JobError as exc:
        raise fail(str(exc), EXIT_FAILED) from None
    if as_json:
        print(json.dumps(run_forms.run_record(run)))
    else:
        out.print(f"Run {run.id} {run.status}: {run.message}", markup=False, highlight=False)


@runs_app.command("resume")
def runs_resume(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument(help="Run id.")],
    detach: DetachOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Continue an interrupted, cancelled or failed run (in the foreground unless --detach)."""
    ws = _ws(ctx)
    run = _get_run(ws, run_id)
    if run.status not in jobs.RESUMABLE:
        raise fail(f"run {run_id} is {run.status}; only {', '.join(jobs.RESUMABLE)} runs can resume")
    launch(
        ws,
        run_id,
        resume=True,
        detach=detach,
        as_json=as_json,
        announce=lambda run: out.print(f"Run {run_id} is {run.status}.", markup=False, highlight=False),
    )


@runs_app.command("selftest", hidden=True)
def runs_selftest(
    ctx: typer.Context,
    items: Annotated[int, typer.Option(min=0, help="Items to process.")] = 10,
    delay: Annotated[float, typer.Option(min=0.0, help="Seconds per item.")] = 0.05,
    fail_after: Annotated[int | None, typer.Option(min=0, help="Fail (raise) after this many items.")] = None,
    detach: DetachOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """A model-free job for checking the job machinery (tests, smoke checks)."""
    ws = _ws(ctx)
    config: dict[str, Any] = {"items": items, "delay_s": delay}
    if fail_after is not None:
        config.update(fail=True, fail_after=fail_after)
    run_id = int(jobs.create_run(ws, "selftest", config).id)  # type: ignore[arg-type]
    launch(
        ws,
        run_id,
        detach=detach,
        as_json=as_json,
        announce=lambda run: out.print(f"Run {run_id} (selftest) is {run.status}."),
    )


# --------------------------------------------------------------------------- models


def tiny_out_dir(ws: Workspace, out_path: Path) -> Path:
    """Relative paths go under the workspace's ``models/`` (guarded); absolute ones are used as given."""
    if out_path.is_absolute():
        return out_path
    return safe_join(ws.home / "models", out_path)


@models_app.command("tiny")
def models_tiny(
    ctx: typer.Context,
    family: Annotated[str, typer.Option(help=f"Model family: {TINY_FAMILIES}.")],
    out_path: Annotated[
        Path, typer.Option("--out", help="Folder to write (relative paths go under the workspace's models/).")
    ],
    seed: Annotated[int, typer.Option(help="Random seed of the weights.")] = 0,
    register: Annotated[
        str | None,
        typer.Option(
            help="Also register it as an artifact with this name (folder must be in the workspace): a "
            "captioner, a t2i pipeline (sd) or an upsampler (causal_lm)."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Build a tiny random model of one family, offline (for tests and demos): a captioner, a Stable
    Diffusion pipeline (sd) or a causal language model (causal_lm)."""
    ws = _ws(ctx)
    try:
        target = tiny_out_dir(ws, out_path)
    except UnsafePathError as exc:
        raise fail(str(exc)) from None
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PROJECT_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    command = [
        sys.executable,
        "-m",
        "training.tiny",
        "--family",
        family,
        "--out",
        str(target),
        "--seed",
        str(seed),
    ]
    # a subprocess: the studio package never imports training or torch
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise fail(f"building the tiny {family} model failed:\n" + "\n".join(detail), result.returncode or 1)
    # what --register records it as: a captioner by default, sd as a T2I pipeline, causal_lm as a
    # prompt upsampler (generate --upsampler takes it by name)
    artifact_kind = {"sd": ArtifactKind.t2i, "causal_lm": ArtifactKind.upsampler}.get(
        family, ArtifactKind.captioner
    )
    artifact = None
    if register:
        try:
            artifact = jobs.add_artifact(
                ws,
                None,
                artifact_kind,
                register,
                target,
                {"tiny": True, "family": family, "seed": seed},
            )
        except UnsafePathError as exc:
            raise fail(f"cannot register {target}: {exc}") from None
    if as_json:
        print(
            json.dumps(
                {
                    "family": family,
                    "path": str(target),
                    "artifact_id": artifact.id if artifact else None,
                    "artifact_kind": artifact_kind if artifact else None,
                }
            )
        )
        return
    what = {"sd": "Stable Diffusion pipeline", "causal_lm": "language model"}.get(family, "captioner")
    out.print(f"Tiny {family} {what} in {target}", markup=False, highlight=False, soft_wrap=True)
    if artifact is not None:
        out.print(
            f"Registered as {artifact_kind} artifact '{artifact.name}' (id {artifact.id}).", markup=False
        )
