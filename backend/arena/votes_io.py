"""Judgments in and out as CSV: import votes collected elsewhere, export every judgment.

Import columns ``prompt,left,right,winner,annotator,criterion`` (winner ``left|right|tie|both_bad``),
optional ``seed,category,is_repeat,is_gold,gold_answer,elapsed_ms,server_ms,flags,created_at`` —
exactly what :func:`export_votes_csv` writes, so an export imports back unchanged. The whole file
is checked before anything is written; any bad row refuses the file with every bad line number.

Imported votes attach to an existing pair with the same prompt, seed and two systems when the
annotator has not judged it yet under that criterion; otherwise a pair without images is made
(votes from elsewhere need no files). Unknown systems become systems of the campaign, unknown
annotators become *inactive* annotator accounts that cannot log in (no usable password).

A gold row has ``is_gold`` 1 and ``gold_answer`` = the side (in that row) that is right; its two
sides may be the same system (an image for the prompt vs one made for another prompt).

Votes are never counted twice by accident: a row that repeats an earlier row of the file cell for
cell, or a timed row (``created_at``) equal to a vote the campaign already holds (same annotator,
prompt, seed, systems, criterion, repeat flag and time: the file was imported before), refuses
the file with its line numbers.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from backend.arena.campaigns import _read_rows
from backend.arena.common import ArenaError, CampaignRef, RowErrors, find_campaign
from backend.arena.models import ArenaSystem, Campaign, CampaignKind, Choice, EvalImage, EvalPair, Judgment
from backend.csv_cells import csv_row
from backend.db import read_session, write_session
from backend.models import Role, User
from backend.workspace import Workspace

REQUIRED = ("prompt", "left", "right", "winner", "annotator", "criterion")
OPTIONAL = (
    "seed",
    "category",
    "is_repeat",
    "is_gold",
    "gold_answer",
    "elapsed_ms",
    "server_ms",
    "flags",
    "created_at",
)
EXPORT_COLUMNS = (*REQUIRED, *OPTIONAL, "source")
NO_LOGIN = "!imported-annotator-no-login"  # not an Argon2 hash: verify_login can never accept it
_FLAGS = {"": False, "0": False, "false": False, "no": False, "1": True, "true": True, "yes": True}


@dataclass
class ImportReport:
    campaign: str
    created_campaign: bool
    votes: int
    systems_created: list[str] = field(default_factory=list)
    annotators_created: list[str] = field(default_factory=list)
    pairs_created: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _Row:
    line: int
    prompt: str
    left: str
    right: str
    winner: str
    annotator: str
    criterion: str
    seed: int | None
    category: str | None
    is_repeat: bool
    is_gold: bool
    gold_answer: str | None
    elapsed_ms: int | None
    server_ms: float | None
    flags: dict[str, Any] | None
    created_at: datetime | None


def _parse(line: int, row: dict[str, str]) -> tuple[_Row | None, list[str]]:
    problems: list[str] = []
    if "__extra__" in row:
        return None, [f"line {line}: more cells than the header has columns"]
    empty = [c for c in REQUIRED if not row.get(c)]
    if empty:
        problems.append(f"empty {', '.join(empty)}")
    winner = row.get("winner", "").lower()
    if winner and winner not in {c.value for c in Choice}:
        problems.append(f"winner {row['winner']!r} must be left, right, tie or both_bad")

    def flag(col: str) -> bool:
        value = row.get(col, "").lower()
        if value not in _FLAGS:
            problems.append(f"{col} {row[col]!r} must be 0 or 1")
            return False
        return _FLAGS[value]

    def number(col: str, kind: type) -> Any:
        value = row.get(col, "")
        if not value:
            return None
        try:
            parsed = kind(float(value)) if kind is int and value.endswith(".0") else kind(value)
        except ValueError:
            problems.append(f"{col} {value!r} is not a {'whole ' if kind is int else ''}number")
            return None
        if parsed < 0:
            problems.append(f"{col} {value!r} must not be negative")
        return parsed

    is_repeat, is_gold = flag("is_repeat"), flag("is_gold")
    gold_answer = row.get("gold_answer", "").lower() or None
    if is_gold and gold_answer not in ("left", "right"):
        problems.append("a gold row needs gold_answer left or right (the side that is right)")
    if not is_gold and gold_answer:
        problems.append("gold_answer is given but is_gold is not 1")
    if row.get("left") and row.get("left") == row.get("right") and not is_gold:
        problems.append(f"left and right are the same system {row['left']!r}")
    seed, elapsed, server = number("seed", int), number("elapsed_ms", int), number("server_ms", float)
    flags = None
    if row.get("flags"):
        try:
            flags = json.loads(row["flags"])
            if not isinstance(flags, dict):
                raise ValueError
        except ValueError:
            problems.append('flags must be a JSON object, e.g. {"hallucination": true}')
    created = None
    if row.get("created_at"):
        try:
            created = datetime.fromisoformat(row["created_at"])
            # stored in UTC whatever offset the file used, so "already imported" compares like with like
            created = created.astimezone(UTC) if created.tzinfo else created.replace(tzinfo=UTC)
        except ValueError:
            problems.append(f"created_at {row['created_at']!r} is not an ISO date-time")
    if problems:
        return None, [f"line {line}: {'; '.join(problems)}"]
    return (
        _Row(
            line,
            row["prompt"],
            row["left"],
            row["right"],
            winner,
            row["annotator"],
            row["criterion"],
            seed,
            row.get("category") or None,
            is_repeat,
            is_gold,
            gold_answer,
            elapsed,
            server,
            flags,
            created,
        ),  # fmt: skip
        [],
    )


def _annotator(session: Session, name: str, created: list[str]) -> int:
    user = session.exec(select(User).where(User.name == name)).first()
    if user is None:
        user = User(name=name, role=Role.annotator.value, password_hash=NO_LOGIN, active=False)
        session.add(user)
        session.flush()
        created.append(name)
    return user.id  # type: ignore[return-value]


def _pair_key(prompt: str, seed: int | None, a: str, b: str, is_gold: bool) -> tuple[Any, ...]:
    return (prompt, seed, a, b, True) if is_gold else (prompt, seed, *sorted((a, b)), False)


def _vote_identity(vote: dict[str, Any]) -> tuple[Any, ...]:
    """What makes two timed votes the same vote, from an exported row or a parsed import row."""
    when = vote["created_at"]
    when = (when.astimezone(UTC) if when.tzinfo else when).replace(tzinfo=None)
    return (
        vote["annotator"],
        vote["prompt"],
        vote["seed"],
        frozenset((vote["left"], vote["right"])),
        vote["criterion"],
        bool(vote["is_repeat"]),
        when,
    )


def import_votes_csv(
    ws: Workspace, name: str, path: Path | str, *, created_by: int | None = None
) -> ImportReport:
    """Add the votes of a CSV to campaign ``name`` (created when new); all rows or none."""
    path = Path(path)
    if not name.strip():
        raise ArenaError("campaign name must not be empty")
    parsed: list[_Row] = []
    errors: list[str] = []
    seen: dict[tuple[tuple[str, str], ...], int] = {}
    for line, raw in _read_rows(path, REQUIRED, OPTIONAL):
        row, problems = _parse(line, raw)
        errors += problems
        cells = tuple(sorted(raw.items()))
        if cells in seen:
            errors.append(
                f"line {line}: repeats line {seen[cells]} exactly (was the file joined twice? votes on "
                "different images of the same prompt need a seed column to tell them apart)"
            )
        else:
            seen[cells] = line
        if row is not None:
            parsed.append(row)
    if errors:
        raise RowErrors(path.name, errors)
    with write_session(ws) as s:
        campaign = s.exec(select(Campaign).where(Campaign.name == name.strip())).first()
        created_campaign = campaign is None
        if campaign is None:
            campaign = Campaign(
                name=name.strip(),
                kind=CampaignKind.t2i.value,
                criteria=list(dict.fromkeys(r.criterion for r in parsed)),
                target_per_pair=1,
                repeat_share=0.0,
                gold_share=0.0,
                source="import",
                meta={"imported_from": str(path)},
                created_by=created_by,
            )
            s.add(campaign)
            s.flush()
        elif campaign.kind == CampaignKind.verdict.value:
            raise ArenaError(
                f"campaign {campaign.name!r} collects verdicts on single images; pairwise votes "
                "cannot be imported into it (import them into a campaign of their own)"
            )
        else:
            unknown = [
                f"line {r.line}: criterion {r.criterion!r} is not one of the campaign's criteria "
                f"({', '.join(campaign.criteria)})"
                for r in parsed
                if r.criterion not in campaign.criteria
            ]
            if unknown:
                raise RowErrors(path.name, unknown)
            held = {_vote_identity(v) for v in judgment_rows(s, campaign) if v["created_at"] is not None}
            again = [
                f"line {r.line}: this vote is already in campaign {campaign.name!r} (same annotator, "
                "pair, criterion and time): was the file imported before?"
                for r in parsed
                if r.created_at is not None and _vote_identity(r.__dict__) in held
            ]
            if again:
                raise RowErrors(path.name, again)
        report = ImportReport(campaign.name, created_campaign, len(parsed))
        cid = campaign.id
        systems = {r.name: r.id for r in s.exec(select(ArenaSystem).where(ArenaSystem.campaign_id == cid))}
        for r in parsed:
            for sys_name in (r.left, r.right):
                if sys_name not in systems:
                    row = ArenaSystem(
                        campaign_id=cid,
                        name=sys_name,
                        meta={"source": "import", "caption_condition": None, "mix": None, "captioners": None},
                    )
                    s.add(row)
                    s.flush()
                    systems[sys_name] = row.id
                    report.systems_created.append(sys_name)
        sys_name_of = {v: k for k, v in systems.items()}
        # existing pairs by (prompt, seed, systems, gold); their items by system
        items = {e.id: e for e in s.exec(select(EvalImage).where(EvalImage.campaign_id == cid))}
        pairs: dict[tuple[Any, ...], list[EvalPair]] = {}
        for p in s.exec(select(EvalPair).where(EvalPair.campaign_id == cid).order_by(EvalPair.id)):
            a, b = sys_name_of[p.a_system_id], sys_name_of[p.b_system_id]
            pairs.setdefault(_pair_key(p.prompt, p.seed, a, b, p.is_gold), []).append(p)
        taken = {
            (j.pair_id, j.annotator_id, j.criterion, j.is_repeat)
            for j in s.exec(select(Judgment).where(Judgment.campaign_id == cid))
        }
        annotators: dict[str, int] = {}
        for r in parsed:
            if r.annotator not in annotators:
                annotators[r.annotator] = _annotator(s, r.annotator, report.annotators_created)
            uid = annotators[r.annotator]
            key = _pair_key(r.prompt, r.seed, r.left, r.right, r.is_gold)
            if r.is_gold:  # the right side's system first: pair a is the right answer
                key = _pair_key(
                    r.prompt,
                    r.seed,
                    *((r.left, r.right) if r.gold_answer == "left" else (r.right, r.left)),
                    True,
                )
            pair = next(
                (p for p in pairs.get(key, []) if (p.id, uid, r.criterion, r.is_repeat) not in taken), None
            )
            if pair is None:
                pair = _new_pair(s, cid, r, systems)  # type: ignore[arg-type]
                for item_id in (pair.a_id, pair.b_id):
                    items[item_id] = s.get(EvalImage, item_id)  # type: ignore[assignment]
                pairs.setdefault(key, []).append(pair)
                report.pairs_created += 1
            taken.add((pair.id, uid, r.criterion, r.is_repeat))
            if r.is_gold:
                left_item = pair.a_id if r.gold_answer == "left" else pair.b_id
            else:
                left_item = pair.a_id if items[pair.a_id].system_id == systems[r.left] else pair.b_id
            s.add(
                Judgment(
                    campaign_id=cid,  # type: ignore[arg-type]
                    pair_id=pair.id,  # type: ignore[arg-type]
                    annotator_id=uid,
                    criterion=r.criterion,
                    left_image_id=left_item,
                    choice=r.winner,
                    elapsed_ms=r.elapsed_ms,
                    server_ms=r.server_ms,
                    is_repeat=r.is_repeat,
                    flags=r.flags,
                    source="import",
                    **({"created_at": r.created_at} if r.created_at else {}),
                )
            )
        s.flush()
    return report


def _new_pair(session: Session, campaign_id: int, r: _Row, systems: dict[str, int]) -> EvalPair:
    if r.is_gold:
        right_sys, wrong_sys = (r.left, r.right) if r.gold_answer == "left" else (r.right, r.left)
        names = (right_sys, wrong_sys)
    else:
        names = (r.left, r.right)
    made = []
    for i, sys_name in enumerate(names):
        prompt = "" if r.is_gold and i == 1 else r.prompt  # the decoy answered some other prompt
        item = EvalImage(
            campaign_id=campaign_id,
            system_id=systems[sys_name],
            prompt=prompt,
            category=r.category,
            seed=r.seed,
        )
        session.add(item)
        session.flush()
        made.append(item)
    pair = EvalPair(
        campaign_id=campaign_id,
        a_id=made[0].id,  # type: ignore[arg-type]
        b_id=made[1].id,  # type: ignore[arg-type]
        a_system_id=systems[names[0]],
        b_system_id=systems[names[1]],
        prompt=r.prompt,
        category=r.category,
        seed=r.seed,
        is_gold=r.is_gold,
        gold_answer="a" if r.is_gold else None,
    )
    session.add(pair)
    session.flush()
    return pair


def judgment_rows(session: Session, campaign: Campaign) -> list[dict[str, Any]]:
    """Every judgment of the campaign as a flat dict, in the order they were made.

    Columns, not ORM objects: a campaign's results read every judgment, and building 100,000
    tracked instances cost seconds of the Results tab's time for nothing (nothing is changed here)."""
    cid = campaign.id
    systems = {r.id: r.name for r in session.exec(select(ArenaSystem).where(ArenaSystem.campaign_id == cid))}
    system_of = dict(session.exec(select(EvalImage.id, EvalImage.system_id).where(EvalImage.campaign_id == cid)).all())
    pairs = {
        p.id: p
        for p in session.exec(
            select(
                EvalPair.id, EvalPair.a_id, EvalPair.b_id, EvalPair.prompt, EvalPair.seed,
                EvalPair.category, EvalPair.is_gold, EvalPair.gold_answer,
            ).where(EvalPair.campaign_id == cid)
        )
    }  # fmt: skip
    users = {u.id: u.name for u in session.exec(select(User))}
    judgments = session.exec(
        select(
            Judgment.id, Judgment.pair_id, Judgment.left_image_id, Judgment.choice, Judgment.annotator_id,
            Judgment.criterion, Judgment.is_repeat, Judgment.elapsed_ms, Judgment.server_ms,
            Judgment.flags, Judgment.created_at, Judgment.source,
        ).where(Judgment.campaign_id == cid).order_by(Judgment.id)
    )  # fmt: skip
    rows = []
    for j in judgments:
        pair = pairs[j.pair_id]
        right_item = pair.b_id if j.left_image_id == pair.a_id else pair.a_id
        gold_side = None
        if pair.is_gold:
            winner_item = pair.a_id if pair.gold_answer == "a" else pair.b_id
            gold_side = "left" if winner_item == j.left_image_id else "right"
        rows.append(
            {
                "judgment_id": j.id,
                "pair_id": j.pair_id,
                "prompt": pair.prompt,
                "left": systems[system_of[j.left_image_id]],
                "right": systems[system_of[right_item]],
                "winner": j.choice,
                "annotator": users.get(j.annotator_id, f"#{j.annotator_id}"),
                "criterion": j.criterion,
                "seed": pair.seed,
                "category": pair.category,
                "is_repeat": bool(j.is_repeat),
                "is_gold": bool(pair.is_gold),
                "gold_answer": gold_side,
                "elapsed_ms": j.elapsed_ms,
                "server_ms": j.server_ms,
                "flags": j.flags,
                "created_at": j.created_at,
                "source": j.source,
            }
        )
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _write_csv(path: Path, columns: Sequence[str], rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for row in rows:  # names and prompts come from users: no cell may run as a formula
            writer.writerow(csv_row(_cell(row.get(c)) for c in columns))
    tmp.replace(path)


def export_votes_csv(ws: Workspace, name: CampaignRef, path: Path | str) -> int:
    """Write every judgment of the campaign (import columns + timing, flags, source); returns the count.

    A verdict campaign's judgments have their own columns (:func:`backend.arena.verdicts.export_verdicts_csv`).
    """
    with read_session(ws) as s:
        campaign = find_campaign(s, name)
        verdicts = campaign.kind == CampaignKind.verdict.value
        rows = [] if verdicts else judgment_rows(s, campaign)
    if verdicts:
        from backend.arena.verdicts import export_verdicts_csv

        return export_verdicts_csv(ws, campaign.id, path)  # type: ignore[arg-type]
    _write_csv(Path(path), EXPORT_COLUMNS, rows)
    return len(rows)
