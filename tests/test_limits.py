"""Server-side limits (issue 9, section 6a): caption and draft length, statistics sample size,
upload types. Each limit holds whatever the page sends: the tests call the server's own
functions with what a hostile client could send, on a real SQLite workspace.
"""

from __future__ import annotations

import gradio as gr
import pytest
from gradio.data_classes import FileData, ListFiles

from backend import annotation as ann
from backend import caption_stats
from backend.annotation import MAX_CAPTION_CHARS, AnnotationError
from backend.captions import add_caption, current_human_caption
from backend.datasets import get_or_create_dataset
from backend.db import write_session
from backend.users import add_user
from backend.workspace import Workspace
from tests.test_annotation import make_dataset, quick_user

HUGE = "x" * 1_000_000  # what a client stored as a draft before


@pytest.fixture
def claimed(ws: Workspace) -> tuple[int, int, int, int]:
    """(set id, image id, annotator id, admin id): an annotator holding an image of a set."""
    make_dataset(ws, n=3)
    admin = add_user(ws, "admin", "admin", "admin-password").id
    annotator = quick_user(ws, "ann")
    aset = ann.create_annotation_set(ws, dataset="shapes", name="s", size=3)
    view = ann.next_item(ws, aset.id, annotator)
    assert view is not None
    return aset.id, view.image_id, annotator, admin


def test_a_huge_draft_is_refused_and_the_saved_one_kept(ws: Workspace, claimed: tuple[int, ...]) -> None:
    _set_id, image_id, annotator, _admin = claimed
    ann.save_draft(ws, image_id, annotator, "a short one", "a long one")
    with pytest.raises(AnnotationError) as refused:
        ann.save_draft(ws, image_id, annotator, "a short one", HUGE)
    message = str(refused.value)
    assert "long caption has 1,000,000 characters" in message and f"at most {MAX_CAPTION_CHARS:,}" in message
    draft = ann.load_draft(ws, image_id, annotator)
    assert (draft.short_text, draft.long_text) == ("a short one", "a long one")  # nothing lost
    at_limit = "y" * MAX_CAPTION_CHARS
    assert ann.save_draft(ws, image_id, annotator, "short", at_limit).long_text == at_limit


def test_a_caption_past_the_limit_is_not_submitted(ws: Workspace, claimed: tuple[int, ...]) -> None:
    set_id, image_id, annotator, _admin = claimed
    with pytest.raises(AnnotationError, match="short caption has 10,001 characters"):
        ann.submit(ws, set_id, image_id, annotator, "z" * (MAX_CAPTION_CHARS + 1), "a long caption")
    with write_session(ws) as s:
        assert current_human_caption(s, image_id, "human_short", annotator) is None


def test_a_review_comment_past_the_limit_is_refused(ws: Workspace, claimed: tuple[int, ...]) -> None:
    set_id, image_id, annotator, admin = claimed
    short, long = ann.submit(ws, set_id, image_id, annotator, "a dog", "a brown dog on grass")
    with pytest.raises(AnnotationError, match="review comment has 1,000,000 characters"):
        ann.review(ws, [short.id, long.id], admin, approve=False, comment=HUGE)
    with write_session(ws) as s:
        assert current_human_caption(s, image_id, "human_short", annotator).status == "submitted"


def test_the_live_counts_do_not_tokenise_a_huge_box() -> None:
    """Counting CLIP tokens of 1,000,000 characters took about a second per keystroke."""
    from studio.tab_annotate import counts_html

    html = counts_html(HUGE)
    assert "1,000,000 characters" in html and "at most 10,000" in html


@pytest.fixture
def five_captions(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> str:
    """A dataset of five alt-texts, with the server's cap lowered to three captions per kind."""
    monkeypatch.setattr(caption_stats, "MAX_STATS_SAMPLE", 3)
    ids = make_dataset(ws, name="tiny", n=5, with_meta=False)
    with write_session(ws) as s:
        get_or_create_dataset(s, "tiny")
        for i, image_id in enumerate(ids):
            add_caption(s, image_id, "recap_short", f"caption number {i}", source="test")
    return "tiny"


@pytest.mark.parametrize("asked", [10**9, float("inf"), "many", -5, 0])
def test_statistics_read_at_most_the_server_cap_whatever_is_asked(
    ws: Workspace, five_captions: str, asked: object
) -> None:
    stats = caption_stats.dataset_caption_stats(ws, five_captions, limit=asked)  # type: ignore[arg-type]
    expected = 3 if asked in (10**9, float("inf"), "many") else 1  # never all: a negative LIMIT is none
    assert stats["recap_short"].count == expected


def test_the_statistics_handler_caps_and_says_so(ws: Workspace, five_captions: str) -> None:
    from studio.tab_review import compute_stats

    summary = compute_stats(ws, five_captions, 10**9)[0]
    assert "Statistics read the first 3 captions of each kind." in summary


def test_the_import_upload_takes_only_the_importers_file_types(ws: Workspace, tmp_path) -> None:  # noqa: ANN001
    """Gradio checks ``file_types`` on the server too: another type never reaches the handler."""
    from studio import tab_datasets

    with gr.Blocks() as blocks:
        tab_datasets.build(ws, blocks)
    upload = next(b for b in blocks.blocks.values() if getattr(b, "elem_id", None) == "import-upload")
    assert set(upload.file_types) >= {".png", ".jpg", ".txt", ".csv", ".parquet", ".tar", ".jsonl"}
    evil = tmp_path / "payload.exe"
    evil.write_bytes(b"MZ")
    with pytest.raises(gr.Error, match="Invalid file type"):
        upload.preprocess(ListFiles(root=[FileData(path=str(evil))]))
    table = tmp_path / "table.csv"
    table.write_text("image,alt\n")
    assert upload.preprocess(ListFiles(root=[FileData(path=str(table))])) == [str(table)]
