"""T2I fine-tuning (``t2i_train``) as real runs on a tiny Stable Diffusion pipeline.

Every run is created as the CLI / Runs tab create it (``new_run``) and executed by the real
runner: in this process (``training.runner.execute``, so torch and diffusers load once for the
module) or, for the kill -9 test, as ``python -m training.runner`` in its own process group.
The base is ``training.tiny_sd`` loaded through ``from_pretrained``; the data is a small real
SQLite workspace with several caption kinds, some images lacking a kind, a human caption
still waiting for review, a caption longer than CLIP's 77 tokens and one unreadable file.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import threading
from collections import Counter
from collections.abc import Callable
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
from tests.conftest import wait_for

pytest_plugins = ("tests.tiny_models",)
pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("keep_root_logging")]

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
            "mixed_precision": "auto",
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
    if "mixed_precision" in extra:  # auto on the CPU: full precision, said in the log
        assert "mixed_precision auto: no on cpu" in log
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
    direct, renormalised, fallback (asked for), dropout — within 4 binomial standard deviations."""
    ws, per_image = data_ws, None
    spec = "recap_short=0.5,recap_long=0.3,human_short=0.2"
    cfg = {**BASE_CFG, "base": sd_base, "mix": spec, "empty_prob": 0.1, "fallback": ["alttext"], "steps": 25,
           "batch_size": 8, "resolution": 16, "checkpoint_every": 100, "validation_prompts": [], "seed": 3}  # fmt: skip
    final = run_inline(ws, cfg)
    labels = artifact_of(ws, int(final.id)).meta["usage_labels"]  # type: ignore[arg-type]
    per_image = [kinds_of(i) | ({"human_short": "x"} if i == 2 else {}) for i in range(N_IMAGES)]
    mix = parse_mix(spec, empty_prob=0.1, fallback=["alttext"])
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
    wait_for(lambda: (ckpt / "step-00000004").is_dir(), 120, what="checkpoint 4", interval=0.01)
    killed = jobs.get_run(ws, run_id)
    assert killed.status == "running"
    os.killpg(killed.pgid or killed.pid, signal.SIGKILL)  # type: ignore[arg-type]
    wait_for(
        lambda: not group_alive(killed.pgid or killed.pid),
        15,
        what="the killed group to vanish",
        interval=0.02,
    )
    assert not jobs.list_artifacts(ws, kind="t2i", run_id=run_id), "the kill came after the end"
    wait_for(lambda: jobs.get_run(ws, run_id).status == "interrupted", 15, what="the run to be interrupted")
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
    with contextlib.suppress(AssertionError):  # not ready in time: the check below decides
        wait_for(ready.exists, 60, what=f"{ready.name}", interval=0.005)
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
    # a loader worker and automatic threads: with the latents cached, torch keeps its core
    second = run_inline(ws, {**cfg, "cache_latents": True, "base": name, "num_workers": 1, "torch_threads": 0})
    assert [p.name for p in (ws.home / "cache" / "latents").iterdir()] == [folder.name]  # same VAE identity
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == files  # reused, not rewritten
    second_log = (ws.runs_dir / str(second.id) / "log.txt").read_text()
    assert "latent cache: 8 reads, 0 writes" in second_log
    assert "latents cached: the loader workers decode nothing" in second_log
    assert "the loader workers decode nothing" not in (ws.runs_dir / str(first.id) / "log.txt").read_text()
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
    # max_chunks windows for every caption, whatever its batch-mates (see training.t2i.text)
    assert hidden.shape == (3, 3 * 77, 32) and cond.shape == uncond.shape == (1, 3 * 77, 32)
    ids = chunk.token_ids([LONG, ""])
    assert ids[0, 1, 0] == tokenizer.bos_token_id and (ids[0] == tokenizer.eos_token_id).any(dim=1).all()
    torch.testing.assert_close(hidden[1, 77:154], hidden[1, :77])  # the empty caption: empty windows
    torch.testing.assert_close(hidden[2, 154:], hidden[1, :77])  # a short caption padded with empty windows
    torch.testing.assert_close(hidden[0, 154:], hidden[1, :77])  # the long one: two windows, then padding

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
        ({"mixed_precision": "bf16"}, "mixed_precision bf16 needs a CUDA GPU and this run is on cpu"),
    ],
)
def test_impossible_configs_fail_with_a_clear_message(
    data_ws: Workspace, sd_base: str, extra: dict[str, Any], message: str
) -> None:
    if extra.get("base") == "NOT_A_PIPELINE":  # a folder, but not a pipeline
        extra = {"base": str(data_ws.uploads_dir)}
    final = run_inline(data_ws, {**BASE_CFG, "base": sd_base, **extra}, expect="failed")
    assert message in final.message


def test_a_mix_trains_on_its_own_kinds_and_the_base_size_by_default(data_ws: Workspace, sd_base: str) -> None:
    """No fallback unless asked: with ``recap_long=1`` the 3 images without recap_long train with the
    empty caption (``empty:missing``), never with their alt-text or recap_short; the log and the
    artifact say how many such images there are. With ``fallback`` set they get the fallback kind,
    and the run's caption condition says so. Neither run gives a resolution: both train and render
    validation images at the base's own size (tiny pipeline: UNet 16 x VAE factor 2 = 32 px)."""
    ws = data_ws
    cfg = {k: v for k, v in BASE_CFG.items() if k != "resolution"}
    cfg = {**cfg, "base": sd_base, "mix": "recap_long=1", "empty_prob": 0.0, "steps": 4, "batch_size": 8,
           "checkpoint_every": 100, "validation_every": 100, "validation_prompts": ["a red circle"]}  # fmt: skip
    own = run_inline(ws, cfg)
    meta = artifact_of(ws, int(own.id)).meta  # type: ignore[arg-type]
    assert meta["usage"] == {"recap_long": 4 * 5, "empty": 4 * 3}  # 4 epochs; images 1, 3, 7 lack recap_long
    assert meta["usage_labels"] == {"recap_long": 20, "empty:missing": 12}
    assert meta["mix"]["fallback"] == [] and meta["images_without_mix_kinds"] == 3
    assert meta["caption_condition"] == "custom: recap_long=1"
    log = (ws.runs_dir / str(own.id) / "log.txt").read_text()
    assert "3 of 8 images have none of the mix's kinds (recap_long): they train with the empty caption" in log
    assert "resolution 32 px (the base's own size: UNet sample_size 16 x VAE scale factor 2)" in log
    assert meta["resolution"] == 32
    samples = json.loads((ws.runs_dir / str(own.id) / "samples" / "step_4.json").read_text())
    with PILImage.open(ws.inside(samples[0]["image_path"])) as picture:
        assert picture.size == (32, 32)

    fallback = run_inline(ws, {**cfg, "fallback": ["recap_short"], "resolution": 16})
    meta = artifact_of(ws, int(fallback.id)).meta  # type: ignore[arg-type]
    assert meta["usage_labels"] == {"recap_long": 20, "fallback:recap_short": 8, "empty:missing": 4}
    assert meta["caption_condition"] == "custom: recap_long=1 + fallback recap_short"
    assert meta["resolution"] == 16
    assert (
        "resolution 16 px (set in the run's config)"
        in (ws.runs_dir / str(fallback.id) / "log.txt").read_text()
    )


def test_one_caption_gets_one_embedding_in_training_validation_and_generation(sd_base: str) -> None:
    """What the UNet is conditioned on — captured at its input — is the same for one caption in a
    training micro-batch (beside a long caption and the dropout caption), in a validation image
    and in the generate job's pipeline call: in chunk mode (max_chunks windows everywhere) and in
    truncate mode (the pipelines' own encoding). Same for the empty (unconditional) caption."""
    import torch

    from training.jobs.generate import Checkpoint, load_pipeline, prompt_inputs
    from training.t2i.loop import Trainer, validation_images
    from training.t2i.pipeline import load_components
    from training.t2i.text import CaptionEncoder

    short = "a red circle"
    seen: list[torch.Tensor] = []

    def capture(_module: Any, args: tuple, kwargs: dict) -> None:
        hidden = kwargs["encoder_hidden_states"] if "encoder_hidden_states" in kwargs else args[2]
        seen.append(hidden.detach().clone())

    cpu = torch.device("cpu")
    for mode, max_chunks in (("chunk", 3), ("truncate", 3)):
        parts = load_components(sd_base)
        for module in (parts.unet, parts.text_encoder, parts.vae):
            module.eval()
        encoder = CaptionEncoder(parts.tokenizer, parts.text_encoder, mode, max_chunks)
        trainer = Trainer(parts, encoder, cpu, train_text=False)
        hook = parts.unet.register_forward_pre_hook(capture, with_kwargs=True)
        seen.clear()
        with torch.no_grad():
            params = trainer.encode_pixels(torch.zeros(3, 3, 32, 32))
            trainer.step_loss(params, [short, LONG, ""], torch.Generator().manual_seed(0))
        (training,) = seen
        seen.clear()
        validation_images(trainer, [short], seed=0, steps=1, guidance_scale=2.0, resolution=32)
        validation = seen[0]  # classifier-free guidance: [empty, prompt]
        hook.remove()

        checkpoint = Checkpoint("tiny", sd_base, sd_base, None, max_chunks if mode == "chunk" else 0)
        pipe = load_pipeline(checkpoint, cpu, "float32")
        pipe.unet.register_forward_pre_hook(capture, with_kwargs=True)
        seen.clear()
        with torch.no_grad():
            pipe(**prompt_inputs(pipe, checkpoint, [short]), num_inference_steps=1, guidance_scale=2.0,
                 generator=torch.Generator().manual_seed(0))  # fmt: skip
        generation = seen[0]  # [empty, prompt]

        width = 77 * (max_chunks if mode == "chunk" else 1)
        assert training.shape[1] == validation.shape[1] == generation.shape[1] == width, mode
        for name, other in (("validation", validation), ("generation", generation)):
            torch.testing.assert_close(
                other[1], training[0], atol=1e-5, rtol=1e-5, msg=f"{mode} {name}: prompt"
            )
            torch.testing.assert_close(
                other[0], training[2], atol=1e-5, rtol=1e-5, msg=f"{mode} {name}: empty"
            )


def test_resuming_puts_the_ema_on_the_training_device(tmp_path: Path) -> None:
    """A checkpoint is read with ``map_location="cpu"``; after resuming, the EMA shadow must sit
    where the trained weights are, or the next EMA step fails on a GPU. The weights here live on
    PyTorch's ``meta`` device, a device other than the CPU that needs no GPU: the same mismatch,
    the same error (``Tensor on device meta is not on the expected device cpu``) on the old code."""
    import torch
    from diffusers.training_utils import EMAModel

    from training.t2i.loop import (
        checkpoints,
        load_checkpoint,
        optimizer_step,
        restore_checkpoint,
        save_checkpoint,
        trainable_state,
    )

    def setup(device: str) -> tuple[dict[str, torch.nn.Module], list, torch.optim.Optimizer, EMAModel]:
        torch.manual_seed(0)
        learn = {"unet": torch.nn.Linear(4, 3, device=device)}
        trainable = list(learn["unet"].parameters())
        return learn, trainable, torch.optim.AdamW(trainable, lr=1e-2), EMAModel(trainable, decay=0.9)

    learn, trainable, optimizer, ema = setup("cpu")
    learn["unet"](torch.ones(2, 4)).sum().backward()
    optimizer_step(optimizer, trainable, None, ema)
    state = {"step": 1, "trainable": trainable_state(learn), "optimizer": optimizer.state_dict(),
             "ema": ema.state_dict(), "scaler": None, "usage": {}, "usage_by_kind": {}, "truncated_draws": 0}  # fmt: skip
    save_checkpoint(tmp_path, 1, state, keep=1)

    device = torch.device("meta")
    learn, trainable, optimizer, ema = setup("meta")
    restore_checkpoint(load_checkpoint(checkpoints(tmp_path)[-1]), learn, optimizer, ema, None, device)
    assert {p.device for p in ema.shadow_params} == {device} == {p.device for p in trainable}
    assert ema.optimization_step == 1
    with torch.no_grad():
        ema.step(trainable)  # what the next optimizer step does
    assert {p.device for p in ema.shadow_params} == {device}


@pytest.mark.skipif(
    not __import__("torch").cuda.is_available(),
    reason="needs a CUDA GPU (the CPU test above uses the meta device)",
)
def test_an_ema_run_resumes_on_the_gpu(data_ws: Workspace, sd_base: str) -> None:
    """The real job on a GPU: a run with EMA resumed from a checkpoint (copied from a finished
    run of the same settings) trains on and saves its pipeline."""
    import shutil

    ws = data_ws
    cfg = {**BASE_CFG, "base": sd_base, "device": "cuda", "ema": True, "ema_decay": 0.9, "steps": 2,
           "checkpoint_every": 2, "validation_prompts": []}  # fmt: skip
    first = run_inline(ws, cfg)
    run = new_run(ws, "t2i_train", {**cfg, "steps": 4})
    run_id = int(run.id)  # type: ignore[arg-type]
    shutil.copytree(ws.runs_dir / str(first.id) / "checkpoints", ws.runs_dir / str(run_id) / "checkpoints")
    from training.runner import execute

    execute(ws, run_id, advance_queue=False)
    final = jobs.get_run(ws, run_id)
    assert final.status == "succeeded", f"{final.message}\n{jobs.log_tail(ws, run_id, 60)}"
    assert "resuming from step-00000002" in (ws.runs_dir / str(run_id) / "log.txt").read_text()
    assert sorted(metrics(ws, run_id)["train_loss"]) == [3, 4]


def test_a_cancel_with_loader_workers_checkpoints_and_ends_cancelled(
    data_ws: Workspace, sd_base: str
) -> None:
    """The Runs tab's cancel (SIGTERM to the run's process group) with the default 2 loader
    workers: the workers must not die of it (they did, and the run ended *failed* with "DataLoader
    worker ... killed by signal: Terminated"); the job stops after its step, checkpoints, ends
    cancelled."""
    ws = data_ws
    cfg = {**BASE_CFG, "base": sd_base, "steps": 400, "batch_size": 2, "resolution": 16, "checkpoint_every": 2,
           "keep_checkpoints": 1, "validation_prompts": [], "num_workers": 2}  # fmt: skip
    run_id = int(new_run(ws, "t2i_train", cfg).id)  # type: ignore[arg-type]
    jobs.launch(ws, run_id)
    ckpt = ws.runs_dir / str(run_id) / "checkpoints"
    wait_for(lambda: (ckpt / "step-00000002").is_dir(), 120, what="checkpoint 2", interval=0.02)
    cancelled = jobs.cancel_run(ws, run_id, grace_s=60)
    assert cancelled.status == "cancelled", f"{cancelled.message}\n{jobs.log_tail(ws, run_id, 30)}"
    assert "stop requested: checkpointed at step" in jobs.log_tail(ws, run_id, 60)
