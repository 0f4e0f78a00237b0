"""``miniature``: issue 12's experiment end to end, every stage an ordinary run of its own.

The stages are the jobs users launch — ``miniature_world``, ``miniature_base``,
``captioner_train`` (pre-training on alt-text, then the human set), ``recaption`` (short and
long), ``t2i_train`` (one run per arm: same steps, seed and schedule), ``generate`` and
``t2i_eval`` — created with :func:`backend.jobs.configs.new_run` and driven one after another,
each in its own runner process, so every stage shows in the Runs tab with its progress, logs,
loss curves and samples, and its artifacts load with plain ``from_pretrained``. Settings come
from the preset (:mod:`backend.miniature.presets`), fixed before any result.

This run's own work is the orchestration and the table: it detects the objects in the generated
images with the oracle and builds the RECAP-style table (:mod:`backend.miniature.table`), written
to ``table.json`` / ``table.md`` with a sample grid per arm in ``grids/``.

Resumable after ``kill -9`` at any moment: the stage → run map is saved (atomically) as soon as a
stage's run exists, so a resumed experiment never creates a stage twice. A stage that succeeded
is skipped; one whose runner is still alive (a stage survives its parent: it runs in its own
process group) is followed; one that was interrupted, cancelled or failed is resumed from its
own checkpoints. A stop request cancels the running stage cleanly.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from backend.compositional.loaders import load_structured_jsonl
from backend.jobs import configs, store
from backend.jobs.configs import MiniatureExperimentConfig, parse_config
from backend.jobs.context import JobContext
from backend.jobs.launch import launch, runner_alive
from backend.jobs.models import FINISHED, RESUMABLE, Run, RunStatus
from backend.jobs.scheduler import cancel_run, reconcile_orphans
from backend.miniature.presets import ARM_MIXES, Preset, preset
from backend.miniature.table import (
    ArmImages,
    arm_rows,
    caption_accuracy_by_kind,
    detect_arm,
    sample_grid,
    sort_generated,
    to_markdown,
)
from backend.references import ArtifactKind

POLL_S = 1.0
STATE_FILE = "stages.json"
VALIDATION_PROMPTS = 3


class ExperimentError(RuntimeError):
    """A stage ended without success; the message names it, its run and what to do."""


def slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")


class Experiment:
    """The stages of one experiment run, driven in order; what each produced is read from its run."""

    def __init__(self, ctx: JobContext, cfg: MiniatureExperimentConfig, plan: Preset) -> None:
        self.ctx, self.cfg, self.plan, self.ws = ctx, cfg, plan, ctx.ws
        self.state_path = ctx.run_dir / STATE_FILE
        self.state: dict[str, Any] = {"runs": {}, "seconds": {}}
        if self.state_path.exists():
            self.state = json.loads(self.state_path.read_text())
        self.creator = store.get_run(self.ws, ctx.run_id).created_by
        self.stages = 8 + len(plan.arms)  # world, base, 2 captioner, 2 recaption, arms, generate, eval, table
        self.done = 0

    def save(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2))
        os.replace(tmp, self.state_path)

    # ------------------------------------------------------------------ driving one stage

    def stage(self, key: str, kind: str, values: dict[str, Any]) -> Run | None:
        """Run stage ``key`` (create it once, resume or follow it); None when a stop was requested."""
        log = self.ctx.logger
        run_id = self.state["runs"].get(key)
        if run_id is None:
            run = configs.new_run(self.ws, kind, values, created_by=self.creator)
            self.state["runs"][key] = int(run.id)  # type: ignore[arg-type]
            self.save()
            log.info("stage %s: run #%d (%s) created", key, run.id, kind)
        else:
            run = store.get_run(self.ws, int(run_id))
            if run.status == RunStatus.succeeded.value:
                self.done += 1
                return run
            if run.status in RESUMABLE:
                log.info("stage %s: resuming run #%d (%s: %s)", key, run.id, run.status, run.message)
                run = store.requeue(self.ws, int(run.id))  # type: ignore[arg-type]
        started = time.perf_counter()
        run = self.follow(key, run)
        self.state["seconds"][key] = self.state["seconds"].get(key, 0.0) + time.perf_counter() - started
        self.save()
        if run is None:
            return None
        if run.status != RunStatus.succeeded.value:
            raise ExperimentError(
                f"stage {key}: run #{run.id} ({run.kind}) {run.status}: {run.message.strip()[-600:]}\n"
                f"See `recap-studio runs show {run.id}`; resume this experiment (run #{self.ctx.run_id}) to go on."
            )
        self.done += 1
        return run

    def follow(self, key: str, run: Run) -> Run | None:
        """Start the stage's run if it is queued, then wait for its end, mirroring its progress."""
        while True:
            run = store.get_run(self.ws, int(run.id))  # type: ignore[arg-type]
            if run.status == RunStatus.queued.value:
                with contextlib.suppress(store.JobError):  # the studio's queue worker started it first
                    launch(self.ws, int(run.id))  # type: ignore[arg-type]
                continue
            if run.status in FINISHED:
                return run
            if not runner_alive(run):
                reconcile_orphans(self.ws)  # a stage killed with its parent: marked interrupted
                run = store.get_run(self.ws, int(run.id))  # type: ignore[arg-type]
                if run.status in RESUMABLE:
                    self.ctx.logger.info("stage %s: run #%d was %s; resuming it", key, run.id, run.status)
                    store.requeue(self.ws, int(run.id))  # type: ignore[arg-type]
                    continue
            if self.ctx.stop_requested:
                self.ctx.logger.info("stop requested: cancelling stage %s (run #%d)", key, run.id)
                cancel_run(self.ws, int(run.id))  # type: ignore[arg-type]
                return None
            step = f"{run.done}/{run.total}" if run.total else str(run.done)
            self.ctx.progress(
                self.done, self.stages, f"stage {self.done + 1}/{self.stages} {key} (run #{run.id}): {step} {run.message[:80]}"
            )
            time.sleep(POLL_S)

    def artifact(self, run: Run, kind: ArtifactKind, **meta: Any) -> str:
        """The reference (artifact id) of what ``run`` registered of ``kind`` (with ``meta`` values)."""
        found = [
            a for a in store.list_artifacts(self.ws, kind=kind.value, run_id=run.id)
            if all((a.meta or {}).get(k) == v for k, v in meta.items())
        ]  # fmt: skip
        if not found:
            raise ExperimentError(f"run #{run.id} ({run.kind}) registered no {kind.value} artifact {meta or ''}")
        return str(found[0].id)

    # ------------------------------------------------------------------ the experiment

    def run(self) -> dict[str, Any] | None:
        cfg, plan = self.cfg, self.plan
        ds, seed = cfg.dataset, cfg.seed
        world = self.stage("world", "miniature_world", {
            "dataset": ds, "images": plan.images, "human_images": plan.human_images, "prompts": plan.prompts,
            "seed": seed,
        })  # fmt: skip
        if world is None:
            return None
        prompts_path = Path(json.loads((store.run_dir(self.ws, world) / "corpus.json").read_text())["prompts_path"])
        base = self.stage("base", "miniature_base", {"dataset": ds, "size": plan.size, "vae_steps": plan.vae_steps,
                                                "text_steps": plan.text_steps, "seed": seed})
        if base is None:
            return None
        sd_base = self.artifact(base, ArtifactKind.t2i)
        cap = plan.captioner
        pre = self.stage("captioner_pretrain", "captioner_train", {
            "dataset": ds, "base": self.artifact(base, ArtifactKind.captioner), "captions": "alttext",
            "style": "short", "seed": seed, **cap.pretrain,
        })  # fmt: skip
        if pre is None:
            return None
        fine = self.stage("captioner_finetune", "captioner_train", {
            "dataset": ds, "base": self.artifact(pre, ArtifactKind.captioner), "style": "both",
            "both_mode": "separate", "seed": seed, **cap.finetune,
        })  # fmt: skip
        if fine is None:
            return None
        for style in ("short", "long"):
            done = self.stage(f"recaption_{style}", "recaption", {
                "dataset": ds, "captioner": self.artifact(fine, ArtifactKind.captioner, style=style), "style": style,
                **cap.recaption,
            })  # fmt: skip
            if done is None:
                return None
        validation = [p.prompt for p in load_structured_jsonl(prompts_path)[:VALIDATION_PROMPTS]]
        arms: dict[str, str] = {}
        for arm in plan.arms:
            trained = self.stage(f"t2i {arm}", "t2i_train", {
                "dataset": ds, "base": sd_base, "mix": ARM_MIXES[arm], "seed": seed,
                "validation_prompts": validation, **plan.t2i,
            })  # fmt: skip
            if trained is None:
                return None
            arms[arm] = self.artifact(trained, ArtifactKind.t2i)
        generated_ds = f"{ds}-generated-run{self.ctx.run_id}"
        gen = self.stage("generate", "generate", {
            "prompts": str(prompts_path), "checkpoints": list(arms.values()), "seeds": list(plan.seeds),
            "output_dataset": generated_ds, **plan.generate,
        })  # fmt: skip
        if gen is None:
            return None
        evaluated = self.stage("evaluate", "t2i_eval", {
            "dataset": generated_ds, "metrics": ["soa_c", "soa_i", "ca", "pa_det", "geneval"],
            "detector": "oracle:miniature", "bootstrap_rounds": plan.bootstrap_rounds, "seed": seed,
        })  # fmt: skip
        if evaluated is None:
            return None
        self.ctx.progress(self.done, self.stages, "the table: detecting objects, caption accuracy")
        started = time.perf_counter()
        table = self.table(generated_ds, arms)
        self.state["seconds"]["table"] = time.perf_counter() - started
        self.save()
        table["stage_seconds"] = {**self.state["seconds"], "total": sum(self.state["seconds"].values())}
        table["stage_runs"] = dict(self.state["runs"])
        from training.devices import machine_summary

        table["machine"] = machine_summary()
        return table

    def table(self, generated_ds: str, arms: dict[str, str]) -> dict[str, Any]:
        from training.detectors import load_detector
        from training.jobs.t2i_eval import generated_images

        plan = self.plan
        images, _ = generated_images(self.ws, generated_ds)
        by_arm = {artifact: ArmImages(arm, ARM_MIXES[arm], artifact) for arm, artifact in arms.items()}
        detector = load_detector("oracle:miniature")
        prompts = sort_generated(images, by_arm)
        ordered = [by_arm[a] for a in arms.values()]
        for arm in ordered:
            if not arm.paths:
                raise ExperimentError(f"no generated images of arm {arm.arm} (artifact {arm.artifact}) in {generated_ds}")
            detect_arm(arm, detector)
        result = arm_rows(prompts, ordered, rounds=plan.bootstrap_rounds, seed=self.cfg.seed)
        result["caption_accuracy"] = caption_accuracy_by_kind(
            self.ws, self.cfg.dataset, rounds=plan.bootstrap_rounds, seed=self.cfg.seed
        )
        grids = {}
        for arm in ordered:
            chosen = [k for k, i in enumerate(arm.prompt_index) if i < plan.grid_prompts]
            chosen.sort(key=lambda k: (arm.prompt_index[k], arm.seeds[k]))
            out = sample_grid([arm.paths[k] for k in chosen], len(plan.seeds), self.ctx.run_dir / "grids" / f"{slug(arm.arm)}.png")
            grids[arm.arm] = out.relative_to(self.ws.home).as_posix()
        result["grids"] = grids
        result["grid_prompts"] = [p.prompt for p in prompts[: plan.grid_prompts]]
        result.update({
            "preset": plan.name, "dataset": self.cfg.dataset, "seed": self.cfg.seed, "generated_dataset": generated_ds,
            "prompts": len(prompts), "seeds": list(plan.seeds),
        })  # fmt: skip
        return result


def run(ctx: JobContext) -> None:
    cfg: MiniatureExperimentConfig = parse_config("miniature", ctx.config)
    experiment = Experiment(ctx, cfg, preset(cfg.preset))
    table = experiment.run()
    if table is None:
        ctx.logger.info("stop requested: the experiment stops here; resume it to go on")
        return
    (ctx.run_dir / "table.json").write_text(json.dumps(table, indent=2))
    (ctx.run_dir / "table.md").write_text(to_markdown(table))
    ctx.logger.info("the table:\n%s", to_markdown(table))
    ctx.progress(experiment.stages, experiment.stages, f"done: table in {ctx.run_dir / 'table.md'}")
