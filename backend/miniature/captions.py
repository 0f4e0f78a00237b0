"""Captions of miniature scenes: web-style alt-text with recorded failure modes, and a simulated annotator.

Why both: RECAP's effect is that a captioner fine-tuned on a small, careful human caption set
writes better training captions than the web's alt-text. To reproduce it where the truth is known,
the corpus needs alt-text that fails the way web alt-text fails (junk, partial, wrong — see
``assets/guidelines.md``), with the failure of every caption recorded so accuracy per mode can be
measured, and a human set written the way the guidelines ask, by an "annotator" that varies its
wording like people do and makes the occasional mistake, also recorded.

Everything is seeded (a :class:`random.Random` is passed in) and built from the ground truth only.
Every phrasing used here is read by the rule-based extractor with
:data:`~backend.miniature.world.VOCABULARY` (tests run it over every template), so caption
accuracy measures the caption, not the reader.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from backend.compositional.prompts import OPPOSITE
from backend.miniature.world import (
    MINIATURE_COLORS,
    MINIATURE_SHAPES,
    Scene,
    group_phrase,
    join_phrases,
    plural,
)

#: alt-text failure modes and their default shares of a corpus (RECAP's motivation: most web
#: alt-text is junk or incomplete; a minority describes the image)
ALTTEXT_MODES: Mapping[str, float] = {"junk": 0.30, "partial": 0.30, "wrong": 0.20, "faithful": 0.20}
#: share of human captions with one mistake (people miscount or mix up a colour now and then)
MISTAKE_RATE = 0.03
ERROR_KINDS = ("color", "shape", "count", "position", "omission")

_JUNK = (
    "IMG_{n4}.jpg",
    "IMG_{n4}.JPG",
    "DSC{n5}.jpg",
    "image",
    "image.png",
    "photo",
    "untitled-{n2}.png",
    "{hex}.png",
    "thumbnail",
    "Geometric abstract art print, modern minimalist wall decor",
    "Free download HD wallpaper",
    "shapes clipart vector icon set",
    "Best price - buy now, free shipping",
    "kids learning flashcard printable",
)
_CLIPART = ("{x}", "{x} clipart", "{x} icon", "Simple {x}", "{x} vector graphic")


@dataclass(frozen=True)
class AltText:
    """One alt-text and how it fails: ``mode`` is junk / partial / wrong / faithful; ``error`` says
    what a wrong one gets wrong (colour, shape, count or position)."""

    text: str
    mode: str
    error: str | None = None

    def provenance(self) -> dict[str, Any]:
        out: dict[str, Any] = {"alttext_mode": self.mode}
        if self.error:
            out["alttext_error"] = self.error
        return out


def assign_modes(n: int, rng: random.Random, proportions: Mapping[str, float] = ALTTEXT_MODES) -> list[str]:
    """``n`` modes in the stated proportions exactly (largest remainder), in seeded random order."""
    total = sum(proportions.values())
    if n < 0 or total <= 0 or any(p < 0 for p in proportions.values()):
        raise ValueError(f"need n >= 0 and non-negative proportions with a positive sum, got {proportions}")
    unknown = set(proportions) - set(ALTTEXT_MODES)
    if unknown:
        raise ValueError(f"unknown alt-text modes {sorted(unknown)}; choose from {', '.join(ALTTEXT_MODES)}")
    exact = {m: n * p / total for m, p in proportions.items()}
    counts = {m: int(x) for m, x in exact.items()}
    for m in sorted(exact, key=lambda m: counts[m] - exact[m])[: n - sum(counts.values())]:
        counts[m] += 1
    modes = [m for m, k in counts.items() for _ in range(k)]
    rng.shuffle(modes)
    return modes


# ----------------------------------------------------------------------------- perception


@dataclass
class _Seen:
    """A group as a caption writer sees it (possibly mistaken)."""

    shape: str
    color: str
    count: int
    regions: list[str]


@dataclass
class _View:
    groups: list[_Seen]
    relations: list[tuple[int, str, int]]  # group index, relation, group index
    mistakes: list[dict[str, str]] = field(default_factory=list)


def _view(scene: Scene) -> _View:
    groups = [_Seen(g.shape, g.color, g.count, [m.region for m in g.members]) for g in scene.groups()]
    return _View(groups, [(r.subject, r.relation, r.object) for r in scene.relations()])


def _spare_colors(view: _View, g: _Seen) -> list[str]:
    used = {h.color for h in view.groups if h.shape == g.shape}
    return [c for c in MINIATURE_COLORS if c not in used]


def _spare_shapes(view: _View, g: _Seen) -> list[str]:
    used = {h.shape for h in view.groups}
    return [s for s in MINIATURE_SHAPES if s not in used]


def _mistake(view: _View, kind: str, rng: random.Random, group: int | None = None) -> str | None:
    """Apply one mistake of ``kind`` (to ``group`` when given) to the view; the kind applied
    (another when that one is impossible here) or None."""
    order = [kind, *[k for k in ERROR_KINDS if k != kind]]
    for k in order:
        i = rng.randrange(len(view.groups)) if group is None else group
        g = view.groups[i]
        if k == "color" and _spare_colors(view, g):
            new = rng.choice(_spare_colors(view, g))
            view.mistakes.append({"kind": k, "detail": f"{g.color} {g.shape} written as {new}"})
            g.color = new
        elif k == "shape" and _spare_shapes(view, g):
            new = rng.choice(_spare_shapes(view, g))
            view.mistakes.append({"kind": k, "detail": f"{g.color} {g.shape} written as {new}"})
            g.shape = new
        elif k == "count":
            new = g.count + 1 if g.count == 1 or rng.random() < 0.5 else g.count - 1
            view.mistakes.append({"kind": k, "detail": f"{g.count} {g.color} {g.shape} written as {new}"})
            g.count = new
        elif k == "position" and view.relations:
            j = rng.randrange(len(view.relations))
            a, rel, b = view.relations[j]
            view.relations[j] = (a, OPPOSITE[rel], b)
            view.mistakes.append({"kind": k, "detail": f"{rel} written as {OPPOSITE[rel]}"})
        elif k == "omission" and len(view.groups) > 1:
            view.mistakes.append({"kind": k, "detail": f"{g.color} {g.shape} left out"})
            del view.groups[i]
            view.relations = [
                (a - (a > i), rel, b - (b > i)) for a, rel, b in view.relations if i not in (a, b)
            ]
        else:
            continue
        return k
    return None


# ----------------------------------------------------------------------------- alt-text


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:]


def _listing(groups: Sequence[_Seen]) -> str:
    return join_phrases([group_phrase(g.count, g.color, g.shape) for g in groups])


def alttext(scene: Scene, mode: str, rng: random.Random) -> AltText:
    """Web-style alt-text of one failure mode for a scene (see :data:`ALTTEXT_MODES`)."""
    if mode == "junk":
        template = rng.choice(_JUNK)
        text = template.format(
            n2=rng.randint(1, 99), n4=rng.randint(1000, 9999), n5=rng.randint(10000, 99999),
            hex=f"{rng.getrandbits(48):012x}",
        )  # fmt: skip
        return AltText(text, mode)
    view = _view(scene)
    if mode == "partial":
        if len(view.groups) > 1:  # some of the objects, faithfully
            keep = sorted(rng.sample(range(len(view.groups)), rng.randint(1, len(view.groups) - 1)))
            return AltText(_sentence(_listing([view.groups[i] for i in keep])), mode)
        g = view.groups[0]  # one object: named without its colour (and count)
        return AltText(_sentence(rng.choice(_CLIPART).format(x=g.shape)), mode)
    if mode == "wrong":
        error = _mistake(view, rng.choice(("color", "shape", "count", "position")), rng)
        text = _listing(view.groups)
        if error == "position":
            a, rel, b = next(
                (r for r, m in zip(view.relations, _view(scene).relations, strict=True) if r != m)
            )
            ga, gb = view.groups[a], view.groups[b]
            text += f", the {_noun(ga)} {_relation_phrase(rel, rng)} the {_noun(gb)}"
        return AltText(_sentence(text), mode, error)
    if mode == "faithful":
        suffix = rng.choice(("", " on a white background", " on white"))
        return AltText(_sentence(_listing(view.groups) + suffix), mode)
    raise ValueError(f"unknown alt-text mode {mode!r}; choose from {', '.join(ALTTEXT_MODES)}")


# ----------------------------------------------------------------------------- the annotator

#: relation phrases the annotator uses (every one is in the extractor's vocabulary)
RELATION_PHRASES: Mapping[str, tuple[str, ...]] = {
    "left of": ("to the left of", "left of", "on the left side of"),
    "right of": ("to the right of", "right of", "on the right side of"),
    "above": ("above",),
    "below": ("below", "beneath", "underneath"),
}
SHAPE_WORDS: Mapping[str, tuple[str, ...]] = {
    "circle": ("circle", "circle", "disc"),
    "square": ("square",),
    "triangle": ("triangle",),
}
_NUMBER = {1: "one", 2: "two", 3: "three", 4: "four"}

SHORT_TEMPLATES: tuple[str, ...] = (
    "{list} on a white background.",
    "{list} on plain white.",
    "A white background with {list}.",
    "{main} and {others} on a white background.",
    "{main} and {others}, on plain white.",
)
SHORT_SINGLE_TEMPLATES: tuple[str, ...] = (
    "{list} on a white background.",
    "A single {noun} on a white background.",
    "A white background with {list}.",
)
INTRO_TEMPLATES: tuple[str, ...] = (
    "A flat digital illustration of {n} simple {shapes} on a plain white background.",
    "A simple flat drawing with {n} {shapes} on a white background.",
    "{N} flat {shapes} on a plain white background.",
)
ONE_TEMPLATES: tuple[str, ...] = (
    "{Where} there is {a_noun}.",
    "{A_noun} sits {where}.",
    "There is {a_noun} {where}.",
)
MANY_TEMPLATES: tuple[str, ...] = (
    "There are {n} {nouns}, {each}.",
    "{N} {nouns} sit {all}.",
)
MISCOUNT_TEMPLATES: tuple[str, ...] = ("There are {n} {nouns} {where}.",)
RELATION_TEMPLATES: tuple[str, ...] = (
    "The {a} {is} {rel} the {b}.",
    "The {a} {sits} {rel} the {b}.",
)
ENDINGS: tuple[str, ...] = ("There is no text.", "No text is visible.", "")


def region_phrase(region: str, rng: random.Random) -> str:
    """Where an object is, in words a person would use ("at the top left", "in the middle")."""
    if region == "center":
        return rng.choice(("in the center", "in the middle"))
    if region in ("left", "right"):
        return f"on the {region}"
    if region in ("top", "bottom"):
        return f"at the {region}"
    return rng.choice((f"at the {region}", f"in the {region} corner"))


def _relation_phrase(rel: str, rng: random.Random) -> str:
    return rng.choice(RELATION_PHRASES[rel])


def _noun(g: _Seen, words: Mapping[str, str] | None = None) -> str:
    word = (words or {}).get(g.shape, g.shape)
    return f"{g.color} {word if g.count == 1 else plural(word)}"


@dataclass(frozen=True)
class HumanCaption:
    """A caption by the simulated annotator: ``kind`` human_short or human_long, the mistakes it
    made (kind and detail, empty when faithful) and the templates used."""

    kind: str
    text: str
    mistakes: tuple[dict[str, str], ...] = ()
    templates: tuple[str, ...] = ()

    def provenance(self) -> dict[str, Any]:
        return {"annotator": "simulated", "mistakes": list(self.mistakes), "templates": list(self.templates)}


@dataclass(frozen=True)
class SimulatedAnnotator:
    """Writes short and long captions from the ground truth in the guidelines' style.

    Variation: synonyms (disc for circle), several templates per sentence, random order of
    objects and relations, relations stated either way round. With probability ``mistake_rate``
    a caption carries one mistake — a wrong colour, shape or count, and in a long caption also a
    flipped relation or a left-out object — always in something the caption states, recorded in
    :attr:`HumanCaption.mistakes`.
    """

    mistake_rate: float = MISTAKE_RATE

    def short(self, scene: Scene, rng: random.Random) -> HumanCaption:
        """One sentence naming the main subject (all objects when there are one or two groups)."""
        view = _view(scene)
        groups = view.groups
        template = rng.choice(SHORT_TEMPLATES[:3] if len(groups) <= 2 else SHORT_TEMPLATES)
        main = max(range(len(groups)), key=lambda i: groups[i].count)
        if rng.random() < self.mistake_rate:  # no positions in a short caption; only what it names
            _mistake(view, rng.choice(ERROR_KINDS[:3]), rng, main if "{main}" in template else None)
        if len(groups) == 1 and groups[0].count == 1:  # after the mistake: "a single" must stay true
            template = rng.choice(SHORT_SINGLE_TEMPLATES)
        words = {s: rng.choice(w) for s, w in SHAPE_WORDS.items()}
        phrases = [group_phrase(g.count, g.color, words.get(g.shape, g.shape)) for g in groups]
        others = sum(g.count for g in groups) - groups[main].count
        text = template.format(
            list=join_phrases(phrases),
            noun=_noun(groups[0], words),
            main=phrases[main],
            others=f"{_NUMBER.get(others, str(others))} other shape{'s' if others > 1 else ''}",
        )
        return HumanCaption("human_short", _sentence(text), tuple(view.mistakes), (template,))

    def long(self, scene: Scene, rng: random.Random) -> HumanCaption:
        """Every object with colour, count and position, then every clear relation."""
        view = _view(scene)
        if rng.random() < self.mistake_rate:
            _mistake(view, rng.choice(ERROR_KINDS), rng)
        words = {s: rng.choice(w) for s, w in SHAPE_WORDS.items()}
        used: list[str] = []

        def pick(templates: Sequence[str]) -> str:
            t = rng.choice(templates)
            used.append(t)
            return t

        n = sum(g.count for g in view.groups)
        intro = pick(INTRO_TEMPLATES)
        shapes = "shape" if n == 1 else "shapes"
        sentences = [intro.format(n=_NUMBER[n] if n > 1 else "one", N=_NUMBER[n].capitalize(), shapes=shapes)]
        for g in rng.sample(view.groups, len(view.groups)):
            noun = _noun(g, words)
            wheres = [region_phrase(r, rng) for r in g.regions]
            if g.count != len(g.regions):  # a miscount: the count written, the first place seen
                text = pick(MISCOUNT_TEMPLATES if g.count > 1 else ONE_TEMPLATES)
            elif g.count == 1:
                text = pick(ONE_TEMPLATES)
            else:
                text = pick(MANY_TEMPLATES)
            sentences.append(
                _sentence(
                    text.format(
                        n=_NUMBER[g.count],
                        N=_NUMBER[g.count].capitalize(),
                        nouns=noun,
                        where=wheres[0],
                        Where=_sentence(wheres[0]),
                        a_noun=f"a {noun}",
                        A_noun=f"A {noun}",
                        each=join_phrases([f"one {w}" for w in wheres]),
                        all=join_phrases(wheres),
                    )  # fmt: skip
                )
            )
        for a, rel, b in rng.sample(view.relations, len(view.relations)):
            if rng.random() < 0.5:
                a, rel, b = b, OPPOSITE[rel], a
            ga, gb = view.groups[a], view.groups[b]
            template = pick(RELATION_TEMPLATES)
            sentences.append(
                template.format(
                    a=_noun(ga, words),
                    b=_noun(gb, words),
                    rel=_relation_phrase(rel, rng),
                    **{"is": "is" if ga.count == 1 else "are", "sits": "sits" if ga.count == 1 else "sit"},
                )  # fmt: skip
            )
        ending = pick(ENDINGS)
        if ending:
            sentences.append(ending)
        return HumanCaption("human_long", " ".join(sentences), tuple(view.mistakes), tuple(used))


def all_templates() -> dict[str, tuple[str, ...]]:
    """Every template the annotator writes with, by part (for the test that the extractor reads them)."""
    return {
        "short": SHORT_TEMPLATES,
        "short_single": SHORT_SINGLE_TEMPLATES,
        "intro": INTRO_TEMPLATES,
        "one": ONE_TEMPLATES,
        "many": MANY_TEMPLATES,
        "miscount": MISCOUNT_TEMPLATES,
        "relation": RELATION_TEMPLATES,
        "ending": ENDINGS,
    }
