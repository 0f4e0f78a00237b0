"""One command-line path for every job: options from the schema, submit, follow or detach, report.

Every job command (``captioner train``, ``recaption``, ``score clip``, ``t2i train``,
``generate``, ``eval``, ``runs selftest``) is generated from its kind
(:data:`backend.jobs.configs.KINDS`): one option per config field, the flag being the key
(``--inference-steps``), older flag names kept as aliases (``--steps``), the help written once on
the field. Each command then takes the same path: the config is validated and the run created
(:func:`backend.jobs.configs.new_run`, exit 2 with the field's message when a setting is bad),
run here in the foreground — the same runner subprocess the studio launches, with a progress bar
(rate, ETA) on stderr — or queued for the studio with ``--detach``; ``--json`` prints one final
line (the kind's summary, see :func:`report_for`). ``runs resume`` takes the same path.

Exit codes: 0 succeeded (or queued, with ``--detach``), 1 the run failed or was interrupted (its
last error lines on stderr), 2 bad usage (unknown dataset, invalid setting, no such run), 3
cancelled (Ctrl-C cancels a foreground run cleanly), 128 + the signal's number when SIGTERM or
SIGHUP stopped a foreground run (143, 129): a ``timeout``, a batch scheduler's cancel or a closed
terminal cancels the run like Ctrl-C, so no runner is left behind; ``--detach`` is the way to
outlive the shell.

Every command that reads or changes runs first turns runs whose runner is gone into
``interrupted`` (:func:`workspace`), so a headless server needs no studio to see and resume a
job killed with ``kill -9``.

Why this module never imports ``studio.cli``: ``python -m studio.cli`` runs that file as
``__main__``, so importing it here would load a second copy; the workspace folder comes from
the root command's ``--home`` through the click context instead.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping
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

from backend import jobs
from backend.db import migrate
from backend.jobs import configs
from backend.jobs.kinds import JobKind
from backend.jobs.schema import FieldSpec
from backend.workspace import Workspace, open_workspace
from studio import run_forms
from studio.console import err, fail, out

EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED = 1, 2, 3

JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON summary as the last line of stdout.")]
DetachOpt = Annotated[
    bool, typer.Option("--detach", help="Queue the run for the studio and return at once (no progress bar).")
]
ProgressFn = Callable[[int, int | None, str], None]


def workspace(ctx: typer.Context) -> Workspace:
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


# --------------------------------------------------------------------------- the commands, from the schema


def _help(spec: FieldSpec) -> str:
    """The field's help with its choices and default, as ``--help`` shows it."""
    notes = []
    if spec.choices is not None and not spec.open_choices:
        notes.append("|".join(map(str, spec.choices)))
    default = spec.default
    if isinstance(default, list):
        default = ",".join(map(str, default)) if spec.split else None
    elif isinstance(default, bool):
        default = "on" if default else None
    if not spec.required and default not in (None, "") and len(str(default)) <= 40:
        notes.append(f"default {default}")
    return f"{spec.help.rstrip('.')} ({'; '.join(notes)})." if notes else spec.help


def _option(spec: FieldSpec) -> inspect.Parameter:
    """The typer option of one config field: ``--key`` (a switch pair for booleans) plus aliases."""
    if spec.base is bool:
        key = spec.name.replace("_", "-")
        decls = [f"--{key}/--no-{key}", *spec.aliases, *(f" /{off}" for off in spec.off_aliases)]
    else:
        decls = [spec.flag, *spec.aliases]
    kind: Any = list[str] if spec.is_list else spec.base
    option = typer.Option(*decls, help=_help(spec), show_default=False)
    required = spec.required and spec.base is not bool
    annotation = Annotated[kind if required else kind | None, option]  # type: ignore[valid-type]
    default = inspect.Parameter.empty if required else None
    return inspect.Parameter(
        spec.name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default
    )


def _value(spec: FieldSpec, value: Any) -> Any:
    """What the command line gave, as the config wants it: comma lists split, ``@file`` read."""
    if spec.is_list and spec.split:
        return [part.strip() for item in value for part in str(item).split(",") if part.strip()]
    if spec.at_file and isinstance(value, str) and value.startswith("@"):
        path = Path(value[1:]).expanduser()
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise fail(f"{spec.flag} {value!r}: cannot read {path}: {exc}") from None
    return value


def command_for(kind: JobKind) -> Callable[..., None]:
    """The typer command of a job kind: its options are its config's fields (those with ``cli``)."""
    specs = [spec for spec in kind.fields if spec.cli]
    clash = {spec.name for spec in specs} & {"ctx", "detach", "as_json"}
    if clash:
        raise TypeError(f"{kind.name}: config fields {sorted(clash)} clash with the command's own options")

    def command(ctx: typer.Context, detach: bool = False, as_json: bool = False, **options: Any) -> None:
        values = {s.name: _value(s, options[s.name]) for s in specs if options.get(s.name) is not None}
        submit(ctx, kind.name, values, detach=detach, as_json=as_json)

    keyword = inspect.Parameter.KEYWORD_ONLY
    params = [
        inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
        *(_option(spec) for spec in specs),
        inspect.Parameter("detach", keyword, annotation=DetachOpt, default=False),
        inspect.Parameter("as_json", keyword, annotation=JsonOpt, default=False),
    ]
    command.__signature__ = inspect.Signature(params, return_annotation=None)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}
    command.__doc__ = kind.help
    command.__name__ = command.__qualname__ = f"{kind.name}_command"
    return command


def register(app: typer.Typer, groups: Mapping[str, typer.Typer]) -> None:
    """Add every kind's command: ``cli_command`` ("t2i", "train") goes into group ``t2i``."""
    for kind in configs.KINDS.values():
        *group, name = kind.cli_command
        target = groups[group[0]] if group else app
        target.command(name, hidden=kind.cli_hidden)(command_for(kind))


# --------------------------------------------------------------------------- what a finished command prints


@dataclass(frozen=True)
class Report:
    """How a job command reports its run: the ``--json`` line, the human line, and anything the
    human reader sees first (``eval``'s table)."""

    summary: Callable[[Workspace, jobs.Run], dict[str, Any]]
    line: Callable[[Workspace, jobs.Run, dict[str, Any]], str]
    show: Callable[[Workspace, jobs.Run, dict[str, Any]], None] | None = None


def _counts_line(ws: Workspace, run: jobs.Run, _summary: dict[str, Any]) -> str:
    counts = run_forms.caption_counts(ws, int(run.id))  # type: ignore[arg-type]
    extra = "".join(f", {n} {kind}" for kind, n in counts.items())
    return f"Run {run.id} ({run.kind}) {run.status}: {run_forms.progress_text(run)}{extra}"


DEFAULT_REPORT = Report(run_forms.final_summary, _counts_line)


def report_for(kind: str) -> Report:
    """The report of a kind's command: the text-to-image kinds say what a script needs next."""
    from studio.miniature_cli import REPORTS as MINIATURE
    from studio.t2i_cli import REPORTS

    return {**REPORTS, **MINIATURE}.get(kind, DEFAULT_REPORT)


def submitted_line(run: jobs.Run) -> str:
    return (
        f"Run {run.id} ({run.kind}) is {run.status}. Follow it with `recap-studio runs show {run.id}` "
        "or in the studio's Runs tab."
    )


def submit(ctx: typer.Context, kind: str, values: dict[str, Any], *, detach: bool, as_json: bool) -> None:
    """Create a run from command-line values, then run it here or leave it to the queue."""
    ws = workspace(ctx)
    try:
        run = configs.new_run(ws, kind, values)
    except configs.ConfigError as exc:
        raise fail(str(exc)) from None
    execute(ws, int(run.id), detach=detach, as_json=as_json, report=report_for(kind))  # type: ignore[arg-type]


def execute(
    ws: Workspace,
    run_id: int,
    *,
    detach: bool,
    as_json: bool,
    report: Report = DEFAULT_REPORT,
    resume: bool = False,
    announce: Callable[[jobs.Run], str] = submitted_line,
) -> None:
    """Run (or ``resume``) a run here with a progress bar and report it, exiting as the module
    says; or, with ``detach``, leave it to the queue and print where it stands."""
    stopped = StopSignal()
    if not detach:
        run, stopped = foreground(ws, run_id, resume=resume, as_json=as_json)
    elif resume:
        try:
            run = jobs.resume_run(ws, run_id)
        except jobs.JobError as exc:
            raise fail(str(exc), EXIT_FAILED) from None
    else:
        jobs.tick(ws)
        run = jobs.get_run(ws, run_id)
    summary = report.summary(ws, run)
    try:
        if as_json:
            print(json.dumps(summary), flush=True)
        elif detach:
            out.print(announce(run), markup=False, highlight=False)
        else:
            if report.show is not None:
                report.show(ws, run, summary)
            out.print(report.line(ws, run, summary), markup=False, highlight=False, soft_wrap=True)
    except OSError:
        if stopped.signum is None:
            raise  # after a SIGHUP the terminal may be gone; the exit status still tells
    if not detach:
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


# --------------------------------------------------------------------------- foreground runs


@contextmanager
def run_progress(ws: Workspace, run_id: int, enabled: bool) -> Iterator[ProgressFn]:
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


def follow(ws: Workspace, run_id: int, update: ProgressFn, poll_s: float = 0.5) -> jobs.Run:
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
