"""Model references — what a config names as a model — resolved in one place, by explicit rules.

A config field such as ``base``, ``captioner``, ``checkpoints`` or ``upsampler`` names a model
in one of these forms:

* ``artifact:NAME`` or ``artifact:ID`` — a registered artifact (a name means the newest of it);
* ``hf:org/name`` — a Hugging Face hub id (checked only when the job loads it: this machine may be
  offline while the GPU box is not);
* a local folder: an absolute path, ``./x``, ``../x``, ``~/x``, or a relative path that exists
  (tried against the current directory, then the workspace);
* a bare name: it means whichever of the above it uniquely fits.

Why one module: the studio (at submit), and the jobs (at run time) used to resolve references
three ways, by guessing artifact → folder → hub id, so an artifact named ``org/name`` silently
hid the hub model of that name. Now a bare name that fits an artifact *and* something else (a
hub id shaped ``org/name``, or an existing folder) is refused as ambiguous, with a message
naming the explicit forms. A one-word name (``tiny-blip``) that is an artifact is that
artifact: one-word hub ids (``gpt2``) are written ``hf:gpt2`` when an artifact has that name.
A relative folder shaped like a hub id is the folder (what ``hf download --local-dir org/name``
leaves); write ``hf:org/name`` for the hub.

:func:`resolve_reference` runs at submit time and returns the form a config stores: the
*shortest form that means the same thing* — a bare artifact name or hub id as the user reads
it in tables and provenance (the Results tab and the arena show stored references), the
explicit prefix only where the bare form would be ambiguous, and local folders as absolute
paths (the job's working directory is its run folder). :func:`open_reference` is what jobs
call: it accepts every form, including what older versions stored.

Errors are :class:`backend.jobs.configs.ConfigError` (the CLI and the Runs tab show them as they
show any bad field); it is imported when raised, because ``configs`` imports this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from backend.jobs import store
from backend.workspace import Workspace

if TYPE_CHECKING:
    from backend.jobs.models import Artifact


class ArtifactKind(StrEnum):
    """``Artifact.kind``: what a registered model is, so a field can insist on the right one."""

    captioner = "captioner"  # captioner_train output, or an imported captioner (models tiny --register)
    t2i = "t2i"  # t2i_train output: a Stable Diffusion pipeline folder, or an imported one
    upsampler = "upsampler"  # a causal language model that rewrites prompts (generate --upsampler)


ARTIFACT_PREFIX = "artifact:"
HUB_PREFIX = "hf:"

# a hub id: "name" or "org/name" (letters, digits, - _ .)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
# the org/name shape that may collide with an artifact or folder name
_ORG_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_EXPLICIT_PATH = ("/", "./", "../", "~", ".\\", "..\\")

Origin = Literal["artifact", "path", "hub"]


@dataclass(frozen=True)
class ResolvedModel:
    """What a reference resolved to: ``source`` is the folder or hub id ``from_pretrained`` loads.

    ``label`` is what provenance and logs show (the artifact's name, the folder as stored, the
    hub id without its prefix); ``artifact`` is the registered row when it was one.
    """

    label: str
    source: str
    origin: Origin
    artifact: Artifact | None = None

    @property
    def meta(self) -> dict[str, Any]:
        return dict(self.artifact.meta or {}) if self.artifact is not None else {}

    @property
    def artifact_id(self) -> int | None:
        return int(self.artifact.id) if self.artifact is not None and self.artifact.id is not None else None


def _error(message: str) -> Exception:
    from backend.jobs.configs import ConfigError  # configs imports this module: import when raised

    return ConfigError(message)


def _artifact(ws: Workspace, ref: str) -> Artifact | None:
    try:
        return store.get_artifact(ws, ref)
    except store.ArtifactNotFound:
        return None


def _existing_path(ws: Workspace, ref: str) -> Path | None:
    for candidate in (Path(ref).expanduser(), ws.home / ref):
        if candidate.exists():
            return candidate.resolve()
    return None


def _check_kind(artifact: Artifact, ref: str, expected: ArtifactKind | None, field: str) -> None:
    if expected is not None and artifact.kind != expected:
        raise _error(
            f"{field} {ref!r} is a {artifact.kind} artifact (id {artifact.id}), not a {expected} one; "
            f"name a {expected} artifact, a local folder or a hub id"
        )


def _as_folder(path: Path, ref: str, field: str) -> Path:
    if not path.is_dir():
        raise _error(f"{field} {ref!r} is a file; give the model's folder (save_pretrained output)")
    return path


def _explicit_forms(ref: str, artifact: Artifact | None, path: Path | None, hub: bool) -> list[str]:
    forms = []
    if artifact is not None:
        forms.append(f"{ARTIFACT_PREFIX}{ref} for the {artifact.kind} artifact (id {artifact.id})")
    if path is not None:
        forms.append(f"{path} for the local folder")
    if hub:
        forms.append(f"{HUB_PREFIX}{ref} for the hub model")
    return forms


def _lookup(ws: Workspace, ref: str, expected: ArtifactKind | None, field: str) -> tuple[ResolvedModel, str]:
    """The model ``ref`` names and the shortest stored form that names it unambiguously."""
    if not isinstance(ref, str) or not ref.strip():
        raise _error(f"{field} is required: an artifact, a local folder or a hub id")
    ref = ref.strip()

    if ref.startswith(ARTIFACT_PREFIX):
        name = ref.removeprefix(ARTIFACT_PREFIX).strip()
        artifact = _artifact(ws, name) if name else None
        if artifact is None:
            raise _error(f"{field} {ref!r}: no artifact {name!r} (see `recap-studio runs artifacts`)")
        _check_kind(artifact, ref, expected, field)
        resolved = ResolvedModel(artifact.name, str(store.artifact_path(ws, artifact)), "artifact", artifact)
        return resolved, name if _bare_means(ws, name, artifact) else f"{ARTIFACT_PREFIX}{name}"

    if ref.startswith(HUB_PREFIX):
        hub_id = ref.removeprefix(HUB_PREFIX).strip()
        if not _HUB_ID.match(hub_id):
            raise _error(f"{field} {ref!r}: {hub_id!r} is not a hub id (name or org/name)")
        clash = _artifact(ws, hub_id) is not None or _existing_path(ws, hub_id) is not None
        return ResolvedModel(hub_id, hub_id, "hub"), ref if clash else hub_id

    if ref.startswith(_EXPLICIT_PATH) or "\\" in ref:
        path = _existing_path(ws, ref)
        if path is None:
            raise _error(f"{field} {ref!r}: no such folder")
        path = _as_folder(path, ref, field)
        return ResolvedModel(str(path), str(path), "path"), str(path)

    artifact = _artifact(ws, ref)
    path = _existing_path(ws, ref)
    hub = bool(_ORG_NAME.match(ref))
    if artifact is not None and (path is not None or hub):
        raise _error(
            f"{field} {ref!r} is ambiguous; write "
            + " or ".join(_explicit_forms(ref, artifact, path, hub and path is None))
        )
    if artifact is not None:
        _check_kind(artifact, ref, expected, field)
        return ResolvedModel(artifact.name, str(store.artifact_path(ws, artifact)), "artifact", artifact), ref
    if path is not None:
        path = _as_folder(path, ref, field)
        return ResolvedModel(str(path), str(path), "path"), str(path)
    if ref.isdigit():
        raise _error(
            f"{field} {ref!r}: no artifact with id {ref} (a hub id would be written {HUB_PREFIX}{ref})"
        )
    if _HUB_ID.match(ref):
        return ResolvedModel(ref, ref, "hub"), ref
    raise _error(
        f"{field} {ref!r} is not an artifact, an existing folder, or a hub id (org/name); "
        f"explicit forms: {ARTIFACT_PREFIX}NAME, {HUB_PREFIX}org/name, ./folder"
    )


def _bare_means(ws: Workspace, name: str, artifact: Artifact) -> bool:
    """Whether ``name`` written bare would mean ``artifact`` and nothing else."""
    again = _artifact(ws, name)
    return (
        again is not None
        and again.id == artifact.id
        and _existing_path(ws, name) is None
        and not _ORG_NAME.match(name)
    )


def resolve_reference(ws: Workspace, ref: str, *, expected: ArtifactKind | None, field: str) -> str:
    """Check a model reference at submit time and return the form the config stores.

    The stored form is the shortest that means the same thing now: a bare artifact name or id,
    a bare hub id, ``artifact:NAME`` / ``hf:org/name`` only where the bare form is ambiguous,
    and a local folder as its absolute path. ``expected`` is the artifact kind the field
    accepts (an artifact of another kind is refused); ``field`` names the field in errors.
    """
    return _lookup(ws, ref, expected, field)[1]


def open_reference(
    ws: Workspace, stored: str, *, expected: ArtifactKind | None = None, field: str = "model"
) -> ResolvedModel:
    """What a stored reference names, for the job that loads it.

    Accepts every form :func:`resolve_reference` stores and what older versions stored (bare
    artifact names and ids, absolute folders, bare hub ids). A bare name that has become
    ambiguous since it was stored (an artifact of that name registered meanwhile) is refused
    with the explicit forms to use, never guessed.
    """
    return _lookup(ws, stored, expected, field)[0]
