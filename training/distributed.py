"""Training jobs on several processes under ``accelerate launch``: the roles, the sharding, the syncs.

A run whose config asks for ``processes`` > 1 runs like this:

* **supervisor** — the runner the studio (or the CLI) started: the run row's pid and the leader
  of its process group, as for any run. It does not train. It writes ``runs/<id>/accelerate.yaml``
  and calls ``accelerate launch`` in-process (:func:`supervise`; accelerate hands over to the torch
  elastic agent), whose N workers are ``python -m training.runner RUN_ID --home DIR --worker``.
  It keeps the heartbeat, and turns the workers' ends into the run's status: a worker killed by
  a signal makes the run ``interrupted`` (resumable), a worker's error makes it ``failed`` with
  that worker's message. Cancel signals the supervisor's group as for any run; the agent passes
  SIGTERM on to the workers (torch elastic starts each in its own session), and a worker dies
  with its parent (``PR_SET_PDEATHSIG``), so a SIGKILL of the group leaves no orphan training.
* **workers** — ranks 0..N-1 (DDP through accelerate: gloo on the CPU, NCCL on GPUs). **Rank 0
  is the one writer**: progress, metrics, checkpoints, samples, artifacts; the other ranks get a
  :class:`QuietContext` whose reporting calls write nothing, so no second writer can exist.

Why the global batch is sharded here and not by a DistributedSampler: the T2I caption mix draws
every example's caption, crop and noise from generators seeded with ``(seed, step, micro)`` (see
:mod:`training.t2i.mixdata`). Every rank draws the *whole* micro-batch (cheap: a few numbers per
example), then trains on its contiguous slice (:func:`shard`), so the draws, the usage counts and
the resume point of an N-process run are those of a 1-process run with the same global batch, and
a run resumed after a kill draws exactly what an uninterrupted one draws. The loss of each slice is
weighted by its share of the global batch (times N, which DDP's gradient averaging divides out),
so the gradient is the 1-process gradient up to float rounding.

What is refused: FSDP, DeepSpeed and Megatron-LM (an accelerate config or environment that asks
for them). The jobs checkpoint, average (EMA), merge (LoRA) and render validation images from
*whole* weights on rank 0; sharded weights would need gathered state dicts in all of these.
DDP covers the models this studio fine-tunes at their real sizes: each fits whole on one GPU
(SD-1.5's UNet is 860M parameters, BLIP-large 470M; Adam states included, well under an H100).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from backend.jobs.context import JobContext, JobStopped

#: environment of a worker: the supervisor's pid (the row's owner) and the marker of the role
OWNER_ENV = "RECAP_RUN_OWNER_PID"
WORKER_ENV = "RECAP_DIST_WORKER"
#: a collective may wait this long while rank 0 evaluates or renders validation images alone
COLLECTIVE_TIMEOUT = timedelta(hours=2)
OUTCOMES_DIR = "processes"
ACCELERATE_CONFIG = "accelerate.yaml"
REFUSED_ENV = {
    "ACCELERATE_USE_FSDP": "FSDP",
    "ACCELERATE_USE_DEEPSPEED": "DeepSpeed",
    "ACCELERATE_USE_MEGATRON_LM": "Megatron-LM",
}


class DistributedError(RuntimeError):
    """A multi-process run that cannot start or went wrong; the message says what to change."""


class WorkerLost(RuntimeError):  # noqa: N818 - it names what happened
    """A worker died without reporting (kill -9, OOM killer, crash): the run is *interrupted*
    and resumes from rank 0's last checkpoint."""


# --------------------------------------------------------------------------- who am I


@dataclass(frozen=True)
class Dist:
    """This process's place in the run: rank, world size, and the device it trains on."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def main(self) -> bool:
        """Rank 0: the one writer of checkpoints, metrics, samples and artifacts."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def worker_env() -> bool:
    """Is this process a worker of a multi-process run (started by :func:`supervise`)?"""
    return os.environ.get(WORKER_ENV) == "1" and int(os.environ.get("WORLD_SIZE", "1")) > 1


def refuse_sharding_backends() -> None:
    """FSDP / DeepSpeed / Megatron-LM asked for through accelerate's environment: a clear error."""
    for var, name in REFUSED_ENV.items():
        if os.environ.get(var, "false").lower() in ("1", "true", "yes"):
            raise DistributedError(
                f"{name} is not supported for studio training jobs ({var} is set): they run under DDP "
                "(one whole copy of the model per process), because checkpoints, EMA, LoRA merging and "
                "validation images are made from whole weights on rank 0. Launch with the studio's "
                "'processes' option (it writes its own accelerate config), or unset it."
            )


def setup(device: Any) -> Dist:
    """Join the process group when this is a worker (gloo on the CPU, NCCL on GPUs, through
    accelerate's ``PartialState``) and return this process's :class:`Dist`; a single process
    gets ``Dist()`` on ``device`` and initialises nothing."""
    import torch

    device = torch.device(device)
    if not worker_env():
        return Dist(device=str(device))
    refuse_sharding_backends()
    from accelerate import PartialState

    state = PartialState(cpu=device.type == "cpu", timeout=COLLECTIVE_TIMEOUT)
    kind = str(state.distributed_type).rsplit(".", 1)[-1]
    if kind not in ("MULTI_CPU", "MULTI_GPU", "MULTI_XPU", "MULTI_NPU", "MULTI_MLU", "MULTI_MUSA"):
        raise DistributedError(f"distributed type {kind} is not supported here; the jobs run under DDP only")
    here = state.device if device.type != "cpu" else torch.device("cpu")
    if here.type == "cuda":
        torch.cuda.set_device(here)
    return Dist(state.process_index, state.num_processes, state.local_process_index, str(here))


# --------------------------------------------------------------------------- sharding and syncs


def shard(n: int, dist: Dist) -> slice:
    """This rank's contiguous slice of a global batch of ``n`` examples (sizes differ by at most 1)."""
    return slice(dist.rank * n // dist.world, (dist.rank + 1) * n // dist.world)


def _tensor(values: Sequence[float], dist: Dist) -> Any:
    import torch

    return torch.tensor(list(values), dtype=torch.float64, device=dist.device)


def all_sum(values: Sequence[float], dist: Dist) -> list[float]:
    """Sum ``values`` over the ranks (identity in one process)."""
    if not dist.active:
        return [float(v) for v in values]
    import torch.distributed as td

    tensor = _tensor(values, dist)
    td.all_reduce(tensor, op=td.ReduceOp.SUM)
    return [float(v) for v in tensor.tolist()]


def step_sync(loss_share: float, stop: bool, dist: Dist) -> tuple[float, bool]:
    """One collective per optimizer step: the global loss (each rank's share summed) and whether
    any rank was asked to stop — so every rank stops after the *same* step (a rank that went on
    alone would wait forever in the next gradient all-reduce)."""
    loss, stops = all_sum([loss_share, 1.0 if stop else 0.0], dist)
    return loss, stops > 0


def gather(obj: Any, dist: Dist) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` in one process)."""
    if not dist.active:
        return [obj]
    import torch.distributed as td

    out: list[Any] = [None] * dist.world
    td.all_gather_object(out, obj)
    return out


def barrier(dist: Dist) -> None:
    if dist.active:
        import torch.distributed as td

        td.barrier()


@contextlib.contextmanager
def no_sync(modules: Sequence[Any], skip: bool) -> Iterator[None]:
    """Skip DDP's gradient all-reduce for ``modules`` while ``skip`` (the micro-batches of an
    accumulation group before the last one); the last backward reduces the sum."""
    with contextlib.ExitStack() as stack:
        if skip:
            import torch

            for module in modules:
                if isinstance(module, torch.nn.parallel.DistributedDataParallel):
                    stack.enter_context(module.no_sync())
        yield


def wrap_ddp(module: Any, dist: Dist) -> Any:
    """``module`` in torch's DistributedDataParallel when there are several processes (what
    ``accelerator.prepare`` does for DDP), else ``module`` itself."""
    if not dist.active:
        return module
    import torch

    device = torch.device(dist.device)
    ids = [device.index if device.index is not None else dist.local_rank] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)


# --------------------------------------------------------------------------- the workers' contexts


class QuietContext(JobContext):
    """The context of ranks 1..N-1: the job's reporting calls write nothing (rank 0 writes them)."""

    def progress(self, done: int, total: int | None = None, message: str | None = None) -> None:
        self._done = int(done)

    def flush_progress(self) -> None:
        return None

    def metric(self, step: int, name: str, value: float) -> None:
        return None

    def metric_once(self, step: int, name: str, value: float) -> bool:
        return False

    def artifact(self, kind: str, name: str, path: Any, meta: dict[str, Any] | None = None) -> Any:
        raise DistributedError("only rank 0 registers artifacts")

    def start_heartbeat(self) -> None:
        return None


def die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL this worker when its parent (the agent in the supervisor) dies, so a
    SIGKILL of the run's process group leaves no worker training on; exit at once if the parent
    is already gone. Elsewhere (no prctl) it is a no-op."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    if parent and os.getppid() != parent:
        os._exit(1)


def outcome_path(run_dir: Path, rank: int) -> Path:
    return run_dir / OUTCOMES_DIR / f"rank-{rank}.json"


def write_outcome(run_dir: Path, rank: int, status: str, message: str = "", **extra: Any) -> None:
    """This rank's state for the supervisor (``running`` at start, then how it ended), atomically."""
    path = outcome_path(run_dir, rank)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "rank": rank,
        "pid": os.getpid(),
        "status": status,
        "message": message,
        "time": time.time(),
        **extra,
    }
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_outcomes(run_dir: Path) -> dict[int, dict[str, Any]]:
    out = {}
    folder = run_dir / OUTCOMES_DIR
    for path in sorted(folder.glob("rank-*.json")) if folder.is_dir() else []:
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(path.read_text(encoding="utf-8"))
            out[int(data["rank"])] = data
    return out


# --------------------------------------------------------------------------- the supervisor


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def accelerate_config(processes: int, port: int) -> dict[str, Any]:
    """The run's own accelerate config: DDP over ``processes`` local processes. Written into the
    run folder and passed with ``--config_file``, so a user's default accelerate config (FSDP,
    DeepSpeed, other GPU ids) never changes how a studio run trains. ``MULTI_GPU`` is accelerate's
    name for its torchrun launcher; a worker whose run's device is the CPU joins with gloo."""
    return {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": "MULTI_GPU",
        "num_machines": 1,
        "machine_rank": 0,
        "num_processes": processes,
        "main_process_ip": "127.0.0.1",
        "main_process_port": port,
        "rdzv_backend": "static",
        "same_network": True,
        "mixed_precision": "no",  # the job applies its own (training.devices)
        "use_cpu": False,
        "gpu_ids": "all",
        "dynamo_config": {},
        "debug": False,
    }


def check_devices(config: dict[str, Any], processes: int) -> str:
    """Where the workers train, said before anything starts: ``cuda`` needs one GPU per process."""
    import torch

    requested = str(config.get("device", "auto"))
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if requested == "cpu" or (requested == "auto" and gpus == 0):
        return "cpu"
    if requested.startswith("cuda:"):
        raise DistributedError(
            f"device {requested} names one GPU, but processes {processes} trains on {processes} GPUs "
            "(one per process); set device to cuda or auto"
        )
    if gpus < processes:
        raise DistributedError(
            f"processes {processes} needs {processes} GPUs (one per process) and {gpus} "
            f"{'is' if gpus == 1 else 'are'} visible; set processes to at most {max(gpus, 1)}, "
            "or device cpu for CPU processes"
        )
    return "cuda"


def launch_argv(ws_home: Path, run_id: int, processes: int, config_file: Path, port: int) -> list[str]:
    """``accelerate launch`` arguments that start the workers (also logged as a command line)."""
    return [
        "--config_file", str(config_file),
        "--num_processes", str(processes),
        "--num_machines", "1",
        "--multi_gpu",
        "--main_process_ip", "127.0.0.1",
        "--main_process_port", str(port),
        "--mixed_precision", "no",
        "--dynamo_backend", "no",
        "--monitor_interval", "0.1",
        "--module", "training.runner", str(run_id), "--home", str(ws_home), "--worker",
    ]  # fmt: skip


@dataclass
class Launched:
    """What the launch left: how the agent ended, the failures it saw, and the ranks' own reports."""

    exit_code: int  # 0, or 128 + signal when the supervisor was signalled (accelerate's convention)
    failures: dict[int, tuple[int, int, float]]  # rank -> (pid, exit code, detected at)
    outcomes: dict[int, dict[str, Any]]


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(code).name
    except ValueError:
        return f"signal {code}"


#: how a collective fails in a rank whose peer vanished (gloo's transport, NCCL's communicator,
#: the c10d store): the consequence of another rank's death, never its cause
PEER_LOST = re.compile(
    r"gloo/transport|Connection (?:reset|closed) by peer|Broken pipe|DistBackendError|DistNetworkError"
    r"|NCCL communicator was aborted|ProcessGroupNCCL|ProcessGroupGloo|TCPStore",
)
#: a rank's death by these signals is a consequence too: NCCL's watchdog aborts (SIGABRT) a rank
#: whose peer died or whose collective timed out, and torch elastic's agent stops the surviving
#: ranks with SIGTERM once one died (stamped in the same whole second as the death that caused
#: it, a SIGTERMed rank 0 sorted before a SIGKILLed rank 1 and was named as the cause in a CI
#: run). A SIGTERM with no other death is still reported: consequences are the fallback.
CONSEQUENT_SIGNALS = frozenset({int(signal.SIGABRT), int(signal.SIGTERM)})
#: a rank's own error reported this much before another rank's death was detected came first; the
#: agent stamps a death in whole seconds (torch elastic's ``ProcessFailure.timestamp``), so only a
#: gap beyond that truncation and its monitor interval orders them
FIRST_BY = 2.0


def lost_peer(message: str) -> bool:
    """Does a rank's error say that a collective lost its peers (not what went wrong first)?"""
    return bool(PEER_LOST.search(message or ""))


def verdict(launched: Launched, processes: int) -> str:
    """The run's end from the launch: ``succeeded`` or ``cancelled`` (returned), or an exception —
    :class:`WorkerLost` (a worker died without reporting: *interrupted*) or
    :class:`DistributedError` (a worker failed: its message).

    Why not simply the earliest event: when one rank dies (kill -9, the OOM killer) the others
    fail in their next collective within milliseconds, and the agent stamps the death in whole
    seconds, so a survivor's "connection reset by peer" often looks earlier than the death that
    caused it. The kinds are therefore weighed first: a rank's own error (not a lost peer) that
    clearly came first fails the run; otherwise a death makes it *interrupted*; a run where every
    reported error is a lost peer (and NCCL aborts) is *interrupted* too.
    """
    outcomes = launched.outcomes
    main = outcomes.get(0, {})
    if not launched.failures:
        if main.get("status") in ("succeeded", "cancelled"):
            return str(main["status"])
        if launched.exit_code:  # the supervisor was signalled before rank 0 reported
            return "cancelled"
        raise DistributedError(f"the workers ended but rank 0 did not report how ({main or 'no report'})")
    deaths: list[tuple[float, str]] = []  # died without a word: the cause of an interruption
    errors: list[tuple[float, str]] = []  # a rank's own error: the cause of a failure
    echoes: list[tuple[float, str]] = []  # lost peers and aborts: consequences
    for rank, (pid, code, at) in launched.failures.items():
        report = outcomes.get(rank, {})
        if report.get("status") == "failed":
            message = str(report.get("message", ""))
            event = (float(report.get("time", at)), f"rank {rank} failed: {message}")
            (echoes if lost_peer(message) else errors).append(event)
        elif code < 0 or report.get("status") in (None, "running"):
            how = (
                f"was killed by {_signal_name(-code)}"
                if code < 0
                else f"exited with code {code} without reporting"
            )
            event = (float(at), f"process rank {rank} (pid {pid}) {how}")
            (echoes if -code in CONSEQUENT_SIGNALS else deaths).append(event)
    errors.sort()
    deaths.sort()
    echoes.sort()
    if errors and (not deaths or errors[0][0] < deaths[0][0] - FIRST_BY):
        raise DistributedError(errors[0][1])
    lost = deaths or echoes
    if not lost:  # every failure is a stop or a refusal the ranks reported themselves
        if main.get("status") == "cancelled":
            return "cancelled"
        first = min(launched.failures)
        raise DistributedError(f"rank {first}: {outcomes.get(first, {}).get('message') or 'failed'}")
    raise WorkerLost(
        f"{lost[0][1]}; the other {processes - 1} process(es) were stopped. Resume continues from "
        "rank 0's last checkpoint."
    )


def supervise(ctx: JobContext, processes: int) -> str:
    """Run the job of ``ctx``'s run on ``processes`` workers under ``accelerate launch``; returns
    ``"succeeded"``, raises :class:`JobStopped` when the workers stopped on request, or
    :class:`WorkerLost` / :class:`DistributedError` (see :func:`verdict`)."""
    import yaml
    from accelerate.commands.launch import launch_command, launch_command_parser
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    refuse_sharding_backends()
    where = check_devices(ctx.config, processes)
    port = free_port()
    config_file = ctx.run_dir / ACCELERATE_CONFIG
    config_file.write_text(
        yaml.safe_dump(accelerate_config(processes, port), sort_keys=False), encoding="utf-8"
    )
    folder = ctx.run_dir / OUTCOMES_DIR
    for old in folder.glob("*.json") if folder.is_dir() else []:
        old.unlink()
    argv = launch_argv(ctx.ws.home.resolve(), ctx.run_id, processes, config_file, port)
    ctx.logger.info(
        "training on %d %s processes (DDP): accelerate launch %s", processes, where, " ".join(argv)
    )
    os.environ[OWNER_ENV] = str(ctx.pid)
    os.environ[WORKER_ENV] = "1"
    saved = {
        sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
    }
    failures: dict[int, tuple[int, int, float]] = {}
    exit_code = 0
    try:
        launch_command(launch_command_parser().parse_args(argv))
    except ChildFailedError as exc:
        failures = {
            int(rank): (int(f.pid), int(f.exitcode), float(f.timestamp)) for rank, f in exc.failures.items()
        }
    except SystemExit as exc:  # accelerate exits 128 + signal when the agent was signalled
        exit_code = int(exc.code or 0) if isinstance(exc.code, int) else 1
        ctx.request_stop()
    finally:
        for sig, handler in saved.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, handler)
        for var in (OWNER_ENV, WORKER_ENV):
            os.environ.pop(var, None)
    launched = Launched(exit_code, failures, read_outcomes(ctx.run_dir))
    ctx.logger.info(
        "workers ended: %s",
        {r: o.get("status") for r, o in sorted(launched.outcomes.items())} or "no reports",
    )
    result = verdict(launched, processes)
    if result == "cancelled":
        raise JobStopped()
    return result
