"""T2I fine-tuning (``t2i_train``) as real runs on a tiny Stable Diffusion pipeline.

Every run is created as the CLI / Runs tab create it (``new_run``) and executed by the real
runner: in this process (``training.runner.execute``, so torch and diffusers load once for the
module) or, for the kill -9 test, as ``python -m training.runner`` in its own process group.
The base is ``training.tiny_sd`` loaded through ``from_pretrained``; the data is a small real
SQLite workspace with several caption kinds, some images lacking a kind, a human caption
still waiting for review, a caption longer than CLIP's 77 tokens and one unreadable file.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage
from PIL import ImageDraw

from backend import jobs
from backend.caption_mix import binomial_tolerance, expected_counts, parse_mix
from backend.captions import add_caption
from backend.datasets import get_or_create_dataset
from backend.db import write_session
from backend.images import add_image, decode_image
from backend.jobs.configs import new_run
from backend.jobs.launch import group_alive
from backend.models import CaptionStatus
from backend.storage import image_path
from backend.workspace import Workspace

pytest_plugins = ("tests.tiny_models",)
pytestmark = pytest.mark.timeout(300)

DATASET = "shapes"
N_IMAGES = 8  # readable ones; one more is corrupted on disk
LONG = " ".join(["a small red circle next to a large blue square on a white background"] * 8)  # ~110 tokens
BASE_CFG: dict[str, Any] = {
    "dataset": DATASET,
    "mix": "recap_mix",
    "empty_prob": 0.1,
    "steps": 3,
    "batch_size": 2,
    "resolution": 32,
    "lr_unet": 1e-3,
    "lr_text_encoder": 1e-3,
    "checkpoint_every": 2,
    "validation_every": 2,
    "validation_prompts": ["a red circle", "two blue squares"],
    "validation_inference_steps": 2,
    "num_workers": 0,
    "device": "cpu",
    "torch_threads": 1,
}
COLOURS = [(220, 40, 40), (40, 90, 220), (40, 160, 70), (245, 210, 40), (140, 60, 190)]


# --------------------------------------------------------------------------- data and helpers


def _png(i: int) -> bytes:
    im = PILImage.new("RGB", (40 + 4 * (i % 3), 36), (250, 250, 250))
    draw = ImageDraw.Draw(im)
    box = (6 + i, 6, 30, 30 - i % 3)
    (draw.ellipse if i % 2 else draw.rectangle)(box, fill=COLOURS[i % len(COLOURS)])
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def kinds_of(i: int) -> dict[str, str]:
    """The caption kinds of image ``i``: every image has alt-text; recap_short on most,
    recap_long on half; image 3 has only alt-text; image 5's recap_long is very long."""
    colour = ["red", "blue", "green", "yellow", "purple"][i % 5]
    shape = "circle" if i % 2 else "square"
    kinds = {"alttext": f"{shape} {i}"}
    if i != 3:
        kinds["recap_short"] = f"a {colour} {shape}"
    if i % 2 == 0 or i == 5:
        kinds["recap_long"] = LONG if i == 5 else f"a {colour} {shape} on a light gray background, flat"
    return kinds


def make_dataset(ws: Workspace) -> list[dict[str, str]]:
    """N_IMAGES readable images (+1 corrupted on disk) with the captions of :func:`kinds_of`, a
    submitted (unapproved) human caption and an approved one. Returns the kinds per readable image."""
    per_image = []
    with write_session(ws) as s:
        ds = get_or_create_dataset(s, DATASET)
        for i in range(N_IMAGES + 1):
            image, _ = add_image(s, ws, int(ds.id), decode_image(_png(i)), f"img{i}.png")  # type: ignore[arg-type]
            kinds = kinds_of(i)
            for kind, text in kinds.items():
                add_caption(s, int(image.id), kind, text, source="test")  # type: ignore[arg-type]
            if i == 1:  # waiting for review: never used
                add_caption(
                    s, int(image.id), "human_short", "UNREVIEWED", status=CaptionStatus.submitted.value
                )  # type: ignore[arg-type]
            if i == 2:
                add_caption(
                    s, int(image.id), "human_short", "a blue square", status=CaptionStatus.approved.value
                )  # type: ignore[arg-type]
                kinds["human_short"] = "a blue square"
            if i == N_IMAGES:  # the file is overwritten on disk: unreadable
                image_path(ws, image.sha256, image.ext).write_bytes(b"not a png any more")
            else:
                per_image.append(kinds)
    return per_image


@pytest.fixture
def data_ws(ws: Workspace) -> Workspace:
    make_dataset(ws)
    return ws


@pytest.fixture(scope="module")
def sd_base(tiny_model_dir: Callable[[str], Path]) -> str:
    return str(tiny_model_dir("sd"))


@pytest.fixture(autouse=True)
def _keep_root_logging() -> Iterator[None]:
    """The runner points the root logger at the run's log file; put pytest's handlers back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


def run_inline(ws: Workspace, values: dict[str, Any], expect: str = "succeeded") -> jobs.Run:
    """Create the run as the CLI does and execute it with the real runner in this process."""
    from training.runner import execute

    run = new_run(ws, "t2i_train", values)
    run_id = int(run.id)  # type: ignore[arg-type]
    execute(ws, run_id, advance_queue=False)
    final = jobs.get_run(ws, run_id)
    assert final.status == expect, f"run {run_id}: {final.message}\n{jobs.log_tail(ws, run_id, 60)}"
    return final


def artifact_of(ws: Workspace, run_id: int) -> Any:
    (artifact,) = jobs.list_artifacts(ws, kind="t2i", run_id=run_id)
    return artifact


def metrics(ws: Workspace, run_id: int) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for m in jobs.run_metrics(ws, run_id):
        out.setdefault(m.name, {})[m.step] = m.value
    return out


def generate(path: Path) -> Any:
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(path)
    pipe.set_progress_bar_config(disable=True)
    return pipe("a red circle", num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images[0]


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize(
    "extra",
    [
        {"train": "unet"},
        {"train": "text_encoder", "mix": "dalle3"},
        {
            "train": "both",
            "ema": True,
            "ema_decay": 0.9,
            "gradient_checkpointing": True,
            "num_workers": 1,
            "mixed_precision": "bf16",
            "grad_accum": 2,
        },
        {"train": "both", "lora": True, "lora_rank": 2, "mix": "recap_long=0.7,alttext=0.3"},
    ],
    ids=["unet", "text_encoder", "both-ema-gc", "lora-both"],
)
def test_training_targets_save_a_pipeline_that_loads_and_generates(
    data_ws: Workspace, sd_base: str, extra: dict[str, Any]
) -> None:
    from safetensors.torch import load_file

    ws = data_ws
    final = run_inline(ws, {**BASE_CFG, "base": sd_base, **extra})
    run_id = int(final.id)  # type: ignore[arg-type]
    artifact = artifact_of(ws, run_id)
    path = ws.inside(artifact.path)
    assert artifact.name == f"t2i-run-{run_id}" and artifact.path == f"runs/{run_id}/pipeline"
    assert generate(path).size == (32, 32)

    meta = artifact.meta
    assert meta["train"] == extra["train"] and meta["lora"] == bool(extra.get("lora"))
    assert meta["steps"] == 3 and meta["training_images"] == N_IMAGES and meta["dataset"] == DATASET
    draws = 3 * 2 * extra.get("grad_accum", 1)  # steps x batch x accumulation
    assert sum(meta["usage"].values()) == draws == sum(meta["usage_labels"].values())
    assert meta["mix"]["weights"] == dict(parse_mix(extra.get("mix", "recap_mix")).weights)
    log = (ws.runs_dir / str(run_id) / "log.txt").read_text()
    assert "UNREVIEWED" not in log
    if "mixed_precision" in extra:
        assert "mixed_precision bf16 is GPU-only here" in log
    for kind, refs in meta["captioners"].items():
        assert refs == (["human"] if kind.startswith("human") else ["imported"])
    assert meta["truncated_captions"] == 1 and meta["long_captions"] == 1  # image 5's recap_long
    assert meta["caption_condition"]

    got = metrics(ws, run_id)
    assert sorted(got["train_loss"]) == [1, 2, 3] and sorted(got["lr"]) == [1, 2, 3]
    assert got["unreadable_images"] == {0: 1.0}
    assert {k.removeprefix("usage/"): v[3] for k, v in got.items() if k.startswith("usage/")} == meta["usage"]
    samples = json.loads((ws.runs_dir / str(run_id) / "samples" / "step_3.json").read_text())
    assert [r["prompt"] for r in samples] == BASE_CFG["validation_prompts"]
    for row in samples:
        assert row["image_path"] == f"images/run-samples/{run_id}/step_3_{samples.index(row)}.png"
        assert ws.inside(row["image_path"]).is_file() and row["generated"] == "seed 0"
    assert (ws.runs_dir / str(run_id) / "samples" / "step_2.json").is_file()

    base_unet = load_file(Path(sd_base) / "unet" / "diffusion_pytorch_model.safetensors")
    new_unet = load_file(path / "unet" / "diffusion_pytorch_model.safetensors")
    base_text = load_file(Path(sd_base) / "text_encoder" / "model.safetensors")
    new_text = load_file(path / "text_encoder" / "model.safetensors")
    assert set(new_unet) == set(base_unet) and set(new_text) == set(base_text)  # LoRA merged: plain keys
    unet_changed = any(not (new_unet[k] == base_unet[k]).all() for k in base_unet)
    text_changed = any(not (new_text[k] == base_text[k]).all() for k in base_text)
    assert unet_changed == (extra["train"] in ("unet", "both"))
    assert text_changed == (extra["train"] in ("text_encoder", "both"))
    if extra.get("lora"):
        assert (ws.runs_dir / str(run_id) / "lora" / "pytorch_lora_weights.safetensors").is_file()


def test_recorded_caption_kind_counts_match_the_requested_mix(data_ws: Workspace, sd_base: str) -> None:
    """200 draws over 8 images (25 epochs: each image exactly 25 times): every usage label —
    direct, renormalised, fallback, dropout — within 4 binomial standard deviations."""
    ws, per_image = data_ws, None
    spec = "recap_short=0.5,recap_long=0.3,human_short=0.2"
    cfg = {**BASE_CFG, "base": sd_base, "mix": spec, "empty_prob": 0.1, "steps": 25, "batch_size": 8,
           "resolution": 16, "checkpoint_every": 100, "validation_prompts": [], "seed": 3}  # fmt: skip
    final = run_inline(ws, cfg)
    labels = artifact_of(ws, int(final.id)).meta["usage_labels"]  # type: ignore[arg-type]
    per_image = [kinds_of(i) | ({"human_short": "x"} if i == 2 else {}) for i in range(N_IMAGES)]
    mix = parse_mix(spec, empty_prob=0.1)
    expected: Counter[str] = Counter()
    for kinds in per_image:
        for label, n in expected_counts(mix, 25, kinds_present=kinds).items():
            expected[label] += n
    assert sum(labels.values()) == 200 and set(labels) <= set(expected), (labels, dict(expected))
    assert {"renorm:recap_short", "fallback:alttext", "empty"} <= set(labels)
    for label, mean in expected.items():
        tolerance = binomial_tolerance(200, mean / 200)
        assert abs(labels.get(label, 0) - mean) <= max(tolerance, 1.0), (label, labels, dict(expected))


def test_kill9_and_stop_then_resume_continue_from_the_checkpoint_with_the_same_draws(
    data_ws: Workspace, sd_base: str
) -> None:
    ws = data_ws
    cfg = {**BASE_CFG, "base": sd_base, "steps": 24, "batch_size": 2, "resolution": 16, "checkpoint_every": 4,
           "keep_checkpoints": 2, "validation_prompts": []}  # fmt: skip
    reference = run_inline(ws, cfg)
    run = new_run(ws, "t2i_train", cfg)
    run_id = int(run.id)  # type: ignore[arg-type]
    ckpt = ws.runs_dir / str(run_id) / "checkpoints"
    jobs.launch(ws, run_id)
    deadline = time.monotonic() + 120
    while not (ckpt / "step-00000004").is_dir():
        assert time.monotonic() < deadline, jobs.log_tail(ws, run_id, 40)
        time.sleep(0.01)
    killed = jobs.get_run(ws, run_id)
    assert killed.status == "running"
    os.killpg(killed.pgid or killed.pid, signal.SIGKILL)  # type: ignore[arg-type]
    while group_alive(killed.pgid or killed.pid):  # type: ignore[arg-type]
        time.sleep(0.02)
    assert not jobs.list_artifacts(ws, kind="t2i", run_id=run_id), "the kill came after the end"
    deadline = time.monotonic() + 15
    while jobs.get_run(ws, run_id).status != "interrupted":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    done_before = max(metrics(ws, run_id)["train_loss"])
    assert done_before < 24

    # attempt 2, resumed as ``resume_run`` does (requeue, attempt + 1) but executed in this process
    # to spare a second start-up; a SIGTERM (what cancel sends) once step 8 is checkpointed asks
    # it to stop: it checkpoints where it is and ends "cancelled". Attempt 3 finishes the run.
    from backend.jobs import store
    from training.runner import execute

    store.requeue(ws, run_id)
    previous = signal.signal(signal.SIGTERM, lambda *_: None)  # a late signal must not end pytest
    stopper = threading.Thread(target=_sigterm_when, args=(ckpt / "step-00000008", ws, run_id), daemon=True)
    try:
        stopper.start()
        execute(ws, run_id, advance_queue=False)
        stopper.join(30)
    finally:
        signal.signal(signal.SIGTERM, previous)
    stopped = jobs.get_run(ws, run_id)
    assert stopped.status == "cancelled" and stopped.attempt == 2, jobs.log_tail(ws, run_id, 40)
    stopped_at = int(checkpoints_of(ckpt)[-1].removeprefix("step-"))
    assert 8 <= stopped_at < 24 and max(metrics(ws, run_id)["train_loss"]) == stopped_at

    store.requeue(ws, run_id)
    execute(ws, run_id, advance_queue=False)
    final = jobs.get_run(ws, run_id)
    assert final.status == "succeeded" and final.attempt == 3, jobs.log_tail(ws, run_id, 60)
    log = (ws.runs_dir / str(run_id) / "log.txt").read_text()
    resumed = [int(part[:8]) for part in log.split("resuming from step-")[1:]]
    assert resumed[0] % 4 == 0 and 4 <= resumed[0] <= done_before and resumed[1] == stopped_at
    assert checkpoints_of(ckpt) == ["step-00000020", "step-00000024"]  # keep 2
    resumed_at = resumed[0]

    ours, ref = artifact_of(ws, run_id).meta, artifact_of(ws, int(reference.id)).meta  # type: ignore[arg-type]
    assert ours["usage_labels"] == ref["usage_labels"] and ours["usage"] == ref["usage"]
    losses, ref_losses = metrics(ws, run_id)["train_loss"], metrics(ws, int(reference.id))["train_loss"]  # type: ignore[arg-type]
    assert sorted(losses) == list(range(1, 25))
    for step in (resumed_at + 1, 24):  # the resumed attempt trains exactly as the uninterrupted run
        assert losses[step] == pytest.approx(ref_losses[step], rel=1e-4, abs=1e-6)


def checkpoints_of(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def _sigterm_when(ready: Path, ws: Workspace, run_id: int) -> None:
    """Send this process SIGTERM once ``ready`` exists, unless the run has ended by then."""
    deadline = time.monotonic() + 60
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    if jobs.get_run(ws, run_id).status == "running":
        os.kill(os.getpid(), signal.SIGTERM)


def test_cached_latents_give_the_same_losses_and_are_reused(data_ws: Workspace, sd_base: str) -> None:
    """The first cached run fills the cache before training and then trains from it (same losses
    as without a cache); a run on the *saved* pipeline of that run — another folder, same VAE
    weights, base given as a t2i artifact name — finds every entry and writes none."""
    ws = data_ws
    cfg = {**BASE_CFG, "base": sd_base, "steps": 2, "batch_size": 4, "random_flip": True,
           "validation_prompts": []}  # fmt: skip
    plain = run_inline(ws, cfg)
    first = run_inline(ws, {**cfg, "cache_latents": True})
    (folder,) = (ws.home / "cache" / "latents").iterdir()
    files = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert len(files) == 2 * N_IMAGES  # both flips of every readable image
    losses = [metrics(ws, int(r.id))["train_loss"] for r in (plain, first)]  # type: ignore[arg-type]
    for step in (1, 2):
        assert losses[1][step] == pytest.approx(losses[0][step], rel=1e-4)
    assert "latent cache: 8 reads, 16 writes" in (ws.runs_dir / str(first.id) / "log.txt").read_text()

    name = artifact_of(ws, int(first.id)).name  # type: ignore[arg-type]
    second = run_inline(ws, {**cfg, "cache_latents": True, "base": name})
    assert [p.name for p in (ws.home / "cache" / "latents").iterdir()] == [folder.name]  # same VAE identity
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == files  # reused, not rewritten
    assert "latent cache: 8 reads, 0 writes" in (ws.runs_dir / str(second.id) / "log.txt").read_text()
    meta = artifact_of(ws, int(second.id)).meta  # type: ignore[arg-type]
    assert meta["base"] == name and meta["base_artifact_id"] == artifact_of(ws, int(first.id)).id  # type: ignore[arg-type]


def test_chunk_mode_keeps_long_captions_and_pads_the_empty_caption_alike(
    data_ws: Workspace, sd_base: str
) -> None:
    import torch
    from transformers import CLIPTextModel, CLIPTokenizer

    from training.t2i.text import CaptionEncoder

    tokenizer = CLIPTokenizer.from_pretrained(sd_base, subfolder="tokenizer")
    model = CLIPTextModel.from_pretrained(sd_base, subfolder="text_encoder").eval()
    truncate = CaptionEncoder(tokenizer, model, "truncate")
    chunk = CaptionEncoder(tokenizer, model, "chunk", max_chunks=3)
    assert truncate.is_long(LONG) and truncate.loses_tokens(LONG) and not chunk.loses_tokens(LONG)
    assert not truncate.is_long("a red circle")
    with torch.no_grad():
        assert truncate.encode([LONG, ""]).shape == (2, 77, 32)
        hidden = chunk.encode([LONG, "", "a red circle"])
        cond, uncond = chunk.encode_with_uncond(LONG)
    assert hidden.shape == (3, 2 * 77, 32) and cond.shape == uncond.shape == (1, 154, 32)
    ids = chunk.token_ids([LONG, ""])
    assert ids[0, 1, 0] == tokenizer.bos_token_id and (ids[0] == tokenizer.eos_token_id).any(dim=1).all()
    torch.testing.assert_close(hidden[1, 77:], hidden[1, :77])  # the empty caption: two empty windows
    torch.testing.assert_close(hidden[2, 77:], hidden[1, :77])  # a short caption padded with empty windows

    ws = data_ws
    final = run_inline(ws, {**BASE_CFG, "base": sd_base, "mix": "recap_long=1", "long_captions": "chunk",
                            "steps": 2, "batch_size": 4, "validation_every": 1})  # fmt: skip
    meta = artifact_of(ws, int(final.id)).meta  # type: ignore[arg-type]
    assert meta["long_captions"] == 1 and meta["truncated_captions"] == 0
    assert meta["long_caption_mode"] == "chunk"
    assert metrics(ws, int(final.id))["truncated_captions"] == {0: 0.0}  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"cache_latents": True, "center_crop": False}, "cache_latents needs center_crop"),
        ({"use_8bit_adam": True}, "use_8bit_adam needs the bitsandbytes package"),
        ({"base": "NOT_A_PIPELINE"}, "cannot load a Stable Diffusion pipeline from"),
    ],
)
def test_impossible_configs_fail_with_a_clear_message(
    data_ws: Workspace, sd_base: str, extra: dict[str, Any], message: str
) -> None:
    if extra.get("base") == "NOT_A_PIPELINE":  # a folder, but not a pipeline
        extra = {"base": str(data_ws.uploads_dir)}
    final = run_inline(data_ws, {**BASE_CFG, "base": sd_base, **extra}, expect="failed")
    assert message in final.message
