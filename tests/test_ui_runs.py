"""Runs tab end to end: a real studio (its queue thread starts the runs), real Chromium, real runners.

The studio runs in developer mode (``RECAP_STUDIO_DEV=1``) so the launch forms include the
model-free self-test job: launch, progress, detail, failure, cancel and resume are checked
with it. The real forms are checked twice: for the exact config they store (the contract
with the jobs) while another run holds the GPU, so they queue and load nothing; and end to
end, fine-tuning a tiny BLIP and recaptioning the demo dataset with the artifact it produced.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect
from sqlalchemy import func
from sqlmodel import select

from backend import jobs
from backend.db import read_session
from backend.jobs import configs
from backend.models import Image
from backend.users import get_user
from studio.run_forms import caption_counts
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
    run_cli,
    start_studio,
    stop_runs_and_studio,
    stop_studio,
    wait_for,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

SHOT = Path("/tmp/runs.png")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    """This module's own studio, in developer mode (the self-test form)."""
    with environment(RECAP_STUDIO_DEV="1"):
        server = start_studio(tmp_path_factory.mktemp("studio-runs") / "home")
    yield server
    stop_runs_and_studio(server)


def table_row(page, run_id: int) -> str:  # noqa: ANN001
    """The visible text of the runs table's row for ``run_id`` ('' if it is not on the page)."""
    rows = page.locator("#runs-table [role=row]").all_inner_texts()
    for row in rows:
        cells = row.split()
        if cells and cells[0] == str(run_id):
            return " ".join(cells)
    return ""


def launch_selftest(page, items: int, delay: float, fail: bool = False) -> int:  # noqa: ANN001
    form = page.locator("#form-selftest")
    if not page.locator("#launch-selftest").is_visible():
        form.get_by_text("Self-test job (developer mode)").click()
    # Enter commits a number box's value to the app before the launch click reads it (a bare
    # fill sometimes lost the race and the run started with the defaults: 20 items)
    fail_after = str(items // 2) if fail else ""  # empty: never fail
    for box, value in (
        ("#selftest-items input", items),
        ("#selftest-delay-s input", delay),
        ("#selftest-fail-after input", fail_after),
    ):
        page.locator(box).fill(str(value))
        page.locator(box).press("Enter")
    before = launched_id(page)
    page.locator("#launch-selftest").click()
    return wait_for(lambda: (new := launched_id(page)) != before and new, what="the new run's launch message")


def test_admin_launches_a_run_and_watches_it_finish(studio: Studio, browser) -> None:  # noqa: ANN001
    page = login(browser, studio, ADMIN)
    open_runs(page)
    expect(page.locator("#runs-launch")).to_be_visible()
    run_id = launch_selftest(page, items=12, delay=0.35)
    run = jobs.get_run(studio.ws, run_id)
    assert run.kind == "selftest" and run.created_by == get_user(studio.ws, ADMIN[0]).id

    # the table refreshes on its own: we see it running with a partial bar, then done
    seen_running = wait_for(
        lambda: (
            "running" in table_row(page, run_id)
            and re.search(r"\b([1-9]|1[01])/12\b", table_row(page, run_id))
        ),
        timeout=40,
        what="the run to show partial progress",
    )
    assert seen_running
    wait_for(lambda: "succeeded" in table_row(page, run_id), timeout=40, what="the run to succeed")
    row = table_row(page, run_id)
    assert "12/12 (100%)" in row and "done" in row

    # the launch opened its detail; it followed the run to the end
    header = page.locator("#run-header")
    wait_for(lambda: "succeeded" in header.inner_text(), what="the detail to show success")
    assert f"Run #{run_id} · selftest" in header.inner_text()
    wait_for(
        lambda: "selftest: item 11 done" in page.locator("#run-log textarea").input_value(), what="the log"
    )
    page.get_by_role("tab", name="Config").click()
    wait_for(lambda: '"items"' in page.locator("#run-config").inner_text(), what="the config view")
    page.get_by_role("tab", name="Log").click()
    page.screenshot(path=str(SHOT), full_page=True)

    # what a fine-tune adds (losses, validation samples, a checkpoint) appears without a reload
    add_training_outputs(studio, run_id)
    page.get_by_role("tab", name="Loss curves").click()
    page.locator("#run-curves img, #run-curves svg").first.wait_for(timeout=UI_WAIT_MS)
    page.get_by_role("tab", name="Metrics").click()
    wait_for(lambda: "val_loss" in page.locator("#run-metrics").inner_text(), what="the metrics table")
    page.get_by_role("tab", name="Validation samples").click()
    samples = page.locator("#run-samples")
    wait_for(lambda: "a red circle, generated" in samples.inner_text(), what="the samples")
    assert "A red circle on white." in samples.inner_text()
    # an image loads a moment after its tag appears: wait for it (a one-time read raced the load)
    page.wait_for_function(
        "() => { const img = document.querySelector('#run-samples img');"
        " return img && img.complete && img.naturalWidth > 0; }",
        timeout=UI_WAIT_MS,
    )
    page.get_by_role("tab", name="Artifacts").click()
    wait_for(lambda: "ui-captioner" in page.locator("#run-artifacts").inner_text(), what="the artifacts")
    page.screenshot(path=str(SHOT.with_name("runs_detail.png")), full_page=True)
    page.context.close()


def add_training_outputs(studio: Studio, run_id: int) -> None:
    """Metrics, a samples file and a checkpoint artifact as the fine-tune job writes them."""
    for step in range(0, 50, 10):
        jobs.add_metric(studio.ws, run_id, step, "train_loss", 3.0 / (1 + step / 10))
        if step % 20 == 0:
            jobs.add_metric(studio.ws, run_id, step, "val_loss", 3.2 / (1 + step / 12))
    jobs.add_metric(studio.ws, run_id, 40, "bleu", 0.21)
    with read_session(studio.ws) as s:
        image = s.exec(select(Image).order_by(Image.id)).first()
    assert image is not None
    folder = studio.home / "runs" / str(run_id)
    (folder / "samples").mkdir(exist_ok=True)
    rows = [
        {
            "image_id": image.id,
            "image_path": "",
            "human": "A red circle on white.",
            "generated": "a red circle, generated",
        }
    ]
    (folder / "samples" / "step_40.json").write_text(json.dumps(rows))
    (folder / "checkpoints" / "final").mkdir(parents=True)
    jobs.add_artifact(studio.ws, run_id, "captioner", "ui-captioner", folder / "checkpoints" / "final")


def test_failure_shows_the_error_then_cancel_and_resume(studio: Studio, browser) -> None:  # noqa: ANN001
    page = login(browser, studio, ADMIN)
    open_runs(page)
    failing = launch_selftest(page, items=6, delay=0.05, fail=True)
    wait_for(lambda: "failed" in table_row(page, failing), timeout=40, what="the run to fail")
    assert "SelftestFailure: selftest asked to fail after 3 items" in table_row(page, failing)
    error = page.locator("#run-error")
    wait_for(lambda: error.is_visible(), what="the error box")
    assert "SelftestFailure" in error.inner_text() and "Traceback" in error.inner_text()

    slow = launch_selftest(page, items=300, delay=0.2)
    wait_for(lambda: jobs.get_run(studio.ws, slow).done >= 2, timeout=40, what="the slow run to progress")
    cancel = page.locator("#run-cancel")
    wait_for(lambda: cancel.is_visible(), what="the cancel button")
    cancel.click()
    wait_for(lambda: jobs.get_run(studio.ws, slow).status == "cancelled", timeout=30, what="the cancel")
    wait_for(
        lambda: "cancelled" in page.locator("#run-action-result").inner_text(), what="the cancel message"
    )
    done_before = jobs.get_run(studio.ws, slow).done

    resume = page.locator("#run-resume")
    wait_for(lambda: resume.is_visible(), what="the resume button")
    resume.click()
    wait_for(
        lambda: (
            jobs.get_run(studio.ws, slow).attempt == 2 and jobs.get_run(studio.ws, slow).done > done_before
        ),
        timeout=40,
        what="the resumed run to continue",
    )
    wait_for(lambda: "running" in table_row(page, slow), what="the table to show it running again")
    jobs.cancel_run(studio.ws, slow, grace_s=5)
    page.context.close()


@pytest.fixture
def gpu_busy(studio: Studio) -> Iterator[int]:
    """A long GPU-needing run holding the (single) GPU slot, so GPU runs launched now stay queued."""
    blocker = jobs.create_run(studio.ws, "selftest", {"items": 2000, "delay_s": 0.1}, needs_gpu=True)
    jobs.launch(studio.ws, int(blocker.id))
    yield int(blocker.id)
    with contextlib.suppress(jobs.JobError):
        jobs.cancel_run(studio.ws, int(blocker.id), grace_s=5)


def test_real_forms_store_the_job_contract(studio: Studio, browser, gpu_busy: int) -> None:  # noqa: ANN001
    page = login(browser, studio, ADMIN)
    open_runs(page)
    page.locator("#form-recaption").get_by_text("Recaption a dataset").click()
    wait_for(lambda: page.locator("#recaption-dataset input").input_value(), what="the dataset choices")
    dataset = page.locator("#recaption-dataset input").input_value()

    # a path that does not exist is refused with a clear message, and nothing is created
    before = len(jobs.list_runs(studio.ws))
    captioner = page.locator("#recaption-captioner input")
    captioner.fill("./no/such/model")
    captioner.press("Enter")
    page.locator("#launch-recaption").click()
    page.get_by_text("captioner './no/such/model': no such folder").first.wait_for(timeout=UI_WAIT_MS)
    assert len(jobs.list_runs(studio.ws)) == before

    captioner.fill("org/tiny-captioner")
    captioner.press("Enter")
    page.locator("#form-recaption").get_by_label("long").check()
    page.locator("#launch-recaption").click()
    run_id = wait_for(
        lambda: next((r.id for r in jobs.list_runs(studio.ws, kind="recaption")), None),
        what="the recaption run",
    )
    run = jobs.get_run(studio.ws, run_id)
    assert run.config == {
        **configs.DEFAULTS["recaption"],
        "dataset": dataset,
        "captioner": "org/tiny-captioner",
        "style": "long",
    }
    assert run.needs_gpu and run.status == "queued"  # behind the run holding the GPU
    wait_for(lambda: "queued" in table_row(page, run_id), what="the queued run in the table")
    expect(page.locator("#launch-result")).to_contain_text("starts when the GPU is free", use_inner_text=True)

    page.locator("#form-captioner-train").get_by_text("Fine-tune a captioner").click()
    page.locator("#launch-captioner-train").click()
    train_id = wait_for(
        lambda: next((r.id for r in jobs.list_runs(studio.ws, kind="captioner_train")), None),
        what="the fine-tune run",
    )
    assert jobs.get_run(studio.ws, train_id).config == {
        **configs.DEFAULTS["captioner_train"],
        "dataset": dataset,
    }

    page.locator("#form-clip-score").get_by_text("CLIP-score captions").click()
    page.locator("#launch-clip-score").click()
    clip_id = wait_for(
        lambda: next((r.id for r in jobs.list_runs(studio.ws, kind="clip_score")), None),
        what="the scoring run",
    )
    assert jobs.get_run(studio.ws, clip_id).config == {**configs.DEFAULTS["clip_score"], "dataset": dataset}
    page.context.close()

    # the same endpoints serve an admin's script (API callers have no page, so no dropdown choices)
    with httpx.Client(base_url=studio.url, timeout=30) as client:
        assert client.post("/login", data={"username": ADMIN[0], "password": ADMIN[1]}).status_code == 200
        text = call_api(client, "launch_recaption", API_CALLS["launch_recaption"])
        assert "event: complete" in text, text
        made = jobs.list_runs(studio.ws, kind="recaption", limit=1)[0]
        assert made.id != run_id and made.status == "queued"
        assert made.config["captioner"] == "org/x" and made.config["batch_size"] == 4
        # any kind, any setting, by name (issue 10): what the positional endpoints cannot reach
        text = call_api(client, "launch_run", ["recaption", {**BY_NAME, "dataset": dataset}])
        assert "event: complete" in text, text
        named = jobs.list_runs(studio.ws, kind="recaption", limit=1)[0]
        assert named.id != made.id
        assert named.config == {**configs.DEFAULTS["recaption"], **BY_NAME, "dataset": dataset}
        for rid in (run_id, train_id, clip_id, made.id, named.id):
            assert "event: complete" in call_api(client, "cancel_run", [str(rid)])
    launched = (run_id, train_id, clip_id, made.id, named.id)
    assert {jobs.get_run(studio.ws, rid).status for rid in launched} == {"cancelled"}


def test_fine_tune_then_recaption_from_the_forms(studio: Studio, browser) -> None:  # noqa: ANN001
    """RECAP steps 2-3 from the Runs tab with a tiny BLIP: fine-tune, then recaption with its artifact."""
    built = run_cli(
        studio.home, "models", "tiny", "--family", "blip", "--out", "tiny-blip", "--register", "tiny-blip"
    )
    assert built.returncode == 0, built.stderr
    page = login(browser, studio, ADMIN)
    open_runs(page)

    form = page.locator("#form-captioner-train")
    form.get_by_text("Fine-tune a captioner").click()
    base = page.locator("#captioner-train-base input")
    base.fill("tiny-blip")
    base.press("Enter")
    form.get_by_label("Epochs").fill("1")
    form.get_by_label("Batch size").fill("4")
    form.get_by_label("Evaluate every N steps").fill("2")
    form.get_by_label("Max new tokens").fill("16")
    before = launched_id(page)
    page.locator("#launch-captioner-train").click()
    train_id = wait_for(lambda: (new := launched_id(page)) != before and new, what="the fine-tune launch")
    run = jobs.get_run(studio.ws, train_id)
    assert run.kind == "captioner_train" and run.config["base"] == "tiny-blip" and run.config["epochs"] == 1
    wait_for(lambda: "succeeded" in table_row(page, train_id), timeout=150, what="the fine-tune to finish")
    trained = jobs.list_artifacts(studio.ws, run_id=train_id)
    assert trained and trained[0].kind == "captioner"

    page.get_by_role("tab", name="Loss curves").click()
    page.locator("#run-curves img, #run-curves svg").first.wait_for(timeout=UI_WAIT_MS)
    page.get_by_role("tab", name="Validation samples").click()
    wait_for(lambda: page.locator("#run-samples td.gen").count() > 0, what="the validation samples")
    page.get_by_role("tab", name="Artifacts").click()
    wait_for(lambda: trained[0].name in page.locator("#run-artifacts").inner_text(), what="the artifact")

    # the new captioner is offered (newest first) once the lists are refreshed
    page.locator("#form-recaption").get_by_text("Recaption a dataset").click()
    page.get_by_role("button", name="Refresh datasets and captioners").click()
    captioner = page.locator("#recaption-captioner input")
    wait_for(  # the dropdown shows its label: "name  (run #N, artifact M)"
        lambda: captioner.input_value().startswith(f"{trained[0].name}  (run #{train_id}"),
        what="the fine-tuned captioner as default",
    )
    recap_form = page.locator("#form-recaption")
    recap_form.get_by_label("Loader workers").fill("0")
    recap_form.get_by_label("Max new tokens").fill("12")
    before = launched_id(page)
    page.locator("#launch-recaption").click()
    recap_id = wait_for(lambda: (new := launched_id(page)) != before and new, what="the recaption launch")
    wait_for(lambda: "succeeded" in table_row(page, recap_id), timeout=150, what="the recaption to finish")
    images = _image_count(studio)
    assert f"{images}/{images} (100%)" in table_row(page, recap_id)
    assert caption_counts(studio.ws, recap_id) == {"recap_short": images}  # one per image, from this run
    page.screenshot(path=str(SHOT.with_name("runs_recaption.png")), full_page=True)

    # the recaptions stand side by side with alt-text and human captions in Review
    open_tab(page, "Review", "#review-gallery img")
    page.locator("#rv-has input").click()
    page.get_by_role("option", name="human long").first.click()
    page.keyboard.press("Escape")
    page.wait_for_function(
        "() => !/· 60 images/.test(document.querySelector('#rv-page-info').innerText)", timeout=UI_WAIT_MS
    )
    page.locator("#review-gallery .thumbnail-item").first.click()
    page.wait_for_function(
        "() => document.querySelector('#variants').innerText.toLowerCase().includes('recap short')", timeout=UI_WAIT_MS
    )
    headers = [h.strip().lower() for h in page.locator("#variants th").all_inner_texts()]
    assert headers[0] == "alt-text" and "human long" in headers and "recap short" in headers
    assert headers.index("human long") < headers.index("recap short")
    expect(page.locator("#variants")).to_contain_text(f"run {recap_id}", use_inner_text=True)
    page.context.close()


def _image_count(studio: Studio) -> int:
    with read_session(studio.ws) as s:
        return int(s.exec(select(func.count()).select_from(Image)).one())


def call_api(client: httpx.Client, api_name: str, data: list) -> str:
    started = client.post(f"/gradio_api/call/{api_name}", json={"data": data})
    assert started.status_code == 200, started.text
    return client.get(f"/gradio_api/call/{api_name}/{started.json()['event_id']}").text


API_CALLS: dict[str, list] = {
    "launch_recaption": ["demo-shapes", "org/x", "short", "", 4, 0, 20, 1, "auto", "cpu"],
    "launch_captioner_train": ["demo-shapes", "org/x", "short", "separate", False, 8, False, 1e-4, 1, 2, 1, "no",
                               0, 0.1, 5, 20, "cpu", "", ""],
    "launch_clip_score": ["demo-shapes", ["alttext"], "ViT-B-32", "openai", 32, "cpu"],
    "launch_selftest": [5, 0.1, False],
    "launch_run": ["selftest", {"items": 5}],
}  # fmt: skip
BY_NAME = {"captioner": "org/y", "style": "long", "num_beams": 2, "torch_threads": 1}


def test_annotators_see_runs_but_cannot_launch_or_cancel(studio: Studio, browser) -> None:  # noqa: ANN001
    victim = jobs.create_run(studio.ws, "selftest", {"items": 400, "delay_s": 0.2})
    jobs.tick(studio.ws)
    page = login(browser, studio, ANNOTATOR)
    open_runs(page)
    wait_for(lambda: table_row(page, victim.id), what="the runs table")
    expect(page.locator("#runs-launch")).to_be_hidden()
    expect(page.locator("#run-cancel")).to_be_hidden()
    expect(page.locator("#run-resume")).to_be_hidden()
    page.locator("#run-id input").fill(str(victim.id))
    page.locator("#run-open").click()
    wait_for(lambda: f"Run #{victim.id}" in page.locator("#run-header").inner_text(), what="the detail")
    expect(page.locator("#run-header")).to_contain_text("running", use_inner_text=True)
    expect(page.locator("#run-cancel")).to_be_hidden()  # running, yet no cancel for an annotator
    page.context.close()

    before = len(jobs.list_runs(studio.ws, limit=1000))
    with httpx.Client(base_url=studio.url, timeout=30) as client:
        assert (
            client.post("/login", data={"username": ANNOTATOR[0], "password": ANNOTATOR[1]}).status_code
            == 200
        )
        calls = {**API_CALLS, "cancel_run": [str(victim.id)], "resume_run": [str(victim.id)]}
        for api_name, data in calls.items():
            text = call_api(client, api_name, data)
            assert "event: error" in text and "Not allowed" in text, (api_name, text)
    assert len(jobs.list_runs(studio.ws, limit=1000)) == before
    assert jobs.get_run(studio.ws, victim.id).status == "running"
    jobs.cancel_run(studio.ws, victim.id, grace_s=5)


def test_studio_start_interrupts_orphans_and_its_queue_starts_runs(tmp_path: Path) -> None:
    """No browser: the server's start-up reconcile and its queue thread, with nobody calling tick."""
    from backend.db import migrate, write_session
    from backend.jobs import store
    from backend.workspace import Workspace

    ws = Workspace(tmp_path / "home").ensure()
    migrate(ws)
    orphan = jobs.create_run(ws, "selftest", {"items": 3})
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with write_session(ws) as s:
        assert store.claim(s, int(orphan.id), pid=dead.pid, pgid=dead.pid)  # 'running', its process gone
    queued = jobs.create_run(ws, "selftest", {"items": 4, "delay_s": 0.01})
    server = start_studio(ws.home, demo=False)
    try:
        wait_for(
            lambda: jobs.get_run(ws, orphan.id).status == "interrupted", what="the orphan to be interrupted"
        )
        assert "resume to continue" in jobs.get_run(ws, orphan.id).message
        wait_for(
            lambda: jobs.get_run(ws, queued.id).status == "succeeded", timeout=60, what="the queue to run it"
        )
    finally:
        stop_studio(server)
    assert jobs.get_run(ws, queued.id).done == 4
