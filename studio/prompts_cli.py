"""``recap-studio prompts show FILE|NAME``: what the studio reads in a prompt set, one row a prompt.

Why: every SOA/CA/PA/GenEval number rests on the objects, counts and relations taken from the
prompts — given (our structured JSONL, GenEval's metadata) or read by the rule-based extractor
(COCO captions, plain prompt lists). A user checks that reading here before trusting a score
(:func:`backend.compositional.show.prompt_rows`; the extractor's matched phrases and notes
appear for extracted sets).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from backend.compositional.prompts import PromptFormatError
from backend.compositional.show import prompt_rows
from backend.compositional.vocabulary import Vocabulary
from studio.console import fail, out

prompts_app = typer.Typer(help="Structured prompt sets (objects, counts, relations).", no_args_is_help=True)

COLUMNS = ("key", "prompt", "tag", "objects", "relations", "exact_counts", "matched", "notes")


@prompts_app.command("show")
def show(
    source: Annotated[
        str,
        typer.Argument(
            help="A prompt file (JSONL, COCO captions JSON, TXT/CSV/TSV) or a shipped set's name (demo_world)."
        ),
    ],
    vocabulary: Annotated[
        Path | None,
        typer.Option(
            "--vocabulary", help="Vocabulary JSON for the extractor (default: the 80 COCO classes)."
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", help="Show at most this many prompts (0 = all).", min=0)
    ] = 0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object as the last line of stdout.")
    ] = False,
) -> None:
    """Print what was derived per prompt: objects (count, colour), relations, exact counts, and for
    extracted sets the phrases matched and what was seen but not scored."""
    try:
        vocab = Vocabulary.from_json(vocabulary) if vocabulary else None
    except (OSError, ValueError) as exc:
        raise fail(f"vocabulary {vocabulary}: {exc}") from None
    try:
        rows = prompt_rows(source, vocabulary=vocab)
    except (PromptFormatError, OSError) as exc:
        raise fail(str(exc)) from None
    shown = rows[:limit] if limit else rows
    if as_json:
        out.print(
            json.dumps({"source": source, "prompts": len(rows), "rows": [r.as_dict() for r in shown]}, ensure_ascii=False),
            markup=False, highlight=False, soft_wrap=True,
        )  # fmt: skip
        return
    columns = [c for c in COLUMNS if any(getattr(r, c) for r in shown)]
    table = Table(*columns, title=f"{source}: {len(rows)} prompts", show_lines=False)
    for r in shown:
        table.add_row(*(getattr(r, c) for c in columns))
    out.print(table)
