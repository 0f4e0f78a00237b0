"""Commands about runs: ``runs list|show|cancel|resume`` and ``models tiny``; the job groups.

The job commands themselves (``captioner train``, ``recaption``, ``score clip``, ``runs
selftest``, and the text-to-image ones) are generated from the job kinds' schemas and share one
path — submit, run in the foreground or ``--detach``, report with ``--json`` — in
:mod:`studio.job_cli`, whose exit codes these commands follow too; :mod:`studio.cli` registers
them into the groups defined here. ``runs resume`` continues a run through that same path.

Every command that reads or changes runs first reconciles runs whose runner is gone
(:func:`studio.job_cli.workspace`), so ``runs list`` tells ``interrupted`` from ``running``
without a studio.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from backend import jobs
from backend.references import ArtifactKind
from backend.workspace import UnsafePathError, Workspace, safe_join
from studio import run_forms
from studio.console import fail, out
from studio.job_cli import EXIT_FAILED, DetachOpt, JsonOpt, execute, report_for
from studio.job_cli import workspace as _ws

PROJECT_ROOT = Path(__file__).resolve().parents[1]
#: kept as a string (not read from training.tiny) so that --help never imports torch;
#: tests/test_sized_models.py checks it names every family training.tiny builds
TINY_FAMILIES = (
    "blip|git|ved|paligemma|qwen2_vl|qwen2_5_vl|idefics3|llava|florence2|sd|causal_lm"
    "|detr|yolos|rt_detr|owlv2|grounding_dino|longclip"
)

captioner_app = typer.Typer(help="Fine-tune captioners.", no_args_is_help=True)
score_app = typer.Typer(help="Score captions.", no_args_is_help=True)
runs_app = typer.Typer(help="List, inspect, cancel and resume runs.", no_args_is_help=True)
models_app = typer.Typer(help="Model helpers.", no_args_is_help=True)


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
    execute(
        ws,
        run_id,
        resume=True,
        detach=detach,
        as_json=as_json,
        report=report_for(run.kind),  # a resumed run reports as its own command does
        announce=lambda r: f"Run {r.id} is {r.status}.",
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
    size: Annotated[
        str,
        typer.Option(
            help="tiny (toy widths, the default), or base / large: the real architecture with random "
            "weights, for GPU benchmarks (blip: base, large; qwen2_vl: base = Qwen2-VL-2B; sd: base = SD 1.5)."
        ),
    ] = "tiny",
    device: Annotated[
        str, typer.Option(help="Where base / large weights are initialised (cuda is much faster).")
    ] = "cpu",
    fixed_new_tokens: Annotated[
        int,
        typer.Option(
            help="base / large captioners: every caption this many tokens (min_new_tokens); 0 = off."
        ),
    ] = 0,
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
    if size != "tiny":
        command += ["--size", size, "--device", device, "--fixed-new-tokens", str(fixed_new_tokens)]
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
                {"tiny": size == "tiny", "size": size, "family": family, "seed": seed},
            )
        except UnsafePathError as exc:
            raise fail(f"cannot register {target}: {exc}") from None
    if as_json:
        print(
            json.dumps(
                {
                    "family": family,
                    "size": size,
                    "path": str(target),
                    "artifact_id": artifact.id if artifact else None,
                    "artifact_kind": artifact_kind if artifact else None,
                }
            )
        )
        return
    what = {"sd": "Stable Diffusion pipeline", "causal_lm": "language model"}.get(family, "captioner")
    out.print(
        f"{size.capitalize()} {family} {what} in {target}", markup=False, highlight=False, soft_wrap=True
    )
    if artifact is not None:
        out.print(
            f"Registered as {artifact_kind} artifact '{artifact.name}' (id {artifact.id}).", markup=False
        )
