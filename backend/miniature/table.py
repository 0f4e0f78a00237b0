"""The RECAP-style table of ``experiment miniature``: arms, chance, the difference, caption accuracy.

Plain functions over stored data (no torch, no detector): the experiment job detects objects in
the generated images and hands the detections here. Every number carries a 95% bootstrap interval
over prompts; every arm's metric sits beside its mismatched-prompt baseline (the same images
scored against other prompts); the difference RECAP Mix − Alttext comes from a *paired* bootstrap
over the held-out prompts both arms were asked (:func:`backend.compositional.metrics.paired_difference`).

Caption accuracy compares each caption kind with the ground truth of the images it describes
(:mod:`backend.miniature.accuracy`): machine kinds and alt-text on the images *outside* the human
set (the captioners were fine-tuned on the human set, so scoring them there would flatter them),
the human kinds on the human set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image as PILImage
from sqlmodel import col, select

from backend.compositional.intervals import DEFAULT_ROUNDS, MetricValue
from backend.compositional.metrics import (
    Detection,
    ScoringSettings,
    paired_contrast,
    score_detections,
    score_image,
)
from backend.compositional.prompts import StructuredPrompt
from backend.datasets import get_dataset
from backend.db import read_session
from backend.miniature.accuracy import ASPECTS, caption_accuracy, summarise
from backend.miniature.presets import CONTROL, TABLE_METRICS, TREATMENT
from backend.miniature.world import Scene
from backend.models import HUMAN_KINDS, Caption, Image

#: caption kinds whose accuracy the table reports, in its order
ACCURACY_KINDS = ("alttext", "recap_short", "recap_long", "human_short", "human_long", "truth")
METRIC_LABELS = {"soa_c": "SOA-C", "soa_i": "SOA-I", "ca": "CA ↓", "pa_det": "PA", "geneval": "GenEval"}
LOWER_IS_BETTER = {"ca"}


@dataclass
class ArmImages:
    """One arm's generated images: the prompt (index into the shared prompt list) and detections of each."""

    arm: str
    mix: str
    artifact: str
    prompt_index: list[int] = field(default_factory=list)
    detections: list[list[Detection]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)


def sort_generated(images: Sequence[Any], arms: Mapping[str, ArmImages]) -> list[StructuredPrompt]:
    """File each generated image (``.meta`` and ``.path``, as ``t2i_eval.generated_images`` gives
    them) under its arm by the checkpoint artifact that made it, and return the prompts they share.

    Only raw images count (no upsampled regime); images of other checkpoints are left out. Each
    arm's ``prompt_index`` points into the returned list, in first-seen order, so every arm is
    scored against the same prompt objects and the paired difference can match them.
    """
    prompt_of: dict[str, int] = {}
    prompts: list[StructuredPrompt] = []
    for im in images:
        arm = arms.get(str(im.meta.get("artifact_id")))
        if arm is None or im.meta.get("regime") != "raw":
            continue
        structured = StructuredPrompt.from_json(im.meta["structured"])
        index = prompt_of.setdefault(structured.prompt, len(prompts))
        if index == len(prompts):
            prompts.append(structured)
        arm.prompt_index.append(index)
        arm.paths.append(im.path)
        arm.seeds.append(int(im.meta.get("seed", 0)))
    return prompts


def detect_arm(arm: ArmImages, detector: Any) -> None:
    """Fill ``arm.detections`` with every object ``detector`` finds in each of the arm's images.

    No queries, as the probe read them: the mismatched-prompt baseline scores the same detections
    against other prompts' classes.
    """
    arm.detections = [list(d) for d in detector.detect([PILImage.open(p).convert("RGB") for p in arm.paths])]


def arm_rows(
    prompts: Sequence[StructuredPrompt], arms: Sequence[ArmImages], *, rounds: int = DEFAULT_ROUNDS, seed: int = 0
) -> dict[str, Any]:
    """``arms`` (each metric with interval and chance), ``chance`` (per metric, per arm) and
    ``differences`` (treatment − control per metric, paired over prompts)."""
    settings = ScoringSettings()
    out_arms, chance = [], {m: {} for m in TABLE_METRICS}
    for arm in arms:
        values = score_detections(
            prompts, arm.detections, arm.prompt_index, TABLE_METRICS, settings=settings, rounds=rounds, seed=seed
        )
        out_arms.append({
            "arm": arm.arm, "caption_condition": arm.mix, "artifact": arm.artifact, "images": len(arm.detections),
            "metrics": {m: values[m].as_json() for m in TABLE_METRICS},
        })  # fmt: skip
        for m in TABLE_METRICS:
            mv = values[m]
            chance[m][arm.arm] = MetricValue(mv.chance, mv.chance_lower, mv.chance_upper, mv.n).as_json()
    by_name = {a.arm: a for a in arms}
    differences: dict[str, Any] = {}
    if TREATMENT in by_name and CONTROL in by_name:
        differences = arm_difference(prompts, by_name[TREATMENT], by_name[CONTROL], rounds=rounds, seed=seed)
    return {"arms": out_arms, "chance": chance, "differences": differences}


def arm_difference(
    prompts: Sequence[StructuredPrompt],
    treatment: ArmImages,
    control: ArmImages,
    *,
    rounds: int = DEFAULT_ROUNDS,
    seed: int = 0,
) -> dict[str, Any]:
    """Per metric, ``treatment`` − ``control`` paired over the prompts both arms were asked, with
    its interval, whether it excludes zero and which arm it then favours (CA: lower is better).

    The table's row is RECAP Mix − Alttext; probes compare other pairs of arms the same way."""
    out: dict[str, Any] = {}
    for m, d in arm_contrast(prompts, [(1.0, treatment), (-1.0, control)], rounds=rounds, seed=seed).items():
        d.pop("terms")
        winner = None
        if d["interval_excludes_zero"]:  # then the value is finite
            better = (d["value"] < 0) if m in LOWER_IS_BETTER else (d["value"] > 0)
            winner = treatment.arm if better else control.arm
        out[m] = {**d, "treatment": treatment.arm, "control": control.arm, "favours": winner}
    return out


def arm_contrast(
    prompts: Sequence[StructuredPrompt],
    terms: Sequence[tuple[float, ArmImages]],
    *,
    rounds: int = DEFAULT_ROUNDS,
    seed: int = 0,
) -> dict[str, Any]:
    """Per metric, ``sum(w * metric(arm))`` over ``(w, arm)`` terms, paired over the prompts, with
    its interval and whether it excludes zero.

    Why: a probe that crosses two caption mixes with two model designs asks whether the design
    changes RECAP Mix − Alttext, an interaction ``(a - b) - (c - d)`` whose interval needs one
    paired resample of all four arms (:func:`backend.compositional.metrics.paired_contrast`). The
    sign is left as computed: for CA (lower is better) a negative contrast favours the + terms.
    """
    settings = ScoringSettings()
    arms = [
        ([score_image(prompts[p], d, settings) for p, d in zip(arm.prompt_index, arm.detections, strict=True)],
         arm.prompt_index)
        for _, arm in terms
    ]  # fmt: skip
    weights = [float(w) for w, _ in terms]
    out: dict[str, Any] = {}
    for m in TABLE_METRICS:
        c = paired_contrast(arms, weights, m, rounds=rounds, seed=seed)
        excludes = math.isfinite(c.lower) and (c.lower > 0 or c.upper < 0)
        out[m] = {**c.as_json(), "terms": [[w, arm.arm] for w, arm in terms], "interval_excludes_zero": excludes}
    return out


def caption_accuracy_by_kind(
    ws: Any, dataset: str, kinds: Sequence[str] = ACCURACY_KINDS, *, rounds: int = DEFAULT_ROUNDS, seed: int = 0
) -> dict[str, Any]:
    """Precision and recall per aspect for each kind's current captions against the ground truth."""
    with read_session(ws) as s:
        ds = get_dataset(s, dataset)
        rows = s.exec(
            select(Caption.kind, Caption.text, Image.id, Image.meta)
            .join(Image, col(Image.id) == col(Caption.image_id))
            .where(Image.dataset_id == ds.id, col(Caption.kind).in_(list(kinds)), Caption.is_current == True)  # noqa: E712
            .order_by(col(Caption.id))
        ).all()
    human_set = {int(image_id) for kind, _, image_id, _ in rows if kind in HUMAN_KINDS}
    texts: dict[str, dict[int, tuple[str, Scene]]] = {k: {} for k in kinds}
    for kind, text, image_id, meta in rows:
        if not (meta or {}).get("objects"):
            continue
        on_human_set = int(image_id) in human_set
        if (kind in HUMAN_KINDS) != on_human_set:
            continue
        texts[kind][int(image_id)] = (text, Scene.from_meta(meta))  # the newest current caption wins
    out: dict[str, Any] = {}
    for kind in kinds:
        items = sorted(texts[kind].items())
        if not items:
            continue
        scores = [caption_accuracy(text, scene) for _, (text, scene) in items]
        summary = summarise(scores, [i for i, _ in items], rounds=rounds, seed=seed)
        out[kind] = {
            **summary.as_json(),
            "images": "human set" if kind in HUMAN_KINDS else "outside the human set",
        }
    return out


def _cell(v: Mapping[str, Any] | None) -> str:
    if not v or v.get("value") is None:
        return "n/a"
    return f"{v['value']:.2f} [{v['lower']:.2f}, {v['upper']:.2f}]"


def _signed(v: Mapping[str, Any]) -> str:
    if v.get("value") is None:
        return "n/a"
    return f"{v['value']:+.2f} [{v['lower']:+.2f}, {v['upper']:+.2f}]"


def to_markdown(table: Mapping[str, Any]) -> str:
    """The table as Markdown: arms, their chance levels, the difference, then caption accuracy."""
    header = "| arm | caption condition | " + " | ".join(METRIC_LABELS[m] for m in TABLE_METRICS) + " |"
    lines = [header, "|" + "---|" * (len(TABLE_METRICS) + 2)]
    for arm in table["arms"]:
        cells = " | ".join(_cell(arm["metrics"][m]) for m in TABLE_METRICS)
        lines.append(f"| {arm['arm']} | `{arm['caption_condition']}` | {cells} |")
    for arm in table["arms"]:
        cells = " | ".join(_cell(table["chance"][m].get(arm["arm"])) for m in TABLE_METRICS)
        lines.append(f"| mismatched prompts ({arm['arm']}'s images) | chance | {cells} |")
    if table.get("differences"):
        cells = " | ".join(_signed(table["differences"][m]) for m in TABLE_METRICS)
        lines.append(f"| **{TREATMENT} − {CONTROL}** (paired) | difference | {cells} |")
    lines.append("")
    lines.append("95% bootstrap intervals over held-out prompts; CA is a count error (lower is better, so a "
                 "negative difference favours RECAP Mix).")  # fmt: skip
    acc = table.get("caption_accuracy") or {}
    if acc:
        lines += ["", "| caption kind | images | " + " | ".join(f"{a} P / R" for a in ASPECTS) + " |",
                  "|" + "---|" * (len(ASPECTS) + 2)]  # fmt: skip
        for kind, a in acc.items():
            cells = " | ".join(f"{_short(a[x]['precision'])} / {_short(a[x]['recall'])}" for x in ASPECTS)
            lines.append(f"| {kind} | {a['n_captions']} ({a['images']}) | {cells} |")
    if table.get("stage_seconds"):
        lines += ["", "| stage | minutes |", "|---|---|"]
        lines += [f"| {k} | {v / 60:.1f} |" for k, v in table["stage_seconds"].items()]
    machine = table.get("machine")
    if machine:  # the CPU kind changes the arithmetic, and a run's draw with it
        extensions = ", ".join(machine.get("vector_extensions") or []) or "none listed"
        lines += ["", f"Computed on: {machine.get('cpu')} ({extensions}), torch {machine.get('torch')} "
                      f"on {machine.get('torch_threads')} threads" + (f", GPU {machine['gpu']}" if machine.get("gpu") else "") + "."]
    return "\n".join(lines) + "\n"


def _short(v: Mapping[str, Any]) -> str:
    return "n/a" if v.get("value") is None else f"{v['value']:.2f}"


def sample_grid(paths: Sequence[str], columns: int, out: Path, scale: int = 2) -> Path:
    """The images side by side (``columns`` per row, each upscaled ``scale``×) in one PNG."""
    if not paths:
        raise ValueError("no images for the grid")
    tiles = [PILImage.open(p).convert("RGB") for p in paths]
    w, h = tiles[0].size
    w, h = w * scale, h * scale
    rows = math.ceil(len(tiles) / columns)
    grid = PILImage.new("RGB", (columns * (w + 2), rows * (h + 2)), (255, 255, 255))
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        grid.paste(tile.resize((w, h), PILImage.Resampling.NEAREST), (c * (w + 2), r * (h + 2)))
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
    return out
