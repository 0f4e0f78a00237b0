"""Datasets and Review tabs end to end: a real studio server on the demo workspace, real
Chromium, the real database (tests write captions through the backend into the same
SQLite file the server reads).

One browser for the module; each test logs in with its own context.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from gradio_client import Client
from PIL import Image as PILImage
from playwright.sync_api import expect
from sqlmodel import select

from backend.captions import add_caption
from backend.datasets import dataset_names, dataset_summary
from backend.db import read_session, write_session
from backend.models import Caption, Dataset, Image
from tests.conftest import ADMIN, ANNOTATOR, UI_WAIT_MS, Studio, login, open_tab, wait_for

MARKER = "zanzibar"
LONG_CAPTION = (
    f"A flat {MARKER} illustration of several shapes on a plain background. "
    + "At the top left there is a large orange diamond with sharp corners and a thin shadow, "
    + "below it a small black star, to the right a medium red circle and a green square. " * 3
    + "There is no text in the image."
)


def png(color: tuple[int, int, int], size: tuple[int, int] = (24, 18)) -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def source_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four images with alt-text sidecars, one duplicate and one corrupt file."""
    folder = tmp_path_factory.mktemp("import-src")
    colors = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]
    for i, color in enumerate(colors):
        (folder / f"img_{i}.png").write_bytes(png(color))
        (folder / f"img_{i}.txt").write_text(f"a plain coloured rectangle number {i}")
    (folder / "z_copy_of_0.png").write_bytes(png(colors[0]))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    return folder


@pytest.fixture(scope="module")
def long_image(studio: Studio) -> int:
    """A demo image with human captions, given recap variants, one far past 77 CLIP tokens."""
    with write_session(studio.ws) as s:
        image_id = s.exec(
            select(Image.id)
            .join(Dataset, Dataset.id == Image.dataset_id)
            .join(Caption, Caption.image_id == Image.id)
            .where(Dataset.name == "demo-shapes", Caption.kind == "human_long", Caption.is_current == True)  # noqa: E712
            .order_by(Image.id)
        ).first()
        assert image_id is not None, "the demo should have human_long captions"
        add_caption(s, image_id, "recap_short", "An orange diamond, a star and a circle.", run_id=41)
        add_caption(s, image_id, "recap_long", LONG_CAPTION, run_id=41)
        add_caption(s, image_id, "upsampled", "orange diamond, black star, red circle", source="upsample")
    return image_id


def wait_text(page, selector: str, pattern: str, timeout: float = UI_WAIT_MS / 1000) -> str:  # noqa: ANN001
    """Wait until the element's text matches ``pattern`` (a regex); return the text."""
    def matching() -> str | None:
        loc = page.locator(selector)
        text = loc.first.inner_text() if loc.count() else ""
        return text if re.search(pattern, text) else None

    return wait_for(matching, timeout, what=f"{selector} to match {pattern!r}", interval=0.2)


def pick_option(page, dropdown_id: str, option: str, *, prefix: bool = False) -> None:  # noqa: ANN001
    """Choose ``option`` (or the first option starting with it) in a Gradio dropdown."""
    page.locator(f"#{dropdown_id} input").click()
    name = re.compile("^" + re.escape(option)) if prefix else option
    page.get_by_role("option", name=name, exact=not prefix).first.click()


def test_admin_imports_a_folder_and_sees_counts(studio: Studio, browser, source_folder: Path) -> None:  # noqa: ANN001
    page = login(browser, studio, ADMIN)
    page.wait_for_selector("#datasets-admin", state="visible", timeout=UI_WAIT_MS)
    wait_text(page, "#datasets-table", "demo-shapes")
    page.locator("#import-path textarea, #import-path input").first.fill(str(source_folder))
    page.locator("#import-dataset textarea, #import-dataset input").first.fill("ui-import")
    page.locator("#import-button").click()
    result = wait_text(page, "#import-result", r"Imported \d+ images", timeout=60)
    assert "Imported 4 images" in result and "ui-import" in result
    assert "1 duplicate " in result and "1 skipped" in result
    skipped = wait_text(page, "#import-skipped", "broken.png")
    assert "corrupt" in skipped.lower() or "not a recognisable image" in skipped.lower()
    wait_text(page, "#datasets-table", "ui-import")
    rows = page.eval_on_selector_all(
        "#datasets-table [role=row]",
        "rows => rows.map(r => [...r.querySelectorAll('[role=gridcell]')].map(c => c.innerText.trim()))",
    )
    assert ["ui-import", "4", "4"] in [row[:3] for row in rows]  # name, images, alt-text
    assert dataset_summary(studio.ws, "ui-import").images == 4
    # statistics of the imported dataset in the Datasets tab too
    wait_text(page, "#datasets-stats-summary", "Statistics of ui-import", timeout=30)
    page.wait_for_selector("#datasets-length-histogram img", timeout=UI_WAIT_MS)
    page.screenshot(path="/tmp/datasets.png", full_page=True)

    # the same from uploaded files (images with sidecars): staged under the workspace's uploads/
    page.locator("#import-path textarea, #import-path input").first.fill("")
    page.locator("#import-dataset textarea, #import-dataset input").first.fill("ui-upload")
    files = [source_folder / n for n in ("img_1.png", "img_1.txt", "img_2.png", "img_2.txt")]
    page.locator("#import-upload input[type=file]").set_input_files([str(f) for f in files])
    wait_text(page, "#import-upload", r"(?s)img_1\s*\.png.*img_2\s*\.txt", timeout=40)  # all four uploaded
    page.locator("#import-button").click()
    result = wait_text(page, "#import-result", r"into ui-upload", timeout=60)
    assert "Imported 2 images" in result and "4 uploaded files" in result
    assert dataset_summary(studio.ws, "ui-upload").captions == {"alttext": 2}
    assert not list(studio.ws.uploads_dir.rglob("img_1.txt"))  # staged uploads are removed after import
    page.context.close()


def test_stage_uploads_picks_file_or_folder(tmp_path: Path) -> None:
    from gradio import Error as GradioError

    from backend.db import migrate
    from backend.workspace import Workspace
    from studio.tab_datasets import stage_uploads

    ws = Workspace(tmp_path / "home").ensure()
    migrate(ws)
    table = tmp_path / "my table.csv"
    table.write_text("image,alt\n")
    staged = stage_uploads(ws, [str(table)])
    assert staged.name == "my_table.csv" and staged.parent.parent == ws.uploads_dir
    img = tmp_path / "a.png"
    img.write_bytes(png((1, 2, 3)))
    folder = stage_uploads(ws, [str(img), str(table)])
    assert folder.is_dir() and sorted(p.name for p in folder.iterdir()) == ["a.png", "my_table.csv"]
    assert stage_uploads(ws, [str(img)]).is_dir()  # one image is still a folder of images
    archive = tmp_path / "x.zip"
    archive.write_bytes(b"PK")
    with pytest.raises(GradioError, match="Zip archives are not supported"):
        stage_uploads(ws, [str(archive)])


def test_admin_reviews_pages_filters_variants_diff_and_stats(
    studio: Studio, browser, long_image: int
) -> None:  # noqa: ANN001
    page = login(browser, studio, ADMIN)
    open_tab(page, "Review", "#review-gallery img")
    total = dataset_summary(studio.ws, "demo-shapes").images
    pages = -(-total // 32)
    wait_text(page, "#rv-page-info", rf"page 1 of {pages} · {total} images")
    expect(page.locator("#review-gallery .thumbnail-item")).to_have_count(min(32, total))

    # page through
    page.locator("#rv-next").click()
    wait_text(page, "#rv-page-info", rf"page 2 of {pages}")
    expect(page.locator("#review-gallery .thumbnail-item")).to_have_count(min(32, total - 32))
    page.locator("#rv-prev").click()
    wait_text(page, "#rv-page-info", rf"page 1 of {pages}")

    # filter by a kind that is present
    with read_session(studio.ws) as s:
        current_short = (
            select(Caption.image_id)
            .join(Image, Image.id == Caption.image_id)
            .join(Dataset, Dataset.id == Image.dataset_id)
            .where(Dataset.name == "demo-shapes", Caption.kind == "human_short", Caption.is_current)
        )
        n_short = len(set(s.exec(current_short).all()))
    pick_option(page, "rv-has", "human short")
    page.keyboard.press("Escape")
    wait_text(page, "#rv-page-info", rf"page 1 of 1 · {n_short} images?$")
    page.locator("#rv-has .token-remove").first.click()
    wait_text(page, "#rv-page-info", rf"· {total} images")

    # search the long caption, open the image
    search = page.locator("#rv-search textarea, #rv-search input").first
    search.fill(MARKER.upper())
    search.press("Enter")
    wait_text(page, "#rv-page-info", r"page 1 of 1 · 1 image$")
    page.locator("#review-gallery .thumbnail-item").first.click()
    variants = wait_text(page, "#variants", "RECAP LONG|recap long")
    headers = [h.strip().lower() for h in page.locator("#variants th").all_inner_texts()]
    assert headers == [
        "alt-text",
        "human short",
        "human long",
        "recap short",
        "recap long",
        "other: upsampled",
    ]
    badge = page.locator("#variants .rv-trunc")
    expect(badge).to_have_count(1)
    expect(badge).to_be_visible()
    assert re.fullmatch(r"truncated: \d+ > 77 tokens", badge.inner_text().strip())
    assert MARKER in variants and "CLIP tokens" in variants
    expect(page.locator("#variants td .rv-cut")).to_have_count(1)  # the part CLIP never reads is marked
    expect(page.locator("#rv-image img")).to_have_count(1)

    # word diff: alt-text -> recap long by default, then pick another target
    diff = wait_text(page, "#diff", "recap long")
    assert page.locator("#diff ins").count() >= 1 and page.locator("#diff del").count() >= 1
    assert diff.startswith("alt-text")
    pick_option(page, "diff-b", "human short", prefix=True)
    wait_text(page, "#diff", r"→ human short")

    # statistics with the length histogram
    page.locator("#rv-stats").get_by_text("Statistics").first.click()
    page.wait_for_selector("#length-histogram img", timeout=UI_WAIT_MS)
    summary = wait_text(page, "#rv-stats-summary", "recap long")
    assert "past 77 tokens" in summary
    wait_text(page, "#rv-junk-alttext", "of alt-text looks like junk")
    page.screenshot(path="/tmp/review.png", full_page=True)
    page.context.close()


def test_annotator_sees_no_admin_controls_and_api_refuses(
    studio: Studio, browser, source_folder: Path
) -> None:  # noqa: ANN001
    page = login(browser, studio, ANNOTATOR)
    wait_text(page, "#datasets-table", "demo-shapes")
    wait_text(page, "#datasets-annotator-note", "admin actions")
    for selector in ("#datasets-admin", "#import-button", "#export-button", "#delete-button"):
        expect(page.locator(selector)).to_be_hidden()
    open_tab(page, "Review", "#review-gallery img")
    page.context.close()

    client = Client(studio.url, auth=ANNOTATOR, verbose=False, analytics_enabled=False)
    calls = {
        "/import_dataset": (str(source_folder), None, "sneaky", "auto", "", "", 1_000_000),
        "/export_dataset": ("demo-shapes", "jsonl", "(every kind)", "sneaky-export"),
        "/delete_dataset": ("demo-shapes", True),
    }
    for api_name, args in calls.items():
        with pytest.raises(Exception, match="Not allowed") as err:
            client.predict(*args, api_name=api_name)
        assert "annotator" in str(err.value), api_name
    assert "sneaky" not in dataset_names(studio.ws)
    assert "demo-shapes" in dataset_names(studio.ws)
    assert not (studio.ws.exports_dir / "sneaky-export").exists()


def test_admin_api_import_export_delete(studio: Studio, source_folder: Path) -> None:
    client = Client(studio.url, auth=ADMIN, verbose=False, analytics_enabled=False)
    result = client.predict(
        str(source_folder), None, "api-import", "folder", "", "", 1_000_000, api_name="/import_dataset"
    )
    assert "Imported 4 images" in result[0]
    exported = client.predict("api-import", "jsonl", "(every kind)", "api-export", api_name="/export_dataset")
    assert "Exported 4 images" in exported and (studio.ws.exports_dir / "api-export").is_dir()
    with pytest.raises(Exception, match="under exports/"):
        client.predict("api-import", "jsonl", "(every kind)", "../escape", api_name="/export_dataset")
    with pytest.raises(Exception, match="confirmation"):
        client.predict("api-import", False, api_name="/delete_dataset")
    assert "api-import" in dataset_names(studio.ws)
    deleted = client.predict("api-import", True, api_name="/delete_dataset")
    assert "Deleted api-import" in deleted[0] and "4 images" in deleted[0]
    assert "api-import" not in dataset_names(studio.ws)
