"""The registry of job kinds: ``run.kind`` -> the function that does the work.

Built from :data:`backend.jobs.configs.KINDS` (each kind names its module), so a kind is declared
once; ``tests/test_job_kinds.py`` checks that every module imports and has ``run``. Why lazy: the
runner imports only the job it executes, so a selftest never pays for torch and a recaption never
imports the T2I trainer.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from backend.jobs.configs import KINDS
from backend.jobs.context import JobContext

JobFn = Callable[[JobContext], None]


class UnknownJobKind(LookupError):
    pass


def _lazy(module: str, attr: str = "run") -> JobFn:
    def job(ctx: JobContext) -> None:
        getattr(importlib.import_module(module), attr)(ctx)

    job.__qualname__ = job.__name__ = f"{module}.{attr}"
    return job


JOBS: dict[str, JobFn] = {name: _lazy(kind.module) for name, kind in KINDS.items()}


def get_job(kind: str) -> JobFn:
    try:
        return JOBS[kind]
    except KeyError:
        known = ", ".join(sorted(JOBS))
        raise UnknownJobKind(f"unknown job kind {kind!r} (known: {known})") from None
