"""What a job sees of the job system: :class:`JobContext`.

Why a context object: a job (captioner training, recaption, scoring) only does its work and
reports through ``ctx``; the bookkeeping (throttled progress writes, heartbeat, stop
requests, idempotent metrics, artifacts inside the workspace) lives here once.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from backend.jobs import store
from backend.jobs.models import Artifact
from backend.jobs.progress import RateMeter, eta_seconds
from backend.workspace import Workspace

PROGRESS_INTERVAL_S = 0.5
HEARTBEAT_S = 2.0


class JobStopped(Exception):  # noqa: N818 - it is a signal, not a failure
    """Raised by :meth:`JobContext.check_stop`: the run was asked to stop (cancel)."""


class JobContext:
    """The handle a job gets: config, folders, logger, and reporting calls."""

    def __init__(
        self,
        ws: Workspace,
        run_id: int,
        config: dict[str, Any],
        run_dir: Path,
        logger: logging.Logger,
        *,
        pid: int | None = None,
        progress_interval_s: float = PROGRESS_INTERVAL_S,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self.ws = ws
        self.run_id = run_id
        self.config = config
        self.run_dir = run_dir
        self.logger = logger
        self.pid = pid if pid is not None else os.getpid()
        self.progress_interval_s = progress_interval_s
        self.heartbeat_s = heartbeat_s
        self.lost_ownership = False  # the row was taken away (cancelled, reconciled)
        self._stop = threading.Event()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        # held from a flush's snapshot until its row is written: the job's thread and the heartbeat
        # thread both flush, and two unordered writes could leave an older count as the last word
        self._write_lock = threading.Lock()
        self._meter = RateMeter()
        self._done = 0
        self._total: int | None = None
        self._message: str | None = None
        self._dirty = False
        self._last_write = 0.0
        self._heartbeat: threading.Thread | None = None

    # --- stopping -----------------------------------------------------------------------------

    @property
    def stop_requested(self) -> bool:
        """True once SIGTERM/Ctrl-C arrived: finish the current batch and return."""
        return self._stop.is_set()

    def request_stop(self) -> None:
        self._stop.set()

    def check_stop(self) -> None:
        """Raise :class:`JobStopped` if a stop was requested (for deep loops)."""
        if self._stop.is_set():
            raise JobStopped()

    # --- reporting ----------------------------------------------------------------------------

    @property
    def done(self) -> int:
        return self._done

    def progress(self, done: int, total: int | None = None, message: str | None = None) -> None:
        """Report ``done`` of ``total`` items; written at most every ~0.5 s (and at the end)."""
        with self._lock:
            self._done, self._total = int(done), (None if total is None else int(total))
            if message is not None:
                self._message = message
            self._meter.update(self._done)
            self._dirty = True
            due = time.monotonic() - self._last_write >= self.progress_interval_s
            finished = self._total is not None and self._done >= self._total
        if due or finished:
            self.flush_progress()

    def flush_progress(self) -> None:
        """Write pending progress now (the runner calls this before ending the run).

        Writes happen in the order of their snapshots (``_write_lock``), so the row always ends
        with the newest progress even when the heartbeat thread flushes at the same moment."""
        with self._write_lock:
            with self._lock:
                if not self._dirty:
                    return
                done, total, message = self._done, self._total, self._message
                rate = self._meter.rate()
                self._dirty = False
                self._last_write = time.monotonic()
            if not store.update_progress(
                self.ws,
                self.run_id,
                self.pid,
                done=done,
                total=total,
                rate=rate,
                eta_s=eta_seconds(done, total, rate),
                message=message,
            ):
                self._lose_ownership()

    def metric(self, step: int, name: str, value: float) -> None:
        store.add_metric(self.ws, self.run_id, step, name, value)

    def metric_once(self, step: int, name: str, value: float) -> bool:
        """Record ``name`` at ``step`` unless this run already has it (idempotent work units)."""
        return store.add_metric(self.ws, self.run_id, step, name, value, once=True)

    def done_steps(self, name: str) -> set[int]:
        return store.metric_steps(self.ws, self.run_id, name)

    def artifact(
        self, kind: str, name: str, path: str | os.PathLike[str], meta: dict[str, Any] | None = None
    ) -> Artifact:
        return store.add_artifact(self.ws, self.run_id, kind, name, path, meta)

    @property
    def checkpoint_dir(self) -> Path:
        path = self.run_dir / "checkpoints"
        path.mkdir(parents=True, exist_ok=True)
        return path

    # --- heartbeat ----------------------------------------------------------------------------

    def start_heartbeat(self) -> None:
        """A daemon thread proving liveness every few seconds, even inside a long step."""
        self._heartbeat = threading.Thread(
            target=self._beat, name=f"heartbeat-run-{self.run_id}", daemon=True
        )
        self._heartbeat.start()

    def stop_heartbeat(self) -> None:
        self._closing.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=self.heartbeat_s + 35)

    def _beat(self) -> None:
        while not self._closing.wait(self.heartbeat_s):
            try:
                if self._dirty:
                    self.flush_progress()
                elif not store.heartbeat(self.ws, self.run_id, self.pid):
                    self._lose_ownership()
            except Exception as exc:  # noqa: BLE001 - a busy database must not kill the job
                self.logger.warning("heartbeat failed: %s", exc)

    def _lose_ownership(self) -> None:
        if not self.lost_ownership:
            self.lost_ownership = True
            self.logger.warning("run %s is no longer owned by this process; stopping", self.run_id)
        self._stop.set()
