"""Caption-quality scores against held-out human captions: BLEU, CIDEr, CLIP score.

Why these packages, and the tokenisation: published captioning numbers come from the COCO
caption toolkit (``pycocoevalcap``), which lower-cases and tokenises every caption with the
Stanford PTB tokenizer, drops punctuation tokens, then scores with its own ``Bleu`` and
``Cider`` classes. We use those two classes (pure Python) on the same tokens, so BLEU-4 and
CIDEr-D here are the toolkit's definitions. The toolkit's tokenizer, however, is a Java
program (``PTBTokenizer`` in a CoreNLP 3.4.1 jar) that needs a Java runtime, which a CI
machine may not have; :func:`ptb_tokenize` re-implements its rules in Python for what
captions contain (contractions split as ``do n't``, possessive ``'s``, hyphenated words and
numbers kept whole, abbreviations keeping their periods, brackets normalised to ``-lrb-`` and
friends — which, lower-cased, the toolkit then does *not* drop), and
``tests/test_caption_metrics.py`` checks it token for token against the Java tokenizer's
output (recorded, and live when Java is installed). Before issue 9 BLEU came from sacrebleu's
13a tokenisation, case-sensitive, and CIDEr from a regex that dropped digits' separators and
non-ASCII letters, so the numbers were not comparable with published ones.

Caveat worth knowing when reading the numbers: CIDEr weighs n-grams by their rarity across
the evaluated *set*; on a validation split of one or two images every n-gram is "common"
and CIDEr collapses towards 0. It becomes meaningful from a few dozen images up.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from training.clip import ClipScorer

#: tokens the COCO toolkit removes after tokenising (pycocoevalcap ``PUNCTUATIONS``, verbatim:
#: the bracket names are upper case there, so the lower-cased ``-lrb-`` etc. survive)
COCO_PUNCTUATIONS = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)
TOKENIZER = "PTB (Stanford CoreNLP 3.4.1 rules, -lowerCase, re-implemented in Python) + COCO punctuation removal"
_BRACKETS = {"(": "-LRB-", ")": "-RRB-", "[": "-LSB-", "]": "-RSB-", "{": "-LCB-", "}": "-RCB-"}
#: abbreviations that keep their period (those of CoreNLP's list that captions meet; each one
#: checked against the Java tokenizer: "the word mr. next" -> "mr.", while "no." loses it)
_ABBREVIATIONS = frozenset(
    ("mr", "mrs", "ms", "dr", "st", "jr", "sr", "prof", "mt", "ft", "vs", "etc", "inc", "ltd", "co", "corp")
    + ("bros", "gov", "gen", "col", "lt", "sgt", "rev", "ave", "blvd", "rd", "dept", "univ")
    + ("jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec")
)
_LETTER = r"[^\W\d_]"
_TOKEN = re.compile(
    r"""
    (?P<url>(?:https?://|www\.)[^\s"'<>]*[^\s"'<>.,;:!?)\]])
  | (?P<email>[\w.+-]+@[\w-]+(?:\.[\w-]+)+)
  | (?P<smiley>[:;]-?[()\[\]])
  | (?P<tag>[@#]\w+)
  | (?P<sgml><[A-Za-z/][^<>\s]*>)
  | (?P<acronym>(?:LETTER\.){2,})
  | (?P<fraction>\d+\ \d+/\d+)
  | (?P<number>\d+(?:[.,:/]\d+)+)
  | (?P<dotted>[A-Za-z0-9]+(?:\.[A-Za-z0-9]+)+)
  | (?P<clitic>(?i:n't|'s|'re|'ve|'ll|'d|'m)(?!\w))
  | (?P<ntstem>\w(?:\w|-(?=\w))*?(?=(?i:n't)(?!\w)))
  | (?P<word>[\w&](?:[\w&]|-(?=[\w&]))*(?:\.(?!\.))?)
  | (?P<dots>\.{2,})
  | (?P<dashes>-{2,})
  | (?P<marks>[?!]+)
  | (?P<quote2>"|``|'')
  | (?P<other>\S)
    """.replace("LETTER", _LETTER),
    re.VERBOSE,
)


def _split_word(word: str, rest: str) -> list[str]:
    """A word token: a final period is its own token unless the word is an abbreviation, an
    initial (``J.``) or a lower-case letter not ending a sentence (``plan b.``, ``c. 1960``)."""
    period = word.endswith(".") and len(word) > 1
    core = word[:-1] if period else word
    letter = len(core) == 1 and core.isalpha()
    sentence_ends = re.match(r"\s+[A-Z]", rest) is not None
    keep_period = period and (
        core.lower() in _ABBREVIATIONS or (letter and (core.isupper() or not sentence_ends))
    )
    tokens = [core + "." if keep_period else core]
    if period and not keep_period:
        tokens.append(".")
    return tokens


def ptb_tokenize(text: str) -> list[str]:
    """Lower-cased PTB tokens of ``text``, as CoreNLP's ``PTBTokenizer -preserveLines -lowerCase``
    gives them (before the COCO toolkit drops punctuation; see :func:`coco_tokenize`).

    Contractions become two tokens (``do n't``, ``ca n't``, ``cat 's``, ``they 'll``) through the
    ``ntstem``/``clitic`` alternatives; a word's final period is split off unless the word is an
    abbreviation; opening/closing quotes become ````/``''`` and `` ` ``/``'``."""
    tokens: list[str] = []
    text = text.replace("\n", " ")
    for match in _TOKEN.finditer(text):
        kind, value = match.lastgroup, match.group()
        if kind == "word":
            tokens += _split_word(value, text[match.end() :])
        elif kind == "fraction":
            tokens.append(value.replace(" ", "\u00a0"))  # one token, as CoreNLP joins "9 3/4"
        elif kind == "smiley":
            tokens.append(value[:-1] + _BRACKETS[value[-1]])
        elif kind == "quote2":
            tokens.append(value if value in ("``", "''") else _double_quote(text, match.start()))
        elif kind == "other":
            if value in _BRACKETS:
                tokens.append(_BRACKETS[value])
            elif value in "'`":
                tokens.append("`" if value == "`" or _opens(text, match.start()) else "'")
            else:
                tokens.append(value)
        else:
            tokens.append(value)
    return [t.lower() for t in tokens]


def _opens(text: str, at: int) -> bool:
    """A quote opens when it starts the text or follows a space or an opening bracket."""
    return at == 0 or text[at - 1].isspace() or text[at - 1] in "([{"


def _double_quote(text: str, at: int) -> str:
    return "``" if _opens(text, at) else "''"


def coco_tokenize(text: str) -> str:
    """What the COCO toolkit scores: PTB tokens, lower-cased, without its punctuation tokens."""
    return " ".join(t for t in ptb_tokenize(text) if t not in COCO_PUNCTUATIONS)


def _check(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
    if any(not refs for refs in references):
        raise ValueError("every hypothesis needs at least one reference")


def _coco_inputs(
    hypotheses: Sequence[str], references: Sequence[Sequence[str]]
) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    """(gts, res) as pycocoevalcap's scorers take them, tokenised as the toolkit does."""
    gts = {i: [coco_tokenize(r) for r in refs] for i, refs in enumerate(references)}
    res = {i: [coco_tokenize(h)] for i, h in enumerate(hypotheses)}
    return gts, res


def bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU-4 of one generated caption per image against its human captions, × 100:
    the COCO toolkit's ``Bleu(4)`` ("closest" reference length) on its tokenisation, so the
    number reads like a published ``Bleu_4`` × 100 (COCO captioners: about 35–40)."""
    from pycocoevalcap.bleu.bleu import Bleu

    _check(hypotheses, references)
    if not hypotheses:
        return 0.0
    scores, _per_image = Bleu(4).compute_score(*_coco_inputs(hypotheses, references), verbose=0)
    return 100.0 * float(scores[3])


def cider(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus CIDEr-D-style score (pycocoevalcap ``Cider``, n=4, sigma=6) — on the usual
    0–10 scale where COCO captioners reach about 1.2; see the module note on small sets."""
    from pycocoevalcap.cider.cider import Cider

    _check(hypotheses, references)
    if not hypotheses:
        return 0.0
    score, _per_image = Cider().compute_score(*_coco_inputs(hypotheses, references))
    return float(score)


def clip_score(scorer: ClipScorer, images: Sequence[PILImage.Image], texts: Sequence[str]) -> float:
    """Mean CLIP-S (100 × cosine) of aligned image/caption pairs."""
    scores = scorer.score(images, texts)
    return float(sum(scores) / len(scores)) if scores else 0.0


# --------------------------------------------------------------------------- CLIP R-precision

#: the standard protocol (Xu et al. 2018's R-precision with CLIP, as Park et al. 2021 and RECAP
#: report it): the true prompt ranked against 99 prompts drawn at random from the other prompts
RP_DISTRACTORS = 99


def rank_counts(similarity: np.ndarray, true_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(beaters, ties) per image: other prompts scoring above / exactly as its own prompt.

    ``similarity`` is images × candidate prompts, ``true_index`` each image's own column.
    """
    similarity = np.asarray(similarity, dtype=np.float64)
    own = similarity[np.arange(similarity.shape[0]), true_index][:, None]
    beaters = (similarity > own).sum(axis=1)
    ties = (similarity == own).sum(axis=1) - 1  # the own prompt is not its own tie
    return beaters.astype(np.int64), ties.astype(np.int64)


def r_precision_probability(
    beaters: Sequence[int] | np.ndarray,
    ties: Sequence[int] | np.ndarray,
    pool: int,
    distractors: int = RP_DISTRACTORS,
) -> np.ndarray:
    """Per image, the probability that its own prompt ranks first among itself and
    ``min(distractors, pool)`` prompts drawn without replacement from the ``pool`` other prompts.

    Why exact and not a seeded Monte-Carlo: drawing the distractors again and again and averaging
    converges to this hypergeometric expectation, so computing it directly gives the average over
    *all* draws with no sampling noise and nothing to seed. An image wins a draw when none of its
    ``beaters`` is drawn; ``j`` drawn ``ties`` share first place, counted as a win with probability
    1/(1+j) (a random tie-break: prompts that differ only past CLIP's 77 tokens have equal features).
    """
    k = min(int(distractors), int(pool))
    if k < 0 or pool < 0:
        raise ValueError(f"pool and distractors must be >= 0, got {pool} and {distractors}")
    total = math.comb(pool, k)
    cache: dict[tuple[int, int], float] = {}
    out = np.empty(len(beaters), dtype=np.float64)
    for i, (m, t) in enumerate(zip(np.asarray(beaters).tolist(), np.asarray(ties).tolist(), strict=True)):
        key = (int(m), int(t))
        if key not in cache:
            rest = pool - key[0] - key[1]  # prompts that score below the own one
            cache[key] = sum(
                math.comb(key[1], j) * math.comb(rest, k - j) / total / (1 + j)
                for j in range(min(key[1], k) + 1)
                if 0 <= k - j <= rest
            )
        out[i] = cache[key]
    return out


@dataclass(frozen=True)
class RPrecision:
    """CLIP R-precision under the standard protocol, with what is needed to read it."""

    value: float  # percent: mean over images of :attr:`per_image`
    per_image: np.ndarray  # probability that each image's own prompt ranks first
    distractors: int  # drawn per image (99, or every other prompt when there are fewer)
    pool: int  # distinct other prompts the distractors come from

    @property
    def candidates(self) -> int:
        return self.distractors + 1

    @property
    def standard(self) -> bool:
        """Comparable with published RP (99 distractors): False when the set has < 100 prompts."""
        return self.distractors == RP_DISTRACTORS


def clip_r_precision(
    similarity: np.ndarray, true_index: np.ndarray, distractors: int = RP_DISTRACTORS
) -> RPrecision:
    """R-precision (R = 1) of images against candidate prompts: each image's own prompt against
    ``distractors`` random other prompts, averaged exactly over the draws
    (:func:`r_precision_probability`). With fewer other prompts than ``distractors`` all of them
    are used and :attr:`RPrecision.standard` is False: the number then depends on the set's size
    and is not comparable with published values (chance is 100 / candidates)."""
    similarity = np.asarray(similarity)
    pool = similarity.shape[1] - 1
    beaters, ties = rank_counts(similarity, np.asarray(true_index))
    per_image = r_precision_probability(beaters, ties, pool, distractors)
    value = 100.0 * float(per_image.mean()) if len(per_image) else 0.0
    return RPrecision(value, per_image, min(distractors, pool), pool)
