"""Structured prompts: the objects, counts, colours and spatial relations a prompt asks for.

One type serves every source (GenEval's metadata, captions parsed by the extractor, our own
JSONL sets) so the metrics never need to know where a prompt came from. Relations are the four
GenEval can check from box centres; ``next to``-style phrases carry no direction and are kept
only in the extractor's report.

Counts follow GenEval's convention: ``ObjectSpec.count`` is a lower bound ("at least n"), and a
prompt that means *exactly* n adds an ``exclude`` entry of the same class with ``n + 1`` (GenEval
writes "a photo of two clocks" as include clock×2, exclude clock×3). :func:`stated_counts` reads
that idiom back; the counting error (CA) is computed on those stated counts only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
OPPOSITE: dict[str, str] = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


class PromptFormatError(ValueError):
    """A structured prompt that cannot be read; the message says which field is wrong and where."""


def normalize_class(name: str) -> str:
    """Class names compare case- and space-insensitively ("Teddy  Bear" == "teddy bear")."""
    return " ".join(str(name).lower().split())


@dataclass(frozen=True)
class ObjectSpec:
    """``count`` objects of class ``cls`` (at least; see the module docstring), optionally of a colour."""

    cls: str
    count: int = 1
    color: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.cls, str) or not self.cls.strip():
            raise PromptFormatError(f"object class must be a non-empty string, got {self.cls!r}")
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise PromptFormatError(f"object count must be a whole number >= 1, got {self.count!r}")
        if self.color is not None and (not isinstance(self.color, str) or not self.color.strip()):
            raise PromptFormatError(f"object color must be a non-empty string or absent, got {self.color!r}")
        object.__setattr__(self, "cls", normalize_class(self.cls))
        if self.color is not None:
            object.__setattr__(self, "color", normalize_class(self.color))

    def describe(self) -> str:
        words = " ".join(w for w in (self.color, self.cls) if w)
        return words if self.count == 1 else f"{self.count}x {words}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"class": self.cls, "count": self.count}
        if self.color is not None:
            out["color"] = self.color
        return out

    @classmethod
    def from_json(cls, data: Any) -> ObjectSpec:
        if not isinstance(data, dict):
            raise PromptFormatError(f"an object must be a JSON object, got {data!r}")
        name = data.get("class", data.get("cls"))
        if name is None:
            raise PromptFormatError(f"object {data!r} has no 'class'")
        return cls(name, data.get("count", 1), data.get("color"))


@dataclass(frozen=True)
class Relation:
    """``objects[subject]`` is ``relation`` ``objects[object]`` (e.g. 1 "right of" 0)."""

    subject: int
    relation: str
    object: int

    def __post_init__(self) -> None:
        if self.relation not in RELATIONS:
            raise PromptFormatError(f"relation must be one of {', '.join(RELATIONS)}; got {self.relation!r}")
        for name in ("subject", "object"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise PromptFormatError(f"relation {name} must be an object index >= 0, got {value!r}")
        if self.subject == self.object:
            raise PromptFormatError(f"a relation needs two different objects, got {self.subject} twice")

    def to_json(self) -> dict[str, Any]:
        return {"subject": self.subject, "relation": self.relation, "object": self.object}

    @classmethod
    def from_json(cls, data: Any) -> Relation:
        if not isinstance(data, dict) or not {"subject", "relation", "object"} <= set(data):
            raise PromptFormatError(f"a relation needs 'subject', 'relation' and 'object', got {data!r}")
        return cls(data["subject"], data["relation"], data["object"])


@dataclass(frozen=True)
class StructuredPrompt:
    """A prompt and what it asks for.

    ``key`` is a stable id (file name and line, or COCO image and caption ids) so results can be
    joined back; ``file`` optionally names the image made from this prompt (``eval --images``).
    """

    prompt: str
    objects: tuple[ObjectSpec, ...]
    relations: tuple[Relation, ...] = ()
    exclude: tuple[ObjectSpec, ...] = ()
    tag: str | None = None
    source: str = ""
    key: str = ""
    file: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise PromptFormatError("a structured prompt needs a non-empty 'prompt' text")
        object.__setattr__(self, "objects", tuple(self.objects))
        object.__setattr__(self, "relations", tuple(self.relations))
        object.__setattr__(self, "exclude", tuple(self.exclude))
        for rel in self.relations:
            for idx in (rel.subject, rel.object):
                if idx >= len(self.objects):
                    raise PromptFormatError(
                        f"relation {rel.relation!r} points at object {idx}, but the prompt has "
                        f"{len(self.objects)} object(s)"
                    )

    def describe_relation(self, rel: Relation) -> str:
        return f"{self.objects[rel.subject].describe()} {rel.relation} {self.objects[rel.object].describe()}"

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict; :meth:`from_json` gives the same prompt back."""
        out: dict[str, Any] = {"prompt": self.prompt, "objects": [o.to_json() for o in self.objects]}
        if self.relations:
            out["relations"] = [r.to_json() for r in self.relations]
        if self.exclude:
            out["exclude"] = [o.to_json() for o in self.exclude]
        if self.tag is not None:
            out["tag"] = self.tag
        if self.source:
            out["source"] = self.source
        if self.key:
            out["key"] = self.key
        if self.file is not None:
            out["file"] = self.file
        return out

    def to_json_line(self) -> str:
        return json.dumps(self.to_json(), ensure_ascii=False)

    @classmethod
    def from_json(cls, data: Any) -> StructuredPrompt:
        if not isinstance(data, dict):
            raise PromptFormatError(f"a structured prompt must be a JSON object, got {type(data).__name__}")
        if "objects" not in data:
            raise PromptFormatError("a structured prompt needs an 'objects' list (it may be empty)")
        for name in ("objects", "relations", "exclude"):
            if not isinstance(data.get(name, []), list):
                raise PromptFormatError(f"'{name}' must be a list, got {data[name]!r}")
        tag, file = data.get("tag"), data.get("file")
        if tag is not None and not isinstance(tag, str):
            raise PromptFormatError(f"'tag' must be a string, got {tag!r}")
        if file is not None and (not isinstance(file, str) or not file.strip()):
            raise PromptFormatError(f"'file' must be a non-empty string, got {file!r}")
        return cls(
            prompt=data.get("prompt", ""),
            objects=tuple(ObjectSpec.from_json(o) for o in data["objects"]),
            relations=tuple(Relation.from_json(r) for r in data.get("relations", [])),
            exclude=tuple(ObjectSpec.from_json(o) for o in data.get("exclude", [])),
            tag=tag,
            source=str(data.get("source", "")),
            key=str(data.get("key", "")),
            file=file,
        )


def exact_counts(objects: tuple[ObjectSpec, ...] | list[ObjectSpec]) -> tuple[ObjectSpec, ...]:
    """The ``exclude`` entries that make these objects' counts exact (GenEval's idiom).

    One entry per (class, colour) group: its asked total plus one.
    """
    totals: dict[tuple[str, str | None], int] = {}
    for o in objects:
        totals[(o.cls, o.color)] = totals.get((o.cls, o.color), 0) + o.count
    return tuple(ObjectSpec(c, n + 1, color) for (c, color), n in totals.items())


def stated_counts(prompt: StructuredPrompt) -> dict[tuple[str, str | None], int]:
    """(class, colour) → count, for the groups whose count the prompt states exactly.

    A group is stated when an ``exclude`` entry of the same class (and the same colour, or no
    colour for a class-wide bound) forbids exactly one more than the prompt asks for.
    """
    out: dict[tuple[str, str | None], int] = {}
    for ex in prompt.exclude:
        asked = sum(
            o.count for o in prompt.objects if o.cls == ex.cls and (ex.color is None or o.color == ex.color)
        )
        if asked and ex.count == asked + 1:
            out[(ex.cls, ex.color)] = asked
    return out
