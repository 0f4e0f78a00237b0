"""The miniature world's BLIP captioner (issue 12) and captioner_train on alt-text.

The builder's folder must load with plain ``from_pretrained`` (and through the studio's adapter)
and caption a world image; ``captioner_train --captions alttext`` (the stand-in for web
pretraining) runs through the real runner on a tiny corpus and registers an artifact that says
what it was trained on; alt-text trains a short captioner only.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from backend import jobs
from backend.db import migrate
from backend.jobs.configs import ConfigError, new_run, parse_config
from backend.jobs.models import Artifact
from backend.miniature.corpus import build_corpus
from backend.miniature.world import render, sample_scene
from backend.workspace import Workspace

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def smoke_captioner(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.miniature_captioner import build_world_captioner

    return build_world_captioner(tmp_path_factory.mktemp("captioner") / "smoke", size="smoke", seed=0)


def mini_workspace(home: Path, human_images: int) -> Workspace:
    """A migrated workspace holding a 24-image miniature corpus (dataset ``mini``)."""
    ws = Workspace(home).ensure()
    migrate(ws)
    build_corpus(ws, "mini", n_images=24, human_images=human_images, seed=5, n_prompts=4)
    return ws


def train_captioner(ws: Workspace, values: dict[str, Any]) -> tuple[int, Artifact]:
    """Run ``captioner_train`` through the real runner; its run id and its one artifact."""
    run = new_run(ws, "captioner_train", values)
    final = jobs.run_foreground(ws, int(run.id))  # type: ignore[arg-type]
    assert final.status == "succeeded", f"{final.message}\n{jobs.log_tail(ws, int(run.id), 40)}"  # type: ignore[arg-type]
    (artifact,) = jobs.list_artifacts(ws, kind="captioner", run_id=int(run.id))  # type: ignore[arg-type]
    return int(run.id), artifact  # type: ignore[arg-type]


def test_builder_folder_loads_with_from_pretrained_and_captions(smoke_captioner: Path) -> None:
    import torch
    from transformers import BlipForConditionalGeneration, BlipProcessor

    from training.adapters import load_captioner
    from training.miniature_captioner import MAX_CAPTION_TOKENS, world_captions

    model = BlipForConditionalGeneration.from_pretrained(smoke_captioner)
    processor = BlipProcessor.from_pretrained(smoke_captioner)
    assert model.config.vision_config.image_size == 32
    assert model.generation_config.max_new_tokens == MAX_CAPTION_TOKENS
    image = render(sample_scene(random.Random(3)))
    with torch.no_grad():
        out = model.generate(**processor(images=image, return_tensors="pt"), max_new_tokens=6)
    assert isinstance(processor.decode(out[0], skip_special_tokens=True), str)

    # every word of the world is one token: no [UNK], and a long caption fits the generation limit
    tok = processor.tokenizer
    for text in list(world_captions(n_scenes=50, seed=1))[:300]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.unk_token_id not in ids, text
        assert len(ids) < MAX_CAPTION_TOKENS
    assert tok.tokenize("The blue disc sits to the left of the two yellow triangles.") == [
        "the", "blue", "disc", "sits", "to", "the", "left", "of", "the", "two", "yellow", "triangles", ".",
    ]  # fmt: skip

    adapter = load_captioner(str(smoke_captioner))  # the studio's loading path
    captions = adapter.generate(adapter.prepare_batch([image, image]), max_new_tokens=5)
    assert len(captions) == 2 and all(isinstance(c, str) for c in captions)


def test_alttext_pretraining_through_the_runner(smoke_captioner: Path, tmp_path: Path) -> None:
    ws = mini_workspace(tmp_path / "home", human_images=2)
    values = {
        "dataset": "mini",
        "base": str(smoke_captioner),
        "captions": "alttext",
        "style": "short",
        "epochs": 1,
        "batch_size": 8,
        "val_fraction": 0.2,
        "eval_every": 1000,
        "max_new_tokens": 6,
        "lr": 1e-3,
        "lr_schedule": "cosine",
        "torch_threads": 1,
        "device": "cpu",
    }
    run_id, artifact = train_captioner(ws, values)
    meta = artifact.meta
    assert meta["captions"] == "alttext" and meta["style"] == "short"
    assert "alttext" in artifact.name
    # all 24 images have one alt-text each (any review status); 5 of them are held out
    assert len(meta["training_set"]["image_ids"]) + len(meta["validation_set"]["image_ids"]) == 24
    assert len(meta["validation_set"]["image_ids"]) == 5
    assert set(meta["validation_metrics"]) >= {"val_loss", "bleu", "cider"}
    # the cosine schedule reached the optimizer: its last step (3 steps of 8 from 19 images) ran at
    # lr * 0.5 (1 + cos(2 pi / 3)) = a quarter of lr
    import torch

    from training.lr_schedule import lr_factor

    (checkpoint,) = (tmp_path / "home").rglob("short/last.pt")
    state = torch.load(checkpoint, weights_only=False)
    assert state["step"] == 3
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-3 * lr_factor(2, 3, "cosine"))
    assert lr_factor(2, 3, "cosine") == pytest.approx(0.25)
    assert "lr 0.001 cosine, warm-up 0" in jobs.log_tail(ws, run_id, 200)

    from training.adapters import load_captioner

    adapter = load_captioner(str(jobs.artifact_path(ws, artifact)))
    assert len(adapter.generate(adapter.prepare_batch([render(sample_scene(random.Random(1)))]), 4)) == 1


def test_lr_schedule_options_are_checked() -> None:
    with pytest.raises(ConfigError):
        parse_config("captioner_train", {"dataset": "mini", "lr_schedule": "linear"})
    with pytest.raises(ConfigError, match="lr_warmup_steps must be at least 0"):
        parse_config("captioner_train", {"dataset": "mini", "lr_warmup_steps": -1})
    defaults = parse_config("captioner_train", {"dataset": "mini"})
    assert (defaults.lr_schedule, defaults.lr_warmup_steps) == ("constant", 0)


def test_alttext_with_style_long_or_both_is_refused() -> None:
    for style in ("long", "both"):
        with pytest.raises(ConfigError, match="captions alttext trains a short captioner only"):
            parse_config("captioner_train", {"dataset": "mini", "captions": "alttext", "style": style})
    cfg = parse_config("captioner_train", {"dataset": "mini"})
    assert cfg.captions == "human"  # today's behaviour stays the default
    with pytest.raises(ConfigError):
        parse_config("captioner_train", {"dataset": "mini", "captions": "web"})


def test_finetune_rehearsing_alttext(smoke_captioner: Path, tmp_path: Path) -> None:
    """``replay`` trains a seeded sample of alt-text (images outside the human set) alongside the
    human long captions, unprompted, while the long style gets its prompt; the artifact records both."""
    ws = mini_workspace(tmp_path / "home", human_images=4)
    values = {
        "dataset": "mini",
        "base": str(smoke_captioner),
        "style": "long",
        "replay": 6,
        "epochs": 2,
        "batch_size": 4,
        "val_fraction": 0.25,
        "eval_every": 1000,
        "max_new_tokens": 6,
        "lr": 1e-3,
        "torch_threads": 1,
        "device": "cpu",
    }
    run_id, artifact = train_captioner(ws, values)
    meta = artifact.meta
    assert meta["prompts"] == {"long": "<LONG>"}  # the unprompted condition belongs to the alt-text
    human = set(meta["training_set"]["image_ids"]) | set(meta["validation_set"]["image_ids"])
    assert len(human) == 4 and len(meta["training_set"]["image_ids"]) == 3
    rehearsed = meta["replay_set"]["image_ids"]
    assert len(rehearsed) == 6 and not human & set(rehearsed)
    # per epoch: one batch of the 3 human captions and two of the 6 alt-texts (batches keep one style)
    assert meta["steps"] == 2 * (1 + 2)
    assert "(+6 alt-text rehearsed)" in jobs.log_tail(ws, run_id, 200)

    _, second = train_captioner(ws, values)  # the same seed rehearses the same sample
    assert second.meta["replay_set"] == meta["replay_set"]


def test_replay_needs_a_fine_tune_on_human_captions() -> None:
    with pytest.raises(ConfigError, match="replay rehearses alt-text during a fine-tune on human captions"):
        parse_config("captioner_train", {"dataset": "mini", "captions": "alttext", "replay": 10})
    assert parse_config("captioner_train", {"dataset": "mini"}).replay == 0


def test_mirrored_examples_swap_left_and_right(tmp_path: Path) -> None:
    """A mirrored example is the image flipped left-right with left/right swapped in its caption."""
    import numpy as np

    from training.data import Example, ImageCache, ImageRef, mirrored_example, swap_left_right

    assert swap_left_right("Left: a disc to the right of the square, leftmost at the top left.") == (
        "Right: a disc to the left of the square, rightmost at the top right."
    )
    assert swap_left_right("LEFT or Right, bright light") == "RIGHT or Left, bright light"
    path = tmp_path / "scene.png"
    render(sample_scene(random.Random(3))).save(path)
    example = Example(ImageRef(7, path, "scene.png"), 11, "A red circle on the left.", "long")
    mirrored = mirrored_example(example)
    assert (mirrored.text, mirrored.mirrored, mirrored.caption_id) == ("A red circle on the right.", True, 11)
    assert mirrored_example(mirrored) == example
    cache = ImageCache()
    assert np.array_equal(np.asarray(cache.of(mirrored)), np.asarray(cache.of(example))[:, ::-1])


def test_finetune_with_mirrored_examples(smoke_captioner: Path, tmp_path: Path) -> None:
    """``mirror`` doubles the training examples (not the validation ones) and says so in the artifact."""
    ws = mini_workspace(tmp_path / "home", human_images=4)
    values = {
        "dataset": "mini",
        "base": str(smoke_captioner),
        "style": "long",
        "mirror": True,
        "epochs": 1,
        "batch_size": 2,
        "val_fraction": 0.25,
        "eval_every": 1000,
        "max_new_tokens": 6,
        "torch_threads": 1,
        "device": "cpu",
    }
    run_id, artifact = train_captioner(ws, values)
    meta = artifact.meta
    assert len(meta["training_set"]["caption_ids"]) == 3 and meta["config"]["mirror"] is True
    assert meta["steps"] == 3  # 3 captions and their 3 mirror images, 2 to a batch
    assert "6 train / 1 val examples" in jobs.log_tail(ws, run_id, 200)
