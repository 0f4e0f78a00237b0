"""``miniature_world``: build (or complete) the miniature world's corpus as an ordinary run.

All the work is :func:`backend.miniature.corpus.build_corpus` (numpy and PIL, no torch), which
writes through the ordinary backend APIs, a chunk of whole images per transaction, rendered before
it (so the experiment driver's progress writes and the runner's heartbeats never wait long for the
lock; beside a 20,000-image build, a write once every 0.5 s waited 4.1 s at most): a
run killed half-way keeps its finished chunks, and a rerun or a resumed attempt adds only what is
missing. The run's summary
(what was added, where the held-out prompts are) goes to ``corpus.json`` in the run folder, where
the experiment reads the prompts' path.
"""

from __future__ import annotations

import dataclasses
import json
import time

from backend.jobs.configs import MiniatureWorldConfig, parse_config
from backend.jobs.context import JobContext
from backend.miniature.corpus import build_corpus


def run(ctx: JobContext) -> None:
    cfg: MiniatureWorldConfig = parse_config("miniature_world", ctx.config)
    message = f"rendering {cfg.images} scenes with their captions"
    ctx.progress(0, cfg.images, message)
    started = time.perf_counter()
    report = build_corpus(
        ctx.ws, cfg.dataset, cfg.images, cfg.human_images, cfg.seed, n_prompts=cfg.prompts,
        progress=lambda done, total: ctx.progress(done, total, message),
    )  # fmt: skip
    seconds = time.perf_counter() - started
    summary = {**dataclasses.asdict(report), "prompts_path": str(report.prompts_path), "seconds": seconds}
    (ctx.run_dir / "corpus.json").write_text(json.dumps(summary, indent=2))
    ctx.logger.info(
        "miniature corpus %s: %d images (%d added), %d alt-text, %d truth and %d human captions added, "
        "%d held-out prompts in %s, %.1f s",
        report.dataset, report.images, report.images_added, report.alttext_added, report.truth_added,
        report.human_added, report.prompts, report.prompts_path, seconds,
    )  # fmt: skip
    ctx.progress(cfg.images, cfg.images, f"{report.images} images, {report.prompts} held-out prompts")
