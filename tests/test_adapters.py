"""Every captioner family, end to end, through the same ``from_pretrained`` path users take.

For each family in the registry: build a tiny random checkpoint (``training.tiny``), load it with
``load_captioner`` (family detected from ``config.json``), train a few optimizer steps on
synthetic shape images, generate for a batch, save, reload and check greedy captions are
identical. Plus the details that break real fine-tunes: loss masks (prompt and padding never
trained on), mixed image sizes in one batch, prompts that actually condition the output, dtype.
"""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

from training.adapters import ADAPTERS, BY_MODEL_TYPE, GenerationSettings, load_captioner
from training.adapters.base import CaptionerAdapter
from training.tiny import CORPUS, FAMILIES, build_tiny, folder_size

pytest_plugins = ("tests.tiny_models",)

CAPTIONS = [
    "A red circle on a white background.",
    "Two blue squares at the top.",
    "A small green triangle in the center.",
    "A yellow star on the left of a purple diamond.",
]
# the tokenizer class each family's processor expects, as real checkpoints ship it
TOKENIZER_CLASS = {
    "blip": "BertTokenizer",
    "git": "BertTokenizer",
    "ved": "GPT2Tokenizer",
    "paligemma": "GemmaTokenizer",
    "qwen2_vl": "Qwen2Tokenizer",
    "qwen2_5_vl": "Qwen2Tokenizer",
    "idefics3": "GPT2Tokenizer",
    # transformers 5 loads every llava checkpoint's tokenizer as TokenizersBackend (llava is on
    # its list of model types whose hub tokenizer_class is unreliable), tiny or real alike
    "llava": "TokenizersBackend",
    "florence2": "RobertaTokenizer",  # transformers 5 aliases BartTokenizer to it
}
PROMPT_FAMILIES = [f for f in FAMILIES if ADAPTERS[f].supports_prompt]


def shapes(n: int, sizes: list[tuple[int, int]] | None = None) -> list[Image.Image]:
    """Synthetic shape scenes like the studio's demo data (distinct per index)."""
    colors = ["red", "blue", "green", "yellow", "purple", "orange"]
    out = []
    for i in range(n):
        w, h = sizes[i] if sizes else (48, 48)
        im = Image.new("RGB", (w, h), ["white", "lightgray", "beige"][i % 3])
        d = ImageDraw.Draw(im)
        box = (w * 0.2, h * 0.2, w * 0.8, h * 0.8)
        if i % 3 == 0:
            d.ellipse(box, fill=colors[i % 6])
        elif i % 3 == 1:
            d.rectangle(box, fill=colors[i % 6])
        else:
            d.polygon([(w / 2, h * 0.1), (w * 0.9, h * 0.9), (w * 0.1, h * 0.9)], fill=colors[i % 6])
        out.append(im)
    return out


def train_steps(adapter: CaptionerAdapter, batch: dict, steps: int, lr: float = 2e-3) -> list[float]:
    torch.manual_seed(0)
    opt = torch.optim.AdamW(adapter.model.parameters(), lr=lr)
    adapter.model.train()
    losses = []
    for _ in range(steps):
        loss = adapter.training_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    adapter.model.eval()
    return losses


def is_vision_param(name: str) -> bool:
    return any(key in name for key in ("vision", "visual", "image_encoder")) or name.startswith("encoder.")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads, and on a shared 2-core machine two
    spinning OpenMP threads can make each step 10x slower; restore the setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def loaded(tiny_model_dir: Callable[[str], Path]) -> Callable[[str], CaptionerAdapter]:
    """A fresh adapter per call (tests train them; never share weights between tests)."""
    return lambda family: load_captioner(tiny_model_dir(family))


def test_registry_covers_every_tiny_family() -> None:
    assert set(FAMILIES) == set(ADAPTERS)
    for family, cls in ADAPTERS.items():
        assert cls.family == family
        assert all(BY_MODEL_TYPE[t] is cls for t in cls.model_types)


@pytest.mark.parametrize("family", FAMILIES)
def test_round_trip_train_generate_save_reload(
    family: str,
    loaded: Callable[[str], CaptionerAdapter],
    tiny_model_dir: Callable[[str], Path],
    tmp_path: Path,
) -> None:
    path = tiny_model_dir(family)
    assert folder_size(path) < 5_000_000  # tiny means tiny
    adapter = loaded(family)
    assert isinstance(adapter, ADAPTERS[family]) and adapter.family == family
    assert adapter.device == torch.device("cpu") and adapter.dtype == torch.float32
    assert type(adapter.tokenizer).__name__ == TOKENIZER_CLASS[family]

    batch = adapter.prepare_batch(shapes(4), CAPTIONS)
    assert all(t.device.type == "cpu" for t in batch.values())
    losses = train_steps(adapter, batch, steps=1)
    grads = {n: p.grad for n, p in adapter.model.named_parameters() if p.grad is not None}
    assert grads, "no gradient reached any parameter"
    assert any(is_vision_param(n) and g.abs().sum() > 0 for n, g in grads.items()), (
        "no gradient reached the vision side: the caption loss ignores the image"
    )
    losses += train_steps(adapter, batch, steps=4)
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0], losses

    settings = GenerationSettings(max_new_tokens=12)
    gen_batch = adapter.prepare_batch(shapes(3))
    captions = adapter.generate(gen_batch, **settings.as_kwargs())
    assert len(captions) == 3 and all(isinstance(c, str) for c in captions)

    saved = adapter.save(tmp_path / "ckpt")
    again = load_captioner(saved)
    assert type(again) is type(adapter)
    assert again.generate(again.prepare_batch(shapes(3)), **settings.as_kwargs()) == captions


@pytest.mark.parametrize("family", FAMILIES)
def test_labels_hold_only_the_caption(family: str, loaded: Callable[[str], CaptionerAdapter]) -> None:
    """Prompt and padding positions are -100; what is left decodes to the caption itself."""
    adapter = loaded(family)
    prompt = "<SHORT>" if adapter.supports_prompt else None
    captions = ["A red circle.", "Two blue squares at the top of a beige background."]
    batch = adapter.prepare_batch(shapes(2), captions, prompt=prompt)
    labels = batch["labels"]
    for row, caption in zip(labels, captions, strict=True):
        kept = row[row != -100]
        text = adapter.tokenizer.decode(kept, skip_special_tokens=True)
        assert "".join(text.split()).lower() == "".join(caption.split()).lower()
        # ...and the end-of-caption token is trained too, or the model never learns to stop
        assert (
            kept[-1].item() in adapter.tokenizer.all_special_ids
            or adapter.tokenizer.decode(kept[-1:]).strip() == ""
        )
    mask = batch.get("attention_mask", batch.get("decoder_attention_mask"))
    if mask is not None and mask.shape == labels.shape:  # Florence-2's mask is the encoder's
        assert (mask == 0).any(), "captions of different lengths should have been padded"
        assert (labels[mask == 0] == -100).all(), "padding must never be a training target"


@pytest.mark.parametrize("family", FAMILIES)
def test_batch_of_different_image_sizes(family: str, loaded: Callable[[str], CaptionerAdapter]) -> None:
    adapter = loaded(family)
    sizes = [(40, 30), (64, 64), (20, 50)]
    images = shapes(3, sizes)
    loss = adapter.training_loss(adapter.prepare_batch(images, CAPTIONS[:3]))
    assert math.isfinite(loss.item())
    captions = adapter.generate(adapter.prepare_batch(images), max_new_tokens=6)
    assert len(captions) == 3
    # batching must not change a caption: each image alone gives the same greedy output
    alone = [adapter.generate(adapter.prepare_batch([im]), max_new_tokens=6)[0] for im in images]
    assert alone == captions


@pytest.mark.parametrize("family", PROMPT_FAMILIES)
def test_prompt_conditions_the_caption(family: str, loaded: Callable[[str], CaptionerAdapter]) -> None:
    """One model, two styles (as Florence-2 / PaliGemma task prefixes do): after a short
    fine-tune on the same images, the style prompt alone decides which caption comes out."""
    adapter = loaded(family)
    images = shapes(2)
    short = ["A red circle.", "A blue square."]
    long = [
        "A large red circle in the center on a white background.",
        "Two blue squares at the top on a light gray background.",
    ]
    a = adapter.prepare_batch(images, short, prompt="<SHORT>")
    b = adapter.prepare_batch(images, long, prompt="<LONG>")
    torch.manual_seed(0)
    opt = torch.optim.AdamW(adapter.model.parameters(), lr=3e-3)
    adapter.model.train()
    for _ in range(200):  # typically converges in 40-100 steps
        loss = adapter.training_loss(a) + adapter.training_loss(b)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 0.1:
            break
    out_short = adapter.generate(adapter.prepare_batch(images, prompt="<SHORT>"), max_new_tokens=16)
    out_long = adapter.generate(adapter.prepare_batch(images, prompt="<LONG>"), max_new_tokens=16)
    assert [t.lower() for t in out_short] == [t.lower() for t in short]
    assert [t.lower() for t in out_long] == [t.lower() for t in long]


def test_prompt_refused_where_unsupported(loaded: Callable[[str], CaptionerAdapter]) -> None:
    adapter = loaded("ved")
    assert not adapter.supports_prompt
    with pytest.raises(ValueError, match="no prompt"):
        adapter.prepare_batch(shapes(1), prompt="<SHORT>")


def test_generate_refuses_a_training_batch(loaded: Callable[[str], CaptionerAdapter]) -> None:
    adapter = loaded("git")
    with pytest.raises(ValueError, match="without texts"):
        adapter.generate(adapter.prepare_batch(shapes(2), CAPTIONS[:2]))
    with pytest.raises(ValueError, match="images but"):
        adapter.prepare_batch(shapes(2), CAPTIONS[:1])


@pytest.mark.parametrize("family", ["blip", "qwen2_vl"])
def test_half_precision_load(family: str, tiny_model_dir: Callable[[str], Path]) -> None:
    adapter = load_captioner(tiny_model_dir(family), dtype="bfloat16")
    assert adapter.dtype == torch.bfloat16
    batch = adapter.prepare_batch(shapes(2))
    assert all(v.dtype == torch.bfloat16 for v in batch.values() if v.is_floating_point())
    assert len(adapter.generate(batch, max_new_tokens=4, num_beams=2)) == 2
    with pytest.raises(ValueError, match="dtype"):
        load_captioner(tiny_model_dir(family), dtype="float8")


@pytest.mark.parametrize("family", FAMILIES)
def test_tokenizer_reloads_as_trained(family: str, loaded: Callable[[str], CaptionerAdapter]) -> None:
    """The saved tokenizer reloads through AutoTokenizer into the family's own class and keeps
    corpus words whole (it was trained on them) without unknown tokens."""
    tok = loaded(family).tokenizer
    sentence = CORPUS[0]
    ids = tok(sentence, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids or tok.unk_token_id == tok.eos_token_id
    assert len(ids) <= len(sentence.split()) + 3  # whole words, not characters
    decoded = tok.decode(ids, skip_special_tokens=True)
    assert "".join(decoded.split()).lower() == "".join(sentence.split()).lower()


def test_build_is_deterministic_and_validates(tmp_path: Path) -> None:
    a = build_tiny("git", tmp_path / "a", seed=3)
    b = build_tiny("git", tmp_path / "b", seed=3)
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()
    with pytest.raises(ValueError, match="unknown family"):
        build_tiny("dalle", tmp_path / "c")


def test_cli_builds_a_loadable_model(tmp_path: Path) -> None:
    out = tmp_path / "cli-blip"
    result = subprocess.run(
        [sys.executable, "-m", "training.tiny", "--family", "blip", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode == 0, result.stderr
    assert "blip" in result.stdout and (out / "config.json").is_file()
    assert load_captioner(out).family == "blip"
