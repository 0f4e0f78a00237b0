"""Parsing one JSON value from a source (a WebDataset ``.json`` member, a JSON-lines row)
so that no value can stop an import.

Why a wrapper around :func:`json.loads`: the standard parser raises more than
``JSONDecodeError`` on hostile input, and each of these used to abort a whole import:

* ``RecursionError`` for deep nesting (200,000 ``[``);
* ``ValueError`` for an integer of more than 4,300 digits (CPython's guard against
  quadratic int parsing);
* nothing at all for ``NaN``, ``Infinity`` or ``1e400``, which Python reads as non-finite
  floats and writes back as ``NaN``/``Infinity``: not JSON, so SQLite's JSON functions
  ("malformed JSON"), browsers and other readers fail on the stored value later.

Here each becomes an :class:`~backend.ingest.items.ItemError` (one skipped item with a
reason), except the non-finite numbers, which are read as ``null``: ``NaN`` is how pandas
and img2dataset write a missing value, and dropping the image for it would lose good data.
Values that will be *stored* (``max_depth``) are also checked for depth, since a value
that parses at the top of the stack can still overflow it when read back deeper down, and
for lone surrogates (``"\\ud800"``), which SQLite and the browser cannot encode; there
``1e400`` (read as inf) becomes ``null`` too.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

from backend.ingest.items import ItemError
from backend.ingest.text import unpaired_surrogate

MAX_INT_DIGITS = 4300  # CPython's default int_max_str_digits; a longer integer is no real datum
MAX_STORED_DEPTH = 64  # nesting kept in Image.meta; orjson (Gradio) stops at 255, Python near 1000


class _TooManyDigits(Exception):
    def __init__(self, digits: int) -> None:
        super().__init__(digits)
        self.digits = digits


def _int(text: str) -> int:
    digits = len(text) - (text[0] == "-")
    if digits > MAX_INT_DIGITS:
        raise _TooManyDigits(digits)
    return int(text)


def _constant(_name: str) -> None:
    return None  # NaN, Infinity, -Infinity


# Decoders built once: json.loads with hooks builds a new one (and its scanner) per call.
# No parse_float hook: it costs a Python call per number; 1e400 (read as inf) is nulled
# where it matters, in a value that will be stored (_check_stored). The parse_int hook costs
# as much, so the fast decoder leaves integers to CPython's own digit limit (a ValueError)
# and the guarded one, which names the digit count, only reads the lines that hit it.
_FAST = json.JSONDecoder(parse_constant=_constant)
_GUARDED = json.JSONDecoder(parse_int=_int, parse_constant=_constant)


def _decode(text: str) -> Any:
    if not 0 < sys.get_int_max_str_digits() <= MAX_INT_DIGITS:
        return _GUARDED.decode(text)  # the interpreter's own limit is off or higher
    try:
        return _FAST.decode(text)
    except json.JSONDecodeError:
        raise
    except ValueError:  # "Exceeds the limit (4300 digits) for integer string conversion"
        return _GUARDED.decode(text)


def _position(exc: json.JSONDecodeError) -> str:
    return f"at column {exc.colno}" if exc.lineno == 1 else f"(line {exc.lineno}, column {exc.colno})"


def _is_non_finite(node: Any) -> bool:
    return isinstance(node, float) and not math.isfinite(node)


def _check_stored(value: Any, what: str, max_depth: int) -> Any:
    """``value`` fit to store: depth and text checked, numbers too large for a double (1e400,
    read as inf) nulled in place. Iterative: the value may be as deep as parsing allows."""
    if _is_non_finite(value):
        return None
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            bad = unpaired_surrogate(node)
            if bad is not None:
                raise ItemError(f"{what} holds an unpaired surrogate ({bad}), which is not text")
            continue
        if not isinstance(node, dict | list):
            continue
        if depth > max_depth:
            raise ItemError(f"{what} nests more than {max_depth} levels deep")
        slots = node.items() if isinstance(node, dict) else enumerate(node)
        for slot, child in list(slots):
            if isinstance(slot, str):
                stack.append((slot, depth))  # a key: checked as text
            if _is_non_finite(child):
                node[slot] = None
            else:
                stack.append((child, depth + 1))
    return value


def load_json(text: str, what: str, *, max_depth: int | None = None) -> Any:
    """The value ``text`` holds; ItemError (a sentence starting with ``what``) if it holds none.

    ``max_depth``: set for a value that will be stored; it is then also checked for depth
    and lone surrogates.
    """
    try:
        value = _decode(text)
    except json.JSONDecodeError as exc:
        raise ItemError(f"{what} is not valid JSON: {exc.msg} {_position(exc)}") from None
    except RecursionError:
        deep = f"nests more than {max_depth} levels deep" if max_depth else "nests too deeply to read"
        raise ItemError(f"{what} {deep}") from None
    except _TooManyDigits as exc:
        raise ItemError(
            f"{what} holds an integer of {exc.digits:,} digits (at most {MAX_INT_DIGITS:,} are read)"
        ) from None
    if max_depth is not None:
        value = _check_stored(value, what, max_depth)
    return value
