"""``python -m training.runner RUN_ID --home DIR``: execute one run of the job system.

The runner owns everything around a job: it takes ownership of the row (pid, process
group), logs to ``runs/<id>/log.txt``, keeps a heartbeat, turns SIGTERM / Ctrl-C into a
clean stop, and always ends the row — succeeded, failed (with the error's last lines as the
message the UI shows) or cancelled — so no exception ever leaves a run 'running'. Then it
advances the queue, so queued runs start even when no studio is open.

A run whose config asks for ``processes`` > 1 (the training jobs) is *supervised*: this process
keeps the row, the heartbeat and the process group, and runs the job on that many workers under
``accelerate launch`` (:func:`training.distributed.supervise`); each worker is this module with
``--worker`` (:func:`execute_worker`), rank 0 the only one that writes. A worker killed by a signal
ends the run ``interrupted`` (resumable from rank 0's last checkpoint), like a killed runner.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from backend.jobs import store
from backend.jobs.context import JobContext, JobStopped
from backend.jobs.models import RunStatus
from backend.jobs.scheduler import tick
from backend.workspace import Workspace, resolve_home
from training.distributed import (
    OWNER_ENV,
    DistributedError,
    QuietContext,
    WorkerLost,
    die_with_parent,
    supervise,
    write_outcome,
)
from training.jobs import get_job
from training.versions import LibraryConflict, check_model_libraries

__all__ = ["JobContext", "JobStopped", "execute", "execute_worker", "main"]

EXIT_SUCCEEDED, EXIT_FAILED, EXIT_NOT_OURS, EXIT_CANCELLED = 0, 1, 2, 3
ERROR_LINES = 20
# job kinds that load no model library, so a broken model install must not stop them
NO_MODEL_KINDS = frozenset({"selftest"})
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def error_message(exc: BaseException, lines: int = ERROR_LINES) -> str:
    """The last lines of the traceback: where it broke and why, short enough for a table cell."""
    text = "".join(traceback.format_exception(exc)).rstrip()
    return "\n".join(text.splitlines()[-lines:])


def setup_logging(log_file: Path, run_id: int, rank: int | None = None) -> logging.Logger:
    """Everything logged in this process (libraries too) goes to the run's log file.

    The launcher already points stdout/stderr at the same file (both append), so prints
    and C-level messages land there as well; a terminal also gets the records. A worker of a
    multi-process run tags its records with its rank; ranks above 0 log warnings and errors only
    (rank 0 says what the run does, once).
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    file_handler = logging.FileHandler(log_file, encoding="utf-8")
    tag = "" if rank is None else f"[rank {rank}] "
    file_handler.setFormatter(logging.Formatter(LOG_FORMAT.replace("%(message)s", tag + "%(message)s")))
    root.addHandler(file_handler)
    if sys.stderr.isatty():
        root.addHandler(logging.StreamHandler(sys.stderr))
    root.setLevel(logging.INFO if not rank else logging.WARNING)
    logging.captureWarnings(True)
    return logging.getLogger(f"recap.run.{run_id}")


@contextmanager
def stop_on_signals(ctx: JobContext) -> Iterator[None]:
    """SIGTERM / SIGINT ask the job to stop after its current step; a second one interrupts."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        if ctx.stop_requested:
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name}")
        ctx.logger.warning("received %s: stopping after the current step", signal.Signals(signum).name)
        ctx.request_stop()

    previous: dict[int, Callable[..., object] | int | None] = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)


def _finish(ws: Workspace, run_id: int, pid: int, status: str, message: str, logger: logging.Logger) -> None:
    """End the row, retrying briefly: a locked database must not leave it 'running'."""
    for attempt in range(5):
        try:
            store.finish(ws, run_id, status, message, pid=pid)
            return
        except Exception as exc:  # noqa: BLE001
            logger.warning("could not record the end of run %s (try %d): %s", run_id, attempt + 1, exc)
            time.sleep(1.0 + attempt)
    logger.error("gave up recording the end of run %s; reconcile will mark it interrupted", run_id)


def run_until_stopped(ctx: JobContext, job: Callable[[JobContext], object]) -> bool:
    """Run ``job``; True when it ended because a stop was asked for (cancel, SIGTERM, Ctrl-C).

    A Ctrl-C that nobody asked the run to honour (no stop requested) is not a stop: it propagates,
    so the caller fails the run instead of calling it cancelled."""
    try:
        job(ctx)
    except JobStopped:
        return True
    except KeyboardInterrupt:
        if not ctx.stop_requested:
            raise
        return True
    return ctx.stop_requested


def execute(ws: Workspace, run_id: int, *, pgid: int | None = None, advance_queue: bool = True) -> int:
    """Run one job in this process; returns the runner's exit code.

    ``pgid`` is recorded only when this process leads its own group (as launched by
    the studio), so a cancel never signals a group that holds anything else.
    """
    pid = os.getpid()
    run = store.adopt(ws, run_id, pid, pgid)
    if run is None:
        current = store.get_run(ws, run_id) if _exists(ws, run_id) else None
        state = current.status if current else "missing"
        print(f"runner: run {run_id} is {state}; not executing it", file=sys.stderr)
        return EXIT_NOT_OURS

    run_dir = store.run_dir(ws, run)
    run_dir.mkdir(parents=True, exist_ok=True)
    logger = setup_logging(run_dir / store.LOG_NAME, run_id)
    logger.info("run %s (%s) attempt %s starting in pid %s", run_id, run.kind, run.attempt, pid)
    ctx = JobContext(ws, run_id, dict(run.config), run_dir, logger, pid=pid)
    started = time.monotonic()
    status, message, code = RunStatus.failed.value, "", EXIT_FAILED
    ctx.start_heartbeat()
    try:
        with stop_on_signals(ctx):

            def body(ctx: JobContext) -> None:
                if run.kind not in NO_MODEL_KINDS:
                    check_model_libraries()
                processes = processes_of(run.config)
                if processes > 1:
                    supervise(ctx, processes)
                else:
                    get_job(run.kind)(ctx)

            if run_until_stopped(ctx, body):
                status, code = RunStatus.cancelled.value, EXIT_CANCELLED
                message = f"cancelled at {ctx.done or _row_done(ws, run_id)}"
            else:
                status, code = RunStatus.succeeded.value, EXIT_SUCCEEDED
                message = f"succeeded in {time.monotonic() - started:.1f} s"
    except LibraryConflict as exc:  # one clear line, not a traceback: the fix is an install, not code
        status, code, message = RunStatus.failed.value, EXIT_FAILED, f"incompatible model libraries: {exc}"
        logger.error("run %s failed: %s", run_id, message)
    except WorkerLost as exc:  # a worker died without a word: like a killed runner, resumable
        status, code, message = RunStatus.interrupted.value, EXIT_FAILED, str(exc)
        logger.error("run %s interrupted: %s", run_id, message)
    except DistributedError as exc:  # a worker's own error (its traceback is in the log) or a refusal
        status, code, message = RunStatus.failed.value, EXIT_FAILED, str(exc)
        logger.error("run %s failed: %s", run_id, message)
    except BaseException as exc:  # noqa: BLE001 - whatever happens, the row must end
        status, code, message = RunStatus.failed.value, EXIT_FAILED, error_message(exc)
        logger.error("run %s failed:\n%s", run_id, "".join(traceback.format_exception(exc)).rstrip())
    finally:
        ctx.stop_heartbeat()
        try:
            ctx.flush_progress()
        except Exception as exc:  # noqa: BLE001
            logger.warning("could not write the final progress: %s", exc)
        if ctx.lost_ownership:
            logger.warning("run %s was taken over (cancelled or reconciled); leaving its row alone", run_id)
        else:
            _finish(ws, run_id, pid, status, message, logger)
            logger.info("run %s %s: %s", run_id, status, message.splitlines()[-1] if message else "")
    if advance_queue:
        try:
            started_ids = tick(ws)
            if started_ids:
                logger.info("started queued runs %s", started_ids)
        except Exception as exc:  # noqa: BLE001 - the run itself is already recorded
            logger.warning("could not advance the queue: %s", exc)
    return code


def processes_of(config: dict[str, object]) -> int:
    """How many training processes a run's config asks for (1 when the kind has no such option)."""
    try:
        return max(1, int(config.get("processes", 1) or 1))  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 1


def _row_done(ws: Workspace, run_id: int) -> int:
    try:
        return int(store.get_run(ws, run_id).done or 0)
    except Exception:  # noqa: BLE001 - only for a message
        return 0


def execute_worker(ws: Workspace, run_id: int) -> int:
    """Run one rank of a multi-process run (started by :func:`training.distributed.supervise`).

    The supervisor owns the row; the worker checks it still does, then runs the job with a context
    that reports under the supervisor's pid — rank 0's context writes, the others' write nothing —
    and leaves how it ended in ``runs/<id>/processes/rank-<r>.json`` for the supervisor. Stopped
    and succeeded ranks exit 0 (the elastic agent would treat anything else as a crash); a
    failed rank exits 1.
    """
    owner = int(os.environ.get(OWNER_ENV, "0") or 0)
    rank = int(os.environ.get("RANK", "0"))
    run = store.get_run(ws, run_id)
    run_dir = store.run_dir(ws, run)
    write_outcome(run_dir, rank, "running")
    if run.status != RunStatus.running.value or run.pid != owner:
        write_outcome(
            run_dir, rank, "not_ours", f"run {run_id} is {run.status} under pid {run.pid}, not {owner}"
        )
        return EXIT_NOT_OURS
    logger = setup_logging(run_dir / store.LOG_NAME, run_id, rank=rank)
    context = JobContext if rank == 0 else QuietContext
    ctx = context(ws, run_id, dict(run.config), run_dir, logger, pid=owner)
    status, message, code = RunStatus.failed.value, "", EXIT_FAILED
    try:
        with stop_on_signals(ctx):
            stopped = run_until_stopped(ctx, get_job(run.kind))
        status = RunStatus.cancelled.value if stopped else RunStatus.succeeded.value
        code = EXIT_SUCCEEDED
    except BaseException as exc:  # noqa: BLE001 - reported to the supervisor, which ends the row
        message = error_message(exc)
        logger.error("rank %d failed:\n%s", rank, "".join(traceback.format_exception(exc)).rstrip())
    finally:
        try:
            ctx.flush_progress()
        except Exception as exc:  # noqa: BLE001
            logger.warning("could not write the final progress: %s", exc)
        write_outcome(run_dir, rank, status, message, done=ctx.done)
    return code


def _exists(ws: Workspace, run_id: int) -> bool:
    try:
        store.get_run(ws, run_id)
    except store.RunNotFound:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.runner", description=__doc__.splitlines()[0])
    parser.add_argument("run_id", type=int)
    parser.add_argument("--home", default=None, help="Workspace folder (default: $RECAP_STUDIO_HOME).")
    parser.add_argument("--no-tick", action="store_true", help="Do not start queued runs afterwards.")
    parser.add_argument(
        "--worker", action="store_true", help="One rank of a multi-process run (started by its supervisor)."
    )
    args = parser.parse_args(argv)
    if args.worker:  # first: a worker whose supervisor is already gone must not start training
        die_with_parent(int(os.environ.get(OWNER_ENV, "0") or 0))
    ws = Workspace(resolve_home(args.home))
    if ws.db_url.startswith("sqlite") and not ws.db_path.exists():
        print(f"runner: no studio database at {ws.db_path}", file=sys.stderr)
        return EXIT_NOT_OURS
    if args.worker:
        return execute_worker(ws, args.run_id)
    pid = os.getpid()
    pgid = pid if os.getpgid(0) == pid else None
    return execute(ws, args.run_id, pgid=pgid, advance_queue=not args.no_tick)


if __name__ == "__main__":
    sys.exit(main())
