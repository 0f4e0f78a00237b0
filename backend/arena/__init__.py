"""The Arena: blind pairwise judging of T2I systems or caption sources (see contracts/ARENA.md),
and blind absolute verdicts on single images (:mod:`.verdicts`).

Public API (the CLI, the Arena tab and the load benchmark use exactly this; all take the
workspace first and a campaign by name or id)::

    create_campaign_from_generated / create_campaign_from_folders / create_caption_campaign
    list_campaigns, get_campaign, close_campaign
    next_ticket, submit_vote, skip_ticket, reveal_votes
    import_votes_csv, export_votes_csv, export_results_csv
    campaign_votes, campaign_results
    create_verdict_campaign, verdict_votes, verdict_results, export_verdicts_csv

Modules: :mod:`.models` (tables, migrations 0005-0006), :mod:`.campaigns` (creation), :mod:`.scheduling`
(tickets and votes), :mod:`.reveals` (when an annotator may learn the systems they judged),
:mod:`.canvas` (one display size per campaign), :mod:`.votes_io` (CSV), :mod:`.results`
(statistics via :mod:`backend.stats`), :mod:`.verdicts` / :mod:`.verdict_stats` (verdict
campaigns: one image and its prompt, faithful or not; the same tickets, reveals and closing),
:mod:`.elements` (the prompt's required elements, offered as "missing" ticks).

Blind for the whole campaign: nothing handed to an annotator before their last vote in a
campaign names a system (tickets carry a token, a prompt and pixels; receipts name nothing), the
systems of their votes are told only when no further pair can come to them (:mod:`.reveals`), and
a closed campaign takes no votes (closing unblinds its datasets, so it is final).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlmodel import select

from backend.arena.campaigns import (
    create_campaign_from_folders,
    create_campaign_from_generated,
    create_caption_campaign,
)
from backend.arena.common import (
    ArenaError,
    CampaignClosedForGood,
    CampaignNotFound,
    CampaignRef,
    RowErrors,
    TicketError,
    find_campaign,
)
from backend.arena.models import (
    ArenaReveal,
    ArenaSystem,
    ArenaTicket,
    Campaign,
    CampaignStatus,
    EvalImage,
    EvalPair,
    Judgment,
)
from backend.arena.reveals import Reveal, RevealedVote, reveal_votes
from backend.arena.scheduling import Ticket, VoteReceipt, next_ticket, skip_ticket, submit_vote
from backend.arena.verdicts import (
    DEFAULT_QUESTION,
    create_verdict_campaign,
    export_verdicts_csv,
    verdict_votes,
)
from backend.arena.votes_io import ImportReport, export_votes_csv, import_votes_csv
from backend.db import read_session, write_session
from backend.workspace import Workspace

if TYPE_CHECKING:
    from backend.arena.results import CampaignResults, campaign_results, campaign_votes, export_results_csv
    from backend.arena.verdict_stats import VerdictResults, verdict_results

_LAZY = {"CampaignResults", "campaign_results", "campaign_votes", "export_results_csv"}
_LAZY_VERDICTS = {"VerdictResults", "verdict_results"}


def __getattr__(name: str) -> Any:
    """Results pull in scipy/sklearn (seconds to import): loaded on first use, not for every command."""
    if name in _LAZY:
        from backend.arena import results

        return getattr(results, name)
    if name in _LAZY_VERDICTS:
        from backend.arena import verdict_stats

        return getattr(verdict_stats, name)
    raise AttributeError(f"module 'backend.arena' has no attribute {name!r}")


__all__ = [
    "DEFAULT_QUESTION",
    "ArenaError",
    "blinded_datasets",
    "ArenaReveal",
    "ArenaSystem",
    "ArenaTicket",
    "Campaign",
    "CampaignClosedForGood",
    "CampaignNotFound",
    "CampaignResults",
    "CampaignSummary",
    "EvalImage",
    "EvalPair",
    "ImportReport",
    "Judgment",
    "Reveal",
    "RevealedVote",
    "RowErrors",
    "Ticket",
    "TicketError",
    "VerdictResults",
    "VoteReceipt",
    "campaign_results",
    "campaign_votes",
    "close_campaign",
    "create_caption_campaign",
    "create_campaign_from_folders",
    "create_campaign_from_generated",
    "create_verdict_campaign",
    "export_results_csv",
    "export_verdicts_csv",
    "export_votes_csv",
    "get_campaign",
    "import_votes_csv",
    "list_campaigns",
    "next_ticket",
    "reveal_votes",
    "skip_ticket",
    "submit_vote",
    "verdict_results",
    "verdict_votes",
]


@dataclass(frozen=True)
class CampaignSummary:
    id: int
    name: str
    kind: str
    status: str
    source: str
    criteria: list[str]
    target_per_pair: int
    systems: int
    pairs: int  # regular pairs (gold pairs not counted); verdict campaigns: images to judge
    gold_pairs: int
    judgments: int
    annotators: int
    done: int  # votes towards the target (capped per pair and criterion)
    total: int  # votes wanted: pairs x criteria x target per pair (verdicts: images x target)
    created_at: datetime


def get_campaign(ws: Workspace, ref: CampaignRef) -> Campaign:
    with read_session(ws) as s:
        return find_campaign(s, ref)


def list_campaigns(ws: Workspace) -> list[CampaignSummary]:
    """Every campaign with its progress, newest first."""
    out = []
    with read_session(ws) as s:
        for c in s.exec(select(Campaign).order_by(Campaign.id.desc())):  # type: ignore[union-attr]
            q = {"c": c.id, "t": c.target_per_pair}
            systems, pairs, gold = s.exec(
                text(
                    "SELECT (SELECT count(*) FROM arenasystem WHERE campaign_id = :c), "
                    "(SELECT count(*) FROM evalpair WHERE campaign_id = :c AND is_gold = FALSE), "
                    "(SELECT count(*) FROM evalpair WHERE campaign_id = :c AND is_gold = TRUE)"
                ).bindparams(c=c.id)
            ).one()
            judgments, annotators = s.exec(
                text(
                    "SELECT count(*), count(DISTINCT annotator_id) FROM judgment WHERE campaign_id = :c"
                ).bindparams(c=c.id)
            ).one()
            done = s.exec(
                text(
                    "SELECT coalesce(sum(CASE WHEN n < :t THEN n ELSE :t END), 0) FROM (SELECT count(*) AS n FROM judgment j "
                    "JOIN evalpair p ON p.id = j.pair_id WHERE j.campaign_id = :c AND j.is_repeat = FALSE "
                    "AND p.is_gold = FALSE GROUP BY j.pair_id, j.criterion) AS per_slot"
                ).bindparams(**q)
            ).one()[0]
            out.append(
                CampaignSummary(
                    c.id,  # type: ignore[arg-type]
                    c.name,
                    c.kind,
                    c.status,
                    c.source,
                    list(c.criteria),
                    c.target_per_pair,
                    systems,
                    pairs,
                    gold,
                    judgments,
                    annotators,
                    int(done),
                    pairs * len(c.criteria) * c.target_per_pair,
                    c.created_at,
                )  # fmt: skip
            )
    return out


def blinded_datasets(ws: Workspace) -> set[str]:
    """Datasets whose images an open campaign is judging: annotators must not browse them.

    Why: elsewhere in the studio such a dataset shows which system made an image (a generated
    image's key starts with its checkpoint) or which caption is which kind (Review labels every
    variant), which would unblind the judging. Admins still see everything.
    """
    with read_session(ws) as s:
        rows = s.exec(
            text(
                "SELECT DISTINCT d.name FROM campaign c JOIN evalimage e ON e.campaign_id = c.id "
                "JOIN image i ON i.id = e.image_id JOIN dataset d ON d.id = i.dataset_id "
                "WHERE c.status = :open"
            ).bindparams(open=CampaignStatus.open.value)
        ).all()
    return {r[0] for r in rows}


def close_campaign(ws: Workspace, ref: CampaignRef, *, reopen: bool = False) -> Campaign:
    """Close a campaign for good: no more pairs, and no more votes, on pairs already shown included.

    Why final: closing unblinds the campaign (its datasets become browsable, its results and the
    annotators' reveals are shown), so a vote cast after it, or after a reopening, would not be
    blind. ``reopen=True`` is refused with that explanation; judge more in a new campaign (the
    annotators who looked at these images meanwhile are no longer blind to them).
    """
    with write_session(ws) as s:  # BEGIN IMMEDIATE: a vote is written before or refused after
        campaign = find_campaign(s, ref)
        if reopen:
            if campaign.status == CampaignStatus.open.value:
                return campaign
            raise CampaignClosedForGood(
                f"campaign {campaign.name!r} was closed and cannot be reopened: closing unblinded it "
                "(its datasets, results and reveals were shown), so votes cast now would not be blind; "
                "create a new campaign to collect more judgments"
            )
        campaign.status = CampaignStatus.closed.value
        s.add(campaign)
        s.flush()
        return campaign
