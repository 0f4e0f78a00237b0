"""Rate and ETA maths for job progress.

Why a sliding window rather than done/elapsed: a resumed run starts with many items
already done (they must not count as instant work), and throughput changes during a run
(warm-up, caches), so the recent rate predicts the remaining time better.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class RateMeter:
    """Items per second over the last ``window_s`` seconds of ``update`` calls."""

    def __init__(self, window_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self.clock = clock
        self._samples: deque[tuple[float, int]] = deque()

    def update(self, done: int) -> None:
        now = self.clock()
        if self._samples and done < self._samples[-1][1]:
            self._samples.clear()  # the counter went back (a job restarted its count)
        self._samples.append((now, done))
        # keep one sample at or before the window start so the window stays full
        while len(self._samples) > 2 and self._samples[1][0] <= now - self.window_s:
            self._samples.popleft()

    def rate(self) -> float | None:
        if len(self._samples) < 2:
            return None
        (t0, d0), (t1, d1) = self._samples[0], self._samples[-1]
        if t1 <= t0:
            return None
        return (d1 - d0) / (t1 - t0)


def eta_seconds(done: int, total: int | None, rate: float | None) -> float | None:
    """Seconds left at ``rate``; 0 when finished, None when unknown."""
    if total is None:
        return None
    remaining = max(total - done, 0)
    if remaining == 0:
        return 0.0
    if not rate or rate <= 0:
        return None
    return remaining / rate
