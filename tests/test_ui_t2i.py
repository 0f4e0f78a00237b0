"""Text-to-image work from the studio, end to end: a real server (its queue thread runs the jobs),
real Chromium, real runner subprocesses and tiny models built offline.

One browser session walks the T2I half of the workflow as an admin would: fine-tune a tiny
Stable Diffusion pipeline on the demo dataset from the Runs tab, look at its validation images,
loss curve and the caption kinds it used; generate images with the new checkpoint; evaluate
them with a tiny CLIP; read the numbers in Results → Automatic metrics.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from backend import jobs
from backend.jobs import configs
from backend.workspace import Workspace
from tests.conftest import (
    ADMIN,
    ANNOTATOR,
    UI_WAIT_MS,
    Studio,
    environment,
    launched_id,
    login,
    open_runs,
    open_tab,
    start_studio,
    stop_runs_and_studio,
    wait_for,
)

pytestmark = [pytest.mark.timeout(300)]
pytest_plugins = ("tests.tiny_models",)

SHOT = Path("/tmp/t2i_ui.png")
VALIDATION_PROMPTS = ["a red square on the left", "two blue circles"]


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    """The demo studio, its jobs at one torch thread (the test machine's cores are shared)."""
    with environment(OMP_NUM_THREADS="1"):
        server = start_studio(tmp_path_factory.mktemp("studio-t2i") / "home")
    yield server
    stop_runs_and_studio(server)


def launch(page, button: str) -> int:  # noqa: ANN001
    before = launched_id(page)
    page.locator(button).click()
    return wait_for(lambda: (new := launched_id(page)) != before and new, what=f"the launch of {button}")


def finished(studio: Studio, run_id: int, timeout: float = 150) -> jobs.Run:
    run = wait_for(
        lambda: (r := jobs.get_run(studio.ws, run_id)).status not in jobs.ACTIVE and r,
        timeout=timeout,
        interval=0.5,
        what=f"run {run_id} to finish",
    )
    assert run.status == "succeeded", (run.status, run.message, jobs.log_tail(studio.ws, run_id, 30))
    return run


def fill(page, selector: str, value: str, enter: bool = False) -> None:  # noqa: ANN001
    field = page.locator(f"{selector} input, {selector} textarea").first
    field.fill(value)
    if enter:
        field.press("Enter")


@pytest.mark.browser
def test_fine_tune_generate_and_evaluate_from_the_studio(
    studio: Studio,
    browser,  # noqa: ANN001 - playwright browser
    tmp_path: Path,
    tiny_model_dir: Callable[[str], Path],
) -> None:
    base = tiny_model_dir("sd")  # a tiny Stable Diffusion folder (save_pretrained), outside the workspace
    from training.clip import build_tiny_clip

    clip_name, clip_weights = build_tiny_clip(tmp_path / "clip")

    page = login(browser, studio, ADMIN)
    open_runs(page)

    # ---- fine-tune the tiny pipeline on the demo dataset (alt-text + human captions; the job falls back)
    page.locator("#form-t2i-train").get_by_text("Fine-tune a text-to-image model").click()
    wait_for(lambda: page.locator("#t2i-train-dataset input").input_value() == "demo-shapes", what="the datasets")
    fill(page, "#t2i-train-base", str(base), enter=True)
    fill(page, "#t2i-train-steps", "3")
    fill(page, "#t2i-train-batch-size", "2")
    fill(page, "#t2i-train-resolution", "32")
    fill(page, "#t2i-train-num-workers", "0")
    fill(page, "#t2i-train-validation-prompts", "\n".join(VALIDATION_PROMPTS))
    fill(page, "#t2i-train-validation-every", "2")
    fill(page, "#t2i-train-validation-inference-steps", "2")
    train_id = launch(page, "#launch-t2i-train")
    config = jobs.get_run(studio.ws, train_id).config
    assert config == {
        **configs.DEFAULTS["t2i_train"],
        "dataset": "demo-shapes",
        "base": str(base.resolve()),  # a folder is stored as its absolute path
        "steps": 3,
        "batch_size": 2,
        "resolution": 32,
        "num_workers": 0,
        "validation_prompts": VALIDATION_PROMPTS,
        "validation_every": 2,
        "validation_inference_steps": 2,
    }
    finished(studio, train_id)
    artifact = jobs.list_artifacts(studio.ws, kind=configs.T2I_ARTIFACT, run_id=train_id)[0]

    # its detail (opened by the launch) shows the validation images, the loss curve and the caption usage
    wait_for(lambda: "succeeded" in page.locator("#run-header").inner_text(), what="the detail to finish")
    page.get_by_role("tab", name="Validation samples", exact=True).click()
    samples = page.locator("#run-samples")
    wait_for(lambda: samples.locator("img.t2i").count() == len(VALIDATION_PROMPTS), what="the sample images")
    assert all(prompt in samples.inner_text() for prompt in VALIDATION_PROMPTS)
    # an image loads a moment after its tag appears: wait for it, as every other check here waits
    page.wait_for_function(
        "() => { const img = document.querySelector('#run-samples img.t2i');"
        " return img && img.complete && img.naturalWidth > 0; }",
        timeout=UI_WAIT_MS,
    )
    page.get_by_role("tab", name="Loss curves", exact=True).click()
    page.locator("#run-curves img, #run-curves svg").first.wait_for(timeout=UI_WAIT_MS)
    page.get_by_role("tab", name="Metrics", exact=True).click()
    usage = page.locator("#run-usage")
    wait_for(lambda: "Caption kinds used in training" in usage.inner_text(), what="the caption usage")
    for kind, n in artifact.meta["usage"].items():
        assert re.search(rf"{re.escape(kind)}\s+{n}\b", usage.inner_text()), (kind, n, usage.inner_text())
    expect(page.locator("#run-metrics")).to_contain_text("train_loss", use_inner_text=True)
    page.screenshot(path=str(SHOT), full_page=True)

    # ---- generate with the new checkpoint (offered first once the lists are refreshed)
    page.locator("#form-generate").get_by_text("Generate images").click()
    page.get_by_role("button", name="Refresh datasets and captioners").click()
    wait_for(
        lambda: artifact.name in page.locator("#generate-checkpoints").inner_text(), what="the new checkpoint"
    )
    fill(page, "#generate-seeds", "0,1")
    fill(page, "#generate-inference-steps", "2")
    fill(page, "#generate-max-prompts", "2")
    gen_id = launch(page, "#launch-generate")
    gen_config = jobs.get_run(studio.ws, gen_id).config
    assert gen_config["checkpoints"] == [artifact.name] and gen_config["seeds"] == [0, 1]
    assert gen_config["prompts"] == "studio_prompts" and gen_config["max_prompts"] == 2
    finished(studio, gen_id)
    dataset = f"generated-run-{gen_id}"

    # ---- evaluate the generated images with a tiny CLIP
    page.locator("#form-t2i-eval").get_by_text("Evaluate generated images").click()
    page.get_by_role("button", name="Refresh datasets and captioners").click()
    wait_for(
        lambda: page.locator("#t2i-eval-dataset input").input_value() == dataset, what="the generated dataset"
    )
    fill(page, "#t2i-eval-clip-model", clip_name)
    fill(page, "#t2i-eval-clip-pretrained", str(clip_weights))
    eval_id = launch(page, "#launch-t2i-eval")
    assert jobs.get_run(studio.ws, eval_id).config["clip_pretrained"] == str(clip_weights.resolve())
    finished(studio, eval_id)

    # ---- the numbers in Results → Automatic metrics
    open_tab(page, "Results", "#results-auto-tab-button")
    page.locator("#results-auto-tab-button").click()
    table = page.locator("#auto-table")  # RECAP's table: checkpoint rows, metric × regime columns
    wait_for(lambda: artifact.name in table.inner_text(), what="the metrics table")
    text = table.inner_text()
    assert "CLIP-S (raw)" in text and "R-precision % (raw)" in text
    assert artifact.meta["caption_condition"] in text  # the checkpoint's caption condition beside it
    page.locator("#auto-long-box").get_by_text("Every number with its provenance").click()
    numbers = page.locator("#auto-long").inner_text()
    assert "clip_score" in numbers and "r_precision" in numbers and clip_name in numbers
    with page.expect_download(timeout=UI_WAIT_MS) as download:
        page.locator("#auto-csv").click()
    csv_text = Path(download.value.path()).read_text(encoding="utf-8")
    assert csv_text.startswith("dataset,checkpoint,caption_condition,")
    assert f"{dataset},{artifact.name},{artifact.meta['caption_condition']}," in csv_text
    assert csv_text.count("\n") == 3 and "clip_score" in csv_text and str(eval_id) in csv_text
    page.locator("#auto-plot img, #auto-plot svg").first.wait_for(timeout=UI_WAIT_MS)
    expect(page.locator("#auto-summary")).to_contain_text("checkpoints", use_inner_text=True)
    page.screenshot(path=str(SHOT.with_name("t2i_results.png")), full_page=True)

    # ---- RECAP's table of the dataset: checkpoint row, chance row, CSV and LaTeX downloads
    page.locator("#results-recap-tab-button").click()
    recap = page.locator(f'#recap-tables .recap-table[data-dataset="{dataset}"]')
    wait_for(lambda: recap.count() == 1 and artifact.name in recap.inner_text(), what="the RECAP table")
    text = recap.inner_text()
    assert "RP" in text and "CLIP-S" in text and artifact.meta["caption_condition"] in text
    assert "chance (mismatched prompts)" in recap.locator("tr.recap-chance").inner_text()
    with page.expect_download(timeout=UI_WAIT_MS) as download:
        page.locator("#recap-latex").click()
    latex = Path(download.value.path()).read_text(encoding="utf-8")
    assert "\\begin{tabular}" in latex and "chance (mismatched prompts)" in latex
    with page.expect_download(timeout=UI_WAIT_MS) as download:
        page.locator("#recap-csv").click()
    recap_csv = Path(download.value.path()).read_text(encoding="utf-8")
    assert recap_csv.startswith("dataset,checkpoint,regime,") and f"{dataset},{artifact.name},raw," in recap_csv
    page.context.close()

    # the launch endpoints exist for every session: an annotator's calls are refused on the server
    before = len(jobs.list_runs(studio.ws, limit=1000))
    with httpx.Client(base_url=studio.url, timeout=30) as client:
        assert (
            client.post("/login", data={"username": ANNOTATOR[0], "password": ANNOTATOR[1]}).status_code
            == 200
        )
        for api_name, data in ANNOTATOR_CALLS.items():
            started = client.post(f"/gradio_api/call/{api_name}", json={"data": data})
            assert started.status_code == 200, started.text
            text = client.get(f"/gradio_api/call/{api_name}/{started.json()['event_id']}").text
            assert "event: error" in text and "Not allowed" in text, (api_name, text)
    assert len(jobs.list_runs(studio.ws, limit=1000)) == before


ANNOTATOR_CALLS: dict[str, list] = {
    "launch_t2i_train": ["demo-shapes", "org/sd", "recap_mix", "", 0.05, "unet", False, 4, 1e-5, 5e-6, 2, 1, 32,
                         False, False, "truncate", 0, "a cat", 1, 1, "no", "cpu"],
    "launch_generate": ["studio_prompts", ["org/sd"], "0", "raw", "", "{prompt}", 2, 7.5, 1, 1, "", "cpu"],
    "launch_t2i_eval": ["demo-shapes", ["clip_score"], "ViT-B-32", "openai", "", "inception", "", "cpu"],
}  # fmt: skip


def test_automatic_metrics_view_compares_regimes_per_checkpoint(ws: Workspace) -> None:
    """No browser: the view's table, figure and CSV for two checkpoints × two regimes, re-evaluated once."""
    from backend.db import write_session
    from backend.evaluation import EvalResult
    from studio import results_auto

    folder = ws.home / "runs" / "9" / "pipeline"
    folder.mkdir(parents=True)
    meta = {
        "caption_condition": "RECAP Mix",
        "mix": {"name": "recap_mix", "weights": {"recap_short": 0.5, "recap_long": 0.5}, "empty_prob": 0.1},
        "captioners": {"recap_short": ["tiny-blip"], "recap_long": ["tiny-blip"]},
        "usage": {"recap_short": 5, "recap_long": 4, "empty": 1},
    }
    artifact = jobs.add_artifact(ws, None, configs.T2I_ARTIFACT, "t2i-run-9", folder, meta)
    old_eval = jobs.create_run(ws, "selftest", {})
    new_eval = jobs.create_run(ws, "selftest", {})
    with write_session(ws) as s:
        s.add(EvalResult(run_id=old_eval.id, dataset="gen", checkpoint="t2i-run-9", regime="raw",
                         metric="clip_score", value=1.0, stderr=0.5, n=4))  # fmt: skip
        for checkpoint, base in (("t2i-run-9", 30.0), ("org/sd-base", 28.0)):
            group = {"artifact_id": artifact.id} if checkpoint == "t2i-run-9" else {}
            for regime, bump in (("raw", 0.0), ("upsampled", 1.5)):
                s.add(EvalResult(run_id=new_eval.id, dataset="gen", checkpoint=checkpoint, regime=regime,
                                 metric="clip_score", value=base + bump, stderr=0.25, n=40,
                                 details={"group": group}))  # fmt: skip
                s.add(EvalResult(run_id=new_eval.id, dataset="gen", checkpoint=checkpoint, regime=regime,
                                 metric="fid", value=90.0 - bump, n=40, details={"group": group}))  # fmt: skip

    rows = results_auto.load_rows(ws, "gen")
    assert len(rows) == 8 and all(r.eval_run == new_eval.id for r in rows)  # the newer evaluation wins
    assert len(results_auto.load_rows(ws, "gen", latest_only=False)) == 9
    headers, table = results_auto.wide_rows(rows)
    assert headers[:2] == ["checkpoint", "caption condition"]
    assert headers[2:6] == ["CLIP-S (raw)", "CLIP-S (upsampled)", "FID (raw)", "FID (upsampled)"]
    by_checkpoint = {row[0]: row for row in table}
    tuned = by_checkpoint["t2i-run-9"]
    assert tuned[1] == "RECAP Mix" and tuned[2:6] == ["30.00 ± 0.25", "31.50 ± 0.25", "90.00", "88.50"]
    assert "recap_short" in tuned[6] and "tiny-blip" in tuned[7]
    assert by_checkpoint["org/sd-base"][1] == results_auto.NOT_ARTIFACT

    figure = results_auto.metrics_figure(rows)
    panels = [ax for ax in figure.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["CLIP score ↑", "FID ↓"]
    assert all(len(ax.patches) == 4 for ax in panels)  # 2 checkpoints × 2 regimes each
    assert [t.get_text() for t in panels[0].get_legend().get_texts()] == ["raw", "upsampled"]
    lines = results_auto.csv_text(rows).strip().splitlines()
    assert len(lines) == 9 and lines[0].startswith(
        "dataset,checkpoint,caption_condition,mix,captioners,regime"
    )
