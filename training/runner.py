"""``python -m training.runner RUN_ID --home DIR``: execute one run of the job system.

The runner owns everything around a job: it takes ownership of the row (pid, process
group), logs to ``runs/<id>/log.txt``, keeps a heartbeat, turns SIGTERM / Ctrl-C into a
clean stop, and always ends the row — succeeded, failed (with the error's last lines as the
message the UI shows) or cancelled — so no exception ever leaves a run 'running'. Then it
advances the queue, so queued runs start even when no studio is open.
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
from training.jobs import get_job
from training.versions import LibraryConflict, check_model_libraries

__all__ = ["JobContext", "JobStopped", "execute", "main"]

EXIT_SUCCEEDED, EXIT_FAILED, EXIT_NOT_OURS, EXIT_CANCELLED = 0, 1, 2, 3
ERROR_LINES = 20
# job kinds that load no model library, so a broken model install must not stop them
NO_MODEL_KINDS = frozenset({"selftest"})
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def error_message(exc: BaseException, lines: int = ERROR_LINES) -> str:
    """The last lines of the traceback: where it broke and why, short enough for a table cell."""
    text = "".join(traceback.format_exception(exc)).rstrip()
    return "\n".join(text.splitlines()[-lines:])


def setup_logging(log_file: Path, run_id: int) -> logging.Logger:
    """Everything logged in this process (libraries too) goes to the run's log file.

    The launcher already points stdout/stderr at the same file (both append), so prints
    and C-level messages land there as well; a terminal also gets the records.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    file_handler = logging.FileHandler(log_file, encoding="utf-8")
    file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(file_handler)
    if sys.stderr.isatty():
        root.addHandler(logging.StreamHandler(sys.stderr))
    root.setLevel(logging.INFO)
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
            try:
                if run.kind not in NO_MODEL_KINDS:
                    check_model_libraries()
                get_job(run.kind)(ctx)
                stopped = ctx.stop_requested
            except JobStopped:
                stopped = True
            except KeyboardInterrupt:
                if not ctx.stop_requested:
                    raise
                stopped = True
            if stopped:
                status, code = RunStatus.cancelled.value, EXIT_CANCELLED
                message = f"cancelled at {ctx.done}"
            else:
                status, code = RunStatus.succeeded.value, EXIT_SUCCEEDED
                message = f"succeeded in {time.monotonic() - started:.1f} s"
    except LibraryConflict as exc:  # one clear line, not a traceback: the fix is an install, not code
        status, code, message = RunStatus.failed.value, EXIT_FAILED, f"incompatible model libraries: {exc}"
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
    args = parser.parse_args(argv)
    ws = Workspace(resolve_home(args.home))
    if ws.db_url.startswith("sqlite") and not ws.db_path.exists():
        print(f"runner: no studio database at {ws.db_path}", file=sys.stderr)
        return EXIT_NOT_OURS
    pid = os.getpid()
    pgid = pid if os.getpgid(0) == pid else None
    return execute(ws, args.run_id, pgid=pgid, advance_queue=not args.no_tick)


if __name__ == "__main__":
    sys.exit(main())
