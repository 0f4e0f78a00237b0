"""``selftest``: a job without models, for checking the job machinery end to end.

It processes ``config["items"]`` items, sleeping ``config["delay_s"]`` per item, and records
each item as a :class:`RunMetric` named ``"item"`` at ``step=i`` — written once per run
(check and insert in one write transaction), so tests can kill and resume it and count
that every item was done exactly once. Options for tests: ``fail_after`` (raise after that many
items; older configs say ``fail`` too, where a missing ``fail_after`` means 0) and ``ignore_stop``
(ignore SIGTERM, to exercise the SIGKILL path; not offered by the CLI or the form).
"""

from __future__ import annotations

import time

from backend.jobs.context import JobContext

ITEM = "item"


class SelftestFailure(RuntimeError):
    pass


def run(ctx: JobContext) -> None:
    items = int(ctx.config.get("items", 10))
    delay_s = float(ctx.config.get("delay_s", 0.05))
    fail_after = ctx.config.get("fail_after")
    fail = bool(ctx.config.get("fail", fail_after is not None))
    fail_after = int(fail_after or 0)
    ignore_stop = bool(ctx.config.get("ignore_stop", False))

    done_steps = ctx.done_steps(ITEM)
    done = len(done_steps)
    ctx.progress(done, items)
    ctx.logger.info("selftest: %d items, %d already done, %.3f s each", items, done, delay_s)
    for i in range(items):
        if fail and done >= fail_after:
            raise SelftestFailure(f"selftest asked to fail after {done} items")
        if ctx.stop_requested and not ignore_stop:
            ctx.logger.info("selftest: stop requested, leaving after %d items", done)
            return
        if i in done_steps:
            continue
        time.sleep(delay_s)
        if ctx.metric_once(i, ITEM, float(i)):
            done += 1
            ctx.logger.info("selftest: item %d done (%d/%d)", i, done, items)
        ctx.progress(done, items)
    if fail:
        raise SelftestFailure(f"selftest asked to fail after {done} items")
