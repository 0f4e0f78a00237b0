"""One real local Ray cluster per test module (``ray start --head --num-cpus 2``).

Use it from a test module with ``pytest_plugins = ("tests.ray_cluster",)``; the ``ray_cluster``
fixture yields a :class:`RayCluster` whose ``address`` goes into a run's ``ray_address``, exactly
as a user points the studio at a cluster. Why a started cluster rather than ``ray.init`` in the
test process: the runs under test are separate processes (the runner is the Ray driver), so
they must join a cluster that outlives them — and a test can then kill a Ray worker or a runner
and watch the cluster carry on.

Kept private and lean: its own temp folder and ports (another cluster on the machine is never
touched), token authentication off (it listens on 127.0.0.1 only), a small object store, and
it is stopped by its own process group at the end of the module (never ``ray stop``, which
would stop every cluster on the machine). Nothing reaches the internet: usage statistics are
off for the head and for every driver the runs start (they inherit this process's environment).
A cluster that cannot start FAILS the tests that need it, with Ray's own log: these tests use a
real server, and a skip would hide a broken installation.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port

START_TIMEOUT_S = 120


@dataclass(frozen=True)
class RayCluster:
    address: str  # host:port for ray_address
    pgid: int  # the process group of the head and every worker it starts
    temp_dir: Path

    def processes(self, name: str = "") -> list[int]:
        """Pids of this cluster's processes whose command line contains ``name`` (e.g. an actor's
        class). Ray puts each worker in a process group of its own, but all of them stay in the
        session ``ray start`` opened: that is how this cluster's processes are told from others'."""
        import psutil

        found = []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                if name in " ".join(proc.info["cmdline"] or []) and os.getsid(proc.info["pid"]) == self.pgid:
                    found.append(int(proc.info["pid"]))
        return found

    def stop(self, head: subprocess.Popen[bytes]) -> None:
        """SIGTERM to the head (``ray start --block`` stops its node), then SIGKILL to whatever of
        the session is left: workers, a slow raylet."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(timeout=5)
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(timeout=5)


#: inherited by the drivers (the runs' runner processes) and the cluster's processes
RAY_ENV = {
    "RAY_AUTH_MODE": "disabled",  # 127.0.0.1 only; the runs join without a token
    "RAY_USAGE_STATS_ENABLED": "0",  # no usage report to the internet
    "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",  # workers run this interpreter as it is, never `uv run`
}


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[RayCluster]:
    try:
        import ray.data  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"the Ray tests need ray[data] (pip install -e '.[test]'): {exc}", pytrace=False)
    # short: Ray's socket paths must fit in 107 bytes
    temp_dir = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    port = free_port()
    saved = {name: os.environ.get(name) for name in RAY_ENV}
    os.environ.update(RAY_ENV)
    ray = Path(sys.executable).with_name("ray")
    command = [
        str(ray), "start", "--head", "--block", "--num-cpus", "2", "--node-ip-address", "127.0.0.1",
        "--port", str(port),
        "--dashboard-port", str(free_port()), "--dashboard-agent-listen-port", str(free_port()),
        "--include-dashboard", "false", "--disable-usage-stats",
        "--object-store-memory", str(200 * 1024 * 1024), "--temp-dir", str(temp_dir),
    ]  # fmt: skip
    log = temp_dir / "head.log"
    head = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    cluster = RayCluster(f"127.0.0.1:{port}", head.pid, temp_dir)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while "Ray runtime started" not in log.read_text(errors="replace"):
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"a local Ray cluster did not start (ray start --head, {START_TIMEOUT_S} s):\n"
                    f"{log.read_text(errors='replace')[-3000:]}",
                    pytrace=False,
                )
            time.sleep(0.5)
        yield cluster
    finally:
        cluster.stop(head)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(temp_dir, ignore_errors=True)
