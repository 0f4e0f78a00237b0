"""The runs command line with real subprocesses: ``recap-studio`` -> runner -> SQLite.

Jobs without models use the ``selftest`` kind (``recap-studio runs selftest`` is a hidden
command for exactly this); the model commands are checked for the config they store
(the contract with the job implementations) with the GPU queue closed, so nothing loads a model.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from backend import jobs
from backend.datasets import get_or_create_dataset
from backend.db import write_session
from backend.jobs import configs
from backend.jobs.launch import group_alive
from backend.workspace import Workspace
from tests.conftest import run_cli
from tests.conftest import wait_for as shared_wait_for

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[1]


def last_json(stdout: str) -> object:
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert lines, "no output"
    return json.loads(lines[-1])


# polls often: the kill tests stop a run at a chosen point of its progress
wait_for = functools.partial(shared_wait_for, interval=0.1)


def item_counts(ws: Workspace, run_id: int) -> Counter[int]:
    return Counter(m.step for m in jobs.run_metrics(ws, run_id, "item"))


def make_dataset(ws: Workspace, name: str) -> None:
    with write_session(ws) as s:
        get_or_create_dataset(s, name)


def test_selftest_in_the_foreground_prints_a_json_line(ws: Workspace) -> None:
    result = run_cli(ws.home, "runs", "selftest", "--items", "6", "--delay", "0.02", "--json")
    assert result.returncode == 0, result.stderr
    summary = last_json(result.stdout)
    assert summary["status"] == "succeeded"
    assert (summary["done"], summary["total"], summary["attempt"]) == (6, 6, 1)
    assert summary["kind"] == "selftest" and summary["artifacts"] == [] and summary["captions"] == {}
    run_id = summary["run_id"]
    assert item_counts(ws, run_id) == Counter(range(6))

    listed = run_cli(ws.home, "runs", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    runs = json.loads(listed.stdout)
    assert isinstance(runs, list) and len(runs) == 1
    assert {"id", "kind", "status", "done", "total"} <= set(runs[0])
    assert (runs[0]["id"], runs[0]["kind"], runs[0]["status"], runs[0]["done"], runs[0]["total"]) == (
        run_id,
        "selftest",
        "succeeded",
        6,
        6,
    )

    shown = run_cli(ws.home, "runs", "show", str(run_id), "--json")
    assert shown.returncode == 0, shown.stderr
    details = json.loads(shown.stdout)
    # the self-test stores its schema's keys, as every kind does (issue 10: it is a kind like the others)
    assert details["config"] == {**configs.DEFAULTS["selftest"], "items": 6, "delay_s": 0.02}
    assert "selftest: item 5 done" in details["log_tail"]
    assert [(m["name"], m["count"]) for m in details["metrics"]] == [("item", 6)]

    human = run_cli(ws.home, "runs", "show", str(run_id))
    assert human.returncode == 0 and f"Run {run_id}: selftest" in human.stdout and "log (" in human.stdout
    missing = run_cli(ws.home, "runs", "show", "999")
    assert missing.returncode == 2 and "no run 999" in missing.stderr


def test_a_failed_run_exits_non_zero_with_the_error_on_stderr(ws: Workspace) -> None:
    result = run_cli(
        ws.home, "runs", "selftest", "--items", "6", "--delay", "0.01", "--fail-after", "2", "--json"
    )
    assert result.returncode == 1
    summary = last_json(result.stdout)
    assert summary["status"] == "failed" and summary["done"] == 2
    assert "run {} failed".format(summary["run_id"]) in result.stderr
    assert "SelftestFailure: selftest asked to fail after 2 items" in result.stderr
    assert f"runs resume {summary['run_id']}" in result.stderr


def test_cancel_then_resume_in_the_foreground_does_every_item_once(ws: Workspace) -> None:
    # long enough that the cancel command (a new Python process) lands mid-run on a loaded machine
    started = run_cli(ws.home, "runs", "selftest", "--items", "120", "--delay", "0.1", "--detach", "--json")
    assert started.returncode == 0, started.stderr
    run_id = last_json(started.stdout)["run_id"]
    wait_for(lambda: jobs.get_run(ws, run_id).done >= 3, what="some progress")

    cancelled = run_cli(ws.home, "runs", "cancel", str(run_id))
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"Run {run_id} cancelled" in cancelled.stdout
    run = jobs.get_run(ws, run_id)
    assert run.status == "cancelled" and 3 <= run.done < 120
    again = run_cli(ws.home, "runs", "cancel", str(run_id))
    assert again.returncode == 1 and "nothing to cancel" in again.stderr

    resumed = run_cli(ws.home, "runs", "resume", str(run_id), "--json")
    assert resumed.returncode == 0, resumed.stderr
    summary = last_json(resumed.stdout)
    assert (summary["run_id"], summary["status"], summary["done"], summary["attempt"]) == (
        run_id,
        "succeeded",
        120,
        2,
    )
    assert item_counts(ws, run_id) == Counter(range(120))  # none lost, none twice
    finished = run_cli(ws.home, "runs", "resume", str(run_id))
    assert (
        finished.returncode == 2 and "only interrupted, cancelled, failed runs can resume" in finished.stderr
    )


def test_ctrl_c_cancels_a_foreground_run(ws: Workspace) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cli = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "studio.cli",
            "--home",
            str(ws.home),
            "runs",
            "selftest",
            "--items",
            "200",
            "--delay",
            "0.1",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        run = wait_for(
            lambda: next(iter(r for r in jobs.list_runs(ws) if r.done >= 2), None),
            what="the run to make progress",
        )
        cli.send_signal(signal.SIGINT)
        stdout, stderr = cli.communicate(timeout=60)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert cli.returncode == 3, stderr
    summary = last_json(stdout)
    assert summary["status"] == "cancelled" and summary["run_id"] == run.id
    assert "was cancelled" in stderr
    final = jobs.get_run(ws, run.id)
    assert final.status == "cancelled" and final.done < 200
    assert final.pgid is not None and not group_alive(final.pgid)


def test_model_commands_store_the_contract_config(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each model command stores exactly the schema's keys; the closed GPU queue keeps them queued."""
    monkeypatch.setenv("RECAP_STUDIO_MAX_GPU_JOBS", "0")
    make_dataset(ws, "shapes")
    commands = {
        "captioner_train": [
            "captioner",
            "train",
            "--dataset",
            "shapes",
            "--base",
            "org/base-captioner",
            "--style",
            "both",
            "--both-mode",
            "prompt",
            "--lora",
            "--freeze-vision",
            "--lr",
            "1e-4",
            "--epochs",
            "2",
            "--batch-size",
            "4",
            "--grad-accum",
            "2",
            "--mixed-precision",
            "bf16",
            "--seed",
            "7",
            "--val-fraction",
            "0.2",
            "--eval-every",
            "5",
            "--device",
            "cpu",
        ],
        "recaption": [
            "recaption",
            "--dataset",
            "shapes",
            "--captioner",
            "org/some-captioner",
            "--style",
            "long",
            "--batch-size",
            "4",
            "--num-workers",
            "0",
            "--max-new-tokens",
            "40",
        ],
        "clip_score": ["score", "clip", "--dataset", "shapes", "--kinds", "alttext,recap_long"],
    }
    expected = {
        "captioner_train": {
            **configs.DEFAULTS["captioner_train"],
            "dataset": "shapes",
            "base": "org/base-captioner",
            "style": "both",
            "both_mode": "prompt",
            "lora": True,
            "freeze_vision": True,
            "lr": 1e-4,
            "epochs": 2,
            "batch_size": 4,
            "grad_accum": 2,
            "mixed_precision": "bf16",
            "seed": 7,
            "val_fraction": 0.2,
            "eval_every": 5,
            "device": "cpu",
        },
        "recaption": {
            **configs.DEFAULTS["recaption"],
            "dataset": "shapes",
            "captioner": "org/some-captioner",
            "style": "long",
            "batch_size": 4,
            "num_workers": 0,
            "max_new_tokens": 40,
        },
        "clip_score": {
            **configs.DEFAULTS["clip_score"],
            "dataset": "shapes",
            "kinds": ["alttext", "recap_long"],
        },
    }
    for kind, args in commands.items():
        result = run_cli(ws.home, *args, "--detach", "--json")
        assert result.returncode == 0, (kind, result.stderr)
        summary = last_json(result.stdout)
        assert summary["kind"] == kind and summary["status"] == "queued", summary
        run = jobs.get_run(ws, summary["run_id"])
        assert run.config == expected[kind], kind
        assert set(run.config) == set(configs.DEFAULTS[kind])
        assert run.needs_gpu
        stored = json.loads((ws.home / run.output_dir / "config.json").read_text())
        assert stored == expected[kind]
        assert configs.parse_config(kind, run.config) is not None  # what the job reads back
        jobs.cancel_run(ws, run.id)
    assert [r.status for r in jobs.list_runs(ws)] == ["cancelled"] * 3


def test_bad_settings_are_refused_before_anything_runs(ws: Workspace) -> None:
    make_dataset(ws, "shapes")
    cases = [
        (
            ["recaption", "--dataset", "nope", "--captioner", "org/x", "--style", "short"],
            "no dataset named 'nope'",
        ),
        (
            ["recaption", "--dataset", "shapes", "--captioner", "org/x", "--style", "medium"],
            "style must be one of",
        ),
        (
            ["recaption", "--dataset", "shapes", "--captioner", "./no/such/folder", "--style", "short"],
            "captioner './no/such/folder': no such folder",  # backend.references' wording (issue 10)
        ),
        (
            ["captioner", "train", "--dataset", "shapes", "--base", "org/b", "--style", "short", "--lr", "0"],
            "lr must be greater than 0",
        ),
        (
            [
                "captioner",
                "train",
                "--dataset",
                "shapes",
                "--base",
                "org/b",
                "--style",
                "short",
                "--val-fraction",
                "1.5",
            ],
            "val_fraction must be between 0 and 1",
        ),
        (
            ["score", "clip", "--dataset", "shapes", "--kinds", ","],
            "kinds must name at least one caption kind",
        ),
    ]
    for args, message in cases:
        result = run_cli(ws.home, *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)
    assert jobs.list_runs(ws) == []


def test_models_tiny_builds_and_registers_a_captioner(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    result = run_cli(
        ws.home,
        "models",
        "tiny",
        "--family",
        "blip",
        "--out",
        "tiny-blip",
        "--register",
        "tiny-blip",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    summary = last_json(result.stdout)
    folder = ws.home / "models" / "tiny-blip"
    assert Path(summary["path"]) == folder and summary["family"] == "blip"
    assert (folder / "config.json").exists()
    artifact = jobs.get_artifact(ws, "tiny-blip")
    assert (
        artifact.kind == "captioner"
        and artifact.path == "models/tiny-blip"
        and artifact.id == summary["artifact_id"]
    )

    # the artifact name is now a valid captioner for recaption (queued only: the GPU queue is closed)
    monkeypatch.setenv("RECAP_STUDIO_MAX_GPU_JOBS", "0")
    make_dataset(ws, "shapes")
    queued = run_cli(
        ws.home,
        "recaption",
        "--dataset",
        "shapes",
        "--captioner",
        "tiny-blip",
        "--style",
        "short",
        "--detach",
        "--json",
    )
    assert queued.returncode == 0, queued.stderr
    run = jobs.get_run(ws, last_json(queued.stdout)["run_id"])
    assert run.config["captioner"] == "tiny-blip"
    jobs.cancel_run(ws, run.id)
    # a folder (here relative to the workspace) is stored as an absolute path: jobs run in their run folder
    by_path = run_cli(
        ws.home, "recaption", "--dataset", "shapes", "--captioner", "models/tiny-blip", "--style", "short",
        "--detach", "--json",
    )  # fmt: skip
    assert by_path.returncode == 0, by_path.stderr
    run = jobs.get_run(ws, last_json(by_path.stdout)["run_id"])
    assert run.config["captioner"] == str(folder.resolve())
    jobs.cancel_run(ws, run.id)

    bad = run_cli(ws.home, "models", "tiny", "--family", "nope", "--out", "x")
    assert bad.returncode != 0 and "building the tiny nope model failed" in bad.stderr
    escape = run_cli(ws.home, "models", "tiny", "--family", "blip", "--out", "../outside")
    assert escape.returncode == 2 and not (ws.home / "outside").exists()


def test_a_foreground_gpu_run_waits_for_the_gpu(ws: Workspace) -> None:
    """One GPU job at a time holds for the CLI too: a foreground run queues behind the running one."""
    # long enough to still hold the GPU when the CLI (a new Python process) starts on a loaded machine
    first = jobs.create_run(ws, "selftest", {"items": 40, "delay_s": 0.25}, needs_gpu=True)
    jobs.launch(ws, first.id)
    second = jobs.create_run(ws, "selftest", {"items": 3, "delay_s": 0.01}, needs_gpu=True)
    jobs.cancel_run(ws, second.id)  # cancelled while queued: resumable
    wait_for(lambda: jobs.get_run(ws, first.id).done >= 1, what="the first run to start")

    result = run_cli(ws.home, "runs", "resume", str(second.id), "--json")
    assert result.returncode == 0, result.stderr
    assert f"run {first.id} (selftest) holds the GPU; run {second.id} waits in the queue" in result.stderr
    assert last_json(result.stdout)["status"] == "succeeded"
    a, b = jobs.get_run(ws, first.id), jobs.get_run(ws, second.id)
    assert a.status == "succeeded" and b.started_at >= a.finished_at


# --------------------------------------------------------------------------- jobs after a crash, CLI only


def start_cli(ws: Workspace, *args: str, wrapper: tuple[str, ...] = ()) -> subprocess.Popen[str]:
    """``recap-studio --home WS ARGS`` in the background, optionally under a wrapper (``timeout``)."""
    return subprocess.Popen(
        [*wrapper, sys.executable, "-m", "studio.cli", "--home", str(ws.home), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def running_with_progress(ws: Workspace, items: int) -> jobs.Run:
    """The one run, once its runner is recorded and has done ``items`` items."""
    return wait_for(
        lambda: next((r for r in jobs.list_runs(ws) if r.done >= items and r.pgid is not None), None),
        what=f"the run to do {items} items",
    )


def test_after_kill9_of_the_cli_and_its_runner_runs_list_says_interrupted_and_resume_works(
    ws: Workspace,
) -> None:
    """No studio runs: the CLI alone must notice the dead runner (issue 9, section 5)."""
    items = 100
    cli = start_cli(ws, "runs", "selftest", "--items", str(items), "--delay", "0.08", "--json")
    try:
        run = running_with_progress(ws, 3)
        os.kill(cli.pid, signal.SIGKILL)  # kill -9 of the CLI ...
        os.killpg(run.pgid, signal.SIGKILL)  # ... and of its runner's process group
        cli.communicate(timeout=30)
        wait_for(lambda: not group_alive(run.pgid), 10, what="the runner's group to vanish")
    finally:
        if cli.poll() is None:
            cli.kill()
    assert jobs.get_run(ws, run.id).status == "running"  # nobody has looked yet

    listed = run_cli(ws.home, "runs", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert (row["id"], row["status"]) == (run.id, "interrupted"), row
    shown = run_cli(ws.home, "runs", "show", str(run.id), "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["status"] == "interrupted"
    assert "is gone" in jobs.get_run(ws, run.id).message

    resumed = run_cli(ws.home, "runs", "resume", str(run.id), "--json")
    assert resumed.returncode == 0, resumed.stderr
    summary = last_json(resumed.stdout)
    assert (summary["status"], summary["done"], summary["attempt"]) == ("succeeded", items, 2)
    assert item_counts(ws, run.id) == Counter(range(items))  # none lost, none twice


def orphan(ws: Workspace) -> int:
    """A run whose row says ``running`` under a process that is not its runner (this pytest)."""
    run = jobs.create_run(ws, "selftest", {"items": 3, "delay_s": 0.01})
    with write_session(ws) as s:
        row = s.get(jobs.Run, run.id)
        row.status, row.pid, row.pgid, row.host = "running", os.getpid(), os.getpgid(0), None
        s.add(row)
    return int(run.id)


JOB_COMMANDS_WITH_A_BAD_SETTING = {
    "captioner train": ["captioner", "train", "--dataset", "nope", "--base", "org/cap", "--style", "short"],
    "recaption": ["recaption", "--dataset", "nope", "--captioner", "org/cap", "--style", "short"],
    "score clip": ["score", "clip", "--dataset", "nope"],
    "t2i train": [
        "t2i",
        "train",
        "--dataset",
        "nope",
        "--base",
        "org/sd",
        "--mix",
        "recap_mix",
        "--train",
        "unet",
        "--steps",
        "1",
    ],  # fmt: skip
    "generate": ["generate", "--prompts", "no-such-prompt-set", "--checkpoint", "org/sd", "--seeds", "0"],
    "eval": ["eval", "--dataset", "nope"],
}


@pytest.mark.parametrize("command", list(JOB_COMMANDS_WITH_A_BAD_SETTING))
def test_every_job_command_reconciles_orphans_first(ws: Workspace, command: str) -> None:
    """Even a job command refused for a bad setting has first turned the dead run into interrupted."""
    run_id = orphan(ws)
    result = run_cli(ws.home, *JOB_COMMANDS_WITH_A_BAD_SETTING[command])
    assert result.returncode == 2, result.stderr  # refused: nothing ran
    assert jobs.get_run(ws, run_id).status == "interrupted"
    assert [r.id for r in jobs.list_runs(ws)] == [run_id]


def test_runs_show_cancel_and_resume_reconcile_orphans_first(ws: Workspace) -> None:
    shown_id = orphan(ws)
    shown = run_cli(ws.home, "runs", "show", str(shown_id), "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["status"] == "interrupted"

    cancelled_id = orphan(ws)
    cancelled = run_cli(ws.home, "runs", "cancel", str(cancelled_id))
    assert cancelled.returncode == 1 and "interrupted; nothing to cancel" in cancelled.stderr
    assert jobs.get_run(ws, cancelled_id).status == "interrupted"  # its runner is gone: resumable

    resumed_id = orphan(ws)
    resumed = run_cli(ws.home, "runs", "resume", str(resumed_id), "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert last_json(resumed.stdout)["status"] == "succeeded"


def assert_cancelled_cleanly(ws: Workspace, run: jobs.Run, cli: subprocess.Popen[str], stdout: str) -> None:
    final = jobs.get_run(ws, run.id)
    assert final.status == "cancelled" and final.done < 1000, (final.status, final.message)
    assert not group_alive(run.pgid)  # the runner did not outlive the CLI
    assert last_json(stdout)["status"] == "cancelled"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_or_sighup_cancels_a_foreground_run_and_exits_with_the_signal_status(
    ws: Workspace, sig: signal.Signals
) -> None:
    """A batch scheduler's cancel (SIGTERM) or a closed terminal (SIGHUP) acts like Ctrl-C."""
    cli = start_cli(ws, "runs", "selftest", "--items", "1000", "--delay", "0.05", "--json")
    try:
        run = running_with_progress(ws, 2)
        cli.send_signal(sig)
        stdout, stderr = cli.communicate(timeout=60)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert cli.returncode == 128 + sig, stderr
    assert f"was cancelled on {sig.name}" in stderr and f"runs resume {run.id}" in stderr
    assert_cancelled_cleanly(ws, run, cli, stdout)


def test_a_foreground_run_under_timeout_leaves_no_runner_behind(ws: Workspace) -> None:
    """``timeout -s TERM`` as a user would wrap a job: the TERM it forwards cancels the run.

    The test sends TERM to ``timeout`` itself (it forwards it to the command exactly as when
    its time runs out), so the moment is chosen by the run's progress, not by a clock.
    """
    cli = start_cli(
        ws,
        "runs",
        "selftest",
        "--items",
        "1000",
        "--delay",
        "0.05",
        "--json",
        wrapper=("timeout", "-s", "TERM", "600"),
    )
    try:
        run = running_with_progress(ws, 2)
        cli.send_signal(signal.SIGTERM)
        stdout, stderr = cli.communicate(timeout=60)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert cli.returncode == 128 + signal.SIGTERM, stderr
    assert_cancelled_cleanly(ws, run, cli, stdout)
