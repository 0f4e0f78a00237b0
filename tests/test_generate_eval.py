"""Generation (prompts × checkpoints × seeds × regimes, with prompt upsampling) and its evaluation.

Real parts only: the tiny Stable Diffusion pipeline (``tiny_model_dir("sd")``, once as a t2i
artifact inside the workspace and once rebuilt with another seed as a plain folder), the tiny
causal LM as upsampler (``tiny_model_dir("causal_lm")``), the tiny open_clip model, a real
SQLite workspace. The first generation and the first evaluation go through the real runner
subprocess (``run_foreground``); reruns, resumes and refusals run the same job functions in
this process with a real :class:`JobContext` on a claimed run (cheaper than another torch
start-up). Torch is pinned to one thread.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from sqlmodel import col, select

from backend import jobs
from backend.datasets import get_or_create_dataset
from backend.db import migrate, read_session, write_session
from backend.evaluation import EvalResult, generated_datasets, result_details, results_table, results_wide
from backend.images import add_image, decode_image
from backend.jobs import store
from backend.jobs.configs import new_run
from backend.jobs.context import JobContext
from backend.models import Caption, Dataset, Image
from backend.scores import CaptionScore
from backend.storage import image_path
from backend.workspace import Workspace
from training.fid import (
    INCEPTION_FILE,
    ExtractorWeightsMissing,
    fid_from_features,
    frechet_distance,
    kid_from_features,
    polynomial_mmd_unbiased,
)
from training.jobs import get_job
from training.upsample import clean_output, fill_template, model_input

pytest_plugins = ("tests.tiny_models",)
pytestmark = pytest.mark.timeout(300)

LONG_PROMPT = "a very detailed scene " + " ".join(
    f"with a red cube number {i} next to a blue sphere" for i in range(12)
)  # far more than CLIP's 77 tokens
PROMPTS_CSV = (
    "prompt,category\n"
    "a red cube to the left of a blue sphere,spatial\n"
    "three yellow triangles on a white background,counting\n"
    f"{LONG_PROMPT},long\n"
)
SEEDS = [0, 1]
GEN = {
    "seeds": SEEDS,
    "regime": "both",
    "inference_steps": 3,
    "guidance_scale": 5.0,
    "batch_size": 4,
    "upsample_max_new_tokens": 12,
    "device": "cpu",  # the stored pixels are compared with a CPU float32 regeneration
    "torch_threads": 1,
}
META_KEYS = {
    "run_id", "checkpoint", "checkpoint_ref", "artifact_id", "prompt", "prompt_index", "category", "prompt_set",
    "seed", "regime", "prompt_used", "upsampler", "inference_steps", "guidance_scale", "width", "height",
    "scheduler", "safety_checker", "nsfw_flagged",
}  # fmt: skip
ARTIFACT_META = {
    "base": "tiny-sd",
    "dataset": "demo",
    "train": "unet",
    "lora": False,
    "steps": 10,
    "mix": {"name": "recap_mix", "weights": {"recap_short": 0.5, "recap_long": 0.5}, "empty_prob": 0.05},
    "captioners": {"recap_short": ["captioner-run-1"], "recap_long": ["captioner-run-1"]},
    "caption_condition": "RECAP Mix",
    "training_images": 6,
}


# --------------------------------------------------------------------------- helpers


def run_job(ws: Workspace, kind: str, values: dict[str, Any]) -> jobs.Run:
    """Create the run as the CLI does and execute it in the real runner subprocess."""
    run = new_run(ws, kind, values)
    final = jobs.run_foreground(ws, int(run.id))  # type: ignore[arg-type]
    assert final.status == "succeeded", (
        f"{kind} run {run.id}: {final.message}\n{jobs.log_tail(ws, int(run.id), 60)}"
    )
    return final


def run_here(ws: Workspace, run_id: int, *, stop_at_once: bool = False) -> None:
    """Execute a queued run's job in this process (claimed by this pid, as the runner does)."""
    run = store.adopt(ws, run_id, os.getpid(), None)
    assert run is not None, f"run {run_id} could not be claimed"
    ctx = JobContext(
        ws, run_id, dict(run.config), store.run_dir(ws, run), logging.getLogger(f"test.run{run_id}")
    )
    if stop_at_once:
        ctx.request_stop()  # the job finishes its current batch and returns
    status = "failed"
    try:
        get_job(run.kind)(ctx)
        status = "cancelled" if ctx.stop_requested else "succeeded"
    finally:
        ctx.flush_progress()
        store.finish(ws, run_id, status, pid=os.getpid())


def images_of(ws: Workspace, dataset: str) -> list[Image]:
    with read_session(ws) as s:
        ds = s.exec(select(Dataset).where(Dataset.name == dataset)).one()
        return list(s.exec(select(Image).where(Image.dataset_id == ds.id).order_by(col(Image.id))).all())


def captions_of(ws: Workspace, image_ids: list[int]) -> list[Caption]:
    with read_session(ws) as s:
        return list(s.exec(select(Caption).where(col(Caption.image_id).in_(image_ids))).all())


def eval_rows(ws: Workspace, run_id: int) -> dict[tuple[str, str, str], EvalResult]:
    return {(r.checkpoint, r.regime, r.metric): r for r in result_details(ws, run_id)}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Any) -> dict[str, Any]:
    """A workspace, a prompt file, two checkpoints (a t2i artifact and a folder) and tiny CLIP."""
    from training.clip import build_tiny_clip
    from training.tiny_sd import build_tiny_sd

    root = tmp_path_factory.mktemp("gen")
    ws = Workspace(root / "home").ensure()
    migrate(ws)
    prompts = root / "prompts.csv"
    prompts.write_text(PROMPTS_CSV)
    inside = ws.home / "models" / "tiny-a" / "pipeline"
    shutil.copytree(tiny_model_dir("sd"), inside)
    artifact = store.add_artifact(ws, None, "t2i", "t2i-run-tiny", inside, ARTIFACT_META)
    other = build_tiny_sd(root / "tiny-b", seed=1)
    clip_name, clip_path = build_tiny_clip(root / "clip")
    return {
        "ws": ws,
        "prompts": str(prompts),
        "checkpoints": [artifact.name, str(other)],
        "artifact": artifact,
        "upsampler": str(tiny_model_dir("causal_lm")),
        "clip": {"clip_model": clip_name, "clip_pretrained": str(clip_path)},
    }


@pytest.fixture(scope="module")
def generated(setup: dict[str, Any]) -> dict[str, Any]:
    """One real generate run: 2 checkpoints × 3 prompts × 2 seeds × {raw, upsampled} = 24 images."""
    ws = setup["ws"]
    run = run_job(
        ws,
        "generate",
        {
            **GEN,
            "prompts": setup["prompts"],
            "checkpoints": setup["checkpoints"],
            "upsampler": setup["upsampler"],
        },
    )
    return {**setup, "run": run, "dataset": f"generated-run-{run.id}"}


@pytest.fixture(scope="module")
def resumed(generated: dict[str, Any]) -> dict[str, Any]:
    """A raw-only run into dataset ``resume-test`` (2 prompts × 2 seeds, batch 2) stopped after its
    first batch and resumed."""
    ws = generated["ws"]
    values = {
        **GEN,
        "regime": "raw",
        "batch_size": 2,
        "max_prompts": 2,
        "prompts": generated["prompts"],
        "checkpoints": [generated["checkpoints"][1]],
        "output_dataset": "resume-test",
    }
    run_id = int(new_run(ws, "generate", values).id)  # type: ignore[arg-type]
    run_here(ws, run_id, stop_at_once=True)
    assert jobs.get_run(ws, run_id).status == "cancelled"
    after_stop = len(images_of(ws, "resume-test"))
    store.requeue(ws, run_id)
    run_here(ws, run_id)
    return {**generated, "run_id": run_id, "after_stop": after_stop}


@pytest.fixture(scope="module")
def reference(generated: dict[str, Any]) -> str:
    """A 'real images' dataset holding exactly the files of group (t2i-run-tiny, raw)."""
    ws = generated["ws"]
    with write_session(ws) as s:
        ds = get_or_create_dataset(s, "reference-copy")
        for im in images_of(ws, generated["dataset"]):
            gen = im.meta["generated"]  # type: ignore[index]
            if (gen["checkpoint"], gen["regime"]) == ("t2i-run-tiny", "raw"):
                data = image_path(ws, im.sha256, im.ext).read_bytes()
                add_image(s, ws, int(ds.id), decode_image(data), im.original_key)  # type: ignore[arg-type]
    return "reference-copy"


@pytest.fixture(scope="module")
def evaluated(generated: dict[str, Any], reference: str) -> dict[str, Any]:
    """One real t2i_eval run: all four metrics, FID/KID in tiny-CLIP space against ``reference``."""
    run = run_job(
        generated["ws"],
        "t2i_eval",
        {
            "dataset": generated["dataset"],
            "metrics": ["clip_score", "r_precision", "fid", "kid"],
            "reference_dataset": reference,
            "extractor": "clip",
            "kid_subset_size": 4,
            "batch_size": 8,
            "device": "cpu",
            "torch_threads": 1,
            **generated["clip"],
        },
    )
    return {**generated, "eval_run": run}


# --------------------------------------------------------------------------- generation


def test_generated_images_carry_the_contract(generated: dict[str, Any]) -> None:
    ws, run_id = generated["ws"], int(generated["run"].id)
    images = images_of(ws, generated["dataset"])
    assert len(images) == 2 * 3 * 2 * 2
    keys = Counter()
    for im in images:
        gen = im.meta["generated"]  # type: ignore[index]
        assert set(gen) == META_KEYS
        assert gen["run_id"] == run_id and gen["prompt_set"] == "prompts"
        assert (
            (gen["width"], gen["height"]) == (im.width, im.height) == (32, 32)
        )  # resolution 0: pipeline default
        assert gen["scheduler"] == "DDIMScheduler" and gen["inference_steps"] == 3
        assert (
            im.original_key
            == f"{gen['checkpoint']}/{gen['regime']}/{gen['prompt_index']:05d}_seed{gen['seed']}.png"
        )
        if gen["checkpoint"] == "t2i-run-tiny":
            assert gen["artifact_id"] == generated["artifact"].id and gen["checkpoint_ref"] == "t2i-run-tiny"
        else:
            assert gen["checkpoint"] == "tiny-b" and gen["artifact_id"] is None
        if gen["regime"] == "raw":
            assert gen["prompt_used"] == gen["prompt"] and gen["upsampler"] is None
        else:
            assert gen["upsampler"] == generated["upsampler"] and gen["prompt_used"].strip()
        # the PNG carries the same provenance, so identical pictures of two systems never share a sha
        with PILImage.open(image_path(ws, im.sha256, im.ext)) as png:
            assert json.loads(png.text["recap-studio"]) == gen
        keys[(gen["checkpoint"], gen["regime"], gen["prompt_index"], gen["seed"])] += 1
    assert set(keys.values()) == {1}
    assert len({im.sha256 for im in images}) == len(images)

    captions = captions_of(ws, [int(im.id) for im in images])  # type: ignore[arg-type]
    by_kind = Counter(c.kind for c in captions)
    assert by_kind == {"prompt": 24, "upsampled": 12}
    regime = {int(im.id): im.meta["generated"] for im in images}  # type: ignore[index]
    for c in captions:
        gen = regime[c.image_id]
        assert c.run_id == run_id and c.source == "generate" and c.status == "final"
        if c.kind == "prompt":
            assert c.text == gen["prompt"]
            assert c.provenance["prompt_index"] == gen["prompt_index"]  # type: ignore[index]
        else:
            assert gen["regime"] == "upsampled" and c.text == gen["prompt_used"] and c.text.strip()
            assert c.provenance["upsampler"] == generated["upsampler"]  # type: ignore[index]
            assert c.provenance["max_new_tokens"] == 12 and "{prompt}" in c.provenance["template"]  # type: ignore[index]
    # each distinct prompt was rewritten once, and the rewrite is shared by both checkpoints
    cache = (ws.home / "runs" / str(run_id) / "upsampled.jsonl").read_text().splitlines()
    assert len(cache) == 3
    rewrites = {json.loads(line)["prompt"]: json.loads(line)["text"] for line in cache}
    for c in captions:
        if c.kind == "upsampled":
            assert c.text == rewrites[regime[c.image_id]["prompt"]]
    assert jobs.get_run(ws, run_id).done == 24
    log = jobs.log_tail(ws, run_id, 200)
    assert re.search(
        r"1 of the \d distinct prompts fed to t2i-run-tiny exceed its text encoder's context", log
    )


def test_an_image_is_reproducible_alone(generated: dict[str, Any]) -> None:
    """Seeded per image: regenerating one image by itself gives the stored picture (batch of 4)."""
    from diffusers import AutoPipelineForText2Image

    ws = generated["ws"]
    im = next(
        im
        for im in images_of(ws, generated["dataset"])
        if im.meta["generated"]["checkpoint"] == "tiny-b" and im.meta["generated"]["seed"] == 1  # type: ignore[index]
    )
    gen = im.meta["generated"]  # type: ignore[index]
    pipe = AutoPipelineForText2Image.from_pretrained(gen["checkpoint_ref"])
    pipe.set_progress_bar_config(disable=True)
    alone = pipe(
        prompt=gen["prompt_used"],
        num_inference_steps=gen["inference_steps"],
        guidance_scale=gen["guidance_scale"],
        generator=torch.Generator("cpu").manual_seed(gen["seed"]),
    ).images[0]
    with PILImage.open(image_path(ws, im.sha256, im.ext)) as stored:
        diff = np.abs(np.asarray(stored.convert("RGB"), dtype=int) - np.asarray(alone, dtype=int))
    assert diff.max() <= 2, f"max pixel difference {diff.max()}"


def test_rerun_into_the_same_dataset_adds_nothing(generated: dict[str, Any]) -> None:
    ws, dataset = generated["ws"], generated["dataset"]
    before = images_of(ws, dataset)
    values = {
        **GEN,
        "prompts": generated["prompts"],
        "checkpoints": generated["checkpoints"],
        "upsampler": generated["upsampler"],
        "output_dataset": dataset,
    }
    again = new_run(ws, "generate", values)
    run_here(ws, int(again.id))  # type: ignore[arg-type]
    assert [im.id for im in images_of(ws, dataset)] == [im.id for im in before]
    assert jobs.get_run(ws, int(again.id)).status == "succeeded"  # type: ignore[arg-type]
    assert not (ws.home / "runs" / str(again.id) / "upsampled.jsonl").exists()  # nothing to do: no LM loaded

    # other settings under the same keys would mix two experiments: refused, nothing written
    changed = new_run(ws, "generate", {**values, "inference_steps": 4})
    with pytest.raises(ValueError, match=r"different inference_steps .*new output_dataset"):
        run_here(ws, int(changed.id))  # type: ignore[arg-type]
    assert len(images_of(ws, dataset)) == len(before)


def test_generation_stops_and_resumes_without_duplicates(resumed: dict[str, Any]) -> None:
    ws = resumed["ws"]
    assert resumed["after_stop"] == 2  # one batch of 2, then the stop was honoured
    images = images_of(ws, "resume-test")
    keys = [(im.meta["generated"]["prompt_index"], im.meta["generated"]["seed"]) for im in images]  # type: ignore[index]
    assert sorted(keys) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert Counter(c.kind for c in captions_of(ws, [int(im.id) for im in images])) == {"prompt": 4}  # type: ignore[arg-type]
    assert jobs.get_run(ws, resumed["run_id"]).status == "succeeded"


def test_category_filter_keeps_prompt_indices(setup: dict[str, Any]) -> None:
    from training.jobs.generate import GenerateError, load_prompts, select_prompts

    prompt_set = load_prompts(setup["prompts"])
    assert select_prompts(prompt_set, "COUNTING", 0) == [
        (1, "three yellow triangles on a white background", "counting")
    ]
    with pytest.raises(
        GenerateError, match=r"category 'animals' matches no prompt .*counting, long, spatial"
    ):
        select_prompts(prompt_set, "animals", 0)


def test_checkpoint_references_are_checked(setup: dict[str, Any]) -> None:
    from backend.jobs.configs import ConfigError
    from training.jobs.generate import GenerateError, resolve_checkpoints

    ws = setup["ws"]
    captioner = store.add_artifact(ws, None, "captioner", "captioner-x", ws.home / "models" / "tiny-a", {})
    with pytest.raises(ConfigError, match=r"checkpoint 'captioner-x' is a captioner artifact .*not a t2i one"):
        resolve_checkpoints(ws, [captioner.name])
    with pytest.raises(GenerateError, match="lists a checkpoint twice"):
        resolve_checkpoints(ws, [setup["checkpoints"][1], setup["checkpoints"][1]])
    by_id = resolve_checkpoints(ws, [str(setup["artifact"].id), "org/some-model"])
    assert [(c.label, c.artifact_id) for c in by_id] == [
        ("t2i-run-tiny", setup["artifact"].id),
        ("org/some-model", None),
    ]


# --------------------------------------------------------------------------- evaluation


def test_eval_stores_every_metric_with_provenance(evaluated: dict[str, Any], reference: str) -> None:
    ws, run_id = evaluated["ws"], int(evaluated["eval_run"].id)
    rows = eval_rows(ws, run_id)
    groups = {(c, r) for c in ("t2i-run-tiny", "tiny-b") for r in ("raw", "upsampled")}
    assert set(rows) == {(c, r, m) for c, r in groups for m in ("clip_score", "r_precision", "fid", "kid")}
    for (checkpoint, _regime, metric), row in rows.items():
        d = row.details
        assert row.dataset == evaluated["dataset"] and row.n == 6 and np.isfinite(row.value)
        assert d["config"]["dataset"] == evaluated["dataset"] and d["images_in_group"] == 6
        assert d["group"]["generation_runs"] == [evaluated["run"].id]
        assert d["group"]["artifact_id"] == (
            evaluated["artifact"].id if checkpoint == "t2i-run-tiny" else None
        )
        if metric in ("clip_score", "r_precision"):
            assert (
                row.model == evaluated["clip"]["clip_model"]
                and row.weights == evaluated["clip"]["clip_pretrained"]
            )
            assert row.reference == "prompts"
        else:
            assert row.model == f"clip:{evaluated['clip']['clip_model']}" and row.reference == reference
            assert (
                d["extractor"] == "clip" and "FD_CLIP" in d["note"] and "L2-normalised" in d["preprocessing"]
            )
            assert d["reference_images"] == 6 and d["feature_dim"] == 32
    for checkpoint, regime in groups:
        clip_s = rows[(checkpoint, regime, "clip_score")]
        assert -100 <= clip_s.value <= 100 and clip_s.stderr is not None and clip_s.stderr >= 0
        assert clip_s.details["truncated_prompts"] == 1 and clip_s.details["truncated_images"] == 2
        rp = rows[(checkpoint, regime, "r_precision")]
        assert rp.details["candidates"] == 3 and rp.details["standard_protocol"] is False
        assert rp.value == pytest.approx(100 * rp.details["expected_hits"] / 6)
        kid = rows[(checkpoint, regime, "kid")]
        assert kid.details["subset_size"] == 4 and kid.details["num_subsets"] == 100
        # KID's spread over subsets is a standard deviation: never stored as a standard error
        assert kid.stderr is None and kid.details["std_over_subsets"] >= 0
    # the reference holds exactly the files of (t2i-run-tiny, raw): its distance to them is ~0
    assert abs(rows[("t2i-run-tiny", "raw", "fid")].value) < 1e-6
    assert min(rows[(c, r, "fid")].value for c, r in groups - {("t2i-run-tiny", "raw")}) > 1e-6

    # per-image CLIP-S on each image's prompt caption, flagged where the prompt was truncated
    with read_session(ws) as s:
        scores = s.exec(
            select(CaptionScore, Caption).join(Caption, col(Caption.id) == col(CaptionScore.caption_id))
        ).all()
    assert len(scores) == 24
    assert all(
        c.kind == "prompt" and sc.run_id == run_id and sc.truncated == (c.text == LONG_PROMPT)
        for sc, c in scores
    )
    mean = np.mean([sc.value for sc, c in scores if c.image_id in {
        im.id for im in images_of(ws, evaluated["dataset"]) if im.meta["generated"]["checkpoint"] == "tiny-b"  # type: ignore[index]
        and im.meta["generated"]["regime"] == "raw"  # type: ignore[index]
    }])  # fmt: skip
    assert rows[("tiny-b", "raw", "clip_score")].value == pytest.approx(mean)


def test_r_precision_follows_the_standard_protocol_and_keeps_the_old_one_apart(
    resumed: dict[str, Any],
) -> None:
    """2 prompts are fewer than the protocol's 100 candidates: the other one is used, the row
    says so, and the number equals the all-prompts one (no ties between 2 distinct prompts).
    Runs on ``resume-test`` so the main dataset's result tables stay as the tests below expect."""
    ws = resumed["ws"]
    run = new_run(ws, "t2i_eval", {
        "dataset": "resume-test", "metrics": ["r_precision", "r_precision_all"], "batch_size": 8,
        "device": "cpu", "torch_threads": 1, **resumed["clip"],
    })  # fmt: skip
    run_here(ws, int(run.id))  # type: ignore[arg-type]
    rows = eval_rows(ws, int(run.id))  # type: ignore[arg-type]
    assert set(rows) == {("tiny-b", "raw", "r_precision"), ("tiny-b", "raw", "r_precision_all")}
    rp, every = rows[("tiny-b", "raw", "r_precision")], rows[("tiny-b", "raw", "r_precision_all")]
    assert rp.details["protocol"] == "own prompt + 99 random distractors"
    assert (rp.details["distractors"], rp.details["candidates"], rp.details["distractor_pool"]) == (1, 2, 1)
    assert rp.details["standard_protocol"] is False and "not comparable" in rp.details["warning"]
    assert rp.details["chance_percent"] == pytest.approx(50.0) and rp.n == 4
    assert every.details["candidates"] == 2 and every.value == pytest.approx(100 * every.details["hits"] / 4)
    assert rp.value == pytest.approx(every.value)
    assert rp.details["stderr_over"].startswith("prompts")
    table = results_table(ws, "resume-test")
    assert {"r_precision", "r_precision_all"} <= set(table["metric"])


def test_eval_stops_between_groups_and_resumes(evaluated: dict[str, Any], reference: str) -> None:
    ws = evaluated["ws"]
    first = eval_rows(ws, int(evaluated["eval_run"].id))
    values = {**json.loads(json.dumps(jobs.get_run(ws, int(evaluated["eval_run"].id)).config))}
    run_id = int(new_run(ws, "t2i_eval", values).id)  # type: ignore[arg-type]
    run_here(ws, run_id, stop_at_once=True)
    assert jobs.get_run(ws, run_id).status == "cancelled"
    assert {k[:2] for k in eval_rows(ws, run_id)} == {("t2i-run-tiny", "raw")}  # one whole group
    store.requeue(ws, run_id)
    run_here(ws, run_id)
    again = eval_rows(ws, run_id)
    assert set(again) == set(first)
    for key, row in again.items():
        assert row.value == pytest.approx(first[key].value, rel=1e-5, abs=1e-6)
    with read_session(ws) as s:  # per-image scores of the same model are not written twice
        assert len(s.exec(select(CaptionScore.id)).all()) == 24
    # the results table shows the newest evaluation run only, unless asked for all
    assert set(results_table(ws, evaluated["dataset"])["run_id"]) == {run_id}
    assert len(results_table(ws, evaluated["dataset"], latest=False)) == 32


def test_inception_fid_needs_local_weights_and_of_a_set_with_itself_is_zero(
    resumed: dict[str, Any], evaluated: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torchvision.models import inception_v3

    ws = evaluated["ws"]
    values = {"dataset": "resume-test", "metrics": ["fid", "kid"], "reference_dataset": "resume-test",
              "extractor": "inception", "device": "cpu", "torch_threads": 1, **evaluated["clip"]}  # fmt: skip
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    refused = new_run(ws, "t2i_eval", values)
    expected = str(tmp_path / "torch-home" / "hub" / "checkpoints" / INCEPTION_FILE)
    with pytest.raises(ExtractorWeightsMissing) as excinfo:
        run_here(ws, int(refused.id))  # type: ignore[arg-type]
    message = str(excinfo.value)
    assert expected in message and "extractor_weights=" in message and "extractor=clip" in message
    assert result_details(ws, int(refused.id)) == []  # type: ignore[arg-type]

    weights = tmp_path / INCEPTION_FILE  # a random-init state dict stands for the real file
    torch.save(inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict(), weights)
    run = new_run(ws, "t2i_eval", {**values, "extractor_weights": str(weights)})
    run_here(ws, int(run.id))  # type: ignore[arg-type]
    rows = eval_rows(ws, int(run.id))  # type: ignore[arg-type]
    fid = rows[("tiny-b", "raw", "fid")]
    assert abs(fid.value) < 1e-6 and fid.n == 4
    assert fid.model == "inception_v3 (torchvision)" and fid.weights == str(weights)
    assert fid.details["feature_dim"] == 2048 and "299x299" in fid.details["preprocessing"]
    assert "fewer images than feature dimensions" in fid.details["warning"]
    assert rows[("tiny-b", "raw", "kid")].details["subset_size"] == 4


def test_results_table_and_generated_datasets(evaluated: dict[str, Any], resumed: dict[str, Any]) -> None:
    ws = evaluated["ws"]
    listed = {g.name: g for g in generated_datasets(ws)}
    main = listed[evaluated["dataset"]]
    assert main.images == 24 and evaluated["run"].id in main.run_ids and main.regimes == ["raw", "upsampled"]
    assert listed["resume-test"].images == 4 and listed["resume-test"].regimes == ["raw"]

    table = results_table(ws, evaluated["dataset"])
    assert len(table) == 16 and set(table["metric"]) == {"clip_score", "r_precision", "fid", "kid"}
    assert table["run_id"].nunique() == 1
    tiny = table[table["checkpoint"] == "t2i-run-tiny"]
    assert set(tiny["caption_condition"]) == {"RECAP Mix"}
    assert set(tiny["mix"]) == {"recap_mix: recap_short=0.5, recap_long=0.5"}
    assert set(tiny["captioners"]) == {"recap_short: captioner-run-1; recap_long: captioner-run-1"}
    assert set(table[table["checkpoint"] == "tiny-b"]["caption_condition"]) == {""}

    wide = results_wide(table)
    assert list(wide["checkpoint"]) == ["t2i-run-tiny", "tiny-b"]
    assert list(wide.columns[3:7]) == [
        "CLIP-S (raw)",
        "CLIP-S (upsampled)",
        "R-precision % (raw)",
        "R-precision % (upsampled)",
    ]
    assert " ± " in wide.loc[0, "CLIP-S (raw)"]
    assert set(results_table(ws)["dataset"]) >= {evaluated["dataset"]}


# --------------------------------------------------------------------------- the maths


def test_fid_matches_the_gaussian_closed_form() -> None:
    a, b = np.array([1.0, 2.0, 0.5, 3.0]), np.array([2.0, 1.0, 1.0, 0.25])
    mu1, mu2 = np.zeros(4), np.array([1.0, 0.0, -1.0, 0.5])
    closed = float(((np.sqrt(a) - np.sqrt(b)) ** 2).sum() + (mu2**2).sum())  # diagonal covariances
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b))[0] == pytest.approx(closed, rel=1e-9)
    # a non-diagonal case: Σ₂ = R Σ₁ Rᵀ with the same eigenvalues has tr(Σ₁Σ₂)^½ computable by hand
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40_000, 4)) * np.sqrt(a) + mu1
    y = rng.normal(size=(40_000, 4)) * np.sqrt(b) + mu2
    assert fid_from_features(x, y).value == pytest.approx(closed, rel=0.03)
    # fewer samples than dimensions: the subspace computation equals the full one, and self-FID is 0
    few1, few2 = rng.normal(size=(5, 64)), rng.normal(1.0, 2.0, size=(7, 64))
    full = frechet_distance(
        few1.mean(0), np.cov(few1, rowvar=False), few2.mean(0), np.cov(few2, rowvar=False)
    )[0]
    reduced = fid_from_features(few1, few2)
    assert reduced.dims == 12 and reduced.value == pytest.approx(full, rel=1e-6)
    assert abs(fid_from_features(few1, few1).value) < 1e-8


def test_kid_matches_the_closed_form_of_the_cubic_kernel() -> None:
    """1-d Gaussians: E[(xy + 1)³] = E x³ E y³ + 3 E x² E y² + 3 E x E y + 1 for independent x, y."""

    def moments(m: float, s: float) -> tuple[float, float, float]:
        return m, m * m + s * s, m**3 + 3 * m * s * s

    def k(p: tuple[float, ...], q: tuple[float, ...]) -> float:
        return p[2] * q[2] + 3 * p[1] * q[1] + 3 * p[0] * q[0] + 1

    p, q = moments(0.0, 0.5), moments(0.5, 0.5)
    closed = k(p, p) + k(q, q) - 2 * k(p, q)
    rng = np.random.default_rng(1)
    x, y = rng.normal(0.0, 0.5, size=(4000, 1)), rng.normal(0.5, 0.5, size=(4000, 1))
    kid = kid_from_features(x, y, subset_size=400, num_subsets=50)
    assert kid.mean == pytest.approx(closed, abs=4 * kid.std / np.sqrt(10))
    assert kid.subset_size == 400 and kid.std > 0
    # one subset of everything = the unbiased estimator written out naively
    a, b = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    kernel = lambda u, v: (u @ v / 3 + 1) ** 3  # noqa: E731
    naive = (
        sum(kernel(a[i], a[j]) for i in range(6) for j in range(6) if i != j) / 30
        + sum(kernel(b[i], b[j]) for i in range(6) for j in range(6) if i != j) / 30
        - 2 * sum(kernel(a[i], b[j]) for i in range(6) for j in range(6)) / 36
    )
    assert polynomial_mmd_unbiased(a, b) == pytest.approx(naive)
    same = kid_from_features(a, b, subset_size=100, num_subsets=3)
    assert (
        same.subset_size == 6
        and same.mean == pytest.approx(naive)
        and same.std == pytest.approx(0, abs=1e-12)
    )


# --------------------------------------------------------------------------- upsampling pieces


def test_upsample_prompt_building_and_cleaning(tiny_model_dir: Any) -> None:
    from transformers import AutoTokenizer

    assert (
        fill_template("Rewrite {prompt} as JSON {like: this}", "a cat")
        == "Rewrite a cat as JSON {like: this}"
    )
    with pytest.raises(ValueError, match=r"\{prompt\}"):
        fill_template("no placeholder", "a cat")
    assert clean_output('  "A red cube on a table."\n\nNote: second paragraph') == "A red cube on a table."
    assert clean_output(" \n  \n ") == ""
    assert clean_output("line one\nline two") == "line one line two"

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir("causal_lm"))
    assert model_input(tokenizer, "Say: {prompt}", "a cat") == ("Say: a cat", False)  # plain LM: raw text
    tokenizer.chat_template = "{% for m in messages %}<u>{{ m['content'] }}</u>{% endfor %}<a>"
    assert model_input(tokenizer, "Say: {prompt}", "a cat") == ("<u>Say: a cat</u><a>", True)


def test_a_chunk_trained_checkpoint_reads_long_prompts_as_in_training(setup: dict[str, Any]) -> None:
    """A t2i artifact trained with long_captions="chunk" is sampled with chunked prompt embeddings
    (a plain pipeline call would cut the prompt at 77 tokens) with an empty-prompt embedding of the
    same length; other checkpoints keep the pipeline's own encoding."""
    from training.jobs.generate import prompt_inputs, resolve_checkpoints

    ws = setup["ws"]
    folder = store.artifact_path(ws, setup["artifact"])
    chunked = store.add_artifact(
        ws,
        None,
        "t2i",
        "t2i-chunked",
        folder,
        {**ARTIFACT_META, "long_caption_mode": "chunk", "config": {"max_chunks": 2}},
    )
    [checkpoint] = resolve_checkpoints(ws, [chunked.name])
    assert checkpoint.max_chunks == 2
    [plain] = resolve_checkpoints(ws, [setup["artifact"].name])
    assert plain.max_chunks == 0

    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(folder)
    long_prompt = " ".join(["a red circle next to a blue square"] * 12)  # ~100 CLIP tokens
    inputs = prompt_inputs(pipe, checkpoint, [long_prompt, "a cat"])
    cond, uncond = inputs["prompt_embeds"], inputs["negative_prompt_embeds"]
    assert cond.shape == uncond.shape and cond.shape[:2] == (2, 2 * 77)
    assert prompt_inputs(pipe, plain, ["a cat"]) == {"prompt": ["a cat"]}
    # a short prompt is encoded the same alone or beside a long one (max_chunks windows each)
    alone = prompt_inputs(pipe, checkpoint, ["a cat"])["prompt_embeds"]
    assert torch.allclose(alone[0], cond[1], atol=1e-5)
    image = pipe(**inputs, num_inference_steps=2, guidance_scale=2.0, output_type="pil").images[0]
    assert image.size == (32, 32)
