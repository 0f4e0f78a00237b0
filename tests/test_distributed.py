"""Training on several processes (issue 13 §3): ``processes`` 2 runs the job under ``accelerate
launch`` (DDP, gloo on this CPU), and what it records is what one process records.

The multi-process runs are real: created as the CLI / Runs tab create them (``new_run``), started
by the studio's launcher (``jobs.launch``: the runner in its own process group, which supervises
two ``--worker`` ranks under the torch elastic agent), on real SQLite, with the tiny models of
``training.tiny`` loaded through ``from_pretrained``. The one-process references run inline
(``training.runner.execute``) to spare a start-up. Tolerances: losses agree to ``LOSS_RTOL``
(slices of a batch go through the same kernels at another batch size, so float rounding differs
in the last digits); usage counts, steps and resume points agree exactly; a run resumed after a
kill -9 ends bit-for-bit where the uninterrupted run of the same process count ends.
"""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from backend import jobs
from backend.jobs import store
from backend.jobs.configs import make_config, new_run
from backend.jobs.launch import pid_alive
from backend.jobs.schema import ConfigError
from backend.workspace import Workspace
from tests.conftest import wait_for
from tests.test_t2i_train import BASE_CFG as T2I_BASE
from tests.test_t2i_train import make_dataset
from training.distributed import (
    Dist,
    DistributedError,
    Launched,
    WorkerLost,
    accelerate_config,
    outcome_path,
    shard,
    verdict,
)

pytest_plugins = ("tests.tiny_models",)
pytestmark = [pytest.mark.timeout(420), pytest.mark.usefixtures("keep_root_logging")]

LOSS_RTOL = 1e-4




# --------------------------------------------------------------------------- helpers


def run_inline(ws: Workspace, kind: str, values: dict[str, Any]) -> int:
    from training.runner import execute

    run_id = int(new_run(ws, kind, values).id)  # type: ignore[arg-type]
    execute(ws, run_id, advance_queue=False)
    final = jobs.get_run(ws, run_id)
    assert final.status == "succeeded", f"run {run_id}: {final.message}\n{jobs.log_tail(ws, run_id, 60)}"
    return run_id


def wait_end(ws: Workspace, run_id: int, timeout: float = 300) -> jobs.Run:
    return wait_for(
        lambda: r if (r := jobs.get_run(ws, run_id)).status not in ("queued", "running") else None,
        timeout,
        what=f"run {run_id} to end",
        interval=0.2,
    )


def losses(ws: Workspace, run_id: int) -> dict[int, float]:
    return {m.step: m.value for m in jobs.run_metrics(ws, run_id, "train_loss")}


def assert_same_curve(got: dict[int, float], ref: dict[int, float], rtol: float = LOSS_RTOL) -> None:
    assert sorted(got) == sorted(ref)
    for step in ref:
        assert got[step] == pytest.approx(ref[step], rel=rtol, abs=1e-7), (step, got[step], ref[step])


def rank_pid(ws: Workspace, run_id: int, rank: int) -> int:
    path = outcome_path(jobs.run_dir(ws, jobs.get_run(ws, run_id)), rank)
    wait_for(path.is_file, 60, what=f"rank {rank} to start", interval=0.05)
    return int(json.loads(path.read_text())["pid"])


def fresh_ranks(ws: Workspace, run_id: int, old: set[int]) -> list[int] | None:
    """Both workers' pids once both have reported and neither is an earlier attempt's (None before)."""
    folder = jobs.run_dir(ws, jobs.get_run(ws, run_id))
    pids = []
    for rank in (0, 1):
        try:
            pids.append(int(json.loads(outcome_path(folder, rank).read_text())["pid"]))
        except (OSError, ValueError, KeyError):
            return None
    return pids if not old & set(pids) else None


def weights(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    out = {}
    for path in sorted(folder.rglob("*.safetensors")):
        for name, value in load_file(path).items():
            out[f"{path.relative_to(folder)}:{name}"] = value
    return out


# --------------------------------------------------------------------------- the pieces


def test_shards_split_a_global_batch_in_order_and_every_example_once() -> None:
    for n in range(1, 12):
        for world in range(1, 5):
            parts = [shard(n, Dist(rank=r, world=world)) for r in range(world)]
            assert [i for p in parts for i in range(n)[p]] == list(range(n))
            sizes = [len(range(n)[p]) for p in parts]
            assert max(sizes) - min(sizes) <= 1


def test_processes_is_a_config_option_and_needs_an_example_per_process(tmp_path: Path) -> None:
    for kind in ("captioner_train", "t2i_train"):
        assert make_config(kind, {"dataset": "d"})["processes"] == 1  # today's single process
        assert make_config(kind, {"dataset": "d", "processes": 2, "batch_size": 2})["processes"] == 2
        with pytest.raises(ConfigError, match="batch_size 2 is the global batch.*at least 3"):
            make_config(kind, {"dataset": "d", "processes": 3, "batch_size": 2})
        with pytest.raises(ConfigError, match="processes"):
            make_config(kind, {"dataset": "d", "processes": 0})
    assert accelerate_config(2, 1234)["distributed_type"] == "MULTI_GPU"  # DDP, never a user's FSDP


def test_the_supervisor_turns_worker_ends_into_the_run_status() -> None:
    ok = {0: {"status": "succeeded"}, 1: {"status": "succeeded"}}
    assert verdict(Launched(0, {}, ok), 2) == "succeeded"
    assert (
        verdict(Launched(0, {}, {0: {"status": "cancelled"}, 1: {"status": "cancelled"}}), 2) == "cancelled"
    )
    assert verdict(Launched(143, {}, {0: {"status": "running"}}), 2) == "cancelled"  # signalled first
    killed = {
        0: {"status": "failed", "message": "gloo: connection closed", "time": 101.5},
        1: {"status": "running"},
    }
    with pytest.raises(WorkerLost, match=r"rank 1 \(pid 77\) was killed by SIGKILL"):
        verdict(Launched(0, {0: (76, 1, 101.0), 1: (77, -9, 101.0)}, killed), 2)
    failed = {0: {"status": "failed", "message": "ValueError: bad", "time": 100.0}, 1: {"status": "running"}}
    with pytest.raises(DistributedError, match="rank 0 failed: ValueError: bad"):  # killed 30 s later
        verdict(Launched(0, {0: (76, 1, 100.0), 1: (77, -9, 130.0)}, failed), 2)


GLOO_RESET = (
    "RuntimeError: [/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:545] Read error "
    "[127.0.0.1]:20875: Connection reset by peer. This is typically caused by a remote worker hanging"
)  # what a gloo all_reduce raises in the survivor when its peer is SIGKILLed (torch 2.14)


def test_a_kill_is_the_cause_even_when_the_survivors_error_looks_earlier() -> None:
    """torch elastic stamps a death in whole seconds (``int(time.time())``), the survivor's report
    carries the float time of its "connection reset by peer": a kill at 100.95 is stamped 100 or,
    detected after the second turned, 101 — after the survivor's report at 100.96. The kill is
    still the cause (interrupted, resumable), whichever rank died; a rank's own error in the same
    second as an NCCL abort (SIGABRT) of its peer is still the failure."""
    for killed, survivor in ((1, 0), (0, 1)):
        reports = {
            survivor: {"status": "failed", "message": GLOO_RESET, "time": 100.96},
            killed: {"status": "running"},
        }
        failures = {survivor: (70 + survivor, 1, 101.0), killed: (70 + killed, -9, 101.0)}
        with pytest.raises(WorkerLost, match=rf"rank {killed} \(pid {70 + killed}\) was killed by SIGKILL"):
            verdict(Launched(0, failures, reports), 2)
    # only lost peers reported (the dead rank's death not seen by the agent): interrupted as well
    with pytest.raises(WorkerLost, match="Connection reset by peer"):
        verdict(
            Launched(0, {0: (70, 1, 101.0)}, {0: {"status": "failed", "message": GLOO_RESET, "time": 100.9}}),
            2,
        )
    own = {0: {"status": "failed", "message": "ValueError: bad", "time": 100.3}, 1: {"status": "running"}}
    with pytest.raises(DistributedError, match="rank 0 failed: ValueError: bad"):
        verdict(Launched(0, {0: (70, 1, 100.0), 1: (71, -6, 100.0)}, own), 2)


def test_a_survivor_stopped_by_the_agent_is_not_the_cause() -> None:
    """The agent SIGTERMs the surviving ranks once one died, stamped in the same whole second: in a
    CI run rank 1 was SIGKILLed and rank 0's SIGTERM was named as the cause (it sorted first). The
    kill is the cause; a SIGTERM alone is still reported."""
    both_running = {0: {"status": "running"}, 1: {"status": "running"}}
    with pytest.raises(WorkerLost, match=r"rank 1 \(pid 71\) was killed by SIGKILL"):
        verdict(Launched(0, {0: (70, -15, 101.0), 1: (71, -9, 101.0)}, both_running), 2)
    with pytest.raises(WorkerLost, match=r"rank 0 \(pid 70\) was killed by SIGTERM"):
        verdict(Launched(0, {0: (70, -15, 101.0)}, both_running), 2)


def test_a_batch_split_by_target_tokens_has_the_batch_loss(tiny_model_dir: Callable[[str], Path]) -> None:
    """The captioner's rule (each slice's token-mean loss weighted by its share of the target
    tokens, :func:`target_tokens`) rebuilds the whole batch's loss, shifted labels or not."""
    import torch
    from PIL import Image

    from training.adapters import load_captioner
    from training.jobs.captioner_train import target_tokens

    images = [Image.new("RGB", (32, 32), c) for c in ("red", "blue", "green")]
    texts = ["a red circle", "two blue squares on a white background", "a green star"]
    for family in ("blip", "ved", "florence2", "qwen2_vl"):
        adapter = load_captioner(str(tiny_model_dir(family)), device="cpu", dtype="float32")
        adapter.model.eval()
        with torch.no_grad():
            whole = float(adapter.training_loss(adapter.prepare_batch(images, texts)))
            parts = [adapter.prepare_batch(images[s], texts[s]) for s in (slice(0, 2), slice(2, 3))]
            tokens = [target_tokens(p, adapter.family) for p in parts]
            rebuilt = sum(float(adapter.training_loss(p)) * t for p, t in zip(parts, tokens, strict=True))
        assert rebuilt / sum(tokens) == pytest.approx(whole, rel=1e-5), family


# --------------------------------------------------------------------------- T2I on two processes

T2I_CFG = {
    **T2I_BASE, "steps": 10, "batch_size": 3, "grad_accum": 2, "resolution": 16, "train": "both", "ema": True,
    "ema_decay": 0.9, "checkpoint_every": 2, "keep_checkpoints": 3, "validation_prompts": ["a red circle"],
    "validation_every": 3, "validation_inference_steps": 2,
}  # fmt: skip


@pytest.fixture(scope="module")
def t2i_runs(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Callable[[str], Path]
) -> dict[str, Any]:
    """One workspace: a one-process run and the same config on two processes, uninterrupted."""
    from backend.db import migrate

    ws = Workspace(tmp_path_factory.mktemp("dist-t2i") / "home").ensure()
    migrate(ws)
    make_dataset(ws)
    cfg = {**T2I_CFG, "base": str(tiny_model_dir("sd"))}
    one = run_inline(ws, "t2i_train", cfg)
    two = int(new_run(ws, "t2i_train", {**cfg, "processes": 2}).id)  # type: ignore[arg-type]
    jobs.launch(ws, two)
    final = wait_end(ws, two)
    assert final.status == "succeeded", f"{final.message}\n{jobs.log_tail(ws, two, 80)}"
    return {"ws": ws, "cfg": cfg, "one": one, "two": two}


def test_t2i_on_two_processes_records_what_one_process_records(t2i_runs: dict[str, Any]) -> None:
    ws, one, two = t2i_runs["ws"], t2i_runs["one"], t2i_runs["two"]
    assert_same_curve(losses(ws, two), losses(ws, one))
    (a1,) = jobs.list_artifacts(ws, kind="t2i", run_id=one)
    (a2,) = jobs.list_artifacts(ws, kind="t2i", run_id=two)  # one writer: one artifact
    assert a2.meta["usage_labels"] == a1.meta["usage_labels"] and a2.meta["usage"] == a1.meta["usage"]
    assert a2.meta["truncated_draws"] == a1.meta["truncated_draws"]
    assert sum(a2.meta["usage"].values()) == 10 * 3 * 2  # steps x global batch x accumulation
    assert a2.meta["config"]["processes"] == 2
    w1, w2 = weights(ws.inside(a1.path)), weights(ws.inside(a2.path))
    assert set(w1) == set(w2)
    worst = max(float((w1[k] - w2[k]).abs().max()) for k in w1)
    assert worst < 1e-3, worst  # a few Adam steps of lr 1e-3 from gradients equal to float rounding
    log = jobs.log_tail(ws, two, 400)
    assert "training on 2 cpu processes (DDP): accelerate launch" in log
    assert "[rank 0] rank 0 of 2 on cpu" in log
    assert not re.search(r"INFO \S+: \[rank 1\]", log)  # rank 1 logs warnings only
    samples = sorted(p.name for p in (ws.runs_dir / str(two) / "samples").iterdir())
    assert samples == [
        "step_10.json",
        "step_3.json",
        "step_6.json",
        "step_9.json",
    ]  # rank 0 alone renders validation images
    outcomes = {r: json.loads(outcome_path(ws.runs_dir / str(two), r).read_text())["status"] for r in (0, 1)}
    assert outcomes == {0: "succeeded", 1: "succeeded"}


def test_t2i_kill9_of_any_process_then_resume_ends_where_the_uninterrupted_run_ends(
    t2i_runs: dict[str, Any],
) -> None:
    """One run, three kills -9, each followed by a resume: rank 0 (the writer) after checkpoint 2,
    rank 1 after checkpoint 6 of the resumed attempt, then the supervisor once its workers run
    (they die with it: no orphan trains on). The fourth attempt ends bit for bit where the
    uninterrupted two-process run ends."""
    ws, ref = t2i_runs["ws"], t2i_runs["two"]
    run_id = int(new_run(ws, "t2i_train", {**t2i_runs["cfg"], "processes": 2}).id)  # type: ignore[arg-type]
    ckpt = ws.runs_dir / str(run_id) / "checkpoints"
    seen: set[int] = set()  # the pids of earlier attempts' workers

    def start_attempt() -> tuple[int, list[int]]:
        """Launch the run and wait for this attempt's two workers (not the last one's reports)."""
        if seen:
            store.requeue(ws, run_id)
        supervisor = jobs.launch(ws, run_id)
        ranks = wait_for(lambda: fresh_ranks(ws, run_id, seen), 120, what="the workers", interval=0.02)
        seen.update(ranks)
        return supervisor, ranks

    def kill_rank_after(rank: int, step: int) -> int:
        supervisor, ranks = start_attempt()
        wait_for(lambda: (ckpt / f"step-{step:08d}").is_dir(), 240, what=f"checkpoint {step}", interval=0.02)
        os.kill(ranks[rank], signal.SIGKILL)
        interrupted = wait_end(ws, run_id, 60)
        assert interrupted.status == "interrupted", jobs.log_tail(ws, run_id, 60)
        assert f"process rank {rank} (pid {ranks[rank]}) was killed by SIGKILL" in interrupted.message
        wait_for(lambda: not any(pid_alive(p) for p in (supervisor, *ranks)), 30, what="every process to end")
        assert not jobs.list_artifacts(ws, kind="t2i", run_id=run_id)
        return max(losses(ws, run_id))

    killed_at = kill_rank_after(0, 2)
    assert killed_at < 6 and not (ckpt / "step-00000006").exists(), "the first kill came too late"
    assert kill_rank_after(1, 6) < 10, "the second kill came after the end"
    log = jobs.log_path(ws, run_id).read_text(encoding="utf-8")
    resumed = int(log.split("resuming from step-")[1][:8])  # the second attempt's start
    assert resumed % 2 == 0 and 2 <= resumed <= killed_at  # rank 0's last checkpoint before its death

    supervisor, ranks = start_attempt()
    os.kill(supervisor, signal.SIGKILL)
    interrupted = wait_end(ws, run_id, 60)
    assert interrupted.status == "interrupted" and "SIGKILL" in interrupted.message, interrupted.message
    wait_for(lambda: not any(pid_alive(p) for p in ranks), 30, what="the workers to die with the supervisor")

    store.requeue(ws, run_id)
    jobs.launch(ws, run_id)
    final = wait_end(ws, run_id)
    assert final.status == "succeeded" and final.attempt == 4, jobs.log_tail(ws, run_id, 80)
    # the same draws, the same numbers: bit for bit the uninterrupted two-process run
    assert losses(ws, run_id) == losses(ws, ref)
    (a_ref,) = jobs.list_artifacts(ws, kind="t2i", run_id=ref)
    (a_got,) = jobs.list_artifacts(ws, kind="t2i", run_id=run_id)
    assert a_got.meta["usage_labels"] == a_ref.meta["usage_labels"]
    assert a_got.meta["usage"] == a_ref.meta["usage"]
    w_ref, w_got = weights(ws.inside(a_ref.path)), weights(ws.inside(a_got.path))
    assert all(bool((w_ref[k] == w_got[k]).all()) for k in w_ref)


# --------------------------------------------------------------------------- the captioner on two processes


def test_captioner_on_two_processes_matches_one_and_cancels_and_resumes_as_one_group(
    tmp_path: Path, tiny_model_dir: Callable[[str], Path]
) -> None:
    """Global batch 3 over 2 ranks (slices of 2 and 1; the last batch of an epoch leaves rank 1
    without an example): the loss curve is the one-process curve. A cancel (SIGTERM to the
    supervisor's group) stops both ranks after the same step with a checkpoint; the resumed run
    finishes on that curve and registers one captioner."""
    from backend.db import migrate
    from backend.demo import DEMO_DATASET, create_demo

    ws = Workspace(tmp_path / "home").ensure()
    migrate(ws)
    create_demo(ws)
    cfg = {
        "dataset": DEMO_DATASET, "base": str(tiny_model_dir("blip")), "style": "short", "epochs": 12,
        "batch_size": 3, "grad_accum": 1, "eval_every": 1000, "val_fraction": 0.2, "lr": 1e-3,
        "max_new_tokens": 8, "torch_threads": 1,
    }  # fmt: skip
    one = run_inline(ws, "captioner_train", cfg)
    ref = losses(ws, one)
    run_id = int(new_run(ws, "captioner_train", {**cfg, "processes": 2}).id)  # type: ignore[arg-type]
    jobs.launch(ws, run_id)
    wait_for(lambda: len(losses(ws, run_id)) >= 6, 240, what="6 steps", interval=0.05)
    ranks = [rank_pid(ws, run_id, r) for r in (0, 1)]
    cancelled = jobs.cancel_run(ws, run_id)
    assert cancelled.status == "cancelled"
    wait_for(lambda: not any(pid_alive(p) for p in ranks), 30, what="both ranks to end")
    stopped_at = max(losses(ws, run_id))
    assert 6 <= stopped_at < len(ref)

    final = jobs.resume_run(ws, run_id, foreground=True)
    assert final.status == "succeeded", jobs.log_tail(ws, run_id, 80)
    assert_same_curve(losses(ws, run_id), ref)
    assert len(jobs.list_artifacts(ws, kind="captioner", run_id=run_id)) == 1
    log = jobs.log_tail(ws, run_id, 600)
    assert f"'step': {stopped_at}" in log.split("resuming short from")[-1].splitlines()[0]
