"""Evaluation protocols of issue 9: CLIP R-precision (7e), FID preprocessing (7f), KID's spread (7h).

Plain numbers where the maths can be checked by hand; the Inception network is torchvision's
with seeded random weights (no pretrained weights on this machine), which is enough to check
that two inputs give the same features; a real SQLite workspace for the stored rows.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image as PILImage

from backend.db import migrate, write_session
from backend.evaluation import EvalResult, results_table, results_wide
from backend.workspace import Workspace
from training.metrics import RP_DISTRACTORS, clip_r_precision, r_precision_probability

# --------------------------------------------------------------------------- R-precision (7e)


def planted(n_prompts: int, beaten_by: int) -> tuple[np.ndarray, np.ndarray]:
    """A similarity matrix (one image per prompt) where each image's own prompt is beaten by
    exactly ``beaten_by`` other prompts and beats all the rest."""
    sim = np.zeros((n_prompts, n_prompts))
    for i in range(n_prompts):
        sim[i, i] = 0.5
        sim[i, [(i + 1 + j) % n_prompts for j in range(beaten_by)]] = 0.9
    return sim, np.arange(n_prompts)


def test_standard_r_precision_is_the_average_over_random_draws_of_99_distractors() -> None:
    sim, own = planted(200, beaten_by=1)
    rp = clip_r_precision(sim, own)
    # the one better prompt is left out of 99 drawn from 199 with probability 100/199
    assert rp.value == pytest.approx(100 * 100 / 199) and rp.candidates == 100 and rp.standard
    # ... which is what drawing the distractors again and again converges to (seeded Monte-Carlo)
    seed, draws = 12345, 4000
    rng = np.random.default_rng(seed)
    hits = []
    for _ in range(draws):
        i = int(rng.integers(200))
        others = np.delete(np.arange(200), i)
        picked = rng.choice(others, RP_DISTRACTORS, replace=False)
        hits.append(sim[i, i] > sim[i, picked].max())
    se = math.sqrt(0.25 / draws)
    assert abs(np.mean(hits) - rp.value / 100) < 4 * se, f"seed {seed}: {np.mean(hits)} vs {rp.value / 100}"
    # the old definition (all prompts of the set) calls every image a miss
    assert (sim.argmax(axis=1) == own).mean() == 0


def test_standard_r_precision_does_not_depend_on_the_set_size_but_the_all_prompts_one_does() -> None:
    """Simulated CLIP space (60 topics, prompt-specific parts, noisy images), nested sets."""
    rng = np.random.default_rng(0)
    topics = rng.normal(size=(60, 64))
    text = topics[rng.integers(0, 60, 3000)] + rng.normal(size=(3000, 64))
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    images = text + 0.6 * 3 / 8 * rng.normal(size=text.shape)
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    standard, every = {}, {}
    for n in (300, 3000):
        sim = images[:n] @ text[:n].T
        standard[n] = clip_r_precision(sim, np.arange(n)).value
        every[n] = 100 * float((sim.argmax(axis=1) == np.arange(n)).mean())
    assert abs(standard[300] - standard[3000]) < 3, standard  # sampling noise of 300 images
    assert every[300] - every[3000] > 15, every  # measured: 86 % vs 64 %


def test_fewer_than_100_prompts_use_all_others_and_say_so() -> None:
    sim, own = planted(30, beaten_by=0)
    sim[0, 1] = 0.9  # image 0 is beaten once
    rp = clip_r_precision(sim, own)
    assert not rp.standard and rp.distractors == 29 and rp.candidates == 30
    assert rp.value == pytest.approx(100 * 29 / 30)  # the same as top-1 among all prompts
    # a tie (two prompts with equal features, e.g. equal in their first 77 tokens) counts half
    tied = np.array([[0.5, 0.5, 0.1]])
    assert clip_r_precision(tied, np.array([0])).value == pytest.approx(50.0)
    # with 99 distractors drawn from 199, the tied prompt is drawn with probability 99/199
    assert r_precision_probability([0], [1], pool=199)[0] == pytest.approx(100 / 199 + 99 / 199 / 2)


# --------------------------------------------------------------------------- FID preprocessing (7f)


@pytest.fixture(scope="module")
def random_inception(tmp_path_factory: pytest.TempPathFactory) -> object:
    from torchvision.models import inception_v3

    from training.fid import load_inception

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("inception") / "random.pth"
    torch.save(inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict(), path)
    return load_inception(str(path))


def test_a_non_square_image_has_the_features_of_its_centre_crop(random_inception: object) -> None:
    from training.fid import inception_pixels

    rng = np.random.default_rng(3)
    wide = PILImage.fromarray(rng.integers(0, 256, size=(240, 320, 3), dtype=np.uint8))  # 4:3
    tall = wide.transpose(PILImage.Transpose.ROTATE_90)  # 3:4
    for image, box in ((wide, (40, 0, 280, 240)), (tall, (0, 40, 240, 280))):
        crop = image.crop(box)
        assert torch.equal(inception_pixels([image]), inception_pixels([crop]))
        features = random_inception.features([image, crop])  # type: ignore[attr-defined]
        np.testing.assert_array_equal(features[0], features[1])
        # squashing (the protocol before issue 9) would have made other pixels
        squashed = np.asarray(image.resize((299, 299), PILImage.Resampling.BICUBIC), dtype=np.float32)
        assert not np.allclose(inception_pixels([image])[0].permute(1, 2, 0).numpy(), squashed / 127.5 - 1)
    # clean-fid's resize works in float: levels between the 8-bit ones survive
    levels = inception_pixels([wide]).numpy() * 127.5 + 127.5
    assert not np.allclose(levels, np.round(levels), atol=1e-3)
    assert "centre crop" in random_inception.preprocessing  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- KID's spread (7h)


def _row(metric: str, value: float, stderr: float | None, details: dict) -> EvalResult:
    return EvalResult(
        run_id=None, dataset="gen", checkpoint="ckpt", regime="raw", metric=metric, value=value,
        stderr=stderr, n=10, model="m", weights="w", reference="ref", details=details,
    )  # fmt: skip


def test_kid_spread_is_named_a_standard_deviation_and_old_rows_are_relabelled(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "home").ensure()
    migrate(ws)
    with write_session(ws) as s:
        # as t2i_eval stored them before issue 9: KID's s.d. over subsets in stderr, and an
        # R-precision among all prompts under the plain name
        s.add(_row("kid", 0.0123, 0.004, {"std_over_subsets": 0.004, "num_subsets": 100}))
        s.add(_row("r_precision", 40.0, 5.0, {"candidates": 3}))
        s.add(_row("clip_score", 31.2, 0.4, {}))
    table = results_table(ws).set_index("metric")
    assert set(table.index) == {"kid", "r_precision_all", "clip_score"}
    assert table.loc["kid", "std_over_subsets"] == 0.004 and pd.isna(table.loc["kid", "stderr"])
    assert table.loc["clip_score", "stderr"] == 0.4 and pd.isna(table.loc["clip_score", "std_over_subsets"])
    wide = results_wide(results_table(ws)).iloc[0]
    assert wide["KID (raw)"] == "0.0123 (s.d. over subsets 0.0040)"
    assert wide["CLIP-S (raw)"] == "31.20 ± 0.40"
    assert wide["R-precision among all prompts % (raw)"] == "40.00 ± 5.00"


def test_kid_spread_label_in_the_cli_and_the_results_tab() -> None:
    from studio import results_auto
    from studio.run_forms import fmt_metric

    kid = {"metric": "kid", "value": 0.0123, "stderr": None, "std_over_subsets": 0.004, "n": 10}
    assert fmt_metric(kid) == "0.0123 (s.d. over subsets 0.004, n=10)"
    assert fmt_metric({"metric": "clip_score", "value": 31.2, "stderr": 0.41, "n": 40}) == "31.2 ± 0.41 (n=40)"
    row = results_auto.MetricRow(
        dataset="gen", checkpoint="ckpt", caption_condition="", mix="", captioners="", regime="raw",
        metric="kid", value=0.0123, stderr=None, n=10, model="m", weights="w", reference="ref",
        eval_run=1, evaluated_at="", std_over_subsets=0.004,
    )  # fmt: skip
    assert results_auto._cell(row) == "0.0123 (s.d. over subsets 0.0040)"
    cells = dict(zip(results_auto.LONG_HEADERS, row.cells(), strict=True))
    assert cells["stderr"] is None and cells["KID s.d. over subsets"] == 0.004
