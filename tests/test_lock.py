"""The lock (requirements.lock) and pyproject.toml tell one story (issue 9 §1).

install.sh installs through the lock; these checks catch the ways it silently drifts from the
ranges people install elsewhere: a dependency added to pyproject.toml without refreshing the lock,
a pin outside its range, or a venv that no longer holds the pinned versions.
"""

from __future__ import annotations

import os
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def locked() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, pinned = line.partition("==")
        assert sep, f"requirements.lock line {line!r} is not an exact pin (name==version)"
        pins[canonicalize_name(name.split("[", 1)[0])] = pinned.strip()
    return pins


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    for extra in project.get("optional-dependencies", {}).values():
        requirements += [Requirement(r) for r in extra if not r.startswith("recap-studio")]
    return requirements


def test_every_declared_dependency_is_pinned_inside_its_range() -> None:
    pins = locked()
    missing, outside = [], []
    for req in declared():
        if req.marker is not None and not req.marker.evaluate():
            continue
        pinned = pins.get(canonicalize_name(req.name))
        if pinned is None:
            missing.append(req.name)
        elif not req.specifier.contains(pinned, prereleases=True):
            outside.append(f"{req} (locked {pinned})")
    assert not missing, f"not in requirements.lock (run scripts/lock.sh): {missing}"
    assert not outside, f"locked outside pyproject.toml's range: {outside}"


@pytest.mark.skipif(
    os.environ.get("RECAP_STUDIO_UNLOCKED") == "1", reason="installed from the ranges on purpose"
)
def test_the_venv_holds_the_locked_versions() -> None:
    """What the tests run on is what the lock promises a fresh machine."""
    drift = []
    for name, pinned in locked().items():
        try:
            have = version(name)
        except PackageNotFoundError:
            continue  # a platform-specific pin (e.g. a wheel this OS does not take)
        if have != pinned:
            drift.append(f"{name} {have} (locked {pinned})")
    assert not drift, f"installed versions differ from requirements.lock: {drift}"
