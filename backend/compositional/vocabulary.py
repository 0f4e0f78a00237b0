"""The words the caption extractor knows: object classes (with plurals and synonyms), numbers,
colours and spatial phrases.

The default is the 80 MS-COCO detection classes, named as COCO-trained detectors name them
("dining table", "tv", "cell phone"), because SOA, TISE and GenEval all score against those
detectors: a caption word only counts if a detector could confirm it. Synonyms follow the way SOA
chose its per-class caption lists (a caption about "a man" is a caption about a person; "sofa" is
"couch"). The lists are ours, written for readability; a user extends them with
:meth:`Vocabulary.with_classes` or a JSON file (:meth:`Vocabulary.from_json`), e.g. to add "tree"
for an open-vocabulary detector.

Each surface form is marked singular or plural so the extractor can tell "a cat" (one) from
"cats" (several, number unstated). Nouns that are plural in form but name one thing ("scissors",
"skis") are listed as singular.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.compositional.prompts import RELATIONS, PromptFormatError, normalize_class

# canonical class: (singular forms, plural forms); the canonical name is always a singular form
_COCO: dict[str, tuple[str, str]] = {
    "person": (
        "person|man|woman|boy|girl|child|kid|baby|guy|lady|gentleman|player|skier|surfer|skateboarder"
        "|snowboarder|rider|people",  # "people" counts as a group noun below
        "persons|men|women|boys|girls|children|kids|babies|guys|ladies|gentlemen|players|skiers|surfers"
        "|skateboarders|snowboarders|riders",
    ),
    "bicycle": ("bicycle|bike|cycle", "bicycles|bikes|cycles"),
    "car": ("car|automobile|sedan|taxi|cab", "cars|automobiles|sedans|taxis|cabs"),
    "motorcycle": ("motorcycle|motorbike|scooter|moped", "motorcycles|motorbikes|scooters|mopeds"),
    "airplane": (
        "airplane|aeroplane|plane|jet|airliner|aircraft",
        "airplanes|aeroplanes|planes|jets|airliners",
    ),
    "bus": ("bus", "buses|busses"),
    "train": ("train|locomotive", "trains|locomotives"),
    "truck": ("truck|lorry|pickup truck", "trucks|lorries|pickup trucks"),
    "boat": ("boat|ship|sailboat|canoe|kayak|yacht", "boats|ships|sailboats|canoes|kayaks|yachts"),
    "traffic light": (
        "traffic light|stop light|stoplight|traffic signal",
        "traffic lights|stop lights|stoplights|traffic signals",
    ),
    "fire hydrant": ("fire hydrant|hydrant", "fire hydrants|hydrants"),
    "stop sign": ("stop sign", "stop signs"),
    "parking meter": ("parking meter", "parking meters"),
    "bench": ("bench", "benches"),
    "bird": ("bird|pigeon|seagull|gull|duck|parrot", "birds|pigeons|seagulls|gulls|ducks|parrots"),
    "cat": ("cat|kitten|kitty", "cats|kittens|kitties"),
    "dog": ("dog|puppy|pup", "dogs|puppies|pups"),
    "horse": ("horse|pony", "horses|ponies"),
    "sheep": ("sheep|lamb", "lambs"),
    "cow": ("cow|bull|calf", "cows|bulls|calves|cattle"),
    "elephant": ("elephant", "elephants"),
    "bear": ("bear", "bears"),
    "zebra": ("zebra", "zebras"),
    "giraffe": ("giraffe", "giraffes"),
    "backpack": ("backpack|rucksack", "backpacks|rucksacks"),
    "umbrella": ("umbrella|parasol", "umbrellas|parasols"),
    "handbag": ("handbag|purse", "handbags|purses"),
    "tie": ("tie|necktie", "ties|neckties"),
    "suitcase": ("suitcase", "suitcases"),
    "frisbee": ("frisbee", "frisbees"),
    "skis": ("skis|ski", ""),
    "snowboard": ("snowboard", "snowboards"),
    "sports ball": (
        "sports ball|ball|soccer ball|tennis ball|football|basketball|volleyball",
        "balls|soccer balls|tennis balls|footballs|basketballs|volleyballs",
    ),
    "kite": ("kite", "kites"),
    "baseball bat": ("baseball bat|bat", "baseball bats|bats"),
    "baseball glove": ("baseball glove|baseball mitt|mitt", "baseball gloves|baseball mitts|mitts"),
    "skateboard": ("skateboard", "skateboards"),
    "surfboard": ("surfboard|surf board", "surfboards|surf boards"),
    "tennis racket": ("tennis racket|racket|racquet|tennis racquet", "tennis rackets|rackets|racquets"),
    "bottle": ("bottle", "bottles"),
    "wine glass": ("wine glass|wineglass", "wine glasses|wineglasses"),
    "cup": ("cup|mug", "cups|mugs"),
    "fork": ("fork", "forks"),
    "knife": ("knife", "knives"),
    "spoon": ("spoon", "spoons"),
    "bowl": ("bowl", "bowls"),
    "banana": ("banana", "bananas"),
    "apple": ("apple", "apples"),
    "sandwich": ("sandwich|burger|hamburger|sub", "sandwiches|burgers|hamburgers|subs"),
    "orange": ("orange", "oranges"),
    "broccoli": ("broccoli", ""),
    "carrot": ("carrot", "carrots"),
    "hot dog": ("hot dog|hotdog", "hot dogs|hotdogs"),
    "pizza": ("pizza", "pizzas"),
    "donut": ("donut|doughnut", "donuts|doughnuts"),
    "cake": ("cake|cupcake", "cakes|cupcakes"),
    "chair": ("chair|stool", "chairs|stools"),
    "couch": ("couch|sofa|loveseat", "couches|sofas|loveseats"),
    "potted plant": ("potted plant|houseplant|plant", "potted plants|houseplants|plants"),
    "bed": ("bed", "beds"),
    "dining table": ("dining table|table|desk", "dining tables|tables|desks"),
    "toilet": ("toilet", "toilets"),
    "tv": ("tv|television|monitor|tv set", "tvs|televisions|monitors"),
    "laptop": ("laptop|notebook computer", "laptops"),
    "mouse": ("mouse|computer mouse", "mice|computer mice"),
    "remote": ("remote|remote control|controller", "remotes|remote controls|controllers"),
    "keyboard": ("keyboard", "keyboards"),
    "cell phone": (
        "cell phone|cellphone|phone|mobile phone|smartphone",
        "cell phones|cellphones|phones|mobile phones|smartphones",
    ),
    "microwave": ("microwave", "microwaves"),
    "oven": ("oven|stove", "ovens|stoves"),
    "toaster": ("toaster", "toasters"),
    "sink": ("sink", "sinks"),
    "refrigerator": ("refrigerator|fridge", "refrigerators|fridges"),
    "book": ("book", "books"),
    "clock": ("clock", "clocks"),
    "vase": ("vase", "vases"),
    "scissors": ("scissors|scissor", ""),
    "teddy bear": ("teddy bear|teddy", "teddy bears|teddies"),
    "hair drier": ("hair drier|hair dryer|hairdryer|blow dryer", "hair driers|hair dryers|hairdryers"),
    "toothbrush": ("toothbrush", "toothbrushes"),
}
# group nouns: singular in form, several in meaning ("people" = persons, count unstated)
_GROUP_NOUNS = {"people", "cattle"}

NUMBER_WORDS: dict[str, int] = {
    "a": 1, "an": 1, "one": 1, "single": 1, "lone": 1,
    "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12,
    "a pair of": 2, "a couple of": 2, "both": 2, "twin": 2,
}  # fmt: skip
# quantity words that say "several" without a number: the object is plural, its count unstated
VAGUE_QUANTITIES: tuple[str, ...] = (
    "some", "several", "many", "various", "multiple", "numerous", "a few", "a group of", "a bunch of",
    "a herd of", "a flock of", "a pile of", "a lot of", "lots of", "a row of", "a line of", "a stack of",
)  # fmt: skip

COLOR_WORDS: dict[str, str] = {
    "red": "red", "orange": "orange", "yellow": "yellow", "green": "green", "blue": "blue",
    "purple": "purple", "violet": "purple", "pink": "pink", "brown": "brown", "black": "black",
    "white": "white", "gray": "gray", "grey": "gray",
}  # fmt: skip

# phrase → relation of the object before the phrase to the object after it; None: recognised
# (and shown) but not scored, because it names no direction a box centre could check
RELATION_PHRASES: dict[str, str | None] = {
    "left of": "left of", "to the left of": "left of", "on the left of": "left of",
    "on the left side of": "left of", "to the left side of": "left of",
    "right of": "right of", "to the right of": "right of", "on the right of": "right of",
    "on the right side of": "right of", "to the right side of": "right of",
    "above": "above", "over": "above", "on top of": "above", "atop": "above",
    "below": "below", "under": "below", "underneath": "below", "beneath": "below",
    "next to": None, "beside": None, "near": None, "close to": None, "alongside": None,
}  # fmt: skip


def _forms(spec: str) -> tuple[str, ...]:
    return tuple(normalize_class(f) for f in spec.split("|") if f.strip())


@dataclass(frozen=True)
class Vocabulary:
    """Surface forms → canonical meanings. Every field is a plain mapping so a JSON file can set it.

    ``classes`` maps a canonical class to ``(singular forms, plural forms)``. ``numbers`` maps
    number words and phrases to their value, ``vague`` lists quantity words without a number,
    ``colors`` maps colour words to canonical colours and ``relations`` maps spatial phrases to
    one of :data:`~backend.compositional.prompts.RELATIONS` (or ``None``: shown, not scored).
    """

    classes: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]]
    numbers: Mapping[str, int] = field(default_factory=lambda: dict(NUMBER_WORDS))
    vague: tuple[str, ...] = VAGUE_QUANTITIES
    colors: Mapping[str, str] = field(default_factory=lambda: dict(COLOR_WORDS))
    relations: Mapping[str, str | None] = field(default_factory=lambda: dict(RELATION_PHRASES))
    group_nouns: frozenset[str] = frozenset(_GROUP_NOUNS)

    def __post_init__(self) -> None:
        for phrase, rel in self.relations.items():
            if rel is not None and rel not in RELATIONS:
                raise PromptFormatError(
                    f"vocabulary relation {phrase!r} maps to {rel!r}; use one of {', '.join(RELATIONS)} or null"
                )
        for word, n in self.numbers.items():
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise PromptFormatError(
                    f"vocabulary number {word!r} must map to a whole number >= 1, got {n!r}"
                )
        seen: dict[str, str] = {}
        for cls, (singular, plural) in self.classes.items():
            for form in (*singular, *plural):
                if form in seen and seen[form] != cls:
                    raise PromptFormatError(f"vocabulary word {form!r} names both {seen[form]!r} and {cls!r}")
                seen[form] = cls

    @classmethod
    def from_lists(cls, classes: Mapping[str, Any], **kwargs: Any) -> Vocabulary:
        """Build from ``{class: forms}``; forms are one of

        - a list of singular forms: plurals are made by adding "s"/"es"/"ies" (enough for a
          shape world or a few extra nouns);
        - ``{"singular": [...], "plural": [...]}`` for irregular plurals;
        - ``("sing|syn", "plurals|...")``, the compact form the built-in tables use.

        The canonical name is always one of the singular forms.
        """
        table: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        for name, forms in classes.items():
            canonical = normalize_class(name)
            if isinstance(forms, tuple) and len(forms) == 2 and all(isinstance(f, str) for f in forms):
                singular, plural = _forms(forms[0]), _forms(forms[1])
            elif isinstance(forms, Mapping):
                if not set(forms) <= {"singular", "plural"}:
                    raise PromptFormatError(f"class {name!r}: forms take 'singular' and 'plural' lists only")
                singular = tuple(normalize_class(f) for f in forms.get("singular", ()))
                plural = tuple(normalize_class(f) for f in forms.get("plural", ()))
            elif isinstance(forms, Iterable) and not isinstance(forms, str):
                singular = tuple(normalize_class(f) for f in forms)
                plural = tuple(_plural(f) for f in singular)
            else:
                raise PromptFormatError(f"class {name!r}: forms must be a list of words, got {forms!r}")
            if canonical not in singular:
                singular = (canonical, *singular)
            table[canonical] = (singular, plural)
        return cls(classes=table, **kwargs)

    def with_classes(self, extra: Mapping[str, Any]) -> Vocabulary:
        """This vocabulary plus more classes (same form as :meth:`from_lists`); e.g. ``{"tree": ["tree"]}``."""
        added = Vocabulary.from_lists(extra).classes
        return Vocabulary(
            classes={**self.classes, **added},
            numbers=self.numbers,
            vague=self.vague,
            colors=self.colors,
            relations=self.relations,
            group_nouns=self.group_nouns,
        )

    @classmethod
    def from_json(cls, path: str | Path) -> Vocabulary:
        """Read ``{"extend": "coco"|"demo"|null, "classes": {...}, "numbers"?, "colors"?, "relations"?}``.

        ``classes`` takes :meth:`from_lists`' list or ``{"singular", "plural"}`` forms;
        ``"extend"`` adds them to a built-in vocabulary instead of starting empty.
        """
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PromptFormatError(f"{p}: cannot read the vocabulary file ({exc})") from exc
        if not isinstance(data, dict) or not isinstance(data.get("classes", {}), dict):
            raise PromptFormatError(f"{p}: a vocabulary file is a JSON object with a 'classes' object")
        bases: dict[Any, Vocabulary | None] = {"coco": COCO, "demo": DEMO_WORLD, None: None}
        if data.get("extend") not in bases:
            raise PromptFormatError(
                f'{p}: \'extend\' must be "coco", "demo" or absent, got {data["extend"]!r}'
            )
        base = bases[data.get("extend")]
        try:
            if base is None:
                kwargs = {k: data[k] for k in ("numbers", "colors", "relations") if k in data}
                return Vocabulary.from_lists(data.get("classes", {}), **kwargs)
            merged = base.with_classes(data.get("classes", {}))
            return Vocabulary(
                classes=merged.classes,
                numbers=data.get("numbers", merged.numbers),
                vague=merged.vague,
                colors=data.get("colors", merged.colors),
                relations=data.get("relations", merged.relations),
                group_nouns=merged.group_nouns,
            )
        except PromptFormatError as exc:
            raise PromptFormatError(f"{p}: {exc}") from exc

    def class_names(self) -> tuple[str, ...]:
        return tuple(self.classes)


def _plural(word: str) -> str:
    head, _, last = word.rpartition(" ")
    if last.endswith(("s", "x", "z", "ch", "sh")):
        last += "es"
    elif last.endswith("y") and last[-2:-1] not in "aeiou":
        last = last[:-1] + "ies"
    else:
        last += "s"
    return f"{head} {last}".strip()


COCO = Vocabulary.from_lists(_COCO)
COCO_CLASSES: tuple[str, ...] = tuple(_COCO)

# The demo world (backend/demo.py): shapes are the classes; its colour names are the colours.
DEMO_WORLD = Vocabulary.from_lists(
    {
        "circle": ["circle", "disc", "dot"],
        "square": ["square"],
        "triangle": ["triangle"],
        "star": ["star"],
        "diamond": ["diamond", "rhombus"],
    },  # fmt: skip
)
