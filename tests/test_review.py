"""Review queries: pagination, caption filters, search, variants in column order, diffs,
and dataset deletion. Built on a real workspace (SQLite file) with real stored images."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image as PILImage
from sqlalchemy import event, func
from sqlmodel import select

from backend.captions import add_caption, revise_human_caption
from backend.clip_tokens import CONTEXT_LENGTH
from backend.datasets import DatasetNotFound, dataset_summary, delete_dataset, get_or_create_dataset
from backend.db import engines, read_session, write_session
from backend.images import add_image, decode_image
from backend.models import Caption, Image
from backend.review import (
    KIND_ORDER,
    GalleryPage,
    ReviewError,
    caption_kinds,
    diff_ratio,
    gallery_page,
    image_variants,
    kind_label,
    word_diff_html,
)
from backend.users import add_user
from backend.workspace import Workspace

N_IMAGES = 30
LONG = " ".join(
    ["A wide photograph of a red wooden barn with a tall silver silo beside it"] * 3
    + ["under a pale blue sky with three white clouds, green grass and a fence in front"] * 2
)


def png(i: int) -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", (16, 12), (i * 7 % 256, i * 13 % 256, i * 29 % 256)).save(buf, format="PNG")
    return buf.getvalue()


def make_dataset(ws: Workspace, name: str, n: int, start: int = 0) -> list[int]:
    ids = []
    with write_session(ws) as s:
        ds = get_or_create_dataset(s, name)
        for i in range(start, start + n):
            image, _ = add_image(s, ws, ds.id, decode_image(png(i)), f"src/img_{i:03d}.png")
            ids.append(image.id)
    return ids


@pytest.fixture
def filled(ws: Workspace) -> tuple[Workspace, list[int]]:
    """30 images: all with alt-text, 10 with human_short, 5 with recap_long (one long)."""
    ann = add_user(ws, "ann", "annotator", "ann-password")
    ids = make_dataset(ws, "rev", N_IMAGES)
    with write_session(ws) as s:
        for i, image_id in enumerate(ids):
            alt = f"photo {i} of a thing"
            if i == 7:
                alt = "Cheap ZEBRA print rug, 50% off"
            add_caption(s, image_id, "alttext", alt, source="import:test")
            if i < 10:
                revise_human_caption(s, image_id, "human_short", ann.id, f"a draft about giraffes {i}")
                revise_human_caption(
                    s, image_id, "human_short", ann.id, f"a small coloured square number {i}"
                )
            if i < 5:
                add_caption(s, image_id, "recap_long", LONG if i == 0 else f"a square, image {i}", run_id=3)
        add_caption(s, ids[0], "upsampled", "an upsampled prompt", source="upsample")
        add_caption(s, ids[0], "recap_short", "a barn", run_id=3)
        add_caption(s, ids[0], "human_long", "A red barn with a silo next to it.", annotator_id=ann.id)
    return ws, ids


def test_pagination_totals_pages_and_order(filled: tuple[Workspace, list[int]]) -> None:
    ws, ids = filled
    first = gallery_page(ws, "rev", page=0, page_size=12)
    assert (first.total, first.pages, first.page) == (N_IMAGES, 3, 0)
    assert first.describe() == "page 1 of 3 · 30 images"
    seen: list[int] = []
    for p in range(first.pages):
        page = gallery_page(ws, "rev", page=p, page_size=12)
        assert len(page.items) == (12 if p < 2 else 6)
        seen += page.image_ids
    assert seen == ids  # every image once, in id order
    last = gallery_page(ws, "rev", page=99, page_size=12)
    assert last.page == 2 and last.image_ids == ids[24:]
    assert gallery_page(ws, "rev", page=-5, page_size=12).page == 0
    image_id, thumb, label = first.items[0]
    assert Path(thumb).is_file() and label == f"#{image_id} img_000.png"


def test_empty_results_have_one_page(filled: tuple[Workspace, list[int]]) -> None:
    ws, _ = filled
    page = gallery_page(ws, "rev", search="no caption says this")
    assert isinstance(page, GalleryPage)
    assert (page.items, page.total, page.page, page.pages) == ([], 0, 0, 1)


def test_kind_filters(filled: tuple[Workspace, list[int]]) -> None:
    ws, ids = filled
    assert gallery_page(ws, "rev", has_kinds=["human_short"]).total == 10
    assert gallery_page(ws, "rev", missing_kinds=["human_short"]).total == 20
    both = gallery_page(ws, "rev", has_kinds=["human_short"], missing_kinds=["recap_long"])
    assert both.image_ids == ids[5:10]
    assert gallery_page(ws, "rev", has_kinds=["human_short", "recap_long", "upsampled"]).image_ids == ids[:1]
    assert gallery_page(ws, "rev", missing_kinds=["alttext"]).total == 0
    with pytest.raises(ReviewError, match="both present and missing"):
        gallery_page(ws, "rev", has_kinds=["alttext"], missing_kinds=["alttext"])
    with pytest.raises(ReviewError, match="page size"):
        gallery_page(ws, "rev", page_size=0)
    with pytest.raises(DatasetNotFound):
        gallery_page(ws, "nope")


def test_search_is_case_insensitive_literal_and_current_only(filled: tuple[Workspace, list[int]]) -> None:
    ws, ids = filled
    assert gallery_page(ws, "rev", search="zebra").image_ids == [ids[7]]
    assert gallery_page(ws, "rev", search="  Zebra PRINT ").image_ids == [ids[7]]
    # LIKE wildcards are matched literally
    assert gallery_page(ws, "rev", search="50%").image_ids == [ids[7]]
    assert gallery_page(ws, "rev", search="%").image_ids == [ids[7]]
    assert gallery_page(ws, "rev", search="_").total == 0
    # searches every current kind, not only alt-text
    assert gallery_page(ws, "rev", search="silver silo").image_ids == [ids[0]]
    assert gallery_page(ws, "rev", search="number").total == 10
    # the superseded human revision is history, not a current caption
    assert gallery_page(ws, "rev", search="giraffes").total == 0
    combined = gallery_page(ws, "rev", search="photo", has_kinds=["human_short"])
    assert combined.total == 9  # image 7's alt-text has no "photo"


def test_gallery_page_is_a_fixed_number_of_bounded_queries(filled: tuple[Workspace, list[int]]) -> None:
    """A page costs one COUNT and one LIMITed SELECT however large the dataset is."""
    ws, _ = filled
    statements: list[str] = []
    engine = engines(ws.db_url)[0]

    def record(_conn, _cursor, statement, _params, _context, _many) -> None:  # noqa: ANN001
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        gallery_page(
            ws, "rev", has_kinds=["alttext"], missing_kinds=["recap_long"], search="a", page=1, page_size=5
        )
    finally:
        event.remove(engine, "before_cursor_execute", record)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) <= 3  # dataset lookup, count, page
    page_query = next(s for s in selects if "LIMIT" in s.upper())
    assert "OFFSET" in page_query.upper() and "EXISTS" in page_query.upper()
    assert any("count(" in s.lower() for s in selects)


def test_variants_in_column_order_with_counts_and_flags(filled: tuple[Workspace, list[int]]) -> None:
    ws, ids = filled
    detail = image_variants(ws, ids[0])
    assert detail.dataset == "rev" and detail.original_key == "src/img_000.png"
    assert Path(detail.path).is_file() and Path(detail.thumb).is_file()
    kinds = [v.kind for v in detail.variants]
    assert kinds == [*KIND_ORDER, "upsampled"]
    assert [v.column for v in detail.variants] == [
        "alt-text",
        "human short",
        "human long",
        "recap short",
        "recap long",
        "other: upsampled",
    ]
    by_kind = {v.kind: v for v in detail.variants}
    short = by_kind["human_short"]
    assert short.text == "a small coloured square number 0"  # current revision only
    assert short.author == "ann" and short.status == "submitted" and short.words == 6
    assert short.clip_tokens == 8 and not short.truncated
    long = by_kind["recap_long"]
    assert long.clip_tokens > CONTEXT_LENGTH and long.truncated
    assert long.run_id == 3 and long.origin == "run 3"
    assert by_kind["alttext"].origin == "import:test"
    labels = [v.label for v in detail.variants]
    assert len(set(labels)) == len(labels)
    assert detail.variant("recap long · run 3") is long
    with pytest.raises(ReviewError, match="does not exist"):
        image_variants(ws, 10_000)


def test_duplicate_variant_labels_are_made_unique(ws: Workspace) -> None:
    [image_id] = make_dataset(ws, "dup", 1)
    with write_session(ws) as s:
        add_caption(s, image_id, "alttext", "one")
        add_caption(s, image_id, "alttext", "two")
    labels = [v.label for v in image_variants(ws, image_id).variants]
    assert len(set(labels)) == 2 and all(label.startswith("alt-text #") for label in labels)


def test_caption_kinds(filled: tuple[Workspace, list[int]]) -> None:
    ws, _ = filled
    kinds = caption_kinds(ws)
    assert kinds[: len(KIND_ORDER)] == list(KIND_ORDER) and "upsampled" in kinds
    assert caption_kinds(ws, "rev")[-1] == "upsampled"
    assert kind_label("upsampled") == "other: upsampled"


def test_word_diff_html() -> None:
    out = word_diff_html("a red barn in a field", "a big red barn near a field")
    assert out == "a <ins>big</ins> red barn <del>in</del> <ins>near</ins> a field"
    assert word_diff_html("same words", "same   words") == "same words"
    assert word_diff_html("", "new text") == "<ins>new text</ins>"
    assert word_diff_html("old", "") == "<del>old</del>"
    hostile = word_diff_html("<b>x</b>", '<script>alert("x")</script> &')
    assert "<script>" not in hostile and "<b>" not in hostile
    assert "&lt;script&gt;" in hostile and "&amp;" in hostile
    assert diff_ratio("a b c d", "a b c d") == 1.0 and diff_ratio("a b", "c d") == 0.0


def test_delete_dataset_cascades_rows_and_keeps_shared_files(ws: Workspace) -> None:
    ann = add_user(ws, "ann", "annotator", "ann-password")
    make_dataset(ws, "keep", 3)
    doomed = make_dataset(ws, "doomed", 4, start=1)  # images 1 and 2 are also in "keep"
    with write_session(ws) as s:
        for image_id in doomed:
            add_caption(s, image_id, "alttext", "x")
            revise_human_caption(s, image_id, "human_short", ann.id, "first")
            revise_human_caption(s, image_id, "human_short", ann.id, "second")  # a revision chain
    assert delete_dataset(ws, "doomed") == 4
    with read_session(ws) as s:
        assert s.get(Image, doomed[0]) is None
        assert s.exec(select(func.count()).select_from(Caption)).one() == 0
    assert dataset_summary(ws, "keep").images == 3
    assert len(list(ws.images_dir.rglob("*.png"))) == 5  # files are never deleted
    with pytest.raises(DatasetNotFound):
        delete_dataset(ws, "doomed")


def test_delete_dataset_refuses_while_a_run_uses_it(ws: Workspace) -> None:
    from backend.datasets import DatasetInUse
    from backend.jobs import create_run

    make_dataset(ws, "busy", 2)
    run = create_run(ws, "recaption", {"dataset": "busy"})
    with pytest.raises(DatasetInUse, match=f"#{run.id}"):
        delete_dataset(ws, "busy")
    assert dataset_summary(ws, "busy").images == 2


# --------------------------------------------------------------------------- independent captioning


@pytest.fixture
def two_annotators(ws: Workspace) -> tuple[Workspace, int, dict[str, int]]:
    """One image with alt-text, a recaption, and human captions of two annotators in every state:
    ann's own (submitted), bob's submitted, bob's rejected, and cy's approved one."""
    from backend.captions import review_caption

    admin = add_user(ws, "boss", "admin", "boss-pass-long-enough")
    users = {
        name: add_user(ws, name, "annotator", f"{name}-pass-long-enough").id for name in ("ann", "bob", "cy")
    }
    (image_id,) = make_dataset(ws, "indep", 1)
    with write_session(ws) as s:
        add_caption(s, image_id, "alttext", "cheap rug", source="import:test")
        add_caption(s, image_id, "recap_long", "a striped rug on a floor", run_id=9)
        revise_human_caption(s, image_id, "human_short", users["ann"], "a rug, as ann sees it")
        revise_human_caption(s, image_id, "human_short", users["bob"], "an okapi-striped rug by bob")
        rejected = revise_human_caption(s, image_id, "human_long", users["bob"], "bob's rejected zebra text")
        review_caption(s, rejected.id, admin.id, approve=False, comment="describe the floor")
        approved = revise_human_caption(
            s, image_id, "human_long", users["cy"], "an approved long caption by cy"
        )
        review_caption(s, approved.id, admin.id, approve=True)
    return ws, image_id, users


def _texts(ws: Workspace, image_id: int, viewer) -> set[str]:  # noqa: ANN001 - backend.visibility.Viewer
    return {v.text for v in image_variants(ws, image_id, viewer=viewer).variants}


def test_annotators_read_approved_and_their_own_human_captions_only(two_annotators) -> None:  # noqa: ANN001
    """Issue 9 §3: another annotator's submitted or rejected caption never reaches an annotator
    (variants, text search, kind filters); admins, and annotators once an admin opens it, see all."""
    from backend.users import get_user
    from backend.visibility import EVERYONE, set_annotators_see_all_captions, viewer_for

    ws, image_id, users = two_annotators
    ann = viewer_for(ws, get_user(ws, "ann"))
    every = {
        "cheap rug",
        "a striped rug on a floor",
        "a rug, as ann sees it",
        "an okapi-striped rug by bob",
        "bob's rejected zebra text",
        "an approved long caption by cy",
    }
    assert _texts(ws, image_id, EVERYONE) == every
    assert _texts(ws, image_id, viewer_for(ws, get_user(ws, "boss"))) == every
    assert _texts(ws, image_id, ann) == every - {"an okapi-striped rug by bob", "bob's rejected zebra text"}
    # bob reads his own (even the rejected one), not ann's
    assert _texts(ws, image_id, viewer_for(ws, get_user(ws, "bob"))) == every - {"a rug, as ann sees it"}
    # one annotator found another's caption by text search: not any more
    assert gallery_page(ws, "indep", search="OKAPI", viewer=ann).total == 0
    assert gallery_page(ws, "indep", search="zebra", viewer=ann).total == 0
    assert gallery_page(ws, "indep", search="okapi").total == 1  # admins and the CLI still find it
    assert gallery_page(ws, "indep", search="as ann sees", viewer=ann).total == 1  # her own
    assert gallery_page(ws, "indep", search="approved long", viewer=ann).total == 1
    # kind filters count only readable captions: for dan, who wrote nothing, bob's draft is no human_short
    dan = viewer_for(ws, add_user(ws, "dan", "annotator", "dan-pass-long-enough"))
    assert gallery_page(ws, "indep", has_kinds=["human_short"], viewer=dan).total == 0
    assert gallery_page(ws, "indep", missing_kinds=["human_short"], viewer=dan).total == 1
    assert gallery_page(ws, "indep", has_kinds=["human_long"], viewer=dan).total == 1  # cy's approved one

    set_annotators_see_all_captions(ws, True)  # the admin setting opens everything
    assert _texts(ws, image_id, viewer_for(ws, get_user(ws, "ann"))) == every
    assert gallery_page(ws, "indep", search="okapi", viewer=viewer_for(ws, get_user(ws, "ann"))).total == 1
    set_annotators_see_all_captions(ws, False)
    assert _texts(ws, image_id, viewer_for(ws, get_user(ws, "ann"))) == _texts(ws, image_id, ann)


def test_caption_visibility_setting_is_stored_in_the_workspace(ws: Workspace) -> None:
    from backend import settings
    from backend.visibility import annotators_see_all_captions, set_annotators_see_all_captions

    assert annotators_see_all_captions(ws) is False
    set_annotators_see_all_captions(ws, True)
    path = settings.settings_path(ws)
    assert path.stat().st_mode & 0o077 == 0  # readable by the owner only
    assert annotators_see_all_captions(ws) is True
    settings.put(ws, "another", 3)
    assert annotators_see_all_captions(ws) is True and settings.get(ws, "another") == 3
    path.write_text("{ not json")  # a hand-broken file reads as the defaults, nothing crashes
    assert annotators_see_all_captions(ws) is False
