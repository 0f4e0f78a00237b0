"""Caption-quality scores against held-out human captions: BLEU, CIDEr, CLIP score.

Why these packages: BLEU comes from ``sacrebleu`` (the maintained reference
implementation, with its own standard tokenisation) and CIDEr from ``pycocoevalcap``'s
``Cider`` class, which is pure Python. pycocoevalcap's usual PTB tokenizer shells out to
Java, which this machine does not have, so :func:`coco_tokenize` reproduces what it does
to a caption (lower case, punctuation removed, split on whitespace) in Python.

Caveat worth knowing when reading the numbers: CIDEr weighs n-grams by their rarity across
the evaluated *set*; on a validation split of one or two images every n-gram is "common"
and CIDEr collapses towards 0. It becomes meaningful from a few dozen images up.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from training.clip import ClipScorer

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def coco_tokenize(text: str) -> str:
    """Lower-cased words without punctuation, space-joined (what PTBTokenizer feeds CIDEr)."""
    return " ".join(_WORD.findall(text.lower()))


def _check(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
    if any(not refs for refs in references):
        raise ValueError("every hypothesis needs at least one reference")


def bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU (0–100) of one generated caption per image against its human captions.

    sacrebleu wants reference *streams* of equal length; images with fewer references repeat
    their first one, which leaves BLEU unchanged (n-gram clipping takes the maximum over
    references and the brevity penalty the closest length).
    """
    import sacrebleu

    _check(hypotheses, references)
    if not hypotheses:
        return 0.0
    width = max(len(refs) for refs in references)
    streams = [[refs[i] if i < len(refs) else refs[0] for refs in references] for i in range(width)]
    return float(sacrebleu.corpus_bleu(list(hypotheses), streams).score)


def cider(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus CIDEr-D-style score (pycocoevalcap ``Cider``, n=4, sigma=6) — on the usual
    0–10 scale where COCO captioners reach about 1.2; see the module note on small sets."""
    from pycocoevalcap.cider.cider import Cider

    _check(hypotheses, references)
    if not hypotheses:
        return 0.0
    gts = {i: [coco_tokenize(r) for r in refs] for i, refs in enumerate(references)}
    res = {i: [coco_tokenize(h)] for i, h in enumerate(hypotheses)}
    score, _per_image = Cider().compute_score(gts, res)
    return float(score)


def clip_score(scorer: ClipScorer, images: Sequence[PILImage.Image], texts: Sequence[str]) -> float:
    """Mean CLIP-S (100 × cosine) of aligned image/caption pairs."""
    scores = scorer.score(images, texts)
    return float(sum(scores) / len(scores)) if scores else 0.0
