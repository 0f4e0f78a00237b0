"""Login cost for a known and an unknown user name: the ratio should be near 1.

Issue 9 found 5 ms for an unknown name against 190 ms for a real one (the Argon2 check was
skipped), so anyone could tell which user names exist by timing the login form. Now an
unknown or disabled name is checked against a dummy Argon2 hash. The tests check that the
verification happens (they count it); this script measures what it costs.

    .venv/bin/python bench/login_cost.py [--repeat 15]

Measures :func:`backend.users.verify_login` (the check the login form runs, without the
back-off, which would lock the name after five failures) on a fresh workspace: the median of
``--repeat`` wrong-password tries per case, the cases taking turns. Prints the load average too (this machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable from a checkout without installing the package

from backend.db import migrate  # noqa: E402
from backend.users import add_user, set_active, verify_login  # noqa: E402
from backend.workspace import Workspace  # noqa: E402


def median_ms(ws: Workspace, names: list[str], repeat: int) -> dict[str, float]:
    """Median time per name; the names take turns so that a change in load hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(repeat):
        for name in names:
            start = time.perf_counter()
            verify_login(ws, name, "not-the-password")
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(Path(tmp) / "home").ensure()
        migrate(ws)
        add_user(ws, "known", "annotator", "known-user-password")
        add_user(ws, "disabled", "annotator", "disabled-user-password")
        set_active(ws, "disabled", False)
        verify_login(ws, "nobody", "warm-up-password")  # the dummy hash is made once per process
        ms = median_ms(ws, ["known", "nobody", "disabled"], args.repeat)
        known, unknown, disabled = ms["known"], ms["nobody"], ms["disabled"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"known user, wrong password:    {known:8.1f} ms (median of {args.repeat})")
    print(f"unknown user:                  {unknown:8.1f} ms")
    print(f"disabled user:                 {disabled:8.1f} ms")
    print(f"unknown / known:               {unknown / known:8.2f}  (1.00 = indistinguishable)")
    print(f"disabled / known:              {disabled / known:8.2f}")
    print(f"load average (1 min):          {load:8.2f}")
    print(
        json.dumps(
            {
                "known_ms": round(known, 2),
                "unknown_ms": round(unknown, 2),
                "disabled_ms": round(disabled, 2),
                "unknown_over_known": round(unknown / known, 3),
                "disabled_over_known": round(disabled / known, 3),
                "repeat": args.repeat,
                "load": load,
            }
        )
    )


if __name__ == "__main__":
    main()
