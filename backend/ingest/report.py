"""What an import tells its caller: counts and one specific reason per skipped item.

Why a report instead of exceptions per item: a web-scale source always holds some bad
items, and the user needs the whole list (to fix or ignore them) while the good items
still land. Only a source that cannot be read at all raises :class:`SourceError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from backend.ingest.text import printable_name


class SourceError(ValueError):
    """The source as a whole cannot be imported (missing, unrecognisable, unreadable,
    or a table without the configured columns). Raised before anything is written."""


@dataclass(frozen=True)
class SkippedItem:
    item: str  # where the item is in the source: relative path, "row 17", "shard.tar:key"
    reason: str  # specific and actionable, e.g. "truncated image: ..."


@dataclass(frozen=True)
class NotUtf8Text:
    """A stored text (caption or metadata) that was not UTF-8 and was read as ``read_as``.

    Listed because the encoding was inferred (:mod:`backend.ingest.text`): the user can
    check those captions, and fix a wrong guess, instead of trusting them blindly.
    """

    item: str
    text: str  # which text: "caption sidecar a.txt", "column 'caption'", "metadata k.json"
    read_as: str  # Python codec name, e.g. "cp1252"


@dataclass
class ImportReport:
    dataset: str
    imported: int = 0
    duplicates: int = 0
    skipped: list[SkippedItem] = field(default_factory=list)
    not_utf8: list[NotUtf8Text] = field(default_factory=list)

    def skip(self, item: str, reason: str) -> None:
        # names from a source may hold bytes that were not UTF-8; the report must print anywhere
        self.skipped.append(SkippedItem(item=printable_name(item), reason=printable_name(reason)))

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "imported": self.imported,
            "duplicates": self.duplicates,
            "skipped": [{"item": s.item, "reason": s.reason} for s in self.skipped],
            "not_utf8": [{"item": t.item, "text": t.text, "read_as": t.read_as} for t in self.not_utf8],
        }
