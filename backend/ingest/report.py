"""What an import tells its caller: counts and one specific reason per skipped item.

Why a report instead of exceptions per item: a web-scale source always holds some bad
items, and the user needs the whole list (to fix or ignore them) while the good items
still land. Only a source that cannot be read at all raises :class:`SourceError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class SourceError(ValueError):
    """The source as a whole cannot be imported (missing, unrecognisable, unreadable,
    or a table without the configured columns). Raised before anything is written."""


@dataclass(frozen=True)
class SkippedItem:
    item: str  # where the item is in the source: relative path, "row 17", "shard.tar:key"
    reason: str  # specific and actionable, e.g. "truncated image: ..."


@dataclass
class ImportReport:
    dataset: str
    imported: int = 0
    duplicates: int = 0
    skipped: list[SkippedItem] = field(default_factory=list)

    def skip(self, item: str, reason: str) -> None:
        self.skipped.append(SkippedItem(item=item, reason=reason))

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "imported": self.imported,
            "duplicates": self.duplicates,
            "skipped": [{"item": s.item, "reason": s.reason} for s in self.skipped],
        }
