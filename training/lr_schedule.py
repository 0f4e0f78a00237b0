"""Learning-rate schedules as plain functions of the optimizer step, shared by the training jobs.

Why a function and not a ``torch.optim.lr_scheduler``: a job resumed after ``kill -9`` knows its
step, so it recomputes the rate it would have used, with no scheduler state to checkpoint or to
get out of step with the optimizer. ``captioner_train`` and ``t2i_train`` both call
:func:`lr_factor` with their own options (``lr_schedule``, ``lr_warmup_steps``), so the two jobs
cannot drift apart in what "cosine" or "warm-up" means.
"""

from __future__ import annotations

import math

from backend.jobs.configs import LR_SCHEDULES


def lr_factor(step: int, total_steps: int, schedule: str = "constant", warmup_steps: int = 0) -> float:
    """The share of its learning rate that optimizer step ``step`` (0-based, of ``total_steps``) uses.

    * warm-up: ``(step + 1) / warmup_steps`` for the first ``warmup_steps`` steps (the first step
      already moves, unlike a warm-up from zero);
    * then ``constant``: 1; ``cosine``: ``0.5 (1 + cos(pi k / n))`` over the ``n`` steps after the
      warm-up (``k`` counts them from 0), from 1 towards 0 at the end of the run.
    """
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown lr_schedule {schedule!r}; choose {' or '.join(LR_SCHEDULES)}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = total_steps - warmup_steps
    if schedule == "constant" or decay_steps <= 0:
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * min(step - warmup_steps, decay_steps) / decay_steps))
