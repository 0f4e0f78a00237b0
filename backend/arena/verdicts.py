"""Absolute verdicts: one image and its prompt, judged faithful or not (RECAP's human evaluation).

RECAP reports "% successful generations": each image judged on its own against its prompt,
not against another system's image. A verdict campaign asks exactly that — *yes* (faithful) or
*no*, optionally with the prompt's required elements the image lacks (:mod:`.elements`) — and
:mod:`.verdict_stats` turns the answers into success rates per system with intervals over
prompts, the relative improvement against a baseline, and agreement between annotators.

Why it is built on the pairwise arena instead of beside it: every item is written as a "pair"
of itself (``a_id == b_id``), so tickets, load balancing (over systems × prompts, up to
``target_per_pair`` verdicts per image), planned repeats, skips, idempotent votes with their
timings, reveals and final closing are the same code (:mod:`.scheduling`, :mod:`.reveals`),
and the blindness guarantee of the pairwise arena holds by the same rules: nothing sent before
an annotator's last possible verdict names a system; every image is shown on the campaign's one
canvas under a fresh URL; the systems are told only once nothing can follow.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import text

from backend.arena.campaigns import Settings, _name_free, _write, folders_plan, generated_plan
from backend.arena.common import CLUSTER, ArenaError, CampaignRef, find_campaign
from backend.arena.elements import clean_elements, load_elements
from backend.arena.models import Campaign, CampaignKind
from backend.db import read_session
from backend.workspace import Workspace

DEFAULT_QUESTION = "Does the image show everything the prompt asks for?"
VOTE_COLUMNS = [
    "judgment_id",
    "item",
    "system",
    "prompt",
    "seed",
    "category",
    "annotator",
    "verdict",
    "success",
    "missing",
    "elements",
    "is_repeat",
    "elapsed_ms",
    "server_ms",
    "source",
    "created_at",
    CLUSTER,
]
EXPORT_COLUMNS = (
    "prompt",
    "system",
    "verdict",
    "missing",
    "annotator",
    "question",
    "seed",
    "category",
    "is_repeat",
    "elapsed_ms",
    "server_ms",
    "created_at",
    "source",
)


def create_verdict_campaign(
    ws: Workspace,
    name: str,
    *,
    datasets: Sequence[str] | None = None,
    root: Path | str | None = None,
    prompts_csv: Path | str | None = None,
    question: str = DEFAULT_QUESTION,
    elements_file: Path | str | None = None,
    elements: Mapping[str, Sequence[str]] | None = None,
    target_per_item: int = 3,
    repeat_share: float = 0.0,
    baseline: str | None = None,
    created_by: int | None = None,
    seed: int = 0,
) -> Campaign:
    """A verdict campaign over generated ``datasets`` or over ``root/<system>/<file>`` + ``prompts_csv``.

    ``target_per_item`` verdicts are wanted per image; ``repeat_share`` of an annotator's verdicts
    are asked again (test-retest). The required elements offered as ticks come from
    ``elements_file`` (JSON Lines, see :func:`backend.arena.elements.load_elements`) or
    ``elements`` (prompt text -> element texts), else from the generated images' own records;
    a given file that matches none of the campaign's prompts is refused (it is the wrong file).
    ``baseline`` (a system name) is the default the relative improvement is measured against.
    """
    if not question.strip():
        raise ArenaError("the question asked of every image must not be empty")
    if int(target_per_item) < 1:
        raise ArenaError(f"verdicts per image must be at least 1, not {target_per_item}")
    settings = Settings.check(name, [question], target_per_item, repeat_share, 0.0, created_by, seed)
    from_folders = root is not None or prompts_csv is not None
    if bool(datasets) == from_folders:
        raise ArenaError(
            "give exactly one source: generated datasets, or an images folder with its prompts CSV"
        )
    if from_folders and (root is None or prompts_csv is None):
        raise ArenaError("images from folders need both the folder and the prompts CSV")
    if elements_file is not None and elements is not None:
        raise ArenaError("give the elements as a file or as a mapping, not both")
    given: dict[str, list[str]] | None = None
    if elements_file is not None:
        given = load_elements(elements_file)
    elif elements is not None:
        given = {str(p).strip(): clean_elements(e, f"prompt {p!r}") for p, e in elements.items()}
    with read_session(ws) as s:
        _name_free(s, name)
    kind = CampaignKind.verdict.value
    if from_folders:
        plan = folders_plan(ws, name, Path(root), Path(prompts_csv), kind)  # type: ignore[arg-type]
    else:
        plan = generated_plan(ws, name, list(datasets or ()), kind)
    prompts = {it.prompt.strip() for it in plan.items}
    if given is not None:
        matched = prompts & set(given)
        if not matched:
            shown = ", ".join(repr(p[:50]) for p in sorted(prompts)[:3])
            raise ArenaError(
                f"the elements {'file' if elements_file is not None else 'mapping'} names none of the "
                f"campaign's {len(prompts)} prompts (e.g. {shown}); prompts must match exactly"
            )
        for item in plan.items:
            item.elements = given.get(item.prompt.strip(), item.elements)
    _one_list_per_prompt(plan.items)
    if baseline is not None and baseline not in plan.systems:
        raise ArenaError(
            f"baseline {baseline!r} is not a system of the campaign: {', '.join(sorted(plan.systems))}"
        )
    with_elements = {it.prompt.strip() for it in plan.items if it.elements}
    plan.meta.update(
        {
            "baseline": baseline,
            "elements": {
                "source": str(elements_file)
                if elements_file is not None
                else ("mapping" if elements else "images"),
                "prompts_with_elements": len(with_elements),
                "prompts": len(prompts),
            },
        }
    )
    return _write(ws, name, plan, settings)


def _one_list_per_prompt(items: list[Any]) -> None:
    """Give every image of a prompt the same elements, or refuse when its images disagree.

    Why: elements recorded per image (``meta["generated"]``) could differ between systems for
    one prompt — or exist for one system only — and ticks that differ by system would let an
    annotator tell the systems' images apart. Elements belong to the prompt, so each image of a
    prompt is offered the same ticks.
    """
    by_prompt: dict[str, list[str]] = {}
    clashes: set[str] = set()
    for item in items:
        if item.elements is None:
            continue
        key = item.prompt.strip()
        if by_prompt.setdefault(key, item.elements) != item.elements:
            clashes.add(key)
    if clashes:
        shown = ", ".join(repr(p[:50]) for p in sorted(clashes)[:3])
        raise ArenaError(
            f"the images of {len(clashes)} prompt(s) carry different required elements (e.g. {shown}); "
            "elements belong to the prompt: give them in an elements file instead"
        )
    for item in items:
        item.elements = by_prompt.get(item.prompt.strip())


def is_verdict(campaign: Campaign) -> bool:
    return campaign.kind == CampaignKind.verdict.value


def _check(campaign: Campaign) -> None:
    if not is_verdict(campaign):
        raise ArenaError(
            f"campaign {campaign.name!r} is a pairwise ({campaign.kind}) campaign, not a verdict campaign"
        )


_ROWS_SQL = text(
    "SELECT j.id, e.id, s.name, e.prompt, e.seed, e.category, coalesce(u.name, '#' || j.annotator_id), "
    "j.choice, j.flags, e.elements, j.is_repeat, j.elapsed_ms, j.server_ms, j.source, j.created_at, j.criterion "
    "FROM judgment j JOIN evalimage e ON e.id = j.left_image_id JOIN arenasystem s ON s.id = e.system_id "
    'LEFT JOIN "user" u ON u.id = j.annotator_id WHERE j.campaign_id = :c ORDER BY j.id'
)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _rows(ws: Workspace, ref: CampaignRef) -> tuple[Campaign, list[dict[str, Any]]]:
    with read_session(ws) as s:
        campaign = find_campaign(s, ref)
        _check(campaign)
        raw = s.exec(_ROWS_SQL.bindparams(c=campaign.id)).all()
    rows = []
    for r in raw:
        flags = _json(r[8]) or {}
        missing = flags.get("missing") if isinstance(flags, dict) else None
        rows.append(
            {
                "judgment_id": r[0],
                "item": r[1],
                "system": r[2],
                "prompt": r[3],
                "seed": r[4],
                "category": r[5],
                "annotator": r[6],
                "verdict": r[7],
                "success": r[7] == "yes",
                "missing": list(missing) if isinstance(missing, list) else [],
                "elements": list(_json(r[9]) or []),
                "is_repeat": bool(r[10]),
                "elapsed_ms": r[11],
                "server_ms": r[12],
                "source": r[13],
                "created_at": r[14],
                "question": r[15],
            }
        )
    return campaign, rows


def verdict_votes(ws: Workspace, ref: CampaignRef) -> pd.DataFrame:
    """One row per verdict: the item and its system, the annotator, ``verdict`` yes|no, the ticks.

    ``cluster`` is the prompt (what the intervals resample), or the item when it has none.
    """
    _, rows = _rows(ws, ref)
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in VOTE_COLUMNS})
    frame = pd.DataFrame(rows)
    prompt = frame["prompt"].fillna("").astype(str).str.strip()
    frame[CLUSTER] = ("prompt: " + prompt).where(prompt != "", "item: " + frame["item"].astype(str))
    return frame[VOTE_COLUMNS]


def export_verdicts_csv(ws: Workspace, ref: CampaignRef, path: Path | str) -> int:
    """Every verdict as CSV (prompt, system, verdict, missing as a JSON list, who, when); returns the count."""
    from backend.arena.votes_io import _write_csv

    _, rows = _rows(ws, ref)
    for row in rows:
        row["missing"] = json.dumps(row["missing"], ensure_ascii=False) if row["missing"] else ""
    _write_csv(Path(path), EXPORT_COLUMNS, rows)
    return len(rows)
