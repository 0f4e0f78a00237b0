"""RECAP's results table for one dataset of generated images, with CSV and LaTeX export.

Why a table of its own: RECAP judges its method by one table — FID, O-FID, SOA-C, SOA-I, CA,
PA, RP, CLIP-S, GenEval and the human "successful generation" rate, one row per checkpoint (its
caption condition, mix and captioner beside it). Here each number carries its 95% bootstrap
interval over prompts (as ``t2i_eval`` stored it, :mod:`backend.eval_contract` units) and the
table ends with a chance-level row: the mismatched-prompt baseline of each column (mean over the
rows; R-precision's is exactly 1 / candidates), so a reader sees what an unrelated image scores.

Human success rates come from the newest verdict campaign (issue 11 §5) over this dataset: the
system named after the checkpoint (``"<label> [upsampled]"`` for the upsampled regime), its
cluster-bootstrap interval over prompts. No chance level there: it is a judgement, not a match.

No torch: the Results tab imports this.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import col, select

from backend.csv_cells import csv_cell
from backend.db import read_session
from backend.eval_contract import metric_entry
from backend.evaluation import EvalResult, results_table
from backend.workspace import Workspace

HUMAN = "human_success"


@dataclass(frozen=True)
class Column:
    key: str  # stored metric name (or HUMAN)
    label: str
    higher_is_better: bool
    percent: bool  # a proportion, shown in % (stored and exported in [0, 1])


COLUMNS: tuple[Column, ...] = (
    Column("fid", "FID", False, False),
    Column("o_fid", "O-FID", False, False),
    Column("soa_c", "SOA-C", True, True),
    Column("soa_i", "SOA-I", True, True),
    Column("ca", "CA", False, False),
    Column("pa_det", "PA", True, True),
    Column("pa_clip", "PA (CLIP)", True, True),
    Column("r_precision", "RP", True, True),
    Column("clip_score", "CLIP-S", True, False),
    Column("geneval", "GenEval", True, True),
    Column(HUMAN, "Human success", True, True),
)


@dataclass(frozen=True)
class Cell:
    value: float | None
    lower: float | None = None
    upper: float | None = None
    n: int = 0
    chance: float | None = None

    def text(self, column: Column, latex: bool = False) -> str:
        if self.value is None:
            return "--" if latex else "—"
        scale, digits = (100.0, 1) if column.percent else (1.0, 2)
        out = f"{self.value * scale:.{digits}f}"
        if self.lower is not None and self.upper is not None:
            interval = f"[{self.lower * scale:.{digits}f}, {self.upper * scale:.{digits}f}]"
            out += f" {{\\scriptsize {interval}}}" if latex else f" {interval}"
        return out


@dataclass
class RecapRow:
    checkpoint: str
    regime: str
    caption_condition: str
    mix: str
    captioners: str
    cells: dict[str, Cell] = field(default_factory=dict)


@dataclass
class RecapTable:
    dataset: str
    rows: list[RecapRow]
    columns: list[Column]  # those with at least one number
    chance: dict[str, Cell]  # column key -> the mean mismatched-prompt baseline over the rows
    human_campaign: str | None = None

    @property
    def labels(self) -> list[str]:
        return [
            "checkpoint",
            "regime",
            "caption condition",
            "mix",
            "captioner",
            *(c.label for c in self.columns),
        ]

    def display(self) -> list[list[str]]:
        """Text rows (checkpoint rows, then the chance-level row) for the UI."""
        out = [
            [r.checkpoint, r.regime, r.caption_condition, r.mix, r.captioners,
             *(r.cells.get(c.key, Cell(None)).text(c) for c in self.columns)]
            for r in self.rows
        ]  # fmt: skip
        out.append(
            ["chance (mismatched prompts)", "", "", "", "", *(self.chance_text(c) for c in self.columns)]
        )
        return out

    def chance_text(self, column: Column, latex: bool = False) -> str:
        cell = self.chance.get(column.key)
        return Cell(cell.value).text(column, latex) if cell is not None else ("--" if latex else "—")


def _num(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def recap_table(ws: Workspace, dataset: str, *, human: bool = True) -> RecapTable:
    """The table of one generated dataset from its newest evaluation of each number."""
    frame = results_table(ws, dataset, latest=True)
    with read_session(ws) as s:
        stored = {
            (r.run_id, r.checkpoint, r.regime, r.metric): r
            for r in s.exec(
                select(EvalResult).where(EvalResult.dataset == dataset).order_by(col(EvalResult.id))
            )
        }
    rows: dict[tuple[str, str], RecapRow] = {}
    for rec in frame.to_dict("records"):
        key = (str(rec["checkpoint"]), str(rec["regime"]))
        row = rows.setdefault(
            key,
            RecapRow(*key, str(rec.get("caption_condition") or "—"), str(rec.get("mix") or "—"),
                     str(rec.get("captioners") or "—")),
        )  # fmt: skip
        metric = str(rec["metric"])
        if metric not in {c.key for c in COLUMNS}:
            continue
        run_id = None if _num(rec.get("run_id")) is None else int(rec["run_id"])
        found = stored.get((run_id, key[0], key[1], rec["metric"]))
        details = found.details if found is not None else None
        entry = metric_entry(metric, float(rec["value"]), int(rec.get("n") or 0), details)
        row.cells[metric] = Cell(
            _num(entry["value"]),
            _num(entry["lower"]),
            _num(entry["upper"]),
            int(entry["n"] or 0),
            _num(entry["chance"]),
        )
    campaign = None
    if human and rows:
        campaign = _human_rates(ws, dataset, rows)
    present = [c for c in COLUMNS if any(c.key in r.cells for r in rows.values())]
    chance = {}
    for c in present:
        values = [
            r.cells[c.key].chance
            for r in rows.values()
            if c.key in r.cells and r.cells[c.key].chance is not None
        ]
        if values:
            chance[c.key] = Cell(sum(values) / len(values), n=len(values))  # type: ignore[arg-type]
    ordered = [rows[k] for k in sorted(rows, key=lambda k: (k[0], k[1] != "raw", k[1]))]
    return RecapTable(dataset, ordered, present, chance, campaign)


def _human_rates(ws: Workspace, dataset: str, rows: dict[tuple[str, str], RecapRow]) -> str | None:
    """Fill the human-success cells from the newest verdict campaign over ``dataset``; its name."""
    from backend.arena.models import Campaign
    from backend.arena.verdict_stats import verdict_results
    from backend.arena.verdicts import is_verdict

    with read_session(ws) as s:
        campaigns = list(s.exec(select(Campaign).order_by(col(Campaign.id).desc())))
    chosen = next(
        (c for c in campaigns if is_verdict(c) and dataset in ((c.meta or {}).get("datasets") or [])), None
    )
    if chosen is None:
        return None
    systems = verdict_results(ws, int(chosen.id), bootstrap_rounds=1000).to_json()["systems"]  # type: ignore[arg-type]
    for (checkpoint, regime), row in rows.items():
        name = checkpoint if regime == "raw" else f"{checkpoint} [{regime}]"
        rate = (systems.get(name) or {}).get("success_rate")
        if rate and _num(rate.get("value")) is not None:
            row.cells[HUMAN] = Cell(
                _num(rate["value"]), _num(rate.get("lower")), _num(rate.get("upper")), int(rate.get("n") or 0)
            )
    return chosen.name


# --------------------------------------------------------------------------- export


def to_csv(tables: list[RecapTable]) -> str:
    """One line per dataset × checkpoint × regime (and a chance line per dataset); per column its
    value, 95% interval, n and chance — proportions in [0, 1], as ``eval --json`` gives them."""
    keys = [c for c in COLUMNS if any(c in t.columns for t in tables)]
    header = ["dataset", "checkpoint", "regime", "caption_condition", "mix", "captioner"]
    for c in keys:
        header += [c.key, f"{c.key}_lower", f"{c.key}_upper", f"{c.key}_n", f"{c.key}_chance"]
    header.append("human_campaign")
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for t in tables:
        for r in t.rows:
            line: list[Any] = [t.dataset, r.checkpoint, r.regime, r.caption_condition, r.mix, r.captioners]
            for c in keys:
                cell = r.cells.get(c.key)
                line += [cell.value, cell.lower, cell.upper, cell.n, cell.chance] if cell else [None] * 5
            line.append(t.human_campaign)
            writer.writerow([csv_cell(v) for v in line])
        line = [t.dataset, "chance (mismatched prompts)", "", "", "", ""]
        for c in keys:
            cell = t.chance.get(c.key)
            line += [cell.value if cell else None, None, None, None, None]
        line.append(t.human_campaign)
        writer.writerow([csv_cell(v) for v in line])
    return buffer.getvalue()


_LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                  "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}  # fmt: skip


UP, DOWN = r" $\uparrow$", r" $\downarrow$"


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def to_latex(tables: list[RecapTable]) -> str:
    """A booktabs ``tabular`` per dataset: checkpoint rows, 95% intervals in brackets, chance row last."""
    parts = []
    for t in tables:
        arrows = [latex_escape(c.label) + (UP if c.higher_is_better else DOWN) for c in t.columns]
        lines = [
            f"% RECAP table of {latex_escape(t.dataset)}: proportions in %, [95% bootstrap interval over prompts]",
            "\\begin{tabular}{ll" + "r" * len(t.columns) + "}",
            "\\toprule",
            " & ".join(["Checkpoint", "Captions", *arrows]) + " \\\\",
            "\\midrule",
        ]
        for r in t.rows:
            name = r.checkpoint if r.regime == "raw" else f"{r.checkpoint} ({r.regime})"
            cells = [r.cells.get(c.key, Cell(None)).text(c, latex=True) for c in t.columns]
            lines.append(
                " & ".join([latex_escape(name), latex_escape(r.caption_condition), *cells]) + " \\\\"
            )
        lines.append("\\midrule")
        chance = [t.chance_text(c, latex=True) for c in t.columns]
        lines.append(" & ".join(["\\textit{chance (mismatched prompts)}", "", *chance]) + " \\\\")
        lines += ["\\bottomrule", "\\end{tabular}"]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"
