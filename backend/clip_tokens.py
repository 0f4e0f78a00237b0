"""Count CLIP text tokens without importing torch.

Why it matters: CLIP and the SD text encoder read at most 77 tokens (start and end
tokens included) and silently drop the rest, so a long caption's tail never reaches
the model (Recap-DataComp's CLIP-score finding). Annotators see the count live and
reviewers see a flag past 77.

The tokenizer is rebuilt with the ``tokenizers`` library from the BPE merges file that
open_clip ships (the same file OpenAI CLIP uses), located without importing open_clip,
so the studio process stays free of torch. Normalisation follows CLIP's: ftfy, HTML
unescape, whitespace collapse, lower case.
"""

from __future__ import annotations

import gzip
import html
import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import regex
    from tokenizers import Tokenizer

# ftfy, regex and tokenizers are imported where a count is made, not here: the studio imports
# this module for CONTEXT_LENGTH and word_count on start-up, before anyone counts a token.

CONTEXT_LENGTH = 77  # CLIP's text context, start and end tokens included
_MERGES_FILE = "bpe_simple_vocab_16e6.txt.gz"
_N_MERGES = 49152 - 256 - 2
_CLIP_PATTERN = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


class ClipVocabularyMissing(RuntimeError):
    pass


def _merges_path() -> Path:
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ClipVocabularyMissing(
            "CLIP token counts need the package open_clip_torch (it ships CLIP's BPE vocabulary): "
            "pip install open_clip_torch"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _MERGES_FILE
    if not path.exists():
        raise ClipVocabularyMissing(f"CLIP BPE vocabulary not found at {path}")
    return path


def _byte_alphabet() -> list[str]:
    """The 256 characters CLIP's BPE uses for bytes, in vocabulary order.

    Printable bytes stand for themselves; the others map to code points from 256 up.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    n_other = 256 - len(printable)
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(n_other)]


@lru_cache(maxsize=1)
def clip_tokenizer() -> Tokenizer:
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    with gzip.open(_merges_path(), "rt", encoding="utf-8") as fh:
        lines = fh.read().split("\n")[1 : _N_MERGES + 1]
    merges = [tuple(line.split()) for line in lines]
    alphabet = _byte_alphabet()
    tokens = alphabet + [c + "</w>" for c in alphabet] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, end_of_word_suffix="</w>", continuing_subword_prefix=""))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_CLIP_PATTERN), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    return tok


def normalise(text: str) -> str:
    import ftfy

    text = html.unescape(html.unescape(ftfy.fix_text(text)))
    return _whitespace().sub(" ", text).strip().lower()


@lru_cache(maxsize=1)
def _whitespace() -> regex.Pattern[str]:
    import regex

    return regex.compile(r"\s+")


def clip_token_ids(text: str) -> list[int]:
    """Token ids of ``text`` without start/end tokens (matches open_clip's tokenizer)."""
    return clip_tokenizer().encode(normalise(text), add_special_tokens=False).ids


def clip_token_count(text: str) -> int:
    """Tokens CLIP would need for ``text``, start and end tokens included."""
    return len(clip_token_ids(text)) + 2


def is_truncated(text: str) -> bool:
    return clip_token_count(text) > CONTEXT_LENGTH


def word_count(text: str) -> int:
    return len(text.split())
