"""Session-wide tiny captioners for any test that needs a real checkpoint folder.

Building a tiny model takes about a second; loading transformers takes several. Tests therefore
share one folder per family for the whole session. Use it from a test module with::

    pytest_plugins = ("tests.tiny_models",)

    def test_something(tiny_model_dir):
        path = tiny_model_dir("blip")   # built on first use, then reused

Treat the folder as read-only: tests that train or save must write their copies elsewhere
(``adapter.save(tmp_path / ...)``), so the order tests run in never matters.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from training.tiny import build_tiny


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``tiny_model_dir(family) -> Path`` of a ``save_pretrained`` folder (seed 0)."""
    root = tmp_path_factory.mktemp("tiny-models")
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = build_tiny(family, root / family, seed=0)
        return built[family]

    return get
