"""Annotate tab end to end: a real studio server, real Chromium, the real database.

One browser for the module; each test logs in with its own context. The tests create
their own annotation set (newest set = the one the page opens) on the demo dataset, so
they do not depend on what the demo annotated.
"""

from __future__ import annotations

import json

import httpx
import pytest
from playwright.sync_api import expect
from sqlmodel import select

from backend import annotation as ann
from backend.db import read_session
from backend.models import Caption, Dataset
from backend.users import get_user
from tests.conftest import ADMIN, ANNOTATOR, ANNOTATOR2, UI_WAIT_MS, Studio, login, open_tab, wait_for

SET_NAME = "ui-caption-set"
SHORT = "A yellow square and two other shapes on a light blue background."
LONG_WORDS = (
    "A flat digital illustration of three shapes on a plain light blue background. At the top there is a "
    "medium yellow square. On the left there is a grey triangle. At the bottom right there is a yellow "
    "diamond, below and to the right of the square. The square is above the triangle and the diamond. "
    "The triangle is to the left of the diamond. There is no text in the image."
)


@pytest.fixture(scope="module")
def ui_set(studio: Studio) -> int:
    """A fresh set on the demo dataset (or a tiny dataset of our own when there is no demo)."""
    with read_session(studio.ws) as s:
        has_demo = s.exec(select(Dataset.id).where(Dataset.name == "demo-shapes")).first() is not None
    dataset = "demo-shapes"
    if not has_demo:
        from tests.test_annotation import make_dataset

        make_dataset(studio.ws, name="ui-shapes", n=8)
        dataset = "ui-shapes"
    admin = get_user(studio.ws, ADMIN[0])
    aset = ann.create_annotation_set(
        studio.ws, dataset=dataset, name=SET_NAME, size=6, seed=3, created_by=admin.id if admin else None
    )
    return aset.id


def user_id(studio: Studio, name: str) -> int:
    user = get_user(studio.ws, name)
    assert user is not None
    return user.id


def open_annotate(page) -> None:  # noqa: ANN001 - playwright page
    open_tab(page, "Annotate", "#annotate-image img")


def test_annotator_types_autosaves_reloads_and_submits(studio: Studio, browser, ui_set: int) -> None:  # noqa: ANN001
    ann_id = user_id(studio, ANNOTATOR[0])
    page = login(browser, studio, ANNOTATOR)
    page.on("dialog", lambda d: d.accept())
    open_annotate(page)

    # the image, the guidelines beside it, the alt-text with its toggle, the shortcuts
    expect(page.locator("#annotate-image img")).to_be_visible()
    expect(page.locator("#guidelines-text")).to_contain_text("Short caption", use_inner_text=True)
    expect(page.locator("#annotate-shortcuts")).to_contain_text("Ctrl", use_inner_text=True)
    expect(page.locator("#alttext")).to_contain_text("Alt-text", use_inner_text=True)
    page.locator("#show-alttext input").uncheck()
    page.wait_for_selector("#alttext", state="hidden")
    page.locator("#show-alttext input").check()
    page.wait_for_selector("#alttext", state="visible")
    info = page.locator("#annotate-info").inner_text()
    assert SET_NAME in info and "image" in info
    # the admin part is absent for annotators
    assert (
        page.locator("#annotate-admin-button").count() == 0
        or not page.locator("#annotate-admin-button").is_visible()
    )
    assert page.locator("#btn-create-set").count() == 0
    assert page.locator("#btn-review").count() == 0

    current = ann.next_item(studio.ws, ui_set, ann_id)
    assert current is not None and current.state == "active"

    # type; counts update live; the draft autosaves
    page.locator("#short-caption textarea").click()
    page.keyboard.type(SHORT)
    page.wait_for_function(
        "() => document.querySelector('#short-counts').innerText.includes('12 words')", timeout=UI_WAIT_MS
    )
    expect(page.locator("#short-counts")).to_contain_text("CLIP tokens", use_inner_text=True)
    page.locator("#long-caption textarea").click()
    page.keyboard.type(LONG_WORDS)
    page.wait_for_function(
        "() => document.querySelector('#long-counts .over') !== null", timeout=UI_WAIT_MS
    )  # > 77 tokens is flagged
    expect(page.locator("#long-counts")).to_contain_text("past 77", use_inner_text=True)
    page.wait_for_function(
        "() => document.querySelector('#draft-status').innerText.includes('Draft saved')", timeout=UI_WAIT_MS
    )
    page.screenshot(path="/tmp/annotate_typing.png", full_page=True)
    draft = wait_for(
        lambda: (
            (d := ann.load_draft(studio.ws, current.image_id, ann_id)) is not None
            and d.long_text == LONG_WORDS
            and d
        ),
        what="the draft in the database",
    )
    assert draft.short_text == SHORT
    page.wait_for_function("() => !window.recapAnnotate.pending()", timeout=UI_WAIT_MS)

    # reload: the same image with the draft restored
    page.reload()
    page.wait_for_selector("#main-tabs", timeout=UI_WAIT_MS)
    open_annotate(page)
    page.wait_for_function(
        f"() => document.querySelector('#short-caption textarea').value === {json.dumps(SHORT)}",
        timeout=UI_WAIT_MS,
    )
    expect(page.locator("#long-caption textarea")).to_have_value(LONG_WORDS)
    expect(page.locator("#draft-status")).to_contain_text("Draft restored", use_inner_text=True)
    expect(page.locator("#short-counts")).to_contain_text("12 words", use_inner_text=True)

    # Ctrl+Enter submits from inside the text box; the next image appears, empty
    page.locator("#long-caption textarea").click()
    page.keyboard.press("Control+Enter")
    page.wait_for_function(
        "() => document.querySelector('#short-caption textarea').value === ''", timeout=UI_WAIT_MS
    )
    with read_session(studio.ws) as s:
        captions = s.exec(
            select(Caption).where(Caption.image_id == current.image_id, Caption.annotator_id == ann_id)
        ).all()
    assert sorted((c.kind, c.status) for c in captions) == [
        ("human_long", "submitted"),
        ("human_short", "submitted"),
    ]
    assert ann.load_draft(studio.ws, current.image_id, ann_id) is None
    nxt = ann.next_item(studio.ws, ui_set, ann_id)
    assert nxt is not None and nxt.image_id != current.image_id

    # Alt+Left goes back to the submitted image (its text shown), Alt+Right returns
    page.locator("#short-caption textarea").click()
    page.keyboard.press("Alt+ArrowLeft")
    page.wait_for_function(
        f"() => document.querySelector('#short-caption textarea').value === {json.dumps(SHORT)}",
        timeout=UI_WAIT_MS,
    )
    expect(page.locator("#review-status")).to_contain_text("waiting for review", use_inner_text=True)
    page.keyboard.press("Alt+ArrowRight")
    page.wait_for_function(
        "() => document.querySelector('#short-caption textarea').value === ''", timeout=UI_WAIT_MS
    )
    page.screenshot(path="/tmp/annotate.png", full_page=True)
    page.context.close()


def test_admin_reviews_and_annotator_sees_rejection(studio: Studio, browser, ui_set: int) -> None:  # noqa: ANN001
    ann_id, bob_id = user_id(studio, ANNOTATOR[0]), user_id(studio, ANNOTATOR2[0])
    ann_done = [e for e in ann.annotator_history(studio.ws, ui_set, ann_id) if e.state == "submitted"]
    if not ann_done:  # this test run on its own
        view = ann.next_item(studio.ws, ui_set, ann_id)
        ann.submit(studio.ws, ui_set, view.image_id, ann_id, SHORT, LONG_WORDS)
        ann_done = [e for e in ann.annotator_history(studio.ws, ui_set, ann_id) if e.state == "submitted"]
    assert len(ann_done) == 1
    # bob submits one image through the backend (it shares the database with the server)
    bob_item = ann.next_item(studio.ws, ui_set, bob_id)
    ann.submit(studio.ws, ui_set, bob_item.image_id, bob_id, "a shape", "some shapes")

    page = login(browser, studio, ADMIN)
    page.on("dialog", lambda d: d.accept())
    open_tab(page, "Annotate", "#annotate-info")
    # an admin opening the page holds no image (they come to review)
    page.wait_for_function(
        "() => document.querySelector('#annotate-info').innerText.includes('Press Next')", timeout=UI_WAIT_MS
    )
    assert ann.resume_item(studio.ws, ui_set, user_id(studio, ADMIN[0]), claim=False) is None
    page.locator("#annotate-admin-button").click()
    page.wait_for_selector("#annotate-progress .ann-bar", timeout=UI_WAIT_MS)
    progress_text = page.locator("#annotate-progress").inner_text()
    assert SET_NAME in progress_text and "2 / 6" in progress_text
    assert "ann" in progress_text and "bob" in progress_text
    page.wait_for_function(
        "() => document.querySelector('#review-queue').innerText.includes('bob')", timeout=UI_WAIT_MS
    )

    page.screenshot(path="/tmp/annotate_review.png", full_page=True)

    # the first queue entry is ann's pair (oldest first): approve it
    expect(page.locator("#review-short textarea")).to_have_value(SHORT)
    page.locator("#btn-review").click()
    page.wait_for_function(
        "() => document.querySelector('#review-result').innerText.startsWith('Approved')", timeout=UI_WAIT_MS
    )
    assert ann.item_view(studio.ws, ui_set, ann_done[0].image_id, ann_id).status == "approved"

    # now bob's pair is shown; rejecting without a comment is refused, with one it works
    page.wait_for_function(
        "() => document.querySelector('#review-short textarea').value === 'a shape'", timeout=UI_WAIT_MS
    )
    page.locator("#review-decision").get_by_text("reject").click()
    page.locator("#btn-review").click()
    page.get_by_text("needs a comment").first.wait_for(timeout=UI_WAIT_MS)
    assert ann.item_view(studio.ws, ui_set, bob_item.image_id, bob_id).status == "submitted"
    page.locator("#review-comment textarea").fill("Name the shapes and their colours.")
    page.locator("#btn-review").click()
    page.wait_for_function(
        "() => document.querySelector('#review-result').innerText.startsWith('Rejected')", timeout=UI_WAIT_MS
    )
    assert ann.item_view(studio.ws, ui_set, bob_item.image_id, bob_id).status == "rejected"
    expect(page.locator("#annotate-progress")).to_contain_text("1 approved", use_inner_text=True)

    # create a set from the UI
    page.locator("#new-set-name textarea, #new-set-name input").first.fill("ui-made-set")
    page.locator("#new-set-dataset input").click()
    page.get_by_role("option").first.click()
    size_box = page.locator("#new-set-size input[type=number]")
    size_box.fill("10")
    size_box.press("Enter")
    page.locator("#btn-create-set").click()
    page.wait_for_function(
        "() => document.querySelector('#create-set-result').innerText.startsWith('Created')", timeout=UI_WAIT_MS
    )
    assert "ui-made-set" in [s.name for s in ann.list_sets(studio.ws)]
    page.screenshot(path="/tmp/annotate_admin.png", full_page=True)
    page.context.close()

    # bob gets the rejected image back first, with the reviewer's comment
    page = login(browser, studio, ANNOTATOR2)
    page.on("dialog", lambda d: d.accept())
    open_annotate(page)
    page.locator("#annotate-set input").click()
    page.get_by_role("option", name=SET_NAME).click()
    page.wait_for_function(
        "() => document.querySelector('#review-status').innerText.includes('Name the shapes')", timeout=UI_WAIT_MS
    )
    # the status line and the caption box are two outputs of one event: the box may render a tick later
    page.wait_for_function(
        "() => document.querySelector('#short-caption textarea').value === 'a shape'", timeout=UI_WAIT_MS
    )
    expect(page.locator("#short-caption textarea")).to_have_value("a shape")
    page.context.close()


def test_admin_endpoints_refuse_annotators(studio: Studio, ui_set: int) -> None:
    """The admin events exist on the server for everyone, so each one checks the role."""
    dataset = ann.set_dataset_names(studio.ws)[ui_set]
    with httpx.Client(base_url=studio.url, timeout=30) as client:
        assert (
            client.post("/login", data={"username": ANNOTATOR[0], "password": ANNOTATOR[1]}).status_code
            == 200
        )
        for api_name, data in (
            ("create_annotation_set", [dataset, "sneaky-set", 5, "random", 1, 0]),
            ("review_captions", [ui_set, "1,2", "approve", "", "submitted", 0]),
        ):
            started = client.post(f"/gradio_api/call/{api_name}", json={"data": data})
            assert started.status_code == 200, started.text
            event_id = started.json()["event_id"]
            result = client.get(f"/gradio_api/call/{api_name}/{event_id}")
            assert "event: error" in result.text and "Not allowed" in result.text, result.text
    assert "sneaky-set" not in [s.name for s in ann.list_sets(studio.ws)]
    # the same endpoint works for an admin (API callers have no page, so no dropdown choices)
    with httpx.Client(base_url=studio.url, timeout=30) as client:
        assert client.post("/login", data={"username": ADMIN[0], "password": ADMIN[1]}).status_code == 200
        started = client.post(
            "/gradio_api/call/create_annotation_set",
            json={"data": [dataset, "api-set", 5, "stratified", 2, 1]},
        )
        result = client.get(f"/gradio_api/call/create_annotation_set/{started.json()['event_id']}")
        assert "event: complete" in result.text, result.text
    made = [s for s in ann.list_sets(studio.ws) if s.name == "api-set"]
    assert len(made) == 1 and made[0].sampling == "stratified" and made[0].overlap == 2
