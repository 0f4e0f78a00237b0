"""Automatic metrics of generated images, one row per (evaluation run, checkpoint, prompt regime, metric).

Why a table of its own: the Results tab compares checkpoints × prompt regimes (raw vs
upsampled prompts) the way Recap-DataComp's evaluation does, and each number must carry
everything needed to reproduce it — the feature extractor or CLIP model and its weights, the
reference dataset, how many images, how many prompts were truncated, the settings. Per-image
CLIP scores also go to :class:`backend.scores.CaptionScore` (image × its ``prompt`` caption), so
Review shows them; this table holds the aggregates.

No torch here: the ``t2i_eval`` job (``training.jobs.t2i_eval``) writes these rows, the studio
reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, Column, UniqueConstraint, func
from sqlmodel import Field, SQLModel, col, select

from backend.db import read_session
from backend.models import Dataset, Image, utcnow
from backend.workspace import Workspace

if TYPE_CHECKING:  # pandas is imported where a table is built: table-only importers stay light
    import pandas as pd


class EvalResult(SQLModel, table=True):
    """One aggregate metric of one checkpoint under one prompt regime, from one evaluation run."""

    __table_args__ = (
        UniqueConstraint(
            "run_id", "checkpoint", "regime", "metric", name="uq_evalresult_run_ckpt_regime_metric"
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    run_id: int | None = Field(default=None, foreign_key="run.id", index=True, ondelete="SET NULL")
    dataset: str = Field(index=True)  # the dataset of generated images that was evaluated
    checkpoint: str  # the checkpoint label recorded by the generation run
    regime: str  # "raw" | "upsampled"
    metric: str  # "clip_score" | "r_precision" | "r_precision_all" | "fid" | "kid"
    value: float
    # standard error where the metric has one (CLIP-S, R-precision). Not KID: the spread of KID
    # over random subsets is a standard deviation, stored as details["std_over_subsets"]
    stderr: float | None = None
    n: int = 0  # images that entered the number
    model: str = ""  # CLIP model name or feature extractor name
    weights: str = ""  # pretrained tag or local weights path (as given) of that model
    reference: str = ""  # reference dataset (FID/KID) or prompt set (R-precision)
    details: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))  # all else to reproduce
    created_at: datetime = Field(default_factory=utcnow)


# --------------------------------------------------------------------------- reading results
#
# The Results tab and the CLI read evaluations through these functions only, so both show the
# same rows. Nothing here writes.

#: metric -> (label shown in tables, True if higher is better)
METRICS: dict[str, tuple[str, bool]] = {
    "clip_score": ("CLIP-S", True),
    "r_precision": ("R-precision %", True),
    "r_precision_all": ("R-precision among all prompts %", True),
    "fid": ("FID", False),
    "kid": ("KID", False),
}

#: columns of :func:`results_table`, in order
RESULT_COLUMNS = (
    "dataset",
    "checkpoint",
    "regime",
    "metric",
    "value",
    "stderr",
    "std_over_subsets",
    "n",
    "model",
    "weights",
    "reference",
    "run_id",
    "created_at",
    "artifact_id",
    "caption_condition",
    "mix",
    "captioners",
    "train",
    "lora",
    "steps",
    "base",
    "training_images",
)


@dataclass
class GeneratedDataset:
    """A dataset written by ``generate`` runs, as listed for choosing what to evaluate.

    ``checkpoint_refs`` are the references as configured (artifact names, folders, hub ids);
    ``regimes`` the prompt regimes those runs generated (``raw`` and/or ``upsampled``).
    """

    name: str
    images: int
    run_ids: list[int] = field(default_factory=list)
    checkpoint_refs: list[str] = field(default_factory=list)
    regimes: list[str] = field(default_factory=list)
    prompts: str = ""  # the prompt set of the newest run


def generated_datasets(ws: Workspace) -> list[GeneratedDataset]:
    """Datasets that ``generate`` runs wrote into, newest run first, with their image counts.

    Found through the runs' configs (``output_dataset`` or ``generated-run-<id>``), not by
    scanning image metadata, so listing stays cheap on big workspaces. A dataset that was
    deleted since is left out; one written by several runs is listed once with all of them.
    """
    from backend.jobs.models import Run

    regimes_of = {"raw": ["raw"], "upsampled": ["upsampled"], "both": ["raw", "upsampled"]}
    with read_session(ws) as s:
        runs = s.exec(select(Run).where(Run.kind == "generate").order_by(col(Run.id).desc())).all()
        counts = dict(
            s.exec(
                select(Dataset.name, func.count(col(Image.id)))
                .join(Image, col(Image.dataset_id) == col(Dataset.id))
                .group_by(col(Dataset.name))
            ).all()
        )
        names = set(s.exec(select(Dataset.name)).all())
    out: dict[str, GeneratedDataset] = {}
    for run in runs:
        config = run.config or {}
        name = config.get("output_dataset") or f"generated-run-{run.id}"
        if name not in names:
            continue
        entry = out.setdefault(
            name, GeneratedDataset(name, int(counts.get(name, 0)), prompts=config.get("prompts", ""))
        )
        entry.run_ids.append(int(run.id))  # type: ignore[arg-type]
        for ref in config.get("checkpoints") or []:
            if ref not in entry.checkpoint_refs:
                entry.checkpoint_refs.append(ref)
        for regime in regimes_of.get(config.get("regime", "raw"), []):
            if regime not in entry.regimes:
                entry.regimes.append(regime)
    return list(out.values())


def _format_mapping(value: Any) -> str:
    """A caption mix or captioner dict as one readable cell, e.g. ``recap_long=0.5, recap_short=0.5``."""
    if not value:
        return ""
    if isinstance(value, dict) and isinstance(value.get("weights"), dict):  # CaptionMix.as_dict()
        weights = ", ".join(
            f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in value["weights"].items()
        )
        name = value.get("name")
        return f"{name}: {weights}" if name and name != "custom" else weights
    if isinstance(value, dict):
        return "; ".join(
            f"{k}: {', '.join(map(str, v)) if isinstance(v, (list, tuple)) else v}" for k, v in value.items()
        )
    return str(value)


def _artifact_ids_from_images(s: Any, dataset: str) -> dict[str, int | None]:
    """checkpoint label -> artifact id, read from the dataset's image provenance (fallback path)."""
    found: dict[str, int | None] = {}
    ds = s.exec(select(Dataset).where(Dataset.name == dataset)).first()
    if ds is None:
        return found
    for meta in s.exec(select(Image.meta).where(Image.dataset_id == ds.id)).all():
        gen = (meta or {}).get("generated") or {}
        label = gen.get("checkpoint")
        if label is not None and found.get(label) is None:
            found[label] = gen.get("artifact_id")
    return found


def results_table(ws: Workspace, dataset: str | None = None, *, latest: bool = True) -> pd.DataFrame:
    """Every stored evaluation as a table, one row per (dataset, checkpoint, regime, metric).

    ``latest=True`` keeps, for each of those, only the row of the newest evaluation run (the
    highest run id; rows of deleted runs count as oldest); ``latest=False`` keeps every run.
    ``dataset`` limits it to one dataset of generated images.

    Columns (:data:`RESULT_COLUMNS`): the EvalResult fields (``value``, ``stderr``, ``n``,
    ``std_over_subsets`` — KID's standard deviation over its random subsets, never a standard
    error: KID rows have ``stderr`` empty, rows stored before issue 9 included —
    ``model``, ``weights``, ``reference``, ``run_id``, ``created_at``) and what the checkpoint was
    trained on, from its t2i artifact's meta (``contracts/GENERATED.md``): ``artifact_id``,
    ``caption_condition`` (e.g. "RECAP Mix"), ``mix`` and ``captioners`` as readable text,
    ``train``, ``lora``, ``steps``, ``base``, ``training_images``. Checkpoints that are not
    artifacts (a hub id, a folder) have those empty. The artifact is found through the
    ``artifact_id`` the evaluation recorded (``details.group.artifact_id``), else through the
    generated images' ``meta["generated"]["artifact_id"]``. Sorted by dataset, metric,
    checkpoint, regime. The full ``details`` stay in the database (see :func:`result_details`).
    """
    import pandas as pd

    from backend.jobs.models import Artifact

    query = select(EvalResult)
    if dataset is not None:
        query = query.where(EvalResult.dataset == dataset)
    with read_session(ws) as s:
        rows = list(s.exec(query.order_by(col(EvalResult.id))).all())
        metric_of = {id(row): _metric_name(row) for row in rows}
        if latest:
            newest: dict[tuple[str, str, str, str], EvalResult] = {}
            for row in rows:
                key = (row.dataset, row.checkpoint, row.regime, metric_of[id(row)])
                have = newest.get(key)
                if have is None or ((row.run_id or 0), row.id or 0) >= ((have.run_id or 0), have.id or 0):
                    newest[key] = row
            rows = list(newest.values())
        from_images: dict[str, dict[str, int | None]] = {}
        artifacts: dict[int, dict[str, Any]] = {}
        records = []
        for row in rows:
            artifact_id = ((row.details or {}).get("group") or {}).get("artifact_id")
            if artifact_id is None:
                if row.dataset not in from_images:
                    from_images[row.dataset] = _artifact_ids_from_images(s, row.dataset)
                artifact_id = from_images[row.dataset].get(row.checkpoint)
            meta: dict[str, Any] = {}
            if artifact_id is not None:
                if artifact_id not in artifacts:
                    artifact = s.get(Artifact, int(artifact_id))
                    artifacts[artifact_id] = dict(artifact.meta or {}) if artifact is not None else {}
                meta = artifacts[artifact_id]
            kid = row.metric == "kid"  # its spread over subsets is a standard deviation, not a stderr
            spread = (row.details or {}).get("std_over_subsets", row.stderr) if kid else None
            records.append(
                {
                    "dataset": row.dataset,
                    "checkpoint": row.checkpoint,
                    "regime": row.regime,
                    "metric": metric_of[id(row)],
                    "value": row.value,
                    "stderr": None if kid else row.stderr,
                    "std_over_subsets": spread,
                    "n": row.n,
                    "model": row.model,
                    "weights": row.weights,
                    "reference": row.reference,
                    "run_id": row.run_id,
                    "created_at": row.created_at,
                    "artifact_id": artifact_id,
                    "caption_condition": meta.get("caption_condition", ""),
                    "mix": _format_mapping(meta.get("mix")),
                    "captioners": _format_mapping(meta.get("captioners")),
                    "train": meta.get("train", ""),
                    "lora": meta.get("lora"),
                    "steps": meta.get("steps"),
                    "base": meta.get("base", ""),
                    "training_images": meta.get("training_images"),
                }
            )
    frame = pd.DataFrame.from_records(records, columns=list(RESULT_COLUMNS))
    return frame.sort_values(["dataset", "metric", "checkpoint", "regime"], ignore_index=True)


def _metric_name(row: EvalResult) -> str:
    """The metric a stored row really holds. Rows written before issue 9 as ``r_precision``
    ranked the prompt among *all* prompts of the set (no ``protocol`` in their details): they
    are shown as ``r_precision_all``, never beside the standard protocol's numbers."""
    if row.metric == "r_precision" and "protocol" not in (row.details or {}):
        return "r_precision_all"
    return row.metric


def results_wide(frame: pd.DataFrame, *, with_stderr: bool = True) -> pd.DataFrame:
    """:func:`results_table` as one row per (dataset, checkpoint) and one column per metric × regime.

    Column names are ``"<metric label> (<regime>)"`` (e.g. ``"CLIP-S (upsampled)"``); cells are
    text ``"31.20 ± 0.40"`` (± one standard error) with ``with_stderr``, else the numbers; KID
    has no standard error and shows its spread as ``"0.0123 (s.d. over subsets 0.0040)"``. The checkpoint's
    ``caption_condition`` stays as a column so the table reads as RECAP's comparison table.
    """
    import pandas as pd

    if frame.empty:
        return pd.DataFrame(columns=["dataset", "checkpoint", "caption_condition"])

    def cell(row: pd.Series) -> Any:
        if not with_stderr:
            return row["value"]
        digits = 4 if row["metric"] == "kid" else 2
        text = f"{row['value']:.{digits}f}"
        if row["stderr"] is not None and not pd.isna(row["stderr"]):
            text += f" ± {row['stderr']:.{digits}f}"
        spread = row.get("std_over_subsets")
        if spread is not None and not pd.isna(spread):
            text += f" (s.d. over subsets {spread:.{digits}f})"
        return text

    data = frame.assign(
        column=[
            f"{METRICS.get(m, (m, True))[0]} ({r})"
            for m, r in zip(frame["metric"], frame["regime"], strict=True)
        ],
        cell=frame.apply(cell, axis=1),
    )
    order = list(dict.fromkeys(
        f"{METRICS[m][0]} ({r})" for m in METRICS for r in ("raw", "upsampled") if m in set(frame["metric"])
    ))  # fmt: skip
    wide = data.pivot_table(
        index=["dataset", "checkpoint", "caption_condition"], columns="column", values="cell", aggfunc="first"
    )
    columns = [c for c in order if c in wide.columns] + [c for c in wide.columns if c not in order]
    return wide[columns].reset_index().rename_axis(columns=None)


def result_details(ws: Workspace, run_id: int) -> list[EvalResult]:
    """Every row one evaluation run stored, with its full ``details`` (config, extractor,
    preprocessing, image counts, truncations, candidates), for a reproduction record."""
    with read_session(ws) as s:
        return list(
            s.exec(select(EvalResult).where(EvalResult.run_id == run_id).order_by(col(EvalResult.id))).all()
        )
