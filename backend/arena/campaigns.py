"""Creating campaigns: systems, their items and the pairs to judge.

Three sources, one shape: every source yields *items* (an image a system made for a prompt
and seed, or a caption of one kind for an image) keyed by what they answer (prompt+seed, or
the image); every two systems that answered the same key form a pair.

Gold pairs (``gold_share`` > 0), the same construction for every source: an item is paired
with an item *of the same system* made for a different key — an image generated for another
prompt, or the same kind of caption of another image — and the pair is shown with the first
key's prompt or image, so the right answer is obvious ("a") and the style of the system gives
nothing away. They check annotator attention (``gold_accuracy``), never enter ratings, are
shown to every annotator (not up to ``target_per_pair``) and are asked under the campaign's
first criterion only: a wrong-prompt image is not necessarily worse under "image quality".

Everything is validated before the first row is written: a bad row, a corrupt image or an
unknown dataset raises :class:`ArenaError` (with line numbers for files) and nothing is stored.

Verdict campaigns (:mod:`.verdicts`) read the same sources through the same plans
(:func:`generated_plan`, :func:`folders_plan`); only the writing differs: each item is its own
"pair" (shown alone), so the scheduler, reveals and closing are shared unchanged.
"""

from __future__ import annotations

import csv
import itertools
import math
import os
import random
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, select

from backend.arena.common import ArenaError, RowErrors
from backend.arena.elements import elements_from_record
from backend.arena.models import ArenaSystem, Campaign, CampaignKind, EvalImage, EvalPair
from backend.csv_cells import csv_text
from backend.datasets import get_or_create_dataset
from backend.db import read_session, write_session
from backend.images import BadImage, DecodedImage, add_image, decode_image
from backend.ingest.files import join_inside, open_regular, read_fd
from backend.ingest.items import ItemError
from backend.jobs.models import Artifact, Run
from backend.models import Caption, CaptionStatus, Dataset, Image
from backend.references import ArtifactKind
from backend.workspace import Workspace

MAX_GOLD_PAIRS = 500
# keys copied from a t2i Artifact's meta into its system's meta (see contracts/GENERATED.md)
ARTIFACT_META_KEYS = (
    "base",
    "dataset",
    "train",
    "lora",
    "steps",
    "mix",
    "usage",
    "usage_labels",
    "captioners",
    "caption_condition",
    "truncated_captions",
    "training_images",
)
FOLDER_COLUMNS = ("system", "file", "prompt")
FOLDER_OPTIONAL = ("category", "seed", "caption_condition")


@dataclass(frozen=True)
class Settings:
    """The judging plan shared by every kind of campaign, validated once."""

    criteria: list[str]
    target_per_pair: int = 3
    repeat_share: float = 0.1
    gold_share: float = 0.0
    created_by: int | None = None
    seed: int = 0

    @staticmethod
    def check(
        name: str,
        criteria: Sequence[str],
        target_per_pair: int,
        repeat_share: float,
        gold_share: float,
        created_by: int | None,
        seed: int = 0,
    ) -> Settings:
        if not name.strip():
            raise ArenaError("campaign name must not be empty")
        cleaned = [c.strip() for c in criteria if c.strip()]
        if not cleaned:
            raise ArenaError("give at least one criterion, e.g. 'matches the prompt'")
        if len(set(cleaned)) != len(cleaned):
            raise ArenaError(f"criteria must be distinct, got {cleaned}")
        if int(target_per_pair) < 1:
            raise ArenaError(f"target votes per pair must be at least 1, not {target_per_pair}")
        for label, value in (("repeat share", repeat_share), ("gold share", gold_share)):
            if not 0.0 <= float(value) <= 0.5:
                raise ArenaError(f"{label} must be between 0 and 0.5, not {value}")
        return Settings(
            cleaned, int(target_per_pair), float(repeat_share), float(gold_share), created_by, seed
        )


@dataclass
class _Item:
    """One contestant's answer for one key, before it becomes an EvalImage row."""

    system: str
    key: Hashable
    prompt: str
    category: str | None = None
    seed: int | None = None
    image_id: int | None = None
    caption_id: int | None = None
    decoded: DecodedImage | None = None  # folder imports: stored when the campaign is written
    original_key: str = ""
    elements: list[str] | None = None  # verdict campaigns: the prompt's required elements


@dataclass
class _Plan:
    kind: str
    source: str
    systems: dict[str, dict[str, Any]]  # name -> meta (artifact_id inside, popped on write)
    items: list[_Item]
    meta: dict[str, Any] = field(default_factory=dict)
    import_dataset: str | None = None


def _name_free(session: Session, name: str) -> None:
    if session.exec(select(Campaign).where(Campaign.name == name.strip())).first() is not None:
        raise ArenaError(f"an arena campaign named {name.strip()!r} already exists; choose another name")


def _pairs(
    items: list[_Item], settings: Settings
) -> tuple[list[tuple[_Item, _Item]], list[tuple[_Item, _Item]]]:
    """(regular pairs, gold pairs): every two systems per key; gold = same system, another key."""
    by_key: dict[Hashable, dict[str, _Item]] = {}
    for item in items:
        by_key.setdefault(item.key, {}).setdefault(item.system, item)
    regular = [
        (by_sys[a], by_sys[b])
        for by_sys in by_key.values()
        for a, b in itertools.combinations(sorted(by_sys), 2)
    ]
    gold: list[tuple[_Item, _Item]] = []
    if settings.gold_share > 0 and len(by_key) > 1:
        rng = random.Random(settings.seed)
        wanted = min(MAX_GOLD_PAIRS, max(1, math.ceil(settings.gold_share * len(regular))))
        keys = list(by_key)
        seen: set[tuple[int, int]] = set()
        for _ in range(wanted * 20):
            if len(gold) >= wanted:
                break
            k1, k2 = rng.sample(keys, 2)
            shared = sorted(set(by_key[k1]) & set(by_key[k2]))
            if not shared:
                continue
            system = rng.choice(shared)
            right, wrong = by_key[k1][system], by_key[k2][system]
            if right.prompt == wrong.prompt and right.image_id == wrong.image_id:
                continue  # same prompt under another seed, or the same image: not a wrong answer
            marker = (id(right), id(wrong))
            if marker not in seen:
                seen.add(marker)
                gold.append((right, wrong))
    return regular, gold


def _singles(items: list[_Item]) -> list[tuple[_Item, _Item]]:
    """Verdict campaigns: every item alone (as a pair of itself), one per system and key."""
    seen: set[tuple[Hashable, str]] = set()
    out = []
    for item in items:
        if (item.key, item.system) not in seen:
            seen.add((item.key, item.system))
            out.append((item, item))
    return out


def _write(ws: Workspace, name: str, plan: _Plan, settings: Settings) -> Campaign:
    if plan.kind == CampaignKind.verdict.value:
        regular, gold = _singles(plan.items), []
        if not regular:
            raise ArenaError("no images to judge")
    else:
        regular, gold = _pairs(plan.items, settings)
        if len(plan.systems) < 2:
            raise ArenaError(f"a campaign needs at least two systems; found {sorted(plan.systems) or 'none'}")
        if not regular:
            raise ArenaError(
                "no pairs to judge: no prompt (or image) was answered by two systems; "
                "systems must share prompts and seeds to be compared"
            )
    with write_session(ws) as s:
        _name_free(s, name)
        campaign = Campaign(
            name=name.strip(),
            kind=plan.kind,
            criteria=settings.criteria,
            target_per_pair=settings.target_per_pair,
            repeat_share=settings.repeat_share,
            gold_share=settings.gold_share,
            source=plan.source,
            meta={**plan.meta, "seed": settings.seed, "pairs": len(regular), "gold_pairs": len(gold)},
            created_by=settings.created_by,
        )
        s.add(campaign)
        s.flush()
        system_ids: dict[str, int] = {}
        for sys_name, meta in sorted(plan.systems.items()):
            meta = dict(meta)
            row = ArenaSystem(
                campaign_id=campaign.id, name=sys_name, artifact_id=meta.pop("artifact_id", None), meta=meta
            )
            s.add(row)
            s.flush()
            system_ids[sys_name] = row.id  # type: ignore[assignment]
        dataset_id = get_or_create_dataset(s, plan.import_dataset).id if plan.import_dataset else None
        eval_ids: dict[int, int] = {}
        for item in plan.items:
            if item.decoded is not None:
                image, _ = add_image(
                    s,
                    ws,
                    dataset_id,  # type: ignore[arg-type]
                    item.decoded,
                    item.original_key,
                    meta={"arena": {"campaign": campaign.name, "system": item.system, "prompt": item.prompt}},
                )
                item.image_id = image.id
            row = EvalImage(
                campaign_id=campaign.id,
                system_id=system_ids[item.system],
                image_id=item.image_id,
                caption_id=item.caption_id,
                prompt=item.prompt,
                category=item.category,
                seed=item.seed,
                elements=item.elements,
            )
            s.add(row)
            s.flush()
            eval_ids[id(item)] = row.id  # type: ignore[assignment]
        shown_image = plan.kind == CampaignKind.caption.value
        for (a, b), is_gold in [*((p, False) for p in regular), *((p, True) for p in gold)]:
            s.add(
                EvalPair(
                    campaign_id=campaign.id,
                    a_id=eval_ids[id(a)],
                    b_id=eval_ids[id(b)],
                    a_system_id=system_ids[a.system],
                    b_system_id=system_ids[b.system],
                    image_id=a.image_id if shown_image else None,
                    prompt=a.prompt,
                    category=a.category,
                    seed=a.seed,
                    is_gold=is_gold,
                    gold_answer="a" if is_gold else None,
                )
            )
        s.flush()
        return campaign


def _artifact_meta(session: Session, artifact_id: Any) -> tuple[int | None, dict[str, Any]]:
    if not isinstance(artifact_id, int):
        return None, {}
    artifact = session.get(Artifact, artifact_id)
    if artifact is None:
        return None, {}
    meta = artifact.meta or {}
    return artifact.id, {k: meta[k] for k in ARTIFACT_META_KEYS if k in meta} | {"artifact": artifact.name}


# --------------------------------------------------------------------------- generated datasets


def create_campaign_from_generated(
    ws: Workspace,
    name: str,
    datasets: Sequence[str],
    criteria: Sequence[str],
    *,
    target_per_pair: int = 3,
    repeat_share: float = 0.1,
    gold_share: float = 0.0,
    created_by: int | None = None,
    seed: int = 0,
) -> Campaign:
    """A t2i campaign over images written by the ``generate`` job (``Image.meta["generated"]``).

    Systems are checkpoint labels; a checkpoint generated under both prompt regimes gives two
    systems, the upsampled one named ``"<label> [upsampled]"``. Items are keyed by (raw prompt,
    seed), so every system pair is compared on the same prompt and seed.
    """
    settings = Settings.check(name, criteria, target_per_pair, repeat_share, gold_share, created_by, seed)
    return _write(ws, name, generated_plan(ws, name, datasets, CampaignKind.t2i.value), settings)


def generated_plan(ws: Workspace, name: str, datasets: Sequence[str], kind: str) -> _Plan:
    """Systems and items of the generated images in ``datasets`` (see :func:`create_campaign_from_generated`).

    An image whose record carries its prompt's structure (``structured``) or an ``elements``
    list keeps them on its item (offered as ticks in verdict campaigns, see :mod:`.elements`).
    """
    names = [d.strip() for d in datasets if d.strip()]
    if not names:
        raise ArenaError("name at least one dataset of generated images")
    found: list[tuple[str, Image]] = []
    with read_session(ws) as s:
        _name_free(s, name)
        for ds_name in names:
            dataset = s.exec(select(Dataset).where(Dataset.name == ds_name)).first()
            if dataset is None:
                raise ArenaError(f"no dataset named {ds_name!r}")
            images = list(s.exec(select(Image).where(Image.dataset_id == dataset.id).order_by(Image.id)))
            generated = [im for im in images if isinstance((im.meta or {}).get("generated"), dict)]
            if not generated:
                raise ArenaError(
                    f"dataset {ds_name!r} holds no generated images (no Image.meta['generated']); "
                    "make one with `recap-studio generate`"
                )
            found += [(ds_name, im) for im in generated]
        regimes: dict[str, set[str]] = {}
        for _, im in found:
            g = im.meta["generated"]  # type: ignore[index]
            regimes.setdefault(str(g.get("checkpoint") or "?"), set()).add(str(g.get("regime") or "raw"))
        systems: dict[str, dict[str, Any]] = {}
        items: list[_Item] = []
        errors: list[str] = []
        for ds_name, im in found:
            g = im.meta["generated"]  # type: ignore[index]
            label = str(g.get("checkpoint") or "").strip()
            prompt = str(g.get("prompt") or "").strip()
            if not label or not prompt:
                errors.append(
                    f"image {im.original_key} of {ds_name!r}: meta['generated'] lacks checkpoint or prompt"
                )
                continue
            regime = str(g.get("regime") or "raw")
            system = f"{label} [upsampled]" if regime == "upsampled" and len(regimes[label]) > 1 else label
            if system not in systems:
                artifact_id, art_meta = _artifact_meta(s, g.get("artifact_id"))
                systems[system] = {
                    "source": "generated",
                    "checkpoint": label,
                    "checkpoint_ref": g.get("checkpoint_ref"),
                    "regime": regime,
                    "upsampler": g.get("upsampler"),
                    "datasets": [],
                    "run_ids": [],
                    "artifact_id": artifact_id,
                    "mix": None,
                    "captioners": None,
                    "caption_condition": None,
                    **art_meta,
                }
            meta = systems[system]
            if ds_name not in meta["datasets"]:
                meta["datasets"].append(ds_name)
            if g.get("run_id") is not None and g["run_id"] not in meta["run_ids"]:
                meta["run_ids"].append(g["run_id"])
            seed_value = g.get("seed")
            elements = None
            if kind == CampaignKind.verdict.value:  # the ticks only verdicts offer
                record = g.get("structured") if isinstance(g.get("structured"), dict) else g
                try:
                    elements = elements_from_record(record, f"image {im.original_key} of {ds_name!r}")
                except ArenaError as exc:
                    errors.append(str(exc))
                    continue
            items.append(
                _Item(
                    system=system,
                    key=(prompt, seed_value),
                    prompt=prompt,
                    category=g.get("category"),
                    seed=int(seed_value) if isinstance(seed_value, int) else None,
                    image_id=im.id,
                    elements=elements,
                )
            )
    if errors:
        raise RowErrors("generated images", errors)
    return _Plan(kind, "generated", systems, items, meta={"datasets": names})


# --------------------------------------------------------------------------- folders + prompts CSV


def _read_rows(
    path: Path, required: Sequence[str], optional: Sequence[str]
) -> list[tuple[int, dict[str, str]]]:
    """Rows of a CSV as (line number, row); a missing column or an unreadable file is an ArenaError."""
    try:
        fh = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise ArenaError(f"cannot read {path}: {exc.strerror or exc}") from None
    with fh:
        reader = csv.DictReader(fh)
        try:
            header = [h.strip() for h in reader.fieldnames or []]
            reader.fieldnames = header
            missing = [c for c in required if c not in header]
            if missing:
                raise ArenaError(
                    f"{path.name}: missing column(s) {', '.join(missing)}; expected "
                    f"{','.join(required)}[,{','.join(optional)}] (found {','.join(header) or 'no header'})"
                )
            rows = []
            for row in reader:
                if any(k is None for k in row):  # more cells than the header has
                    rows.append((reader.line_num, {"__extra__": "1", **{k: v for k, v in row.items() if k}}))
                else:
                    # csv_text: a cell our own export quoted against formulas reads back as it was
                    rows.append((reader.line_num, {k: csv_text(v or "").strip() for k, v in row.items()}))
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ArenaError(
                f"{path.name}: not a readable UTF-8 CSV (line {reader.line_num}): {exc}"
            ) from None
    if not rows:
        raise ArenaError(f"{path.name} has a header but no rows")
    return rows


def create_campaign_from_folders(
    ws: Workspace,
    name: str,
    root: Path,
    prompts_csv: Path,
    criteria: Sequence[str],
    *,
    target_per_pair: int = 3,
    repeat_share: float = 0.1,
    gold_share: float = 0.0,
    created_by: int | None = None,
    seed: int = 0,
) -> Campaign:
    """A t2i campaign over images made elsewhere: ``root/<system>/<file>`` listed in a CSV.

    CSV columns ``system,file,prompt[,category][,seed][,caption_condition]``. Images are
    decoded and checked like any import (corrupt, truncated, unsafe paths refused) and stored
    in the dataset ``arena-<name>``; a system whose name is a t2i artifact's name gets that
    artifact's caption mix and captioners.
    """
    settings = Settings.check(name, criteria, target_per_pair, repeat_share, gold_share, created_by, seed)
    return _write(ws, name, folders_plan(ws, name, root, prompts_csv, CampaignKind.t2i.value), settings)


def folders_plan(ws: Workspace, name: str, root: Path, prompts_csv: Path, kind: str) -> _Plan:
    """Systems and decoded items of ``root/<system>/<file>`` listed in ``prompts_csv``."""
    root = Path(root)
    if not root.is_dir():
        raise ArenaError(f"image folder {root} does not exist or is not a folder")
    rows = _read_rows(Path(prompts_csv), FOLDER_COLUMNS, FOLDER_OPTIONAL)
    errors: list[str] = []
    items: list[_Item] = []
    conditions: dict[str, str] = {}
    seen: dict[tuple[str, str, int | None], int] = {}
    for line, row in rows:
        if "__extra__" in row:
            errors.append(f"line {line}: more cells than the header has columns")
            continue
        system, file, prompt = row.get("system", ""), row.get("file", ""), row.get("prompt", "")
        empty = [c for c, v in (("system", system), ("file", file), ("prompt", prompt)) if not v]
        if empty:
            errors.append(f"line {line}: empty {', '.join(empty)}")
            continue
        seed_value: int | None = None
        if row.get("seed"):
            try:
                seed_value = int(row["seed"])
            except ValueError:
                errors.append(f"line {line}: seed {row['seed']!r} is not a whole number")
                continue
        condition = row.get("caption_condition", "")
        if condition and conditions.setdefault(system, condition) != condition:
            errors.append(
                f"line {line}: caption_condition {condition!r} differs from {conditions[system]!r} "
                f"given earlier for system {system!r}"
            )
            continue
        key = (system, prompt, seed_value)
        if key in seen:
            errors.append(
                f"line {line}: system {system!r} already has an image for this prompt and seed (line {seen[key]})"
            )
            continue
        seen[key] = line
        shown = f"{system}/{file}"
        try:
            path = join_inside(join_inside(root, system), file)
            fd, st = open_regular(path, shown)
            try:
                data = read_fd(fd, st, shown)
            finally:
                os.close(fd)
            decoded = decode_image(data)
        except (ItemError, BadImage) as exc:
            errors.append(f"line {line}: {shown}: {exc}")
            continue
        items.append(
            _Item(
                system=system,
                key=(prompt, seed_value),
                prompt=prompt,
                category=row.get("category") or None,
                seed=seed_value,
                decoded=decoded,
                original_key=shown,
            )
        )
    if errors:
        raise RowErrors(str(prompts_csv), errors)
    systems: dict[str, dict[str, Any]] = {}
    with read_session(ws) as s:
        _name_free(s, name)
        for system in {it.system for it in items}:
            artifact = s.exec(
                select(Artifact)
                .where(Artifact.kind == ArtifactKind.t2i, Artifact.name == system)
                .order_by(Artifact.id.desc())  # type: ignore[union-attr]
            ).first()
            artifact_id, art_meta = _artifact_meta(s, artifact.id if artifact else None)
            systems[system] = {
                "source": "folder",
                "folder": str(root / system),
                "artifact_id": artifact_id,
                "mix": None,
                "captioners": None,
                **art_meta,
                "caption_condition": conditions.get(system) or art_meta.get("caption_condition"),
            }
    return _Plan(
        kind,
        "folders",
        systems,
        items,
        meta={"root": str(root), "prompts_csv": str(prompts_csv)},
        import_dataset=f"arena-{name.strip()}",
    )


# --------------------------------------------------------------------------- caption campaigns


_STATUS_RANK = {
    CaptionStatus.final.value: 0,
    CaptionStatus.approved.value: 0,
    CaptionStatus.submitted.value: 1,
}


def _captioners(session: Session, run_ids: set[int]) -> list[str]:
    refs: set[str] = set()
    for run in session.exec(select(Run).where(Run.id.in_(run_ids))) if run_ids else ():  # type: ignore[union-attr]
        ref = (run.config or {}).get("captioner") or (run.config or {}).get("model")
        if ref:
            refs.add(str(ref))
    return sorted(refs)


def create_caption_campaign(
    ws: Workspace,
    name: str,
    dataset: str,
    kinds: Sequence[str],
    *,
    criteria: Sequence[str] = ("describes the image better",),
    max_images: int = 200,
    target_per_pair: int = 3,
    repeat_share: float = 0.1,
    gold_share: float = 0.0,
    created_by: int | None = None,
    seed: int = 0,
) -> Campaign:
    """A caption campaign: systems are caption kinds, an item is one image's caption of a kind.

    Per image and kind the current caption is used, reviewed ones (final/approved) before
    submitted ones; rejected captions never enter. Images with at least two of the kinds are
    eligible; ``max_images`` of them are drawn at random (seeded).
    """
    settings = Settings.check(name, criteria, target_per_pair, repeat_share, gold_share, created_by, seed)
    wanted = list(dict.fromkeys(k.strip() for k in kinds if k.strip()))
    if len(wanted) < 2:
        raise ArenaError(f"a caption campaign compares at least two caption kinds, got {wanted or 'none'}")
    if max_images < 1:
        raise ArenaError(f"max images must be at least 1, not {max_images}")
    with read_session(ws) as s:
        _name_free(s, name)
        ds = s.exec(select(Dataset).where(Dataset.name == dataset.strip())).first()
        if ds is None:
            raise ArenaError(f"no dataset named {dataset.strip()!r}")
        rows = s.exec(
            select(Caption, Image.original_key)
            .join(Image, Image.id == Caption.image_id)
            .where(
                Image.dataset_id == ds.id,
                Caption.kind.in_(wanted),  # type: ignore[attr-defined]
                Caption.is_current == True,  # noqa: E712
                Caption.status != CaptionStatus.rejected.value,
            )
        ).all()
        best: dict[tuple[int, str], tuple[tuple[int, int], Caption, str]] = {}
        for caption, key in rows:
            if not caption.text.strip():
                continue
            rank = (_STATUS_RANK.get(caption.status, 2), -(caption.id or 0))
            slot = (caption.image_id, caption.kind)
            if slot not in best or rank < best[slot][0]:
                best[slot] = (rank, caption, key)
        per_image: dict[int, dict[str, tuple[Caption, str]]] = {}
        for (image_id, kind), (_, caption, key) in best.items():
            per_image.setdefault(image_id, {})[kind] = (caption, key)
        eligible = sorted(i for i, by_kind in per_image.items() if len(by_kind) >= 2)
        counts = {k: sum(1 for by_kind in per_image.values() if k in by_kind) for k in wanted}
        absent = [k for k, n in counts.items() if n == 0]
        if absent:
            raise ArenaError(
                f"dataset {ds.name!r} has no usable caption of kind(s) {', '.join(absent)} "
                f"(found: {', '.join(f'{k}={n}' for k, n in counts.items())})"
            )
        if not eligible:
            raise ArenaError(f"no image of {ds.name!r} has captions of two of the kinds {', '.join(wanted)}")
        chosen = sorted(random.Random(seed).sample(eligible, min(max_images, len(eligible))))
        items: list[_Item] = []
        run_ids: dict[str, set[int]] = {k: set() for k in wanted}
        for image_id in chosen:
            for kind, (caption, key) in sorted(per_image[image_id].items()):
                items.append(
                    _Item(system=kind, key=image_id, prompt=key, image_id=image_id, caption_id=caption.id)
                )
                if caption.run_id is not None:
                    run_ids[kind].add(caption.run_id)
        systems = {
            kind: {
                "source": "caption",
                "kind": kind,
                "captioners": _captioners(s, run_ids[kind]) or ["human/imported"],
                "captioner": ", ".join(_captioners(s, run_ids[kind])) or "human/imported",
                "caption_condition": kind,
                "mix": None,
            }
            for kind in wanted
            if counts[kind]
        }
        total = s.exec(select(func.count()).select_from(Image).where(Image.dataset_id == ds.id)).one()
    plan = _Plan(
        CampaignKind.caption.value,
        "captions",
        systems,
        items,
        meta={"dataset": ds.name, "kinds": wanted, "images": len(chosen), "dataset_images": total},
    )
    return _write(ws, name, plan, settings)
