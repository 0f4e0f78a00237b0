"""Results → Human ratings (Arena) for a verdict campaign: success rates with 95% intervals.

What is shown, and why
- Success rate per system (share of annotators answering *faithful*, averaged over the system's
  images) as a point with its 95% interval bar, coloured by caption condition, and as a table
  with the same interval drawn inline: the headline of RECAP's human evaluation.
- The relative improvement against a chosen baseline, ``(rate − baseline) / baseline``, the
  number RECAP reports (+64.3% on COCO prompts), with its interval from the same bootstrap
  rounds, and the plain difference beside it (a ratio over a small baseline rate is unstable).
- Agreement between annotators (raw share of agreeing pairs, Fleiss' κ, Krippendorff's α,
  Cohen's κ per pair), test-retest consistency when images were asked again, the required
  elements most often ticked missing per system, and rates per prompt category.

The statistics are :mod:`backend.arena.verdict_stats`'; this module only draws them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from backend.arena.verdict_stats import VerdictResults, percent
from studio.plots import message_figure, new_figure
from studio.ui_common import esc

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 100
MISSING_ROWS = 30  # the most often missing elements shown (the CSV export has every verdict)
RETEST_SPEC = [
    ("annotator", "annotator", ""),
    ("n_repeats", "images asked again", "int"),
    ("consistent", "same verdict", "int"),
    ("rate", "consistency", "pct"),
    ("lower", "lower", "pct"),
    ("upper", "upper", "pct"),
]
CATEGORY_SPEC = [
    ("system", "system", ""),
    ("rate", "success", "pct"),
    ("lower", "lower", "pct"),
    ("upper", "upper", "pct"),
    ("yes", "yes", "int"),
    ("votes", "verdicts", "int"),
    ("items", "images", "int"),
]


def _signed(value: Any) -> str:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return "—"
    return "—" if math.isnan(x) else f"{100 * x:+.1f}%"


def _points(value: Any) -> str:
    """A difference of two rates in percentage points ("+12.5 pp")."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return "—"
    return "—" if math.isnan(x) else f"{100 * x:+.1f} pp"


def rates_figure(
    rates: pd.DataFrame, meta: Mapping[str, Mapping[str, str]], colors: Mapping[str, str], title: str
) -> Figure:
    """Success rates as points with 95% interval bars, best on top, coloured by caption condition."""
    rated = rates.dropna(subset=["rate"]) if rates is not None else None
    if rated is None or rated.empty:
        return message_figure("No verdicts yet", (10, 2.4))
    df = rated.sort_values("rate", ascending=True).reset_index(drop=True)
    fig = new_figure(figsize=(10, 1.2 + 0.45 * len(df)), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    for i, row in df.iterrows():
        cond = meta.get(str(row["system"]), {}).get("condition", "unknown")
        color = colors.get(cond, "#374151")
        rate = 100 * float(row["rate"])
        lo = 100 * float(row["lower"]) if not math.isnan(row["lower"]) else rate
        hi = 100 * float(row["upper"]) if not math.isnan(row["upper"]) else rate
        ax.plot([lo, hi], [i, i], color=color, linewidth=3, alpha=0.55, solid_capstyle="butt")
        ax.plot([rate], [i], "o", color=color, markersize=7)
        ax.text(min(hi, 100), i, f"  {rate:.0f}% [{lo:.0f}, {hi:.0f}]", va="center", fontsize=8.5)
    labels = [
        f"{r['system']}  ({meta.get(str(r['system']), {}).get('condition', 'unknown')})"
        for _, r in df.iterrows()
    ]
    ax.set_yticks(np.arange(len(df)), labels, fontsize=9)
    ax.set_xlim(0, 118)
    ax.set_xticks([0, 20, 40, 60, 80, 100])
    ax.set_xlabel("images judged faithful (%; bars: 95% interval, bootstrap over prompts)")
    ax.grid(axis="x", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    fig.suptitle(title, fontsize=11)
    return fig


def _bar(rate: float, lower: float, upper: float) -> str:
    """The interval as an inline bar on a 0–100% track (the table's own interval plot)."""
    if any(isinstance(v, float) and math.isnan(v) for v in (rate, lower, upper)):
        return ""
    return (
        "<div class='ar-rate-bar' title='95% interval'>"
        f"<div class='ar-rate-ci' style='left:{100 * lower:.1f}%;width:{100 * (upper - lower):.1f}%'></div>"
        f"<div class='ar-rate-point' style='left:{100 * rate:.1f}%'></div></div>"
    )


def rates_html(results: VerdictResults, meta: Mapping[str, Mapping[str, str]]) -> str:
    """Per system: success rate with its interval (numbers and bar), counts, and the relative
    improvement against the baseline, beside the caption condition, mix and captioner."""
    if results.rates.dropna(subset=["rate"]).empty:
        return "<p class='ar-note'><i>No verdicts yet.</i></p>"
    rel = {str(r["system"]): r for _, r in results.improvements.iterrows()}
    rows = []
    for _, r in results.rates.sort_values("rate", ascending=False, na_position="last").iterrows():
        name = str(r["system"])
        m = meta.get(name, {})
        if name == results.baseline:
            versus = "<i>baseline</i>"
        elif name in rel:
            x = rel[name]
            versus = (
                f"<b>{_signed(x['relative'])}</b> [{_signed(x['lower'])}, {_signed(x['upper'])}]"
                f"<br><span class='ar-note'>difference {_points(x['difference'])} "
                f"[{_points(x['difference_lower'])}, {_points(x['difference_upper'])}]</span>"
            )
        else:
            versus = "—"
        rows.append(
            "<tr>"
            f"<td><b>{esc(name)}</b></td>"
            f"<td class='num'>{percent(r['rate'])}</td>"
            f"<td class='num'>[{percent(r['lower'])}, {percent(r['upper'])}]</td>"
            f"<td>{_bar(float(r['rate']), float(r['lower']), float(r['upper']))}</td>"
            f"<td class='num'>{int(r['yes'])} / {int(r['votes'])}</td>"
            f"<td class='num'>{int(r['items'])}</td>"
            f"<td class='num'>{versus}</td>"
            f"<td><span class='ar-cond'>{esc(m.get('condition', 'unknown'))}</span></td>"
            f"<td class='ar-mix'>{esc(m.get('mix') or '—')}</td>"
            f"<td class='ar-mix'>{esc(m.get('captioner') or '—')}</td>"
            "</tr>"
        )
    base = f"vs {esc(results.baseline)}" if results.baseline else "relative (choose a baseline)"
    head = (
        "<tr><th>system</th><th class='num'>success</th><th class='num'>95% interval</th><th>0–100%</th>"
        f"<th class='num'>yes / verdicts</th><th class='num'>images</th><th class='num'>{base}</th>"
        "<th>caption condition</th><th>training caption mix</th><th>captioner</th></tr>"
    )
    return (
        f"<table class='ar-table' id='ar-verdict-rates-table'><thead>{head}</thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def agreement_html(results: VerdictResults, cohen_spec: list[tuple[str, str, str]], table_html: Any) -> str:
    """Raw agreement, Fleiss' κ and Krippendorff's α, and Cohen's κ per annotator pair."""
    agreement = results.agreement
    if agreement is None:
        return "<p class='ar-note'><i>No image has verdicts from two annotators yet.</i></p>"
    fleiss, alpha = agreement.fleiss, agreement.alpha
    return (
        f"<p>Same verdict: <b>{percent(results.raw_agreement)}</b> of annotator pairs on an image · "
        f"Fleiss' κ: <b>{_num(fleiss.kappa)}</b> ({fleiss.n_items} images × {fleiss.raters_per_item} raters) · "
        f"Krippendorff's α (nominal): <b>{_num(alpha.alpha)}</b> ({alpha.n_items} images)</p>"
        "<p class='ar-note'>With mostly one answer κ and α stay low even when annotators nearly always "
        "agree (chance agreement is high then): read them with the raw share.</p>"
        + table_html(agreement.cohen, cohen_spec, empty="no two annotators judged the same images yet")
    )


def _num(value: Any) -> str:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return "—"
    return "—" if math.isnan(x) else f"{x:.3f}"


def missing_html(results: VerdictResults) -> str:
    """The required elements most often ticked missing, per system."""
    missing = results.missing
    if missing is None or missing.empty:
        return "<p class='ar-note'><i>No required elements were offered, or none judged yet.</i></p>"
    shown = missing.head(MISSING_ROWS)
    rows = "".join(
        f"<tr><td>{esc(r['element'])}</td><td>{esc(r['system'])}</td><td class='num'>{int(r['missing'])}</td>"
        f"<td class='num'>{int(r['judged'])}</td><td class='num'>{percent(r['share'])}</td></tr>"
        for _, r in shown.iterrows()
    )
    more = len(missing) - len(shown)
    tail = f"<p class='ar-note'>… and {more} more rows (export the verdicts for all).</p>" if more > 0 else ""
    return (
        "<table class='ar-table' id='ar-verdict-missing-table'><thead><tr><th>element</th><th>system</th>"
        "<th class='num'>ticked missing</th><th class='num'>verdicts on images asking for it</th>"
        f"<th class='num'>share</th></tr></thead><tbody>{rows}</tbody></table>{tail}"
    )


def summary_md(results: VerdictResults, rounds: int, meta_count: int) -> str:
    text = (
        f"**{esc(results.campaign)}** (verdicts) · question: **{esc(results.question)}** · "
        f"{results.n_judgments} verdicts, {results.n_votes} first looks on {results.n_items} images by "
        f"{results.annotators} annotator(s) · {meta_count} systems · 95% intervals from {rounds} bootstrap "
        f"rounds over {results.n_clusters} prompts (every image of a drawn prompt comes along)"
    )
    if results.warnings:
        text += "\n\n⚠ " + " ".join(esc(w) for w in results.warnings)
    return text
