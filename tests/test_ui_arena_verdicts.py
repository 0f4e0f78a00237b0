"""Absolute verdicts in the browser: real studio server, real Chromium, the real database.

An admin creates a verdict campaign in the Arena tab's admin form (3 systems × 2 prompts, one
verdict per image, repeat share 0.5, the prompts' required elements from a JSON Lines file, a
baseline). An annotator then judges every image with the keyboard only — Y faithful, N not
faithful after ticking the first missing element with 1 — while everything the browser
receives is recorded (pages, API answers, image files and Gradio's event stream). Before each
verdict, as in the pairwise blindness test: no system identity (checkpoint, caption condition,
mix name) is in anything received so far nor in the page; the image URL is new; every image has
the campaign's one canvas size (the systems' native sizes differ); an image that can be linked
to an earlier one never had its system named. After the last verdict the reveal names the
systems, and the admin reads success rates with 95% intervals in the Results tab.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from urllib.parse import urljoin

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from backend import arena
from backend.arena.models import Judgment
from backend.db import read_session
from backend.users import get_user
from studio.arena_admin import JUDGING
from tests.blind_world import add_generated_systems
from tests.conftest import ADMIN, ANNOTATOR, UI_WAIT_MS, Studio, login, open_tab, start_studio, stop_studio
from tests.test_ui_arena import login_recorded
from tests.test_ui_arena_blind import link_keys, received, wait_streamed

CAMPAIGN = "verdict-walk"
DATASET = "verdict-walk-generated"
PROMPTS = ["a red kite above two green trees", "three stones left of a blue boat"]
ELEMENTS = {
    PROMPTS[0]: ["red kite", "2x green tree", "red kite above 2x green tree"],
    PROMPTS[1]: ["3x stone", "blue boat"],
}
# name -> (caption condition, mix name, native size, colour): strings nobody types by chance
SYSTEMS = {
    "glimmora-ckpt": ("Glimmora condition", "glimmoramix", (96, 96), (200, 60, 40)),
    "pavonet-ckpt": ("Pavonet condition", "pavonetmix", (128, 96), (40, 160, 70)),
    "trelwick-ckpt": ("Trelwick condition", "trelwickmix", (80, 120), (50, 80, 210)),
}
BASELINE = "pavonet-ckpt"
IDENTITIES = [s.encode() for name, (cond, mix, _, _) in SYSTEMS.items() for s in (name, cond, mix)]


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    server = start_studio(tmp_path_factory.mktemp("verdicts") / "home", demo=False)
    add_generated_systems(server.ws, DATASET, SYSTEMS, PROMPTS)
    lines = [json.dumps({"prompt": p, "elements": e}) for p, e in ELEMENTS.items()]
    (server.home / "elements.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    yield server
    stop_studio(server)


def identities_in(data: bytes) -> list[str]:
    return [who.decode() for who in IDENTITIES if who in data]


def fill(page, elem_id: str, value: str) -> None:  # noqa: ANN001
    page.locator(f"#{elem_id} input, #{elem_id} textarea").first.fill(value)


def create_in_admin_form(page, studio: Studio) -> None:  # noqa: ANN001
    open_tab(page, "Arena", "#arena-admin-button")
    page.locator("#arena-admin-button").click()
    page.get_by_label(JUDGING[1]).check()
    expect(page.locator("#arena-btn-create-verdict")).to_be_visible()
    expect(page.locator("#arena-btn-create")).to_be_hidden()
    fill(page, "arena-new-name", CAMPAIGN)
    page.locator("#arena-new-datasets input").click()
    page.get_by_role("option", name=DATASET).click()
    page.locator("#arena-new-name input, #arena-new-name textarea").first.click()  # close the list
    fill(page, "arena-new-elements", str(studio.home / "elements.jsonl"))
    fill(page, "arena-new-baseline", BASELINE)
    fill(page, "arena-new-target", "1")
    fill(page, "arena-new-repeat", "0.5")
    page.locator("#arena-btn-create-verdict").click()
    page.wait_for_function(
        "() => document.querySelector('#arena-create-result').innerText.startsWith('Created verdict')",
        timeout=UI_WAIT_MS,
    )
    expect(page.locator("#arena-create-result")).to_contain_text("for 2 of 2 prompts", use_inner_text=True)
    made = {c.name: c for c in arena.list_campaigns(studio.ws)}[CAMPAIGN]
    assert (made.kind, made.systems, made.pairs, made.total) == ("verdict", 3, 6, 6)
    assert arena.get_campaign(studio.ws, CAMPAIGN).repeat_share == 0.5


def shown_url(page) -> str:  # noqa: ANN001
    page.wait_for_function(
        "() => { const i = document.querySelector('#arena-caption-image img');"
        " return i && i.complete && i.naturalWidth > 0; }",
        timeout=UI_WAIT_MS,
    )
    return urljoin(page.url, page.locator("#arena-caption-image img").get_attribute("src"))


def seq(page) -> str | None:  # noqa: ANN001
    return page.locator("#arena-progress .arena-progress").get_attribute("data-seq")


def wait_after_verdict(page, old_seq: str | None, old_url: str) -> bool:  # noqa: ANN001
    """Wait for the answer to a verdict; True when a new image is on screen, False when none is left."""
    page.wait_for_function(
        "(old) => { if (document.querySelector('#arena-question .arena-empty')) return true;"
        " const p = document.querySelector('#arena-progress .arena-progress');"
        " return p && p.getAttribute('data-seq') !== old && window.recapArena && !window.recapArena.busy; }",
        arg=old_seq,
        timeout=UI_WAIT_MS,
    )
    if page.locator("#arena-question .arena-empty").count():
        return False
    with contextlib.suppress(PlaywrightTimeout):  # the image may render a moment after the progress line
        page.wait_for_function(
            "(old) => { const i = document.querySelector('#arena-caption-image img');"
            " return i && i.getAttribute('src') && new URL(i.getAttribute('src'), location.href).href !== old; }",
            arg=old_url,
            timeout=5_000,
        )
    return True


def judged(studio: Studio) -> list[Judgment]:
    uid = get_user(studio.ws, ANNOTATOR[0]).id
    with read_session(studio.ws) as s:
        from sqlmodel import select

        return list(s.exec(select(Judgment).where(Judgment.annotator_id == uid).order_by(Judgment.id)))


def test_verdicts_with_the_keyboard_blind_until_the_end_then_success_rates(studio: Studio, browser) -> None:  # noqa: ANN001
    admin = login(browser, studio, ADMIN)
    create_in_admin_form(admin, studio)
    admin.context.close()

    page, rec = login_recorded(browser, studio, ANNOTATOR)
    open_tab(page, "Arena", "#arena-caption-image img")
    expect(page.locator("#arena-btn-yes")).to_be_visible()
    expect(page.locator("#arena-btn-left")).to_be_hidden()  # one image: no sides
    expect(page.locator("#arena-reveal-toggle input")).to_be_checked()
    expect(page.locator("#arena-shortcuts")).to_contain_text("faithful", use_inner_text=True)

    seen_urls: set[str] = set()
    seen_keys: set[str] = set()
    revealed: set[str] = set()  # link keys of images whose system was named to the browser
    sizes: set[tuple[int, int]] = set()
    linked = verdicts = 0
    last: tuple[int, set[str]] | None = None
    more = True
    while more:
        url = shown_url(page)
        wait_streamed(page, rec, url.rsplit("/", 2)[-2].encode())  # the ticket's payload is recorded
        if last is not None and any(identities_in(body) for _, body in rec.chunks[last[0] :]):
            revealed |= last[1]  # the answer to the last verdict named a system
        keys, size = link_keys(url, received(page, rec, url))
        sizes.add(size)
        assert not keys & revealed, (
            f"verdict {verdicts + 1}: the image is linked to one whose system was shown"
        )
        assert url not in seen_urls, f"verdict {verdicts + 1}: its image URL came back"
        assert sizes == {(128, 128)}, f"verdict {verdicts + 1}: sizes {sizes}; the canvas is 128x128"
        leaks = [f"{u}: {who}" for u, body in rec.chunks for who in identities_in(body)]
        assert leaks == [], f"verdict {verdicts + 1}: received before the verdict: {leaks[:5]}"
        assert identities_in(page.content().encode()) == [], f"verdict {verdicts + 1}: in the page"
        prompt = page.locator("#arena-question .arena-prompt").inner_text()
        boxes = page.locator("#arena-missing input[type=checkbox]")
        expect(boxes).to_have_count(len(ELEMENTS[prompt]))
        linked += bool(keys & seen_keys)
        seen_urls.add(url)
        seen_keys |= keys
        last, old = (rec.mark(), keys), seq(page)
        if verdicts == 1:
            page.screenshot(path="/tmp/arena_verdict_image.png", full_page=True)
        if verdicts % 2:
            page.keyboard.press("1")  # tick the first element missing, then "not faithful"
            expect(boxes.first).to_be_checked()
            page.keyboard.press("n")
        else:
            page.keyboard.press("y")
        verdicts += 1
        more = wait_after_verdict(page, old, url)

    summary = page.locator("#arena-reveal-summary")
    expect(summary).to_be_visible()
    for name in SYSTEMS:  # now that nothing can follow, the systems are told
        expect(summary).to_contain_text(name, use_inner_text=True)
    expect(page.locator("#arena-question")).to_contain_text("Nothing left", use_inner_text=True)
    votes = judged(studio)
    repeats = sum(j.is_repeat for j in votes)
    assert len(votes) == verdicts == 6 + repeats and repeats >= 1
    assert linked >= repeats  # the same pictures came back, unnamed
    assert [j.choice for j in votes] == ["yes" if k % 2 == 0 else "no" for k in range(verdicts)]
    for k, j in enumerate(votes):
        assert j.elapsed_ms is not None and j.elapsed_ms > 0 and j.server_ms is not None
        if k % 2:
            assert j.flags and len(j.flags["missing"]) == 1
    page.screenshot(path="/tmp/arena_verdict_judge.png", full_page=True)
    page.context.close()

    # the admin reads success rates with intervals (admins see an open campaign's results)
    admin = login(browser, studio, ADMIN)
    open_tab(admin, "Results", "#ar-rounds input")
    admin.locator("#ar-rounds input").fill("200")
    admin.locator("#ar-campaign input").click()
    admin.get_by_role("option", name=CAMPAIGN).click()
    admin.wait_for_selector("#ar-verdict-rates-table", timeout=UI_WAIT_MS)
    rates = admin.locator("#ar-verdict-rates")
    for name, (condition, _, _, _) in SYSTEMS.items():
        expect(rates).to_contain_text(name, use_inner_text=True)
        expect(rates).to_contain_text(condition, use_inner_text=True)
    expect(rates).to_contain_text(f"vs {BASELINE}", use_inner_text=True)
    expect(rates.locator(".ar-rate-ci")).to_have_count(3)  # an interval bar per system
    expect(admin.locator("#ar-verdict-plot img, #ar-verdict-plot svg").first).to_be_visible()
    expect(admin.locator("#ar-pairwise")).to_be_hidden()
    expect(admin.locator("#ar-summary")).to_contain_text(f"{verdicts} verdicts", use_inner_text=True)
    expect(admin.locator("#ar-verdict-missing")).to_contain_text("ticked missing", use_inner_text=True)
    results = arena.verdict_results(studio.ws, CAMPAIGN, bootstrap_rounds=200)
    for _, row in results.rates.iterrows():  # the page shows the backend's numbers
        expect(rates).to_contain_text(f"{100 * row['rate']:.1f}%", use_inner_text=True)
    # another baseline, through the dropdown (relabelled for verdict campaigns)
    other = "glimmora-ckpt"
    admin.locator("#ar-criterion input").click()
    admin.get_by_role("option", name=other).click()
    expect(rates).to_contain_text(f"vs {other}", use_inner_text=True)
    admin.screenshot(path="/tmp/arena_verdict_results.png", full_page=True)
    admin.context.close()
