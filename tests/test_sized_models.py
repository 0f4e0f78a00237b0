"""Real-size random models (issue 13 §4): the configs kept in ``training/model_configs`` build the
published architectures, and what they build loads and captions like a hub checkpoint.

Cheap by construction: parameter counts come from models built on the meta device (no memory,
no initialisation); the one model built with weights is BLIP-base cut to one layer per stack
(real widths, vocabulary, image size and processor), loaded through ``from_pretrained``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from training.sized import SIZED, SizeError, parameter_counts, spec

pytestmark = pytest.mark.timeout(300)


@pytest.mark.parametrize(("family", "size"), sorted(SIZED))
def test_a_config_builds_the_published_architecture(family: str, size: str) -> None:
    """Counted exactly: BLIP-base 224M (BLIP paper), Qwen2-VL-2B 2.21B (hub card), SD 1.5's
    UNet 860M / VAE 84M / CLIP ViT-L/14 text encoder 123M; BLIP-large, whose total is not
    published as such, must be BLIP-base plus the ViT-L/16 minus ViT-B/16 difference (~218M)."""
    counts = parameter_counts(family, size)
    published = spec(family, size).data["parameters"]
    if isinstance(published, dict):
        assert counts == published
    else:
        assert counts == {"model": published}
    if (family, size) == ("blip", "base"):
        assert round(counts["model"] / 1e6) == 224
    if (family, size) == ("blip", "large"):
        extra = counts["model"] - parameter_counts("blip", "base")["model"]
        assert 210e6 < extra < 230e6, extra
    if family == "sd":
        assert round(counts["unet"] / 1e6) == 860
    if family == "qwen2_vl":
        assert round(counts["model"] / 1e7) == 221


def test_a_real_width_blip_loads_through_from_pretrained_and_captions_at_a_fixed_length(
    tmp_path: Path,
) -> None:
    from PIL import Image

    from training.adapters import GenerationSettings, load_captioner
    from training.sized import build_sized

    folder = build_sized("blip", "base", tmp_path / "blip", layers=1, fixed_new_tokens=5)
    config = json.loads((folder / "config.json").read_text())
    assert config["text_config"]["vocab_size"] == 30524 and config["vision_config"]["hidden_size"] == 768
    adapter = load_captioner(str(folder), device="cpu", dtype="float32")
    assert adapter.family == "blip" and len(adapter.processor.tokenizer) == 30524
    batch = adapter.prepare_batch([Image.new("RGB", (256, 256), "red"), Image.new("RGB", (320, 200), "blue")])
    assert tuple(batch["pixel_values"].shape) == (2, 3, 384, 384)
    captions = adapter.generate(batch, **GenerationSettings(max_new_tokens=5).as_kwargs())
    assert [len(c.split()) for c in captions] == [5, 5]  # filler tokens ([unusedN]) decode one word each


def test_a_size_a_family_does_not_have_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SizeError, match=r"no 'large' size of family 'qwen2_vl'.*qwen2_vl: base"):
        spec("qwen2_vl", "large")
    from studio.cli import app

    result = CliRunner().invoke(
        app,
        [
            "--home",
            str(tmp_path / "home"),
            "models",
            "tiny",
            "--family",
            "sd",
            "--size",
            "large",
            "--out",
            "x",
        ],
    )
    assert result.exit_code != 0
    assert "no 'large' size of family 'sd'" in result.output
    assert not (tmp_path / "home" / "models" / "x").exists()


def test_models_tiny_help_names_every_family_it_builds() -> None:
    """The CLI keeps the family list as a string (so --help does not import torch); it must not
    fall behind what ``training.tiny`` builds."""
    from studio.runs_cli import TINY_FAMILIES
    from training.tiny import FAMILIES, OTHER_FAMILIES

    assert set(TINY_FAMILIES.split("|")) == {*FAMILIES, *OTHER_FAMILIES}
