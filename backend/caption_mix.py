"""Weighted caption-mix policy of the T2I training job (RECAP / DALL-E 3 / Recap-DataComp).

Plain functions and dataclasses, no torch: the training loop calls :func:`draw` once per example
per step and feeds the returned label to a :class:`MixUsage`, which the run reports at the end.

The stated rule, applied per example:

1. With probability ``empty_prob`` the caption is dropped (classifier-free guidance):
   text ``""``, label ``"empty"``.
2. Otherwise a kind is drawn by weight. If the image has it (a non-blank text), it is used:
   label = the kind name, e.g. ``"recap_long"``.
3. If the image lacks the drawn kind, the weights are renormalised over the kinds of the mix the
   image *has* and a kind is drawn from those: label ``"renorm:<kind>"``. Only kinds with a
   weight > 0 take part, so a mix (preset or custom weights) never draws a kind outside its
   own weights here.
4. If the image has none of the mix's kinds and the user asked for a ``fallback`` (an ordered
   list of kinds; empty by default), the first of them that the image has is used: label
   ``"fallback:<kind>"``.
5. Else the empty caption: label ``"empty:missing"`` (distinct from dropout's ``"empty"``).

Why no fallback by default: a control must train on what its name says. With a default fallback
that began with ``recap_long``, the ``alttext`` preset fed recaptions to every image without
alt-text while the arena labelled the run "alt-text only". Why the empty caption rather than
dropping the image: every mix then trains on the same images for the same number of steps, so
two runs differ only in their text; such an image teaches the unconditional branch (as caption
dropout does), and ``empty:missing`` in the usage counts says how often that happened.

So every outcome is counted, and :meth:`MixUsage.by_kind` folds the labels back to the caption
kind actually fed to the text encoder (``renorm:recap_long`` → ``recap_long``,
``empty:missing`` → ``empty``).

Mix specs for the CLI (``--mix PRESET_OR_WEIGHTS``), see :func:`parse_mix`::

    recap_mix                      preset
    recap_datacomp:p=0.8           preset with parameters
    recap_short=0.3,recap_long=0.7 custom weights (normalised)
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import accumulate

import numpy as np

EMPTY = "empty"
EMPTY_MISSING = "empty:missing"
RENORM_PREFIX = "renorm:"
FALLBACK_PREFIX = "fallback:"

#: fallback of presets and weights unless the caller gives one: none (see the module docstring);
#: a user who wants one opts in with ``fallback=[...]`` (``--fallback`` on the command line)
DEFAULT_FALLBACK: tuple[str, ...] = ()

_KIND_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


def _check_kind(kind: object, what: str) -> str:
    if not isinstance(kind, str) or not _KIND_RE.match(kind):
        raise ValueError(
            f"{what}: invalid caption kind {kind!r} (letters, digits, _ . - ; not starting with a digit)"
        )
    if kind == EMPTY:
        raise ValueError(f"{what}: {EMPTY!r} is reserved for the empty caption, not a caption kind")
    return kind


@dataclass(frozen=True)
class CaptionMix:
    """Normalised weights per caption kind, caption dropout and fallback order.

    ``weights`` are normalised to sum 1; kinds with weight 0 are dropped (never drawn, never used
    for renormalisation). ``empty_prob`` is in [0, 1). ``fallback`` (empty unless asked for) is
    used only for images with none of the mix's kinds; its kinds need not be in the mix.
    ``name`` is the spec it came from (informational; not part of equality).
    """

    weights: Mapping[str, float]
    empty_prob: float = 0.0
    fallback: tuple[str, ...] = ()
    name: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.weights, Mapping) or not self.weights:
            raise ValueError("caption mix: weights must be a non-empty mapping kind -> weight")
        raw: dict[str, float] = {}
        for kind, w in self.weights.items():
            _check_kind(kind, "caption mix")
            try:
                wf = float(w)
            except (TypeError, ValueError):
                raise ValueError(f"caption mix: weight of {kind!r} is not a number: {w!r}") from None
            if not math.isfinite(wf) or wf < 0:
                raise ValueError(f"caption mix: weight of {kind!r} must be a finite number >= 0, got {w!r}")
            raw[kind] = wf
        total = sum(raw.values())
        if total <= 0:
            raise ValueError(f"caption mix: weights must sum to > 0, got {dict(raw)}")
        norm = {k: w / total for k, w in raw.items() if w > 0}
        try:
            e = float(self.empty_prob)
        except (TypeError, ValueError):
            raise ValueError(f"caption mix: empty_prob is not a number: {self.empty_prob!r}") from None
        if not (0.0 <= e < 1.0):
            raise ValueError(f"caption mix: empty_prob must satisfy 0 <= p < 1, got {self.empty_prob!r}")
        if isinstance(self.fallback, str):
            raise ValueError("caption mix: fallback must be a list of kinds, not a string")
        fb = tuple(_check_kind(k, "caption mix fallback") for k in self.fallback)
        object.__setattr__(self, "weights", norm)
        object.__setattr__(self, "empty_prob", e)
        object.__setattr__(self, "fallback", fb)
        object.__setattr__(self, "_kinds", tuple(norm))
        object.__setattr__(self, "_cum", tuple(accumulate(norm.values())))

    @property
    def kinds(self) -> tuple[str, ...]:
        return self._kinds  # type: ignore[attr-defined]

    @property
    def spec(self) -> str:
        """A string :func:`parse_mix` turns back into this mix's weights."""
        return format_weights(self.weights)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "weights": dict(self.weights),
            "empty_prob": self.empty_prob,
            "fallback": list(self.fallback),
        }


def _pick(kinds: Sequence[str], cum: Sequence[float], u: float) -> str:
    i = bisect_right(cum, u * cum[-1])
    return kinds[min(i, len(kinds) - 1)]


def _present(available: Mapping[str, str | None]) -> dict[str, str]:
    return {k: t for k, t in available.items() if isinstance(t, str) and t.strip()}


def draw(
    mix: CaptionMix,
    available: Mapping[str, str | None],
    rng: np.random.Generator,
    usage: MixUsage | None = None,
) -> tuple[str, str]:
    """Pick the caption for one example by the module's rule; returns ``(label, text)``.

    ``label`` is the kind name, ``"empty"`` (dropout), ``"renorm:<kind>"``, ``"fallback:<kind>"``
    or ``"empty:missing"``. Blank/None texts count as missing. Records into ``usage`` if given.
    """
    label, text = _draw(mix, _present(available), rng)
    if usage is not None:
        usage.record(label)
    return label, text


def _draw(mix: CaptionMix, have: Mapping[str, str], rng: np.random.Generator) -> tuple[str, str]:
    if mix.empty_prob > 0 and rng.random() < mix.empty_prob:
        return EMPTY, ""
    kind = _pick(mix.kinds, mix._cum, rng.random())  # type: ignore[attr-defined]
    if kind in have:
        return kind, have[kind]
    inside = [k for k in mix.kinds if k in have]
    if inside:
        cum = list(accumulate(mix.weights[k] for k in inside))
        k = _pick(inside, cum, rng.random())
        return RENORM_PREFIX + k, have[k]
    for k in mix.fallback:
        if k in have:
            return FALLBACK_PREFIX + k, have[k]
    return EMPTY_MISSING, ""


def has_mix_kind(mix: CaptionMix, available: Mapping[str, str | None]) -> bool:
    """Does the image have (a non-blank caption of) at least one kind the mix weighs?

    An image without one gets a ``fallback`` kind if the user asked for one, else the empty
    caption; the training job counts such images up front and says so in its log.
    """
    return any(k in mix.weights for k in _present(available))


def kind_of(label: str) -> str:
    """Caption kind behind a usage label (``"empty"`` for both empty outcomes)."""
    if label in (EMPTY, EMPTY_MISSING):
        return EMPTY
    for prefix in (RENORM_PREFIX, FALLBACK_PREFIX):
        if label.startswith(prefix):
            return label[len(prefix) :]
    return label


class MixUsage:
    """Counts of :func:`draw` outcomes, by label; JSON-friendly and resumable (``from_dict``)."""

    def __init__(self, counts: Mapping[str, int] | None = None) -> None:
        self._counts: dict[str, int] = {}
        for k, v in (counts or {}).items():
            self.record(k, int(v))

    @classmethod
    def from_dict(cls, counts: Mapping[str, int]) -> MixUsage:
        return cls(counts)

    def record(self, label: str, n: int = 1) -> None:
        if n < 0:
            raise ValueError("MixUsage.record: n must be >= 0")
        self._counts[label] = self._counts.get(label, 0) + n

    def update(self, other: MixUsage | Mapping[str, int]) -> None:
        items = other.as_dict() if isinstance(other, MixUsage) else other
        for k, v in items.items():
            self.record(k, int(v))

    @property
    def total(self) -> int:
        return sum(self._counts.values())

    def __getitem__(self, label: str) -> int:
        return self._counts.get(label, 0)

    def as_dict(self) -> dict[str, int]:
        """Counts by label, in order of first use, e.g. ``{"recap_short": 130, "empty": 28}``."""
        return dict(self._counts)

    def by_kind(self) -> dict[str, int]:
        """Counts folded to the caption kind actually used (see :func:`kind_of`)."""
        out: dict[str, int] = {}
        for label, n in self._counts.items():
            k = kind_of(label)
            out[k] = out.get(k, 0) + n
        return out

    def __repr__(self) -> str:
        return f"MixUsage({self._counts!r})"


# ---------------------------------------------------------------- presets and parsing


def _recap_datacomp(p: float | None = None) -> dict[str, float]:
    if p is None:
        raise ValueError(
            "preset recap_datacomp needs p (probability of the original alt-text), e.g. recap_datacomp:p=0.8"
        )
    p = float(p)
    if not (0.0 <= p <= 1.0):
        raise ValueError(f"preset recap_datacomp: p must be in [0, 1], got {p}")
    return {"alttext": p, "recap_long": 1.0 - p}


#: name -> function(**params) returning the raw weights of the preset
PRESETS: dict[str, Callable[..., dict[str, float]]] = {
    "recap_mix": lambda: {"recap_short": 0.5, "recap_long": 0.5},  # RECAP Mix
    "dalle3": lambda: {"recap_long": 0.95, "alttext": 0.05},  # DALL-E 3 blend
    "recap_datacomp": _recap_datacomp,  # Recap-DataComp: alt-text with prob p
    "alttext": lambda: {"alttext": 1.0},  # Alttext baseline
}


def preset(
    name: str,
    *,
    empty_prob: float = 0.0,
    fallback: Iterable[str] | None = None,
    **params: float,
) -> CaptionMix:
    """Build a preset mix, e.g. ``preset("recap_datacomp", p=0.8, empty_prob=0.1)``."""
    if name not in PRESETS:
        raise ValueError(f"unknown caption-mix preset {name!r}; known: {', '.join(PRESETS)}")
    try:
        weights = PRESETS[name](**params)
    except TypeError:
        raise ValueError(f"preset {name!r} does not take parameters {sorted(params)}") from None
    label = name + (":" + ",".join(f"{k}={v!r}" for k, v in params.items()) if params else "")
    fb = DEFAULT_FALLBACK if fallback is None else tuple(fallback)
    return CaptionMix(weights, empty_prob=empty_prob, fallback=fb, name=label)


def format_weights(weights: Mapping[str, float]) -> str:
    return ",".join(f"{k}={float(w)!r}" for k, w in weights.items())


def _number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"caption mix {what}: {text!r} is not a number") from None


def parse_mix(
    spec: str,
    *,
    empty_prob: float = 0.0,
    fallback: Iterable[str] | None = None,
) -> CaptionMix:
    """Parse ``--mix``: ``PRESET``, ``PRESET:k=v[,k=v]`` or ``kind=w[,kind=w...]``."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(
            "caption mix: empty spec; give a preset (" + ", ".join(PRESETS) + ") or kind=weight,..."
        )
    spec = spec.strip()
    head, sep, rest = spec.partition(":")
    if head.strip() in PRESETS and (sep or "=" not in spec):
        params: dict[str, float] = {}
        if sep:
            for part in filter(None, (x.strip() for x in rest.split(","))):
                k, eq, v = part.partition("=")
                if not eq or not k.strip():
                    raise ValueError(f"caption mix {spec!r}: preset parameter {part!r} must be name=value")
                params[k.strip()] = _number(v.strip(), f"{spec!r} parameter {k.strip()}")
        return preset(head.strip(), empty_prob=empty_prob, fallback=fallback, **params)
    if "=" not in spec:
        raise ValueError(
            f"unknown caption-mix preset {spec!r}; known: {', '.join(PRESETS)}; or give kind=weight,..."
        )
    weights: dict[str, float] = {}
    for part in filter(None, (x.strip() for x in spec.split(","))):
        k, eq, v = part.partition("=")
        k = k.strip()
        if not eq:
            raise ValueError(f"caption mix {spec!r}: {part!r} must be kind=weight")
        if k in weights:
            raise ValueError(f"caption mix {spec!r}: kind {k!r} given twice")
        weights[k] = _number(v.strip(), f"weight of {k!r}")
    fb = DEFAULT_FALLBACK if fallback is None else tuple(fallback)
    return CaptionMix(weights, empty_prob=empty_prob, fallback=fb, name=spec)


# ---------------------------------------------------------------- test helpers


def outcome_probs(mix: CaptionMix, kinds_present: Iterable[str] | None = None) -> dict[str, float]:
    """Exact probability of each usage label for an image having ``kinds_present``
    (default: every kind of the mix)."""
    have = set(mix.kinds if kinds_present is None else kinds_present)
    keep = 1.0 - mix.empty_prob
    out: dict[str, float] = {}

    def add(label: str, p: float) -> None:
        if p > 0:
            out[label] = out.get(label, 0.0) + p

    missing = 0.0
    for k, w in mix.weights.items():
        if k in have:
            add(k, keep * w)
        else:
            missing += w
    if missing > 0:
        inside = [k for k in mix.kinds if k in have]
        if inside:
            s = sum(mix.weights[k] for k in inside)
            for k in inside:
                add(RENORM_PREFIX + k, keep * missing * mix.weights[k] / s)
        else:
            fb = next((k for k in mix.fallback if k in have), None)
            add(FALLBACK_PREFIX + fb if fb else EMPTY_MISSING, keep * missing)
    add(EMPTY, mix.empty_prob)
    return out


def expected_counts(mix: CaptionMix, n: int, kinds_present: Iterable[str] | None = None) -> dict[str, float]:
    """Expected usage counts after ``n`` draws (see :func:`outcome_probs`)."""
    return {k: n * p for k, p in outcome_probs(mix, kinds_present).items()}


def binomial_tolerance(n: int, p: float, z: float = 4) -> float:
    """``z`` standard deviations of a Binomial(n, p) count."""
    if not (0.0 <= p <= 1.0):
        raise ValueError(f"binomial_tolerance: p must be in [0, 1], got {p}")
    return z * math.sqrt(n * p * (1.0 - p))
