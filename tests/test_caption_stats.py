"""Caption statistics: junk alt-text detection, per-kind numbers, histograms."""

from __future__ import annotations

import io

import pytest
from PIL import Image as PILImage

from backend.caption_stats import (
    KindStats,
    dataset_caption_stats,
    histogram,
    junk_reason,
    text_stats,
)
from backend.captions import add_caption, revise_human_caption
from backend.clip_tokens import clip_token_count
from backend.datasets import DatasetNotFound, get_or_create_dataset
from backend.db import write_session
from backend.images import add_image, decode_image
from backend.models import User
from backend.workspace import Workspace

JUNK = [
    "",
    "   ",
    "IMG_4821.JPG",
    "DSC_0193.jpg",
    "image.png",
    "my holiday pic (2).jpeg",
    "untitled",
    "Untitled.",
    "P1010234",
    "https://cdn.example.com/assets/83472.png",
    "www.example.com",
    "9c2f41b7e0aa4d51",
    "20190512_143022",
    "1234567",
    "Stock photo - buy now, free shipping",
    "Royalty-free vector illustration",
    "Click here to download the full-size wallpaper",
    "Image may contain: one or more people",
    "No photo description available.",
    "© 2021 All rights reserved",
    "Copyright by ACME Corp",
    "50% off all summer shoes",
    "Add to cart",
]
NOT_JUNK = [
    "A red circle and a blue square on a white background",
    "Stock market chart showing a steady rise",
    "Free range chickens on a farm",
    "Photo of a dog on the beach",
    "image of a cat sleeping on a sofa",
    "Company logo painted on a blue wall",
    "2 dogs in 4 inches of snow",
    "The year 2019 in review",
    "black square",
    "Green triangle clipart",
    "a copyright symbol printed on a book cover",
    "Shopping street at night with neon signs",
]


@pytest.mark.parametrize("text", JUNK)
def test_junk_is_flagged(text: str) -> None:
    reason = junk_reason(text)
    assert reason, text


@pytest.mark.parametrize("text", NOT_JUNK)
def test_descriptions_are_not_junk(text: str) -> None:
    assert junk_reason(text) is None


def test_junk_reasons_say_why() -> None:
    assert junk_reason("") == "empty"
    assert junk_reason("IMG_1234.jpg") == "a file name"
    assert junk_reason("http://x.org/a/b") == "a URL"
    assert junk_reason("buy now!").startswith("advert")
    assert junk_reason("Shutterstock image 1234 of a dog").startswith("stock-photo")


LONG = " ".join(["a small blue star next to a large red circle"] * 9)  # 90 words, > 77 tokens
TEXTS = ["A red circle.", "a red square on the left", "Red red RED circle", LONG]


def test_text_stats_known_numbers() -> None:
    st = text_stats("recap_long", TEXTS, top_n=3)
    assert st.count == 4
    assert st.word_counts == [3, 6, 4, 90]
    assert st.clip_token_counts == [clip_token_count(t) for t in TEXTS]
    assert st.clip_token_counts[0] == 6  # start + a red circle . + end
    assert st.truncated == 1 and st.clip_token_counts[3] > 77 and st.truncated_fraction == 0.25
    # vocabulary: a red circle square on the left small blue star next to large
    assert st.vocabulary_size == 13
    # stop words (a, on, the, to) removed; ties broken alphabetically
    assert st.top_words == [("red", 14), ("circle", 11), ("blue", 9)]
    assert st.junk == 0 and st.junk_examples == []  # only alt-text is checked for junk
    assert st.mean_words == pytest.approx(103 / 4)


def test_truncation_boundary() -> None:
    # "x" is one token: 75 words + start/end = 77 tokens (fits), 76 words = 78 (truncated)
    fits, over = " ".join(["x"] * 75), " ".join(["x"] * 76)
    st = text_stats("recap_long", [fits, over])
    assert st.clip_token_counts == [77, 78] and st.truncated == 1


@pytest.fixture
def stats_ws(ws: Workspace) -> Workspace:
    with write_session(ws) as s:
        ann = User(name="ann", role="annotator", password_hash="-")  # never logs in
        s.add(ann)
        s.flush()
        ds = get_or_create_dataset(s, "toy")
        other = get_or_create_dataset(s, "other")
        alts = ["IMG_0001.JPG", "a red circle", "Stock photo - buy now", "two blue squares", "untitled"]
        for i, alt in enumerate(alts):
            buf = io.BytesIO()
            PILImage.new("RGB", (8, 8), (i * 40, 0, 0)).save(buf, format="PNG")
            img, _ = add_image(s, ws, ds.id, decode_image(buf.getvalue()), f"k{i}.png")
            add_caption(s, img.id, "alttext", alt)
            add_caption(s, img.id, "recap_long", LONG if i == 0 else f"a red circle number {i}", run_id=1)
            if i < 2:
                revise_human_caption(s, img.id, "human_short", ann.id, "old draft words here")
                revise_human_caption(s, img.id, "human_short", ann.id, "a circle")  # current revision
        img2, _ = add_image(s, ws, other.id, decode_image(buf.getvalue()), "x.png")
        add_caption(s, img2.id, "alttext", "belongs to another dataset")
    return ws


def test_dataset_caption_stats(stats_ws: Workspace) -> None:
    stats = dataset_caption_stats(stats_ws, "toy")
    assert list(stats) == ["alttext", "human_short", "recap_long"]
    alt = stats["alttext"]
    assert isinstance(alt, KindStats) and alt.count == 5
    assert alt.junk == 3 and alt.junk_fraction == pytest.approx(0.6)
    assert [t for t, _ in alt.junk_examples] == ["IMG_0001.JPG", "Stock photo - buy now", "untitled"]
    assert all(reason for _, reason in alt.junk_examples)
    human = stats["human_short"]
    assert human.count == 2 and human.word_counts == [2, 2]  # only current revisions
    assert human.junk == 0
    recap = stats["recap_long"]
    assert recap.count == 5 and recap.truncated == 1 and max(recap.word_counts) == 90

    only = dataset_caption_stats(stats_ws, "toy", kinds=["recap_long"], limit=2)
    assert list(only) == ["recap_long"] and only["recap_long"].count == 2
    assert dataset_caption_stats(stats_ws, "other")["alttext"].count == 1
    assert dataset_caption_stats(stats_ws, "toy", kinds=["upsampled"])["upsampled"].count == 0
    with pytest.raises(DatasetNotFound):
        dataset_caption_stats(stats_ws, "missing")


def test_histogram() -> None:
    counts, edges = histogram([1, 2, 2, 3, 10], bins=3)
    assert counts == [4, 0, 1] and edges == pytest.approx([1, 4, 7, 10])
    counts, edges = histogram((x for x in [5, 15, 25]), bins=[0, 10, 20, 30])
    assert counts == [1, 1, 1] and edges == [0, 10, 20, 30]
    counts, _ = histogram([], bins=4)
    assert counts == [0, 0, 0, 0]


def test_statistics_count_only_captions_the_viewer_may_read(stats_ws: Workspace) -> None:
    """Issue 9 §3: an annotator's statistics (counts, top words) never come from another
    annotator's unreviewed captions; their own and approved ones count, as for admins all do."""
    from sqlmodel import select

    from backend.db import read_session
    from backend.models import Caption, Image
    from backend.visibility import EVERYONE, Viewer

    with write_session(stats_ws) as s:
        bob = User(name="bob", role="annotator", password_hash="-")
        s.add(bob)
        s.flush()
        bob_id = bob.id
        images = s.exec(select(Image.id).order_by(Image.id)).all()[:3]
        for image_id in images:
            revise_human_caption(s, image_id, "human_long", bob_id, "bob saw a marmoset marmoset there")
    with read_session(stats_ws) as s:
        ann_id = s.exec(select(User.id).where(User.name == "ann")).one()
        assert s.exec(select(Caption).where(Caption.annotator_id == bob_id)).all()

    def top(viewer: Viewer) -> dict[str, list[str]]:
        stats = dataset_caption_stats(stats_ws, "toy", viewer=viewer)
        return {kind: [w for w, _ in st.top_words] for kind, st in stats.items()}

    assert "marmoset" in top(EVERYONE)["human_long"]
    assert "marmoset" in top(Viewer(user_id=bob_id, sees_all=False))["human_long"]  # his own
    ann = top(Viewer(user_id=ann_id, sees_all=False))
    assert "human_long" not in ann and "circle" in ann["human_short"]  # bob's drafts do not exist for ann
    assert dataset_caption_stats(stats_ws, "toy", viewer=Viewer(ann_id, False))["alttext"].count == 5
