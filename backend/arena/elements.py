"""The required elements of a prompt, offered to a verdict campaign's annotators as "missing" ticks.

Why ticks at all: "not faithful" alone says that an image failed, not *what* failed; RECAP's
claim is that detailed captions teach a model to render every object, count and relation a
prompt asks for, so which element went missing is the interesting part. The ticks come from
the prompt's structure, never typed by the annotator, so they can be counted across systems.

Where elements come from, first match wins:

1. a file given when the campaign is made (:func:`load_elements`), JSON Lines, one prompt a
   line, either ``{"prompt": "...", "elements": ["a red cube", ...]}`` (a plain list, for prompt
   sets without structure) or a structured prompt — our own layout,
   :meth:`backend.compositional.prompts.StructuredPrompt.to_json` (``objects``, ``relations``) —
   or GenEval's metadata layout (``include``), read through ``backend.compositional.loaders``;
2. the generated image's own record (``Image.meta["generated"]``): a ``structured`` prompt (the
   same JSON) or an ``elements`` list — the hook for a generate job that keeps the structure of
   the prompt set it drew from.

A prompt without any gets no ticks: the verdict is still asked.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from backend.arena.common import ArenaError, RowErrors
from backend.compositional.prompts import PromptFormatError, StructuredPrompt

MAX_ELEMENTS = 24  # ticks on one image: beyond this the list is no longer read, only scrolled
MAX_ELEMENT_CHARS = 200


def elements_of(prompt: StructuredPrompt) -> list[str]:
    """One element per asked object group ("2x red cube") and per spatial relation.

    Exclusions are not elements (they say what must *not* be there; GenEval's exact-count idiom
    is already in the object's count).
    """
    out = [o.describe() for o in prompt.objects]
    out += [prompt.describe_relation(r) for r in prompt.relations]
    return clean_elements(out, f"prompt {prompt.prompt!r}")


def clean_elements(values: Iterable[Any], where: str) -> list[str]:
    """Stripped, distinct, non-empty element texts in their order; too many or too long is an error."""
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise ArenaError(f"{where}: elements must be a list of texts, not {type(values).__name__}")
    out: list[str] = []
    for value in values:
        if not isinstance(value, str):
            raise ArenaError(f"{where}: element {value!r} is not a text")
        text = " ".join(value.split())
        if len(text) > MAX_ELEMENT_CHARS:
            raise ArenaError(f"{where}: element {text[:40]!r}… is longer than {MAX_ELEMENT_CHARS} characters")
        if text and text not in out:
            out.append(text)
    if len(out) > MAX_ELEMENTS:
        raise ArenaError(f"{where}: {len(out)} elements; at most {MAX_ELEMENTS} can be offered as ticks")
    return out


def elements_from_record(data: Mapping[str, Any], where: str) -> list[str] | None:
    """Elements from one JSON object: a plain ``elements`` list or a structured prompt; None if neither."""
    if "elements" in data:
        return clean_elements(data["elements"], where)
    if "objects" in data:
        try:
            return elements_of(StructuredPrompt.from_json(dict(data)))
        except PromptFormatError as exc:
            raise ArenaError(f"{where}: {exc}") from None
    return None


def _geneval(path: Path) -> list[StructuredPrompt]:
    """GenEval's metadata layout, through the compositional loaders (the one reader of that format)."""
    from backend.compositional.loaders import load_geneval  # on use: most campaigns need no GenEval

    try:
        return list(load_geneval(path))
    except (ValueError, OSError) as exc:
        raise ArenaError(f"{path.name}: {exc}") from None


def load_elements(path: Path | str) -> dict[str, list[str]]:
    """prompt text -> its required elements, from a JSON Lines file (see the module docstring).

    Every line is checked before anything is used: a bad line, or one prompt given two different
    element lists, refuses the file with every bad line number.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except OSError as exc:
        raise ArenaError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ArenaError(f"{path.name} is not UTF-8 text") from None
    records: list[tuple[int, dict[str, Any]]] = []
    errors: list[str] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(f"line {n}: not JSON ({exc.msg})")
            continue
        if not isinstance(data, dict):
            errors.append(f"line {n}: expected a JSON object, got {type(data).__name__}")
            continue
        records.append((n, data))
    if not records and not errors:
        raise ArenaError(f"{path.name} holds no prompt")
    if not errors and any("include" in data for _, data in records):
        return {p.prompt.strip(): elements_of(p) for p in _geneval(path)}
    out: dict[str, list[str]] = {}
    first_line: dict[str, int] = {}
    for n, data in records:
        prompt = data.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            errors.append(f"line {n}: no 'prompt' text")
            continue
        try:
            elements = elements_from_record(data, f"line {n}")
        except ArenaError as exc:
            errors.append(str(exc))
            continue
        if elements is None:
            errors.append(f"line {n}: give 'elements' (a list of texts) or a structured prompt ('objects')")
            continue
        key = prompt.strip()
        if key in out and out[key] != elements:
            errors.append(f"line {n}: prompt {key[:60]!r} was given other elements on line {first_line[key]}")
            continue
        out[key] = elements
        first_line.setdefault(key, n)
    if errors:  # every bad line at once, in file order
        raise RowErrors(path.name, sorted(errors, key=lambda e: int(e.split(":")[0].split()[1])))
    return out
