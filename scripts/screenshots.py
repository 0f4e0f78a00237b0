"""Screenshots of every studio tab of a workspace, for the README (renew them when the UI changes).

    .venv/bin/python scripts/screenshots.py --home ./demo-home --user admin --password '...' \
        --out docs/screenshots

Starts ``recap-studio serve`` on the workspace at a free port, logs in with a headless Chromium
(the system's ``/usr/bin/chromium``, as in the tests: ``playwright install`` is never needed),
opens each main tab and each Results view, and saves one full-page PNG per view. Needs the
``test`` extra (Playwright). Why a script and not hand-made pictures: the README's pictures must
show what the code does today, and a script renews all of them in one run.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable from a checkout: the browser settings and server start are the tests'

from tests.conftest import CHROMIUM, CHROMIUM_ARGS, serve  # noqa: E402

# (main tab, the element that shows it is ready, file name); Results views follow below
MAIN_TABS = [
    ("Datasets", "#tab-datasets", "1-datasets.png"),
    ("Annotate", "#tab-annotate", "2-annotate.png"),
    ("Review", "#tab-review", "3-review.png"),
    ("Runs", "#runs-page", "4-runs.png"),
    ("Arena", "#tab-arena", "5-arena.png"),
]
RESULTS_VIEWS = [
    ("Human ratings (Arena)", "6-results-arena.png"),
    ("Automatic metrics", "7-results-metrics.png"),
    ("RECAP table", "8-results-recap-table.png"),
    ("RECAP in miniature", "9-results-miniature.png"),
]
SETTLE_S = 3.0  # the tab's load events fill it in after it becomes visible


def main(
    home: Annotated[Path, typer.Option(help="The workspace to photograph (e.g. ./demo-home).")],
    user: Annotated[str, typer.Option(help="An admin login of that workspace.")],
    password: Annotated[str, typer.Option(help="Its password.")],
    out: Annotated[Path, typer.Option(help="Folder for the PNG files.")] = Path("docs/screenshots"),
) -> None:
    from playwright.sync_api import sync_playwright

    if not home.is_dir():
        raise typer.BadParameter(f"{home} is not a folder: run `recap-studio --home {home} demo` first")
    out.mkdir(parents=True, exist_ok=True)
    try:
        url, server = serve(home, out / "server.log")
    except RuntimeError as exc:
        raise typer.BadParameter(str(exc)[-2000:]) from None
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.set_default_timeout(60_000)
            page.goto(url)
            page.get_by_label("username").fill(user)
            page.get_by_label("password").fill(password)
            page.get_by_role("button", name="Login").click()
            page.wait_for_selector("#main-tabs", state="visible")
            for name, ready, filename in MAIN_TABS:
                page.locator("#main-tabs").get_by_role("tab", name=name, exact=True).click()
                page.wait_for_selector(ready, state="visible")
                if name == "Review":  # one image open, so the picture shows its captions side by side
                    page.wait_for_selector("#review-gallery img")
                    page.locator("#review-gallery .thumbnail-item").first.click()
                    page.wait_for_function("() => document.querySelector('#variants th') !== null")
                time.sleep(SETTLE_S)
                page.screenshot(path=str(out / filename), full_page=True)
                typer.echo(out / filename)
            page.locator("#main-tabs").get_by_role("tab", name="Results", exact=True).click()
            for name, filename in RESULTS_VIEWS:
                page.locator("#results-tabs").get_by_role("tab", name=name, exact=True).click()
                time.sleep(SETTLE_S)
                page.screenshot(path=str(out / filename), full_page=True)
                typer.echo(out / filename)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
        (out / "server.log").unlink(missing_ok=True)


if __name__ == "__main__":
    typer.run(main)
