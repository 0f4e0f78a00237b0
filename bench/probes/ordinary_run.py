"""One ordinary studio run to its end, for the probes: why a helper, not a side script, is that a
probe must train through the same job queue as the experiment it questions."""

from __future__ import annotations

import time
from typing import Any

from backend import jobs
from backend.jobs.configs import new_run
from backend.workspace import Workspace


def run_to_end(ws: Workspace, kind: str, config: dict[str, Any], artifact_kind: str, note: str = "") -> list[int]:
    """Queue a ``kind`` run with ``config``, run it in this process, print its outcome and return
    the ids of the ``artifact_kind`` artifacts it registered."""
    started = time.perf_counter()
    run = new_run(ws, kind, config)
    final = jobs.run_foreground(ws, int(run.id))  # type: ignore[arg-type]
    made = [int(a.id) for a in jobs.list_artifacts(ws, kind=artifact_kind, run_id=int(run.id))]  # type: ignore[arg-type]
    print(f"run {run.id} {final.status} in {time.perf_counter() - started:.0f} s: artifact {made} ({note})")
    return made
