"""The ``eval --json`` contract: each metric by name as ``{value, lower, upper, n, chance}``.

Users' scripts read this shape (issue 11), so it is built in one place from the stored rows:
one entry per checkpoint × prompt regime (one entry for ``eval --images``), each metric under
its contract name — ``soa_c``, ``soa_i``, ``ca``, ``pa_clip``, ``pa_det``, ``geneval`` (and
``geneval:<tag>``), ``rp``, ``clip_score``, ``fid``, ``kid``, ``o_fid``, ``r_precision_all`` —
as computed. ``lower``/``upper`` are the 95% bootstrap interval over prompts, ``chance`` the
mismatched-prompt baseline (R-precision: exactly 1 / candidates); ``null`` where a metric has
none (FID, KID, O-FID compare image sets, not prompts). Proportions (SOA, PA, GenEval, RP) are
in [0, 1]; CLIP-S is 100 × cosine; CA a count error (lower is better).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: stored metric name -> contract name
CONTRACT_NAMES = {"r_precision": "rp"}
#: stored in percent, reported as a proportion
PERCENT_METRICS = ("r_precision", "r_precision_all")
FIELDS = ("value", "lower", "upper", "n", "chance")


def metric_entry(metric: str, value: float, n: int, details: dict[str, Any] | None) -> dict[str, Any]:
    """One metric in the contract's shape (plus the chance interval and prompt count when known)."""
    interval = dict((details or {}).get("interval") or {})
    if not interval:  # stored before intervals existed: the value alone
        scale = 0.01 if metric in PERCENT_METRICS else 1.0
        interval = {"value": value * scale, "lower": None, "upper": None, "n": n, "chance": None}
    entry = {key: interval.get(key) for key in FIELDS}
    for extra in ("chance_lower", "chance_upper", "n_prompts"):
        if extra in interval:
            entry[extra] = interval[extra]
    return entry


def contract(rows: Iterable[Any]) -> list[dict[str, Any]]:
    """``[{"checkpoint", "regime", "dataset", "metrics": {name: {value, lower, upper, n, chance}}}]``
    from stored :class:`backend.evaluation.EvalResult` rows (or dicts with the same fields)."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        get = row.get if isinstance(row, dict) else lambda k, r=row: getattr(r, k)
        key = (get("checkpoint"), get("regime"))
        group = groups.setdefault(
            key, {"checkpoint": key[0], "regime": key[1], "dataset": get("dataset"), "metrics": {}}
        )
        stored = get("metric")
        if stored == "r_precision" and "protocol" not in (get("details") or {}):
            stored = "r_precision_all"  # rows from before issue 9 ranked among all prompts
        name = CONTRACT_NAMES.get(stored, stored)
        group["metrics"][name] = metric_entry(stored, get("value"), get("n"), get("details"))
    return [groups[k] for k in sorted(groups)]
