"""``recaption``: caption every image of a dataset with a captioner → ``recap_short`` / ``recap_long``.

RECAP step 3. The loop is deliberately one page: plan which captioner writes which kind,
then per captioner stream the images that still lack a caption through a DataLoader
(workers read, decode and preprocess the next batches while this process generates) and
write each batch's captions in **one transaction**.

Why it survives any kill: a caption row is the only record of progress, and the database
holds a unique index on (image, kind, run). Before the loop the job asks which (image, kind)
pairs this run already wrote and skips them; the batch insert is ``ON CONFLICT DO NOTHING``,
so even a batch that was generated, written and then lost its acknowledgement to a kill -9
is written at most once on retry. A batch killed between ``generate`` and commit simply did
not happen and is redone. Unreadable images are logged, counted (metric ``skipped``, one row
per image) and left without a caption; the run goes on.

Engines: ``engine local`` (the default) runs the loop above in this process; ``engine ray`` plans
the same way and hands the images to Ray Data actors on a cluster, writing what comes back with
the same rows, provenance and idempotent insert (:mod:`training.ray_engine`).

Token limits: each style has its own ``max_new_tokens`` unless the run sets one for both
(:data:`backend.jobs.configs.DEFAULT_MAX_NEW_TOKENS`: long captions need far more than short
ones). A caption whose generation stopped at that limit rather than at an end token is cut;
its provenance says so (``hit_token_limit``), the log counts such captions per kind, and
Review's statistics show their share.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from sqlmodel import select

from backend.datasets import get_dataset
from backend.db import read_session, write_session
from backend.jobs import store
from backend.jobs.configs import (
    CAPTION_KINDS_FOR_STYLE,
    CAPTIONER_ARTIFACT,
    RecaptionConfig,
    max_new_tokens_for,
    parse_config,
)
from backend.jobs.context import JobContext
from backend.models import Caption
from backend.references import ResolvedModel, open_reference
from backend.shards import by_reference_count
from backend.workspace import Workspace
from training.adapters import GenerationSettings, load_captioner
from training.data import (
    BatchPreparer,
    ImageRef,
    dataset_images,
    make_loader,
    set_torch_threads,
    to_device,
)
from training.devices import effective_dtype, pick_device

SOURCE = "recaption"


class RecaptionError(ValueError):
    """A recaption that cannot run as configured; the message says what to change."""


# --------------------------------------------------------------------------- planning


@dataclass
class Pass:
    """One captioner and the caption kinds it writes (kind -> prompt, None = its default)."""

    model: ResolvedModel
    prompts: dict[str, str | None] = field(default_factory=dict)


def _captioner_for_style(ws: Workspace, main: ResolvedModel, style: str) -> tuple[ResolvedModel, str | None]:
    """The captioner (and trained prompt) that writes ``style`` when the user named ``main``.

    A fine-tune with ``both_mode="separate"`` registers one artifact per style; naming either
    one with style ``both`` finds its sibling from the same run. A captioner fine-tuned for
    one style is refused for the other: its captions would be mislabelled.
    """
    trained = main.meta.get("style")
    if main.artifact is None or trained is None:  # a hub id, a folder, an imported artifact
        return main, None
    prompts = main.meta.get("prompts") or {}
    if trained == style or (trained == "both" and style in prompts):
        return main, prompts.get(style)
    for artifact in store.list_artifacts(ws, kind=CAPTIONER_ARTIFACT, run_id=main.artifact.run_id):
        if (artifact.meta or {}).get("style") == style:
            sibling = ResolvedModel(
                artifact.name, str(store.artifact_path(ws, artifact)), "artifact", artifact
            )
            return sibling, (artifact.meta.get("prompts") or {}).get(style)
    raise RecaptionError(
        f"captioner {main.label!r} was fine-tuned for {trained} captions and run "
        f"#{main.artifact.run_id} has no {style} captioner; use style {trained} or name a {style} captioner"
    )


def plan_passes(ws: Workspace, cfg: RecaptionConfig) -> list[Pass]:
    """Group the requested kinds by the captioner that writes them (one model load each)."""
    main = open_reference(ws, cfg.captioner, expected=CAPTIONER_ARTIFACT, field="captioner")
    passes: dict[str, Pass] = {}
    for kind in CAPTION_KINDS_FOR_STYLE[cfg.style]:
        model, prompt = _captioner_for_style(ws, main, kind.removeprefix("recap_"))
        if cfg.prompt is not None:
            prompt = cfg.prompt  # the user's prompt overrides the trained one
        passes.setdefault(model.source, Pass(model)).prompts[kind] = prompt
    return list(passes.values())


def same_prompt_warning(passes: list[Pass]) -> str | None:
    """Both kinds from one model with one prompt are the same captions under two names: legal
    (a user may want a baseline), but worth saying in the log."""
    for p in passes:
        if len(p.prompts) > 1 and len(set(p.prompts.values())) == 1:
            return (
                f"{p.model.label} writes {' and '.join(p.prompts)} with the same prompt "
                f"({next(iter(p.prompts.values()))!r}): expect identical captions; fine-tune per style "
                "or set a prompt per run"
            )
    return None


# --------------------------------------------------------------------------- database


def written_pairs(ws: Workspace, run_id: int) -> set[tuple[int, str]]:
    """(image id, kind) of every caption this run already wrote: what a resume skips."""
    with read_session(ws) as s:
        rows = s.exec(select(Caption.image_id, Caption.kind).where(Caption.run_id == run_id)).all()
    return {(int(image_id), kind) for image_id, kind in rows}


def insert_captions(ws: Workspace, rows: list[dict[str, Any]]) -> int:
    """Write one batch in one transaction; rows that (image, kind, run) already has are skipped
    by the unique index (``ON CONFLICT DO NOTHING``). Returns the number of new rows.

    A Core ``executemany`` of one cached statement: the ORM bulk path and a multi-row
    ``VALUES`` (a new statement to compile per batch) cost about a tenth of a tiny model's
    throughput.
    """
    if not rows:
        return 0
    with write_session(ws) as s:
        connection = s.connection()
        if connection.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        table = Caption.__table__  # type: ignore[attr-defined]
        result = connection.execute(insert(table).on_conflict_do_nothing(), rows)
        return int(result.rowcount or 0)


def caption_template(run_id: int) -> dict[str, Any]:
    """Every column of a recaption row with its default, built once per batch (a bulk insert
    bypasses the ORM's defaults; one model validation per row cost ~6 % of throughput)."""
    return Caption(image_id=0, kind="", text="", run_id=run_id, source=SOURCE).model_dump(exclude={"id"})


def caption_row(
    template: dict[str, Any], ref: ImageRef, kind: str, text: str, provenance: dict[str, Any]
) -> dict[str, Any]:
    return {**template, "image_id": ref.image_id, "kind": kind, "text": text, "provenance": provenance}


# --------------------------------------------------------------------------- the job


@dataclass
class Timing:
    """Where this attempt's time went (logged, and recorded as metrics for benchmarks)."""

    started: float = field(default_factory=time.perf_counter)
    load_s: float = 0.0
    generate_s: float = 0.0
    write_s: float = 0.0
    images: int = 0
    skipped: int = 0
    captions: dict[str, int] = field(default_factory=dict)  # written this attempt, per kind
    cut: dict[str, int] = field(default_factory=dict)  # of those, stopped by the token limit

    def summary(self) -> dict[str, float]:
        wall = time.perf_counter() - self.started
        return {
            "wall_s": wall,
            "load_s": self.load_s,
            "generate_s": self.generate_s,
            "write_s": self.write_s,
            "images": self.images,
            "skipped": self.skipped,
            "images_per_s": self.images / wall if wall > 0 else 0.0,
            "generate_share": self.generate_s / wall if wall > 0 else 0.0,
        }


@dataclass
class Plan:
    """What one attempt of a run does, whatever the engine: the images, which captioner writes
    which kinds, the token limits, and what the run already wrote (a resume skips it)."""

    images: list[ImageRef]
    passes: list[Pass]
    settings: dict[str, GenerationSettings]
    written: set[tuple[int, str]]
    kinds: list[str]
    done: int
    total: int


def make_plan(ctx: JobContext, cfg: RecaptionConfig) -> Plan:
    ws = ctx.ws
    settings = {
        kind: GenerationSettings(
            max_new_tokens=max_new_tokens_for(kind.removeprefix("recap_"), cfg.max_new_tokens),
            num_beams=cfg.num_beams,
        )
        for kind in CAPTION_KINDS_FOR_STYLE[cfg.style]
    }
    images = dataset_images(ws, cfg.dataset)
    passes = plan_passes(ws, cfg)
    if warning := same_prompt_warning(passes):
        ctx.logger.warning(warning)
    kinds = [kind for p in passes for kind in p.prompts]
    written = written_pairs(ws, ctx.run_id)
    total = len(images) * len(kinds)
    done = sum(1 for ref in images for kind in kinds if (ref.image_id, kind) in written)
    return Plan(images, passes, settings, written, kinds, done, total)


def run(ctx: JobContext) -> None:
    cfg: RecaptionConfig = parse_config("recaption", ctx.config)
    plan = make_plan(ctx, cfg)
    if cfg.engine == "ray":
        from training.ray_engine import recaption_on_ray

        ctx.logger.info(
            "recaption %s on ray: %d images x %s, %d already written; batch %d; token limit %s",
            cfg.dataset, len(plan.images), plan.kinds, plan.done, cfg.batch_size,
            ", ".join(f"{k} {plan.settings[k].max_new_tokens}" for k in plan.kinds),
        )  # fmt: skip
        ctx.progress(plan.done, plan.total, f"{plan.done}/{plan.total} captions")
        recaption_on_ray(ctx, cfg, plan)
        return
    run_local(ctx, cfg, plan)


def run_local(ctx: JobContext, cfg: RecaptionConfig, plan: Plan) -> None:
    """The passes in this process: a DataLoader feeds batches to one model on this machine."""
    ws, log = ctx.ws, ctx.logger
    with read_session(ws) as s:
        dataset_id = int(get_dataset(s, cfg.dataset).id)  # type: ignore[arg-type]
    if by_reference := by_reference_count(ws, dataset_id):
        raise RecaptionError(
            f"{by_reference} images of {cfg.dataset!r} are registered by reference (they stay in their "
            "shards): recaption it with engine ray, which reads them out of the shards"
        )
    device = pick_device(cfg.device, log)
    dtype = effective_dtype(cfg.dtype, device, log)
    set_torch_threads(cfg.torch_threads, reserved=cfg.num_workers)
    images, passes, settings, written, kinds = plan.images, plan.passes, plan.settings, plan.written, plan.kinds
    done, total = plan.done, plan.total
    timing = Timing()
    log.info(
        "recaption %s: %d images x %s, %d already written; device %s, dtype %s, batch %d, workers %d, "
        "torch threads %d; token limit %s",
        cfg.dataset, len(images), kinds, done, device, dtype, cfg.batch_size, cfg.num_workers,
        torch.get_num_threads(), ", ".join(f"{k} {settings[k].max_new_tokens}" for k in kinds),
    )  # fmt: skip
    ctx.progress(done, total, f"{done}/{total} captions")

    for p in passes:
        missing = {ref.image_id: [k for k in p.prompts if (ref.image_id, k) not in written] for ref in images}
        todo = [ref for ref in images if missing[ref.image_id]]
        if not todo:
            continue
        started = time.perf_counter()
        adapter = load_captioner(p.model.source, device=str(device), dtype=dtype)  # type: ignore[arg-type]
        timing.load_s += time.perf_counter() - started
        provenance = {
            kind: {
                "captioner": p.model.label,
                "artifact_id": p.model.artifact.id if p.model.artifact is not None else None,
                "family": adapter.family,
                "prompt": prompt if prompt is not None else adapter.default_prompt,
                "generation": settings[kind].to_dict(),
                "dtype": dtype,
                "attn_implementation": adapter.attn_implementation,
            }
            for kind, prompt in p.prompts.items()
        }
        log.info(
            "captioner %s (%s) writes %s for %d images",
            p.model.label,
            adapter.family,
            list(p.prompts),
            len(todo),
        )
        loader = make_loader(
            todo,
            BatchPreparer(adapter, p.prompts),
            cfg.batch_size,
            cfg.num_workers,
            pin_memory=device.type == "cuda",
        )
        for batch in loader:
            for ref, reason in batch.failed:
                log.warning("skipping image %d (%s): %s", ref.image_id, ref.rel_path, reason)
                ctx.metric_once(ref.image_id, "skipped", 1.0)
                timing.skipped += 1
            rows, template = [], caption_template(ctx.run_id)
            for kind, inputs in batch.inputs.items():
                started = time.perf_counter()
                made = adapter.generate_captions(to_device(inputs, device), **settings[kind].as_kwargs())
                timing.generate_s += time.perf_counter() - started
                new = [
                    (ref, c) for ref, c in zip(batch.refs, made, strict=True) if kind in missing[ref.image_id]
                ]
                rows += [
                    caption_row(
                        template,
                        ref,
                        kind,
                        c.text,
                        {**provenance[kind], "hit_token_limit": c.hit_token_limit},
                    )
                    for ref, c in new
                ]
                timing.captions[kind] = timing.captions.get(kind, 0) + len(new)
                timing.cut[kind] = timing.cut.get(kind, 0) + sum(c.hit_token_limit for _, c in new)
            started = time.perf_counter()
            insert_captions(ws, rows)
            timing.write_s += time.perf_counter() - started
            timing.images += len(batch.refs)
            done += sum(len(missing[ref.image_id]) for ref in [*batch.refs, *(f[0] for f in batch.failed)])
            ctx.progress(done, total, f"{done}/{total} captions, {timing.skipped} images skipped")
            if ctx.stop_requested:
                log.info("stop requested: leaving after %d/%d captions", done, total)
                return
        del loader, adapter
        if device.type == "cuda":
            torch.cuda.empty_cache()  # the next pass loads another captioner

    summary = timing.summary()
    for name in ("images_per_s", "generate_share"):
        ctx.metric(done, name, summary[name])
    for kind, n in timing.captions.items():
        cut = timing.cut.get(kind, 0)
        ctx.metric(done, f"hit_token_limit/{kind}", float(cut))
        (log.warning if cut else log.info)(
            "%d of the %d %s captions written now stopped at the %d-token limit (cut, flagged "
            "hit_token_limit in their provenance)%s",
            cut, n, kind, settings[kind].max_new_tokens,
            "; raise max_new_tokens to let them end" if cut else "",
        )  # fmt: skip
    log.info("recaption finished: %s", {k: round(v, 3) for k, v in summary.items()})
