"""The arena stays blind for a whole campaign: real studio server, real Chromium, every option on.

One annotator votes through a whole campaign with the keyboard: 3 systems x 2 prompts, 2 criteria,
repeat share 0.5, gold share 0.3, the reveal switch on (its default). The systems generate at
different native sizes and aspect ratios and embed their provenance (checkpoint name included) in
a PNG text chunk, as the generate job does. Everything the browser receives is recorded: every
response body (pages, scripts, API answers, image files) and every chunk of Gradio's event stream
(via DevTools), plus the DOM. Before each vote the test checks that neither side's system is
derivable from what the browser has received so far:

1. no system identity (checkpoint name, caption condition, mix name) is in anything received so
   far, nor in the page;
2. neither image's URL appeared before (Gradio names files after their bytes' hash: the same
   picture used to come back under the same URL);
3. every image received has the campaign's one canvas size (the native sizes differ);
4. an earlier-received image that can be linked to a current one (same URL, same bytes or same
   pixels) never had its system revealed: identities received after a vote mark that pair's
   images as revealed.

After the last vote the reveal lists the systems (so the search above was not vacuous), the
database holds every regular slot plus repeats and gold votes, and the same pictures did recur
(pixel links happened: the guarantee is about what they reveal, not that they never recur).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import Iterator
from urllib.parse import urljoin

import pytest
from PIL import Image as PILImage
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect
from sqlalchemy import text

from backend import arena
from backend.arena.canvas import canvas_for
from backend.db import read_session
from backend.users import get_user
from tests.blind_world import add_generated_systems
from tests.browser_recorder import Recorder
from tests.conftest import ANNOTATOR, UI_WAIT_MS, Studio, open_tab, start_studio, stop_studio
from tests.test_ui_arena import login_recorded

CAMPAIGN = "blind-walk"
DATASET = "blind-walk-generated"
CRITERIA = ["overall preference", "prompt following"]
PROMPTS = ["a yellow kite over a hill", "three stones in a stream"]
# name -> (caption condition, mix name, native size, colour): strings nobody types by chance
SYSTEMS = {
    "plexor-ckpt": ("Plexor condition", "plexormix", (96, 96), (200, 60, 40)),
    "quillan-ckpt": ("Quillan condition", "quillanmix", (128, 96), (40, 160, 70)),
    "vortani-ckpt": ("Vortani condition", "vortanimix", (80, 120), (50, 80, 210)),
}
IDENTITIES = [s.encode() for name, (cond, mix, _, _) in SYSTEMS.items() for s in (name, cond, mix)]
KEYS = ("1", "2", "3", "4")  # left better, right better, tie, both bad: in turn


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    """A bare studio (no demo data): the campaign below is the only one there is."""
    server = start_studio(tmp_path_factory.mktemp("blind") / "home", demo=False)
    add_generated_systems(server.ws, DATASET, SYSTEMS, PROMPTS)
    admin = get_user(server.ws, "admin")
    arena.create_campaign_from_generated(
        server.ws,
        CAMPAIGN,
        [DATASET],
        CRITERIA,
        target_per_pair=1,
        repeat_share=0.5,
        gold_share=0.3,
        created_by=admin.id if admin else None,
    )
    yield server
    stop_studio(server)


def identities_in(data: bytes) -> list[str]:
    return [who.decode() for who in IDENTITIES if who in data]


def received(page, rec: Recorder, url: str) -> bytes:  # noqa: ANN001 - playwright page
    """The body of ``url`` as the browser received it (DevTools events arrive a moment later)."""
    for _ in range(UI_WAIT_MS // 100):
        for got, body in reversed(rec.chunks):
            if got == url:
                return body
        page.wait_for_timeout(100)
    raise AssertionError(f"the browser never received {url}")


def wait_streamed(page, rec: Recorder, needle: bytes) -> None:  # noqa: ANN001
    """Wait until the event-stream chunk holding ``needle`` was recorded: everything the server sent
    before it (the answer to the last vote included) has been captured by then."""
    for _ in range(UI_WAIT_MS // 100):
        if any(needle in body for url, body in rec.chunks if "/queue/data" in url):
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"the event stream never carried {needle!r}")


def shown_urls(page) -> tuple[str, str]:  # noqa: ANN001
    """The two images on screen, once both are loaded."""
    page.wait_for_function(
        "() => ['#arena-left-image img', '#arena-right-image img'].every(s => {"
        " const i = document.querySelector(s); return i && i.complete && i.naturalWidth > 0; })",
        timeout=UI_WAIT_MS,
    )
    srcs = [page.locator(f"#arena-{side}-image img").get_attribute("src") for side in ("left", "right")]
    return urljoin(page.url, srcs[0]), urljoin(page.url, srcs[1])


def pair_seq(page) -> str | None:  # noqa: ANN001
    """The progress line's data-seq: a new value with every pair put on screen."""
    return page.locator("#arena-progress .arena-progress").get_attribute("data-seq")


def wait_after_vote(page, old_seq: str | None, old_urls: tuple[str, str]) -> bool:  # noqa: ANN001
    """Wait for the answer to a vote; True when a new pair is on screen, False when none is left."""
    page.wait_for_function(
        "(old) => { if (document.querySelector('#arena-question .arena-empty')) return true;"
        " const p = document.querySelector('#arena-progress .arena-progress');"
        " return p && p.getAttribute('data-seq') !== old && window.recapArena && !window.recapArena.busy; }",
        arg=old_seq,
        timeout=UI_WAIT_MS,
    )
    if page.locator("#arena-question .arena-empty").count():
        return False
    # the images are outputs of the same event and may render a moment after the progress line;
    # give them a few seconds to change (a URL that never changes is then caught by the test)
    with contextlib.suppress(PlaywrightTimeout):
        page.wait_for_function(
            "(old) => ['left', 'right'].every((side, k) => { const i = document.querySelector("
            " `#arena-${side}-image img`); return i && i.getAttribute('src')"
            " && new URL(i.getAttribute('src'), location.href).href !== old[k]; })",
            arg=list(old_urls),
            timeout=5_000,
        )
    return True


def link_keys(url: str, body: bytes) -> tuple[set[str], tuple[int, int]]:
    """What links a received image to other receptions of it: its URL, bytes and pixels."""
    with PILImage.open(io.BytesIO(body)) as img:
        pixels = img.convert("RGB")
    keys = {
        "url:" + url,
        "bytes:" + hashlib.sha256(body).hexdigest(),
        "pixels:" + hashlib.sha256(pixels.tobytes()).hexdigest(),
    }
    return keys, pixels.size


def test_annotator_cannot_name_a_system_before_any_vote_of_a_whole_campaign(studio: Studio, browser) -> None:  # noqa: ANN001
    canvas = canvas_for(size for _, _, size, _ in SYSTEMS.values())
    assert canvas == (128, 128)
    page, rec = login_recorded(browser, studio, ANNOTATOR)
    open_tab(page, "Arena", "#arena-left-image img")
    expect(page.locator("#arena-reveal-toggle input")).to_be_checked()  # every option on: reveal too

    seen_urls: set[str] = set()  # image URLs of earlier pairs
    seen_keys: set[str] = set()  # link keys of every image received at earlier pairs
    revealed: set[str] = set()  # link keys of images whose system was named to the browser
    sizes: set[tuple[int, int]] = set()
    linked_pairs = pairs = 0
    last_vote: tuple[int, set[str]] | None = None  # (recorder mark at the vote, its pair's link keys)
    more = True
    while more:
        urls = shown_urls(page)
        for url in urls:  # the pair's payload named these files: wait until the stream is recorded
            wait_streamed(page, rec, url.rsplit("/", 2)[-2].encode())
        if last_vote is not None:  # the answer to the last vote (it carried this pair) is in now
            mark, judged = last_vote
            if any(identities_in(body) for _, body in rec.chunks[mark:]):
                revealed |= judged  # the systems of the pair just judged were named
        current: set[str] = set()
        for url in urls:
            keys, size = link_keys(url, received(page, rec, url))
            sizes.add(size)
            # 4. linkable to an earlier image? then nothing may ever have named its system
            assert not keys & revealed, f"pair {pairs + 1}: an image is linked to one whose system was shown"
            current |= keys
        # 2. the URLs are new, whatever was shown before (the pictures themselves do recur)
        assert not set(urls) & seen_urls, f"pair {pairs + 1}: an image URL came back: {urls}"
        # 3. one canvas: no native size or aspect ratio gets through
        assert sizes == {canvas}, f"pair {pairs + 1}: image sizes {sizes}, expected only {canvas}"
        # 1. nothing received so far names a system, and neither does the page
        leaks = [f"{url}: {who}" for url, body in rec.chunks for who in identities_in(body)]
        assert leaks == [], f"pair {pairs + 1}: received before the vote: {leaks[:5]}"
        assert identities_in(page.content().encode()) == [], f"pair {pairs + 1}: in the page"
        linked_pairs += bool(current & seen_keys)
        seen_urls |= set(urls)
        seen_keys |= current
        last_vote, seq = (rec.mark(), current), pair_seq(page)
        page.keyboard.press(KEYS[pairs % len(KEYS)])
        pairs += 1
        more = wait_after_vote(page, seq, urls)

    # the end: the reveal names the systems, now that nothing can follow
    summary = page.locator("#arena-reveal-summary")
    expect(summary).to_be_visible()
    for name in SYSTEMS:
        expect(summary).to_contain_text(name, use_inner_text=True)
    expect(page.locator("#arena-question")).to_contain_text("Nothing left for you", use_inner_text=True)
    wait_streamed(page, rec, next(iter(SYSTEMS)).encode())  # the reveal went through the recorder

    uid = get_user(studio.ws, ANNOTATOR[0]).id
    with read_session(studio.ws) as s:
        regular, repeats, gold = s.exec(
            text(
                "SELECT sum(NOT p.is_gold AND NOT j.is_repeat), sum(j.is_repeat), sum(p.is_gold) "
                "FROM judgment j JOIN evalpair p ON p.id = j.pair_id WHERE j.annotator_id = :a"
            ).bindparams(a=uid)
        ).one()
        reason = s.exec(
            text("SELECT reason FROM arenareveal WHERE annotator_id = :a").bindparams(a=uid)
        ).one()
    assert regular == 3 * len(PROMPTS) * len(CRITERIA)  # the whole campaign: every regular slot
    assert repeats >= 3 and gold >= 1 and pairs == regular + repeats + gold
    assert reason[0] == "finished"
    assert linked_pairs >= repeats  # the same pictures came back (repeats at least), unnamed
    assert arena.next_ticket(studio.ws, CAMPAIGN, uid) is None  # told the systems: no more pairs
    page.context.close()
