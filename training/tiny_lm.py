"""A tiny random causal language model (GPT-2 architecture), built offline, for prompt upsampling tests.

Why: the ``generate`` job rewrites short prompts with a causal LM (``--upsampler``) loaded
through ``AutoModelForCausalLM`` / ``AutoTokenizer.from_pretrained``. Tests cannot download one,
so this builds a toy GPT-2 (hidden 32, two layers) with a byte-level BPE tokenizer *trained* on
the caption corpus of :mod:`training.tiny`, and saves both with ``save_pretrained``: the folder
loads through exactly the path a hub checkpoint takes. Its text is gibberish (random weights);
it exercises tokenisation, left padding, batched greedy generation and decoding, nothing more.

The tokenizer has no chat template on purpose: it stands for a plain completion model, the
case :mod:`training.upsample` feeds the filled template to as raw text. (A chat model's
tokenizer carries a template, and the upsampler wraps the prompt in a user turn instead.)

``python -m training.tiny --family causal_lm --out DIR`` builds one from the command line.
"""

from __future__ import annotations

from pathlib import Path

HIDDEN = 32
LAYERS = 2
HEADS = 2
POSITIONS = 512  # the default upsampling template (~60 tokens) plus up to ~450 new tokens
END = "<|endoftext|>"


def build_tiny_lm(out_dir: Path, seed: int = 0) -> Path:
    """Build a tiny random GPT-2 causal LM with its tokenizer into ``out_dir``; same seed, same weights."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

    from training.tiny import train_byte_level_bpe

    torch.manual_seed(seed)
    vocab, merges = train_byte_level_bpe([END])
    # GPT-2's one special token does every job (bos, eos, unk, and pad for batched generation)
    tokenizer = GPT2Tokenizer(vocab=vocab, merges=merges, pad_token=END)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=HIDDEN,
        n_layer=LAYERS,
        n_head=HEADS,
        n_inner=4 * HIDDEN,
        n_positions=POSITIONS,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
