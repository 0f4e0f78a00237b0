"""The ``recap-studio`` console script pauses the garbage collector for start-up only.

``studio/startup.py`` pauses Python's cyclic collector before the CLI's imports so the server
starts sooner (bench/cold_start.py); every command but ``serve`` resumes it at once, and
``serve`` resumes it once the server answers (every browser test starts the studio through
this script, see ``conftest.start_studio``). A collector left paused would let a long job's
cyclic garbage pile up, so these tests check it comes back on.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import pytest

from studio import startup


@pytest.fixture
def collector_restored():  # noqa: ANN201
    yield
    gc.enable()  # whatever happened, the test process keeps collecting


def test_resume_collects_freezes_and_enables(collector_restored: None) -> None:
    startup.pause_collector()
    assert not gc.isenabled()
    garbage = []
    garbage.append(garbage)  # a cycle only the collector frees
    del garbage
    startup.resume_collector()
    assert gc.isenabled()
    assert gc.get_freeze_count() > 0  # the start-up objects left the scanned generations
    gc.unfreeze()
    startup.resume_collector()  # running already: nothing to do
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_the_console_script_resumes_the_collector_for_other_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, collector_restored: None
) -> None:
    monkeypatch.setattr(sys, "argv", ["recap-studio", "--home", str(tmp_path / "home"), "datasets"])
    with pytest.raises(SystemExit) as done:
        startup.main()
    assert done.value.code in (0, None)
    assert gc.isenabled()
    gc.unfreeze()


def test_the_console_script_is_the_startup_entry() -> None:
    script = Path(sys.executable).parent / "recap-studio"
    assert script.exists(), "install the project (scripts/install.sh) to get the console script"
    assert "studio.startup" in script.read_text(encoding="utf-8")
