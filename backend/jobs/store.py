"""Runs, metrics and artifacts in the database: creation, queries and state changes.

Every state change is one conditional ``UPDATE ... WHERE status = ...`` inside a
``BEGIN IMMEDIATE`` transaction. Why: several processes touch a run at once (the studio's
tick, the runner, a CLI cancel, a restarted studio's reconcile) and a read-then-write
would let two of them act on the same state; a conditional update makes the database
decide who wins, and the loser simply sees ``False``.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from backend.db import read_session, write_session
from backend.jobs.models import RESUMABLE, Artifact, Run, RunMetric, RunStatus
from backend.models import utcnow
from backend.workspace import UnsafePathError, Workspace

HOST = socket.gethostname()
LOG_NAME = "log.txt"
CONFIG_NAME = "config.json"
MESSAGE_MAX_CHARS = 4000


class JobError(Exception):
    """A job operation that cannot be done (wrong state, bad input)."""


class RunNotFound(JobError, LookupError):
    pass


class ArtifactNotFound(JobError, LookupError):
    pass


# --- runs ---------------------------------------------------------------------------------


def create_run(
    ws: Workspace,
    kind: str,
    config: dict[str, Any],
    *,
    needs_gpu: bool = False,
    created_by: int | None = None,
) -> Run:
    """A queued run with its folder ``runs/<id>/`` and ``config.json`` (nothing starts yet)."""
    if not kind:
        raise JobError("a run needs a kind")
    try:
        config_text = json.dumps(config, indent=2, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise JobError(f"run config is not JSON: {exc}") from None
    with write_session(ws) as s:
        run = Run(kind=kind, config=json.loads(config_text), needs_gpu=needs_gpu, created_by=created_by)
        s.add(run)
        s.flush()
        run.output_dir = f"runs/{run.id}"
        s.add(run)
        directory = ws.inside(run.output_dir)  # inside the transaction: a failure rolls back
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_NAME).write_text(config_text + "\n")
        s.flush()
        s.refresh(run)
    return run


def get_run(ws: Workspace, run_id: int) -> Run:
    with read_session(ws) as s:
        run = s.get(Run, run_id)
    if run is None:
        raise RunNotFound(f"no run {run_id}")
    return run


def list_runs(
    ws: Workspace,
    *,
    status: str | Sequence[str] | None = None,
    kind: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Run]:
    """Newest first, paginated (the runs table of the UI never loads everything)."""
    query = select(Run).order_by(col(Run.id).desc()).limit(limit).offset(offset)
    if status is not None:
        statuses = [status] if isinstance(status, str) else list(status)
        query = query.where(col(Run.status).in_(statuses))
    if kind is not None:
        query = query.where(Run.kind == kind)
    with read_session(ws) as s:
        return list(s.exec(query).all())


def run_dir(ws: Workspace, run: Run) -> Path:
    return ws.inside(run.output_dir or f"runs/{run.id}")


def log_path(ws: Workspace, run_id: int) -> Path:
    return ws.inside(f"runs/{int(run_id)}/{LOG_NAME}")


def log_tail(ws: Workspace, run_id: int, lines: int = 50) -> str:
    """The last ``lines`` lines of a run's log, read from the end (logs can be large)."""
    path = log_path(ws, run_id)
    if lines <= 0 or not path.exists():
        return ""
    block = 8192
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        end = f.tell()
        data = b""
        while end > 0 and data.count(b"\n") <= lines:
            start = max(0, end - block)
            f.seek(start)
            data = f.read(end - start) + data
            end = start
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


# --- state changes (conditional updates) ------------------------------------------------------


def _update(s: Session, run_id: int, where: Sequence[Any], **values: Any) -> bool:
    stmt = (
        update(Run)
        .where(col(Run.id) == run_id, *where)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return s.exec(stmt).rowcount == 1  # type: ignore[union-attr]


def claim(s: Session, run_id: int, *, pid: int | None = None, pgid: int | None = None) -> bool:
    """queued -> running for one attempt; the caller starts (or is) the process."""
    now = utcnow()
    return _update(
        s,
        run_id,
        [Run.status == RunStatus.queued.value],
        status=RunStatus.running.value,
        attempt=Run.attempt + 1,
        started_at=now,
        heartbeat_at=now,
        finished_at=None,
        pid=pid,
        pgid=pgid,
        host=HOST,
        rate=None,
        eta_s=None,
        message="starting",
    )


def record_process(ws: Workspace, run_id: int, pid: int, pgid: int | None) -> bool:
    """Note the process of a claimed run (no-op if it was cancelled meanwhile)."""
    with write_session(ws) as s:
        return _update(
            s,
            run_id,
            [Run.status == RunStatus.running.value, (col(Run.pid).is_(None)) | (col(Run.pid) == pid)],
            pid=pid,
            pgid=pgid,
            host=HOST,
            heartbeat_at=utcnow(),
        )


def adopt(ws: Workspace, run_id: int, pid: int, pgid: int | None) -> Run | None:
    """The runner takes ownership of its run: one launched for it, or a queued one.

    Returns None when the run is not ours to execute (finished, cancelled before the
    process got here, or owned by another live process).
    """
    with write_session(ws) as s:
        ok = _update(
            s,
            run_id,
            [Run.status == RunStatus.running.value, (col(Run.pid).is_(None)) | (col(Run.pid) == pid)],
            pid=pid,
            pgid=pgid,
            host=HOST,
            heartbeat_at=utcnow(),
            message="running",
        ) or (claim(s, run_id, pid=pid, pgid=pgid) and _update(s, run_id, [], message="running"))
        return s.get(Run, run_id) if ok else None


def _owned(pid: int) -> list[Any]:
    return [Run.status == RunStatus.running.value, Run.pid == pid]


def heartbeat(ws: Workspace, run_id: int, pid: int) -> bool:
    """Refresh the heartbeat; False means this process no longer owns the run."""
    with write_session(ws) as s:
        return _update(s, run_id, _owned(pid), heartbeat_at=utcnow())


def update_progress(
    ws: Workspace,
    run_id: int,
    pid: int,
    *,
    done: int,
    total: int | None,
    rate: float | None,
    eta_s: float | None,
    message: str | None = None,
) -> bool:
    values: dict[str, Any] = {
        "done": done,
        "total": total,
        "rate": rate,
        "eta_s": eta_s,
        "heartbeat_at": utcnow(),
    }
    if message is not None:
        values["message"] = message[-MESSAGE_MAX_CHARS:]
    with write_session(ws) as s:
        return _update(s, run_id, _owned(pid), **values)


def finish(
    ws: Workspace,
    run_id: int,
    status: str,
    message: str = "",
    *,
    pid: int | None = None,
    from_statuses: Sequence[str] = (RunStatus.running.value,),
    attempt: int | None = None,
) -> bool:
    """End a run's attempt. ``pid`` restricts it to the owning process; ``attempt`` to one attempt."""
    where: list[Any] = [col(Run.status).in_(list(from_statuses))]
    if pid is not None:
        where.append(Run.pid == pid)
    if attempt is not None:
        where.append(Run.attempt == attempt)
    with write_session(ws) as s:
        return _update(
            s,
            run_id,
            where,
            status=status,
            finished_at=utcnow(),
            eta_s=None if status != RunStatus.succeeded.value else 0.0,
            message=message[-MESSAGE_MAX_CHARS:],
        )


def mark_interrupted(ws: Workspace, run: Run, message: str) -> bool:
    """running -> interrupted, only if the row is still the attempt and process we inspected."""
    same_pid = col(Run.pid).is_(None) if run.pid is None else Run.pid == run.pid
    with write_session(ws) as s:
        return _update(
            s,
            int(run.id),  # type: ignore[arg-type]
            [Run.status == RunStatus.running.value, Run.attempt == run.attempt, same_pid],
            status=RunStatus.interrupted.value,
            finished_at=utcnow(),
            rate=None,
            eta_s=None,
            message=message,
        )


def running_runs(ws: Workspace) -> list[Run]:
    with read_session(ws) as s:
        return list(s.exec(select(Run).where(Run.status == RunStatus.running.value)).all())


def requeue(ws: Workspace, run_id: int) -> Run:
    """interrupted / cancelled / failed -> queued, keeping its progress and outputs."""
    with write_session(ws) as s:
        ok = _update(
            s,
            run_id,
            [col(Run.status).in_(list(RESUMABLE))],
            status=RunStatus.queued.value,
            pid=None,
            pgid=None,
            finished_at=None,
            rate=None,
            eta_s=None,
            message="queued to resume",
        )
        run = s.get(Run, run_id)
    if run is None:
        raise RunNotFound(f"no run {run_id}")
    if not ok:
        raise JobError(f"run {run_id} is {run.status}; only {', '.join(RESUMABLE)} runs can resume")
    return run


# --- metrics ----------------------------------------------------------------------------------


def add_metric(ws: Workspace, run_id: int, step: int, name: str, value: float, *, once: bool = False) -> bool:
    """Record one value; with ``once`` a (run, name, step) already present is left alone.

    ``once`` is what makes per-item work idempotent: the check and the insert share one
    write transaction, so a resumed attempt can never write the same step twice.
    """
    with write_session(ws) as s:
        if once:
            exists = s.exec(
                select(RunMetric.id).where(
                    RunMetric.run_id == run_id, RunMetric.name == name, RunMetric.step == step
                )
            ).first()
            if exists is not None:
                return False
        s.add(RunMetric(run_id=run_id, step=step, name=name, value=float(value)))
    return True


def run_metrics(ws: Workspace, run_id: int, name: str | None = None) -> list[RunMetric]:
    query = select(RunMetric).where(RunMetric.run_id == run_id)
    if name is not None:
        query = query.where(RunMetric.name == name)
    with read_session(ws) as s:
        return list(s.exec(query.order_by(col(RunMetric.step), col(RunMetric.id))).all())


def metric_steps(ws: Workspace, run_id: int, name: str) -> set[int]:
    """Steps of ``name`` already recorded: what a resumed job can skip."""
    with read_session(ws) as s:
        rows = s.exec(select(RunMetric.step).where(RunMetric.run_id == run_id, RunMetric.name == name))
        return set(rows.all())


# --- artifacts --------------------------------------------------------------------------------


def _relative_inside(ws: Workspace, path: str | os.PathLike[str]) -> str:
    p = Path(path)
    if p.is_absolute():
        home = ws.home.resolve()
        try:
            rel = p.resolve().relative_to(home)
        except ValueError:
            raise UnsafePathError(f"artifact path is outside the workspace: {p}") from None
        p = rel
    return ws.inside(p.as_posix()).relative_to(ws.home.resolve()).as_posix()


def add_artifact(
    ws: Workspace,
    run_id: int | None,
    kind: str,
    name: str,
    path: str | os.PathLike[str],
    meta: dict[str, Any] | None = None,
) -> Artifact:
    """Register a checkpoint (or other output) that lives inside the workspace."""
    relative = _relative_inside(ws, path)
    meta = json.loads(json.dumps(meta)) if meta is not None else None
    with write_session(ws) as s:
        artifact = Artifact(run_id=run_id, kind=kind, name=name, path=relative, meta=meta)
        s.add(artifact)
        s.flush()
        s.refresh(artifact)
    return artifact


def list_artifacts(ws: Workspace, *, kind: str | None = None, run_id: int | None = None) -> list[Artifact]:
    query = select(Artifact).order_by(col(Artifact.id).desc())
    if kind is not None:
        query = query.where(Artifact.kind == kind)
    if run_id is not None:
        query = query.where(Artifact.run_id == run_id)
    with read_session(ws) as s:
        return list(s.exec(query).all())


def get_artifact(ws: Workspace, ref: int | str) -> Artifact:
    """By id (an int or a string of digits) or by name (the newest of that name)."""
    with read_session(ws) as s:
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            artifact = s.get(Artifact, int(ref))
        else:
            artifact = s.exec(
                select(Artifact).where(Artifact.name == ref).order_by(col(Artifact.id).desc())
            ).first()
    if artifact is None:
        raise ArtifactNotFound(f"no artifact {ref!r}")
    return artifact


def artifact_path(ws: Workspace, artifact: Artifact) -> Path:
    return ws.inside(artifact.path)
