"""A small BLIP captioner for the miniature world of issue 12, built with random weights.

RECAP's captioner is a pretrained BLIP fine-tuned on human captions. This machine cannot download
BLIP, and a real BLIP would cost minutes per caption on 2 cores anyway, so the miniature
experiment starts from a ``BlipForConditionalGeneration`` of the world's size instead:

* 32-pixel images (the world's own), a ViT with 4-pixel patches (an 8 × 8 grid, so a 3 × 3
  scene grid and 8-pixel objects are resolved);
* a BERT-style WordPiece tokenizer learned from this world's captions: the alt-text of every
  failure mode, the simulated annotator's short and long captions (all templates, mistakes
  included), and the structured prompts. Every word of the world is one token, so a long caption
  of three objects and their relations is about 60–90 tokens;
* a text decoder with cross-attention, and a generation config that lets a long caption end.

The "pretraining" is then the ``captioner_train`` job with ``captions="alttext"`` (the stand-in
for web pretraining), and the fine-tune the same job on the human set, as in RECAP.

The folder is an ordinary ``save_pretrained`` checkpoint: ``BlipForConditionalGeneration`` and
``BlipProcessor.from_pretrained`` load it, and so does :func:`training.adapters.load_captioner`
(the studio's jobs). ``python -m training.miniature_captioner --out DIR --size cpu`` builds one.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from backend.miniature.captions import ALTTEXT_MODES, SimulatedAnnotator, all_templates, alttext
from backend.miniature.world import SIZE, prompt_text, sample_scene

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "[ENC]"]
#: learned pieces besides the specials; the world has ~90 words, junk alt-text (file names,
#: hex hashes, digits) takes the rest as word pieces
VOCAB_SIZE = 600
#: tokens a caption of this world may take: the longest long caption is ~95 tokens
MAX_CAPTION_TOKENS = 160
TOKENIZER_SCENES = 1500  # scenes whose captions teach the tokenizer (seconds to write)


@dataclass(frozen=True)
class CaptionerSize:
    """Widths and depths of one size preset (vision tower, text decoder)."""

    vision_hidden: int
    vision_layers: int
    vision_heads: int
    patch: int
    text_hidden: int
    text_layers: int
    text_heads: int
    positions: int = 512  # decoder positions: room for a prompt plus any max_new_tokens the jobs allow

    @property
    def vision_ffn(self) -> int:
        return 2 * self.vision_hidden

    @property
    def text_ffn(self) -> int:
        return 2 * self.text_hidden


SIZES: dict[str, CaptionerSize] = {
    # plumbing only: trains at hundreds of steps/s, learns little
    "smoke": CaptionerSize(32, 1, 2, 8, 32, 1, 2),
    # 2 CPU cores: learns the world's alt-text in a few minutes
    "cpu": CaptionerSize(96, 2, 4, 4, 128, 2, 4),
    # a GPU: wider and deeper
    "gpu": CaptionerSize(256, 4, 8, 4, 256, 4, 8),
}


def world_captions(n_scenes: int = TOKENIZER_SCENES, seed: int = 0) -> Iterator[str]:
    """Every kind of text this world produces: alt-text of each mode, human short and long
    captions (a high mistake rate, so mistake phrasings occur), prompts and the bare templates."""
    rng = random.Random(f"miniature-captioner-tokenizer:{seed}")
    annotator = SimulatedAnnotator(mistake_rate=0.3)
    for _ in range(n_scenes):
        scene = sample_scene(rng)
        for mode in ALTTEXT_MODES:
            yield alttext(scene, mode, rng).text
        yield annotator.short(scene, rng).text
        yield annotator.long(scene, rng).text
        yield prompt_text(scene)
    for templates in all_templates().values():
        for template in templates:
            yield re.sub(r"\{[^}]*\}", " ", template)


def world_wordpiece(texts: Iterable[str], vocab_size: int = VOCAB_SIZE) -> dict[str, int]:
    """A lower-casing BERT WordPiece vocabulary learned from ``texts``.

    As :func:`training.tiny.train_wordpiece` (whose corpus is fixed): pieces learned by the
    deterministic BPE trainer over BERT's normalizer and pre-tokenizer, each entered as a word
    start and as a ``##`` continuation, so greedy longest-match WordPiece finds every learned word.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False)
    tok.train_from_iterator(list(texts), trainer)
    learned = [t for t, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1]) if t not in SPECIALS]
    pieces = SPECIALS + learned + [f"##{t}" for t in learned]
    return {piece: i for i, piece in enumerate(pieces)}


def build_world_captioner(out_dir: str | Path, size: str = "cpu", seed: int = 0) -> Path:
    """Build a random-weight BLIP captioner of ``size`` (a key of :data:`SIZES`) for the miniature
    world into ``out_dir`` and return the folder. Same ``seed``, same weights and vocabulary."""
    import torch
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose from {', '.join(SIZES)}")
    dims = SIZES[size]
    random.seed(seed)
    torch.manual_seed(seed)
    vocab = world_wordpiece(world_captions(seed=seed))
    # BLIP's tokenizer is BERT's with [DEC] as bos (the decoder start) and [ENC] for ITM heads
    tokenizer = BertTokenizer(
        vocab=vocab, bos_token="[DEC]", extra_special_tokens=["[ENC]"], model_max_length=dims.positions
    )
    processor = BlipProcessor(
        image_processor=BlipImageProcessor(size={"height": SIZE, "width": SIZE}), tokenizer=tokenizer
    )
    config = BlipConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": dims.text_hidden,
            "intermediate_size": dims.text_ffn,
            "num_hidden_layers": dims.text_layers,
            "num_attention_heads": dims.text_heads,
            "max_position_embeddings": dims.positions,
            "encoder_hidden_size": dims.vision_hidden,
            "projection_dim": 32,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.sep_token_id,
            "sep_token_id": tokenizer.sep_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "hidden_size": dims.vision_hidden,
            "intermediate_size": dims.vision_ffn,
            "num_hidden_layers": dims.vision_layers,
            "num_attention_heads": dims.vision_heads,
            "image_size": SIZE,
            "patch_size": dims.patch,
            "projection_dim": 32,
        },
        projection_dim=32,
        image_text_hidden_size=32,
    )
    model = BlipForConditionalGeneration(config)
    gen = model.generation_config
    gen.max_new_tokens = MAX_CAPTION_TOKENS
    gen.max_length = None
    gen.num_beams = 1
    gen.do_sample = False
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "miniature_captioner.json").write_text(
        json.dumps({"size": size, "seed": seed, **asdict(dims)}, indent=2) + "\n",
        encoding="utf-8",
    )
    return out


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.miniature_captioner", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", required=True, type=Path, help="folder to write (created if missing)")
    parser.add_argument("--size", default="cpu", choices=tuple(SIZES))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(list(argv) if argv is not None else None)
    path = build_world_captioner(args.out, args.size, args.seed)
    print(path, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
