"""Model-library version check, run once at the start of every model job.

Why: the model libraries (transformers, diffusers, peft, accelerate, torch, open_clip)
depend on each other in ways pip cannot see. transformers 5.24, for instance, refuses
peft < 0.22 only when a LoRA call first touches peft — deep inside a job, as a traceback —
while pip happily installs peft 0.21 beside it, because transformers does not declare peft
as a dependency. A job should instead fail at its first line with one sentence naming the
package, the version installed and the version needed.

Two sources of requirements are checked, both read without importing the libraries
(importing transformers costs seconds and may itself be what breaks):

* what each installed model library *declares* (its ``Requires-Dist`` metadata), limited
  to the other model libraries, like ``pip check`` would;
* what it *enforces at run time without declaring*: the ``MIN_PEFT_VERSION`` constants that
  transformers and diffusers compare against the installed peft.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

MODEL_LIBRARIES = ("torch", "torchvision", "transformers", "diffusers", "peft", "accelerate", "open_clip_torch")
# (package whose source holds the constant, module path inside it, the package the constant is about)
RUNTIME_MINIMUMS = (
    ("transformers", "transformers/integrations/peft.py", "peft"),
    ("diffusers", "diffusers/utils/constants.py", "peft"),
)
_MIN_PEFT = re.compile(r"^MIN_PEFT_VERSION\s*=\s*['\"]([^'\"]+)['\"]", re.MULTILINE)


class LibraryConflict(RuntimeError):
    """Installed model libraries that cannot work together; the message is one line per conflict."""


@dataclass(frozen=True)
class Conflict:
    package: str  # the package whose version is wrong
    installed: str
    needed: str  # a specifier, e.g. ">=0.22.0"
    needed_by: str  # "transformers 5.25.0"

    def __str__(self) -> str:
        return (
            f"{self.needed_by} needs {self.package}{self.needed}, but {self.package} {self.installed} "
            f"is installed: run `bash scripts/install.sh` (installs the locked versions) "
            f"or `pip install '{self.package}{self.needed}'`"
        )


def installed_versions(names: Iterable[str] = MODEL_LIBRARIES) -> dict[str, str]:
    """Installed version of each package that is installed (missing ones are left out)."""
    versions = {}
    for name in names:
        try:
            versions[_canonical(name)] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def declared_requirements(package: str) -> list[Requirement]:
    """The unconditional requirements a package declares (extras and other platforms left out)."""
    try:
        raw = metadata.requires(package) or []
    except metadata.PackageNotFoundError:
        return []
    requirements = []
    for line in raw:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        requirements.append(req)
    return requirements


def runtime_minimum(package: str, relative_source: str) -> str | None:
    """The ``MIN_PEFT_VERSION`` a library's source enforces at run time, read without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations))).parent
    try:
        match = _MIN_PEFT.search((root / relative_source).read_text(encoding="utf-8"))
    except OSError:
        return None
    return match.group(1) if match else None


def find_conflicts(
    installed: Mapping[str, str],
    declared: Mapping[str, Iterable[Requirement]],
    runtime: Mapping[str, Mapping[str, str]],
) -> list[Conflict]:
    """Conflicts among ``installed`` (canonical name -> version), as plain data in and out.

    ``declared``: package -> its declared requirements; ``runtime``: package -> {other
    package: minimum version it enforces at run time}. Only requirements between installed
    packages count: a library that is not installed is the job's own error to report.
    """
    conflicts = []
    for owner, requirements in declared.items():
        for req in requirements:
            name = _canonical(req.name)
            if name not in installed or not req.specifier:
                continue
            if not _satisfies(installed[name], str(req.specifier)):
                conflicts.append(
                    Conflict(name, installed[name], str(req.specifier), f"{owner} {installed[owner]}")
                )
    for owner, minimums in runtime.items():
        for other, minimum in minimums.items():
            name = _canonical(other)
            if name in installed and not _satisfies(installed[name], f">={minimum}"):
                conflicts.append(Conflict(name, installed[name], f">={minimum}", f"{owner} {installed[owner]}"))
    return conflicts


def check_model_libraries() -> None:
    """Raise :class:`LibraryConflict` with one line per conflict among the installed model libraries."""
    installed = installed_versions()
    declared = {
        name: [r for r in declared_requirements(name) if _canonical(r.name) in installed]
        for name in installed
    }
    runtime: dict[str, dict[str, str]] = {}
    for owner, source, about in RUNTIME_MINIMUMS:
        if owner in installed:
            minimum = runtime_minimum(owner, source)
            if minimum:
                runtime.setdefault(owner, {})[about] = minimum
    conflicts = find_conflicts(installed, declared, runtime)
    if conflicts:
        raise LibraryConflict("; ".join(str(c) for c in conflicts))


def _satisfies(version: str, specifier: str) -> bool:
    from packaging.specifiers import SpecifierSet

    try:
        return SpecifierSet(specifier).contains(Version(version), prereleases=True)
    except InvalidVersion:
        return True  # a local build we cannot parse: do not block the job on our guess


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
