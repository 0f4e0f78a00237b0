"""Prompt sets for generation and evaluation, loaded from a path the user gives.

Layouts detected from the header (column names matched case-insensitively):

- ``partiprompts``: PartiPrompts TSV, columns ``Prompt, Category, Challenge, Note`` (tab separated,
  no CSV quoting: a prompt may start with a ``"``). Any file with a Challenge or Note column is
  taken for this layout and must have all four columns.
- ``drawbench``: DrawBench CSV, columns ``Prompts, Category``.
- ``csv``: a user CSV (or TSV) with columns ``prompt`` and optionally ``category``.
- ``txt``: a ``.txt`` file, one prompt per line; blank lines and lines starting with ``#`` skipped.

Files must be UTF-8 (a BOM is fine). Duplicate prompts are kept and reported in
``PromptSet.duplicates``. Published sets (PartiPrompts, DrawBench) are never shipped: only our own
``assets/prompts/`` sets, listed by :func:`builtin_prompt_sets`.
"""

from __future__ import annotations

import csv
import io
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

BUILTIN_DIR = Path(__file__).resolve().parents[1] / "assets" / "prompts"
_SUFFIXES = (".csv", ".tsv", ".txt")

LAYOUTS = {
    "partiprompts": ("Prompt", "Category", "Challenge", "Note"),
    "drawbench": ("Prompts", "Category"),
    "csv": ("prompt", "[category]"),
    "txt": (),
}


class PromptSetError(ValueError):
    """A prompt-set file that cannot be read; the message names the file."""


@dataclass(frozen=True)
class Prompt:
    text: str
    category: str | None = None
    challenge: str | None = None
    note: str | None = None
    line: int = 0  # 1-based line of the file where the prompt starts


@dataclass
class PromptSet:
    name: str
    prompts: list[Prompt]
    layout: str = "csv"
    path: Path | None = None
    duplicates: dict[str, list[int]] = field(default_factory=dict)  # text -> lines, for repeated texts

    def __len__(self) -> int:
        return len(self.prompts)

    def __iter__(self) -> Iterator[Prompt]:
        return iter(self.prompts)

    @property
    def texts(self) -> list[str]:
        return [p.text for p in self.prompts]

    def categories(self) -> dict[str, int]:
        return dict(Counter(p.category or "" for p in self.prompts))


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"prompt set file not found: {path}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise PromptSetError(
            f"{path}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); save the file as UTF-8"
        ) from None


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def _load_txt(text: str) -> list[Prompt]:
    out = []
    for i, raw in enumerate(text.splitlines(), start=1):
        s = raw.strip()
        if s and not s.startswith("#"):
            out.append(Prompt(text=s, line=i))
    return out


def _load_table(path: Path, text: str) -> tuple[str, list[Prompt]]:
    first = text.split("\n", 1)[0]
    tab = path.suffix.lower() == ".tsv" or "\t" in first
    if tab:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise PromptSetError(f"{path}: empty file, expected a header row") from None
    except csv.Error as e:
        raise PromptSetError(f"{path}: cannot parse header: {e}") from None
    found = [h.strip() for h in header]
    index = {h.lower(): i for i, h in reversed(list(enumerate(found))) if h}

    def need(cols: tuple[str, ...], layout: str) -> None:
        missing = [c for c in cols if c.lower() not in index]
        if missing:
            raise PromptSetError(
                f"{path}: {layout} layout is missing column(s) {missing}; columns found: {found}"
            )

    if "challenge" in index or "note" in index:
        layout, cols = (
            "partiprompts",
            {"text": "prompt", "category": "category", "challenge": "challenge", "note": "note"},
        )
        need(LAYOUTS["partiprompts"], "PartiPrompts (Prompt, Category, Challenge, Note)")
    elif "prompts" in index:
        layout, cols = "drawbench", {"text": "prompts", "category": "category"}
        need(LAYOUTS["drawbench"], "DrawBench (Prompts, Category)")
    elif "prompt" in index:
        layout, cols = "csv", {"text": "prompt", "category": "category"}
    else:
        raise PromptSetError(
            f"{path}: no prompt column; columns found: {found}. Expected PartiPrompts TSV "
            "(Prompt, Category, Challenge, Note), DrawBench CSV (Prompts, Category), "
            "a CSV with columns prompt[,category], or a .txt with one prompt per line"
        )
    pos = {k: index.get(c) for k, c in cols.items()}

    prompts: list[Prompt] = []
    start = reader.line_num + 1
    try:
        for row in reader:
            line, start = start, reader.line_num + 1
            values = {k: (row[i] if i is not None and i < len(row) else None) for k, i in pos.items()}
            body = _clean(values.pop("text"))
            if body is None:
                continue
            prompts.append(Prompt(text=body, line=line, **{k: _clean(v) for k, v in values.items()}))
    except csv.Error as e:
        raise PromptSetError(f"{path}: malformed row near line {reader.line_num}: {e}") from None
    return layout, prompts


def load_prompt_set(path: str | Path, name: str | None = None) -> PromptSet:
    """Load a prompt set from ``path`` (layout auto-detected, see module docstring)."""
    path = Path(path)
    text = _read_text(path)
    if path.suffix.lower() == ".txt":
        layout, prompts = "txt", _load_txt(text)
    else:
        layout, prompts = _load_table(path, text)
    if not prompts:
        raise PromptSetError(f"{path}: no prompts found ({layout} layout)")
    lines: dict[str, list[int]] = {}
    for p in prompts:
        lines.setdefault(p.text, []).append(p.line)
    duplicates = {t: ls for t, ls in lines.items() if len(ls) > 1}
    if duplicates:
        log.warning(
            "%s: %d prompt(s) appear more than once (kept): %s",
            path,
            len(duplicates),
            "; ".join(f"{t[:40]!r} at lines {ls}" for t, ls in list(duplicates.items())[:5]),
        )
    return PromptSet(name=name or path.stem, prompts=prompts, layout=layout, path=path, duplicates=duplicates)


def builtin_prompt_sets() -> dict[str, Path]:
    """Prompt sets shipped in ``assets/prompts/``, name -> path."""
    if not BUILTIN_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(BUILTIN_DIR.iterdir()) if p.suffix.lower() in _SUFFIXES and p.is_file()}


def load_builtin(name: str) -> PromptSet:
    sets = builtin_prompt_sets()
    if name not in sets:
        raise KeyError(f"no built-in prompt set {name!r}; shipped: {sorted(sets)}")
    return load_prompt_set(sets[name])
