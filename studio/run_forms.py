"""What the CLI and the Runs tab both show about runs: summaries, formatting, validation samples.

No Gradio and no rich here (the CLI must start fast and the tab must not draw terminals);
both front ends format the same numbers the same way. The run configs themselves (keys,
defaults, validation) live in :mod:`backend.jobs.configs`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select

from backend import jobs
from backend.db import read_session
from backend.jobs import configs
from backend.models import Caption, Dataset, Image, User
from backend.storage import thumb_path
from backend.workspace import UnsafePathError, Workspace

SAMPLE_FILE = re.compile(r"^step_(\d+)\.json$")
LOSS_METRICS = ("train_loss", "val_loss")
MAX_SAMPLES_SHOWN = 48


# --------------------------------------------------------------------------- formatting


def fmt_rate(rate: float | None) -> str:
    """Items per second, or seconds per item when slower than one a second."""
    if rate is None or not math.isfinite(rate) or rate <= 0:
        return "—"
    if rate >= 1:
        return f"{rate:.1f}/s"
    return f"{1 / rate:.1f} s/item"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "—"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {(s % 3600) // 60:02d}m"
    return f"{s // 86400}d {(s % 86400) // 3600:02d}h"


def fmt_eta(run: jobs.Run) -> str:
    if run.status == jobs.RunStatus.succeeded.value:
        return "done"
    if run.status not in jobs.ACTIVE:
        return "—"
    return fmt_duration(run.eta_s)


def fmt_when(when: datetime | None) -> str:
    """A timestamp in the server's local time, to the second."""
    if when is None:
        return "—"
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def fraction(run: jobs.Run) -> float | None:
    if not run.total:
        return 1.0 if run.status == jobs.RunStatus.succeeded.value and run.total == 0 else None
    return max(0.0, min(1.0, run.done / run.total))


def progress_text(run: jobs.Run) -> str:
    share = fraction(run)
    total = "?" if run.total is None else str(run.total)
    return f"{run.done}/{total}" + (f" ({share:.0%})" if share is not None else "")


def first_line(text: str, limit: int = 90) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def headline(run: jobs.Run, limit: int = 90) -> str:
    """One line about a run for tables: a failure's last line (the exception), else the message's first."""
    lines = [line.strip() for line in (run.message or "").splitlines() if line.strip()]
    if not lines:
        return ""
    line = lines[-1] if run.status == jobs.RunStatus.failed.value else lines[0]
    return line if len(line) <= limit else line[: limit - 1] + "…"


def elapsed_s(run: jobs.Run) -> float | None:
    if run.started_at is None:
        return None
    end = run.finished_at or datetime.now(UTC)
    start = run.started_at if run.started_at.tzinfo else run.started_at.replace(tzinfo=UTC)
    end = end if end.tzinfo else end.replace(tzinfo=UTC)
    return max(0.0, (end - start).total_seconds())


# --------------------------------------------------------------------------- summaries


@dataclass
class MetricSummary:
    name: str
    count: int
    first_step: int
    last_step: int
    last: float
    low: float
    high: float


def metric_summaries(ws: Workspace, run_id: int) -> list[MetricSummary]:
    """Per metric name: how many values, step range, last / min / max — aggregated in SQL.

    Why not load every row: a recaption of a million images may record a value per batch.
    """
    with read_session(ws) as s:
        rows = s.exec(
            select(
                jobs.RunMetric.name,
                func.count(),
                func.min(jobs.RunMetric.step),
                func.max(jobs.RunMetric.step),
                func.min(jobs.RunMetric.value),
                func.max(jobs.RunMetric.value),
            )
            .where(jobs.RunMetric.run_id == run_id)
            .group_by(jobs.RunMetric.name)
            .order_by(jobs.RunMetric.name)
        ).all()
        summaries = []
        for name, count, first, last_step, low, high in rows:
            last = s.exec(
                select(jobs.RunMetric.value)
                .where(jobs.RunMetric.run_id == run_id, jobs.RunMetric.name == name)
                .order_by(col(jobs.RunMetric.step).desc(), col(jobs.RunMetric.id).desc())
                .limit(1)
            ).one()
            summaries.append(MetricSummary(name, int(count), int(first), int(last_step), last, low, high))
    return summaries


def metric_series(
    ws: Workspace, run_id: int, name: str, max_points: int = 4000
) -> tuple[list[int], list[float]]:
    """(steps, values) of one metric, thinned evenly to at most ``max_points`` for plotting."""
    rows = jobs.run_metrics(ws, run_id, name)
    if len(rows) > max_points:
        stride = math.ceil(len(rows) / max_points)
        rows = rows[::stride] + ([rows[-1]] if (len(rows) - 1) % stride else [])
    return [r.step for r in rows], [r.value for r in rows]


def caption_counts(ws: Workspace, run_id: int) -> dict[str, int]:
    """Captions this run wrote, per kind (recaption's output)."""
    with read_session(ws) as s:
        rows = s.exec(
            select(Caption.kind, func.count())
            .where(Caption.run_id == run_id)
            .group_by(Caption.kind)
            .order_by(Caption.kind)
        ).all()
    return {kind: int(n) for kind, n in rows}


def artifact_records(ws: Workspace, run_id: int) -> list[dict[str, Any]]:
    return [
        {"id": a.id, "kind": a.kind, "name": a.name, "path": a.path, "created_at": _iso(a.created_at)}
        for a in jobs.list_artifacts(ws, run_id=run_id)
    ]


def creator_name(ws: Workspace, run: jobs.Run) -> str | None:
    """Who launched a run from the studio (None: the CLI, or a user since removed)."""
    if run.created_by is None:
        return None
    with read_session(ws) as s:
        user = s.get(User, run.created_by)
    return user.name if user is not None else None


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when is not None else None


def run_record(run: jobs.Run) -> dict[str, Any]:
    """One run as plain JSON (``runs list --json``)."""
    return {
        "id": run.id,
        "kind": run.kind,
        "status": run.status,
        "done": run.done,
        "total": run.total,
        "rate": run.rate,
        "eta_s": run.eta_s,
        "attempt": run.attempt,
        "needs_gpu": run.needs_gpu,
        "created_at": _iso(run.created_at),
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "message": run.message,
    }


def final_summary(ws: Workspace, run: jobs.Run) -> dict[str, Any]:
    """The ``--json`` line of a foreground run: id, status, counts, last metrics, artifacts."""
    return {
        "run_id": run.id,
        "kind": run.kind,
        "status": run.status,
        "done": run.done,
        "total": run.total,
        "attempt": run.attempt,
        "elapsed_s": round(elapsed_s(run) or 0.0, 3),
        "captions": caption_counts(ws, int(run.id)),  # type: ignore[arg-type]
        "metrics": {m.name: m.last for m in metric_summaries(ws, int(run.id))},  # type: ignore[arg-type]
        "artifacts": artifact_records(ws, int(run.id)),  # type: ignore[arg-type]
        "message": run.message,
    }


def run_details(ws: Workspace, run: jobs.Run, log_lines: int = 40) -> dict[str, Any]:
    """Everything ``runs show`` prints: the record, config, metrics, outputs and the log's tail."""
    run_id = int(run.id)  # type: ignore[arg-type]
    return {
        **run_record(run),
        "config": run.config,
        "output_dir": run.output_dir,
        "elapsed_s": elapsed_s(run),
        "metrics": [m.__dict__ for m in metric_summaries(ws, run_id)],
        "captions": caption_counts(ws, run_id),
        "artifacts": artifact_records(ws, run_id),
        "sample_steps": sample_steps(ws, run),
        "log_tail": jobs.log_tail(ws, run_id, log_lines),
    }


# --------------------------------------------------------------------------- text-to-image runs


def t2i_artifact(ws: Workspace, run_id: int) -> jobs.Artifact | None:
    """The pipeline a ``t2i_train`` run produced (the newest, if it registered several)."""
    found = jobs.list_artifacts(ws, kind=configs.T2I_ARTIFACT, run_id=run_id)
    return found[0] if found else None


def t2i_usage(ws: Workspace, run_id: int) -> dict[str, int]:
    """Caption kinds fed to the text encoder during training (artifact meta ``usage``), e.g.
    ``{"recap_short": 130, "recap_long": 126, "empty": 28}``; empty before the run finishes."""
    artifact = t2i_artifact(ws, run_id)
    usage = (artifact.meta or {}).get("usage") if artifact is not None else None
    return {str(k): int(v) for k, v in usage.items()} if isinstance(usage, dict) else {}


def t2i_train_summary(ws: Workspace, run: jobs.Run) -> dict[str, Any]:
    """The ``t2i train --json`` line: where the pipeline is and which captions trained it."""
    run_id = int(run.id)  # type: ignore[arg-type]
    artifact = t2i_artifact(ws, run_id)
    output = None
    if artifact is not None:
        try:
            output = str(jobs.artifact_path(ws, artifact).resolve())
        except UnsafePathError:
            output = None
    return {
        "run_id": run.id,
        "kind": run.kind,
        "status": run.status,
        "output": output,
        "artifact": artifact.name if artifact is not None else None,
        "usage": t2i_usage(ws, run_id),
        "caption_condition": (artifact.meta or {}).get("caption_condition") if artifact is not None else None,
        "message": run.message,
    }


def generated_datasets(ws: Workspace) -> list[str]:
    """Names of the datasets ``generate`` runs wrote (newest run first) that still exist."""
    from backend.evaluation import generated_datasets as listed

    return [entry.name for entry in listed(ws)]


def generated_dataset_name(run: jobs.Run) -> str:
    """The dataset a ``generate`` run writes to (see contracts/GENERATED.md)."""
    return str((run.config or {}).get("output_dataset") or "") or f"generated-run-{run.id}"


def generated_image_count(ws: Workspace, run: jobs.Run) -> int:
    """Images this generation run stored (a dataset named by the user may hold other runs' too)."""
    with read_session(ws) as s:
        n = s.exec(
            select(func.count())
            .select_from(Image)
            .join(Dataset, col(Dataset.id) == col(Image.dataset_id))
            .where(
                Dataset.name == generated_dataset_name(run),
                func.json_extract(Image.meta, "$.generated.run_id") == int(run.id),  # type: ignore[arg-type]
            )
        ).one()
    return int(n)


def generate_summary(ws: Workspace, run: jobs.Run) -> dict[str, Any]:
    """The ``generate --json`` line."""
    return {
        "run_id": run.id,
        "kind": run.kind,
        "status": run.status,
        "dataset": generated_dataset_name(run),
        "images": generated_image_count(ws, run),
        "message": run.message,
    }


def eval_records(ws: Workspace, run_id: int) -> list[dict[str, Any]]:
    """The aggregate metrics a ``t2i_eval`` run wrote, one dict per checkpoint × regime × metric."""
    from backend.evaluation import EvalResult

    with read_session(ws) as s:
        rows = s.exec(
            select(EvalResult)
            .where(EvalResult.run_id == run_id)
            .order_by(EvalResult.checkpoint, EvalResult.regime, EvalResult.metric)
        ).all()
    return [
        {
            "checkpoint": r.checkpoint,
            "regime": r.regime,
            "metric": r.metric,
            "value": r.value,
            # KID's spread over random subsets is a standard deviation, never shown as a stderr
            "stderr": None if r.metric == "kid" else r.stderr,
            "std_over_subsets": (r.details or {}).get("std_over_subsets") if r.metric == "kid" else None,
            "n": r.n,
            "dataset": r.dataset,
            "model": r.model,
            "weights": r.weights,
            "reference": r.reference,
            # issue 11: the 95% interval over prompts and the mismatched-prompt chance level, in
            # the stored metric's own units (R-precision in %)
            **_interval_of(r.metric, r.details),
        }
        for r in rows
    ]


def _interval_of(metric: str, details: dict[str, Any] | None) -> dict[str, Any]:
    interval = (details or {}).get("interval") or {}
    scale = 100.0 if metric in ("r_precision", "r_precision_all") else 1.0  # stored in %, interval 0-1

    def num(key: str) -> float | None:
        value = interval.get(key)
        return None if value is None else float(value) * scale

    return {"lower": num("lower"), "upper": num("upper"), "chance": num("chance")}


def fmt_metric(record: dict[str, Any]) -> str:
    """``31.2 ± 0.41 [30.4, 32.0] (chance 18.1, n=40)``: a metric with its standard error where it
    has one, its 95% interval over prompts and mismatched-prompt chance level where stored; KID
    with its standard deviation over subsets, ``0.0123 (s.d. over subsets 0.004, n=40)``."""
    value = record.get("value")
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "—"
    text = f"{value:.4g}"
    stderr = record.get("stderr")
    if isinstance(stderr, (int, float)) and math.isfinite(stderr):
        text += f" ± {stderr:.2g}"
    notes = []
    spread = record.get("std_over_subsets")
    if isinstance(spread, (int, float)) and math.isfinite(spread):
        notes.append(f"s.d. over subsets {spread:.2g}")
    lower, upper = record.get("lower"), record.get("upper")
    if isinstance(lower, (int, float)) and isinstance(upper, (int, float)):
        text += f" [{lower:.4g}, {upper:.4g}]"
    chance = record.get("chance")
    if isinstance(chance, (int, float)) and math.isfinite(chance):
        notes.append(f"chance {chance:.3g}")
    if record.get("n"):
        notes.append(f"n={record['n']}")
    return f"{text} ({', '.join(notes)})" if notes else text


# --------------------------------------------------------------------------- validation samples


def samples_dir(ws: Workspace, run: jobs.Run) -> Path:
    return jobs.run_dir(ws, run) / "samples"


def sample_steps(ws: Workspace, run: jobs.Run) -> list[int]:
    """Steps that have a ``samples/step_<N>.json`` file, ascending."""
    folder = samples_dir(ws, run)
    if not folder.is_dir():
        return []
    steps = []
    for entry in folder.iterdir():
        match = SAMPLE_FILE.match(entry.name)
        if match:
            steps.append(int(match.group(1)))
    return sorted(steps)


def load_samples(ws: Workspace, run: jobs.Run, step: int) -> list[dict[str, Any]]:
    """The validation samples of one evaluation: a captioner's ``[{image_id, image_path, human,
    generated}]`` or a T2I fine-tune's ``[{image_path, prompt, seed, ...}]`` (see :func:`is_t2i_sample`).

    A file being written, or written by a job that crashed, reads as empty rather than failing.
    """
    path = samples_dir(ws, run) / f"step_{int(step)}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if isinstance(data, dict):  # tolerate {"samples": [...]} too
        data = data.get("samples", [])
    return [row for row in data if isinstance(row, dict)] if isinstance(data, list) else []


def sample_image_file(ws: Workspace, sample: dict[str, Any]) -> Path | None:
    """The thumbnail of a sample's image (or the image itself), only from the folders the studio serves."""
    image_id = sample.get("image_id")
    if isinstance(image_id, int) or (isinstance(image_id, str) and image_id.isdigit()):
        with read_session(ws) as s:
            image = s.get(Image, int(image_id))
        if image is not None:
            thumb = thumb_path(ws, image.sha256)
            if thumb.exists():
                return thumb
    raw = sample.get("image_path")
    if not isinstance(raw, str) or not raw:
        return None
    try:
        path = Path(raw).resolve() if Path(raw).is_absolute() else ws.inside(raw)
    except (UnsafePathError, OSError):
        return None
    # only the folders the studio serves: a sample file must not expose anything else
    served = (ws.images_dir.resolve(), ws.thumbs_dir.resolve())
    if not any(path.is_relative_to(folder) for folder in served):
        return None
    return path if path.is_file() else None


def is_t2i_sample(sample: dict[str, Any]) -> bool:
    """A text-to-image validation sample (prompt → image) rather than a captioner's (image → caption)."""
    return "prompt" in sample


def sample_run_image(ws: Workspace, run: jobs.Run, sample: dict[str, Any]) -> Path | None:
    """A T2I sample's rendered image: a file inside this run's folder or the folders the studio serves.

    The path may be absolute, relative to the workspace or relative to the run folder (jobs
    write either); anything resolving elsewhere is refused, so a samples file cannot make
    the studio read other files.
    """
    raw = sample.get("image_path")
    if not isinstance(raw, str) or not raw:
        return None
    folder = jobs.run_dir(ws, run).resolve()
    allowed = (folder, *served_folders(ws))
    given = Path(raw)
    candidates = [given] if given.is_absolute() else [ws.home / given, folder / given]
    for candidate in candidates:
        try:
            path = candidate.resolve()
        except OSError:
            continue
        if any(path.is_relative_to(root) for root in allowed) and path.is_file():
            return path
    return None


def served_folders(ws: Workspace) -> tuple[Path, ...]:
    """Folders the studio serves as files (``allowed_paths`` of the server)."""
    return (ws.images_dir.resolve(), ws.thumbs_dir.resolve())


def image_data_uri(path: Path, max_side: int = 256) -> str | None:
    """A small PNG of ``path`` as a ``data:`` URI, for pages that may not serve run folders."""
    import base64
    import io

    from PIL import Image as PILImage

    try:
        with PILImage.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((max_side, max_side))
            buffer = io.BytesIO()
            im.save(buffer, format="PNG")
    except (OSError, ValueError, PILImage.DecompressionBombError):
        return None
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
