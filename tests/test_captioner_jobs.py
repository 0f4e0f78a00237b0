"""Captioner fine-tuning, recaptioning and CLIP scoring as real runs.

Every run goes through ``backend.jobs`` (a queued row, ``python -m training.runner`` in its own
process group, real SQLite) on a copy of the offline demo workspace, with the tiny captioners
of ``training.tiny`` and a tiny open_clip model built offline — the same loading paths real
checkpoints take. Torch is pinned to one thread per run: on a shared 2-core machine more
threads make tiny models slower, not faster.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage
from sqlmodel import col, select

from backend import jobs
from backend.clip_tokens import is_truncated
from backend.db import read_session, write_session
from backend.demo import DEMO_DATASET
from backend.jobs.configs import new_run
from backend.models import Caption, CaptionStatus, Image
from backend.scores import CaptionScore, caption_scores
from backend.storage import image_path
from backend.workspace import Workspace
from tests.conftest import wait_for

pytest_plugins = ("tests.tiny_models", "tests.demo_workspace")
pytestmark = pytest.mark.timeout(300)

TRAIN = {
    "dataset": DEMO_DATASET,
    "epochs": 2,
    "batch_size": 2,
    "eval_every": 2,
    "val_fraction": 0.34,  # 2 of the demo's 6 approved images
    "lr": 1e-3,
    "max_new_tokens": 12,
    "torch_threads": 1,
}
RECAP = {"dataset": DEMO_DATASET, "batch_size": 8, "num_workers": 1, "max_new_tokens": 12, "torch_threads": 1}


# --------------------------------------------------------------------------- fixtures and helpers


def run_job(ws: Workspace, kind: str, values: dict[str, Any], expect: str = "succeeded") -> jobs.Run:
    """Create the run exactly as the CLI / Runs tab do and run it in the foreground (subprocess)."""
    run = new_run(ws, kind, values)
    final = jobs.run_foreground(ws, int(run.id))  # type: ignore[arg-type]
    assert final.status == expect, (
        f"{kind} run {run.id}: {final.message}\n{jobs.log_tail(ws, int(run.id), 60)}"
    )
    return final


def metric_steps(ws: Workspace, run_id: int) -> dict[str, list[int]]:
    steps: dict[str, list[int]] = {}
    for m in jobs.run_metrics(ws, run_id):
        steps.setdefault(m.name, []).append(m.step)
    return steps


def approved(ws: Workspace, kind: str) -> dict[int, Caption]:
    with read_session(ws) as s:
        rows = s.exec(
            select(Caption).where(
                Caption.kind == kind,
                Caption.status == CaptionStatus.approved.value,
                Caption.is_current == True,  # noqa: E712
            )
        ).all()
    return {int(c.id): c for c in rows}  # type: ignore[arg-type]


def run_captions(ws: Workspace, run_id: int) -> list[Caption]:
    with read_session(ws) as s:
        return list(s.exec(select(Caption).where(Caption.run_id == run_id)).all())


def n_images(ws: Workspace) -> int:
    with read_session(ws) as s:
        return len(s.exec(select(Image.id)).all())


# --------------------------------------------------------------------------- fine-tune → recaption → score


def test_finetune_both_styles_then_recaption_and_clip_score(
    demo_ws: Workspace, tiny_model_dir: Callable[[str], Path], tiny_clip: tuple[str, Path]
) -> None:
    ws = demo_ws
    clip_name, clip_path = tiny_clip
    train = run_job(
        ws,
        "captioner_train",
        {**TRAIN, "base": str(tiny_model_dir("blip")), "style": "both", "both_mode": "separate",
         "clip_model": clip_name, "clip_pretrained": str(clip_path)},
    )  # fmt: skip
    run_id = int(train.id)  # type: ignore[arg-type]
    assert train.done == train.total == 8  # 2 styles x 2 epochs x 2 steps (4 train images, batch 2)

    # losses every step, validation every 2 steps; step numbers run on across the two fine-tunes
    steps = metric_steps(ws, run_id)
    assert steps["train_loss"] == list(range(1, 9))
    for name in ("val_loss", "bleu", "cider", "clip_score"):
        assert steps[name] == [2, 4, 6, 8], name
    values = {m.name: m.value for m in jobs.run_metrics(ws, run_id) if m.step == 8}
    assert 0 <= values["bleu"] <= 100 and values["cider"] >= 0 and -100 <= values["clip_score"] <= 100

    # two artifacts, each with the exact training and validation sets it used
    artifacts = {a.meta["style"]: a for a in jobs.list_artifacts(ws, kind="captioner", run_id=run_id)}
    assert set(artifacts) == {"short", "long"}
    for style, artifact in artifacts.items():
        meta = artifact.meta
        assert (meta["family"], meta["both_mode"], meta["base"]) == (
            "blip",
            "separate",
            str(tiny_model_dir("blip")),
        )
        assert meta["config"]["lr"] == 1e-3 and meta["config"]["mixed_precision_used"] == "no"
        human = approved(ws, f"human_{style}")
        train_ids, val_ids = meta["training_set"]["caption_ids"], meta["validation_set"]["caption_ids"]
        assert sorted(train_ids + val_ids) == sorted(human) and len(val_ids) == 2
        assert not set(meta["training_set"]["image_ids"]) & set(meta["validation_set"]["image_ids"])
        assert (jobs.artifact_path(ws, artifact) / "config.json").is_file()
    assert (
        artifacts["short"].meta["validation_set"]["image_ids"]
        == artifacts["long"].meta["validation_set"]["image_ids"]
    )

    # validation samples: generated captions beside the held-out human captions
    samples_dir = jobs.run_dir(ws, train) / "samples"
    assert sorted(int(p.stem.split("_")[1]) for p in samples_dir.glob("step_*.json")) == [2, 4, 6, 8]
    rows = json.loads((samples_dir / "step_4.json").read_text())  # the short fine-tune's last evaluation
    human_short = {c.image_id: c.text for c in approved(ws, "human_short").values()}
    assert len(rows) == 2
    for row in rows:
        assert set(row) >= {"image_id", "image_path", "human", "generated"}
        assert row["human"] == human_short[row["image_id"]] and isinstance(row["generated"], str)
        assert row["image_id"] in artifacts["short"].meta["validation_set"]["image_ids"]
        assert ws.inside(row["image_path"]).is_file()

    # the short artifact recaptions the demo in both styles: the long sibling is found by run
    recap = run_job(ws, "recaption", {**RECAP, "captioner": artifacts["short"].name, "style": "both"})
    captions = run_captions(ws, int(recap.id))  # type: ignore[arg-type]
    assert Counter(c.kind for c in captions) == {"recap_short": 60, "recap_long": 60}
    assert len({(c.image_id, c.kind) for c in captions}) == 120
    generation = {"max_new_tokens": 12, "num_beams": 1, "do_sample": False, "temperature": None,
                  "top_p": None, "repetition_penalty": None}  # fmt: skip
    for c in captions:
        artifact = artifacts[c.kind.removeprefix("recap_")]
        assert c.provenance["captioner"] == artifact.name and c.provenance["artifact_id"] == artifact.id
        assert c.provenance["family"] == "blip" and c.provenance["prompt"] is None
        assert c.provenance["generation"] == generation
        assert c.status == CaptionStatus.final.value and c.source == "recaption" and c.text.strip()
    assert (recap.done, recap.total) == (120, 120)

    # CLIP scores of the recaptions and human captions, with the 77-token flag
    long_text = " ".join(["a small red circle next to a large blue square on a light gray background"] * 8)
    with write_session(ws) as s:
        s.add(Caption(image_id=1, kind="upsampled", text=long_text, source="test"))
    kinds = ["recap_short", "recap_long", "human_long", "upsampled"]
    score_values = {"dataset": DEMO_DATASET, "kinds": kinds, "model": clip_name, "pretrained": str(clip_path),
                    "batch_size": 16, "torch_threads": 1}  # fmt: skip
    scored = run_job(ws, "clip_score", score_values)
    with read_session(ws) as s:
        scores = s.exec(select(CaptionScore, Caption).join(Caption)).all()
    assert len(scores) == 120 + 6 + 1 == scored.total == scored.done
    for score, caption in scores:
        assert (score.metric, score.model, score.pretrained) == ("clip_score", clip_name, str(clip_path))
        assert score.run_id == scored.id and -100 <= score.value <= 100
        assert score.truncated == is_truncated(caption.text)
    assert any(s.truncated for s, c in scores if c.kind == "upsampled")
    assert any(s.truncated for s, c in scores if c.kind == "human_long")  # two demo captions pass 77 tokens
    with read_session(ws) as s:
        image_1 = s.exec(select(Caption).where(Caption.image_id == 1, col(Caption.kind).in_(kinds))).all()
    by_caption = caption_scores(ws, 1)  # what Review shows for one image
    assert set(by_caption) == {c.id for c in image_1} and len(image_1) == 4
    assert all(len(v) == 1 and v[0].model == clip_name for v in by_caption.values())
    from backend.review import image_variants  # Review's side-by-side view carries the scores

    shown = {v.caption_id: v.scores for v in image_variants(ws, 1).variants}
    for c in image_1:
        (metric, value, model, cut), = shown[c.id]
        assert metric == "clip_score" and model.startswith(clip_name) and cut == is_truncated(c.text)
        assert value == by_caption[c.id][0].value

    # scoring again with the same model writes nothing new (idempotent across runs)
    again = run_job(ws, "clip_score", score_values)
    with read_session(ws) as s:
        assert len(s.exec(select(CaptionScore.id)).all()) == 127
        assert not s.exec(select(CaptionScore.id).where(CaptionScore.run_id == again.id)).all()


def test_a_clip_tag_whose_weights_are_missing_says_where_to_put_them(tiny_clip: tuple[str, Path]) -> None:
    from training.clip import ClipWeightsMissing, load_clip

    with pytest.raises(ClipWeightsMissing) as missing:
        load_clip("ViT-B-32", "openai")  # the job's default; no weights on this machine
    message = str(missing.value)
    assert "cannot download" in message and ".cache/clip/ViT-B-32.pt" in message
    assert "huggingface-cli download timm/vit_base_patch32_clip_224.openai" in message
    assert "pass its path as pretrained" in message
    with pytest.raises(ClipWeightsMissing, match="neither a file nor a known tag"):
        load_clip("ViT-B-32", "/no/such/weights.pt")


# --------------------------------------------------------------------------- one model, two styles


def test_prompt_mode_trains_one_model_for_both_styles(
    demo_ws: Workspace, tiny_model_dir: Callable[[str], Path]
) -> None:
    ws = demo_ws
    train = run_job(
        ws,
        "captioner_train",
        {**TRAIN, "base": str(tiny_model_dir("git")), "style": "both", "both_mode": "prompt"},
    )
    artifacts = jobs.list_artifacts(ws, kind="captioner", run_id=int(train.id))  # type: ignore[arg-type]
    assert len(artifacts) == 1
    meta = artifacts[0].meta
    assert (meta["style"], meta["both_mode"], meta["family"]) == ("both", "prompt", "git")
    assert meta["prompts"] == {"short": "<SHORT>", "long": "<LONG>"}
    assert len(meta["training_set"]["caption_ids"]) == 8  # 4 train images x 2 styles
    steps = metric_steps(ws, int(train.id))  # type: ignore[arg-type]
    assert steps["train_loss"] == list(range(1, 9))  # (2 + 2 batches) per epoch x 2 epochs
    assert {"bleu_short", "bleu_long", "cider_short", "cider_long"} <= set(steps)
    rows = json.loads((jobs.run_dir(ws, train) / "samples" / "step_8.json").read_text())
    assert Counter(r["style"] for r in rows) == {"short": 2, "long": 2}

    recap = run_job(ws, "recaption", {**RECAP, "captioner": str(artifacts[0].id), "style": "both"})
    captions = run_captions(ws, int(recap.id))  # type: ignore[arg-type]
    assert Counter(c.kind for c in captions) == {"recap_short": 60, "recap_long": 60}
    assert {c.kind: c.provenance["prompt"] for c in captions} == {
        "recap_short": "<SHORT>",
        "recap_long": "<LONG>",
    }
    assert {c.provenance["artifact_id"] for c in captions} == {artifacts[0].id}

    # a family without prompts cannot learn two styles in one model: refused before any training
    refused = run_job(ws, "captioner_train", {**TRAIN, "base": str(tiny_model_dir("ved")), "style": "both",
                                             "both_mode": "prompt"}, expect="failed")  # fmt: skip
    assert "ved captioners take no prompt" in refused.message and "both_mode separate" in refused.message
    assert not jobs.run_metrics(ws, int(refused.id))  # type: ignore[arg-type]
    # nor keep rehearsed alt-text apart from a human style
    refused = run_job(ws, "captioner_train", {**TRAIN, "base": str(tiny_model_dir("ved")), "style": "long",
                                             "replay": 4}, expect="failed")  # fmt: skip
    assert "cannot be told apart; set replay 0" in refused.message
    assert not jobs.run_metrics(ws, int(refused.id))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- LoRA


def test_lora_finetune_saves_a_merged_model_that_loads_directly(
    demo_ws: Workspace, tiny_model_dir: Callable[[str], Path]
) -> None:
    import torch
    from safetensors.torch import load_file

    from training.adapters import load_captioner

    ws = demo_ws
    base = tiny_model_dir("blip")
    train = run_job(
        ws,
        "captioner_train",
        {**TRAIN, "base": str(base), "style": "short", "lora": True, "lora_rank": 4, "freeze_vision": True,
         "mixed_precision": "auto"},
    )  # fmt: skip
    (artifact,) = jobs.list_artifacts(ws, kind="captioner", run_id=int(train.id))  # type: ignore[arg-type]
    folder = jobs.artifact_path(ws, artifact)
    assert not (folder / "adapter_config.json").exists()  # merged, not a peft adapter folder
    # auto precision on the CPU is full precision, said in the log and recorded with the artifact
    assert artifact.meta["config"]["mixed_precision_used"] == "no"
    assert "mixed_precision auto: no on cpu" in jobs.log_tail(ws, int(train.id), 200)  # type: ignore[arg-type]

    tuned, original = load_file(folder / "model.safetensors"), load_file(base / "model.safetensors")
    assert set(tuned) == set(original)  # no lora_A / lora_B leftovers
    query = "text_decoder.bert.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(tuned[query], original[query])  # the LoRA update was merged in
    vision = [k for k in original if k.startswith("vision_model.")]
    assert vision and all(torch.equal(tuned[k], original[k]) for k in vision)  # frozen tower untouched

    adapter = load_captioner(folder)
    assert adapter.family == "blip"
    captions = adapter.generate(
        adapter.prepare_batch([PILImage.new("RGB", (64, 64), (200, 30, 30))]), max_new_tokens=8
    )
    assert len(captions) == 1


# --------------------------------------------------------------------------- robustness


def test_corrupt_image_is_logged_and_skipped_not_fatal(
    demo_ws: Workspace, tiny_model_dir: Callable[[str], Path]
) -> None:
    ws = demo_ws
    with read_session(ws) as s:
        victim = s.exec(select(Image).where(Image.id == 7)).one()
    stored = image_path(ws, victim.sha256, victim.ext)
    stored.write_bytes(stored.read_bytes()[:200])  # a stored file overwritten on disk: truncated PNG

    recap = run_job(ws, "recaption", {**RECAP, "captioner": str(tiny_model_dir("blip")), "style": "short"})
    captions = run_captions(ws, int(recap.id))  # type: ignore[arg-type]
    assert len(captions) == n_images(ws) - 1 == 59
    assert 7 not in {c.image_id for c in captions}
    skipped = jobs.run_metrics(ws, int(recap.id), "skipped")  # type: ignore[arg-type]
    assert [(m.step, m.value) for m in skipped] == [(7, 1.0)]
    assert "skipping image 7" in jobs.log_tail(ws, int(recap.id), 100)  # type: ignore[arg-type]
    assert (recap.done, recap.total) == (60, 60)
    assert recap.rate and recap.rate > 0 and recap.eta_s == 0.0  # the UI's rate / ETA columns


def test_killed_and_cancelled_finetune_resumes_from_its_checkpoints(
    demo_ws: Workspace, tiny_model_dir: Callable[[str], Path]
) -> None:
    """kill -9 resumes from the last epoch checkpoint; SIGTERM (cancel) checkpoints at the
    current step. Either way every step's loss is recorded exactly once and one artifact results."""
    import os
    import signal

    from backend.jobs.launch import group_alive

    ws = demo_ws
    run = new_run(ws, "captioner_train", {**TRAIN, "base": str(tiny_model_dir("blip")), "style": "short",
                                         "epochs": 60, "eval_every": 1000})  # fmt: skip
    run_id = int(run.id)  # type: ignore[arg-type]

    def wait_steps(n: int) -> int:
        def steps() -> int | None:
            done = len(jobs.run_metrics(ws, run_id, "train_loss"))
            if done >= n:
                return done
            assert jobs.get_run(ws, run_id).status == "running", jobs.log_tail(ws, run_id, 40)
            return None

        return wait_for(steps, 120, what=f"{n} training steps", interval=0.05)

    jobs.launch(ws, run_id)
    wait_steps(9)
    pgid = jobs.get_run(ws, run_id).pgid
    os.killpg(pgid, signal.SIGKILL)
    wait_for(
        lambda: not group_alive(pgid) and jobs.get_run(ws, run_id).status == "interrupted",
        15,
        what="the killed run to be marked interrupted",
        interval=0.05,
    )
    killed_at = len(jobs.run_metrics(ws, run_id, "train_loss"))
    assert 9 <= killed_at < 120

    jobs.resume_run(ws, run_id)
    wait_steps(killed_at + 8)
    cancelled = jobs.cancel_run(ws, run_id)
    assert cancelled.status == "cancelled"
    stopped_at = len(jobs.run_metrics(ws, run_id, "train_loss"))
    assert killed_at + 8 <= stopped_at < 120
    assert (jobs.run_dir(ws, cancelled) / "checkpoints" / "short" / "last.pt").is_file()

    final = jobs.resume_run(ws, run_id, foreground=True)
    assert final.status == "succeeded", jobs.log_tail(ws, run_id, 40)
    assert final.attempt == 3 and (final.done, final.total) == (120, 120)
    assert [m.step for m in jobs.run_metrics(ws, run_id, "train_loss")] == list(range(1, 121))
    log = jobs.log_tail(ws, run_id, 600)
    resumed = [int(step) for step in re.findall(r"resuming short from .*'step': (\d+)", log)]
    assert len(resumed) == 2
    # after the kill: the last epoch checkpoint (2 steps per epoch); after the cancel: where it stopped
    assert resumed[0] % 2 == 0 and killed_at - 3 <= resumed[0] <= killed_at
    assert resumed[1] == stopped_at
    assert len(jobs.list_artifacts(ws, kind="captioner", run_id=run_id)) == 1


# --------------------------------------------------------------------------- token limits


def test_recaption_limits_tokens_per_style_and_flags_cut_captions(
    ws: Workspace, tiny_model_dir: Callable[[str], Path]
) -> None:
    """Long captions get a longer token limit than short ones by default (384 vs 128, not 128 for
    both); every recaption records whether it stopped at its limit (``hit_token_limit``), the log
    and metrics count such captions per kind, and Review's statistics show their share."""
    import io

    from backend.caption_stats import dataset_caption_stats
    from backend.datasets import get_or_create_dataset
    from backend.images import add_image, decode_image
    from studio.tab_review import stats_summary_html

    with write_session(ws) as s:
        for name in ("few", "few-default"):
            ds = get_or_create_dataset(s, name)
            for i in range(3):
                buf = io.BytesIO()
                PILImage.new("RGB", (32, 32), (200, 40 * i, 60 + i)).save(buf, format="PNG")
                add_image(s, ws, int(ds.id), decode_image(buf.getvalue()), f"{name}-{i}.png")  # type: ignore[arg-type]
    blip = str(tiny_model_dir("blip"))
    base = {"captioner": blip, "batch_size": 3, "num_workers": 0, "torch_threads": 1}

    # two new tokens: the tiny captioner never reaches its end token, every caption is cut
    cut = run_job(ws, "recaption", {**base, "dataset": "few", "style": "short", "max_new_tokens": 2})
    captions = run_captions(ws, int(cut.id))  # type: ignore[arg-type]
    assert [c.provenance["hit_token_limit"] for c in captions] == [True] * 3  # type: ignore[index]
    assert {c.provenance["generation"]["max_new_tokens"] for c in captions} == {2}  # type: ignore[index]
    log = jobs.log_tail(ws, int(cut.id), 50)  # type: ignore[arg-type]
    assert "3 of the 3 recap_short captions written now stopped at the 2-token limit" in log
    assert [m.value for m in jobs.run_metrics(ws, int(cut.id), "hit_token_limit/recap_short")] == [3.0]  # type: ignore[arg-type]
    stats = dataset_caption_stats(ws, "few")
    assert (stats["recap_short"].hit_limit, stats["recap_short"].limit_known) == (3, 3)
    assert stats["recap_short"].hit_limit_fraction == 1.0
    html = stats_summary_html("few", stats, 1000)
    assert "cut at token limit" in html and "100.0% <small>(3)</small>" in html

    # the defaults: one limit per style, each caption flagged true or false
    default = run_job(ws, "recaption", {**base, "dataset": "few-default", "style": "both"})
    captions = run_captions(ws, int(default.id))  # type: ignore[arg-type]
    limits = {(c.kind, c.provenance["generation"]["max_new_tokens"]) for c in captions}  # type: ignore[index]
    assert limits == {("recap_short", 128), ("recap_long", 384)}
    assert all(isinstance(c.provenance["hit_token_limit"], bool) for c in captions)  # type: ignore[index]
    log = jobs.log_tail(ws, int(default.id), 50)  # type: ignore[arg-type]
    assert "token limit recap_short 128, recap_long 384" in log
