"""``experiment miniature --preset smoke``: every stage an ordinary run, killed with -9, resumed, tabled.

One real smoke experiment (issue 12): the command line in a subprocess, every stage a runner
subprocess on a real SQLite workspace, real tiny models through ``from_pretrained``. It is
SIGKILLed — the experiment's runner and the stage running under it — during the captioner's
pre-training, then resumed with ``runs resume``; it must end with each stage run exactly once
(resumed, not duplicated), every run succeeded, the table's ``--json`` shape, loadable artifacts
and sample grids. The smoke preset's step counts are tiny, so **no effect is asserted**: the
table's numbers mean nothing here (see docs/miniature.md for the cpu preset's table).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from backend import jobs
from backend.compositional.intervals import MetricValue, contrast_bootstrap, difference_bootstrap, pooled
from backend.compositional.metrics import Detection, ImageScore, aggregate, paired_difference
from backend.compositional.prompts import ObjectSpec, StructuredPrompt
from backend.jobs.launch import pid_alive
from backend.miniature.presets import ARM_MIXES, PRESETS, TABLE_METRICS
from backend.miniature.table import ACCURACY_KINDS, ArmImages, arm_contrast, arm_difference, arm_rows
from backend.workspace import open_workspace
from tests.conftest import ADMIN, login, open_runs, open_tab, run_cli, start_studio, stop_studio, wait_for

pytestmark = pytest.mark.timeout(600)

STAGES = (
    "world", "base", "captioner_pretrain", "captioner_finetune", "recaption_short", "recaption_long",
    *(f"t2i {arm}" for arm in PRESETS["smoke"].arms), "generate", "evaluate",
)  # fmt: skip


def _experiment_stages(home: Path) -> dict[str, int]:
    path = home / "runs" / "1" / "stages.json"
    return json.loads(path.read_text())["runs"] if path.exists() else {}


def _kill(run: jobs.Run) -> None:
    if run.pid is not None and pid_alive(run.pid):
        os.killpg(run.pgid or run.pid, signal.SIGKILL)


@pytest.mark.browser
def test_smoke_experiment_killed_then_resumed_ends_with_every_stage_once_and_the_table(
    tmp_path: Path,
    browser,  # noqa: ANN001 - playwright browser
) -> None:
    home = tmp_path / "home"
    cli = subprocess.Popen(
        [sys.executable, "-m", "studio.cli", "--home", str(home), "experiment", "miniature", "--preset", "smoke"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: "captioner_pretrain" in _experiment_stages(home), timeout=240, what="the pre-training stage")
        ws = open_workspace(home)
        child = jobs.get_run(ws, _experiment_stages(home)["captioner_pretrain"])
        parent = wait_for(lambda: (r := jobs.get_run(ws, 1)).pid and r, timeout=30, what="the experiment's pid")
        _kill(parent)  # the experiment's runner first, then the stage it was driving
        child = wait_for(lambda: (r := jobs.get_run(ws, child.id)).pid and r, timeout=60, what="the stage's pid")
        _kill(child)
        cli.wait(timeout=60)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert cli.returncode == 1, cli.stderr  # the experiment was interrupted, and the CLI says so

    done = run_cli(home, "runs", "resume", "1", "--json", timeout=480)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["status"] == "succeeded" and summary["preset"] == "smoke"

    # every stage exactly once, every one succeeded; the killed ones were resumed (attempt 2)
    ws = open_workspace(home)
    stages = summary["stage_runs"]
    assert tuple(stages) == STAGES
    runs = {r.id: r for r in jobs.list_runs(ws, limit=100)}
    assert sorted(runs) == sorted([1, *stages.values()]), "a stage ran twice, or a run is not a stage"
    assert all(runs[i].status == "succeeded" for i in stages.values())
    assert runs[stages["captioner_pretrain"]].attempt >= 2 and runs[1].attempt >= 2

    # the --json contract (shape only: the smoke preset asserts no effect)
    arms = summary["arms"]
    assert [a["arm"] for a in arms] == list(PRESETS["smoke"].arms)
    for arm in arms:
        assert arm["caption_condition"] == ARM_MIXES[arm["arm"]]
        for metric in TABLE_METRICS:
            assert {"value", "lower", "upper", "chance"} <= set(arm["metrics"][metric])
    assert set(summary["chance"]) == set(TABLE_METRICS)
    assert summary["machine"]["cpu"] and summary["machine"]["torch_threads"] >= 1  # the CPU kind is provenance
    assert set(summary["differences"]) == set(TABLE_METRICS)
    for d in summary["differences"].values():
        assert {"value", "lower", "upper", "interval_excludes_zero"} <= set(d)
        assert d["treatment"] == "RECAP Mix" and d["control"] == "Alttext"
    assert set(summary["caption_accuracy"]) == set(ACCURACY_KINDS)
    for kind in ACCURACY_KINDS:
        assert {"objects", "colors", "counts", "positions"} <= set(summary["caption_accuracy"][kind])
    assert set(STAGES) | {"table", "total"} == set(summary["stage_seconds"])
    for grid in summary["grids"].values():
        assert (home / grid).is_file()

    # artifacts load with plain from_pretrained
    import torch
    from diffusers import StableDiffusionPipeline
    from transformers import BlipForConditionalGeneration

    (base,) = [a for a in jobs.list_artifacts(ws, kind="t2i") if a.name.endswith("-sd-base")]
    stats = base.meta["text_pretraining"]  # the text encoder was pre-trained, with retrieval beside chance
    assert stats["steps"] == PRESETS["smoke"].text_steps and set(stats["retrieval"]) == set(stats["writers"])
    base_text = StableDiffusionPipeline.from_pretrained(home / base.path).text_encoder.state_dict()
    for arm in arms:
        pipe = StableDiffusionPipeline.from_pretrained(home / jobs.get_artifact(ws, int(arm["artifact"])).path)
        assert pipe.scheduler.config.prediction_type == "v_prediction"
        # every arm kept the base's pre-trained text encoder frozen: the arms differ by their UNets only
        assert all(torch.equal(v, base_text[k]) for k, v in pipe.text_encoder.state_dict().items())
    captioners = jobs.list_artifacts(ws, kind="captioner")
    assert len(captioners) == 4  # base, alt-text pre-trained, short, long
    for artifact in captioners:
        BlipForConditionalGeneration.from_pretrained(home / artifact.path)

    # the human-readable table
    table_md = (home / "runs" / "1" / "table.md").read_text()
    assert "**RECAP Mix − Alttext** (paired)" in table_md and "mismatched prompts" in table_md

    # the studio shows it: every stage in the Runs tab, the table and the grids in Results
    studio = start_studio(home, demo=False)
    try:
        page = login(browser, studio, ADMIN)
        open_runs(page)
        rows = " ".join(page.locator("#runs-table [role=row]").all_inner_texts())
        for kind in ("miniature", "miniature_world", "miniature_base", "captioner_train", "recaption", "t2i_train"):
            assert kind in rows, f"no {kind} run in the Runs tab"
        open_tab(page, "Results", "#results-miniature-tab-button")
        page.locator("#results-miniature-tab-button").click()
        table = page.locator("#miniature-table")
        wait_for(lambda: "RECAP Mix − Alttext" in table.inner_text(), what="the experiment's table in Results")
        text = table.inner_text()
        assert "preset smoke" in text and "mismatched prompts" in text and "objects P / R" in text
        grids = page.locator("#miniature-grids img")
        wait_for(lambda: grids.count() >= len(arms), what="a sample grid per arm")
        # Review: an image's alt-text, human captions and recaptions, each scored against its truth
        open_tab(page, "Review", "#tab-review")
        page.locator("#rv-dataset input").click()
        page.get_by_role("option", name="miniature", exact=True).first.click()
        page.wait_for_selector("#review-gallery img", timeout=60_000)
        page.locator("#review-gallery .thumbnail-item").first.click()
        variants = page.locator("#variants")
        wait_for(lambda: "recap long" in variants.inner_text().lower(), what="the image's recaptions in Review")
        assert variants.inner_text().count("vs truth") == variants.locator("th").count() >= 5
        page.context.close()
    finally:
        stop_studio(studio)


def _scores(hits: list[bool]) -> list[ImageScore]:
    return [ImageScore({"circle": h}, {}, (), h, "single") for h in hits]


def test_paired_difference_is_the_difference_of_the_arms_with_a_paired_interval() -> None:
    clusters = [0, 0, 1, 1, 2, 2, 3, 3]
    control = _scores([True, False, False, False, True, True, False, True])
    treatment = _scores([True, True, False, True, True, True, True, True])
    d = paired_difference(treatment, clusters, control, clusters, "soa_i", rounds=500, seed=1)
    expected = aggregate(treatment, clusters, ["soa_i"])["soa_i"].value - aggregate(control, clusters, ["soa_i"])["soa_i"].value
    assert math.isclose(d.value, expected) and d.lower <= d.value <= d.upper
    same = paired_difference(control, clusters, control, clusters, "soa_i", rounds=200, seed=1)
    assert (same.value, same.lower, same.upper) == (0.0, 0.0, 0.0)  # paired: identical arms never differ


def test_arm_difference_compares_any_two_arms_and_is_the_tables_row_for_recap_mix_and_alttext() -> None:
    """Probes compare other pairs of arms (bench/miniature_more_prompts.py --extra) with the
    table's own paired difference."""
    prompts = [StructuredPrompt(f"a {c}", (ObjectSpec(c),)) for c in ("circle", "square", "triangle", "circle")]
    hit = [Detection(c, 1.0, (0.1, 0.1, 0.4, 0.4)) for c in ("circle", "square", "triangle", "circle")]
    miss = [Detection("square" if c == "circle" else "circle", 1.0, (0.1, 0.1, 0.4, 0.4)) for c in ("circle", "square", "triangle", "circle")]  # fmt: skip
    index = [0, 0, 1, 1, 2, 2, 3, 3]

    def arm(name: str, found: list[bool]) -> ArmImages:
        return ArmImages(name, name, name, list(index), [[hit[p] if f else miss[p]] for p, f in zip(index, found, strict=True)])

    mix = arm("RECAP Mix", [True, True, False, True, True, True, True, False])
    alt = arm("Alttext", [True, False, False, False, True, False, False, False])
    probe = arm("probe", [True] * 8)
    d = arm_difference(prompts, probe, alt, rounds=200, seed=0)
    assert math.isclose(d["soa_i"]["value"], 1.0 - 2 / 8) and d["soa_i"]["lower"] <= d["soa_i"]["value"]
    assert (d["soa_i"]["treatment"], d["soa_i"]["control"]) == ("probe", "Alttext")
    assert d["soa_i"]["favours"] in ("probe", None) and set(d) == set(TABLE_METRICS)
    table = arm_rows(prompts, [alt, mix, probe], rounds=200, seed=0)
    assert table["differences"] == arm_difference(prompts, mix, alt, rounds=200, seed=0)
    # a two-by-two probe: does a design change RECAP Mix − Alttext? One paired resample of four arms
    probe_alt = arm("probe, alttext", [True, False, True, False, False, False, True, False])
    inter = arm_contrast(prompts, [(1, probe), (-1, probe_alt), (-1, mix), (1, alt)], rounds=200, seed=0)
    by_pair = [arm_difference(prompts, a, b, rounds=200, seed=0) for a, b in ((probe, probe_alt), (mix, alt))]
    for m in TABLE_METRICS:
        if by_pair[0][m]["value"] is not None and by_pair[1][m]["value"] is not None:
            assert math.isclose(inter[m]["value"], by_pair[0][m]["value"] - by_pair[1][m]["value"], abs_tol=1e-12)
    assert inter["soa_i"]["terms"][0] == [1.0, "probe"] and inter["soa_i"]["lower"] <= inter["soa_i"]["value"]
    same = arm_contrast(prompts, [(1, mix), (-1, alt), (-1, mix), (1, alt)], rounds=200, seed=0)["soa_i"]
    assert (same["value"], same["lower"], same["upper"], same["interval_excludes_zero"]) == (0.0, 0.0, 0.0, False)
    two = arm_contrast(prompts, [(1, mix), (-1, alt)], rounds=200, seed=0)["soa_i"]
    assert (two["value"], two["lower"], two["upper"]) == tuple(table["differences"]["soa_i"][k] for k in ("value", "lower", "upper"))
    with pytest.raises(ValueError, match="as many weights"):
        contrast_bootstrap([([[1.0]], [[1.0]])], [1.0, -1.0], pooled, n_images=1)


def test_difference_bootstrap_drops_prompts_one_arm_cannot_score_and_refuses_mismatched_shapes() -> None:
    num = ([[1.0], [0.0], [1.0]], [[1.0], [0.0], [1.0]])
    other = ([[0.0], [1.0], [0.0]], [[1.0], [1.0], [1.0]])
    mv = difference_bootstrap(num, other, pooled, n_images=5, rounds=100)
    assert isinstance(mv, MetricValue) and mv.n_prompts == 2 and mv.value == 1.0
    with pytest.raises(ValueError, match="same prompts"):
        difference_bootstrap(([[1.0]], [[1.0]]), other, pooled, n_images=1)


def test_presets_give_every_arm_the_same_steps_seed_and_schedule() -> None:
    for plan in PRESETS.values():
        assert set(plan.arms) <= set(ARM_MIXES)
        assert "Alttext" in plan.arms and "RECAP Mix" in plan.arms
        assert plan.t2i["random_flip"] is False  # left and right are what the prompts ask for
        # one of two coherent encoder designs: pre-trained and frozen, or untrained and trained with the arm
        assert (plan.text_steps > 0, plan.t2i["train"]) in {(True, "unet"), (False, "both")}, plan.name
        assert plan.human_images <= 200
