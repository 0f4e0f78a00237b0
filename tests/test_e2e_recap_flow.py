"""The RECAP human-caption loop in one browser session, as a user meets it.

An annotator logs in, captions an image, reloads and finds the draft, submits; an admin
approves it; the approved caption shows up side by side with the alt-text in Review,
and the caption-length histogram is drawn. Real server, real Chromium, real SQLite.
"""

from __future__ import annotations

import json

from sqlmodel import select

from backend import annotation as ann
from backend.db import read_session
from backend.models import Caption
from backend.users import get_user
from tests.conftest import ADMIN, ANNOTATOR, Studio, login

SHORT = "A red circle beside a blue square."
LONG = (
    "Two flat shapes on a plain pale background: a medium red circle on the left and a "
    "small blue square to its right, slightly lower. There is no text in the image."
)


def test_annotate_reload_submit_approve_review_histogram(studio: Studio, browser) -> None:  # noqa: ANN001
    admin = get_user(studio.ws, ADMIN[0])
    annotator = get_user(studio.ws, ANNOTATOR[0])
    assert admin is not None and annotator is not None
    aset = ann.create_annotation_set(
        studio.ws, dataset="demo-shapes", name="e2e-set", size=3, seed=7, created_by=admin.id
    )

    # 1. the annotator types both captions; they autosave
    page = login(browser, studio, ANNOTATOR)
    page.on("dialog", lambda d: d.accept())
    page.locator("#tab-annotate-button").click()
    page.wait_for_selector("#annotate-image img", timeout=30_000)
    # the newest set is the one the page opens
    page.wait_for_function(
        "() => document.querySelector('#annotate-info').innerText.includes('e2e-set')", timeout=30_000
    )
    page.locator("#short-caption textarea").click()
    page.keyboard.type(SHORT)
    page.locator("#long-caption textarea").click()
    page.keyboard.type(LONG)
    page.wait_for_function(
        "() => document.querySelector('#draft-status').innerText.includes('Draft saved')", timeout=30_000
    )
    page.wait_for_function("() => !window.recapAnnotate.pending()", timeout=30_000)
    item = ann.next_item(studio.ws, aset.id, annotator.id)
    assert item is not None

    # 2. reload: the draft is still there
    page.reload()
    page.wait_for_selector("#main-tabs", timeout=30_000)
    page.locator("#tab-annotate-button").click()
    page.wait_for_function(
        f"() => document.querySelector('#long-caption textarea').value === {json.dumps(LONG)}", timeout=30_000
    )
    assert page.locator("#short-caption textarea").input_value() == SHORT

    # 3. submit with the keyboard
    page.locator("#long-caption textarea").click()
    page.keyboard.press("Control+Enter")
    page.wait_for_function(
        "() => document.querySelector('#long-caption textarea').value === ''", timeout=30_000
    )
    with read_session(studio.ws) as s:
        mine = s.exec(
            select(Caption).where(Caption.image_id == item.image_id, Caption.annotator_id == annotator.id)
        ).all()
    assert sorted((c.kind, c.text, c.status) for c in mine) == [
        ("human_long", LONG, "submitted"),
        ("human_short", SHORT, "submitted"),
    ]
    page.context.close()

    # 4. the admin approves it in the review queue
    page = login(browser, studio, ADMIN)
    page.locator("#tab-annotate-button").click()
    page.locator("#annotate-admin-button").click()
    page.locator("#admin-set input").click()
    page.get_by_role("option", name="e2e-set").click()
    page.wait_for_function(
        f"() => document.querySelector('#review-short textarea').value === {json.dumps(SHORT)}",
        timeout=30_000,
    )
    page.locator("#btn-review").click()
    page.wait_for_function(
        "() => document.querySelector('#review-result').innerText.startsWith('Approved')", timeout=30_000
    )
    assert ann.item_view(studio.ws, aset.id, item.image_id, annotator.id).status == "approved"

    # 5. Review: the approved caption side by side with the alt-text
    page.locator("#tab-review-button").click()
    page.wait_for_selector("#review-gallery img", timeout=30_000)
    search = page.locator("#rv-search textarea, #rv-search input").first
    search.fill("red circle beside a blue square")
    search.press("Enter")
    page.wait_for_function(
        "() => /· 1 image$/.test(document.querySelector('#rv-page-info').innerText.trim())", timeout=30_000
    )
    page.locator("#review-gallery .thumbnail-item").first.click()
    page.wait_for_function(
        f"() => document.querySelector('#variants').innerText.includes({json.dumps(LONG[:40])})",
        timeout=30_000,
    )
    headers = [h.strip().lower() for h in page.locator("#variants th").all_inner_texts()]
    # alt-text first, then the human columns (another annotator's may stand beside ours)
    assert headers[0] == "alt-text"
    assert "human short" in headers and "human long" in headers
    assert max(i for i, h in enumerate(headers) if h == "human short") < headers.index("human long")
    cells = page.locator("#variants").inner_text()
    assert SHORT in cells and "approved" in cells.lower()

    # 6. the caption-length histogram
    page.locator("#rv-stats").get_by_text("Statistics").first.click()
    page.wait_for_selector("#length-histogram img", timeout=60_000)
    assert page.locator("#length-histogram img").first.is_visible()
    page.screenshot(path="/tmp/e2e_review.png", full_page=True)
    page.context.close()
