"""The job system: runs as database rows plus runner subprocesses in their own process groups.

Modules: ``models`` (tables), ``store`` (CRUD, queries, conditional state changes),
``launch`` (subprocesses and process inspection), ``scheduler`` (queue, cancel, resume,
orphans), ``progress`` (rate/ETA), ``context`` (what a job sees). Import from here.
"""

from backend.jobs.context import JobContext, JobStopped
from backend.jobs.launch import launch, run_foreground
from backend.jobs.models import ACTIVE, FINISHED, RESUMABLE, Artifact, Run, RunMetric, RunStatus
from backend.jobs.scheduler import cancel_run, reconcile_orphans, resume_run, tick
from backend.jobs.store import (
    ArtifactNotFound,
    JobError,
    RunNotFound,
    add_artifact,
    add_metric,
    artifact_path,
    create_run,
    get_artifact,
    get_run,
    list_artifacts,
    list_runs,
    log_path,
    log_tail,
    run_dir,
    run_metrics,
)

__all__ = [
    "ACTIVE",
    "FINISHED",
    "RESUMABLE",
    "Artifact",
    "ArtifactNotFound",
    "JobContext",
    "JobError",
    "JobStopped",
    "Run",
    "RunMetric",
    "RunNotFound",
    "RunStatus",
    "add_artifact",
    "add_metric",
    "artifact_path",
    "cancel_run",
    "create_run",
    "get_artifact",
    "get_run",
    "launch",
    "list_artifacts",
    "list_runs",
    "log_path",
    "log_tail",
    "reconcile_orphans",
    "resume_run",
    "run_dir",
    "run_foreground",
    "run_metrics",
    "tick",
]
