"""What a job option is, written once on its config field: label, help, group, choices, bounds.

Why on the field: the Runs tab's forms, the CLI's options and the config's validation all read
the same declaration, so adding an option to a job kind is one line in its config dataclass (plus
the job code that uses it). :func:`opt` writes the declaration into ``dataclasses.field``
metadata; :func:`fields_of` reads it back as :class:`FieldSpec` with the field's real type
(``typing.get_type_hints``), which :func:`coerce` and :func:`check_field` use — never the
annotation's spelling, so ``Optional[str]``, ``str | None`` and ``list[str] | None`` all work.

Nothing here knows a job kind; :mod:`backend.jobs.configs` declares them, :mod:`backend.jobs.kinds`
describes the kinds.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from backend.jobs import store

Group = Literal["basic", "advanced"]
MISSING: Any = dataclasses.MISSING
_META = "recap"  # the metadata key that holds our declaration

#: what a field's value refers to; the workspace check is generic over these (see kinds.py)
REFS = (
    "dataset",  # a dataset of this workspace (any)
    "dataset:real",  # one of real images (a training set, an FID reference)
    "dataset:generated",  # one a generate run wrote
    "artifact:captioner",  # a model reference whose artifacts must be of that kind
    "artifact:t2i",
    "artifact:upsampler",
    "prompt_set",  # a shipped prompt set or a prompt file
    "local_file_or_tag",  # an open_clip pretrained tag, or a local checkpoint file
    "file",  # an existing local file
)


class ConfigError(store.JobError, ValueError):
    """A run configuration that cannot run; the message says which field and why."""


def opt(
    default: Any = MISSING,
    *,
    label: str,
    help: str,  # noqa: A002 - the word every CLI library uses
    group: Group = "basic",
    choices: Iterable[Any] | None = None,
    open_choices: bool = False,
    ref: str | None = None,
    aliases: tuple[str, ...] = (),
    off_aliases: tuple[str, ...] = (),
    minimum: float | None = None,
    maximum: float | None = None,
    required: bool = False,
    item_name: str | None = None,
    lines: int = 1,
    split: bool = True,
    at_file: bool = False,
    widget: Literal["radio", "dropdown"] | None = None,
    cli: bool = True,
    ui: bool = True,
    default_factory: Callable[[], Any] | None = None,
) -> Any:
    """A config field with what the UI and the CLI need to offer it.

    - ``label``: the form's label; ``help``: one sentence for ``--help`` (and the form's advanced
      section). Choices and the default are appended to the CLI help, so do not repeat them.
    - ``group``: ``basic`` fields show in the form, ``advanced`` ones in its collapsed section.
    - ``choices``: allowed values, or ``(label, value)`` pairs; checked unless ``open_choices``
      (then they are suggestions: presets of a free-form value). ``widget`` picks radio buttons.
    - ``ref``: what the value names (one of :data:`REFS`), so the workspace check and the form's
      dropdown choices are generic; ``item_name`` names one entry of a list in messages.
    - ``minimum`` / ``maximum``: inclusive bounds, checked with the usual message.
    - ``required``: the CLI insists on it (the form pre-selects a choice when it starts empty).
    - CLI: the flag is the key (``--inference-steps``); ``aliases`` keep older flag names
      answering (``--steps``), ``off_aliases`` older ``--no-…`` names of a switch (``--full``);
      list values repeat the flag and, with ``split``, also split on commas; ``at_file`` reads
      ``@path`` as the file's text. ``cli`` / ``ui`` False leave the field out of one front end.
    - ``lines`` > 1: a multi-line text box (a list of free text: one entry per line).
    """
    meta = {
        _META: {
            "label": label,
            "help": help,
            "group": group,
            "choices": tuple(choices) if choices is not None else None,
            "open_choices": open_choices,
            "ref": ref,
            "aliases": tuple(aliases),
            "off_aliases": tuple(off_aliases),
            "minimum": minimum,
            "maximum": maximum,
            "required": required,
            "item_name": item_name,
            "lines": lines,
            "split": split,
            "at_file": at_file,
            "widget": widget,
            "cli": cli,
            "ui": ui,
        }
    }
    if ref is not None and ref not in REFS:
        raise ValueError(f"unknown ref {ref!r} (known: {', '.join(REFS)})")
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class FieldSpec:
    """One config field as the front ends see it: name, real type, default and declaration."""

    name: str
    type: Any  # the resolved annotation, e.g. ``list[str] | None``
    base: type  # bool, int, float, str or list
    item: type | None  # a list's item type
    optional: bool  # None is a valid value
    default: Any
    label: str
    help: str
    group: Group = "basic"
    choices: tuple[Any, ...] | None = None  # the values
    choice_labels: tuple[tuple[str, Any], ...] | None = None  # (label, value) for the form
    open_choices: bool = False
    ref: str | None = None
    aliases: tuple[str, ...] = ()
    off_aliases: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    required: bool = False
    item_name: str | None = None
    lines: int = 1
    split: bool = True
    at_file: bool = False
    widget: str | None = None
    cli: bool = True
    ui: bool = True

    @property
    def flag(self) -> str:
        """The CLI flag: the key itself."""
        return "--" + self.name.replace("_", "-")

    @property
    def is_list(self) -> bool:
        return self.base is list

    @property
    def artifact_kind(self) -> str | None:
        """The artifact kind a model reference must be (``ref="artifact:t2i"`` → ``"t2i"``)."""
        return self.ref.split(":", 1)[1] if self.ref and self.ref.startswith("artifact:") else None


def _unwrap(annotation: Any) -> tuple[type, type | None, bool]:
    """(base, list item, optional) of an annotation: ``list[int] | None`` → (list, int, True)."""
    optional = False
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        if len(args) != 1:
            raise TypeError(f"unsupported union {annotation!r}: one type, optionally with None")
        annotation = args[0]
        origin = typing.get_origin(annotation)
    if origin is list:
        (item,) = typing.get_args(annotation) or (str,)
        return list, item, optional
    if annotation in (bool, int, float, str):
        return annotation, None, optional
    raise TypeError(f"unsupported config type {annotation!r}")


@cache
def fields_of(cls: type) -> tuple[FieldSpec, ...]:
    """The declared fields of a config dataclass, in order."""
    hints = typing.get_type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        meta = dict(f.metadata.get(_META) or {})
        if not meta:
            raise TypeError(f"{cls.__name__}.{f.name} is not declared with opt(): give it a label and help")
        base, item, optional = _unwrap(hints[f.name])
        if f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:
            default = f.default_factory()
        else:
            raise TypeError(f"{cls.__name__}.{f.name} needs a default")
        raw_choices = meta.pop("choices")
        labels = values = None
        if raw_choices is not None:
            labels = tuple(c if isinstance(c, tuple) else (str(c), c) for c in raw_choices)
            values = tuple(value for _, value in labels)
        specs.append(
            FieldSpec(
                name=f.name,
                type=hints[f.name],
                base=base,
                item=item,
                optional=optional,
                default=default,
                choices=values,
                choice_labels=labels,
                **meta,
            )
        )
    return tuple(specs)


def field_of(cls: type, name: str) -> FieldSpec:
    for spec in fields_of(cls):
        if spec.name == name:
            return spec
    raise KeyError(f"{cls.__name__} has no field {name!r}")


# --------------------------------------------------------------------------- coercion


def coerce(spec: FieldSpec, value: Any) -> Any:
    """Accept what forms and command lines send (3.0 for an int, "1e-4" for a float, "a,b" for a
    list) and return the field's type; anything else is a :class:`ConfigError` naming the field."""
    if spec.optional and (value is None or (isinstance(value, str) and not value.strip())):
        return None
    if spec.is_list:
        if isinstance(value, str):
            value = [part for part in (p.strip() for p in value.split(",")) if part]
        if not isinstance(value, (list, tuple)):
            what = "whole numbers" if spec.item is int else "names"
            raise ConfigError(f"{spec.name} must be a list of {what} (got {value!r})")
        if spec.item is str:
            return [str(v).strip() for v in value]
        return [_scalar(spec.name, spec.item or str, v) for v in value]
    if spec.base is str and spec.optional:  # kept as written: a prompt's spacing is the user's
        if not isinstance(value, str):
            raise ConfigError(f"{spec.name} must be text or empty (got {value!r})")
        return value
    return _scalar(spec.name, spec.base, value)


def _scalar(name: str, kind: type, value: Any) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ConfigError(f"{name} must be true or false (got {value!r})")
    if kind is int:
        number = _number(name, value, "a whole number")
        if number != int(number):
            raise ConfigError(f"{name} must be a whole number (got {value!r})")
        return int(number)
    if kind is float:
        return _number(name, value, "a number")
    if kind is str:
        if isinstance(value, str):
            return value.strip()
        raise ConfigError(f"{name} must be text (got {value!r})")
    raise TypeError(kind)


def _number(name: str, value: Any, what: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be {what} (got {value!r})")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be {what} (got {value!r})") from None
    if not math.isfinite(number):
        raise ConfigError(f"{name} must be a finite number (got {value!r})")
    return number


# --------------------------------------------------------------------------- checks


def check_field(spec: FieldSpec, value: Any) -> None:
    """The checks a declaration implies: closed choices and inclusive bounds (each list entry too)."""
    if value is None:
        return
    for item in value if spec.is_list else (value,):
        if spec.choices is not None and not spec.open_choices:
            choice(spec.name, item, spec.choices)
        if spec.minimum is not None and spec.maximum is not None:
            between(spec.name, item, spec.minimum, spec.maximum)
        elif spec.minimum is not None:
            at_least(spec.name, item, spec.minimum)
        elif spec.maximum is not None and item > spec.maximum:
            raise ConfigError(f"{spec.name} must be at most {_num(spec.maximum)} (got {item})")


def require_name(name: str, value: Any, what: str = "") -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name} is required" + (f": {what}" if what else ""))


def choice(name: str, value: Any, allowed: Iterable[Any]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(map(str, allowed))} (got {value!r})")


def at_least(name: str, value: float, low: float) -> None:
    if value < low:
        raise ConfigError(f"{name} must be at least {_num(low)} (got {value})")


def between(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {_num(low)} and {_num(high)} (got {value})")


def positive_float(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{name} must be greater than 0 (got {value})")


def exclusive_unit(name: str, value: float) -> None:
    if not 0 < value < 1:
        raise ConfigError(f"{name} must be between 0 and 1, exclusive (got {value})")


def _num(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)
