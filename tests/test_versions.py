"""Model-library conflicts surface as one clear line at the start of a job, not deep inside it.

The integration test shadows the installed peft with an old one (a dist-info folder first on
PYTHONPATH, which is what an incompatible install looks like to importlib.metadata) and runs
a real runner subprocess.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from backend import jobs
from backend.workspace import Workspace
from tests.conftest import wait_for
from training.versions import check_model_libraries, find_conflicts, installed_versions


def test_a_runtime_minimum_that_pip_cannot_see_is_a_conflict() -> None:
    # transformers 5.24+ enforces peft>=0.22 at run time without declaring it (the issue-9 finding)
    conflicts = find_conflicts(
        {"transformers": "5.25.0", "peft": "0.21.2", "torch": "2.14.1"},
        {"transformers": [Requirement("torch>=2.2")]},
        {"transformers": {"peft": "0.22.0"}},
    )
    assert len(conflicts) == 1
    line = str(conflicts[0])
    assert "transformers 5.25.0 needs peft>=0.22.0" in line and "peft 0.21.2 is installed" in line
    assert "\n" not in line


def test_declared_requirements_between_installed_libraries_are_checked() -> None:
    conflicts = find_conflicts(
        {"diffusers": "0.42.1", "accelerate": "0.20.0"},
        {"diffusers": [Requirement("accelerate>=1.0"), Requirement("safetensors>=0.3")]},
        {},
    )
    assert [(c.package, c.needed) for c in conflicts] == [("accelerate", ">=1.0")]


def test_the_locked_install_has_no_conflict() -> None:
    check_model_libraries()  # raises with one line per conflict
    assert {"torch", "transformers", "diffusers", "peft"} <= set(installed_versions())


def _old_peft(tmp_path: Path) -> Path:
    site = tmp_path / "old-site"
    info = site / "peft-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: peft\nVersion: 0.1.0\n", encoding="utf-8")
    return site


@pytest.mark.timeout(120)
def test_a_job_with_an_incompatible_peft_fails_at_start_with_one_line(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(_old_peft(tmp_path)))
    # the check runs before the job reads its config, so any model kind shows it
    run = jobs.create_run(ws, "recaption", {"dataset": "none", "captioner": "none"})
    jobs.launch(ws, run.id)
    done = wait_for(
        lambda: (r := jobs.get_run(ws, run.id)).status in jobs.FINISHED and r, 60, what="the run to end"
    )
    assert done.status == "failed"
    assert done.message.startswith("incompatible model libraries: ")
    assert "peft 0.1.0 is installed" in done.message and "needs peft>=" in done.message
    assert "\n" not in done.message and "Traceback" not in done.message


@pytest.mark.timeout(120)
def test_a_selftest_runs_whatever_the_model_libraries(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(_old_peft(tmp_path)))
    run = jobs.create_run(ws, "selftest", {"items": 2, "delay_s": 0.0})
    jobs.launch(ws, run.id)
    done = wait_for(
        lambda: (r := jobs.get_run(ws, run.id)).status in jobs.FINISHED and r, 60, what="the run to end"
    )
    assert done.status == "succeeded", done.message
    assert os.environ["PYTHONPATH"].endswith("old-site")
