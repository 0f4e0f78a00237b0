"""Arena end to end: a real studio server, real Chromium, the real database.

One browser for the module. The test builds a small generated-style dataset (three
"checkpoints" with T2I artifacts carrying their caption mix, every image a PNG that embeds
its provenance — checkpoint name included — in a text chunk, as the generate job writes
them), opens a campaign on it through ``backend.arena``, and has two annotators judge with
the keyboard only while every network response and the DOM are searched for the system
names. Then the admin reads the ratings in the Results tab.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pytest
from PIL import Image as PILImage
from PIL import PngImagePlugin
from playwright.sync_api import expect
from sqlmodel import select

from backend import arena
from backend.arena.models import Judgment
from backend.datasets import get_or_create_dataset
from backend.db import read_session, write_session
from backend.images import add_image, decode_image
from backend.jobs.models import Artifact
from backend.users import get_user
from tests.browser_recorder import Recorder
from tests.conftest import (
    ADMIN,
    ANNOTATOR,
    ANNOTATOR2,
    UI_WAIT_MS,
    Studio,
    login,
    open_tab,
    track_page,
    wait_for,
)

CAMPAIGN = "ui-arena-t2i"
CAPTION_CAMPAIGN = "ui-arena-captions"
DATASET = "arena-ui-generated"
# system names nobody would type by chance, so finding one in a response means a leak
SYSTEMS = {
    "zorblax-ckpt": (
        "RECAP Mix",
        {
            "name": "recap",
            "weights": {"recap_long": 0.5, "recap_short": 0.5},
            "empty_prob": 0.0,
            "fallback": [],
        },
        {"recap_long": ["blip-recap-run-7"], "recap_short": ["blip-recap-run-7"]},
        (200, 40, 40),
    ),
    "quintor-ckpt": (
        "alt-text only",
        {"name": "alttext", "weights": {"alttext": 1.0}, "empty_prob": 0.0, "fallback": []},
        {"alttext": ["imported"]},
        (40, 160, 70),
    ),
    "vexmire-ckpt": (
        "DALL-E 3 mix",
        {
            "name": "dalle3",
            "weights": {"recap_long": 0.95, "alttext": 0.05},
            "empty_prob": 0.0,
            "fallback": [],
        },
        {"recap_long": ["blip-recap-run-7"], "alttext": ["imported"]},
        (40, 90, 220),
    ),
}
PROMPTS = ["a red cube on a wooden table", "two green birds above a lake", "a blue bicycle leaning on a wall"]
NAMES = [name.encode() for name in SYSTEMS]


def _png(color: tuple[int, int, int], shade: int, provenance: dict) -> bytes:
    """A small PNG with the provenance JSON in a text chunk, like the generate job writes."""
    img = PILImage.new("RGB", (96, 96), color)
    for x in range(10 + shade * 8, 40 + shade * 8):
        for y in range(30, 60):
            img.putpixel((x, y), (255, 255, 255))
    info = PngImagePlugin.PngInfo()
    info.add_text("recap-studio", json.dumps(provenance))
    out = io.BytesIO()
    img.save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def make_generated_dataset(studio: Studio) -> None:
    with write_session(studio.ws) as s:
        dataset = get_or_create_dataset(s, DATASET)
        for label, (condition, mix, captioners, color) in SYSTEMS.items():
            artifact = Artifact(
                kind="t2i",
                name=label,
                path=f"runs/{label}/pipeline",
                meta={
                    "base": "tiny-sd",
                    "mix": mix,
                    "usage": {k: 10 for k in mix["weights"]},
                    "captioners": captioners,
                    "caption_condition": condition,
                    "training_images": 20,
                },
            )
            s.add(artifact)
            s.flush()
            for index, prompt in enumerate(PROMPTS):
                generated = {
                    "run_id": None,
                    "checkpoint": label,
                    "checkpoint_ref": f"artifact:{artifact.id}",
                    "artifact_id": artifact.id,
                    "prompt": prompt,
                    "prompt_index": index,
                    "category": "objects" if index != 1 else "animals",
                    "prompt_set": "ui-test",
                    "seed": 0,
                    "regime": "raw",
                    "prompt_used": prompt,
                    "upsampler": None,
                }
                decoded = decode_image(_png(color, index, generated))
                add_image(
                    s,
                    studio.ws,
                    dataset.id,
                    decoded,
                    f"{label}/raw/{index:05d}_seed0.png",
                    meta={"generated": generated},
                )


@pytest.fixture(scope="module")
def campaign(studio: Studio) -> str:
    make_generated_dataset(studio)
    admin = get_user(studio.ws, ADMIN[0])
    # a caption campaign on the demo dataset first, so the t2i one is the newest (the default)
    arena.create_caption_campaign(
        studio.ws,
        CAPTION_CAMPAIGN,
        "demo-shapes",
        ["alttext", "human_short"],
        max_images=3,
        target_per_pair=1,
        repeat_share=0.0,
        created_by=admin.id if admin else None,
    )
    arena.create_campaign_from_generated(
        studio.ws,
        CAMPAIGN,
        [DATASET],
        ["overall preference"],
        target_per_pair=2,
        repeat_share=0.0,
        gold_share=0.0,
        created_by=admin.id if admin else None,
    )
    return CAMPAIGN


def imported_csv(studio: Studio) -> Path:
    path = studio.home / "external-votes.csv"
    path.write_text(
        "prompt,left,right,winner,annotator,criterion\n"
        "a cat,sys-a,sys-b,left,ext-1,overall\n"
        "a dog,sys-b,sys-a,tie,ext-1,overall\n"
        "a cow,sys-a,sys-b,right,ext-2,overall\n",
        encoding="utf-8",
    )
    return path


def user_id(studio: Studio, name: str) -> int:
    user = get_user(studio.ws, name)
    assert user is not None
    return user.id


def judgments(studio: Studio, annotator: str) -> list[Judgment]:
    uid = user_id(studio, annotator)
    with read_session(studio.ws) as s:
        return list(s.exec(select(Judgment).where(Judgment.annotator_id == uid).order_by(Judgment.id)))


def login_recorded(browser, studio: Studio, user: tuple[str, str]):  # noqa: ANN001, ANN201
    """Like ``conftest.login``, with the recorder attached before the first request.

    Gradio reuses an open event stream for later events, so a recorder attached after the
    page loaded could miss the very stream that carries the pair.
    """
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(UI_WAIT_MS)
    page = context.new_page()
    track_page(page)
    rec = Recorder(page)
    page.goto(studio.url)
    page.get_by_label("username").fill(user[0])
    page.get_by_label("password").fill(user[1])
    page.get_by_role("button", name="Login").click()
    page.wait_for_selector("#main-tabs", timeout=UI_WAIT_MS)
    return page, rec


def assert_dom_blind(page) -> None:  # noqa: ANN001
    content = page.content()
    for name in SYSTEMS:
        assert name not in content, f"{name} is in the page before the vote"


def open_arena(page) -> None:  # noqa: ANN001
    open_tab(page, "Arena", "#arena-left-image img")


def pair_seq(page) -> str:  # noqa: ANN001
    return page.locator("#arena-progress .arena-progress").get_attribute("data-seq")


def wait_pair_changed(page, old: str) -> str:  # noqa: ANN001
    """Wait until a new pair is on screen (the progress line is re-rendered) and the keys are live."""
    page.wait_for_function(
        "(old) => { const p = document.querySelector('#arena-progress .arena-progress');"
        " return p && p.getAttribute('data-seq') !== old && window.recapArena && !window.recapArena.busy; }",
        arg=old,
        timeout=UI_WAIT_MS,
    )
    return pair_seq(page)


def test_blind_judging_with_keyboard_and_results(studio: Studio, browser, campaign: str) -> None:  # noqa: ANN001
    # ------------------------------------------------------------ ann: keyboard, reveal on
    page, rec = login_recorded(browser, studio, ANNOTATOR)
    open_arena(page)
    page.wait_for_function(
        "() => document.querySelector('#arena-question').innerText.includes('prompt')", timeout=UI_WAIT_MS
    )
    prompt = page.locator("#arena-question .arena-prompt").inner_text()
    assert prompt in PROMPTS
    expect(page.locator("#arena-btn-left")).to_contain_text("Left better", use_inner_text=True)
    expect(page.locator("#arena-shortcuts")).to_contain_text("1", use_inner_text=True)
    expect(page.locator("#arena-progress")).to_contain_text("judgments", use_inner_text=True)
    assert_dom_blind(page)
    # the pair reached the browser through the recorded responses (so the search is not vacuous)
    # DevTools events arrive asynchronously and are only delivered while Playwright runs (hence the
    # page's own wait inside the check): poll with the suite's one wait, not a hand-rolled cap
    wait_for(
        lambda: page.wait_for_timeout(50) or rec.contains(prompt),
        UI_WAIT_MS / 1000,
        what="the pair's payload in the recorded responses",
    )
    assert not rec.leaks(NAMES), rec.leaks(NAMES)
    # the admin sub-tab is not there for annotators
    assert (
        page.locator("#arena-admin-button").count() == 0
        or not page.locator("#arena-admin-button").is_visible()
    )

    src = pair_seq(page)
    before_vote = rec.mark()
    page.keyboard.press("1")  # left better
    expect(page.locator("#arena-reveal")).to_contain_text("Saved.", use_inner_text=True)
    assert not rec.leaks(NAMES, 0, before_vote)
    votes = wait_for(lambda: judgments(studio, ANNOTATOR[0]), what="ann's first vote")
    first = votes[0]
    assert first.choice == "left" and first.elapsed_ms is not None and first.elapsed_ms > 0
    src = wait_pair_changed(page, src)
    # reveal on, but pairs are left for ann: the answer to the vote named no system (its images
    # come back in later pairs); the systems are shown only once nothing is left for her
    assert not rec.leaks(NAMES), rec.leaks(NAMES)
    assert_dom_blind(page)
    page.locator("#arena-reveal-toggle input").uncheck()
    for key, choice in (("ArrowRight", "right"), ("t", "tie"), ("4", "both_bad")):
        mark = rec.mark()
        page.keyboard.press(key)
        wait_for(lambda n=len(votes): len(judgments(studio, ANNOTATOR[0])) > n, what=f"vote {choice}")
        votes = judgments(studio, ANNOTATOR[0])
        assert votes[-1].choice == choice
        src = wait_pair_changed(page, src)
        assert not rec.leaks(NAMES, mark), rec.leaks(NAMES, mark)  # reveal off: not even after the vote
        assert_dom_blind(page)
    # skip: the ticket is given back, no vote
    page.keyboard.press("s")
    src = wait_pair_changed(page, src)
    assert len(judgments(studio, ANNOTATOR[0])) == 4
    expect(page.locator("#arena-reveal")).to_contain_text("Skipped", use_inner_text=True)
    page.screenshot(path="/tmp/arena_judge.png", full_page=True)

    # caption campaign: one image, two captions, hallucination/omission boxes per side
    page.locator("#arena-campaign input").click()
    page.get_by_role("option", name=CAPTION_CAMPAIGN).click()
    page.wait_for_selector("#arena-left-text .arena-caption", timeout=UI_WAIT_MS)
    src = wait_pair_changed(page, src)
    expect(page.locator("#arena-caption-image img")).to_be_visible()
    expect(page.locator("#arena-left-image")).to_be_hidden()
    expect(page.locator("#arena-question")).to_contain_text("caption", use_inner_text=True)
    page.locator("#arena-left-hallucination input").check()
    page.locator("#arena-right-omission input").check()
    page.keyboard.press("2")
    wait_for(lambda: len(judgments(studio, ANNOTATOR[0])) == 5, what="the caption vote")
    caption_vote = judgments(studio, ANNOTATOR[0])[-1]
    assert caption_vote.choice == "right"
    assert caption_vote.flags == {"left_hallucination": True, "right_omission": True}
    src = wait_pair_changed(page, src)
    expect(page.locator("#arena-left-hallucination input")).not_to_be_checked()  # reset for the next pair
    page.screenshot(path="/tmp/arena_caption.png", full_page=True)
    page.context.close()

    # every vote landed with its sides and client time
    for j in judgments(studio, ANNOTATOR[0]):
        assert j.left_image_id is not None and j.source == "studio" and j.server_ms is not None
        assert j.elapsed_ms is not None and j.elapsed_ms > 0

    # ------------------------------------------------------------ bob: keyboard, reveal off
    page, rec = login_recorded(browser, studio, ANNOTATOR2)
    open_arena(page)
    page.locator("#arena-reveal-toggle input").uncheck()
    src = pair_seq(page)
    for key in ("2", "ArrowLeft", "3", "1"):
        n = len(judgments(studio, ANNOTATOR2[0]))
        page.keyboard.press(key)
        wait_for(lambda n=n: len(judgments(studio, ANNOTATOR2[0])) > n, what=f"bob's vote {key}")
        src = wait_pair_changed(page, src)
    assert [j.choice for j in judgments(studio, ANNOTATOR2[0])] == ["right", "left", "tie", "left"]
    assert not rec.leaks(NAMES), rec.leaks(NAMES)
    assert_dom_blind(page)
    page.context.close()

    # ------------------------------------------------------------ admin: campaigns, then results
    page = login(browser, studio, ADMIN)
    open_tab(page, "Arena", "#arena-admin-button")
    page.locator("#arena-admin-button").click()
    page.wait_for_function(
        f"() => document.querySelector('#arena-campaigns').innerText.includes('{CAMPAIGN}')",
        timeout=UI_WAIT_MS,
    )
    page.locator("#arena-new-name input, #arena-new-name textarea").first.fill("ui-made-campaign")
    page.locator("#arena-new-datasets input").click()
    page.get_by_role("option", name=DATASET).click()
    page.locator("#arena-new-name input, #arena-new-name textarea").first.click()  # close the list
    page.locator("#arena-btn-create").click()
    page.wait_for_function(
        "() => document.querySelector('#arena-create-result').innerText.startsWith('Created')",
        timeout=UI_WAIT_MS,
    )
    made = {c.name: c for c in arena.list_campaigns(studio.ws)}["ui-made-campaign"]
    assert made.systems == 3 and made.pairs == 9 and made.status == "open"
    page.wait_for_function(
        "() => document.querySelector('#arena-campaigns').innerText.includes('ui-made-campaign')",
        timeout=UI_WAIT_MS,
    )
    page.screenshot(path="/tmp/arena_admin.png", full_page=True)
    page.locator("#arena-btn-close").click()  # the newest open campaign is preselected
    page.wait_for_function(
        "() => document.querySelector('#arena-close-result').innerText.startsWith('Closed')",
        timeout=UI_WAIT_MS,
    )
    assert {c.name: c for c in arena.list_campaigns(studio.ws)}["ui-made-campaign"].status == "closed"

    open_tab(page, "Results", "#ar-rounds input")
    page.locator("#ar-rounds input").fill("30")  # enough for the test, keeps it quick
    page.locator("#ar-campaign input").click()
    page.get_by_role("option", name=CAMPAIGN).click()  # picking a campaign shows its results
    page.wait_for_selector("#ar-ratings-table", timeout=UI_WAIT_MS)
    ratings = page.locator("#ar-ratings")
    for name, (condition, _, _, _) in SYSTEMS.items():
        expect(ratings).to_contain_text(name, use_inner_text=True)
        expect(ratings).to_contain_text(condition, use_inner_text=True)
    for text in ("[", "recap_long 0.5", "blip-recap-run-7"):
        expect(ratings).to_contain_text(text, use_inner_text=True)
    for condition in ("RECAP Mix", "alt-text only"):
        expect(page.locator("#ar-conditions")).to_contain_text(condition, use_inner_text=True)
    expect(page.locator("#ar-ratings-plot img, #ar-ratings-plot svg").first).to_be_visible()
    expect(page.locator("#ar-left-bias")).to_contain_text("Left-side bias", use_inner_text=True)
    expect(page.locator("#ar-summary")).to_contain_text("8 judgments", use_inner_text=True)
    page.screenshot(path="/tmp/arena_results.png", full_page=True)

    # CSV export of the judgments; CSV import of external judgments
    page.locator("#ar-btn-export-votes").click()
    page.wait_for_selector("#ar-export-file a", timeout=UI_WAIT_MS)
    href = page.locator("#ar-export-file a").first.get_attribute("href")
    exported = page.request.get(href if href.startswith("http") else studio.url + href).text()
    assert len(exported.strip().splitlines()) == 1 + 8  # header + one row per judgment
    page.get_by_text("Import external judgments (admin)").click()
    page.locator("#ar-import-name input, #ar-import-name textarea").first.fill("ui-imported")
    page.locator("#ar-import-file input[type=file]").set_input_files(str(imported_csv(studio)))
    page.wait_for_selector("#ar-import-file a", timeout=UI_WAIT_MS)
    page.locator("#ar-btn-import").click()
    page.wait_for_function(
        "() => document.querySelector('#ar-import-result').innerText.startsWith('Imported')",
        timeout=UI_WAIT_MS,
    )
    expect(page.locator("#ar-import-result")).to_contain_text("Imported 3 judgments", use_inner_text=True)
    assert len(arena.campaign_votes(studio.ws, "ui-imported")) == 3
    page.context.close()


def _call(client: httpx.Client, api_name: str, data: list) -> str:
    started = client.post(f"/gradio_api/call/{api_name}", json={"data": data})
    assert started.status_code == 200, started.text
    return client.get(f"/gradio_api/call/{api_name}/{started.json()['event_id']}").text


def test_json_endpoints_and_admin_checks(studio: Studio, campaign: str) -> None:
    """arena_next/arena_vote answer as ARENA.md says; admin endpoints refuse annotators."""
    with httpx.Client(base_url=studio.url, timeout=30) as client:
        assert (
            client.post("/login", data={"username": ANNOTATOR2[0], "password": ANNOTATOR2[1]}).status_code
            == 200
        )
        answer = _call(client, "arena_next", [campaign])
        assert "event: complete" in answer, answer
        assert not any(name.decode() in answer for name in NAMES)
        payload = json.loads(answer.split("data:", 1)[1].strip())[0]
        assert set(payload) == {"token", "prompt", "criterion", "done", "total"}
        voted = _call(client, "arena_vote", [payload["token"], "tie", 1234])
        result = json.loads(voted.split("data:", 1)[1].strip())[0]
        assert result == {"ok": True, "duplicate": False, "more": True}  # names no system
        assert not any(name.decode() in voted for name in NAMES)
        assert judgments(studio, ANNOTATOR2[0])[-1].elapsed_ms == 1234
        for api_name, data in (
            (
                "arena_create_campaign",
                ["Generated datasets", "sneaky", "", 2, 0, 0, [DATASET], "", "", None, [], 10],
            ),
            ("arena_close_campaign", [campaign]),
            ("arena_import_votes", ["sneaky-import", None]),
        ):
            refused = _call(client, api_name, data)
            assert "event: error" in refused and "Not allowed" in refused, refused
        # results of an open campaign stay hidden from annotators (they judge it blind)
        hidden = _call(client, "arena_results", [campaign, "all criteria", 20])
        assert "event: error" in hidden and "closes it" in hidden, hidden
    assert "sneaky" not in [c.name for c in arena.list_campaigns(studio.ws)]


def test_blind_image_keeps_pixels_only(tmp_path: Path) -> None:
    """No text chunk, EXIF block, file name, format or colour mode survives; the pixels do, and on
    a campaign's canvas no native size or aspect ratio survives either."""
    from studio.tab_arena import blind_image, unlinkable

    wide, tall = tmp_path / "wide.png", tmp_path / "tall.png"
    PILImage.new("RGB", (300, 100), (200, 10, 10)).save(wide)
    PILImage.new("RGBA", (60, 240), (10, 10, 200, 128)).save(tall)
    shown = [blind_image(p, (128, 128)) for p in (wide, tall)]
    assert [(im.size, im.mode) for im in shown] == [((128, 128), "RGB")] * 2
    assert shown[0].getpixel((64, 64)) == (200, 10, 10)  # centre crop: the middle is kept
    # the same picture twice: the same pixels, but bytes (so Gradio's URL) new each time
    from gradio.processing_utils import encode_pil_to_bytes  # what names Gradio's cached file

    twice = [unlinkable(blind_image(wide, (128, 128))) for _ in range(2)]
    encoded = [encode_pil_to_bytes(im, "png") for im in twice]
    assert twice[0].tobytes() == twice[1].tobytes() and encoded[0] != encoded[1]
    assert b"zorblax" not in encoded[0] and b"wide" not in encoded[0]

    src = PILImage.new("RGB", (1200, 600), (10, 20, 30))
    exif = PILImage.Exif()
    exif[0x010E] = "made by zorblax-ckpt"  # ImageDescription
    info = PngImagePlugin.PngInfo()
    info.add_text("recap-studio", '{"checkpoint": "zorblax-ckpt"}')
    png, jpg = tmp_path / "zorblax-ckpt.png", tmp_path / "zorblax-ckpt.jpg"
    src.save(png, pnginfo=info, exif=exif)
    src.save(jpg, exif=exif)
    for path in (png, jpg):
        clean = blind_image(path)
        assert clean.info == {} and not clean.getexif() and clean.format is None
        assert clean.size == (1024, 512)  # no canvas (a caption pair's picture): scaled down only
        assert all(abs(a - b) <= 3 for a, b in zip(clean.getpixel((5, 5)), (10, 20, 30), strict=True))
        out = io.BytesIO()
        clean.save(out, format="PNG")
        assert b"zorblax" not in out.getvalue()
