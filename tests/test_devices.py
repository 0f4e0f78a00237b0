"""One device and precision policy (training.devices): an explicit request that cannot be honoured
is a clear error, ``auto`` chooses and logs — for every job.

The GPU cases are reached by making torch report a GPU (``torch.cuda.is_available`` /
``is_bf16_supported``): the policy only reads those answers and the device's type, so no GPU is
needed to check what it decides there.
"""

from __future__ import annotations

import importlib
import logging

import pytest
import torch

from training import devices
from training.devices import DeviceError, effective_dtype, effective_precision, pick_device

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
JOBS = ("captioner_train", "t2i_train", "recaption", "generate", "clip_score", "t2i_eval")


@pytest.fixture
def log() -> logging.Logger:
    return logging.getLogger("test_devices")


@pytest.fixture
def gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GPU without bf16 (e.g. a T4), as torch would report it."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)


def test_explicit_mixed_precision_on_the_cpu_is_an_error_not_a_silent_downgrade(log: logging.Logger) -> None:
    """The old trainers turned fp16/bf16 into full precision on the CPU with only a warning, so a
    run's config said fp16 while it trained in fp32."""
    for requested in ("fp16", "bf16"):
        with pytest.raises(
            DeviceError, match=f"mixed_precision {requested} needs a CUDA GPU and this run is on cpu"
        ):
            effective_precision(requested, CPU, log)
    assert effective_precision("no", CPU, log) == "no"
    with pytest.raises(DeviceError, match="mixed_precision must be one of no, fp16, bf16, auto"):
        effective_precision("fp32", CPU, log)


def test_auto_chooses_what_the_machine_has_and_logs_it(
    log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="test_devices")
    assert effective_precision("auto", CPU, log) == "no"
    assert effective_dtype("auto", CPU, log) == "float32"
    if not torch.cuda.is_available():
        assert pick_device("auto", log) == CPU
        assert "device auto: cpu (no CUDA GPU visible)" in caplog.text
    assert "mixed_precision auto: no on cpu" in caplog.text and "dtype auto: float32 on cpu" in caplog.text


def test_devices(log: logging.Logger) -> None:
    assert pick_device("cpu", log) == CPU
    for bad in ("gpu", "meta"):
        with pytest.raises(DeviceError, match=f"device must be one of auto, cpu, cuda \\(got '{bad}'\\)"):
            pick_device(bad, log)
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="device cuda was requested but no CUDA GPU is visible"):
            pick_device("cuda", log)


def test_inference_dtypes(log: logging.Logger) -> None:
    """float16 on the CPU used to be turned into float32 with a warning; now it is refused.
    bfloat16 runs on the CPU and stays what was asked."""
    with pytest.raises(
        DeviceError,
        match=r"dtype float16 needs a CUDA GPU and this run is on cpu \(many CPU kernels lack float16\)",
    ):
        effective_dtype("float16", CPU, log)
    assert effective_dtype("bfloat16", CPU, log) == "bfloat16"
    assert effective_dtype("float32", CPU, log) == "float32"
    with pytest.raises(DeviceError, match="dtype must be one of auto, float32, float16, bfloat16"):
        effective_dtype("half", CPU, log)


def test_on_a_gpu_without_bf16(gpu: None, log: logging.Logger) -> None:
    assert pick_device("auto", log) == CUDA and pick_device("cuda", log) == CUDA
    assert effective_precision("auto", CUDA, log) == "fp16"
    assert effective_precision("fp16", CUDA, log) == "fp16"
    with pytest.raises(DeviceError, match="this GPU has no bf16; set mixed_precision to fp16"):
        effective_precision("bf16", CUDA, log)
    assert effective_dtype("auto", CUDA, log) == "float16"
    with pytest.raises(DeviceError, match="this GPU has no bf16; set dtype to float16 or auto"):
        effective_dtype("bfloat16", CUDA, log)


def test_on_a_gpu_with_bf16(gpu: None, monkeypatch: pytest.MonkeyPatch, log: logging.Logger) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert effective_precision("auto", CUDA, log) == "bf16" == effective_precision("bf16", CUDA, log)
    assert (
        effective_dtype("auto", CUDA, log) == "bfloat16"
        and effective_dtype("float16", CUDA, log) == "float16"
    )


def test_every_job_uses_the_one_policy() -> None:
    """No job keeps its own copy: each module's names are the ones of training.devices."""
    for job in JOBS:
        module = importlib.import_module(f"training.jobs.{job}")
        assert module.pick_device is devices.pick_device, job
    for job in ("captioner_train", "t2i_train"):
        assert (
            importlib.import_module(f"training.jobs.{job}").effective_precision is devices.effective_precision
        )
    for job in ("recaption", "generate"):
        assert importlib.import_module(f"training.jobs.{job}").effective_dtype is devices.effective_dtype
