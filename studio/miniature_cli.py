"""The ``miniature`` and ``experiment`` command groups and what ``experiment miniature`` prints.

The commands are generated from their job kinds (:mod:`studio.job_cli`): ``miniature world``,
``miniature base`` and ``experiment miniature [--preset smoke|cpu|gpu] [--json]``. The
experiment's ``--json`` line is its table (:mod:`backend.miniature.table`): ``arms``, ``chance``,
``differences``, ``caption_accuracy`` and ``stage_seconds``, plus the run's id and status; the
human reader gets the table as Markdown.
"""

from __future__ import annotations

import json
from typing import Any

import typer

from backend import jobs
from backend.workspace import Workspace
from studio import run_forms
from studio.console import out
from studio.job_cli import Report

miniature_app = typer.Typer(help="The miniature world of issue 12: its corpus and base models.", no_args_is_help=True)
experiment_app = typer.Typer(help="Experiments that run every stage as ordinary runs.", no_args_is_help=True)


def experiment_table(ws: Workspace, run: jobs.Run) -> dict[str, Any] | None:
    """The experiment run's table (``table.json`` in its folder), or None before it exists."""
    path = jobs.run_dir(ws, run) / "table.json"
    return json.loads(path.read_text()) if path.exists() else None


def experiment_summary(ws: Workspace, run: jobs.Run) -> dict[str, Any]:
    table = experiment_table(ws, run) or {}
    return {
        "run_id": run.id, "kind": run.kind, "status": run.status, "preset": run.config.get("preset"),
        "arms": table.get("arms", []), "chance": table.get("chance", {}), "differences": table.get("differences", {}),
        "caption_accuracy": table.get("caption_accuracy", {}), "stage_seconds": table.get("stage_seconds", {}),
        "stage_runs": table.get("stage_runs", {}), "machine": table.get("machine", {}), "grids": table.get("grids", {}), "message": run.message,
    }  # fmt: skip


def _show(ws: Workspace, run: jobs.Run, _summary: dict[str, Any]) -> None:
    path = jobs.run_dir(ws, run) / "table.md"
    if path.exists():
        out.print(path.read_text(), markup=False, highlight=False, soft_wrap=True)


def _line(_ws: Workspace, run: jobs.Run, summary: dict[str, Any]) -> str:
    total = summary["stage_seconds"].get("total")
    took = f" in {total / 60:.1f} min" if total else ""
    return f"Run {run.id} (miniature, {summary['preset']}) {run.status}{took}: {run_forms.progress_text(run)}"


REPORTS: dict[str, Report] = {"miniature": Report(experiment_summary, _line, show=_show)}
