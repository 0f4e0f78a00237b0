"""Generation treats every checkpoint alike: the safety checker, the image size.

The "hub baseline" here is the tiny Stable Diffusion pipeline saved *with* a safety checker
and feature extractor (tiny CLIP configs, built offline) whose concept thresholds flag every
image, so wherever it runs its images come out black. The "trained" checkpoint is the plain
tiny pipeline, saved without one, as ``t2i_train`` saves its pipelines. Both go through the
real ``generate`` job (created with ``new_run``, executed by the real runner in this process)
and ``AutoPipelineForText2Image.from_pretrained``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from sqlmodel import col, select

from backend import jobs
from backend.db import read_session
from backend.jobs.configs import new_run
from backend.models import Dataset, Image
from backend.storage import image_path
from backend.workspace import Workspace

pytest_plugins = ("tests.tiny_models",)
pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("keep_root_logging")]

GEN = {
    "prompts": "",
    "seeds": [0, 1],
    "max_prompts": 2,
    "inference_steps": 2,
    "guidance_scale": 2.0,
    "batch_size": 2,
    "device": "cpu",
    "torch_threads": 1,
}


def build_flagging_baseline(plain: Path, out: Path) -> Path:
    """The tiny pipeline plus a safety checker that flags every image (its concept thresholds are
    below any cosine similarity), saved with ``save_pretrained`` as a hub baseline ships."""
    from diffusers import StableDiffusionPipeline
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    config = CLIPConfig(
        text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2},
        vision_config={
            "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
            "image_size": 32, "patch_size": 8,
        },
        projection_dim=16,
    )  # fmt: skip
    torch.manual_seed(0)
    checker = StableDiffusionSafetyChecker(config)
    with torch.no_grad():
        checker.concept_embeds_weights.fill_(-2.0)  # cos - (-2) > 0 for every image: all flagged
        checker.special_care_embeds_weights.fill_(-2.0)
    extractor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    pipe = StableDiffusionPipeline.from_pretrained(plain)
    pipe.register_modules(safety_checker=checker, feature_extractor=extractor)
    pipe.register_to_config(requires_safety_checker=True)
    pipe.save_pretrained(out)
    return out




@pytest.fixture(scope="module")
def checkpoints(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Callable[[str], Path]
) -> dict[str, str]:
    root = tmp_path_factory.mktemp("safety")
    trained = root / "trained"
    shutil.copytree(tiny_model_dir("sd"), trained)
    baseline = build_flagging_baseline(tiny_model_dir("sd"), root / "baseline")
    prompts = root / "prompts.txt"
    prompts.write_text("a red cube to the left of a blue sphere\nthree yellow triangles\n")
    return {"baseline": str(baseline), "trained": str(trained), "prompts": str(prompts)}


def run_generate(ws: Workspace, values: dict[str, Any], expect: str = "succeeded") -> jobs.Run:
    from training.runner import execute

    run = new_run(ws, "generate", values)
    run_id = int(run.id)  # type: ignore[arg-type]
    execute(ws, run_id, advance_queue=False)
    final = jobs.get_run(ws, run_id)
    assert final.status == expect, f"run {run_id}: {final.message}\n{jobs.log_tail(ws, run_id, 60)}"
    return final


def stored(ws: Workspace, dataset: str) -> list[tuple[dict[str, Any], np.ndarray]]:
    with read_session(ws) as s:
        ds = s.exec(select(Dataset).where(Dataset.name == dataset)).one()
        images = s.exec(select(Image).where(Image.dataset_id == ds.id).order_by(col(Image.id))).all()
    out = []
    for im in images:
        with PILImage.open(image_path(ws, im.sha256, im.ext)) as png:
            out.append((im.meta["generated"], np.asarray(png.convert("RGB"))))  # type: ignore[index]
    return out


def test_no_checkpoint_is_screened_by_default_and_one_checker_screens_all_when_asked(
    ws: Workspace, checkpoints: dict[str, str]
) -> None:
    """Default: the baseline's own checker is not run (no black images), for every checkpoint
    alike, and each image's provenance says so. ``safety_checker`` on: the baseline's checker
    screens the trained checkpoint's images too (here: all black, all flagged)."""
    values = {
        **GEN,
        "prompts": checkpoints["prompts"],
        "checkpoints": [checkpoints["baseline"], checkpoints["trained"]],
    }
    off = run_generate(ws, values)
    images = stored(ws, f"generated-run-{off.id}")
    assert len(images) == 2 * 2 * 2
    for gen, pixels in images:
        assert pixels.max() > 0, (
            f"{gen['checkpoint']} prompt {gen['prompt_index']} seed {gen['seed']} is black"
        )
        assert gen["safety_checker"] is None and gen["nsfw_flagged"] is None
    log = jobs.log_tail(ws, int(off.id), 200)  # type: ignore[arg-type]
    assert "safety checker off for every checkpoint" in log
    assert "blacked out" not in log

    on = run_generate(ws, {**values, "safety_checker": True})
    images = stored(ws, f"generated-run-{on.id}")
    assert {gen["checkpoint"] for gen, _ in images} == {"baseline", "trained"}
    for gen, pixels in images:
        assert gen["safety_checker"] == "baseline" and gen["nsfw_flagged"] is True
        assert pixels.max() == 0  # the same checker, the same verdict, whatever the checkpoint
    assert "8 images were blacked out by the safety checker of baseline" in jobs.log_tail(ws, int(on.id), 200)  # type: ignore[arg-type]

    # on, but no checkpoint ships a checker: refused with a clear message before any image
    refused = run_generate(
        ws, {**values, "checkpoints": [checkpoints["trained"]], "safety_checker": True}, "failed"
    )
    assert "none of the checkpoints ships a safety checker" in refused.message


def test_generation_logs_the_size_it_uses(ws: Workspace, checkpoints: dict[str, str]) -> None:
    values = {**GEN, "prompts": checkpoints["prompts"], "checkpoints": [checkpoints["trained"]], "seeds": [0],
              "max_prompts": 1}  # fmt: skip
    native = run_generate(ws, values)
    assert "at 32 px (the pipeline's own size" in jobs.log_tail(ws, int(native.id), 200)  # type: ignore[arg-type]
    assert [pixels.shape for _, pixels in stored(ws, f"generated-run-{native.id}")] == [(32, 32, 3)]
    chosen = run_generate(ws, {**values, "resolution": 16})
    assert "at 16 px (set in the run's config)" in jobs.log_tail(ws, int(chosen.id), 200)  # type: ignore[arg-type]
    assert [pixels.shape for _, pixels in stored(ws, f"generated-run-{chosen.id}")] == [(16, 16, 3)]
