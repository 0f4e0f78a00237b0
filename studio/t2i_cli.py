"""Text-to-image commands: the ``t2i`` group and what ``t2i train``, ``generate`` and ``eval`` print.

The commands themselves are generated from their job kinds in :mod:`studio.job_cli` (same path,
options and exit codes as every job command) and registered by :mod:`studio.cli`. Here are their
reports: the ``--json`` line holds what a script of the T2I workflow needs next (the pipeline
folder and the caption kinds it saw; the generated dataset; the metrics), and ``eval`` prints its
results as a table checkpoint × regime.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from backend import jobs
from backend.jobs import configs
from backend.workspace import Workspace
from studio import run_forms
from studio.console import out
from studio.job_cli import Report

t2i_app = typer.Typer(help="Fine-tune text-to-image pipelines on a caption mix.", no_args_is_help=True)


def _train_line(_ws: Workspace, run: jobs.Run, summary: dict[str, Any]) -> str:
    line = f"Run {run.id} (t2i_train) {run.status}: {run_forms.progress_text(run)}"
    if summary["output"]:
        line += f"; pipeline {summary['artifact']} in {summary['output']}"
    if summary["usage"]:
        line += "; captions used: " + ", ".join(f"{k} {n}" for k, n in summary["usage"].items())
    return line


def _generate_line(_ws: Workspace, run: jobs.Run, summary: dict[str, Any]) -> str:
    return (
        f"Run {run.id} (generate) {run.status}: {summary['images']} images in dataset '{summary['dataset']}'"
    )


def eval_summary(ws: Workspace, run: jobs.Run) -> dict[str, Any]:
    """The ``eval --json`` line: ``metrics`` — one entry per checkpoint × regime (one for
    ``--images``), each metric by name as ``{value, lower, upper, n, chance}``
    (:mod:`backend.eval_contract`) — and ``results``, one record per checkpoint × regime × metric."""
    from backend.eval_contract import contract
    from backend.evaluation import result_details

    return {
        "run_id": run.id,
        "kind": run.kind,
        "status": run.status,
        "dataset": run.config.get("dataset") or None,
        "images": run.config.get("images") or None,
        "metrics": contract(result_details(ws, int(run.id))),  # type: ignore[arg-type]
        "results": run_forms.eval_records(ws, int(run.id)),  # type: ignore[arg-type]
        "message": run.message,
    }


def _eval_table(_ws: Workspace, run: jobs.Run, summary: dict[str, Any]) -> None:
    if summary["results"]:
        out.print(results_table(summary["results"], title=f"Run {run.id}: {run.config.get('dataset', '')}"))


def _eval_line(_ws: Workspace, run: jobs.Run, summary: dict[str, Any]) -> str:
    return f"Run {run.id} (t2i_eval) {run.status}: {len(summary['results'])} results"


REPORTS: dict[str, Report] = {
    "t2i_train": Report(run_forms.t2i_train_summary, _train_line),
    "generate": Report(run_forms.generate_summary, _generate_line),
    "t2i_eval": Report(eval_summary, _eval_line, show=_eval_table),
}


def results_table(results: list[dict[str, Any]], title: str = "") -> Table:
    """checkpoint × regime rows, one column per metric: ``value ± stderr (n)``."""
    metric_names = sorted({r["metric"] for r in results}, key=_metric_order)
    table = Table("checkpoint", "regime", *metric_names, title=title or None)
    cells: dict[tuple[str, str], dict[str, str]] = {}
    for r in results:
        cells.setdefault((r["checkpoint"], r["regime"]), {})[r["metric"]] = run_forms.fmt_metric(r)
    for (checkpoint, regime), by_metric in sorted(cells.items()):
        table.add_row(checkpoint, regime, *(by_metric.get(m, "—") for m in metric_names))
    return table


def _metric_order(name: str) -> tuple[int, str]:
    order = list(configs.EVAL_METRICS)
    return (order.index(name) if name in order else len(order), name)
