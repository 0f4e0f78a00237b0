"""Matching a prompt's class words to a detector's label names.

Why a module of its own: a prompt says "two dogs" or "a motorbike", a COCO detector's labels say
"dog" and "motorcycle", GenEval's metadata says "dining table" where some checkpoints say
"diningtable". Scores are only right if these meet. Every detector returns detections named by
the *query string as the caller gave it*, so the metrics compare plain strings; this module
decides which label a query means: exact after normalising case, separators and articles, then
a singular form, then a small alias table (COCO's usual synonyms).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

#: synonyms seen in prompts and in COCO-style label sets: alias -> canonical label
ALIASES: Mapping[str, str] = {
    "motorbike": "motorcycle",
    "aeroplane": "airplane",
    "plane": "airplane",
    "bike": "bicycle",
    "tvmonitor": "tv",
    "tv monitor": "tv",
    "television": "tv",
    "monitor": "tv",
    "sofa": "couch",
    "diningtable": "dining table",
    "table": "dining table",
    "pottedplant": "potted plant",
    "houseplant": "potted plant",
    "cellphone": "cell phone",
    "phone": "cell phone",
    "mobile phone": "cell phone",
    "hand bag": "handbag",
    "ball": "sports ball",
    "doughnut": "donut",
    "hotdog": "hot dog",
    "man": "person",
    "woman": "person",
    "people": "person",
    "men": "person",
    "women": "person",
    "child": "person",
    "children": "person",
    "kid": "person",
    "boy": "person",
    "girl": "person",
    "laptop computer": "laptop",
    "computer mouse": "mouse",
    "fire-hydrant": "fire hydrant",
    "hair dryer": "hair drier",
    "hairdryer": "hair drier",
    "ski": "skis",
    "glass": "wine glass",
}

_IRREGULAR_PLURALS = {
    "mice": "mouse",
    "knives": "knife",
    "people": "person",
    "men": "man",
    "women": "woman",
    "children": "child",
    "geese": "goose",
    "teeth": "tooth",
    "feet": "foot",
    "leaves": "leaf",
    "sheep": "sheep",
    "skis": "skis",
    "scissors": "scissors",
    "glasses": "glass",
}
_ARTICLES = re.compile(r"^(a|an|the|some|one)\s+")


def normalize(label: str) -> str:
    """Lower case, ``_``/``-`` as spaces, single spaces, no leading article."""
    text = re.sub(r"[_\-]+", " ", label.strip().lower())
    text = re.sub(r"\s+", " ", text)
    return _ARTICLES.sub("", text)


def singulars(phrase: str) -> list[str]:
    """Singular candidates of a noun phrase's last word (rule-based, so more than one: "buses"
    gives "buse" and "bus", "houses" gives "house" and "hous"; matching keeps whichever is a label)."""
    head, _, last = phrase.rpartition(" ")
    if last in _IRREGULAR_PLURALS:
        ones = [_IRREGULAR_PLURALS[last]]
    elif last.endswith("ies") and len(last) > 4:
        ones = [last[:-3] + "y"]
    elif last.endswith("es"):
        ones = [last[:-1], last[:-2]]
    elif last.endswith("s") and not last.endswith(("ss", "us", "is")):
        ones = [last[:-1]]
    else:
        ones = [last]
    return [f"{head} {one}" if head else one for one in ones]


def forms(label: str) -> list[str]:
    """The spellings a label or query can be matched under, most specific first."""
    base = normalize(label)
    out = [base, *singulars(base)]
    out += [f.replace(" ", "") for f in out]
    out += [ALIASES[f] for f in out if f in ALIASES]
    return list(dict.fromkeys(out))


def label_index(labels: Iterable[str]) -> dict[str, str]:
    """Every matching form of each label -> the label (first label wins a shared form)."""
    index: dict[str, str] = {}
    for label in labels:
        for f in forms(label):
            index.setdefault(f, label)
    return index


def match(query: str, index: Mapping[str, str]) -> str | None:
    """The detector label ``query`` means, or None when the detector cannot see that class."""
    for f in forms(query):
        if f in index:
            return index[f]
    return None
