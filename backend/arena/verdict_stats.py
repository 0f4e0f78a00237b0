"""Results of a verdict campaign: success rates, RECAP's relative improvement, agreement, missing elements.

Which verdicts enter what:

* success rates, relative improvements, agreement and missing-element counts: each annotator's
  *first* verdict on an image (a planned repeat would count one annotator twice on it);
* test-retest consistency: repeats with the first verdict on the same image.

Success rate of a system: the mean over its judged images of the share of annotators who said
*yes* (:mod:`backend.stats.success`). Intervals (95 %) are a cluster bootstrap over prompts:
all images of one prompt (every system, every seed) are drawn together, because they share the
prompt's difficulty. The relative improvement ``(rate_a - rate_b) / rate_b`` — the number RECAP
reports (+64.3 % successful generations on COCO prompts) — and the plain difference come from
the same bootstrap rounds, against a baseline chosen by the caller or stored with the campaign.

Agreement is measured on the images several annotators judged: Cohen's κ per annotator pair,
Fleiss' κ and Krippendorff's α (nominal), with the raw share of agreeing annotator pairs beside
them — with mostly-"yes" (or mostly-"no") verdicts κ is low even when annotators almost always
agree (chance agreement is then high), so both numbers are needed to read it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import pandas as pd
from sqlmodel import select

from backend import stats
from backend.arena.common import CLUSTER, ArenaError, CampaignRef, find_campaign
from backend.arena.models import ArenaSystem
from backend.arena.results import _agreement_json, _plain, _records, system_meta
from backend.arena.verdicts import _check, verdict_votes
from backend.arena.votes_io import _write_csv
from backend.db import read_session
from backend.stats.agreement import RETEST_COLUMNS
from backend.stats.success import IMPROVEMENT_COLUMNS
from backend.workspace import Workspace

LEVEL = 0.95
SHAPE = {"value": "rate", "lower": "lower", "upper": "upper", "n": "items"}
RATE_COLUMNS = ["system", "rate", "lower", "upper", "yes", "votes", "items", "prompts"]
MISSING_COLUMNS = ["element", "system", "missing", "judged", "share"]
EXPORT_COLUMNS = [
    *RATE_COLUMNS,
    "relative",
    "relative_lower",
    "relative_upper",
    "caption_condition",
    "captioner",
    "mix",
]


@dataclass
class VerdictResults:
    campaign: str
    question: str
    status: str
    baseline: str | None
    n_votes: int  # first verdicts: what the rates are made of
    n_judgments: int  # all verdicts, repeats included
    n_items: int  # images with at least one verdict
    n_clusters: int  # prompts the bootstrap resamples
    bootstrap_rounds: int
    annotators: int
    rates: pd.DataFrame  # RATE_COLUMNS, every system (rate NaN without verdicts)
    improvements: pd.DataFrame  # IMPROVEMENT_COLUMNS, empty without a baseline
    agreement: stats.Agreement | None
    raw_agreement: float | None  # share of annotator pairs on one image who gave the same verdict
    consistency: pd.DataFrame  # RETEST_COLUMNS
    missing: pd.DataFrame  # MISSING_COLUMNS, most often missing first
    per_category: dict[str, pd.DataFrame]
    systems: dict[str, dict[str, Any]]
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        rates = {r["system"]: r for r in _records(self.rates)}
        improvement = {r["system"]: r for r in _records(self.improvements)}
        systems = {}
        for name, meta in self.systems.items():
            row = {k: v for k, v in rates.get(name, {}).items() if k != "system"}
            rel = improvement.get(name)
            systems[name] = {
                **row,
                # the metric shape of `recap-studio eval --json` ({value, lower, upper, n}; n = images),
                # so the RECAP table can put the human success rate beside the automatic columns
                "success_rate": {k: row.get(src) for k, src in SHAPE.items()} if row else None,
                "relative_improvement": {k: rel[k] for k in ("relative", "lower", "upper")} if rel else None,
                "caption_condition": meta.get("caption_condition"),
                "captioner": meta.get("captioner"),
                "mix": meta.get("mix"),
                "meta": meta,
            }
        agreement = _agreement_json(self.agreement)
        if agreement is not None:
            agreement["raw"] = _plain(self.raw_agreement)
        return {
            "campaign": self.campaign,
            "kind": "verdict",
            "question": self.question,
            "status": self.status,
            "baseline": self.baseline,
            "intervals": {
                "level": LEVEL,
                "method": "percentile bootstrap over prompts (cluster bootstrap)",
                "resampled_units": self.n_clusters,
                "rounds": self.bootstrap_rounds,
            },
            "n_votes": self.n_votes,
            "n_judgments": self.n_judgments,
            "n_items": self.n_items,
            "annotators": self.annotators,
            "systems": systems,
            "rates": _records(self.rates),
            "improvements": _records(self.improvements),
            "agreement": agreement,
            "retest_consistency": _records(self.consistency),
            "missing_elements": _records(self.missing),
            "per_category": {k: _records(v) for k, v in self.per_category.items()},
            "warnings": self.warnings,
        }


def _item_scores(first: pd.DataFrame) -> pd.DataFrame:
    """One row per judged image: its system, prompt cluster, score (share of yes), yes and votes."""
    g = first.groupby("item", sort=True)
    return pd.DataFrame(
        {
            "system": g["system"].first(),
            "cluster": g[CLUSTER].first(),
            "category": g["category"].first(),
            "score": g["success"].mean(),
            "yes": g["success"].sum(),
            "votes": g.size(),
        }
    ).reset_index()


def _rate_table(
    items: pd.DataFrame, systems: list[str], rounds: int, seed: int
) -> tuple[pd.DataFrame, stats.RateBootstrap]:
    boot = stats.RateBootstrap(items, rounds, seed, systems=systems)
    table = boot.table(LEVEL)
    counts = items.groupby("system")[["yes", "votes"]].sum()
    table["yes"] = table["system"].map(counts["yes"]).fillna(0).astype("int64")
    table["votes"] = table["system"].map(counts["votes"]).fillna(0).astype("int64")
    return table[RATE_COLUMNS], boot


def _raw_agreement(first: pd.DataFrame) -> float | None:
    """Share of annotator pairs judging the same image who gave the same verdict."""
    same = pairs = 0
    for verdicts in first.groupby("item")["verdict"].agg(list):
        for a, b in combinations(verdicts, 2):
            pairs += 1
            same += a == b
    return same / pairs if pairs else None


def _missing(first: pd.DataFrame) -> pd.DataFrame:
    """Per element text and system: verdicts on images asking for it, and how often it was ticked missing."""
    rows = []
    for _, v in first.iterrows():
        ticked = set(v["missing"])
        for element in v["elements"]:
            rows.append({"element": element, "system": v["system"], "missing": element in ticked})
    if not rows:
        return pd.DataFrame(columns=MISSING_COLUMNS)
    frame = pd.DataFrame(rows)
    g = frame.groupby(["element", "system"], sort=True)["missing"]
    out = pd.DataFrame({"missing": g.sum().astype("int64"), "judged": g.size().astype("int64")}).reset_index()
    out["share"] = out["missing"] / out["judged"]
    out = out.sort_values(["missing", "share", "element", "system"], ascending=[False, False, True, True])
    return out[MISSING_COLUMNS].reset_index(drop=True)


def verdict_results(
    ws: Workspace,
    name: CampaignRef,
    *,
    baseline: str | None = None,
    bootstrap_rounds: int = 1000,
    seed: int = 0,
) -> VerdictResults:
    """Every statistic of a verdict campaign; ``baseline`` overrides the one stored with the campaign."""
    if bootstrap_rounds < 1:
        raise ArenaError(f"bootstrap rounds must be at least 1, not {bootstrap_rounds}")
    with read_session(ws) as s:
        campaign = find_campaign(s, name)
        _check(campaign)
        system_rows = list(s.exec(select(ArenaSystem).where(ArenaSystem.campaign_id == campaign.id)))
    systems = system_meta(system_rows)
    names = list(systems)
    chosen = baseline if baseline is not None else (campaign.meta or {}).get("baseline")
    if chosen is not None and chosen not in systems:
        raise ArenaError(f"baseline {chosen!r} is not a system of {campaign.name!r}: {', '.join(names)}")
    votes = verdict_votes(ws, campaign.id)  # type: ignore[arg-type]
    first = votes[~votes["is_repeat"].astype(bool)]
    warnings: list[str] = []
    if first.empty:
        items = pd.DataFrame(columns=["item", "system", "cluster", "category", "score", "yes", "votes"])
    else:
        items = _item_scores(first)
    rates, boot = _rate_table(items, names, bootstrap_rounds, seed)
    improvements = pd.DataFrame(columns=IMPROVEMENT_COLUMNS)
    if chosen is not None and len(names) > 1:
        improvements = boot.improvements(chosen, LEVEL)
        undefined = int(improvements["undefined"].max()) if not improvements.empty else 0
        if undefined:
            warnings.append(
                f"in {undefined} of {bootstrap_rounds} bootstrap rounds a rate was undefined (the baseline "
                "judged 0% successful, or a system had no image among the drawn prompts); the relative "
                "interval leaves those rounds out"
            )
    elif len(names) > 1:
        warnings.append("no baseline chosen: relative improvements need one (a system name)")
    labels = (
        first.rename(columns={"verdict": "label"})[["item", "annotator", "label"]]
        if not first.empty
        else None
    )
    multi = labels is not None and labels.groupby("item")["annotator"].nunique().max() > 1
    per_category = {}
    for cat in sorted({str(c) for c in items["category"].dropna() if str(c).strip()}):
        sub = items[items["category"].astype(str) == cat]
        per_category[cat] = _rate_table(sub, sorted(set(sub["system"])), bootstrap_rounds, seed)[0]
    repeats = votes["is_repeat"].astype(bool)
    return VerdictResults(
        campaign=campaign.name,
        question=campaign.criteria[0] if campaign.criteria else "",
        status=campaign.status,
        baseline=chosen,
        n_votes=len(first),
        n_judgments=len(votes),
        n_items=len(items),
        n_clusters=boot.n_clusters,
        bootstrap_rounds=bootstrap_rounds,
        annotators=int(votes["annotator"].nunique()) if not votes.empty else 0,
        rates=rates,
        improvements=improvements,
        agreement=stats.label_agreement(labels) if multi else None,
        raw_agreement=_raw_agreement(first) if multi else None,
        consistency=stats.retest_consistency(
            votes.rename(columns={"verdict": "label"})[["item", "annotator", "label", "is_repeat"]]
        )
        if repeats.any()
        else pd.DataFrame(columns=RETEST_COLUMNS),
        missing=_missing(first) if not first.empty else pd.DataFrame(columns=MISSING_COLUMNS),
        per_category=per_category,
        systems=systems,
        warnings=warnings,
    )


def export_verdict_results_csv(
    ws: Workspace,
    name: CampaignRef,
    path: Path | str,
    *,
    criterion: str | None = None,
    pool_criteria: bool = False,
    **kwargs: Any,
) -> VerdictResults:
    """The success-rate table (with the relative improvement and each system's caption condition) as CSV."""
    if criterion is not None or pool_criteria:
        raise ArenaError("a verdict campaign asks one question: there is no criterion to choose or pool")
    results = verdict_results(ws, name, **kwargs)
    rel = {r["system"]: r for r in _records(results.improvements)}
    rows = []
    for row in _records(results.rates):
        meta = results.systems.get(row["system"], {})
        r = rel.get(row["system"], {})
        rows.append(
            {
                **row,
                "relative": r.get("relative"),
                "relative_lower": r.get("lower"),
                "relative_upper": r.get("upper"),
                "caption_condition": meta.get("caption_condition"),
                "captioner": meta.get("captioner"),
                "mix": meta.get("mix"),
            }
        )
    _write_csv(Path(path), EXPORT_COLUMNS, rows)
    return results


def percent(value: Any) -> str:
    """A rate as "42.0%" (— when undefined), for the CLI and the Results tab."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return "—"
    return "—" if math.isnan(x) else f"{100 * x:.1f}%"
