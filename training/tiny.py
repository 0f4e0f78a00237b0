"""Tiny random captioners of every supported family, built offline from configs.

Why: this machine (and CI) cannot download weights, yet every code path that touches a real
checkpoint — ``from_pretrained`` of model and processor, tokenization, chat templates, image
token expansion, training, generation, ``save_pretrained`` — must be exercised. So each family
is rebuilt here at toy size (hidden sizes 32–64, one or two layers, 32-pixel images) with a
tokenizer *trained* by the ``tokenizers`` library on a small caption-like corpus, wrapped in the
tokenizer class the family's processor expects, and saved with ``save_pretrained``. Tests and
demos then load the folder with :func:`training.adapters.load_captioner`, exactly as they would a
hub id. Nothing here reaches the network: every processor is built from its class with explicit
sizes, every model from its config.

``python -m training.tiny --family blip --out DIR`` builds one from the command line (``recap-studio
models tiny`` runs it); ``bench/tiny_families.py`` measures what each family costs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import random
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

FAMILIES: tuple[str, ...] = (
    "blip",
    "git",
    "ved",
    "paligemma",
    "qwen2_vl",
    "qwen2_5_vl",
    "idefics3",
    "llava",
    "florence2",
)

#: tiny models that are not captioners: family -> (module, builder(out_dir, seed=...) -> Path)
OTHER_FAMILIES: dict[str, tuple[str, str]] = {
    "sd": ("training.tiny_sd", "build_tiny_sd"),  # a Stable Diffusion pipeline (T2I training, generation)
    "causal_lm": ("training.tiny_lm", "build_tiny_lm"),  # a causal language model (prompt upsampling)
    # object detectors (compositional metrics): closed vocabulary, then open vocabulary
    "detr": ("training.detectors.tiny", "build_tiny_detr"),
    "yolos": ("training.detectors.tiny", "build_tiny_yolos"),
    "rt_detr": ("training.detectors.tiny", "build_tiny_rt_detr"),
    "owlv2": ("training.detectors.tiny", "build_tiny_owlv2"),
    "grounding_dino": ("training.detectors.tiny", "build_tiny_grounding_dino"),
    "longclip": ("training.clip", "build_tiny_longclip"),  # a 248-position transformers CLIPModel
}

IMAGE_SIZE = 32  # pixels; big enough for a 4x4 patch grid, small enough to train in milliseconds
PATCH = 8
VISION = {"hidden": 32, "layers": 1, "heads": 2, "ffn": 64}
TEXT = {"hidden": 64, "layers": 2, "heads": 4, "ffn": 128, "positions": 512}
# config argument -> TEXT size, per naming scheme of the transformers text configs used here
_TEXT_ARGS: dict[str, dict[str, str]] = {
    # the common names: BLIP and GIT text configs, Gemma, Qwen2, Llama
    "standard": {
        "hidden_size": "hidden",
        "intermediate_size": "ffn",
        "num_hidden_layers": "layers",
        "num_attention_heads": "heads",
        "max_position_embeddings": "positions",
    },
    "gpt2": {
        "n_embd": "hidden",
        "n_layer": "layers",
        "n_head": "heads",
        "n_inner": "ffn",
        "n_positions": "positions",
    },
    # an encoder-decoder: the heads and ffn sizes go to both stacks (depths are set per family)
    "bart": {
        "d_model": "hidden",
        "encoder_attention_heads": "heads",
        "decoder_attention_heads": "heads",
        "encoder_ffn_dim": "ffn",
        "decoder_ffn_dim": "ffn",
        "max_position_embeddings": "positions",
    },
}
BPE_VOCAB = 400  # trained tokens (plus specials); the corpus has ~100 distinct words

# ----------------------------------------------------------------------------- corpus

_HANDWRITTEN = """\
A red circle on a white background.
A small blue square in the top left corner.
Two green triangles side by side.
A yellow star in the center of the image.
Three purple diamonds in a row near the bottom.
A large orange circle next to a small black square.
An empty light gray background with nothing on it.
A pink heart shape above a brown rectangle.
The word SALE written in black letters at the top.
Four small circles, one in each corner.
A blue triangle pointing up on a beige background.
A green square to the left of a red circle.
A dark gray background with a white star in the middle.
Two yellow stars and one blue circle.
A flat digital illustration of simple shapes.
A medium red diamond on the right side.
A black square below a green triangle.
Five small dots scattered across a pale green background.
A purple circle overlapping an orange square.
The word OPEN in white letters on a dark background.
A single large triangle fills most of the picture.
A tiny gray square in the bottom right corner.
An orange star at the top and a blue star at the bottom.
Shapes of different colours on a light blue background.
A brown circle in the center surrounded by empty space.
Two squares, one red and one blue, stacked vertically.
A white circle with a black outline.
A green diamond near the left edge of the image.
The number 42 printed in the lower half.
A row of three circles: red, yellow and green.
A pink triangle in the upper right area.
Simple clipart of a yellow star.
A large blue square and a small purple square.
A red star is to the left of a green circle.
One black triangle and two white circles on gray.
A plain beige background with a single orange diamond.
The text HELLO appears in the middle.
A blue circle is above a yellow square.
Small shapes arranged in a loose grid.
A purple star on the bottom left.
An abstract design made of circles and triangles.
A green circle, a red square and a blue triangle.
Four stars of different sizes on white.
The word STOP in bold black letters.
A light blue background with two pink diamonds.
A brown square in the top center.
Two medium circles touching each other.
A diagram with one large shape and two small ones.
"""

_COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "gray")
_SHAPES = ("circle", "square", "triangle", "star", "diamond")
_SIZES = ("small", "medium", "large")
_PLACES = (
    "in the center",
    "at the top",
    "at the bottom",
    "on the left",
    "on the right",
    "at the top left",
    "at the top right",
    "at the bottom left",
    "at the bottom right",
)
_BACKGROUNDS = ("white", "light gray", "beige", "light blue", "pale green", "dark gray")
_COUNTS = ("two", "three", "four", "five")
_WORDS = ("SALE", "OPEN", "HELLO", "STOP", "42", "NEW")


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def caption_corpus(n_generated: int = 160, seed: int = 0) -> list[str]:
    """About 200 caption-like sentences: the handwritten ones plus scene descriptions in the
    style of the studio's synthetic shape demo (colours, shapes, sizes, counts, positions,
    backgrounds, quoted words), so trained tokenizers split real captions into whole words."""
    rng = random.Random(seed)
    lines = [line for line in _HANDWRITTEN.splitlines() if line.strip()]
    for i in range(n_generated):
        color, shape, size = rng.choice(_COLORS), rng.choice(_SHAPES), rng.choice(_SIZES)
        place, background = rng.choice(_PLACES), rng.choice(_BACKGROUNDS)
        kind = i % 5
        if kind == 0:
            text = f"{_article(f'{size} {color} {shape}')} {place} on {_article(background)} background."
        elif kind == 1:
            count = rng.choice(_COUNTS)
            text = f"{count.capitalize()} {color} {shape}s {place}."
        elif kind == 2:
            other = rng.choice([s for s in _SHAPES if s != shape])
            relation = rng.choice(("to the left of", "to the right of", "above", "below", "next to"))
            text = (
                f"{_article(f'{color} {shape}')} is {relation} {_article(f'{rng.choice(_COLORS)} {other}')}."
            )
        elif kind == 3:
            text = f"The word {rng.choice(_WORDS)} is written {place} on {_article(background)} background."
        else:
            text = f"{_article(f'{color} {shape}').capitalize()} {place}."
        lines.append(text[0].upper() + text[1:])
    return lines


CORPUS: tuple[str, ...] = tuple(caption_corpus())

# ----------------------------------------------------------------------------- tokenizers


def _bpe_parts(tokenizer: Any) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocabulary and merges of a trained ``tokenizers`` BPE model."""
    model = json.loads(tokenizer.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in model["merges"]]
    return dict(model["vocab"]), merges


def train_wordpiece(specials: list[str], vocab_size: int = BPE_VOCAB) -> dict[str, int]:
    """A lower-casing WordPiece vocabulary (BERT style: BLIP and GIT decoders).

    The pieces are learned by the ``tokenizers`` BPE trainer over BERT's normalizer and
    pre-tokenizer, and each learned piece enters the vocabulary twice — as a word start and as
    a ``##`` continuation — so greedy longest-match WordPiece finds every learned word. Why not
    ``WordPieceTrainer`` (or BPE with a ``##`` prefix): both break ties between equally frequent
    merges differently from run to run, and a tiny model must be rebuilt bit for bit from a seed.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    learned = [t for t, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1]) if t not in specials]
    pieces = specials + learned + [f"##{t}" for t in learned]
    return {piece: i for i, piece in enumerate(pieces)}


def train_byte_level_bpe(
    specials: list[str], vocab_size: int = BPE_VOCAB
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A GPT-2 style byte-level BPE (GPT-2, Qwen2, BART/RoBERTa, SmolVLM tokenizers):
    every byte is in the alphabet, so no caption is ever out of vocabulary."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size + len(specials) + 256,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    return _bpe_parts(tok)


def train_sentencepiece_style_bpe(
    specials: list[str], vocab_size: int = BPE_VOCAB
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A Gemma/Llama style BPE: spaces become ``▁`` and unknown characters fall back to byte
    tokens ``<0x00>``…``<0xFF>``, which are put in the vocabulary for that purpose."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    tok = Tokenizer(models.BPE(unk_token=specials[0] if specials else None, byte_fallback=True))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size + len(specials) + len(byte_tokens),
        special_tokens=specials + byte_tokens,
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    return _bpe_parts(tok)


# ----------------------------------------------------------------------------- helpers

# Chat templates written for the tiny models. They follow the layout of the real families
# (Qwen's <|im_start|> turns, Idefics3/SmolVLM's "User:"/"Assistant:" turns) so the adapters meet
# the same structure they meet on real checkpoints.
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
IDEFICS3_CHAT_TEMPLATE = (
    "<|im_start|>"
    "{% for message in messages %}"
    "{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}:{% else %}: {% endif %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% elif part['type'] == 'image' %}<image>{% endif %}"
    "{% endfor %}"
    "<end_of_utterance>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)
# llava-1.5 style: "USER: <image>\nprompt ASSISTANT: answer</s>"
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: {% else %}ASSISTANT: {% endif %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>\n{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}"
    "{% if message['role'] == 'user' %} {% else %}</s>{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    torch.manual_seed(seed)


def _vision_kwargs() -> dict[str, int]:
    return {
        "hidden_size": VISION["hidden"],
        "intermediate_size": VISION["ffn"],
        "num_hidden_layers": VISION["layers"],
        "num_attention_heads": VISION["heads"],
        "image_size": IMAGE_SIZE,
        "patch_size": PATCH,
    }


def _text_kwargs(tokenizer: Any, naming: str = "standard") -> dict[str, int]:
    """The tiny text decoder's sizes (and the tokenizer's vocabulary) under a config's argument names."""
    return {"vocab_size": len(tokenizer), **{arg: TEXT[size] for arg, size in _TEXT_ARGS[naming].items()}}


def _token_ids(tokenizer: Any) -> dict[str, int]:
    """The tokenizer's bos, eos and pad ids as config arguments."""
    return {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def _image_tokens(processor: Any, prompt: str) -> int:
    """How many image tokens ``processor`` puts in ``prompt`` for one IMAGE_SIZE image: the number
    a model config that states it (LLaVA's ``image_seq_length``) must agree with."""
    from PIL import Image

    ids = processor(images=Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE)), text=prompt)["input_ids"][0]
    return list(ids).count(processor.image_token_id)


def _image_features(model: Any) -> int:
    """How many feature vectors ``model``'s vision side makes of one IMAGE_SIZE image: the number
    of image tokens a processor that is told it (Florence-2's ``image_seq_length``) must insert."""
    import torch

    model.eval()
    with torch.no_grad():
        out = model.get_image_features(pixel_values=torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE))
    features = getattr(out, "pooler_output", out)
    return int(features.shape[1])


def _save(model: Any, processor: Any, out_dir: Path, **generation: Any) -> Path:
    """Set ``generation`` on the model's generation config, then ``save_pretrained`` both."""
    for name, value in generation.items():
        setattr(model.generation_config, name, value)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


# ----------------------------------------------------------------------------- families


def _build_blip(out_dir: Path) -> Path:
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    vocab = train_wordpiece(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "[ENC]"])
    # BLIP's tokenizer is BERT's with [DEC] as bos (the decoder start) and [ENC] for ITM heads.
    tokenizer = BertTokenizer(vocab=vocab, bos_token="[DEC]", extra_special_tokens=["[ENC]"])
    processor = BlipProcessor(
        image_processor=BlipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}),
        tokenizer=tokenizer,
    )
    config = BlipConfig(
        text_config={
            **_text_kwargs(tokenizer),
            "encoder_hidden_size": VISION["hidden"],
            "projection_dim": 32,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.sep_token_id,
            "sep_token_id": tokenizer.sep_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={**_vision_kwargs(), "projection_dim": 32},
        projection_dim=32,
        image_text_hidden_size=32,
    )
    return _save(BlipForConditionalGeneration(config), processor, out_dir)


def _build_git(out_dir: Path) -> Path:
    from transformers import BertTokenizer, CLIPImageProcessor, GitConfig, GitForCausalLM, GitProcessor

    tokenizer = BertTokenizer(vocab=train_wordpiece(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    processor = GitProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
        ),
        tokenizer=tokenizer,
    )
    config = GitConfig(
        vision_config=_vision_kwargs(),
        **_text_kwargs(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
    )
    return _save(GitForCausalLM(config), processor, out_dir)


def _build_ved(out_dir: Path) -> Path:
    from transformers import (
        GPT2Config,
        GPT2Tokenizer,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessor,
    )

    from training.adapters.ved import ImageTextProcessor

    end = "<|endoftext|>"
    vocab, merges = train_byte_level_bpe([end])
    # as in nlpconnect/vit-gpt2-image-captioning: GPT-2 has one special token doing every job
    tokenizer = GPT2Tokenizer(vocab=vocab, merges=merges, pad_token=end)
    encoder = ViTConfig(**_vision_kwargs())
    decoder = GPT2Config(
        **_text_kwargs(tokenizer, "gpt2"),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        is_decoder=True,
        add_cross_attention=True,
    )
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id = tokenizer.bos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    config.eos_token_id = tokenizer.eos_token_id
    model = VisionEncoderDecoderModel(config=config)
    processor = ImageTextProcessor(
        image_processor=ViTImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}),
        tokenizer=tokenizer,
    )
    return _save(
        model,
        processor,
        out_dir,
        decoder_start_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _build_paligemma(out_dir: Path) -> Path:
    from transformers import (
        GemmaConfig,
        GemmaTokenizer,
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        SiglipImageProcessor,
        SiglipVisionConfig,
    )

    vocab, merges = train_sentencepiece_style_bpe(["<unk>", "<pad>", "<eos>", "<bos>", "<mask>"])
    tokenizer = GemmaTokenizer(vocab=vocab, merges=merges)
    vision = SiglipVisionConfig(**_vision_kwargs(), vision_use_head=False)
    # <image> tokens per image: the number PaliGemmaConfig derives from the vision config (it sets
    # text_config.num_image_tokens); the processor must insert exactly that many
    n_image_tokens = PaliGemmaConfig(vision_config=vision).text_config.num_image_tokens
    image_processor = SiglipImageProcessor(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, image_seq_length=n_image_tokens
    )
    # The processor adds <image> and PaliGemma's 1152 <locXXXX>/<segXXX> tokens to the tokenizer.
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    text = GemmaConfig(
        **_text_kwargs(tokenizer),
        num_key_value_heads=1,
        head_dim=TEXT["hidden"] // TEXT["heads"],
        **_token_ids(tokenizer),
    )
    config = PaliGemmaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=processor.image_token_id,
        vocab_size=len(tokenizer),
        projection_dim=TEXT["hidden"],
        hidden_size=TEXT["hidden"],
    )
    model = PaliGemmaForConditionalGeneration(config)
    return _save(
        model, processor, out_dir, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )


def _build_qwen_vl(out_dir: Path, version: str) -> Path:
    """Qwen2-VL and Qwen2.5-VL share tokenizer, processor layout and chat format; they differ in
    the vision tower (Qwen2.5-VL adds windowed attention and a gated MLP)."""
    import transformers as tf

    specials = [
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
        "<|vision_start|>",
        "<|vision_end|>",
        "<|image_pad|>",
        "<|video_pad|>",
    ]
    vocab, merges = train_byte_level_bpe(specials)
    tokenizer = tf.Qwen2Tokenizer(vocab=vocab, merges=merges, extra_special_tokens=specials[1:])
    # Images are cut into 4-pixel patches merged 2x2: one token per 8x8 pixels. The pixel budget
    # keeps any input between 2x2 and 6x6 tokens while preserving its aspect ratio.
    pixel_budget = {
        "patch_size": 4,
        "merge_size": 2,
        "temporal_patch_size": 2,
        "min_pixels": 16 * 16,
        "max_pixels": 48 * 48,
    }
    processor_class = tf.Qwen2VLProcessor if version == "2" else tf.Qwen2_5_VLProcessor
    processor = processor_class(
        image_processor=tf.Qwen2VLImageProcessor(**pixel_budget),
        tokenizer=tokenizer,
        video_processor=tf.Qwen2VLVideoProcessor(**pixel_budget),
        chat_template=QWEN_CHAT_TEMPLATE,
    )
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in specials}
    head_dim = TEXT["hidden"] // TEXT["heads"]
    # temporal/height/width split of the rotary frequencies; sums to head_dim / 2
    mrope = {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0}
    assert sum(mrope["mrope_section"]) == head_dim // 2
    text_kwargs = {
        **_text_kwargs(tokenizer),
        "num_key_value_heads": 2,
        "max_window_layers": TEXT["layers"],
        "rope_parameters": mrope,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    vision_kwargs = {
        "depth": VISION["layers"],
        "num_heads": VISION["heads"],
        "patch_size": 4,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    }
    if version == "2":
        text = tf.Qwen2VLTextConfig(**text_kwargs)
        vision = tf.Qwen2VLVisionConfig(
            **vision_kwargs, embed_dim=VISION["hidden"], hidden_size=TEXT["hidden"], mlp_ratio=2
        )
        config_class, model_class = tf.Qwen2VLConfig, tf.Qwen2VLForConditionalGeneration
    else:
        text = tf.Qwen2_5_VLTextConfig(**text_kwargs)
        vision = tf.Qwen2_5_VLVisionConfig(
            **vision_kwargs,
            hidden_size=VISION["hidden"],
            intermediate_size=VISION["ffn"],
            out_hidden_size=TEXT["hidden"],
            window_size=16,  # pixels: 2x2 merged tokens per attention window
            fullatt_block_indexes=[0],
        )
        config_class, model_class = tf.Qwen2_5_VLConfig, tf.Qwen2_5_VLForConditionalGeneration
    config = config_class(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    return _save(
        model_class(config),
        processor,
        out_dir,
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
    )


def _build_qwen2_vl(out_dir: Path) -> Path:
    return _build_qwen_vl(out_dir, "2")


def _build_qwen2_5_vl(out_dir: Path) -> Path:
    return _build_qwen_vl(out_dir, "2.5")


def _build_idefics3(out_dir: Path) -> Path:
    from transformers import (
        GPT2Tokenizer,
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessor,
        Idefics3Processor,
        Idefics3VisionConfig,
        LlamaConfig,
    )

    end = "<|endoftext|>"
    image_specials = ["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"]
    grid = [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]
    specials = [end, "<|im_start|>", "<|im_end|>", *image_specials, *grid]
    vocab, merges = train_byte_level_bpe(specials)
    # as in SmolVLM: a GPT-2 class tokenizer; <end_of_utterance> ends an assistant turn
    tokenizer = GPT2Tokenizer(
        vocab=vocab,
        merges=merges,
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        pad_token=end,
        unk_token=end,
        extra_special_tokens=specials[1:],
    )
    text = LlamaConfig(**_text_kwargs(tokenizer), num_key_value_heads=2, **_token_ids(tokenizer))
    config = Idefics3Config(
        vision_config=Idefics3VisionConfig(**_vision_kwargs()),
        text_config=text,
        scale_factor=2,  # pixel shuffle: 2x2 patches per image token
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    model = Idefics3ForConditionalGeneration(config)
    image_processor = Idefics3ImageProcessor(
        size={"longest_edge": IMAGE_SIZE},
        max_image_size={"longest_edge": IMAGE_SIZE},
        do_image_splitting=False,
    )
    processor = Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=model.model.image_seq_len,  # what the model computes from its vision config and scale factor
        chat_template=IDEFICS3_CHAT_TEMPLATE,
    )
    return _save(
        model, processor, out_dir, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )


def _build_llava(out_dir: Path) -> Path:
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlamaTokenizer,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    vocab, merges = train_sentencepiece_style_bpe(["<unk>", "<s>", "</s>", "<image>", "<pad>"])
    # as llava-hf/llava-1.5: a Llama tokenizer with <image> and <pad> as added special tokens
    tokenizer = LlamaTokenizer(
        vocab=vocab, merges=merges, pad_token="<pad>", extra_special_tokens=["<image>"], image_token="<image>"
    )
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
        ),
        tokenizer=tokenizer,
        patch_size=PATCH,
        vision_feature_select_strategy="default",  # the CLIP tower's CLS token is dropped
        num_additional_image_tokens=1,
        chat_template=LLAVA_CHAT_TEMPLATE,
    )
    text = LlamaConfig(**_text_kwargs(tokenizer), num_key_value_heads=2, **_token_ids(tokenizer))
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**_vision_kwargs()),
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=_image_tokens(processor, "<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    model = LlavaForConditionalGeneration(config)
    return _save(
        model, processor, out_dir, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )


def _build_florence2(out_dir: Path) -> Path:
    from transformers import (
        BartConfig,
        BartTokenizer,
        CLIPImageProcessor,
        Florence2Config,
        Florence2ForConditionalGeneration,
        Florence2Processor,
        Florence2VisionConfig,
    )

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>", "<image>"]
    vocab, merges = train_byte_level_bpe(specials)
    tokenizer = BartTokenizer(vocab=vocab, merges=merges, image_token="<image>")
    # Two DaViT stages (strides 4 and 2) turn 32 pixels into a 4x4 grid and the projector adds one
    # pooled "temporal" token; the processor is told the count the built model really produces.
    vision = Florence2VisionConfig(
        depths=[1, 1],
        patch_size=[7, 3],
        patch_stride=[4, 2],
        patch_padding=[3, 1],
        patch_prenorm=[False, True],
        embed_dim=[32, 64],
        num_heads=[2, 4],
        num_groups=[2, 4],
        window_size=4,
        projection_dim=TEXT["hidden"],
        drop_path_rate=0.0,
    )
    text = BartConfig(
        **_text_kwargs(tokenizer, "bart"),
        encoder_layers=1,
        decoder_layers=1,
        **_token_ids(tokenizer),
        decoder_start_token_id=tokenizer.eos_token_id,
        forced_bos_token_id=tokenizer.bos_token_id,
        forced_eos_token_id=tokenizer.eos_token_id,
    )
    config = Florence2Config(vision_config=vision, text_config=text, image_token_id=tokenizer.image_token_id)
    model = Florence2ForConditionalGeneration(config)
    processor = Florence2Processor(
        image_processor=CLIPImageProcessor(
            size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
            do_center_crop=False,
            image_seq_length=_image_features(model),
        ),
        tokenizer=tokenizer,
    )
    return _save(
        model,
        processor,
        out_dir,
        decoder_start_token_id=tokenizer.eos_token_id,
        forced_bos_token_id=tokenizer.bos_token_id,  # labels start with <s>, as Florence-2's do
        **_token_ids(tokenizer),
    )


_BUILDERS: dict[str, Callable[[Path], Path]] = {
    "blip": _build_blip,
    "git": _build_git,
    "ved": _build_ved,
    "paligemma": _build_paligemma,
    "qwen2_vl": _build_qwen2_vl,
    "qwen2_5_vl": _build_qwen2_5_vl,
    "idefics3": _build_idefics3,
    "llava": _build_llava,
    "florence2": _build_florence2,
}
assert tuple(_BUILDERS) == FAMILIES


def build_tiny(family: str, out_dir: str | Path, seed: int = 0) -> Path:
    """Build a tiny random ``family`` captioner into ``out_dir`` and return the folder.

    The result is an ordinary ``save_pretrained`` checkpoint (``config.json``, safetensors
    weights, processor and tokenizer files) that :func:`training.adapters.load_captioner`
    reads through ``from_pretrained``. Same ``seed``, same weights.
    """
    if family in OTHER_FAMILIES:  # not captioners: built by their own modules
        module, attr = OTHER_FAMILIES[family]
        return getattr(importlib.import_module(module), attr)(Path(out_dir), seed=seed)
    if family not in _BUILDERS:
        raise ValueError(f"unknown family {family!r}; choose from {', '.join((*FAMILIES, *OTHER_FAMILIES))}")
    _seed_everything(seed)
    return _BUILDERS[family](Path(out_dir))


def folder_size(path: Path) -> int:
    """Bytes on disk under ``path`` (for reports)."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.tiny", description=__doc__.split("\n")[0])
    parser.add_argument("--family", required=True, choices=(*FAMILIES, *OTHER_FAMILIES, "all"))
    parser.add_argument("--out", required=True, type=Path, help="folder to write (created if missing)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--size",
        default="tiny",
        choices=("tiny", "base", "large"),
        help="tiny (toy widths), or a real architecture size with random weights (training.sized)",
    )
    parser.add_argument("--device", default="cpu", help="where real-size weights are initialised")
    parser.add_argument(
        "--fixed-new-tokens", type=int, default=0, help="real-size captioners: min_new_tokens of generation"
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.size != "tiny":
        from training.sized import SizeError, build_sized

        try:
            path = build_sized(
                args.family, args.size, args.out, args.seed, args.device, args.fixed_new_tokens
            )
        except SizeError as exc:
            parser.error(str(exc))
        print(f"{args.family} ({args.size}): {path} ({folder_size(path) / 1e6:.2f} MB)", flush=True)
        return 0
    families = FAMILIES if args.family == "all" else (args.family,)
    for family in families:
        out = args.out / family if args.family == "all" else args.out
        path = build_tiny(family, out, seed=args.seed)
        print(f"{family}: {path} ({folder_size(path) / 1e6:.2f} MB)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
