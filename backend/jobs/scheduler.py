"""The queue: which queued runs start now, cancelling, resuming, and orphan clean-up.

Policy: at most ``max_gpu_jobs`` runs that need the GPU at once (one by default: two
trainings on one GPU mostly run out of memory or crawl), and a few CPU runs beside them.
Queued runs start in id order within each pool. ``tick`` is cheap and safe to call from
anywhere at any time (the studio's queue worker every couple of seconds, every runner as it
exits), so the queue advances even when no studio is open.
"""

from __future__ import annotations

import logging
import os
import threading

from sqlmodel import col, select

from backend.db import read_session, write_session
from backend.jobs import store
from backend.jobs.launch import STARTING_GRACE_S, run_foreground, runner_alive, spawn, stop_process
from backend.jobs.models import Run, RunStatus
from backend.progress import ProgressFn
from backend.workspace import Workspace

MAX_GPU_JOBS_ENV = "RECAP_STUDIO_MAX_GPU_JOBS"
MAX_CPU_JOBS_ENV = "RECAP_STUDIO_MAX_CPU_JOBS"
DEFAULT_MAX_GPU_JOBS = 1
DEFAULT_MAX_CPU_JOBS = 2
CANCEL_GRACE_S = 10.0
QUEUE_TICK_S = 2.0

log = logging.getLogger(__name__)


def _limit(value: int | None, env: str, default: int) -> int:
    if value is not None:
        return value
    try:
        return int(os.environ.get(env, default))
    except ValueError:
        return default


def tick(
    ws: Workspace,
    *,
    max_gpu_jobs: int | None = None,
    max_cpu_jobs: int | None = None,
    reconcile: bool = True,
) -> list[int]:
    """Start the queued runs that fit; return their ids.

    Orphans are reconciled first (``reconcile``) so a job killed while the studio runs
    frees its slot without waiting for a studio restart. Choosing and claiming happen in
    one write transaction, so two concurrent ticks never exceed the limits or start a run twice.
    """
    max_gpu = _limit(max_gpu_jobs, MAX_GPU_JOBS_ENV, DEFAULT_MAX_GPU_JOBS)
    max_cpu = _limit(max_cpu_jobs, MAX_CPU_JOBS_ENV, DEFAULT_MAX_CPU_JOBS)
    if reconcile:
        reconcile_orphans(ws)
    with read_session(ws) as s:  # the common case, nothing queued, takes no write lock
        if s.exec(select(Run.id).where(Run.status == RunStatus.queued.value).limit(1)).first() is None:
            return []
    claimed: list[int] = []
    with write_session(ws) as s:
        running = s.exec(select(Run.needs_gpu).where(Run.status == RunStatus.running.value)).all()
        gpu_busy = sum(1 for gpu in running if gpu)
        cpu_busy = len(running) - gpu_busy
        queued = s.exec(
            select(Run.id, Run.needs_gpu).where(Run.status == RunStatus.queued.value).order_by(col(Run.id))
        ).all()
        for run_id, needs_gpu in queued:
            if needs_gpu:
                if gpu_busy >= max_gpu:
                    continue
                gpu_busy += 1
            else:
                if cpu_busy >= max_cpu:
                    continue
                cpu_busy += 1
            if store.claim(s, run_id):
                claimed.append(run_id)
    started = []
    for run_id in claimed:
        try:
            spawn(ws, run_id)
            started.append(run_id)
        except store.JobError:
            continue  # recorded as failed by spawn
    return started


def reconcile_orphans(ws: Workspace) -> list[int]:
    """Running rows of this machine whose runner is gone become ``interrupted`` (resumable).

    Called when the studio starts (and by ``tick``). Rows of other hosts are left alone:
    their pids mean nothing here.
    """
    interrupted = []
    for run in store.running_runs(ws):
        if run.host not in (None, store.HOST) or runner_alive(run):
            continue
        if run.pid is None:
            reason = f"never started within {STARTING_GRACE_S:.0f} s of being claimed"
        else:
            reason = f"runner process {run.pid} is gone"
        if store.mark_interrupted(ws, run, f"interrupted: {reason}; resume to continue"):
            interrupted.append(int(run.id))  # type: ignore[arg-type]
    return interrupted


def cancel_run(ws: Workspace, run_id: int, *, grace_s: float = CANCEL_GRACE_S) -> Run:
    """Cancel a queued or running run.

    A running one gets SIGTERM on its process group (the job finishes its current batch
    and exits cleanly), then SIGKILL after ``grace_s``. Returns the updated row.
    """
    run = store.get_run(ws, run_id)
    if run.status == RunStatus.queued.value:
        if store.finish(
            ws,
            run_id,
            RunStatus.cancelled.value,
            "cancelled before it started",
            from_statuses=(RunStatus.queued.value,),
        ):
            return store.get_run(ws, run_id)
        run = store.get_run(ws, run_id)  # it started meanwhile
    if run.status != RunStatus.running.value:
        raise store.JobError(f"run {run_id} is {run.status}; nothing to cancel")
    if run.host not in (None, store.HOST):
        raise store.JobError(f"run {run_id} runs on {run.host}; cancel it there")
    if run.pid is not None and runner_alive(run):
        stop_process(run.pid, run.pgid, grace_s)
    store.finish(
        ws,
        run_id,
        RunStatus.cancelled.value,
        f"cancelled at {run.done}/{run.total if run.total is not None else '?'}",
        from_statuses=(RunStatus.running.value, RunStatus.interrupted.value),
        attempt=run.attempt,
    )
    return store.get_run(ws, run_id)


def resume_run(
    ws: Workspace,
    run_id: int,
    foreground: bool = False,
    *,
    progress: ProgressFn | None = None,
) -> Run:
    """Queue an interrupted, cancelled or failed run again and start it (attempt + 1).

    Jobs skip the work they already recorded, so a resumed run continues rather than
    repeats. In the background it starts when the queue allows (at once if a slot is
    free); ``foreground`` runs it now and waits, reporting ``progress`` (the CLI's bar).
    """
    store.requeue(ws, run_id)
    if foreground:
        return run_foreground(ws, run_id, progress)
    tick(ws)
    return store.get_run(ws, run_id)


def start_queue_worker(ws: Workspace, interval_s: float = QUEUE_TICK_S) -> threading.Event:
    """A daemon thread that advances the queue every ``interval_s``; set the event to stop it.

    The studio starts one at launch. ``tick`` also turns runs whose process vanished into
    ``interrupted``, so a killed job frees its slot while the studio runs. It never raises: a
    busy database just waits a turn.
    """
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval_s):
            try:
                tick(ws)
            except Exception as exc:  # noqa: BLE001 - the studio must outlive a bad tick
                log.warning("job queue tick failed: %s", exc)

    threading.Thread(target=loop, name="job-queue", daemon=True).start()
    return stop
