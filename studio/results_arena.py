"""Results → Human ratings (Arena): Bradley–Terry ratings with 95% intervals and the checks
that say how far to trust them.

What is shown, and why
- Ratings with bootstrap intervals (a plot and a table) next to each system's training
  caption mix, caption condition and captioner — the point of the study is to see whether
  the caption condition explains the rating.
- A view grouped by caption condition (alt-text vs RECAP Mix vs …): the same votes refit
  with every system renamed to its condition (votes between two systems of the same
  condition are left out, they say nothing about the conditions).
- Win-rate heatmap (model-free, shows non-transitive results the BT model averages away),
  left-side bias (sides are random, so a bias is the annotators'), agreement (Cohen pairs,
  Fleiss, Krippendorff), swap consistency and gold accuracy per annotator, per-criterion and
  per-category ratings, and the votes still needed to separate neighbours.
- CSV export of judgments and of results; CSV import of external judgments (admins).

Who sees what: admins see every campaign; annotators only *closed* ones, so a leaderboard
never tells a judge which system is ahead while they are still judging it (the check is on
the server, in every handler).

A verdict campaign (one image, faithful or not) shows success rates instead
(:mod:`studio.results_verdicts`); the same ``arena_results`` endpoint answers, and for such a
campaign its second parameter — the "Criterion" dropdown, relabelled "Baseline" — names the
system relative improvements are measured against.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr
import numpy as np
import pandas as pd

from backend import arena as arena_api
from backend.arena.common import CLUSTER
from backend.models import Role, User
from backend.users import PermissionDenied
from backend.workspace import Workspace
from studio.plots import message_figure, new_figure
from studio.session import current_user, require_admin_ui
from studio.ui_common import esc, user_or_error

if TYPE_CHECKING:  # the statistics pull in scipy and scikit-learn: imported when results are shown
    from matplotlib.figure import Figure

    from backend.stats import LeftBias

ALL_CRITERIA = "all criteria (pooled)"
BASELINE_LABEL = "Baseline (relative improvement against it)"
POOLED_VALUES = {ALL_CRITERIA, "all criteria"}  # the second: the label before issue 9 (API callers)
DPI = 100
EMPTY_SIZE = (10, 2.4)  # a figure with nothing to plot: its message only
CONDITION_COLORS = ("#c2410c", "#6b7280", "#1d4ed8", "#7c3aed", "#059669", "#db2777", "#0891b2", "#b45309")
NO_CONDITION = "unknown"  # the label backend.arena.results uses too


# --------------------------------------------------------------------------- small helpers


def _num(value: Any, digits: int = 0) -> str:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return esc(value) if value is not None else "—"
    if math.isnan(x):
        return "—"
    return f"{x:,.{digits}f}"


def _pct(value: Any) -> str:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return "—"
    return "—" if math.isnan(x) else f"{100 * x:.0f}%"


def visible_campaigns(ws: Workspace, user: User) -> list[str]:
    """Campaign names this user may see results of (admins: all; annotators: closed ones)."""
    admin = user.role == Role.admin.value
    return [c.name for c in arena_api.list_campaigns(ws) if admin or c.status == "closed"]


def _check_visible(ws: Workspace, user: User, name: str) -> None:
    if name not in visible_campaigns(ws, user):
        raise gr.Error(
            f"Campaign {name!r}: results are shown to annotators only once an admin closes it "
            "(judges stay blind while they judge)."
        )


# --------------------------------------------------------------------------- system meta


def _weight(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return str(value) if isinstance(value, int) else f"{value:.2g}"


def _mix_text(mix: Any) -> str:
    """A caption mix as "RECAP Mix: recap_long 0.5 · recap_short 0.5 · empty 0.1".

    Takes ``CaptionMix.as_dict()`` (name, weights, empty_prob) or a plain kind -> weight/count map.
    """
    if not mix:
        return ""
    if not isinstance(mix, Mapping):
        return str(mix)
    weights = mix.get("weights")
    if isinstance(weights, Mapping):
        parts = [f"{kind} {_weight(w)}" for kind, w in weights.items()]
        if mix.get("empty_prob"):
            parts.append(f"empty {_weight(mix['empty_prob'])}")
        name = mix.get("name")
        return f"{name}: {' · '.join(parts)}" if name else " · ".join(parts)
    return " · ".join(f"{kind} {_weight(w)}" for kind, w in mix.items())


def _captioner_text(meta: Mapping[str, Any]) -> str:
    value = meta.get("captioners") or meta.get("captioner")
    if not value:
        return ""
    if isinstance(value, Mapping):
        parts = []
        for kind, refs in value.items():
            refs = refs if isinstance(refs, list | tuple) else [refs]
            parts.append(f"{kind}: {', '.join(str(r) for r in refs)}")
        return "; ".join(parts)
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def system_meta_table(systems: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """Per system: caption condition, caption mix and captioner as display strings."""
    out: dict[str, dict[str, str]] = {}
    for name, meta in (systems or {}).items():
        meta = meta if isinstance(meta, Mapping) else {}
        usage = meta.get("usage")
        out[str(name)] = {
            "condition": str(meta.get("caption_condition") or NO_CONDITION),
            "mix": _mix_text(meta.get("mix")),
            "usage": _mix_text(usage) if isinstance(usage, Mapping) else "",
            "captioner": _captioner_text(meta),
            "source": str(meta.get("source") or ""),
        }
    return out


def condition_colors(meta: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """One colour per caption condition; RECAP-style conditions orange and alt-text grey, as in Review."""
    colors: dict[str, str] = {}
    spare = iter(CONDITION_COLORS[2:] * 4)
    for cond in sorted({m["condition"] for m in meta.values()}):
        low = cond.lower()
        if "recap" in low:
            colors[cond] = CONDITION_COLORS[0]
        elif "alt" in low:
            colors[cond] = CONDITION_COLORS[1]
        else:
            colors[cond] = next(spare)
    return colors


# --------------------------------------------------------------------------- figures


def ratings_figure(ratings: pd.DataFrame, meta: Mapping[str, Mapping[str, str]], title: str = "") -> Figure:
    """Ratings as points with 95% interval bars, best on top, coloured by caption condition."""
    rated = ratings.dropna(subset=["rating", "lower", "upper"]) if ratings is not None else None
    if rated is None or rated.empty:
        return message_figure("No votes yet", EMPTY_SIZE)
    df = rated.sort_values("rating", ascending=True).reset_index(drop=True)
    colors = condition_colors(meta)
    fig = new_figure(figsize=(10, 1.2 + 0.45 * len(df)), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(df))
    for i, row in df.iterrows():
        cond = meta.get(str(row["system"]), {}).get("condition", NO_CONDITION)
        color = colors.get(cond, "#374151")
        lo, hi = float(row["lower"]), float(row["upper"])
        ax.plot([lo, hi], [i, i], color=color, linewidth=3, alpha=0.55, solid_capstyle="butt")
        ax.plot([float(row["rating"])], [i], "o", color=color, markersize=7)
        ax.text(hi, i, f"  {float(row['rating']):.0f} [{lo:.0f}, {hi:.0f}]", va="center", fontsize=8.5)
    labels = [
        f"{row['system']}  ({meta.get(str(row['system']), {}).get('condition', NO_CONDITION)})"
        for _, row in df.iterrows()
    ]
    ax.set_yticks(y, labels, fontsize=9)
    ax.set_xlabel("Bradley–Terry rating (Elo scale; bars: 95% interval, bootstrap over prompts)")
    left = float(df["lower"].min())
    right = float(df["upper"].max())
    pad = max(20.0, 0.25 * (right - left))
    ax.set_xlim(left - pad * 0.3, right + pad)
    ax.grid(axis="x", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", linestyle="", color=c, label=cond) for cond, c in colors.items()]
    if handles:  # outside the axes: it must never hide a bar
        ax.legend(
            handles=handles,
            fontsize=8.5,
            frameon=False,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            title="caption condition",
            title_fontsize=8.5,
        )
    fig.suptitle(title or "Ratings", fontsize=11)
    return fig


def winrate_figure(rate: pd.DataFrame | None, n: pd.DataFrame | None = None) -> Figure:
    """Heatmap of the row system's win rate over the column system (ties ½), with vote counts."""
    if rate is None or rate.empty:
        return message_figure("No head-to-head votes yet", EMPTY_SIZE)
    systems = list(rate.index)
    k = len(systems)
    fig = new_figure(figsize=(2.2 + 0.9 * k, 1.4 + 0.7 * k), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    values = rate.to_numpy(dtype=float)
    image = ax.imshow(np.ma.masked_invalid(values), cmap="RdYlGn", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            v = values[i, j]
            if math.isnan(v):
                continue
            count = ""
            if n is not None:
                try:
                    count = f"\nn={int(n.iloc[i, j])}"
                except (TypeError, ValueError):
                    count = ""
            ax.text(j, i, f"{v:.2f}{count}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(k), systems, rotation=30, ha="right", fontsize=8.5)
    ax.set_yticks(range(k), systems, fontsize=8.5)
    ax.set_xlabel("opponent")
    ax.set_ylabel("system")
    fig.colorbar(image, ax=ax, shrink=0.8, label="win rate of row over column")
    fig.suptitle("Win rates (ties count ½)", fontsize=11)
    return fig


def close(fig: Figure) -> None:
    fig.clear()


# --------------------------------------------------------------------------- tables


def table_html(
    df: pd.DataFrame | None,
    columns: list[tuple[str, str, str]] | None = None,
    empty: str = "nothing yet",
) -> str:
    """A small HTML table; ``columns`` = (column, header, format) with format "", "int", "1", "pct"."""
    if df is None or len(df) == 0:
        return f"<p class='ar-note'><i>{esc(empty)}</i></p>"
    if columns is None:
        columns = []
        for col in df.columns:
            kind = "2" if pd.api.types.is_float_dtype(df[col]) else ""
            columns.append((str(col), str(col), kind))
    head = "".join(f"<th class='{'num' if fmt else ''}'>{esc(header)}</th>" for _, header, fmt in columns)
    rows = []
    for _, row in df.iterrows():
        cells = []
        for col, _, fmt in columns:
            value = row.get(col) if col in row.index else None
            if fmt == "pct":
                text = _pct(value)
            elif fmt == "bool":
                text = "yes" if value is True or value == 1 else "no"
            elif fmt == "int":
                text = _num(value, 0)
            elif fmt in ("1", "2", "3"):
                text = _num(value, int(fmt))
            else:
                text = esc(
                    "—" if value is None or (isinstance(value, float) and math.isnan(value)) else value
                )
            cells.append(f"<td class='{'num' if fmt else ''}'>{text}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table class='ar-table'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def ratings_html(ratings: pd.DataFrame | None, meta: Mapping[str, Mapping[str, str]]) -> str:
    """The rating table with every system's caption condition, training caption mix and captioner."""
    if ratings is None or ratings.empty:
        return "<p class='ar-note'><i>No votes yet.</i></p>"
    rows = []
    for _, r in ratings.sort_values("rating", ascending=False).iterrows():
        m = meta.get(str(r["system"]), {})
        mix = esc(m.get("mix") or "")
        if m.get("usage"):
            used = f"<span class='ar-note'>used: {esc(m['usage'])}</span>"
            mix = f"{mix}<br>{used}" if mix else used
        rows.append(
            "<tr>"
            f"<td class='num'>{_num(r.get('rank'))}</td>"
            f"<td><b>{esc(r['system'])}</b></td>"
            f"<td class='num'>{_num(r['rating'])}</td>"
            f"<td class='num'>[{_num(r['lower'])}, {_num(r['upper'])}]</td>"
            f"<td class='num'>{_num(r.get('wins'))} / {_num(r.get('losses'))} / {_num(r.get('ties'))}</td>"
            f"<td class='num'>{_num(r.get('n'))}</td>"
            f"<td><span class='ar-cond'>{esc(m.get('condition', NO_CONDITION))}</span></td>"
            f"<td class='ar-mix'>{mix or '—'}</td>"
            f"<td class='ar-mix'>{esc(m.get('captioner') or '—')}</td>"
            "</tr>"
        )
    head = (
        "<tr><th class='num'>rank</th><th>system</th><th class='num'>rating</th><th class='num'>95% interval</th>"
        "<th class='num'>W / L / T</th><th class='num'>votes</th><th>caption condition</th>"
        "<th>training caption mix</th><th>captioner</th></tr>"
    )
    return f"<table class='ar-table' id='ar-ratings-table'><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def left_bias_html(bias: LeftBias | None) -> str:
    """One line: share of decisive votes won by the left side, its interval and the binomial test."""
    if bias is None or not bias.decisive:
        return "<div class='ar-bias'>Left-side bias: no decisive vote yet.</div>"
    flagged = bias.p_value < 0.05
    verdict = "annotators favour a side (p < 0.05)" if flagged else "no evidence of a side preference"
    return (
        f"<div class='ar-bias{' flag' if flagged else ''}'>Left-side bias: the left side won <b>{_pct(bias.share)}</b> "
        f"of {bias.decisive} decisive votes (95% interval {_pct(bias.lower)}–{_pct(bias.upper)}, "
        f"binomial p = {bias.p_value:.3g}; {bias.n_undecided} ties/both bad left out) — {verdict}. "
        "Sides are random, so 50% is expected.</div>"
    )


RATING_SPEC = [
    ("rank", "rank", "int"),
    ("system", "system", ""),
    ("rating", "rating", "int"),
    ("lower", "lower", "int"),
    ("upper", "upper", "int"),
    ("wins", "wins", "int"),
    ("losses", "losses", "int"),
    ("ties", "ties", "int"),
    ("n", "votes", "int"),
]
SWAP_SPEC = [
    ("annotator", "annotator", ""),
    ("n_repeats", "repeats", "int"),
    ("n_swapped", "swapped", "int"),
    ("consistent", "consistent", "int"),
    ("rate", "consistency", "pct"),
    ("lower", "lower", "pct"),
    ("upper", "upper", "pct"),
]
GOLD_SPEC = [
    ("annotator", "annotator", ""),
    ("n_gold", "gold pairs", "int"),
    ("correct", "correct", "int"),
    ("accuracy", "accuracy", "pct"),
    ("lower", "lower", "pct"),
    ("upper", "upper", "pct"),
]
NEEDED_SPEC = [
    ("system_a", "higher", ""),
    ("system_b", "lower", ""),
    ("diff", "rating gap", "int"),
    ("lower", "gap lower", "int"),
    ("upper", "gap upper", "int"),
    ("separated", "separated at 95%", "bool"),
    ("clusters_needed", "≈ further prompts needed", "int"),
    ("votes_needed", "≈ further votes (on new prompts)", "int"),
]
COHEN_SPEC = [
    ("annotator_1", "annotator", ""),
    ("annotator_2", "annotator", ""),
    ("n_items", "pairs both judged", "int"),
    ("agreement", "raw agreement", "pct"),
    ("kappa", "Cohen's κ", "3"),
]


VERDICT_COHEN_SPEC = [*COHEN_SPEC[:2], ("n_items", "images both judged", "int"), *COHEN_SPEC[3:]]


def frames_html(value: Any, spec: list[tuple[str, str, str]] | None, empty: str) -> str:
    """A DataFrame, or a mapping name -> DataFrame shown one after the other."""
    if isinstance(value, pd.DataFrame):
        return table_html(value, spec, empty=empty)
    if isinstance(value, Mapping) and value:
        return "".join(
            f"<h4>{esc(key)}</h4>{table_html(frame, spec, empty=empty)}" for key, frame in value.items()
        )
    return f"<p class='ar-note'><i>{esc(empty)}</i></p>"


def agreement_html(agreement: Any) -> str:
    """Cohen's κ per annotator pair, Fleiss' κ and Krippendorff's α (``backend.stats.Agreement``)."""
    if agreement is None:
        return "<p class='ar-note'><i>No votes yet.</i></p>"
    fleiss, alpha = agreement.fleiss, agreement.alpha
    fleiss_note = f" ({fleiss.n_items} items × {fleiss.raters_per_item} raters)" if fleiss.n_items else ""
    alpha_note = f" ({alpha.n_items} items)" if alpha.n_items else ""
    return (
        f"<p>Fleiss' κ: <b>{_num(fleiss.kappa, 3)}</b>{fleiss_note} · "
        f"Krippendorff's α (nominal): <b>{_num(alpha.alpha, 3)}</b>{alpha_note}</p>"
        + table_html(agreement.cohen, COHEN_SPEC, empty="no two annotators judged the same pairs yet")
    )


def rated_votes(votes: pd.DataFrame, criterion: str | None) -> pd.DataFrame:
    """The votes that enter ratings: first judgments of regular pairs (as backend.arena.results)."""
    if votes is None or votes.empty:
        return pd.DataFrame(columns=["model_a", "model_b", "outcome"])
    if criterion is not None:
        votes = votes[votes["criterion"] == criterion]
    keep = ~votes["is_gold"].astype(bool) & ~votes["is_repeat"].astype(bool)
    return votes[keep]


def condition_ratings(
    votes: pd.DataFrame, meta: Mapping[str, Mapping[str, str]], rounds: int, seed: int = 0
) -> pd.DataFrame:
    """The votes refit with each system renamed to its caption condition (same-condition votes dropped)."""
    columns = ["system", "rating", "lower", "upper", "rank", "n"]
    if votes is None or votes.empty:
        return pd.DataFrame(columns=columns)
    cond = {name: m["condition"] for name, m in meta.items()}
    df = pd.DataFrame(
        {
            "model_a": votes["model_a"].map(lambda s: cond.get(str(s), NO_CONDITION)),
            "model_b": votes["model_b"].map(lambda s: cond.get(str(s), NO_CONDITION)),
            "outcome": votes["outcome"],
            CLUSTER: votes[CLUSTER],
        }
    )
    df = df[df["model_a"] != df["model_b"]]
    if df.empty:
        return pd.DataFrame(columns=columns)
    from backend.stats import bootstrap_bt

    table = bootstrap_bt(df, rounds=rounds, seed=seed, cluster=CLUSTER)  # resampling prompts, as the ratings
    counts = pd.concat([df["model_a"], df["model_b"]]).value_counts()
    table["n"] = table["system"].map(lambda c: int(counts.get(c, 0)))
    return table


def conditions_html(groups: list[dict[str, Any]], pooled: pd.DataFrame) -> str:
    """Systems grouped by caption condition, with the pooled condition-vs-condition rating."""
    if not groups:
        return "<p class='ar-note'><i>No systems.</i></p>"
    pooled_by = {str(r["system"]): r for _, r in pooled.iterrows()} if not pooled.empty else {}
    rows = []
    for g in groups:
        cond = str(g.get("caption_condition") or NO_CONDITION)
        p = pooled_by.get(cond)
        pooled_cell = (
            f"{_num(p['rating'])} [{_num(p['lower'])}, {_num(p['upper'])}] · {int(p['n'])} votes"
            if p is not None
            else "—"
        )
        rows.append(
            "<tr>"
            f"<td><span class='ar-cond'>{esc(cond)}</span></td>"
            f"<td>{esc(', '.join(g.get('systems') or []))}</td>"
            f"<td class='num'>{_num(g.get('best_rating'))}</td>"
            f"<td class='num'>{_num(g.get('mean_rating'))}</td>"
            f"<td class='num'>{_num(g.get('votes'))}</td>"
            f"<td class='num'>{pooled_cell}</td>"
            "</tr>"
        )
    head = (
        "<tr><th>caption condition</th><th>systems (best first)</th><th class='num'>best rating</th>"
        "<th class='num'>mean rating</th><th class='num'>votes</th>"
        "<th class='num'>pooled rating [95%] (condition vs condition)</th></tr>"
    )
    return f"<table class='ar-table' id='ar-conditions-table'><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


# --------------------------------------------------------------------------- computing a view


N_VERDICT_OUTPUTS = 6  # plot, rates, agreement, missing, consistency, per category


def compute_view(ws: Workspace, name: str, criterion: str | None, rounds: int) -> tuple[Any, ...]:
    """Every output of the results page for one campaign: the pairwise outputs, then the two
    sections' visibility, then the verdict outputs (a verdict campaign fills those instead)."""
    if arena_api.get_campaign(ws, name).kind == "verdict":
        return compute_verdict_view(ws, name, criterion, rounds)
    hidden = (gr.update(visible=True), gr.update(visible=False))
    return (
        *compute_pair_view(ws, name, criterion, rounds),
        *hidden,
        *(gr.update() for _ in range(N_VERDICT_OUTPUTS)),
    )


def compute_verdict_view(ws: Workspace, name: str, baseline: str | None, rounds: int) -> tuple[Any, ...]:
    """A verdict campaign's outputs: success rates, relative improvement, agreement, missing elements."""
    from studio import results_verdicts as rv

    systems = _verdict_systems(ws, name)
    chosen = baseline if baseline in systems else None  # anything else (a criterion): the stored one
    results = arena_api.verdict_results(ws, name, baseline=chosen, bootstrap_rounds=rounds, seed=0)
    meta = system_meta_table(results.systems)
    colors = condition_colors(meta)
    per_category = frames_html(results.per_category, rv.CATEGORY_SPEC, "no prompt categories")
    consistency = table_html(results.consistency, rv.RETEST_SPEC, empty="no image was asked again yet")
    return (
        rv.summary_md(results, rounds, len(meta)),
        *(gr.update() for _ in range(10)),  # the pairwise outputs: hidden, untouched
        gr.update(visible=False),
        gr.update(visible=True),
        rv.rates_figure(results.rates, meta, colors, f"Success rate — {results.campaign}"),
        rv.rates_html(results, meta),
        rv.agreement_html(results, VERDICT_COHEN_SPEC, table_html),
        rv.missing_html(results),
        consistency,
        per_category,
    )


def _verdict_systems(ws: Workspace, name: str) -> list[str]:
    """A campaign's system names, sorted (the baseline choices of a verdict campaign)."""
    from backend.arena.common import system_names
    from backend.db import read_session

    campaign_id = arena_api.get_campaign(ws, name).id
    with read_session(ws) as s:
        return sorted(system_names(s, campaign_id).values())  # type: ignore[arg-type]


def compute_pair_view(ws: Workspace, name: str, criterion: str | None, rounds: int) -> tuple[Any, ...]:
    """Every output of the results page for one pairwise campaign (and criterion)."""
    pooled = criterion in POOLED_VALUES
    crit = None if not criterion or pooled else criterion  # None and not pooled: the primary criterion
    results = arena_api.campaign_results(
        ws, name, criterion=crit, pool_criteria=pooled, bootstrap_rounds=rounds, seed=0
    )
    meta = system_meta_table(results.systems)
    votes = rated_votes(arena_api.campaign_votes(ws, name), results.criterion)
    annotators = 0 if votes.empty else votes["annotator"].nunique()
    if results.pooled:
        which = (
            "**all criteria pooled**" if len(results.criteria) > 1 else f"**{esc(results.criterion or '—')}**"
        )
    else:
        primary = " (primary: the campaign's first)" if results.criterion == results.primary_criterion else ""
        which = f"**{esc(results.criterion)}**{primary}"
    summary = (
        f"**{esc(results.campaign)}** ({results.kind}) · criterion: {which} · "
        f"{results.n_judgments} judgments, {results.n_votes} in the ratings (first looks at regular pairs) "
        f"by {annotators} annotator(s) · {len(meta)} systems · 95% intervals from {rounds} bootstrap rounds "
        f"over {results.n_clusters} prompts (the votes on one prompt are resampled together)"
    )
    if results.warnings:
        summary += "\n\n⚠ " + " ".join(esc(w) for w in results.warnings)
    win = results.win_rates
    annotator_parts = [
        "<h4>Swap consistency (same verdict when a pair comes back with its sides swapped)</h4>",
        table_html(results.consistency, SWAP_SPEC, empty="no swapped repeats judged yet"),
        "<h4>Gold accuracy</h4>",
        table_html(results.gold_accuracy, GOLD_SPEC, empty="no gold pairs judged"),
    ]
    return (
        summary,
        ratings_figure(results.ratings, meta, f"Ratings — {results.campaign}"),
        ratings_html(results.ratings, meta),
        conditions_html(results.by_condition, condition_ratings(votes, meta, rounds)),
        winrate_figure(win.rate if win else None, win.n if win else None),
        left_bias_html(results.left_bias),
        agreement_html(results.agreement),
        "".join(annotator_parts),
        table_html(results.votes_needed, NEEDED_SPEC, empty="fewer than two rated systems"),
        frames_html(results.per_criterion, RATING_SPEC, "the campaign has one criterion"),
        frames_html(results.per_category, RATING_SPEC, "no prompt categories"),
    )


# --------------------------------------------------------------------------- build


def build(ws: Workspace, blocks: gr.Blocks) -> None:
    with gr.Row(equal_height=True):
        campaign = gr.Dropdown(
            choices=[], label="Campaign", allow_custom_value=True, elem_id="ar-campaign", scale=2
        )
        criterion = gr.Dropdown(
            choices=[],
            value=None,
            label="Criterion",
            allow_custom_value=True,
            elem_id="ar-criterion",
            scale=2,
        )
        rounds = gr.Number(
            value=100,
            precision=0,
            minimum=10,
            maximum=2000,
            label="Bootstrap rounds",
            elem_id="ar-rounds",
            scale=1,
        )
        btn_show = gr.Button("Show results", variant="primary", elem_id="ar-btn-show", scale=0)
    note = gr.Markdown(
        "_Choose a campaign and press **Show results**. Annotators see a campaign's results once it is closed._",
        elem_id="ar-summary",
    )
    with gr.Column(visible=False, elem_id="ar-verdicts") as verdict_section:
        verdict_plot = gr.Plot(label="Success rate with 95% intervals", elem_id="ar-verdict-plot")
        gr.Markdown(
            "#### Success rate per system, relative improvement, caption mix and captioner\n"
            "<span class='ar-note'>Success = share of annotators answering *faithful*, averaged over the "
            "system's images. Relative improvement = (rate − baseline) / baseline, as RECAP reports it; "
            "choose the baseline in the dropdown above.</span>"
        )
        verdict_rates = gr.HTML(elem_id="ar-verdict-rates")
        gr.Markdown("#### Agreement between annotators")
        verdict_agreement = gr.HTML(elem_id="ar-verdict-agreement")
        gr.Markdown("#### Required elements ticked missing")
        verdict_missing = gr.HTML(elem_id="ar-verdict-missing")
        with gr.Accordion("Annotators: the same verdict when an image comes back", open=False):
            verdict_consistency = gr.HTML(elem_id="ar-verdict-consistency")
        with gr.Accordion("Per prompt category", open=False):
            verdict_category = gr.HTML(elem_id="ar-verdict-per-category")
    with gr.Column(visible=True, elem_id="ar-pairwise") as pair_section:
        ratings_plot = gr.Plot(label="Ratings with 95% intervals", elem_id="ar-ratings-plot")
        gr.Markdown("#### Ratings, caption mix and captioner per system")
        ratings_table = gr.HTML(elem_id="ar-ratings")
        gr.Markdown(
            "#### By caption condition\n"
            "<span class='ar-note'>Each system renamed to its training caption condition and the ratings refit; "
            "votes between two systems of the same condition are left out.</span>"
        )
        conditions_table = gr.HTML(elem_id="ar-conditions")
        with gr.Row():
            winrate_plot = gr.Plot(label="Win rates", elem_id="ar-winrate-plot")
            with gr.Column():
                gr.Markdown("#### Left-side bias")
                bias = gr.HTML(elem_id="ar-left-bias")
                gr.Markdown("#### Agreement between annotators")
                agreement = gr.HTML(elem_id="ar-agreement")
        with gr.Accordion("Annotators: swap consistency and gold accuracy", open=True):
            annotators = gr.HTML(elem_id="ar-annotators")
        with gr.Accordion("Votes still needed to separate neighbours", open=True):
            needed = gr.HTML(elem_id="ar-votes-needed")
        with gr.Accordion("Per criterion", open=False):
            per_criterion = gr.HTML(elem_id="ar-per-criterion")
        with gr.Accordion("Per prompt category", open=False):
            per_category = gr.HTML(elem_id="ar-per-category")
    with gr.Row():
        btn_export_votes = gr.Button("Export judgments (CSV)", elem_id="ar-btn-export-votes", scale=0)
        btn_export_results = gr.Button("Export results (CSV)", elem_id="ar-btn-export-results", scale=0)
    export_file = gr.File(label="Download", interactive=False, elem_id="ar-export-file", height=60)
    with gr.Accordion("Import external judgments (admin)", open=False, visible=False) as import_box:
        gr.Markdown(
            "CSV columns `prompt,left,right,winner,annotator,criterion`; winner is "
            "`left`, `right`, `tie` or `both_bad`. A bad row refuses the whole file (with line numbers).",
            elem_classes=["ar-note"],
        )
        with gr.Row(equal_height=True):
            import_name = gr.Textbox(label="Into campaign (new or existing)", elem_id="ar-import-name")
            import_csv = gr.File(
                label="CSV file", file_types=[".csv"], type="filepath", elem_id="ar-import-file"
            )
            btn_import = gr.Button("Import", elem_id="ar-btn-import", scale=0)
        import_result = gr.Markdown(elem_id="ar-import-result")

    view_outputs = [
        note,
        ratings_plot,
        ratings_table,
        conditions_table,
        winrate_plot,
        bias,
        agreement,
        annotators,
        needed,
        per_criterion,
        per_category,
        pair_section,
        verdict_section,
        verdict_plot,
        verdict_rates,
        verdict_agreement,
        verdict_missing,
        verdict_consistency,
        verdict_category,
    ]

    def _criteria_update(name: str | None) -> Any:
        """Each criterion (the first, the campaign's primary, chosen), then pooling all of them;
        for a verdict campaign the systems, to choose the baseline from (its stored one chosen)."""
        if not name:
            return gr.update(choices=[], value=None, label="Criterion")
        camp = arena_api.get_campaign(ws, name)
        if camp.kind == "verdict":
            systems = _verdict_systems(ws, name)
            stored = (camp.meta or {}).get("baseline")
            return gr.update(
                choices=systems, value=stored if stored in systems else None, label=BASELINE_LABEL
            )
        crits = list(camp.criteria or [])
        choices = [*crits, ALL_CRITERIA] if len(crits) > 1 else crits
        return gr.update(choices=choices, value=crits[0] if crits else None, label="Criterion")

    def on_load(request: gr.Request):
        try:
            user = current_user(ws, request)
        except PermissionDenied:
            return gr.update(choices=[], value=None), gr.update(), gr.update(visible=False)
        names = visible_campaigns(ws, user)
        value = names[0] if names else None  # newest first
        return (
            gr.update(choices=names, value=value),
            _criteria_update(value),
            gr.update(visible=user.role == Role.admin.value),
        )

    blocks.load(on_load, None, [campaign, criterion, import_box], api_visibility="private")

    def pick_campaign(name: str | None, request: gr.Request):
        user = user_or_error(ws, request)
        if name:
            _check_visible(ws, user, name)
        try:
            return _criteria_update(name)
        except (ValueError, LookupError) as exc:
            raise gr.Error(str(exc)) from None

    def show(name: str | None, crit: str | None, n_rounds: Any, request: gr.Request):
        user = user_or_error(ws, request)
        if not name:
            raise gr.Error("Choose a campaign first.")
        _check_visible(ws, user, name)
        try:
            n = int(n_rounds or 100)
        except (TypeError, ValueError):
            n = 100
        n = min(max(n, 10), 2000)
        try:
            return compute_view(ws, name, crit, n)
        except (ValueError, LookupError) as exc:
            raise gr.Error(f"Cannot compute results of {name!r}: {exc}") from None

    btn_show.click(show, [campaign, criterion, rounds], view_outputs, api_name="arena_results")
    criterion.input(show, [campaign, criterion, rounds], view_outputs, api_visibility="private")
    # picking a campaign shows its results at once (criterion reset to its primary)
    campaign.input(pick_campaign, campaign, criterion, api_visibility="private").success(
        show, [campaign, criterion, rounds], view_outputs, api_visibility="private"
    )

    def export(name: str | None, what: str, request: gr.Request) -> str:
        user = user_or_error(ws, request)
        if not name:
            raise gr.Error("Choose a campaign first.")
        _check_visible(ws, user, name)
        folder = Path(tempfile.mkdtemp(prefix="recap-arena-"))
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "campaign"
        path = folder / f"{safe}-{what}.csv"
        try:
            if what == "judgments":
                arena_api.export_votes_csv(ws, name, path)
            else:
                arena_api.export_results_csv(ws, name, path)
        except (ValueError, LookupError, OSError) as exc:
            raise gr.Error(f"Export failed: {exc}") from None
        return str(path)

    def export_votes(name: str | None, request: gr.Request) -> str:
        return export(name, "judgments", request)

    def export_results(name: str | None, request: gr.Request) -> str:
        return export(name, "results", request)

    btn_export_votes.click(export_votes, campaign, export_file, api_visibility="private")
    btn_export_results.click(export_results, campaign, export_file, api_visibility="private")

    def do_import(name: str, path: str | None, request: gr.Request):
        """Import external judgments from a CSV file (admins only)."""
        user = require_admin_ui(ws, request)
        name = (name or "").strip()
        if not name:
            raise gr.Error("Name the campaign the judgments go into.")
        if not path:
            raise gr.Error("Upload the CSV file first.")
        try:
            report = arena_api.import_votes_csv(ws, name, Path(path), created_by=user.id)
        except (ValueError, LookupError, OSError) as exc:
            raise gr.Error(f"Nothing imported: {exc}") from None
        imported = report.votes
        names = visible_campaigns(ws, user)
        return (
            f"Imported **{esc(imported)}** judgments into **{esc(name)}**.",
            gr.update(choices=names, value=name),
            _criteria_update(name),
        )

    btn_import.click(
        do_import,
        [import_name, import_csv],
        [import_result, campaign, criterion],
        api_name="arena_import_votes",
    )
