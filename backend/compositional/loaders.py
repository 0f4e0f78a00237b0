"""Structured prompt sets from files: GenEval metadata, COCO captions, our own JSONL, plain prompt lists.

Published sets (GenEval's metadata, COCO's captions) are read from a path the user gives and
never shipped; only sets we wrote ourselves live in ``assets/prompts/`` (:func:`builtin_sets`).
Every prompt gets a stable ``key`` (file name and line, or COCO image and caption ids) so
scores can be joined back to the prompt they came from.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.compositional.extract import Extractor
from backend.compositional.prompts import ObjectSpec, PromptFormatError, Relation, StructuredPrompt
from backend.compositional.vocabulary import Vocabulary

BUILTIN_DIR = Path(__file__).resolve().parents[2] / "assets" / "prompts"
LAYOUTS = ("structured", "geneval", "coco", "extracted")


@dataclass
class StructuredSet:
    """A loaded prompt set: ``layout`` is one of :data:`LAYOUTS` (``extracted``: a plain prompt
    list read with the caption extractor)."""

    name: str
    layout: str
    prompts: list[StructuredPrompt]
    path: Path | None = None

    def __len__(self) -> int:
        return len(self.prompts)

    def __iter__(self) -> Iterator[StructuredPrompt]:
        return iter(self.prompts)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise PromptFormatError(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise PromptFormatError(f"{path}: is a folder, not a prompt file") from exc
    except UnicodeDecodeError as exc:
        raise PromptFormatError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise PromptFormatError(f"{path}: cannot be read ({exc.strerror or exc})") from exc


def _json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """(1-based line, parsed object) for each non-blank line of a JSONL file."""
    for lineno, line in enumerate(_read(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as exc:
            raise PromptFormatError(
                f"{path}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno})"
            ) from exc


def _unique_keys(path: Path, prompts: list[StructuredPrompt]) -> list[StructuredPrompt]:
    seen: dict[str, int] = {}
    for i, p in enumerate(prompts):
        if p.key in seen:
            raise PromptFormatError(
                f"{path}: key {p.key!r} is used twice (prompts {seen[p.key] + 1} and {i + 1}); keys must be unique"
            )
        seen[p.key] = i
    return prompts


def load_geneval(path: str | Path) -> list[StructuredPrompt]:
    """GenEval's ``evaluation_metadata.jsonl``: ``tag``, ``include`` [{class, count, color?,
    position?: [relation, index]}], optional ``exclude`` [{class, count}], ``prompt``.

    ``position: ["right of", 0]`` on include item 1 becomes ``Relation(1, "right of", 0)``.
    """
    p = Path(path)
    prompts: list[StructuredPrompt] = []
    for lineno, row in _json_lines(p):
        where = f"{p}:{lineno}"
        try:
            if not isinstance(row, dict) or not isinstance(row.get("include"), list):
                raise PromptFormatError("a GenEval line needs an 'include' list")
            objects: list[ObjectSpec] = []
            relations: list[Relation] = []
            for i, item in enumerate(row["include"]):
                objects.append(ObjectSpec.from_json(item))
                position = item.get("position")
                if position is not None:
                    if not (isinstance(position, list) and len(position) == 2):
                        raise PromptFormatError(
                            f"include {i}: 'position' must be [relation, index], got {position!r}"
                        )
                    relations.append(Relation(i, position[0], position[1]))
            exclude = row.get("exclude", [])
            if not isinstance(exclude, list):
                raise PromptFormatError(f"'exclude' must be a list, got {exclude!r}")
            prompts.append(
                StructuredPrompt(
                    prompt=row.get("prompt", ""),
                    objects=tuple(objects),
                    relations=tuple(relations),
                    exclude=tuple(ObjectSpec.from_json(e) for e in exclude),
                    tag=row.get("tag"),
                    source="geneval",
                    key=f"{p.name}:{lineno}",
                )
            )
        except PromptFormatError as exc:
            raise PromptFormatError(f"{where}: {exc}") from exc
    if not prompts:
        raise PromptFormatError(f"{p}: no prompts in the file")
    return prompts


def load_coco_captions(
    path: str | Path, extractor: Extractor | None = None, *, vocabulary: Vocabulary | None = None
) -> list[StructuredPrompt]:
    """COCO's ``captions_*.json`` (``images`` with id/file_name, ``annotations`` with
    image_id/id/caption): one prompt per caption, in file order, read with ``extractor``.

    ``key`` is ``coco:<image id>:<caption id>`` and ``file`` the image's ``file_name``, so the
    real images can be scored against their own captions (RECAP's "real images" row).
    """
    p = Path(path)
    try:
        data = json.loads(_read(p))
    except json.JSONDecodeError as exc:
        raise PromptFormatError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise PromptFormatError(f"{p}: a COCO captions file is a JSON object with an 'annotations' list")
    images = data.get("images", [])
    if not isinstance(images, list):
        raise PromptFormatError(f"{p}: 'images' must be a list")
    files: dict[Any, str | None] = {}
    for i, img in enumerate(images):
        if not isinstance(img, dict) or "id" not in img:
            raise PromptFormatError(f"{p}: images[{i}] has no 'id'")
        files[img["id"]] = img.get("file_name")
    reader = extractor or Extractor(vocabulary)
    prompts: list[StructuredPrompt] = []
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or not {"image_id", "caption"} <= set(ann):
            raise PromptFormatError(f"{p}: annotations[{i}] needs 'image_id' and 'caption'")
        caption = ann["caption"]
        if not isinstance(caption, str) or not caption.strip():
            raise PromptFormatError(f"{p}: annotations[{i}] has an empty caption")
        if images and ann["image_id"] not in files:
            raise PromptFormatError(
                f"{p}: annotations[{i}] names image {ann['image_id']!r}, which is not in 'images'"
            )
        prompt = reader.extract(caption, key=f"coco:{ann['image_id']}:{ann.get('id', i)}", source="coco")
        file = files.get(ann["image_id"])
        prompts.append(prompt if file is None else _with_file(prompt, file))
    if not prompts:
        raise PromptFormatError(f"{p}: no captions in the file")
    return _unique_keys(p, prompts)


def _with_file(prompt: StructuredPrompt, file: str) -> StructuredPrompt:
    data = prompt.to_json()
    data["file"] = file
    return StructuredPrompt.from_json(data)


def load_structured_jsonl(path: str | Path) -> list[StructuredPrompt]:
    """Our own layout: one :meth:`StructuredPrompt.to_json` object a line, optionally with a
    ``file`` field naming the image made from it (``eval --images``). A line without ``key``
    gets ``<file name>:<line>``."""
    p = Path(path)
    prompts: list[StructuredPrompt] = []
    for lineno, row in _json_lines(p):
        try:
            prompt = StructuredPrompt.from_json(row)
        except PromptFormatError as exc:
            raise PromptFormatError(f"{p}:{lineno}: {exc}") from exc
        if not prompt.key:
            data = prompt.to_json()
            data["key"] = f"{p.name}:{lineno}"
            prompt = StructuredPrompt.from_json(data)
        prompts.append(prompt)
    if not prompts:
        raise PromptFormatError(f"{p}: no prompts in the file")
    return _unique_keys(p, prompts)


def builtin_sets() -> dict[str, Path]:
    """Structured sets we ship (``assets/prompts/*.jsonl``), by name."""
    if not BUILTIN_DIR.is_dir():
        return {}
    return {f.stem: f for f in sorted(BUILTIN_DIR.glob("*.jsonl")) if f.is_file()}


def sniff_layout(path: Path) -> str:
    """Which layout a file is in, from its suffix and first record."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "coco"
    if suffix == ".jsonl":
        for _lineno, row in _json_lines(path):
            if isinstance(row, dict) and "include" in row:
                return "geneval"
            if isinstance(row, dict) and "objects" in row:
                return "structured"
            raise PromptFormatError(
                f"{path}: the first line has neither 'objects' (structured layout) nor 'include' (GenEval layout)"
            )
        raise PromptFormatError(f"{path}: no prompts in the file")
    if suffix in (".txt", ".csv", ".tsv"):
        return "extracted"
    raise PromptFormatError(
        f"{path}: unknown prompt file type {suffix or '(none)'!r}; use .jsonl (structured or GenEval), "
        ".json (COCO captions) or .txt/.csv/.tsv (plain prompts, read with the extractor)"
    )


def load_any(source: str | Path, *, vocabulary: Vocabulary | None = None) -> StructuredSet:
    """A built-in set by name (``demo_world``) or a file in any supported layout.

    Plain prompt lists (``.txt``, ``.csv``, ``.tsv``: PartiPrompts, DrawBench, one prompt a line)
    are read with :mod:`backend.prompt_sets` and then through the caption extractor, so their
    objects, counts and relations are whatever :func:`~backend.compositional.extract.explain` finds.
    """
    builtin = builtin_sets()
    if isinstance(source, str) and source in builtin:
        return StructuredSet(source, "structured", load_structured_jsonl(builtin[source]), builtin[source])
    path = Path(source)
    if not path.exists():
        known = ", ".join(builtin) or "none"
        raise PromptFormatError(
            f"{source}: no such file, and not a built-in structured set (built-in: {known})"
        )
    layout = sniff_layout(path)
    if layout == "geneval":
        prompts = load_geneval(path)
    elif layout == "structured":
        prompts = load_structured_jsonl(path)
    elif layout == "coco":
        prompts = load_coco_captions(path, vocabulary=vocabulary)
    else:
        from backend.prompt_sets import PromptSetError, load_prompt_set

        try:
            plain = load_prompt_set(path)
        except PromptSetError as exc:
            raise PromptFormatError(str(exc)) from exc
        reader = Extractor(vocabulary)
        prompts = [
            reader.extract(
                p.text, key=f"{path.name}:{p.line}", source=f"extracted:{plain.layout}", tag=p.category
            )
            for p in plain.prompts
        ]
        if not prompts:
            raise PromptFormatError(f"{path}: no prompts in the file")
    return StructuredSet(path.stem, layout, prompts, path)
