"""Results → Automatic metrics: CLIP score, R-precision, FID, KID per checkpoint × prompt regime.

As in Recap-DataComp's evaluation, every checkpoint is measured with raw prompts and with
upsampled ones, so the table and the grouped bars put the two regimes side by side per
metric; each checkpoint carries what it was trained on (caption condition, caption mix,
captioners behind the captions) so a difference can be read as the effect of the captions.

Data: :func:`backend.evaluation.results_table` (the rows ``t2i_eval`` runs wrote, with each
checkpoint's training facts from its ``t2i`` artifact meta, contracts/GENERATED.md) — the same
reader the CLI uses, so both show the same numbers. By default only the newest evaluation of
each (dataset, checkpoint, regime, metric) is shown, so re-running an evaluation replaces its
numbers instead of doubling the bars. The main table is the wide one RECAP's papers print
(checkpoint rows, metric × regime columns); every number with its provenance is one click away.

Closed to annotators while an Arena campaign is open (:func:`studio.access.closed_while_judging`,
checked in the handler, not only in the page): a checkpoint's metrics and caption mix beside
its generated dataset would tell them which system made the images they judge.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr
import numpy as np
from sqlmodel import select

from backend.csv_cells import csv_cell
from backend.db import read_session
from backend.evaluation import EvalResult
from backend.jobs import configs
from backend.workspace import Workspace
from studio import access
from studio.plots import new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ALL = "all datasets"
NOT_ARTIFACT = "— (not a t2i artifact)"  # a hub id or folder: nothing recorded about its training
SHORT_LABELS = {
    "clip_score": "CLIP-S",
    "r_precision": "R-precision %",
    "r_precision_all": "R-precision all prompts %",
    "fid": "FID",
    "kid": "KID",
}
REGIME_COLORS = {"raw": "#6b7280", "upsampled": "#7c3aed"}
METRIC_LABELS = {
    "clip_score": "CLIP score ↑",
    "r_precision": "CLIP R-precision ↑",
    "r_precision_all": "R-precision among all prompts ↑",
    "fid": "FID ↓",
    "kid": "KID ↓",
}
LONG_HEADERS = [
    "checkpoint",
    "regime",
    "metric",
    "value",
    "stderr",
    "KID s.d. over subsets",
    "n",
    "caption condition",
    "mix",
    "captioners",
    "dataset",
    "model",
    "reference",
    "eval run",
]


@dataclass
class MetricRow:
    """One number of the view, with the checkpoint's training facts beside it."""

    dataset: str
    checkpoint: str
    caption_condition: str
    mix: str
    captioners: str
    regime: str
    metric: str
    value: float
    stderr: float | None
    n: int
    model: str
    weights: str
    reference: str
    eval_run: int | None
    evaluated_at: str
    std_over_subsets: float | None = None  # KID's spread over random subsets: not a standard error

    def cells(self) -> list[Any]:
        """The row as :data:`LONG_HEADERS` orders it: the number first, what explains it after."""
        return [
            self.checkpoint,
            self.regime,
            self.metric,
            round(self.value, 4),
            round(self.stderr, 4) if self.stderr is not None else None,
            round(self.std_over_subsets, 4) if self.std_over_subsets is not None else None,
            self.n,
            self.caption_condition,
            self.mix,
            self.captioners,
            self.dataset,
            self.model,
            self.reference,
            self.eval_run,
        ]


# --------------------------------------------------------------------------- reading


def evaluated_datasets(ws: Workspace) -> list[str]:
    """Datasets with at least one automatic metric, by name."""
    with read_session(ws) as s:
        return sorted(s.exec(select(EvalResult.dataset).distinct()).all())


def load_rows(ws: Workspace, dataset: str | None = None, latest_only: bool = True) -> list[MetricRow]:
    """The metric rows of one dataset (or all), each with its checkpoint's caption condition."""
    from backend.evaluation import results_table

    frame = results_table(ws, None if dataset in (None, ALL) else dataset, latest=bool(latest_only))
    rows = []
    for rec in frame.to_dict("records"):
        stderr = _number(rec.get("stderr"))
        created = rec.get("created_at")
        rows.append(
            MetricRow(
                dataset=str(rec["dataset"]),
                checkpoint=str(rec["checkpoint"]),
                caption_condition=_text(rec.get("caption_condition")) or NOT_ARTIFACT,
                mix=_text(rec.get("mix")) or "—",
                captioners=_text(rec.get("captioners")) or "—",
                regime=str(rec["regime"]),
                metric=str(rec["metric"]),
                value=float(rec["value"]),
                stderr=stderr,
                n=int(rec.get("n") or 0),
                model=_text(rec.get("model")),
                weights=_text(rec.get("weights")),
                reference=_text(rec.get("reference")),
                eval_run=int(rec["run_id"]) if _number(rec.get("run_id")) is not None else None,
                evaluated_at=created.isoformat() if hasattr(created, "isoformat") else _text(created),
                std_over_subsets=_number(rec.get("std_over_subsets")),
            )
        )
    rows.sort(key=lambda m: (m.dataset, m.checkpoint, _metric_rank(m.metric), _regime_rank(m.regime)))
    return rows


def wide_rows(rows: list[MetricRow]) -> tuple[list[str], list[list[Any]]]:
    """One row per (dataset, checkpoint), one column per metric × regime (``value ± stderr``),
    the checkpoint's caption condition, mix and captioners beside it."""
    metrics = sorted({r.metric for r in rows}, key=_metric_rank)
    regimes = sorted({r.regime for r in rows}, key=_regime_rank)
    columns = [(m, g) for m in metrics for g in regimes if any(r.metric == m and r.regime == g for r in rows)]
    headers = [
        "checkpoint",
        "caption condition",
        *(f"{SHORT_LABELS.get(m, m)} ({g})" for m, g in columns),
        "mix",
        "captioners",
        "dataset",
    ]
    by_key: dict[tuple[str, str], dict[tuple[str, str], MetricRow]] = {}
    for r in rows:
        by_key.setdefault((r.dataset, r.checkpoint), {})[(r.metric, r.regime)] = r
    table = []
    for (dataset, checkpoint), cells in by_key.items():
        first = next(iter(cells.values()))
        table.append(
            [
                checkpoint,
                first.caption_condition,
                *(_cell(cells.get(c)) for c in columns),
                first.mix,
                first.captioners,
                dataset,
            ]
        )
    return headers, table


def _cell(row: MetricRow | None) -> str:
    if row is None:
        return "—"
    digits = 4 if row.metric == "kid" else 2
    text = f"{row.value:.{digits}f}"
    if row.stderr is not None:
        text += f" ± {row.stderr:.{digits}f}"
    if row.std_over_subsets is not None:
        text += f" (s.d. over subsets {row.std_over_subsets:.{digits}f})"
    return text


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return str(value)


def _metric_rank(metric: str) -> tuple[int, str]:
    order = list(configs.EVAL_METRICS)
    return (order.index(metric) if metric in order else len(order), metric)


def _regime_rank(regime: str) -> tuple[int, str]:
    order = ["raw", "upsampled"]
    return (order.index(regime) if regime in order else len(order), regime)


# --------------------------------------------------------------------------- figure and CSV


def metrics_figure(rows: list[MetricRow]) -> Figure:
    """One panel per metric: a group of bars per checkpoint, one bar per prompt regime, ± stderr."""
    if not rows:
        fig = new_figure(figsize=(10, 2.4), dpi=100)
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "No automatic metrics yet: run an evaluation", ha="center", va="center")
        ax.set_axis_off()
        return fig
    metrics = sorted({r.metric for r in rows}, key=_metric_rank)
    regimes = sorted({r.regime for r in rows}, key=_regime_rank)
    several = len({r.dataset for r in rows}) > 1
    labels = sorted({_group(r, several) for r in rows})
    conditions = {_group(r, several): r.caption_condition for r in rows}
    ticks = [f"{g}\n{_short(conditions[g])}" if conditions[g] != NOT_ARTIFACT else g for g in labels]
    cols = min(len(metrics), 2)
    nrows = math.ceil(len(metrics) / cols)
    width_per = max(5.0, 0.9 * len(labels) * max(1, len(regimes)) + 1.5)
    fig = new_figure(figsize=(min(16.0, width_per * cols), 3.6 * nrows), dpi=100, layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, cols)).ravel()
    bar = 0.8 / max(1, len(regimes))
    x = np.arange(len(labels))
    for ax, metric in zip(axes, metrics, strict=False):
        for i, regime in enumerate(regimes):
            by_label = {_group(r, several): r for r in rows if r.metric == metric and r.regime == regime}
            values = [by_label[g].value if g in by_label else np.nan for g in labels]
            errors = [
                (by_label[g].stderr or 0.0) if g in by_label and by_label[g].stderr is not None else 0.0
                for g in labels
            ]
            offset = (i - (len(regimes) - 1) / 2) * bar
            has_error = any(errors)
            bars = ax.bar(
                x + offset,
                values,
                bar,
                yerr=errors if has_error else None,
                capsize=3 if has_error else 0,
                label=regime,
                color=REGIME_COLORS.get(regime, "#0891b2"),
            )
            for rect, value, error in zip(bars, values, errors, strict=True):
                if np.isfinite(value):
                    ax.annotate(
                        f"{value:.3g}",
                        (rect.get_x() + rect.get_width() / 2, rect.get_height() + error),
                        ha="center",
                        va="bottom",
                        fontsize=8,
                        xytext=(0, 2),
                        textcoords="offset points",
                    )
        ax.set_xticks(x, ticks, fontsize=8.5, rotation=15 if len(labels) > 3 else 0)
        ax.set_title(METRIC_LABELS.get(metric, metric), fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.margins(y=0.12)
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(title="prompts", fontsize=8, title_fontsize=8, frameon=False)
    for ax in axes[len(metrics) :]:
        ax.set_axis_off()
    fig.suptitle(
        "Automatic metrics per checkpoint × prompt regime (error bars: ± 1 standard error)", fontsize=11
    )
    return fig


def _short(text: str, limit: int = 28) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _group(row: MetricRow, several_datasets: bool) -> str:
    return f"{row.checkpoint}\n[{row.dataset}]" if several_datasets else row.checkpoint


def csv_text(rows: list[MetricRow]) -> str:
    """Every field of every row (weights and evaluation time included) as CSV."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[f.name for f in fields(MetricRow)])
    writer.writeheader()
    for row in rows:
        writer.writerow({key: csv_cell(value) for key, value in asdict(row).items()})  # no formulas
    return buffer.getvalue()


_download_folder: list[Path] = []  # this process's private folder, made on first use


def download_folder() -> Path:
    """A folder for download files that only this user can read: ``mkdtemp`` (mode 0700, an
    unguessable name), made once per process and again if something removed it.

    Why not a fixed path such as ``/tmp/recap-studio-metrics-UID``: another local user could
    create it first (or a link in its place) and read or swap what the studio writes. Why not
    a new folder per download: the view that writes it runs at every page load and refresh.
    """
    if not _download_folder or not _download_folder[0].is_dir():
        _download_folder[:] = [Path(tempfile.mkdtemp(prefix="recap-studio-downloads-"))]
    return _download_folder[0]


def write_csv(rows: list[MetricRow], folder: Path | None = None) -> Path:
    """The CSV as a file for the download button, named by its content.

    Why content-named in one folder: the view refreshes often; equal tables reuse one file
    instead of leaving a new temporary folder behind at every refresh.
    """
    text = csv_text(rows)
    folder = folder or download_folder()
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()[:12]
    path = folder / f"automatic_metrics_{digest}.csv"
    if not path.exists():
        path.write_text(text, encoding="utf-8")
    return path


def summary_markdown(rows: list[MetricRow]) -> str:
    if not rows:
        return (
            "_No automatic metrics yet._ Generate images (Runs → *Generate images*), then evaluate them "
            "(Runs → *Evaluate generated images*) or run `recap-studio eval --dataset generated-run-<id>`."
        )
    checkpoints = len({(r.dataset, r.checkpoint) for r in rows})
    datasets = len({r.dataset for r in rows})
    regimes = ", ".join(sorted({r.regime for r in rows}, key=_regime_rank))
    return (
        f"**{len(rows)}** numbers · **{checkpoints}** checkpoints · **{datasets}** generated datasets · "
        f"regimes: {regimes}. CLIP score = 100 × cosine(image, prompt); R-precision = share of images whose "
        "own prompt ranks first among itself and 99 random other prompts; FID/KID against the reference dataset "
        "(lower is better); ± is one standard error, KID's s.d. is its spread over random subsets."
    )


# --------------------------------------------------------------------------- the view


def build(ws: Workspace, blocks: gr.Blocks, tab: gr.Tab | None = None) -> None:
    """The automatic-metrics view; refreshed on page load, on ``tab``'s selection and on demand."""
    with gr.Row():
        dataset = gr.Dropdown([ALL], value=ALL, label="Generated dataset", scale=2, elem_id="auto-dataset")
        latest = gr.Checkbox(value=True, label="Newest evaluation only", scale=1, elem_id="auto-latest")
        refresh = gr.Button("↻ Refresh", size="sm", scale=0, min_width=100, elem_id="auto-refresh")
        download = gr.DownloadButton("Download CSV", size="sm", scale=0, min_width=140, elem_id="auto-csv")
    summary = gr.Markdown(elem_id="auto-summary")
    plot = gr.Plot(label="Grouped by checkpoint; bars per prompt regime", elem_id="auto-plot")
    table = gr.Dataframe(
        interactive=False,
        wrap=True,
        elem_id="auto-table",
        label="Per checkpoint: each metric under raw and upsampled prompts (value ± standard error)",
    )
    with gr.Accordion("Every number with its provenance", open=False, elem_id="auto-long-box"):
        long_table = gr.Dataframe(
            headers=LONG_HEADERS,
            interactive=False,
            wrap=True,
            elem_id="auto-long",
            label="One row per checkpoint × regime × metric",
            max_height=560,
        )

    def view(chosen: str | None, latest_only: bool, request: gr.Request) -> tuple[Any, ...]:
        if access.closed_while_judging(ws, request):
            return (
                gr.update(choices=[ALL], value=ALL),
                access.CLOSED_WHILE_JUDGING,
                None,
                gr.update(value=[], headers=["checkpoint"]),
                [],
                gr.update(value=None, interactive=False),
            )
        names = evaluated_datasets(ws)
        chosen = chosen if chosen in names else ALL
        rows = load_rows(ws, chosen, bool(latest_only))
        headers, wide = wide_rows(rows)
        return (
            gr.update(choices=[ALL, *names], value=chosen),
            summary_markdown(rows),
            metrics_figure(rows),
            gr.update(value=wide, headers=headers) if rows else gr.update(value=[], headers=["checkpoint"]),
            [r.cells() for r in rows],
            gr.update(value=str(write_csv(rows)) if rows else None, interactive=bool(rows)),
        )

    outputs = [dataset, summary, plot, table, long_table, download]
    inputs = [dataset, latest]
    blocks.load(view, inputs, outputs, api_visibility="private")
    refresh.click(view, inputs, outputs, api_visibility="private")
    dataset.input(view, inputs, outputs, api_visibility="private")
    latest.input(view, inputs, outputs, api_visibility="private")
    if tab is not None:
        tab.select(view, inputs, outputs, api_visibility="private")
