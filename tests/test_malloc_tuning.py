"""Runner processes get glibc malloc settings that keep CPU training's activations on the heap.

The speed-up itself is measured by ``bench/cpu_allocator.py``, not asserted here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from backend import jobs
from backend.jobs.launch import MALLOC_TUNING, MALLOC_TUNING_SWITCH, with_malloc_tuning
from backend.workspace import Workspace
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(60)


def test_the_tuning_fills_only_what_the_user_left_unset() -> None:
    env = with_malloc_tuning({"PATH": "/bin", "MALLOC_TRIM_THRESHOLD_": "0"})
    assert env["PATH"] == "/bin"
    assert env["MALLOC_TRIM_THRESHOLD_"] == "0"  # the user's own value wins
    assert env["MALLOC_MMAP_THRESHOLD_"] == MALLOC_TUNING["MALLOC_MMAP_THRESHOLD_"]
    assert env["MALLOC_TOP_PAD_"] == MALLOC_TUNING["MALLOC_TOP_PAD_"]


@pytest.mark.parametrize("off", ["0", "off", "false"])
def test_the_switch_leaves_glibc_defaults(off: str) -> None:
    env = with_malloc_tuning({MALLOC_TUNING_SWITCH: off})
    assert not set(MALLOC_TUNING) & set(env)


def test_a_spawned_runner_has_the_tuning_in_its_environment(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (*MALLOC_TUNING, MALLOC_TUNING_SWITCH):
        monkeypatch.delenv(name, raising=False)
    run = jobs.create_run(ws, "selftest", {"items": 2000, "delay_s": 0.01})
    jobs.launch(ws, run.id)
    pid = wait_for(lambda: jobs.get_run(ws, run.id).pid, 20, what="the runner's pid")
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    environ = dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)
    try:
        for name, value in MALLOC_TUNING.items():
            assert environ.get(name) == value, name
    finally:
        assert jobs.cancel_run(ws, run.id).status == "cancelled"
