"""Telling an annotator which systems they judged, once doing so cannot unblind a later pair.

Why not after each vote (as before): a campaign shows the same image many times to one
annotator, in its other pairs of the prompt, under every criterion, as a swapped repeat and
inside gold pairs, and an image is recognisable by eye however it is re-encoded. A system named
after one vote therefore named it in later pairs *before* their vote (13 of 16 pairs in a
3-system, 2-prompt, 2-criterion campaign with repeat share 0.5). Revealing only after the
annotator's last pair of a prompt would still teach them each system's look (its colours, its
style), which carries over to the prompts they have not judged yet. So the rule is simple and
strict:

* an annotator sees the systems of their votes only when no further pair can come to them in
  that campaign: the scheduler has nothing left for them (``finished``), they ended their
  judging (``ended``), or the campaign is closed (``closed``: it takes no votes at all);
* the reveal is recorded (:class:`~backend.arena.models.ArenaReveal`), and from then on the
  scheduler gives them no pair and refuses their votes in that campaign, even if new work
  appears later (e.g. imported pairs).

The decision and the record are made under the arena's write lock, so no ticket can be issued
between "nothing is left for you" and the reveal.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlmodel import Session

from backend.arena.common import CampaignRef, find_campaign
from backend.arena.models import ArenaReveal, Campaign, CampaignStatus
from backend.arena.scheduling import _choose, _open_ticket, _writers, revealed_to
from backend.db import write_session
from backend.workspace import Workspace


@dataclass(frozen=True)
class RevealedVote:
    prompt: str
    criterion: str
    choice: str  # left | right | tie | both_bad; verdict campaigns: yes | no
    left_system: str
    right_system: str  # verdict campaigns: the same system (one image was shown)
    is_repeat: bool
    is_gold: bool
    missing: tuple[str, ...] = ()  # verdict campaigns: the elements ticked as missing

    @property
    def preferred(self) -> str | None:
        return {"left": self.left_system, "right": self.right_system}.get(self.choice)


@dataclass(frozen=True)
class Reveal:
    """The systems behind every vote an annotator gave in a campaign, in the order given."""

    campaign: str
    reason: str  # finished | ended | closed
    votes: list[RevealedVote] = field(default_factory=list)
    kind: str = "t2i"  # the campaign's kind: verdict reveals count faithful answers, not preferences

    def verdict_counts(self) -> dict[str, tuple[int, int]]:
        """Verdict campaigns: system -> (times judged faithful, times shown)."""
        counts: dict[str, list[int]] = {}
        for v in self.votes:
            c = counts.setdefault(v.left_system, [0, 0])
            c[1] += 1
            c[0] += v.choice == "yes"
        return {name: (c[0], c[1]) for name, c in sorted(counts.items())}

    def preferred_counts(self) -> dict[str, tuple[int, int]]:
        """system -> (times preferred, times shown), gold pairs left out (their answer is known)."""
        counts: dict[str, list[int]] = {}
        for v in self.votes:
            if v.is_gold:
                continue
            for name in (v.left_system, v.right_system):
                counts.setdefault(name, [0, 0])[1] += 1
            if v.preferred is not None:
                counts[v.preferred][0] += 1
        return {name: (c[0], c[1]) for name, c in sorted(counts.items())}


_VOTES_SQL = text(
    "SELECT p.prompt, j.criterion, j.choice, ls.name, rs.name, j.is_repeat, p.is_gold, j.flags "
    "FROM judgment j JOIN evalpair p ON p.id = j.pair_id "
    "JOIN evalimage l ON l.id = j.left_image_id JOIN arenasystem ls ON ls.id = l.system_id "
    "JOIN evalimage r ON r.id = CASE WHEN j.left_image_id = p.a_id THEN p.b_id ELSE p.a_id END "
    "JOIN arenasystem rs ON rs.id = r.system_id "
    "WHERE j.campaign_id = :c AND j.annotator_id = :a ORDER BY j.id"
)


def _votes(session: Session, campaign_id: int, annotator_id: int) -> list[RevealedVote]:
    rows = session.exec(_VOTES_SQL.bindparams(c=campaign_id, a=annotator_id)).all()
    return [RevealedVote(r[0], r[1], r[2], r[3], r[4], bool(r[5]), bool(r[6]), _missing(r[7])) for r in rows]


def _missing(flags: Any) -> tuple[str, ...]:
    if isinstance(flags, str):
        flags = json.loads(flags)
    ticked = flags.get("missing") if isinstance(flags, dict) else None
    return tuple(str(m) for m in ticked) if isinstance(ticked, list) else ()


def _reason(
    session: Session, ws: Workspace, campaign: Campaign, annotator_id: int, finish: bool
) -> str | None:
    """Why the systems may be told now, or None while a pair may still come to this annotator."""
    if campaign.status != CampaignStatus.open.value:
        return "closed"
    held = _open_ticket(session, campaign.id, annotator_id)  # type: ignore[arg-type]
    if finish:
        if held is not None:  # given back: its pair is never shown to them again
            held.skipped = True
            session.add(held)
        return "ended"
    if held is not None:
        return None
    if campaign.source != "import" and _choose(session, ws.db_url, campaign, annotator_id, random.Random()):
        return None
    return "finished"


def reveal_votes(
    ws: Workspace, campaign: CampaignRef, annotator_id: int, *, finish: bool = False
) -> Reveal | None:
    """The systems behind this annotator's votes, or None while a pair may still come to them.

    ``finish=True`` ends their judging in the campaign first (their open pair is given back).
    Either way, once this returns a :class:`Reveal` the annotator gets no further pair and no
    further vote of theirs is taken in this campaign (asking again returns the same reveal).
    """
    with _writers, write_session(ws) as s:
        row = find_campaign(s, campaign)
        if not revealed_to(s, row.id, annotator_id):  # type: ignore[arg-type]
            reason = _reason(s, ws, row, annotator_id, finish)
            if reason is None:
                return None
            s.add(ArenaReveal(campaign_id=row.id, annotator_id=annotator_id, reason=reason))  # type: ignore[arg-type]
            s.flush()
        record = s.exec(
            text("SELECT reason FROM arenareveal WHERE campaign_id = :c AND annotator_id = :a").bindparams(
                c=row.id, a=annotator_id
            )
        ).one()
        return Reveal(row.name, record[0], _votes(s, row.id, annotator_id), row.kind)  # type: ignore[arg-type]
