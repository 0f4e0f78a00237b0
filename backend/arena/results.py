"""Campaign results: the votes as a table, and every statistic of :mod:`backend.stats` over them.

Which votes enter what:

* ratings, win rates, left bias, agreement, votes needed: first judgments of regular pairs
  (planned repeats would count one annotator twice on a pair; gold pairs compare an image with
  a decoy, not two systems);
* swap consistency: regular pairs, repeats with their first judgment;
* gold accuracy: gold pairs. In the vote table the decoy side of a gold pair is named
  ``"<system> [decoy]"`` and ``gold_answer`` is the name of the system that should win, so the
  orientation-free statistics of :mod:`backend.stats` apply unchanged.

Which criterion: the headline ratings are one criterion's, by default the campaign's *primary*
criterion — the first it was created with (the one gold pairs test, too). Criteria measure
different things (prompt following is not image quality), and one pair judged under two
criteria is not two independent votes, so pooling them is done only when asked
(``pool_criteria=True``, the CLI's ``--all-criteria``, "all criteria (pooled)" in the Results
tab). ``per_criterion`` has every criterion alone whenever the campaign has several.

Intervals resample prompts (a cluster bootstrap, :mod:`backend.stats.bradley_terry`): every
annotator, criterion, seed and system pair of one prompt shares that prompt's images, so the
prompt is the independent unit. A caption campaign's "prompt" is the judged image's key; a
vote without a prompt is its own pair's cluster. ``votes_needed`` comes from the same bootstrap.

Every system appears in ``ratings`` even without votes (rating None), with its caption mix,
captioner and caption condition, and ``by_condition`` groups the systems by caption
condition — the comparison the RECAP method is about.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlmodel import select

from backend import stats
from backend.arena.common import CLUSTER, ArenaError, CampaignRef, find_campaign
from backend.arena.models import ArenaSystem, CampaignKind
from backend.arena.votes_io import _write_csv, judgment_rows
from backend.db import read_session
from backend.workspace import Workspace

OUTCOME = {"left": "a", "right": "b", "tie": "tie", "both_bad": "both_bad"}
VOTE_COLUMNS = [
    "model_a",
    "model_b",
    "outcome",
    "annotator",
    "criterion",
    "pair_id",
    "is_repeat",
    "is_gold",
    "gold_answer",
    "category",
    "elapsed_ms",
    "server_ms",
    "prompt",
    "seed",
    "source",
    "flags",
    "created_at",
    "cluster",
]
RATING_COLUMNS = ["system", "rating", "lower", "upper", "rank", "wins", "losses", "ties", "both_bad", "n"]
DECOY = " [decoy]"


def campaign_votes(ws: Workspace, name: CampaignRef) -> pd.DataFrame:
    """One row per judgment: ``model_a`` = system shown left, ``model_b`` = right, ``outcome`` a|b|tie|both_bad."""
    with read_session(ws) as s:
        rows = judgment_rows(s, find_campaign(s, name))
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in VOTE_COLUMNS})
    frame = pd.DataFrame(rows)
    frame["model_a"], frame["model_b"] = frame["left"], frame["right"]
    gold = frame["is_gold"].astype(bool)
    # the decoy of a gold pair gets its own name; gold_answer becomes the system that should win
    right_left = frame["gold_answer"] == "left"
    frame.loc[gold & ~right_left, "model_a"] = frame.loc[gold & ~right_left, "left"] + DECOY
    frame.loc[gold & right_left, "model_b"] = frame.loc[gold & right_left, "right"] + DECOY
    frame["gold_answer"] = np.where(gold, np.where(right_left, frame["model_a"], frame["model_b"]), None)
    frame["outcome"] = frame["winner"].map(OUTCOME)
    prompt = frame["prompt"].fillna("").astype(str)
    frame[CLUSTER] = np.where(
        prompt.str.strip() != "", "prompt: " + prompt, "pair: " + frame["pair_id"].astype(str)
    )
    return frame[VOTE_COLUMNS]


def _records(frame: pd.DataFrame | None) -> list[dict[str, Any]]:
    if frame is None or frame.empty:
        return []
    return [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def _plain(value: Any) -> Any:
    """JSON-safe scalar: numpy numbers to Python, NaN/inf to None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def _ratings(
    votes: pd.DataFrame, systems: list[str], rounds: int, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Rating table over ``systems`` (those without votes get None) and the bootstrap samples."""
    if votes.empty:
        table = pd.DataFrame({"system": systems})
        samples = None
    else:
        samples = stats.bootstrap_samples(votes, rounds, seed, cluster=CLUSTER)
        table = stats.bootstrap_bt(votes, rounds, seed, samples=samples, cluster=CLUSTER)
        table = table.merge(stats.system_counts(votes), on="system", how="left")
        table = pd.concat(
            [table, pd.DataFrame({"system": [s for s in systems if s not in set(table["system"])]})]
        )
    for col in RATING_COLUMNS:
        if col not in table.columns:
            table[col] = np.nan
    counts = ["wins", "losses", "ties", "both_bad", "n"]
    table[counts] = table[counts].fillna(0).astype("int64")
    table["ties"] = table["ties"] + table["both_bad"]  # as in win rates: neither system preferred
    return table[RATING_COLUMNS].reset_index(drop=True), samples


@dataclass
class CampaignResults:
    campaign: str
    kind: str
    criteria: list[str]
    criterion: str | None  # the criterion of the headline ratings; None when criteria are pooled
    n_votes: int  # judgments that entered the ratings
    n_judgments: int  # all judgments, repeats and gold included
    ratings: pd.DataFrame
    win_rates: stats.WinRateMatrix | None
    left_bias: stats.LeftBias | None
    agreement: stats.Agreement | None
    consistency: pd.DataFrame
    gold_accuracy: pd.DataFrame
    votes_needed: pd.DataFrame
    per_criterion: dict[str, pd.DataFrame]
    per_category: dict[str, pd.DataFrame]
    systems: dict[str, dict[str, Any]]  # name -> meta: mix, captioner(s), caption_condition, source
    by_condition: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    pooled: bool = False  # True when the headline ratings pool every criterion (asked for)
    primary_criterion: str | None = None  # the campaign's first criterion: the default headline
    n_clusters: int = 0  # prompts (or pairs without one) behind the rated votes: what the bootstrap resamples
    bootstrap_rounds: int = 0

    def to_json(self) -> dict[str, Any]:
        systems = {}
        for row in _records(self.ratings):
            meta = self.systems.get(row["system"], {})
            systems[row["system"]] = {
                **{k: v for k, v in row.items() if k != "system"},
                "caption_condition": meta.get("caption_condition"),
                "captioner": meta.get("captioner"),
                "mix": meta.get("mix"),
                "meta": meta,
            }
        return {
            "campaign": self.campaign,
            "kind": self.kind,
            "criteria": self.criteria,
            "criterion": self.criterion,
            "pooled": self.pooled,
            "primary_criterion": self.primary_criterion,
            "intervals": {
                "level": 0.95,
                "method": "percentile bootstrap over prompts (cluster bootstrap)",
                "resampled_units": self.n_clusters,
                "rounds": self.bootstrap_rounds,
            },
            "n_votes": self.n_votes,
            "n_judgments": self.n_judgments,
            "systems": systems,
            "ratings": _records(self.ratings),
            "win_rates": _records(self.win_rates.table) if self.win_rates else [],
            "left_bias": {k: _plain(v) for k, v in self.left_bias.to_dict().items()}
            if self.left_bias
            else None,
            "agreement": _agreement_json(self.agreement),
            "swap_consistency": _records(self.consistency),
            "gold_accuracy": _records(self.gold_accuracy),
            "votes_needed": _records(self.votes_needed),
            "per_criterion": {k: _records(v) for k, v in self.per_criterion.items()},
            "per_category": {k: _records(v) for k, v in self.per_category.items()},
            "by_condition": self.by_condition,
            "warnings": self.warnings,
        }


def _agreement_json(agreement: stats.Agreement | None) -> dict[str, Any] | None:
    if agreement is None:
        return None
    return {
        "cohen": _records(agreement.cohen),
        "fleiss": {k: _plain(v) for k, v in agreement.fleiss.to_dict().items()},
        "alpha": {k: _plain(v) for k, v in agreement.alpha.to_dict().items()},
    }


def _captioner(meta: dict[str, Any]) -> str | None:
    """One readable line for the captioner(s) behind a system's training captions."""
    if meta.get("captioner"):
        return str(meta["captioner"])
    captioners = meta.get("captioners")
    if isinstance(captioners, dict):
        refs = sorted(
            {str(r) for refs in captioners.values() for r in (refs if isinstance(refs, list) else [refs])}
        )
        return ", ".join(refs) or None
    if isinstance(captioners, list):
        return ", ".join(str(r) for r in captioners) or None
    return None


def campaign_results(
    ws: Workspace,
    name: CampaignRef,
    *,
    criterion: str | None = None,
    pool_criteria: bool = False,
    bootstrap_rounds: int = 100,
    seed: int = 0,
) -> CampaignResults:
    """Every statistic of a campaign. The headline ratings are of ``criterion``, by default the
    campaign's primary (first) criterion; ``pool_criteria=True`` pools every criterion instead
    (one vote per judgment; the prompt-level bootstrap keeps the intervals honest about it)."""
    if bootstrap_rounds < 1:
        raise ArenaError(f"bootstrap rounds must be at least 1, not {bootstrap_rounds}")
    with read_session(ws) as s:
        campaign = find_campaign(s, name)
        system_rows = list(s.exec(select(ArenaSystem).where(ArenaSystem.campaign_id == campaign.id)))
    if campaign.kind == CampaignKind.verdict.value:
        raise ArenaError(
            f"campaign {campaign.name!r} collects verdicts, not pairwise votes: its results are "
            "success rates (backend.arena.verdict_stats.verdict_results)"
        )
    if pool_criteria and criterion is not None:
        raise ArenaError("choose one criterion or pool all criteria, not both")
    if criterion is not None and criterion not in campaign.criteria:
        raise ArenaError(
            f"criterion {criterion!r} is not one of campaign {campaign.name!r}'s: {', '.join(campaign.criteria)}"
        )
    primary = campaign.criteria[0] if campaign.criteria else None
    if criterion is None and not pool_criteria:
        criterion = primary
    systems = system_meta(system_rows)
    names = list(systems)
    votes = all_votes = campaign_votes(ws, campaign.id)  # type: ignore[arg-type]
    n_judgments = len(votes)
    if criterion is not None:
        votes = votes[votes["criterion"] == criterion]
    gold = votes["is_gold"].astype(bool)
    repeat = votes["is_repeat"].astype(bool)
    rated = votes[~gold & ~repeat].reset_index(drop=True)
    caught: list[str] = []
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", stats.DisconnectedComparisonWarning)
        ratings, samples = _ratings(rated, names, bootstrap_rounds, seed)
        per_criterion = {}
        if len(campaign.criteria) > 1:
            every = all_votes[~all_votes["is_gold"].astype(bool) & ~all_votes["is_repeat"].astype(bool)]
            for c in campaign.criteria:
                per_criterion[c] = _ratings(every[every["criterion"] == c], names, bootstrap_rounds, seed)[0]
        per_category = {}
        for cat in sorted({c for c in rated["category"].dropna().unique() if str(c).strip()}):
            sub = rated[rated["category"] == cat]
            per_category[str(cat)] = _ratings(
                sub, sorted(set(sub["model_a"]) | set(sub["model_b"])), bootstrap_rounds, seed
            )[0]
        caught += [
            str(w.message) for w in seen if issubclass(w.category, stats.DisconnectedComparisonWarning)
        ]
    has = not rated.empty
    needed = (
        stats.votes_to_separate(rated, samples=samples, cluster=CLUSTER)
        if has and samples is not None
        else pd.DataFrame()
    )
    regular = votes[~gold]
    results = CampaignResults(
        campaign=campaign.name,
        kind=campaign.kind,
        criteria=list(campaign.criteria),
        criterion=criterion,
        n_votes=len(rated),
        n_judgments=n_judgments,
        ratings=ratings,
        win_rates=stats.win_rate_matrix(rated) if has else None,
        left_bias=stats.left_bias(rated) if has else None,
        agreement=stats.agreement(rated) if has else None,
        consistency=stats.swap_consistency(regular) if repeat.any() else pd.DataFrame(),
        gold_accuracy=stats.gold_accuracy(votes[gold]) if gold.any() else pd.DataFrame(),
        votes_needed=needed,
        per_criterion=per_criterion,
        per_category=per_category,
        systems=systems,
        by_condition=_by_condition(ratings, systems),
        warnings=sorted(set(caught)),
        pooled=criterion is None,
        primary_criterion=primary,
        n_clusters=int(rated[CLUSTER].nunique()) if has else 0,
        bootstrap_rounds=bootstrap_rounds,
    )
    return results


def system_meta(system_rows: list[ArenaSystem]) -> dict[str, dict[str, Any]]:
    """name -> meta with its captioner line, caption condition, mix and artifact, sorted by name."""
    systems = {}
    for row in sorted(system_rows, key=lambda r: r.name):
        meta = dict(row.meta or {})
        meta["captioner"] = _captioner(meta)
        meta.setdefault("caption_condition", None)
        meta.setdefault("mix", None)
        meta["artifact_id"] = row.artifact_id
        systems[row.name] = meta
    return systems


def _by_condition(ratings: pd.DataFrame, systems: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Systems grouped by caption condition, best group (by its best rating) first."""
    rating = {r["system"]: r for r in _records(ratings)}
    groups: dict[str, list[str]] = {}
    for sys_name, meta in systems.items():
        groups.setdefault(str(meta.get("caption_condition") or "unknown"), []).append(sys_name)
    out = []
    for condition, members in groups.items():
        rated = [rating[m]["rating"] for m in members if rating.get(m, {}).get("rating") is not None]
        out.append(
            {
                "caption_condition": condition,
                "systems": sorted(members, key=lambda m: -(rating.get(m, {}).get("rating") or -math.inf)),
                "best_rating": max(rated) if rated else None,
                "mean_rating": sum(rated) / len(rated) if rated else None,
                "votes": int(sum(rating.get(m, {}).get("n") or 0 for m in members)),
            }
        )
    return sorted(out, key=lambda g: -(g["best_rating"] if g["best_rating"] is not None else -math.inf))


def export_results_csv(ws: Workspace, name: CampaignRef, path: Path | str, **kwargs: Any) -> CampaignResults:
    """The rating table with each system's caption condition, captioner and mix, as CSV
    (a verdict campaign: its success-rate table, :func:`backend.arena.verdict_stats.export_verdict_results_csv`)."""
    with read_session(ws) as s:
        verdicts = find_campaign(s, name).kind == CampaignKind.verdict.value
    if verdicts:
        from backend.arena.verdict_stats import export_verdict_results_csv

        return export_verdict_results_csv(ws, name, path, **kwargs)  # type: ignore[return-value]
    results = campaign_results(ws, name, **kwargs)
    rows = []
    for row in _records(results.ratings):
        meta = results.systems.get(row["system"], {})
        rows.append(
            {
                **row,
                "caption_condition": meta.get("caption_condition"),
                "captioner": meta.get("captioner"),
                "mix": meta.get("mix"),
            }
        )
    _write_csv(Path(path), [*RATING_COLUMNS, "caption_condition", "captioner", "mix"], rows)
    return results
