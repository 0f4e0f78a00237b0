"""Captions cut by the token limit are flagged, for every captioner family.

A caption that runs into ``max_new_tokens`` is cut, perhaps mid-sentence; one that ends with the
family's end token is whole. :meth:`CaptionerAdapter.generate_captions` says which, per caption.
Real tiny checkpoints of every family (``from_pretrained``), steered with ordinary generation
options: a large negative ``sequence_bias`` on every stop token makes the caption run to the
limit (where Florence-2 still forces its end token), a large positive one makes it end at once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

from training.adapters import load_captioner
from training.adapters.base import hit_token_limit
from training.tiny import FAMILIES

pytest_plugins = ("tests.tiny_models",)
pytestmark = pytest.mark.timeout(300)


def pictures(n: int) -> list[Image.Image]:
    out = []
    for i in range(n):
        im = Image.new("RGB", (32, 32), (250, 250, 250))
        ImageDraw.Draw(im).ellipse((4 + i, 4, 26, 26 - i), fill=(200, 40 * i % 255, 40))
        out.append(im)
    return out


def test_the_rule_on_token_rows() -> None:
    stop, pad = {2}, 0
    rows = torch.tensor(
        [
            [5, 6, 7, 8],  # no stop token in 4 = max_new_tokens: cut by the limit
            [5, 2, pad, pad],  # stopped, then padded
            [5, 6, 7, 2],  # stopped exactly at the limit: whole
        ]
    )
    assert hit_token_limit(rows, 4, stop) == [True, False, False]
    assert hit_token_limit(rows[1:, :3], 4, stop) == [False, False]  # the batch ended before the limit
    assert hit_token_limit(rows, 4, {2, 8}) == [False, False, False]  # any of several stop tokens
    assert hit_token_limit(rows, 4, set()) == [True, True, True]  # nothing but the limit ends a caption
    # a checkpoint that forces its end token at the limit (Florence-2's forced_eos_token_id): a stop
    # token first met in the last position was forced there, the caption was cut
    assert hit_token_limit(rows, 4, stop, forced_end={2}) == [True, False, True]


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_flags_cut_captions_and_only_those(
    family: str, tiny_model_dir: Callable[[str], Path]
) -> None:
    adapter = load_captioner(tiny_model_dir(family))
    batch = adapter.prepare_batch(pictures(2))
    stops = sorted(adapter.stop_token_ids())
    assert stops, f"{family}: no stop token known"

    never = {(t,): -100.0 for t in stops}
    cut = adapter.generate_captions(batch, max_new_tokens=5, sequence_bias=never)
    assert [c.hit_token_limit for c in cut] == [True, True], family

    whole = adapter.generate_captions(batch, max_new_tokens=5, sequence_bias={(stops[0],): 100.0})
    assert [c.hit_token_limit for c in whole] == [False, False], family
    # generate() is generate_captions() without the flags
    assert adapter.generate(batch, max_new_tokens=5, sequence_bias=never) == [c.text for c in cut]
