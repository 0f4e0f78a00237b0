"""What a prompt set asks for, one row per prompt, so a user can check the extractor's reading
before trusting any score built on it (CLI: ``recap-studio prompts show FILE``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from backend.compositional.extract import Extractor
from backend.compositional.loaders import StructuredSet, load_any
from backend.compositional.prompts import StructuredPrompt
from backend.compositional.vocabulary import Vocabulary


@dataclass(frozen=True)
class PromptRow:
    """One prompt as text columns. ``matched`` lists the phrases the extractor read (empty for
    sets that come structured, GenEval's or ours); ``notes`` what it saw but does not score."""

    key: str
    prompt: str
    tag: str
    objects: str
    relations: str
    exact_counts: str
    matched: str
    notes: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _row(p: StructuredPrompt, matched: str = "", notes: str = "") -> PromptRow:
    exact = [f"{e.cls}{f' ({e.color})' if e.color else ''} < {e.count}" for e in p.exclude]
    return PromptRow(
        key=p.key,
        prompt=p.prompt,
        tag=p.tag or "",
        objects="; ".join(o.describe() for o in p.objects),
        relations="; ".join(p.describe_relation(r) for r in p.relations),
        exact_counts="; ".join(exact),
        matched=matched,
        notes=notes,
    )


def prompt_rows(
    source: str | Path | StructuredSet, *, vocabulary: Vocabulary | None = None
) -> list[PromptRow]:
    """Rows for a set (a loaded :class:`StructuredSet`, or anything :func:`load_any` reads).

    For captions read by the extractor (COCO captions, plain prompt lists) each row also shows
    the phrases matched — ``text→meaning`` — and the notes on phrases not scored.
    """
    loaded = source if isinstance(source, StructuredSet) else load_any(source, vocabulary=vocabulary)
    if loaded.layout not in ("coco", "extracted"):
        return [_row(p) for p in loaded]
    reader = Extractor(vocabulary)
    rows = []
    for p in loaded:
        ex = reader.explain(p.prompt)
        matched = ", ".join(f"{s.text}→{s.value}" for s in ex.spans)
        rows.append(_row(p, matched, "; ".join(ex.notes)))
    return rows
