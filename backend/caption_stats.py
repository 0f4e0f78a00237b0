"""Caption statistics per kind: lengths, CLIP tokens, vocabulary, junk alt-text.

Why these numbers: Recap-DataComp compares caption length distributions of original
alt-text and recaptions (its Figure 3), CLIP reads at most 77 tokens so long captions
past that are flagged, and junk alt-text (file names, URLs, adverts) is the failure mode
RECAP recaptions away. Rows are streamed from the database (``yield_per``), so a million
captions cost a few lists of ints, not a million ORM objects.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlmodel import select

from backend.clip_tokens import CONTEXT_LENGTH, clip_tokenizer, normalise, word_count
from backend.db import read_session
from backend.models import Caption, CaptionKind, Image
from backend.visibility import EVERYONE, Viewer, visible_captions
from backend.workspace import Workspace

STREAM_BATCH = 2000
TOP_WORDS = 25
# Most captions per kind one statistics request reads, whatever a client asks for (one sent 10**9).
MAX_STATS_SAMPLE = 200_000
JUNK_EXAMPLES = 5

_STOP_WORDS_TEXT = """
a an the and or but of in on at to for from by with without into onto over under about as is are was were
be been being it its this that these those there here his her their our your my we you they he she i me
him them us not no so than then too very can will just has have had do does did some any each other
s t up down out off all both more most
"""
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())

# --------------------------------------------------------------------------- junk alt-text

_IMAGE_EXT = r"(?:jpe?g|png|gif|webp|bmp|tiff?|heic|heif|svg|avif|jfif)"
_URL = re.compile(r"(?:https?://|ftp://|www\.)\S+", re.IGNORECASE)
_FILE_NAME = re.compile(rf"^[\w\-. ()\[\]~+,%]+\.{_IMAGE_EXT}$", re.IGNORECASE)
_CAMERA_NAME = re.compile(
    r"^(?:img|dsc|dscn|dscf|dcim|pxl|gopr|mvimg|sam|p|pict?|photo|image|screenshot|screen shot|scan|wp|vid)"
    r"[\s_\-]*\d{2,}[\w\-]*$",
    re.IGNORECASE,
)
_PLACEHOLDERS = {
    "untitled",
    "image",
    "img",
    "photo",
    "picture",
    "pic",
    "thumbnail",
    "thumb",
    "placeholder",
    "default",
    "no title",
    "null",
    "none",
    "undefined",
    "n/a",
    "na",
    "alt",
    "alt text",
    "logo",
    "banner",
    "icon",
    "spacer",
    "blank",
}
_HASH = re.compile(
    r"^(?:[0-9a-f]{8,}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$",
    re.IGNORECASE,
)
_BOILERPLATE: tuple[tuple[str, str], ...] = (
    # (pattern, reason)
    (
        r"\bstock (?:photo|image|photography|vector|illustration|footage|picture)s?\b",
        "stock-photo boilerplate",
    ),
    (r"\broyalty[- ]free\b", "stock-photo boilerplate"),
    (
        r"\b(?:shutterstock|getty ?images|istock(?:photo)?|alamy|dreamstime|depositphotos|123rf)\b",
        "stock-photo boilerplate",
    ),
    (r"\bbuy (?:it )?now\b", "advert"),
    (r"\bshop now\b", "advert"),
    (r"\border (?:it )?now\b", "advert"),
    (r"\bfree shipping\b", "advert"),
    (r"\badd to (?:cart|basket|bag)\b", "advert"),
    (r"\b(?:best|lowest|sale) price\b", "advert"),
    (r"\b\d{1,2} ?% off\b", "advert"),
    (r"\blimited (?:time )?offer\b", "advert"),
    (r"\bin stock\b", "advert"),
    (r"\bclick here\b", "boilerplate ('click here')"),
    (r"\b(?:download|subscribe|sign up) now\b", "boilerplate (call to action)"),
    (r"\bimage may contain\b", "auto-generated placeholder"),
    (r"\bno (?:photo |image )?description(?: available)?\b", "auto-generated placeholder"),
    (r"\b(?:image|photo|file) not found\b", "auto-generated placeholder"),
    (r"\ball rights reserved\b", "copyright notice"),
    (r"(?:©|\(c\)|\bcopyright\b)\s*(?:\d{4}|by\b|all\b)", "copyright notice"),
    (r"\blorem ipsum\b", "placeholder text"),
)
_BOILERPLATE_RE = tuple((re.compile(p, re.IGNORECASE), reason) for p, reason in _BOILERPLATE)


def junk_reason(text: str | None) -> str | None:
    """Why an alt-text looks like junk (a short reason), or None if it looks like a description."""
    if text is None or not text.strip():
        return "empty"
    t = " ".join(text.split())
    low = t.lower()
    if _FILE_NAME.match(t):
        return "a file name"
    url = _URL.search(t)
    if url:
        rest = (t[: url.start()] + t[url.end() :]).split()
        if len(rest) <= 2:
            return "a URL"
    if _CAMERA_NAME.match(t):
        return "a camera file name"
    if low.strip(" .!-_:") in _PLACEHOLDERS:
        return "a placeholder word"
    compact = re.sub(r"[\s\-_.:#/]", "", low)
    if _HASH.match(compact) and any(c.isdigit() for c in compact):
        return "a hash or id"
    alnum = [c for c in compact if c.isalnum()]
    if len(alnum) >= 3 and sum(c.isdigit() for c in alnum) / len(alnum) > 0.5:
        return "mostly digits"
    for pattern, reason in _BOILERPLATE_RE:
        m = pattern.search(t)
        if m:
            return f"{reason}: '{m.group(0).strip()}'"
    return None


# --------------------------------------------------------------------------- stats per kind

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def words_of(text: str) -> list[str]:
    """Lower-cased words (letters/digits, inner apostrophes kept) for vocabulary counts."""
    return _WORD.findall(text.lower())


@dataclass
class KindStats:
    kind: str
    count: int = 0
    word_counts: list[int] = field(default_factory=list)
    clip_token_counts: list[int] = field(default_factory=list)
    truncated: int = 0  # captions longer than CLIP's 77 tokens
    vocabulary_size: int = 0
    top_words: list[tuple[str, int]] = field(default_factory=list)  # stop words removed
    junk: int = 0  # alt-text only
    junk_examples: list[tuple[str, str]] = field(default_factory=list)  # (text, reason)
    # machine captions whose provenance records ``hit_token_limit`` (recaption), and of those the
    # ones whose generation stopped at max_new_tokens instead of an end token: cut captions
    limit_known: int = 0
    hit_limit: int = 0

    @property
    def mean_words(self) -> float:
        return sum(self.word_counts) / len(self.word_counts) if self.word_counts else 0.0

    @property
    def mean_tokens(self) -> float:
        return sum(self.clip_token_counts) / len(self.clip_token_counts) if self.clip_token_counts else 0.0

    @property
    def truncated_fraction(self) -> float:
        return self.truncated / self.count if self.count else 0.0

    @property
    def junk_fraction(self) -> float:
        return self.junk / self.count if self.count else 0.0

    @property
    def hit_limit_fraction(self) -> float | None:
        """Share of cut captions among those that record it (None when none does)."""
        return self.hit_limit / self.limit_known if self.limit_known else None


_PLAIN = re.compile(r"[\x20-\x25\x27-\x7e\t\n\r]*")  # printable ASCII without '&', plus whitespace


def _normalise(text: str) -> str:
    """CLIP's normalisation (:func:`backend.clip_tokens.normalise`), with a fast path.

    ftfy and HTML unescaping change nothing in plain printable ASCII without '&', which is
    most captions; skipping them there makes statistics over millions of rows faster.
    """
    if _PLAIN.fullmatch(text):
        return " ".join(text.split()).lower()
    return normalise(text)


class _Accumulator:
    """Builds one KindStats from streamed texts; tokenises in batches (much faster than one by one)."""

    def __init__(self, kind: str, top_n: int = TOP_WORDS) -> None:
        self.stats = KindStats(kind=kind)
        self.top_n = top_n
        self.vocab: Counter[str] = Counter()
        self.pending: list[str] = []
        self.check_junk = kind == CaptionKind.alttext.value

    def add(self, text: str, hit_limit: object = None) -> None:
        st = self.stats
        st.count += 1
        if hit_limit is not None:  # JSON true/false (SQLite gives 1/0); absent in older captions
            st.limit_known += 1
            st.hit_limit += bool(hit_limit)
        st.word_counts.append(word_count(text))
        self.vocab.update(words_of(text))
        if self.check_junk:
            reason = junk_reason(text)
            if reason is not None:
                st.junk += 1
                if len(st.junk_examples) < JUNK_EXAMPLES:
                    st.junk_examples.append((text, reason))
        self.pending.append(text)
        if len(self.pending) >= STREAM_BATCH:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        encodings = clip_tokenizer().encode_batch(
            [_normalise(t) for t in self.pending], add_special_tokens=False
        )
        for enc in encodings:
            n = len(enc.ids) + 2  # start and end tokens, as clip_token_count counts them
            self.stats.clip_token_counts.append(n)
            if n > CONTEXT_LENGTH:
                self.stats.truncated += 1
        self.pending.clear()

    def finish(self) -> KindStats:
        self._flush()
        self.stats.vocabulary_size = len(self.vocab)
        content = Counter({w: n for w, n in self.vocab.items() if w not in STOP_WORDS})
        self.stats.top_words = sorted(content.items(), key=lambda kv: (-kv[1], kv[0]))[: self.top_n]
        return self.stats


def text_stats(kind: str, texts: Iterable[str], top_n: int = TOP_WORDS) -> KindStats:
    """KindStats of any iterable of texts (used by :func:`dataset_caption_stats` and tests)."""
    acc = _Accumulator(kind, top_n)
    for text in texts:
        acc.add(text)
    return acc.finish()


def _kind_order(kind: str) -> tuple[int, str]:
    known = [k.value for k in CaptionKind]
    return (known.index(kind), kind) if kind in known else (len(known), kind)


def dataset_kinds(ws: Workspace, dataset: str, viewer: Viewer = EVERYONE) -> list[str]:
    """Kinds with at least one current caption (``viewer`` may read) in the dataset, well-known kinds first."""
    from backend.datasets import get_dataset

    with read_session(ws) as s:
        ds = get_dataset(s, dataset)
        kinds = s.exec(
            select(Caption.kind)
            .join(Image, Image.id == Caption.image_id)
            .where(Image.dataset_id == ds.id, Caption.is_current == True)  # noqa: E712 - SQL expression
            .where(visible_captions(viewer))
            .distinct()
        ).all()
    return sorted(kinds, key=_kind_order)


def sample_limit(value: float | str | None) -> int:
    """A requested sample size clamped to 1..:data:`MAX_STATS_SAMPLE` (unreadable: the maximum).

    Why at least 1: SQLite reads a negative LIMIT as no limit at all.
    """
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return MAX_STATS_SAMPLE
    if number != number:  # NaN
        return MAX_STATS_SAMPLE
    return int(min(max(number, 1.0), float(MAX_STATS_SAMPLE)))


def dataset_caption_stats(
    ws: Workspace,
    dataset: str,
    kinds: list[str] | None = None,
    limit: int | None = None,
    top_n: int = TOP_WORDS,
    viewer: Viewer = EVERYONE,
) -> dict[str, KindStats]:
    """Statistics of the current captions of a dataset, per kind.

    ``kinds`` defaults to every kind present; ``limit`` caps the captions read per kind
    (the first ones by id) for a quick look at a huge dataset. Only captions ``viewer`` may
    read count (:mod:`backend.visibility`): an annotator's top words and junk examples never
    come from another annotator's unreviewed captions. Raises
    :class:`backend.datasets.DatasetNotFound` for an unknown dataset.
    """
    from backend.datasets import get_dataset

    if kinds is None:
        kinds = dataset_kinds(ws, dataset, viewer)
    result: dict[str, KindStats] = {}
    with read_session(ws) as s:
        ds = get_dataset(s, dataset)
        for kind in kinds:
            acc = _Accumulator(kind, top_n)
            query = (
                select(Caption.text, Caption.provenance["hit_token_limit"])  # type: ignore[index]
                .join(Image, Image.id == Caption.image_id)
                .where(Image.dataset_id == ds.id, Caption.kind == kind, Caption.is_current == True)  # noqa: E712
                .where(visible_captions(viewer))
                .order_by(Caption.id)
            )
            if limit is not None:
                query = query.limit(sample_limit(limit))
            for text, hit_limit in s.exec(query.execution_options(yield_per=STREAM_BATCH)):
                acc.add(text, hit_limit)
            result[kind] = acc.finish()
    return result


def histogram(
    values: Sequence[float] | Iterable[float], bins: int | Sequence[float] = 30
) -> tuple[list[int], list[float]]:
    """(counts, edges) of ``values`` via numpy; an empty input gives zero counts."""
    import numpy as np

    arr = np.asarray(values if isinstance(values, Sequence) else list(values), dtype=float)
    counts, edges = np.histogram(arr, bins=bins)
    return counts.astype(int).tolist(), edges.astype(float).tolist()
