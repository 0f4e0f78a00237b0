"""build_corpus on a real SQLite workspace: ground truth, alt-text modes, approved human set, held-out prompts, idempotency."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from PIL import Image as PILImage
from sqlmodel import select

from backend.compositional.loaders import load_any
from backend.db import migrate, read_session
from backend.miniature.accuracy import caption_accuracy
from backend.miniature.corpus import (
    ANNOTATOR,
    REVIEWER,
    TRUTH_KIND,
    CorpusError,
    build_corpus,
    corpus_scenes,
    held_out_scenes,
)
from backend.miniature.world import SIZE, Scene, render
from backend.models import Caption, CaptionStatus, Dataset, Image, User
from backend.review import ground_truth_scene, image_variants
from backend.storage import image_path
from backend.workspace import Workspace
from studio.tab_review import variants_html

DATASET = "mini"


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    ws = Workspace(tmp_path_factory.mktemp("miniature") / "home").ensure()
    migrate(ws)
    return ws


def _rows(ws: Workspace) -> tuple[list[Image], list[Caption]]:
    with read_session(ws) as s:
        ds = s.exec(select(Dataset).where(Dataset.name == DATASET)).one()
        images = list(s.exec(select(Image).where(Image.dataset_id == ds.id).order_by(Image.id)))
        captions = list(s.exec(select(Caption).where(Caption.image_id.in_([i.id for i in images]))))  # type: ignore[union-attr]
    return images, captions


def test_build_corpus_writes_everything_once(ws: Workspace) -> None:
    report = build_corpus(ws, DATASET, n_images=40, human_images=10, seed=7, n_prompts=30)
    assert (report.images, report.images_added, report.alttext_added, report.human_added) == (40, 40, 40, 20)
    assert report.modes == {"junk": 12, "partial": 12, "wrong": 8, "faithful": 8} and report.created

    images, captions = _rows(ws)
    assert len(images) == 40
    scenes = corpus_scenes(40, 7)
    for image, scene in zip(images, scenes, strict=True):  # the truth is stored and matches the pixels
        assert image.meta is not None and Scene.from_meta(image.meta) == scene
        assert (image.width, image.height) == (SIZE, SIZE)
        stored = PILImage.open(image_path(ws, image.sha256, image.ext)).convert("RGB")
        assert stored.tobytes() == render(scene).tobytes()

    alt = [c for c in captions if c.kind == "alttext"]
    assert len(alt) == 40 and all(c.status == CaptionStatus.final.value for c in alt)
    assert Counter(c.provenance["alttext_mode"] for c in alt) == report.modes  # type: ignore[index]

    human = [c for c in captions if c.kind in ("human_short", "human_long")]
    with read_session(ws) as s:
        users = {u.id: u for u in s.exec(select(User))}
    assert len(human) == 20 and {c.image_id for c in human} == {i.id for i in images[:10]}
    for c in human:
        assert c.status == CaptionStatus.approved.value and c.is_current
        assert users[c.annotator_id].name == ANNOTATOR and users[c.reviewed_by].name == REVIEWER  # type: ignore[index]
        assert c.provenance["annotator"] == "simulated" and "mistakes" in c.provenance  # type: ignore[index]
    assert not any(
        u.active for u in users.values() if u.name in (ANNOTATOR, REVIEWER)
    )  # nobody logs in as them

    # the Review tab shows them like any other captions
    detail = image_variants(ws, images[0].id)  # type: ignore[arg-type]
    assert {v.kind for v in detail.variants} == {"alttext", "human_short", "human_long", TRUTH_KIND}
    assert {v.author for v in detail.variants if v.kind.startswith("human")} == {ANNOTATOR}
    # ... each scored against the image's ground truth, which the truth caption states exactly
    truth_variant = next(v for v in detail.variants if v.kind == TRUTH_KIND)
    assert truth_variant.truth_accuracy is not None
    assert all(a.correct == a.claims and a.recalled == a.facts for a in truth_variant.truth_accuracy.values())
    assert all(v.truth_accuracy is not None for v in detail.variants)
    html = variants_html(detail)
    assert html.count("<b>vs truth</b>") == len(detail.variants) and "rv-truth-ok" in html
    assert ground_truth_scene(None) is None and ground_truth_scene({"world": "other", "objects": []}) is None

    # every image has its ground-truth caption: the scene's structured prompt (the upper-bound arm's)
    truth = {c.image_id: c.text for c in captions if c.kind == TRUTH_KIND}
    assert truth == {i.id: Scene.from_meta(i.meta).structured().prompt for i in images}  # type: ignore[arg-type]
    assert report.truth_added == 40

    # the long human caption describes the stored truth (the default 3% mistake rate: nearly always exact)
    longs = [c for c in human if c.kind == "human_long"]
    by_id = {i.id: i for i in images}
    exact = sum(
        all(
            a.correct == a.claims
            for a in caption_accuracy(c.text, Scene.from_meta(by_id[c.image_id].meta)).aspects.values()
        )  # type: ignore[arg-type]
        for c in longs
    )
    assert exact >= 8


def test_held_out_prompts_load_and_never_meet_the_corpus(ws: Workspace) -> None:
    path = ws.home / "prompts" / f"{DATASET}-heldout.jsonl"
    loaded = load_any(str(path))
    assert loaded.layout == "structured" and len(loaded) == 30
    assert len({p.key for p in loaded}) == 30
    assert len({(p.objects, p.relations) for p in loaded}) == 30  # all ask for different things
    images, _ = _rows(ws)
    corpus_layouts = {i.meta["layout"] for i in images}  # type: ignore[index]
    # the prompts' scenes are not stored with them; the split is by layout, so check through the sampler
    held = held_out_scenes(30, 7)
    assert [s.structured(key=p.key).to_json() for s, p in zip(held, loaded, strict=True)] == [
        p.to_json() for p in loaded
    ]
    assert not corpus_layouts & {s.layout for s in held}
    assert not {s.layout for s in corpus_scenes(2000, 7)} & {s.layout for s in held}


def test_rerun_adds_nothing_and_growing_adds_only_the_new(ws: Workspace) -> None:
    before = _rows(ws)
    again = build_corpus(ws, DATASET, n_images=40, human_images=10, seed=7, n_prompts=30)
    assert not again.created and again.images == 40
    after = _rows(ws)
    assert [c.id for c in before[1]] == [c.id for c in after[1]] and len(before[0]) == len(after[0])

    grown = build_corpus(ws, DATASET, n_images=45, human_images=12, seed=7, n_prompts=30)
    assert (grown.images, grown.images_added, grown.alttext_added, grown.human_added) == (45, 5, 5, 4)
    assert not grown.prompts_written
    images, _ = _rows(ws)
    assert [i.id for i in images[:40]] == [i.id for i in before[0]]


def test_refuses_bad_sizes(ws: Workspace, tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="human_images"):
        build_corpus(ws, "other", n_images=300, human_images=201, seed=1)
    with pytest.raises(CorpusError, match="human_images"):
        build_corpus(ws, "other", n_images=5, human_images=6, seed=1)
    with pytest.raises(CorpusError, match="at least 2 prompts"):
        build_corpus(
            ws, "other", n_images=5, human_images=0, seed=1, n_prompts=1, prompts_path=tmp_path / "p.jsonl"
        )


def _texts(ws: Workspace, dataset: str) -> set[tuple[str, str, str, str]]:
    """(image key, caption kind, text, status) of a dataset's current captions."""
    with read_session(ws) as s:
        rows = s.exec(
            select(Image.original_key, Caption.kind, Caption.text, Caption.status)
            .join(Caption, Caption.image_id == Image.id)  # type: ignore[arg-type]
            .join(Dataset, Dataset.id == Image.dataset_id)  # type: ignore[arg-type]
            .where(Dataset.name == dataset, Caption.is_current == True)  # noqa: E712
        ).all()
    return {(str(k), str(kind), str(text), str(status)) for k, kind, text, status in rows}


def test_a_build_killed_between_chunks_keeps_whole_images_and_a_rerun_completes(tmp_path: Path) -> None:
    """Each chunk of images is its own transaction (other writers never wait for the whole build):
    a build stopped after two chunks keeps exactly those images, each with all its captions, and
    a rerun adds the rest, ending where an uninterrupted build ends."""
    ws = Workspace(tmp_path / "home").ensure()
    migrate(ws)

    class Killed(Exception):
        pass

    seen: list[tuple[int, int]] = []

    def progress(done: int, total: int) -> None:
        seen.append((done, total))
        if done >= 10:
            raise Killed

    size = {"n_images": 25, "human_images": 6, "seed": 3, "n_prompts": 4, "chunk_images": 5}
    with pytest.raises(Killed):
        build_corpus(ws, "killed", **size, progress=progress)  # type: ignore[arg-type]
    assert seen == [(0, 25), (5, 25), (10, 25)]
    kept = _texts(ws, "killed")
    assert len({key for key, *_ in kept}) == 10
    kinds = Counter(kind for _, kind, _, _ in kept)
    assert kinds == {"alttext": 10, TRUTH_KIND: 10, "human_short": 6, "human_long": 6}

    rest = build_corpus(ws, "killed", **size)  # type: ignore[arg-type]
    assert (rest.images, rest.images_added, rest.human_added) == (25, 15, 0)
    build_corpus(ws, "whole", **{**size, "chunk_images": 500})  # type: ignore[arg-type]
    assert _texts(ws, "killed") == _texts(ws, "whole")
