"""Rule-based extraction of objects, counts, colours and spatial relations from a free-text caption.

This is how SOA and TISE turn COCO captions into checkable requirements: a caption names an
object when it contains one of the class's words (SOA's per-class word lists), states a count
when a number word stands in front of the noun (TISE's counting captions), and states a position
when a spatial phrase joins two named objects (TISE's positional captions). A rule-based reader
is predictable and shows its work (:class:`Extraction.spans`), which matters more here than
recall: an object it misses is simply not scored, an object it invents would be scored wrongly.

Rules, in order:

1. Tokens are matched against the vocabulary, longest phrase first ("teddy bear" before "bear",
   "to the left of" before "left"). A word that is both a colour and a class ("orange") is a
   colour when an object noun follows it, a class otherwise.
   A class word directly followed by another ("baby elephant") is a modifier of the second.
2. Each object noun reads the noun phrase in front of it (back to a determiner, a number or a
   word that ends a phrase such as "and", "of", "on"): the nearest colour word is its colour, a
   number word its count. "a"/"an" mean one, plural nouns without a number mean "at least two"
   and vague quantities ("several", "a group of") the same.
3. "the"/"this"/… (or no determiner at all) before a class already named refers back to it and
   adds nothing; "a", "another" or a number adds to the class's count ("one circle … another
   circle" is two circles).
4. Counts given by number words other than the article are exact: the prompt gets GenEval's
   ``exclude`` entry (count + 1) so CA and GenEval check them.
5. A spatial phrase relates the nearest object named before it in the same sentence to an
   object named right after it (only determiners, adjectives and colours in between). Phrases
   without a direction ("next to", "beside") and phrases missing an object are reported as
   notes and not scored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from backend.compositional.prompts import ObjectSpec, Relation, StructuredPrompt, exact_counts
from backend.compositional.vocabulary import COCO, Vocabulary

_TOKEN = re.compile(r"[A-Za-z]+(?:['’][A-Za-z]+)?|\d+|[^\sA-Za-z\d]")
_SENTENCE_END = {".", "!", "?", ";"}
_ARTICLES = {"a", "an"}
_REFERENCES = {
    "the",
    "this",
    "that",
    "these",
    "those",
    "its",
    "his",
    "her",
    "their",
    "my",
    "your",
    "our",
    "each",
}
_NEW = {"another"}
# words that end the noun phrase in front of an object noun
_BREAKS = {
    "and", "or", "but", "with", "without", "of", "in", "on", "at", "to", "from", "for", "into", "onto",
    "is", "are", "was", "were", "be", "being", "has", "have", "had", "there", "here", "while", "that",
    "which", "who", "whose", "where", "as", "than", "by", "near", "next", "beside", "behind", "inside",
    "outside", "holding", "wearing", "sitting", "standing", "riding", "eating", "playing",
}  # fmt: skip
_MAX_DIGITS = 20  # digits above this are years, sizes or model numbers, not object counts
_PHRASE_WINDOW = 5  # tokens scanned in front of a noun
_AFTER_WINDOW = 4  # tokens allowed between a spatial phrase and its object


@dataclass(frozen=True)
class Span:
    """One recognised phrase of the caption: ``caption[start:end]`` and what it was read as."""

    start: int
    end: int
    text: str
    kind: str  # "object" | "count" | "color" | "relation"
    value: str  # canonical class, number, colour or relation
    note: str = ""  # e.g. the object index it became, or why a relation was not scored


@dataclass(frozen=True)
class Extraction:
    """The structured prompt read from a caption, with the phrases that produced it."""

    prompt: StructuredPrompt
    spans: tuple[Span, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Tok:
    text: str
    start: int
    end: int


@dataclass
class _Item:
    """A vocabulary match covering tokens [i, j), or a plain token (kind "word"/"punct")."""

    i: int
    j: int
    kind: str
    value: object = None
    plural: bool = False
    alternatives: dict[str, object] = field(default_factory=dict)


@dataclass
class _Group:
    cls: str
    color: str | None
    count: int = 0
    exact: bool = True


class Extractor:
    """Reads captions with one :class:`~backend.compositional.vocabulary.Vocabulary`."""

    def __init__(self, vocabulary: Vocabulary | None = None) -> None:
        self.vocabulary = vocabulary or COCO
        table: dict[tuple[str, ...], dict[str, tuple[object, bool]]] = {}

        def add(phrase: str, kind: str, value: object, plural: bool = False) -> None:
            key = tuple(phrase.split())
            table.setdefault(key, {})[kind] = (value, plural)

        v = self.vocabulary
        for cls, (singular, plural) in v.classes.items():
            for form in singular:
                add(form, "object", cls, form in v.group_nouns)
            for form in plural:
                add(form, "object", cls, True)
        for word, n in v.numbers.items():
            add(word, "number", n)
        for word in v.vague:
            add(word, "vague", None, True)
        for word, color in v.colors.items():
            add(word, "color", color)
        for phrase, rel in v.relations.items():
            add(phrase, "relation", rel)
        self._table = table
        self._longest = max((len(k) for k in table), default=1)

    # ------------------------------------------------------------------ public

    def extract(
        self, caption: str, *, key: str = "", source: str = "", tag: str | None = None
    ) -> StructuredPrompt:
        return self.explain(caption, key=key, source=source, tag=tag).prompt

    def explain(self, caption: str, *, key: str = "", source: str = "", tag: str | None = None) -> Extraction:
        toks = [_Tok(m.group().lower(), m.start(), m.end()) for m in _TOKEN.finditer(caption)]
        items = self._match(toks)
        self._resolve_ambiguous(items, toks)
        groups: list[_Group] = []
        spans: list[Span] = []
        notes: list[str] = []
        mention_of: dict[int, int] = {}  # item index -> group index

        def text(item: _Item) -> tuple[int, int, str]:
            s, e = toks[item.i].start, toks[item.j - 1].end
            return s, e, caption[s:e]

        for idx, item in enumerate(items):
            if item.kind != "object":
                continue
            number, vague, ref, color, count_item, color_item = self._noun_phrase(items, idx, toks)
            cls = str(item.value)
            group_idx = self._find(groups, cls, color)
            is_ref = ref or (number is None and not vague and group_idx is not None)
            if is_ref and group_idx is not None:
                if color is not None and groups[group_idx].color is None:
                    groups[group_idx].color = color
            else:
                if number is not None:
                    words = " ".join(t.text for t in toks[count_item.i : count_item.j]) if count_item else "a"
                    n, exact = number, words not in _ARTICLES
                else:
                    n, exact = (2 if (item.plural or vague) else 1), False
                if group_idx is not None and groups[group_idx].color == color:
                    groups[group_idx].count += n
                    groups[group_idx].exact = groups[group_idx].exact and exact
                else:
                    groups.append(_Group(cls, color, n, exact))
                    group_idx = len(groups) - 1
            mention_of[idx] = group_idx
            s, e, t = text(item)
            spans.append(Span(s, e, t, "object", cls, f"object {group_idx}"))
            if count_item is not None:
                s, e, t = text(count_item)
                value = "several" if count_item.kind == "vague" else str(count_item.value)
                spans.append(Span(s, e, t, "count", value, f"object {group_idx}"))
            if color_item is not None:
                s, e, t = text(color_item)
                spans.append(Span(s, e, t, "color", str(color), f"object {group_idx}"))

        relations: list[Relation] = []
        for idx, item in enumerate(items):
            if item.kind != "relation":
                continue
            s, e, t = text(item)
            subject = self._before(items, idx, mention_of)
            obj = self._after(items, idx, mention_of, toks)
            if item.value is None:
                spans.append(Span(s, e, t, "relation", t.lower(), "no direction: not scored"))
                notes.append(f"{t!r} names no direction: not scored")
            elif subject is None or obj is None:
                missing = "before" if subject is None else "after"
                spans.append(
                    Span(s, e, t, "relation", str(item.value), f"no known object {missing} it: not scored")
                )
                notes.append(f"{t!r}: no known object {missing} it in the sentence: not scored")
            elif subject == obj:
                spans.append(
                    Span(s, e, t, "relation", str(item.value), "same object group on both sides: not scored")
                )
                notes.append(f"{t!r} relates one group of {groups[subject].cls} to itself: not scored")
            else:
                rel = Relation(subject, str(item.value), obj)
                if rel not in relations:
                    relations.append(rel)
                spans.append(
                    Span(s, e, t, "relation", str(item.value), f"object {subject} {item.value} object {obj}")
                )

        objects = tuple(ObjectSpec(g.cls, g.count, g.color) for g in groups)
        exact = [o for o, g in zip(objects, groups, strict=True) if g.exact]
        spans.sort(key=lambda sp: (sp.start, sp.end))
        prompt = StructuredPrompt(
            prompt=caption.strip() or caption,
            objects=objects,
            relations=tuple(relations),
            exclude=exact_counts(exact),
            tag=tag,
            source=source,
            key=key,
        )
        return Extraction(prompt, tuple(spans), tuple(notes))

    # ------------------------------------------------------------------ internals

    def _match(self, toks: list[_Tok]) -> list[_Item]:
        items: list[_Item] = []
        i = 0
        while i < len(toks):
            for length in range(min(self._longest, len(toks) - i), 0, -1):
                key = tuple(t.text for t in toks[i : i + length])
                entries = self._table.get(key)
                if entries:
                    kind, (value, plural) = next(iter(entries.items()))
                    if "object" in entries:
                        kind, (value, plural) = "object", entries["object"]
                    alternatives = {k: v for k, (v, _p) in entries.items() if k != kind}
                    items.append(_Item(i, i + length, kind, value, plural, alternatives))
                    i += length
                    break
            else:
                t = toks[i].text
                kind = "word" if t[0].isalnum() else "punct"
                value: object = t if kind == "punct" else None
                if t.isdigit() and 0 < int(t) <= _MAX_DIGITS:  # "1950s", "2014" are not counts
                    kind, value = "number", int(t)
                items.append(_Item(i, i + 1, kind, value))
                i += 1
        return items

    @staticmethod
    def _resolve_ambiguous(items: list[_Item], toks: list[_Tok]) -> None:
        """Settle words that can be read two ways, from the word that follows them.

        - A singular class word that is also a colour ("orange") is the colour when a noun-like
          word follows ("an orange cat", "orange flowers") and the class otherwise ("an orange on
          a plate"); a plural ("oranges") is always the class.
        - A class word directly followed by another class word is a modifier, not an object
          ("baby elephant", "dog bed"): the last noun is the head.
        """
        for idx, item in enumerate(items):
            if item.kind != "object":
                continue
            nxt = items[idx + 1] if idx + 1 < len(items) else None
            nxt_word = toks[nxt.i].text if nxt is not None and nxt.j - nxt.i == 1 else ""
            if (
                "color" in item.alternatives
                and not item.plural
                and nxt is not None
                and (nxt.kind == "object" or (nxt.kind == "word" and nxt_word not in _BREAKS))
            ):
                item.kind, item.value = "color", item.alternatives["color"]
                continue
            if nxt is not None and nxt.kind == "object":
                item.kind, item.value = "word", None

    @staticmethod
    def _noun_phrase(
        items: list[_Item], idx: int, toks: list[_Tok]
    ) -> tuple[int | None, bool, bool, str | None, _Item | None, _Item | None]:
        """(number, vague, reference, colour, count item, colour item) in front of ``items[idx]``."""
        number: int | None = None
        vague = ref = False
        color: str | None = None
        count_item = color_item = None
        scanned = 0
        k = idx - 1
        while k >= 0 and scanned < _PHRASE_WINDOW:
            it = items[k]
            word = toks[it.i].text if it.j - it.i == 1 else ""
            if it.kind in ("punct", "object", "relation"):
                break
            if it.kind == "color":
                if color is None:
                    color, color_item = str(it.value), it
            elif it.kind == "number":
                number, count_item = int(it.value), it  # type: ignore[call-overload]
                break
            elif it.kind == "vague":
                vague, count_item = True, it
                break
            elif word in _REFERENCES:
                ref = True
                break
            elif word in _NEW:
                number, count_item = 1, it
                break
            elif word in _BREAKS:
                break
            scanned += 1
            k -= 1
        return number, vague, ref, color, count_item, color_item

    @staticmethod
    def _find(groups: list[_Group], cls: str, color: str | None) -> int | None:
        """The group a mention of ``cls`` (with ``color``) refers to, the latest first."""
        for i in range(len(groups) - 1, -1, -1):
            if groups[i].cls == cls and groups[i].color == color:
                return i
        if color is None:
            for i in range(len(groups) - 1, -1, -1):
                if groups[i].cls == cls:
                    return i
        else:
            for i in range(len(groups) - 1, -1, -1):
                if groups[i].cls == cls and groups[i].color is None:
                    return i
        return None

    @staticmethod
    def _before(items: list[_Item], idx: int, mention_of: dict[int, int]) -> int | None:
        for k in range(idx - 1, -1, -1):
            if items[k].kind == "punct" and items[k].value in _SENTENCE_END:
                return None
            if k in mention_of:
                return mention_of[k]
        return None

    @staticmethod
    def _after(items: list[_Item], idx: int, mention_of: dict[int, int], toks: list[_Tok]) -> int | None:
        for scanned, k in enumerate(range(idx + 1, len(items))):
            if k in mention_of:
                return mention_of[k]
            it = items[k]
            word = toks[it.i].text if it.j - it.i == 1 else ""
            if it.kind in ("punct", "relation") or word in _BREAKS or scanned >= _AFTER_WINDOW:
                return None
        return None


def extract(caption: str, vocabulary: Vocabulary | None = None, **kwargs: str) -> StructuredPrompt:
    """The structured prompt read from ``caption`` (see the module docstring for the rules)."""
    return Extractor(vocabulary).extract(caption, **kwargs)


def explain(caption: str, vocabulary: Vocabulary | None = None, **kwargs: str) -> Extraction:
    """Like :func:`extract`, with the matched phrases and the notes on what was not scored."""
    return Extractor(vocabulary).explain(caption, **kwargs)
