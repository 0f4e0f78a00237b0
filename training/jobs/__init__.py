"""The registry of job kinds: ``run.kind`` -> the function that does the work.

Why lazy: the runner imports only the job it executes, so a selftest never pays for
torch and a recaption never imports the T2I trainer. To add a kind, add one line here
pointing at a module with a ``run(ctx: JobContext) -> None`` function.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from backend.jobs.context import JobContext

JobFn = Callable[[JobContext], None]


class UnknownJobKind(LookupError):
    pass


def _lazy(module: str, attr: str = "run") -> JobFn:
    def job(ctx: JobContext) -> None:
        getattr(importlib.import_module(module), attr)(ctx)

    job.__qualname__ = job.__name__ = f"{module}.{attr}"
    return job


JOBS: dict[str, JobFn] = {
    "selftest": _lazy("training.jobs.selftest"),
    "captioner_train": _lazy("training.jobs.captioner_train"),
    "recaption": _lazy("training.jobs.recaption"),
    "clip_score": _lazy("training.jobs.clip_score"),
    "t2i_train": _lazy("training.jobs.t2i_train"),
    "generate": _lazy("training.jobs.generate"),
    "t2i_eval": _lazy("training.jobs.t2i_eval"),
}


def get_job(kind: str) -> JobFn:
    try:
        return JOBS[kind]
    except KeyError:
        known = ", ".join(sorted(JOBS))
        raise UnknownJobKind(f"unknown job kind {kind!r} (known: {known})") from None
