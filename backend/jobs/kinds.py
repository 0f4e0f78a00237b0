"""What a job kind is, beyond its config: its runner module, GPU need, titles, CLI command, API name.

Why a spec: a kind used to be a ``SCHEMAS`` entry, a line in the job registry, a hand-written form,
a hand-written CLI command and a branch of the workspace check, with nothing checking that they
agree. Now :data:`backend.jobs.configs.KINDS` lists one :class:`JobKind` per kind; the job
registry (``training.jobs.JOBS``), the Runs tab's forms and the CLI's commands are built from it,
and ``tests/test_job_kinds.py`` asserts they agree.

The workspace check is generic: each config field says what it refers to (``ref``, see
:data:`backend.jobs.schema.REFS`), and :meth:`JobKind.check_workspace` resolves those — datasets
exist, model references resolve to the right artifact kind, files exist — so a new kind needs no
branch here; ``check`` is for what a field's ``ref`` cannot say.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.jobs.schema import ConfigError, FieldSpec, fields_of
from backend.references import ArtifactKind, resolve_reference
from backend.workspace import Workspace

Summary = Callable[[Mapping[str, Any]], str]
ExtraCheck = Callable[[Workspace, dict[str, Any]], None]


@dataclass(frozen=True)
class JobKind:
    """One job kind: its config dataclass, where its code lives and how the front ends offer it."""

    name: str  # Run.kind
    config: type  # the config dataclass (fields declared with schema.opt)
    module: str  # the training module with ``run(ctx)``; a string: backend never imports training
    title: str  # the Runs tab's form title
    help: str  # the CLI command's one-line help
    summary: Summary  # one line about a config, for tables and headers
    cli_command: tuple[str, ...]  # ("t2i", "train") -> ``recap-studio t2i train``
    api_name: str  # the Runs tab's launch endpoint
    button: str  # the form's launch button
    needs_gpu: bool = True
    intro: str = ""  # the form's first paragraph (Markdown)
    cli_hidden: bool = False  # a command for tests and smoke checks
    dev_only: bool = False  # its form shows only in developer mode
    check: ExtraCheck | None = None  # workspace checks a field's ref cannot express

    @property
    def fields(self) -> tuple[FieldSpec, ...]:
        return fields_of(self.config)

    def defaults(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config())

    def check_workspace(self, ws: Workspace, config: Mapping[str, Any]) -> dict[str, Any]:
        """What only the workspace can tell, per field ``ref``; returns the config to store (model
        references in their stored form, local files and folders as absolute paths)."""
        checked = dict(config)
        for spec in self.fields:
            value = checked.get(spec.name)
            if spec.ref is None or not value:  # an empty optional reference; required ones were validated
                continue
            if spec.is_list:
                checked[spec.name] = [resolve_ref(ws, spec, item) for item in value]
            else:
                checked[spec.name] = resolve_ref(ws, spec, value)
        if self.check is not None:
            self.check(ws, checked)
        return checked


def resolve_ref(ws: Workspace, spec: FieldSpec, value: str) -> str:
    """One value of a field that refers to something in the workspace (see ``schema.REFS``)."""
    name = spec.item_name or spec.name
    ref = spec.ref or ""
    if ref.startswith("dataset"):
        check_dataset(ws, name, value)
        return value
    if spec.artifact_kind is not None:
        return resolve_reference(ws, value, expected=ArtifactKind(spec.artifact_kind), field=name)
    if ref == "prompt_set":
        return resolve_prompt_set(ws, value)
    if ref == "local_file_or_tag":
        return local_file_or_tag(value)
    if ref == "file":
        path = Path(value).expanduser()
        if not path.exists():
            raise ConfigError(f"{name} {value!r} does not exist")
        return str(path.resolve())
    raise ConfigError(f"{name}: unknown reference kind {ref!r}")


def check_dataset(ws: Workspace, field_name: str, name: str) -> None:
    from backend.datasets import dataset_names

    names = dataset_names(ws)
    if name not in names:
        known = ", ".join(names[:20]) or "none yet; import one first"
        raise ConfigError(f"{field_name}: no dataset named {name!r} (datasets: {known})")


def local_file_or_tag(value: str) -> str:
    """A checkpoint file becomes its absolute path; anything else is an open_clip pretrained tag."""
    local = Path(value).expanduser()
    return str(local.resolve()) if local.is_file() else value


def resolve_prompt_set(ws: Workspace, ref: str) -> str:
    """A shipped prompt set's name as given, or an existing prompt file as its absolute path."""
    from backend.compositional.loaders import builtin_sets
    from backend.prompt_sets import builtin_prompt_sets

    ref = ref.strip()
    # plain sets (assets/prompts/*.csv|tsv|txt) and structured ones (assets/prompts/*.jsonl)
    shipped = {**builtin_prompt_sets(), **builtin_sets()}
    if ref in shipped:
        return ref
    for candidate in (Path(ref).expanduser(), ws.home / ref):
        if candidate.is_file():
            return str(candidate.resolve())
    raise ConfigError(
        f"prompts {ref!r} is neither a shipped prompt set ({', '.join(shipped) or 'none'}) nor an "
        "existing file (PartiPrompts TSV, DrawBench CSV, CSV with a prompt column, TXT, or a structured JSONL)"
    )
