"""The text encoder's CLIP-style pre-training (``training/miniature_text.py``), on tiny sizes.

Why: from the fifth cpu run on, every T2I arm of issue 12 starts from this encoder and keeps it
frozen, so what it is trained on must stay outside the experiment's held-out prompts, and its loss
must treat identical texts as what they are. The cpu-sized run and its retrieval figures are in
docs/miniature.md ("Fifth cpu run").
"""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch

from backend.miniature.corpus import HELD_OUT_FRACTION
from backend.miniature.world import held_out
from training import miniature_sd as msd
from training import miniature_text as mt

TEXT = msd.TextConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)


def test_pretraining_scenes_never_use_a_held_out_layout_and_are_not_the_corpus() -> None:
    from backend.miniature.corpus import corpus_scenes

    scenes = mt.pretraining_scenes(400, seed=3, split_seed=12, fraction=HELD_OUT_FRACTION)
    assert len(scenes) == 400 and not any(held_out(s, 12, HELD_OUT_FRACTION) for s in scenes)
    assert [repr(s) for s in scenes[:50]] != [repr(s) for s in corpus_scenes(50, 12)]
    assert [repr(s) for s in scenes] == [repr(s) for s in mt.pretraining_scenes(400, 3, 12, HELD_OUT_FRACTION)]


def test_every_writer_describes_the_scene() -> None:
    from backend.miniature.accuracy import caption_accuracy  # the experiment's own scorer

    scene = mt.pretraining_scenes(1, 0, 12, HELD_OUT_FRACTION)[0]
    texts = dict(zip(mt.WRITERS, mt.writer_texts(scene, random.Random(0)), strict=True))
    assert len(set(texts.values())) >= 4
    for writer in ("prompt", "alttext_faithful"):  # the writers that never err or leave things out
        objects = caption_accuracy(texts[writer], scene).aspects["objects"]
        assert objects.precision == 1 and objects.recall == 1
    for text in texts.values():
        assert caption_accuracy(text, scene).aspects["objects"].correct > 0  # each names something true


def test_identical_texts_in_a_batch_are_each_others_positives() -> None:
    torch.manual_seed(0)
    image = torch.randn(3, 8)
    text = image.clone()  # perfectly aligned
    scale = torch.tensor(20.0)
    distinct = torch.eye(3, dtype=torch.bool)
    aligned = mt.multi_positive_clip_loss(text, image, distinct, scale)
    shuffled = mt.multi_positive_clip_loss(text[[1, 2, 0]], image, distinct, scale)
    assert float(aligned) < float(shuffled)
    # texts 0 and 1 are the same string: either image is right for either, so a batch where their
    # images are swapped costs the same as the aligned one
    same = torch.tensor([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=torch.bool)
    twin_text = torch.stack([image[0] + image[1], image[0] + image[1], image[2]])
    swapped = image[[1, 0, 2]]
    twins = mt.multi_positive_clip_loss(twin_text, image, same, scale)
    assert torch.allclose(twins, mt.multi_positive_clip_loss(twin_text, swapped, same, scale))


def test_pretraining_trains_the_encoder_reports_retrieval_with_chance_and_stops_on_request() -> None:
    scenes = mt.pretraining_scenes(40, 0, 12, HELD_OUT_FRACTION)
    tokenizer = msd.build_world_tokenizer(msd.caption_words(msd.world_caption_texts(scenes)))
    torch.manual_seed(0)
    encoder = msd.build_text_encoder(tokenizer, TEXT)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    cfg = mt.TextPretrainConfig(steps=6, batch_size=16, scenes=64, eval_scenes=16, warmup_steps=2, embed_dim=8)
    stats = mt.pretrain_text_encoder(encoder, tokenizer, cfg, 12, HELD_OUT_FRACTION, log=lambda _: None, every=2)
    assert stats["steps"] == 6 and [s for s, _ in stats["loss_curve"]] == [2, 4, 6]
    assert stats["retrieval_chance"] == pytest.approx(1 / 16)
    assert set(stats["retrieval"]) == set(mt.WRITERS) and all(0 <= v <= 1 for v in stats["retrieval"].values())
    assert any(not torch.equal(v, before[k]) for k, v in encoder.state_dict().items())
    assert "chance 0.062" in mt.describe(stats) and "(before " in mt.describe(stats)

    # the images are embedded once for all writers; each writer's score is what it gets alone
    eval_scenes = mt.pretraining_scenes(12, 1, 12, HELD_OUT_FRACTION)
    rng = random.Random(0)
    texts = [mt.writer_texts(s, rng) for s in eval_scenes]
    ids = torch.stack([msd.tokenize(tokenizer, [t[w] for t in texts]) for w in range(len(mt.WRITERS))], dim=1)
    tower, proj = mt.ImageTower(8).eval(), torch.nn.Linear(TEXT.hidden_size, 8, bias=False)
    pixels, pad = msd.images_tensor(eval_scenes), int(tokenizer.pad_token_id)
    together = mt.retrieval_accuracy(encoder, proj, tower, ids, pixels, pad)
    alone = [mt.retrieval_accuracy(encoder, proj, tower, ids[:, w : w + 1], pixels, pad)[0] for w in range(len(mt.WRITERS))]
    assert len(together) == len(mt.WRITERS) and together == alone

    stopped = mt.pretrain_text_encoder(
        msd.build_text_encoder(tokenizer, TEXT), tokenizer, cfg, 12, HELD_OUT_FRACTION, log=lambda _: None,
        progress=lambda step, loss: step >= 2, every=2,
    )  # fmt: skip
    assert stopped["steps"] == 2

    # a short pre-training draws only the scenes its steps can use: 2 steps of 16, not 64
    assert stats["scenes"] == 64
    short = mt.pretrain_text_encoder(
        msd.build_text_encoder(tokenizer, TEXT), tokenizer, dataclasses.replace(cfg, steps=2), 12, HELD_OUT_FRACTION,
        log=lambda _: None,
    )  # fmt: skip
    assert short["scenes"] == 32


def test_pooling_cuts_padding_without_changing_the_result() -> None:
    scenes = mt.pretraining_scenes(10, 0, 12, HELD_OUT_FRACTION)
    tokenizer = msd.build_world_tokenizer(msd.caption_words(msd.world_caption_texts(scenes)))
    torch.manual_seed(0)
    encoder = msd.build_text_encoder(tokenizer, TEXT).eval()
    ids = msd.tokenize(tokenizer, ["A red circle.", "Two blue squares and a yellow triangle."])
    with torch.no_grad():
        full = encoder(ids).pooler_output
        cut = mt.pooled(encoder, ids, tokenizer.pad_token_id)
    assert torch.allclose(full, cut, atol=1e-6)
