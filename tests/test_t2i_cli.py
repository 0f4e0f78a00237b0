"""The text-to-image command line end to end: ``models tiny --family sd`` → ``t2i train`` →
``generate`` → ``eval``, each a real ``recap-studio`` subprocess running the real job (runner
subprocess, SQLite workspace, tiny models loaded through ``from_pretrained``).

One chain in one test: every step needs the previous step's output, and each step pays for
importing torch/diffusers in fresh processes, so splitting it would multiply that cost.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from backend import jobs
from backend.datasets import get_or_create_dataset
from backend.db import write_session
from backend.images import add_image, decode_image
from backend.jobs import configs
from backend.jobs.launch import group_alive
from backend.workspace import Workspace
from tests.conftest import run_cli, wait_for

pytestmark = pytest.mark.timeout(240)

STEPS, BATCH = 3, 2


def last_json(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert lines, "no output"
    return json.loads(lines[-1])


def shapes_dataset(ws: Workspace, name: str = "shapes", n: int = 6) -> None:
    """A few small images with alt-text and recaptions (short for some, long for others)."""
    from io import BytesIO

    from PIL import Image as PILImage

    from backend.captions import add_caption

    colours = ["red", "blue", "green", "yellow", "purple", "orange"]
    with write_session(ws) as s:
        dataset = get_or_create_dataset(s, name)
        for i in range(n):
            buffer = BytesIO()
            PILImage.new("RGB", (40, 40), colours[i % len(colours)]).save(buffer, format="PNG")
            image, _ = add_image(s, ws, int(dataset.id), decode_image(buffer.getvalue()), f"img{i}.png")
            add_caption(s, int(image.id), "alttext", f"{colours[i]} picture {i}")
            add_caption(s, int(image.id), "recap_short" if i % 2 else "recap_long", f"a {colours[i]} square")


def test_train_generate_eval_from_the_command_line(ws: Workspace, tmp_path: Path) -> None:
    shapes_dataset(ws)

    # a tiny Stable Diffusion pipeline, built offline and registered as a t2i artifact
    built = run_cli(
        ws.home, "models", "tiny", "--family", "sd", "--out", "tiny-sd", "--register", "tiny-sd", "--json"
    )
    assert built.returncode == 0, built.stderr
    made = last_json(built.stdout)
    assert made["family"] == "sd" and made["artifact_kind"] == configs.T2I_ARTIFACT
    assert (Path(made["path"]) / "model_index.json").is_file()
    assert jobs.get_artifact(ws, "tiny-sd").kind == configs.T2I_ARTIFACT

    # a bad mix is refused before anything runs, with caption_mix's own message
    bad = run_cli(
        ws.home, "t2i", "train", "--dataset", "shapes", "--base", "tiny-sd", "--mix", "recap_mixx",
        "--train", "unet", "--steps", "2",
    )  # fmt: skip
    assert bad.returncode == 2, bad.stderr
    assert "error: mix: unknown caption-mix preset 'recap_mixx'" in bad.stderr and "recap_mix" in bad.stderr
    assert jobs.list_runs(ws) == []

    # fine-tune it (the folder built above loads: it is the base) on a caption mix
    trained = run_cli(
        ws.home, "t2i", "train", "--dataset", "shapes", "--base", made["path"], "--mix", "recap_mix",
        "--train", "unet", "--steps", str(STEPS), "--batch-size", str(BATCH), "--resolution", "32",
        "--empty-prob", "0.2", "--validation-prompt", "a red square, on the left",
        "--validation-prompt", "a blue square", "--validation-every", "2", "--validation-inference-steps", "2",
        "--num-workers", "0", "--torch-threads", "1", "--device", "cpu", "--json",
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    summary = last_json(trained.stdout)
    assert summary["status"] == "succeeded"
    run = jobs.get_run(ws, summary["run_id"])
    assert run.config["validation_prompts"] == ["a red square, on the left", "a blue square"]  # commas kept
    assert run.config["base"] == str(Path(made["path"]).resolve())
    artifact = jobs.get_artifact(ws, summary["artifact"])
    assert artifact.kind == configs.T2I_ARTIFACT and artifact.run_id == run.id
    assert Path(summary["output"]) == jobs.artifact_path(ws, artifact).resolve()
    assert Path(summary["output"]).is_absolute() and (Path(summary["output"]) / "model_index.json").is_file()
    usage = summary["usage"]
    assert usage == artifact.meta["usage"] and sum(usage.values()) == STEPS * BATCH
    assert set(usage) <= {"recap_short", "recap_long", "empty"}, (
        usage
    )  # every image has one of the mix's kinds

    # generate from the fine-tuned artifact by name
    generated = run_cli(
        ws.home, "generate", "--prompts", "studio_prompts", "--checkpoint", summary["artifact"],
        "--seeds", "0,1", "--max-prompts", "2", "--steps", "2", "--torch-threads", "1", "--device", "cpu",
        "--json",
    )  # fmt: skip
    assert generated.returncode == 0, generated.stderr
    gen = last_json(generated.stdout)
    assert gen["status"] == "succeeded" and gen["images"] == 2 * 2
    assert gen["dataset"] == f"generated-run-{gen['run_id']}"

    # evaluate with a tiny CLIP
    from training.clip import build_tiny_clip

    clip_name, clip_weights = build_tiny_clip(tmp_path / "clip")
    evaluated = run_cli(
        ws.home, "eval", "--dataset", gen["dataset"], "--metrics", "clip_score,r_precision",
        "--clip-model", clip_name, "--clip-pretrained", str(clip_weights), "--torch-threads", "1",
        "--device", "cpu", "--json",
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    result = last_json(evaluated.stdout)
    assert result["status"] == "succeeded"
    got = {(r["checkpoint"], r["regime"], r["metric"]) for r in result["results"]}
    assert got == {(summary["artifact"], "raw", "clip_score"), (summary["artifact"], "raw", "r_precision")}
    for r in result["results"]:
        assert isinstance(r["value"], float) and r["n"] == 4

    # without --json the same records print as a table checkpoint × regime × metric
    from rich.console import Console

    from studio.t2i_cli import results_table

    console = Console(record=True, width=160)
    console.print(results_table(result["results"]))
    text = console.export_text()
    assert "checkpoint" in text and "clip_score" in text and "r_precision" in text
    assert summary["artifact"] in text and "raw" in text and "n=4)" in text
    assert "chance" in text  # every score is printed beside its mismatched-prompt baseline


def test_sighup_while_t2i_train_waits_for_the_gpu_cancels_it(ws: Workspace, tmp_path: Path) -> None:
    """A closed terminal must not leave a ``t2i train`` queued to start later on its own.

    The GPU slot is held by a model-free self-test, so the training waits in the queue and
    no model is ever loaded; the hang-up arrives once the command says it is waiting.
    """
    shapes_dataset(ws)
    holder = jobs.create_run(ws, "selftest", {"items": 5000, "delay_s": 0.05}, needs_gpu=True)
    jobs.launch(ws, holder.id)
    stderr_file = tmp_path / "stderr.txt"
    with stderr_file.open("w") as stderr:
        cli = subprocess.Popen(
            [
                sys.executable, "-m", "studio.cli", "--home", str(ws.home), "t2i", "train", "--dataset",
                "shapes", "--base", "org/tiny-sd", "--mix", "recap_mix", "--train", "unet", "--steps", "2",
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        )  # fmt: skip
    try:
        wait_for(lambda: "waits in the queue" in stderr_file.read_text(), 120, what="the run to queue")
        cli.send_signal(signal.SIGHUP)
        stdout, _ = cli.communicate(timeout=60)
    finally:
        if cli.poll() is None:
            cli.kill()
        jobs.cancel_run(ws, holder.id)
    assert cli.returncode == 128 + signal.SIGHUP, stderr_file.read_text()
    (train,) = [r for r in jobs.list_runs(ws) if r.kind == "t2i_train"]
    assert train.status == "cancelled" and train.started_at is None  # never started, never will
    assert last_json(stdout)["status"] == "cancelled"
    assert "was cancelled on SIGHUP" in stderr_file.read_text()
    assert not group_alive(jobs.get_run(ws, holder.id).pgid)
