"""One policy for where a job runs and in which precision, for every job.

The policy: **an explicit request that cannot be honoured is an error; ``auto`` chooses and
logs.** A run asked for ``cuda`` on a machine without a GPU, or for fp16/bf16 where they cannot
be used, stops before loading anything with a message saying what to change — it does not
quietly run 100x slower or in another precision than its config (and the artifact's
provenance) says. ``auto`` is the way to say "whatever this machine has", and the log says what
it picked.

Why one module: the two training jobs each had a copy of ``effective_precision`` that turned
fp16 into full precision on the CPU silently, recaption/generate downgraded float16 with a
warning, while ``pick_device`` refused ``cuda`` without a GPU — three policies for one question.

* ``pick_device``: ``auto`` | ``cpu`` | ``cuda`` (``cuda:N`` too).
* ``effective_precision`` (training, mixed precision): ``auto`` | ``no`` | ``fp16`` | ``bf16``.
  Mixed precision is GPU-only here (CPU autocast is slower than fp32 for these models and the
  fp16 gradient scaler is CUDA's); bf16 needs a GPU that has it. ``auto`` = bf16 where the GPU
  has it, else fp16, and full precision (``no``) on the CPU.
* ``effective_dtype`` (inference weights): ``auto`` | ``float32`` | ``float16`` | ``bfloat16``.
  float16 is refused on the CPU (many CPU kernels lack it and the rest are slow); bfloat16 runs
  on the CPU; ``auto`` = bfloat16 (else float16) on a GPU, float32 on the CPU.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from backend.jobs.configs import DEVICES, DTYPES, MIXED_PRECISION

_log = logging.getLogger(__name__)


class DeviceError(RuntimeError, ValueError):
    """A device or precision request this machine cannot honour; the message says what to change."""


def _gpu() -> bool:
    return torch.cuda.is_available()


def _bf16() -> bool:
    return _gpu() and torch.cuda.is_bf16_supported()


def pick_device(requested: str, log: Any = None) -> torch.device:
    """The device a run uses: ``auto`` picks the GPU when there is one (and logs it); an explicit
    ``cuda`` without a GPU is an error, not a silent fallback (a 100x slower run is worse than a
    clear message)."""
    log = log or _log
    if requested == "auto":
        device = torch.device("cuda" if _gpu() else "cpu")
        log.info("device auto: %s (%s)", device, "a CUDA GPU is visible" if _gpu() else "no CUDA GPU visible")
        return device
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise DeviceError(f"device must be one of {', '.join(DEVICES)} (got {requested!r})") from None
    if device.type == "cuda" and not _gpu():
        raise DeviceError(
            f"device {requested} was requested but no CUDA GPU is visible to this process; "
            "use device cpu, or auto to take the GPU only when there is one"
        )
    if device.type not in DEVICES:
        raise DeviceError(f"device must be one of {', '.join(DEVICES)} (got {requested!r})")
    return device


@dataclass(frozen=True)
class _Precisions:
    """One vocabulary of the policy: training's mixed precision or inference's weight dtype."""

    field: str
    choices: tuple[str, ...]
    full: str
    fp16: str
    bf16: str
    bf16_on_cpu: bool  # bf16 weights run on the CPU; bf16 autocast training is not offered there
    why_gpu: str


MIXED = _Precisions(
    "mixed_precision", MIXED_PRECISION, "no", "fp16", "bf16", False, "mixed precision is GPU-only here"
)
WEIGHTS = _Precisions(
    "dtype", DTYPES, "float32", "float16", "bfloat16", True, "many CPU kernels lack float16"
)


def _choose(requested: str, device: torch.device, log: Any, p: _Precisions) -> str:
    if requested not in p.choices:
        raise DeviceError(f"{p.field} must be one of {', '.join(p.choices)} (got {requested!r})")
    gpu = device.type == "cuda"
    if requested == "auto":
        chosen = (p.bf16 if _bf16() else p.fp16) if gpu else p.full
        (log or _log).info("%s auto: %s on %s", p.field, chosen, device)
        return chosen
    if requested == p.full:
        return requested
    if not gpu and not (requested == p.bf16 and p.bf16_on_cpu):
        raise DeviceError(
            f"{p.field} {requested} needs a CUDA GPU and this run is on {device} ({p.why_gpu}); "
            f"set {p.field} to {p.full}, or auto ({p.full} on the CPU)"
        )
    if gpu and requested == p.bf16 and not _bf16():
        raise DeviceError(
            f"{p.field} {requested} was requested but this GPU has no bf16; set {p.field} to {p.fp16} or auto"
        )
    return requested


def effective_precision(requested: str, device: torch.device, log: Any = None) -> str:
    """The mixed precision a training run uses on ``device``: ``no``, ``fp16`` or ``bf16``."""
    return _choose(requested, device, log, MIXED)


def effective_dtype(requested: str, device: torch.device, log: Any = None) -> str:
    """The weight dtype an inference job loads models in on ``device`` (a ``torch`` dtype name)."""
    return _choose(requested, device, log, WEIGHTS)


def machine_summary() -> dict[str, Any]:
    """What computed a result: CPU model, its vector extensions, torch's threads and version, GPU.

    Why: cpu runs of the miniature experiment with the same code, data and seeds gave the same
    table to every digit on two machines (one an Intel Xeon with AVX-512 and AMX) and a different
    one on an AMD EPYC with AVX2 only (docs/miniature.md, "Seventh cpu run"): the CPU kind is part
    of a result's provenance, and nothing recorded it.
    """
    import platform
    from pathlib import Path

    model, flags = platform.processor() or platform.machine(), set()
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:  # not Linux: the platform's processor string is all there is
        cpuinfo = ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    summary: dict[str, Any] = {
        "cpu": model,
        "vector_extensions": sorted(
            f for f in flags if f in {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}
        ),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    if _gpu():
        summary["gpu"] = torch.cuda.get_device_name(0)
    return summary
