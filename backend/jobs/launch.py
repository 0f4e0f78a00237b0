"""Runner subprocesses: start them, watch them, signal them.

A run executes in ``python -m training.runner RUN_ID --home DIR``, in its own process
group (``start_new_session``). Why a subprocess: the studio never imports torch, stays
responsive, survives a crashed job, and GPU memory is freed when the job ends. Why its own
group: cancel must reach the job's children too (DataLoader workers, accelerate), and a
Ctrl-C in the studio's terminal must not kill running jobs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from backend.db import write_session
from backend.jobs import store
from backend.jobs.models import Run, RunStatus
from backend.models import utcnow
from backend.progress import ProgressFn
from backend.workspace import DB_URL_ENV, Workspace

RUNNER_MODULE = "training.runner"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
STARTING_GRACE_S = 60.0  # a claimed run may sit this long without a pid (between claim and spawn)
STALE_HEARTBEAT_S = 90.0  # only consulted where /proc cannot name the process
PROC = Path("/proc")

#: glibc malloc settings every runner gets unless the user's environment sets them
#: (``RECAP_STUDIO_MALLOC_TUNING=0`` leaves glibc's defaults). Why: a CPU training step frees and
#: re-allocates the same few-MiB activation tensors hundreds of times; by default glibc serves
#: them by mmap and hands the pages back at once, so every step page-faults them in again (about
#: 28,000 minor faults per step of the miniature T2I arm). Serving blocks up to 32 MiB from the heap
#: and keeping up to 1 GiB of freed heap cut the faults 5.2x and the kernel time by 45 %, and
#: raised steps/s by 8 % (median of 4 alternating rounds, 1.01-1.18x per round;
#: ``bench/cpu_allocator.py``). Other C libraries ignore these names.
MALLOC_TUNING = {
    "MALLOC_MMAP_THRESHOLD_": str(32 << 20),  # the largest value glibc accepts on 64-bit
    "MALLOC_TRIM_THRESHOLD_": str(1 << 30),
    "MALLOC_TOP_PAD_": str(64 << 20),
}
MALLOC_TUNING_SWITCH = "RECAP_STUDIO_MALLOC_TUNING"


@dataclass
class Spawned:
    """A runner this process started; ``reaper`` ends once it has exited and been recorded."""

    run_id: int
    process: subprocess.Popen[bytes]
    reaper: threading.Thread


def runner_command(ws: Workspace, run_id: int) -> list[str]:
    return [sys.executable, "-m", RUNNER_MODULE, str(int(run_id)), "--home", str(ws.home.resolve())]


def with_malloc_tuning(environ: dict[str, str]) -> dict[str, str]:
    """``environ`` plus each :data:`MALLOC_TUNING` setting it does not set itself (none with the switch off)."""
    env = dict(environ)
    if env.get(MALLOC_TUNING_SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        return env
    for name, value in MALLOC_TUNING.items():
        env.setdefault(name, value)
    return env


def _child_env(ws: Workspace) -> dict[str, str]:
    env = with_malloc_tuning(dict(os.environ))
    if ws.db:  # a database named in code, not by the environment: the runner must open it too
        env[DB_URL_ENV] = ws.db
    env["PYTHONUNBUFFERED"] = "1"  # prints reach log.txt as they happen
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(PROJECT_ROOT) + (os.pathsep + path if path else "")
    return env


def spawn(ws: Workspace, run_id: int) -> Spawned:
    """Start the runner for a run already claimed (status running); record its pid and pgid."""
    log = store.log_path(ws, run_id)
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        with log.open("ab") as out:
            process = subprocess.Popen(
                runner_command(ws, run_id),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=log.parent,  # stray relative writes of libraries land in the run folder
                env=_child_env(ws),
            )
    except OSError as exc:
        store.finish(ws, run_id, RunStatus.failed.value, f"could not start the runner: {exc}")
        raise store.JobError(f"could not start run {run_id}: {exc}") from exc
    store.record_process(ws, run_id, process.pid, process.pid)
    reaper = threading.Thread(
        target=_reap, args=(ws, run_id, process), name=f"reap-run-{run_id}", daemon=True
    )
    reaper.start()
    return Spawned(run_id, process, reaper)


def _reap(ws: Workspace, run_id: int, process: subprocess.Popen[bytes]) -> None:
    """Wait for the runner (no zombies in a long-lived studio) and catch a silent death.

    The runner records its own end; if the row is still 'running' under this pid, the
    process died without a word (kill -9, OOM killer, crash in C code).
    """
    code = process.wait()
    # a reaper must never raise: if this write fails, reconcile_orphans catches the run later
    with contextlib.suppress(Exception):
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            status, message = RunStatus.interrupted.value, f"runner killed by {name}"
        else:
            tail = store.log_tail(ws, run_id, 15)
            status = RunStatus.failed.value
            message = f"runner exited with code {code} without reporting\n{tail}"
        store.finish(ws, run_id, status, message, pid=process.pid)


def launch(ws: Workspace, run_id: int) -> int:
    """Start a queued run now (ignoring queue limits) and return the runner's pid."""
    _claim_or_raise(ws, run_id)
    return spawn(ws, run_id).process.pid


def _claim_or_raise(ws: Workspace, run_id: int) -> None:
    with write_session(ws) as s:
        if not store.claim(s, run_id):
            run = s.get(Run, run_id)
            if run is None:
                raise store.RunNotFound(f"no run {run_id}")
            raise store.JobError(f"run {run_id} is {run.status}, not queued")


def run_foreground(
    ws: Workspace,
    run_id: int,
    progress: ProgressFn | None = None,
    *,
    poll_s: float = 0.5,
    grace_s: float = 10.0,
) -> Run:
    """Run a queued run through the same runner and wait, reporting progress from the DB.

    Why still a subprocess: the CLI gets a progress bar and the exit status while the job
    runs exactly as it would from the studio (and ``backend`` never imports ``training``).
    Ctrl-C cancels the run cleanly, and so does any KeyboardInterrupt a caller raises from a
    signal handler (the CLI turns SIGTERM/SIGHUP into one named after the signal).
    """
    _claim_or_raise(ws, run_id)
    spawned = spawn(ws, run_id)

    def report() -> None:
        if progress is not None:
            run = store.get_run(ws, run_id)
            progress(run.done, run.total, f"run {run_id} {run.kind}: {run.status}")

    try:
        while spawned.reaper.is_alive():
            spawned.reaper.join(poll_s)
            report()
    except KeyboardInterrupt as exc:
        stop_process(spawned.process.pid, spawned.process.pid, grace_s)
        spawned.reaper.join(grace_s)
        store.finish(
            ws,
            run_id,
            RunStatus.cancelled.value,
            f"cancelled ({exc.args[0] if exc.args else 'Ctrl-C'})",
            from_statuses=(RunStatus.running.value, RunStatus.interrupted.value),
        )
    return store.get_run(ws, run_id)


# --- process inspection ------------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, process group) of a pid from /proc, or None if there is no such process."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[2])


def pid_alive(pid: int) -> bool:
    """A live (not zombie) process has this pid."""
    if PROC.is_dir():
        stat = _stat(pid)
        return stat is not None and stat[0] not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_alive(pgid: int) -> bool:
    """Some live (not zombie) process is still in this process group."""
    if PROC.is_dir():
        for entry in os.scandir(PROC):
            if entry.name.isdigit():
                stat = _stat(int(entry.name))
                if stat is not None and stat[1] == pgid and stat[0] not in ("Z", "X"):
                    return True
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmdline(pid: int) -> list[str] | None:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().decode(errors="replace").split("\0")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def runner_alive(run: Run, *, stale_s: float = STALE_HEARTBEAT_S) -> bool:
    """Is the process recorded for a running row still this run's runner?

    A pid can be reused after a reboot or a long uptime. Where /proc exists the command
    line proves identity; elsewhere the process group must match and the heartbeat be fresh.
    """
    now = utcnow()
    if run.pid is None:
        since = run.heartbeat_at or run.started_at or run.created_at
        return now - since < timedelta(seconds=STARTING_GRACE_S)
    if not pid_alive(run.pid):
        return False
    args = _cmdline(run.pid)
    if args is not None:
        return RUNNER_MODULE in args and str(run.id) in args
    try:
        if run.pgid is not None and os.getpgid(run.pid) != run.pgid:
            return False
    except ProcessLookupError:
        return False
    return run.heartbeat_at is not None and now - run.heartbeat_at < timedelta(seconds=stale_s)


def stop_process(pid: int, pgid: int | None, grace_s: float) -> bool:
    """SIGTERM the group (or the pid), wait up to ``grace_s``, then SIGKILL. True if it is gone."""

    def send(sig: signal.Signals) -> None:
        try:
            if pgid is not None:
                os.killpg(pgid, sig)
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            pass

    def gone() -> bool:
        return not (group_alive(pgid) if pgid is not None else pid_alive(pid))

    send(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if gone():
            return True
        time.sleep(0.05)
    send(signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        if gone():
            return True
        time.sleep(0.05)
    return gone()
