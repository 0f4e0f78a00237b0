"""Tickets and votes: which pair an annotator judges next, and recording the verdict.

The scheduler runs inside one ``BEGIN IMMEDIATE`` transaction per call, so 20 annotators
asking at once are served one after another on a consistent view; the load it balances
counts votes *and* open tickets, so concurrent annotators spread over different pairs instead
of piling onto the same least-voted one. Order of preference for an annotator:

1. the open ticket they already hold (a reload returns it: same pair, same sides);
2. a planned swapped-order repeat, when their repeats fall below ``repeat_share`` of their
   regular votes: one of their earlier pairs (not among their last three) with the sides
   swapped, so ``swap_consistency`` can tell a preference from a side habit;
3. a gold pair, when their gold votes fall below ``gold_share`` of their votes and a regular
   pair is still left for them (gold checks attention during judging, it is not work of its own);
4. the regular (pair, criterion) with the fewest votes + open tickets, then the least
   judged *system pair*, then at random; never one they judged, hold or skipped, and only
   while it has fewer than ``target_per_pair`` votes.

Sides are drawn from the OS's random source per ticket and stored on the ticket and the
judgment. The :class:`Ticket` handed out carries an opaque token and what to show — no
system name, no item or pair id — and the campaign's one display size (:mod:`.canvas`).

Verdict campaigns (kind ``verdict``) go through the same code: each of their "pairs" is one item
shown alone (``a_id == b_id``), so "least-judged system pair" balances over systems, a planned
repeat shows the same image again, and the vote is ``yes``/``no`` with the required elements
the annotator ticked as missing (``flags={"missing": [...]}``).

Blindness for the whole campaign: a vote's receipt names no system. Which systems an annotator
judged is told only by :func:`backend.arena.reveals.reveal_votes`, once nothing can follow (their
work is done, they ended it, or the campaign is closed); from then on this module hands them no
pair and takes no vote of theirs in that campaign. A closed campaign takes no votes at all, from
tickets issued before it closed included: closing unblinds its datasets.
"""

from __future__ import annotations

import json
import math
import random
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, text
from sqlmodel import Session, select

from backend.arena.canvas import campaign_canvas
from backend.arena.common import ArenaError, CampaignRef, TicketError, find_campaign
from backend.arena.models import (
    ArenaReveal,
    ArenaTicket,
    Campaign,
    CampaignKind,
    CampaignStatus,
    Choice,
    Judgment,
    Verdict,
)
from backend.db import read_session, write_session
from backend.models import utcnow
from backend.storage import image_path
from backend.workspace import Workspace

# an open ticket older than this no longer reserves its pair for balancing (the annotator
# walked away); it is still theirs and is returned when they come back
TICKET_RESERVE = timedelta(minutes=10)
RECENT_NOT_REPEATED = 3  # a repeat never re-asks one of the annotator's last few pairs
MAX_ELAPSED_MS = 24 * 3600 * 1000
_sides = random.SystemRandom()
# Within one process (the studio server), arena writers queue on this lock before SQLite's: the
# busy timeout polls with growing sleeps and lets newcomers overtake, which starved a few of 20
# concurrent annotators for seconds; a queue on a lock is served far more evenly. Other processes
# (CLI, jobs) are still serialised by BEGIN IMMEDIATE.
_writers = threading.Lock()


@dataclass(frozen=True)
class Ticket:
    """What the judging page shows. Deliberately nothing that identifies a system or an item."""

    token: str
    campaign: str
    kind: str  # "t2i" | "caption" | "verdict"
    criterion: str
    prompt: str
    left_image: Path | None
    right_image: Path | None
    left_text: str | None  # caption arena only
    right_text: str | None
    done: int  # votes the campaign has towards its target (all annotators)
    total: int  # votes the campaign needs: regular pairs x criteria x target per pair
    mine: int = 0  # votes this annotator gave in this campaign
    # (width, height) every image of a t2i campaign is shown at (None: caption campaigns)
    canvas: tuple[int, int] | None = None
    # verdict campaigns: the prompt's required elements the annotator may tick as missing
    elements: tuple[str, ...] = ()


@dataclass(frozen=True)
class VoteReceipt:
    """The answer to a vote. It names no system: the images of this pair recur in the
    annotator's later pairs (other criteria, swapped repeats, gold pairs), so naming them here
    would unblind those (see :mod:`.reveals` for when systems are told)."""

    next_available: bool
    duplicate: bool = False  # True when this token had been voted already (double submit)


def _check_annotator(session: Session, annotator_id: int) -> None:
    row = session.exec(text('SELECT active FROM "user" WHERE id = :u').bindparams(u=annotator_id)).first()
    if row is None or not row[0]:
        raise ArenaError(f"annotator #{annotator_id} does not exist or is not active")


def _progress(session: Session, campaign: Campaign, annotator_id: int | None) -> tuple[int, int, int]:
    """(votes towards the target, votes wanted, this annotator's votes) in one query."""
    regular, done, mine = session.exec(
        text(
            "SELECT (SELECT count(*) FROM evalpair WHERE campaign_id = :c AND is_gold = FALSE), "
            # votes beyond a slot's target (a slot doubled up while every slot was reserved) do
            # not count towards the others: sum of min(votes, target) per (pair, criterion)
            "(SELECT coalesce(sum(CASE WHEN n < :t THEN n ELSE :t END), 0) FROM (SELECT count(*) AS n FROM judgment j "
            " JOIN evalpair p ON p.id = j.pair_id WHERE j.campaign_id = :c AND j.is_repeat = FALSE "
            " AND p.is_gold = FALSE GROUP BY j.pair_id, j.criterion) AS per_slot), "
            "(SELECT count(*) FROM judgment WHERE campaign_id = :c AND annotator_id = :a)"
        ).bindparams(
            c=campaign.id, a=annotator_id if annotator_id is not None else -1, t=campaign.target_per_pair
        )
    ).one()
    total = regular * len(campaign.criteria) * campaign.target_per_pair
    return min(int(done), total), total, int(mine)


_VIEW_SQL = text(
    "SELECT p.prompt, pi.sha256, pi.ext, li.sha256, li.ext, ri.sha256, ri.ext, lc.text, rc.text, l.elements "
    "FROM arenaticket t JOIN evalpair p ON p.id = t.pair_id "
    "JOIN evalimage l ON l.id = t.left_id JOIN evalimage r ON r.id = t.right_id "
    "LEFT JOIN image pi ON pi.id = p.image_id "
    "LEFT JOIN image li ON li.id = l.image_id LEFT JOIN image ri ON ri.id = r.image_id "
    "LEFT JOIN caption lc ON lc.id = l.caption_id LEFT JOIN caption rc ON rc.id = r.caption_id "
    "WHERE t.id = :t"
)


def _view(ws: Workspace, session: Session, campaign: Campaign, ticket: ArenaTicket) -> Ticket:
    prompt, p_sha, p_ext, l_sha, l_ext, r_sha, r_ext, l_text, r_text, elements = session.exec(
        _VIEW_SQL.bindparams(t=ticket.id)
    ).one()

    def path(sha: str | None, ext: str | None) -> Path | None:
        return image_path(ws, sha, ext) if sha and ext else None

    done, total, mine = _progress(session, campaign, ticket.annotator_id)
    if campaign.kind == CampaignKind.caption.value:
        shown = path(p_sha, p_ext)
        return Ticket(
            ticket.token, campaign.name, campaign.kind, ticket.criterion, "", shown, shown,
            l_text, r_text, done, total, mine,
        )  # fmt: skip
    canvas = campaign_canvas(session, ws.db_url, campaign.id, str(campaign.created_at))  # type: ignore[arg-type]
    if campaign.kind == CampaignKind.verdict.value:  # one image, shown alone
        return Ticket(
            ticket.token, campaign.name, campaign.kind, ticket.criterion, prompt,
            path(l_sha, l_ext), None, None, None, done, total, mine, canvas, tuple(_json_list(elements)),
        )  # fmt: skip
    return Ticket(
        ticket.token, campaign.name, campaign.kind, ticket.criterion, prompt,
        path(l_sha, l_ext), path(r_sha, r_ext), None, None, done, total, mine, canvas,
    )  # fmt: skip


def _json_list(value: Any) -> list[str]:
    """A JSON list column read through plain SQL (SQLite hands back its text)."""
    if isinstance(value, str):
        value = json.loads(value)
    return [str(v) for v in value] if isinstance(value, list) else []


@dataclass
class _PairRow:
    id: int
    a_id: int
    b_id: int
    system_pair: tuple[int, int]
    is_gold: bool


@dataclass(frozen=True)
class _Choice:
    """What :func:`_choose` picked; ``seen_load`` (votes + open tickets of a regular slot when it
    was chosen) lets the write phase check that nobody took the slot in between."""

    pair: _PairRow
    criterion: str
    is_repeat: bool
    left_id: int | None  # the side a planned repeat must show on the left (swapped); else drawn
    seen_load: int | None = None


@dataclass(frozen=True)
class _PairTable:
    """A campaign's pairs as rows and as arrays: the choice of the next pair is vectorised, because
    a Python loop over thousands of pairs per request would hold the GIL (and stall every vote
    in the server) for milliseconds."""

    rows: list[_PairRow]
    ids: np.ndarray  # pair ids, ascending
    system_pair: np.ndarray  # a code per unordered system pair
    gold: np.ndarray  # bool

    @classmethod
    def of(cls, rows: list[_PairRow]) -> _PairTable:
        rows = sorted(rows, key=lambda r: r.id)
        codes: dict[tuple[int, int], int] = {}
        system_pair = np.array([codes.setdefault(r.system_pair, len(codes)) for r in rows], dtype=np.int64)
        return cls(
            rows,
            np.array([r.id for r in rows], dtype=np.int64),
            system_pair,
            np.array([r.is_gold for r in rows], dtype=bool),
        )

    def positions(self, pair_ids: list[int]) -> np.ndarray:
        return np.searchsorted(self.ids, np.asarray(pair_ids, dtype=np.int64))


# pairs never change once written (imports only add), so each process keeps them per campaign
# and re-reads only when the count or the newest id differs
_pair_cache: dict[tuple[str, int], tuple[tuple[int, int], _PairTable]] = {}
_pair_lock = threading.Lock()


def _pairs(session: Session, db_url: str, campaign_id: int) -> _PairTable:
    stamp = tuple(
        session.exec(
            text("SELECT count(*), coalesce(max(id), 0) FROM evalpair WHERE campaign_id = :c").bindparams(
                c=campaign_id
            )
        ).one()
    )
    with _pair_lock:
        cached = _pair_cache.get((db_url, campaign_id))
    if cached is not None and cached[0] == stamp:
        return cached[1]
    rows = session.exec(
        text(
            "SELECT id, a_id, b_id, a_system_id, b_system_id, is_gold FROM evalpair WHERE campaign_id = :c"
        ).bindparams(c=campaign_id)
    ).all()
    table = _PairTable.of(
        [_PairRow(r[0], r[1], r[2], (min(r[3], r[4]), max(r[3], r[4])), bool(r[5])) for r in rows]
    )
    with _pair_lock:
        _pair_cache[(db_url, campaign_id)] = (stamp, table)  # type: ignore[assignment]
    return table


def _choose(
    session: Session, db_url: str, campaign: Campaign, annotator_id: int, rng: random.Random
) -> _Choice | None:
    """The annotator's next (pair, criterion), with the load the choice was based on."""
    cid = campaign.id
    table = _pairs(session, db_url, cid)  # type: ignore[arg-type]
    pairs = table.rows
    by_id = {p.id: p for p in pairs}
    mine = session.exec(
        text(
            "SELECT pair_id, criterion, is_repeat, left_image_id, id FROM judgment "
            "WHERE campaign_id = :c AND annotator_id = :a ORDER BY id"
        ).bindparams(c=cid, a=annotator_id)
    ).all()
    held = session.exec(
        text(
            "SELECT pair_id, criterion, is_repeat FROM arenaticket WHERE campaign_id = :c AND annotator_id = :a"
        ).bindparams(c=cid, a=annotator_id)
    ).all()  # used, skipped or open: never offered again (repeats aside)
    touched = {(r[0], r[1]) for r in mine} | {(r[0], r[1]) for r in held}
    regular_mine = [r for r in mine if not r[2] and not by_id[r[0]].is_gold]
    repeats_mine = {(r[0], r[1]) for r in mine if r[2]} | {(r[0], r[1]) for r in held if r[2]}
    gold_mine = sum(1 for key in touched if by_id[key[0]].is_gold)

    # 2. planned swapped-order repeat
    if campaign.repeat_share > 0 and len(repeats_mine) < math.floor(
        campaign.repeat_share * len(regular_mine)
    ):
        older = regular_mine[:-RECENT_NOT_REPEATED] if len(regular_mine) > RECENT_NOT_REPEATED else []
        eligible = [r for r in older if (r[0], r[1]) not in repeats_mine]
        if eligible:
            pair_id, criterion, _, left_before, _ = rng.choice(eligible)
            pair = by_id[pair_id]
            return _Choice(pair, criterion, True, pair.b_id if left_before == pair.a_id else pair.a_id)

    # 4. the least-voted regular (pair, criterion), then the least-voted system pair (its
    # counts are read first: step 3 asks whether any regular slot is left)
    criteria = list(campaign.criteria)
    k = {c: i for i, c in enumerate(criteria)}
    n = len(pairs)
    votes = np.zeros((len(criteria), n), dtype=np.int64)
    rows = session.exec(
        text(
            "SELECT pair_id, criterion, count(*) FROM judgment WHERE campaign_id = :c AND is_repeat = FALSE "
            "GROUP BY pair_id, criterion"
        ).bindparams(c=cid)
    ).all()
    _add_counts(votes, table, k, rows)
    load = votes.copy()
    cutoff = utcnow() - TICKET_RESERVE
    rows = session.exec(
        select(ArenaTicket.pair_id, ArenaTicket.criterion, func.count())
        .where(
            ArenaTicket.campaign_id == cid,
            ArenaTicket.used == False,  # noqa: E712
            ArenaTicket.skipped == False,  # noqa: E712
            ArenaTicket.is_repeat == False,  # noqa: E712
            ArenaTicket.issued_at > cutoff,
        )
        .group_by(ArenaTicket.pair_id, ArenaTicket.criterion)
    ).all()
    _add_counts(load, table, k, rows)
    touched_mask = np.zeros((len(criteria), n), dtype=bool)
    mine_keys = [(pid, c) for pid, c in touched if c in k]
    if mine_keys:
        touched_mask[[k[c] for _, c in mine_keys], table.positions([pid for pid, _ in mine_keys])] = True
    regular = ~table.gold
    system_load = np.zeros((len(criteria), 0))
    if n:
        n_codes = int(table.system_pair.max()) + 1
        system_load = np.stack(
            [
                np.bincount(table.system_pair[regular], weights=load[i, regular], minlength=n_codes)
                for i in range(len(criteria))
            ]
        )
    load_of_system_pair = system_load[:, table.system_pair] if n else np.zeros((len(criteria), 0))
    target = campaign.target_per_pair
    eligible = regular[None, :] & (votes < target) & ~touched_mask

    # 3. gold pair, asked under the first criterion; only while regular work is left for this
    # annotator (gold checks attention during real judging, it is not work of its own)
    gold = [p for p in pairs if p.is_gold]
    gold_due = math.floor(campaign.gold_share * (len(regular_mine) + gold_mine + 1))
    if gold and gold_mine < gold_due and eligible.any():
        criterion = campaign.criteria[0]
        fresh = [p for p in gold if (p.id, criterion) not in touched]
        if fresh:
            return _Choice(rng.choice(fresh), criterion, False, None)

    free = eligible & (load < target)
    if free.any():  # slots not yet reserved up to target: least load, least-loaded system pair, fewest votes
        mask = free
        keys = (load[mask], load_of_system_pair[mask], votes[mask])
    elif eligible.any():  # every slot is reserved by open tickets: double up on the least voted
        mask = eligible
        keys = (votes[mask], load_of_system_pair[mask])
    else:
        return None
    slots = np.argwhere(mask)  # (criterion index, pair position), in the same order as keys
    best = np.ones(len(slots), dtype=bool)
    for key in keys:  # lexicographic minimum: keep the slots at each key's minimum, most significant first
        best &= key == key[best].min()
    ci, pos = (int(x) for x in slots[np.flatnonzero(best)[rng.randrange(int(best.sum()))]])
    return _Choice(pairs[pos], criteria[ci], False, None, int(load[ci, pos]))


def _add_counts(into: np.ndarray, table: _PairTable, k: dict[str, int], rows: list[Any]) -> None:
    """Add (pair_id, criterion, count) rows into a criteria × pairs array (unknown pairs ignored)."""
    rows = [r for r in rows if r[1] in k]
    if not rows:
        return
    pos = table.positions([r[0] for r in rows])
    pos = np.minimum(pos, len(table.ids) - 1)
    known = table.ids[pos] == np.array([r[0] for r in rows])
    crit = np.array([k[r[1]] for r in rows])
    np.add.at(into, (crit[known], pos[known]), np.array([r[2] for r in rows])[known])


def _open_ticket(session: Session, campaign_id: int, annotator_id: int) -> ArenaTicket | None:
    return session.exec(
        select(ArenaTicket).where(
            ArenaTicket.campaign_id == campaign_id,
            ArenaTicket.annotator_id == annotator_id,
            ArenaTicket.used == False,  # noqa: E712
            ArenaTicket.skipped == False,  # noqa: E712
        )
    ).first()


OPTIMISTIC_TRIES = 3


def next_ticket(
    ws: Workspace, campaign: CampaignRef, annotator_id: int, *, rng: random.Random | None = None
) -> Ticket | None:
    """The annotator's open ticket, or a new one; None when the campaign needs nothing more from them.

    Why in two phases: choosing scans every pair of the campaign (milliseconds for thousands of
    pairs), and under the write lock that scan would make every vote of 20 annotators wait behind
    it. So the choice is made on a read snapshot, and only a short check-and-insert takes the
    lock: the slot must still be free (not judged or held by this annotator, under target, and
    no busier than when it was chosen). If another annotator took it meanwhile, choose again; after
    a few lost races the whole decision is made under the lock, as a fallback that always ends.
    """
    rng = rng or random.Random()
    with read_session(ws) as s:
        row = find_campaign(s, campaign)
        _check_annotator(s, annotator_id)
        if row.source == "import":  # judgments imported from elsewhere: no images to show here
            return None
        if not _may_judge(s, row, annotator_id):  # closed, or this annotator was shown the systems
            return None
        ticket = _open_ticket(s, row.id, annotator_id)  # type: ignore[arg-type]
        if ticket is not None:
            return _view(ws, s, row, ticket)
    ticket_id: int | None = None
    for attempt in range(OPTIMISTIC_TRIES + 1):
        locked_choice = attempt == OPTIMISTIC_TRIES
        choice = None
        if not locked_choice:
            with read_session(ws) as s:
                row = find_campaign(s, campaign)
                if row.status != CampaignStatus.open.value:
                    return None
                choice = _choose(s, ws.db_url, row, annotator_id, rng)
            if choice is None:
                return None
        with _writers, write_session(ws) as s:
            row = find_campaign(s, campaign)
            if not _may_judge(s, row, annotator_id):
                return None
            held = _open_ticket(s, row.id, annotator_id)  # type: ignore[arg-type]
            if held is not None:  # another tab of this annotator opened one meanwhile
                ticket_id = held.id
                break
            if locked_choice:
                choice = _choose(s, ws.db_url, row, annotator_id, rng)
                if choice is None:
                    return None
            elif not _still_free(s, row, annotator_id, choice):  # type: ignore[arg-type]
                continue
            ticket_id = _issue(s, row, annotator_id, choice).id  # type: ignore[arg-type]
            break
    with read_session(ws) as s:
        ticket = s.get(ArenaTicket, ticket_id)
        row = s.get(Campaign, ticket.campaign_id)  # type: ignore[union-attr]
        return _view(ws, s, row, ticket)  # type: ignore[arg-type]


def revealed_to(session: Session, campaign_id: int, annotator_id: int) -> bool:
    """Was this annotator shown which systems they judged in this campaign?"""
    return (
        session.exec(
            select(ArenaReveal.id).where(
                ArenaReveal.campaign_id == campaign_id, ArenaReveal.annotator_id == annotator_id
            )
        ).first()
        is not None
    )


def _may_judge(session: Session, campaign: Campaign, annotator_id: int) -> bool:
    """Open, and the annotator is still blind there: the only state in which pairs go out and votes come in."""
    if campaign.status != CampaignStatus.open.value:
        return False
    return not revealed_to(session, campaign.id, annotator_id)  # type: ignore[arg-type]


def _still_free(session: Session, campaign: Campaign, annotator_id: int, choice: _Choice) -> bool:
    """Inside the write lock: may ``choice`` (made on an older snapshot) still be issued?"""
    pair_id, criterion = choice.pair.id, choice.criterion
    mine = session.exec(
        text(
            "SELECT (SELECT count(*) FROM judgment WHERE pair_id = :p AND criterion = :k "
            "        AND annotator_id = :a AND is_repeat = :r) + "
            "       (SELECT count(*) FROM arenaticket WHERE pair_id = :p AND criterion = :k "
            "        AND annotator_id = :a AND is_repeat = :r)"
        ).bindparams(p=pair_id, k=criterion, a=annotator_id, r=choice.is_repeat)
    ).one()[0]
    if mine:
        return False
    if choice.seen_load is None:  # a planned repeat or a gold pair: only this annotator matters
        return True
    votes = session.exec(
        text(
            "SELECT count(*) FROM judgment WHERE pair_id = :p AND criterion = :k AND is_repeat = FALSE"
        ).bindparams(p=pair_id, k=criterion)
    ).one()[0]
    open_tickets = session.exec(
        select(func.count()).where(
            ArenaTicket.pair_id == pair_id,
            ArenaTicket.criterion == criterion,
            ArenaTicket.used == False,  # noqa: E712
            ArenaTicket.skipped == False,  # noqa: E712
            ArenaTicket.is_repeat == False,  # noqa: E712
            ArenaTicket.issued_at > utcnow() - TICKET_RESERVE,
        )
    ).one()
    return votes < campaign.target_per_pair and votes + open_tickets <= choice.seen_load


def _issue(session: Session, campaign: Campaign, annotator_id: int, choice: _Choice) -> ArenaTicket:
    pair = choice.pair
    left_id = choice.left_id
    if left_id is None:
        left_id = pair.a_id if _sides.random() < 0.5 else pair.b_id
    ticket = ArenaTicket(
        token=secrets.token_urlsafe(18),
        campaign_id=campaign.id,  # type: ignore[arg-type]
        pair_id=pair.id,
        annotator_id=annotator_id,
        criterion=choice.criterion,
        left_id=left_id,
        right_id=pair.b_id if left_id == pair.a_id else pair.a_id,
        is_repeat=choice.is_repeat,
    )
    session.add(ticket)
    session.flush()
    return ticket


def _ticket(session: Session, token: str, annotator_id: int) -> ArenaTicket:
    ticket = session.exec(select(ArenaTicket).where(ArenaTicket.token == str(token))).first()
    if ticket is None:
        raise TicketError("unknown ticket; ask for the next pair again")
    if ticket.annotator_id != annotator_id:
        raise TicketError("this ticket was issued to another annotator")
    return ticket


def _clean_flags(flags: Any) -> dict[str, Any] | None:
    if flags is None:
        return None
    if isinstance(flags, (list, tuple, set)):
        return {str(f): True for f in flags}
    if isinstance(flags, dict):
        return {str(k): v for k, v in flags.items()}
    raise ArenaError(f"flags must be a list of names or a mapping, not {type(flags).__name__}")


PAIR_CHOICES = frozenset(c.value for c in Choice)
VERDICT_CHOICES = frozenset(v.value for v in Verdict)


def _clean_missing(missing: Sequence[str] | None) -> list[str]:
    if missing is None:
        return []
    if isinstance(missing, str) or not isinstance(missing, Sequence | set | frozenset):
        raise ArenaError(f"missing must be a list of element texts, not {type(missing).__name__}")
    out: list[str] = []
    for m in missing:
        if not isinstance(m, str):
            raise ArenaError(f"missing element {m!r} is not a text")
        if m not in out:
            out.append(m)
    return out


def _checked_answer(
    session: Session, ticket: ArenaTicket, choice: str, flags: dict[str, Any] | None, missing: list[str]
) -> dict[str, Any] | None:
    """The answer must fit the campaign's kind (and a verdict's ticks its item); returns the flags to store."""
    campaign = session.get(Campaign, ticket.campaign_id)
    verdict = campaign is not None and campaign.kind == CampaignKind.verdict.value
    if not verdict:
        if choice not in PAIR_CHOICES:
            raise ArenaError(f"choice {choice!r} must be one of left, right, tie, both_bad")
        if missing:
            raise ArenaError("missing elements are ticked in verdict campaigns only")
        return flags
    if choice not in VERDICT_CHOICES:
        raise ArenaError(f"this campaign asks for a verdict: choice must be yes or no, not {choice!r}")
    if flags:
        raise ArenaError("a verdict takes missing elements, not flags")
    if not missing:
        return None
    if choice == Verdict.yes.value:
        raise ArenaError("an image judged faithful misses nothing: untick the missing elements or answer no")
    row = session.exec(
        text("SELECT elements FROM evalimage WHERE id = :i").bindparams(i=ticket.left_id)
    ).one()
    offered = _json_list(row[0])
    unknown = [m for m in missing if m not in offered]
    if unknown:
        raise ArenaError(f"not an element of this prompt: {', '.join(repr(m) for m in unknown)}")
    return {"missing": [m for m in offered if m in missing]}  # in the prompt's order


def _receipt(session: Session, campaign: Campaign, duplicate: bool) -> VoteReceipt:
    done, total, _ = _progress(session, campaign, None)
    more = campaign.status == CampaignStatus.open.value and done < total
    return VoteReceipt(more, duplicate)


def submit_vote(
    ws: Workspace,
    token: str,
    annotator_id: int,
    choice: str,
    elapsed_ms: int | float | None,
    flags: Any = None,
    *,
    missing: Sequence[str] | None = None,
) -> VoteReceipt:
    """Record the verdict for a ticket. A second submit of the same ticket returns the first receipt.

    Pairwise campaigns take ``left|right|tie|both_bad`` (and caption ``flags``); verdict campaigns
    take ``yes|no`` and, with ``no``, ``missing``: the ticket's required elements that the image
    lacks. ``server_ms`` is measured from entry to the moment the row is written (lock wait and
    inserts included, the commit's fsync not).
    """
    started = time.perf_counter()
    if choice not in PAIR_CHOICES | VERDICT_CHOICES:
        raise ArenaError(
            f"choice {choice!r} must be one of left, right, tie, both_bad (yes, no in verdict campaigns)"
        )
    if elapsed_ms is not None:
        try:
            elapsed_ms = int(elapsed_ms)
        except (TypeError, ValueError):
            raise ArenaError(
                f"elapsed_ms must be a whole number of milliseconds, not {elapsed_ms!r}"
            ) from None
        if not 0 <= elapsed_ms <= MAX_ELAPSED_MS:
            raise ArenaError(f"elapsed_ms {elapsed_ms} is out of range (0 to {MAX_ELAPSED_MS})")
    clean_flags = _clean_flags(flags)
    ticked = _clean_missing(missing)
    # the lock covers the check and the insert only; the receipt (system names, progress) is read
    # after the commit, so the next voter does not wait for it
    with _writers, write_session(ws) as s:
        ticket = _ticket(s, token, annotator_id)
        ticket_id, duplicate = ticket.id, ticket.used
        if not duplicate:
            clean_flags = _checked_answer(s, ticket, choice, clean_flags, ticked)
            _record_vote(s, ticket, annotator_id, choice, elapsed_ms, clean_flags, started)
    with read_session(ws) as s:
        ticket = s.get(ArenaTicket, ticket_id)
        campaign = s.get(Campaign, ticket.campaign_id)  # type: ignore[union-attr]
        return _receipt(s, campaign, duplicate=duplicate)  # type: ignore[arg-type]


def _record_vote(
    s: Session,
    ticket: ArenaTicket,
    annotator_id: int,
    choice: str,
    elapsed_ms: int | None,
    clean_flags: dict[str, Any] | None,
    started: float,
) -> None:
    """Inside the write lock: refuse a skipped ticket, a closed campaign, an annotator who was shown
    the systems, or a second verdict; then write the judgment."""
    if ticket.skipped:
        raise TicketError("this ticket was skipped; ask for the next pair")
    campaign = s.get(Campaign, ticket.campaign_id)
    if campaign is None or campaign.status != CampaignStatus.open.value:
        raise TicketError(
            "this campaign is closed: it takes no more votes (closing unblinds its images, "
            "so a vote cast afterwards would not be blind)"
        )
    if revealed_to(s, campaign.id, annotator_id):  # type: ignore[arg-type]
        raise TicketError(
            "you have seen which systems you judged in this campaign, so your votes here would "
            "no longer be blind; it takes no more votes from you"
        )
    clash = s.exec(
        select(Judgment.id).where(
            Judgment.pair_id == ticket.pair_id,
            Judgment.annotator_id == annotator_id,
            Judgment.criterion == ticket.criterion,
            Judgment.is_repeat == ticket.is_repeat,
        )
    ).first()
    if clash is not None:
        raise TicketError("you have already judged this pair under this criterion")
    judgment = Judgment(
        campaign_id=ticket.campaign_id,
        pair_id=ticket.pair_id,
        ticket_id=ticket.id,
        annotator_id=annotator_id,
        criterion=ticket.criterion,
        left_image_id=ticket.left_id,
        choice=choice,
        elapsed_ms=elapsed_ms,
        is_repeat=ticket.is_repeat,
        flags=clean_flags,
        source="studio",
    )
    ticket.used = True
    s.add(ticket)
    s.add(judgment)
    s.flush()
    judgment.server_ms = round((time.perf_counter() - started) * 1000, 3)
    s.add(judgment)
    s.flush()


def skip_ticket(ws: Workspace, token: str, annotator_id: int) -> None:
    """Give the ticket back; the pair is not offered to this annotator again (idempotent)."""
    with _writers, write_session(ws) as s:
        ticket = _ticket(s, token, annotator_id)
        if ticket.used:
            raise TicketError("this ticket already has a vote; it cannot be skipped")
        if not ticket.skipped:
            ticket.skipped = True
            s.add(ticket)
