"""Annotation workflow on a real SQLite workspace: sets, claims, drafts, submit, review, progress."""

from __future__ import annotations

import io
import threading
from collections import Counter
from datetime import datetime, timedelta

import pytest
from PIL import Image as PILImage
from sqlmodel import select

from backend import annotation as ann
from backend.annotation import AnnotationError, ClaimLost
from backend.annotation.liveness import claim_cutoff, still_holds
from backend.captions import add_caption, caption_history, current_human_caption
from backend.datasets import get_or_create_dataset
from backend.db import read_session, write_session
from backend.images import add_image, decode_image
from backend.models import AnnotationItem, Assignment, Caption, CaptionStatus, Draft, User, utcnow
from backend.users import add_user
from backend.workspace import Workspace

pytestmark = pytest.mark.engines("sqlite", "postgresql")

ALTS = [
    "",
    "IMG_0042.jpg",
    "a dog",
    "a red circle on a blue background",
    "three small shapes of three different colours on a plain white background today",
]


def png(i: int) -> bytes:
    img = PILImage.new("RGB", (16, 12), ((i * 37) % 256, (i * 91) % 256, (i * 13) % 256))
    img.putpixel((i % 16, (i // 16) % 12), (255 - (i % 256), 0, 0))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def make_dataset(ws: Workspace, name: str = "shapes", n: int = 20, with_meta: bool = True) -> list[int]:
    """n small distinct images with alt-text of varied style and a ground-truth object list."""
    ids: list[int] = []
    with write_session(ws) as s:
        ds = get_or_create_dataset(s, name)
        for i in range(n):
            meta = {"objects": [{"shape": "circle"}] * (1 + i % 4)} if with_meta else None
            image, _ = add_image(
                s, ws, ds.id, decode_image(png(i + 1000 * len(name))), f"img_{i}.png", meta=meta
            )
            alt = ALTS[i % len(ALTS)]
            if alt:
                add_caption(s, image.id, "alttext", alt, source="test")
            ids.append(image.id)
    return ids


def quick_user(ws: Workspace, name: str, role: str = "annotator") -> int:
    """A user row without the (deliberately slow) Argon2 hash; these users never log in."""
    with write_session(ws) as s:
        user = User(name=name, role=role, password_hash="!no-login")
        s.add(user)
        s.flush()
        return user.id


@pytest.fixture
def team(ws: Workspace) -> dict[str, int]:
    users = {"admin": add_user(ws, "admin", "admin", "admin-password").id}  # one real account
    for name in ("ann", "bob", "cat"):
        users[name] = quick_user(ws, name)
    return users


# --------------------------------------------------------------------------- sets


def test_create_set_random_is_seeded(ws: Workspace, team: dict[str, int]) -> None:
    images = make_dataset(ws, n=30)
    a = ann.create_annotation_set(ws, dataset="shapes", name="a", size=10, seed=7, created_by=team["admin"])
    b = ann.create_annotation_set(ws, dataset="shapes", name="b", size=10, seed=7)
    c = ann.create_annotation_set(ws, dataset="shapes", name="c", size=10, seed=8)

    def picked(set_id: int) -> list[int]:
        with read_session(ws) as s:
            rows = s.exec(
                select(AnnotationItem)
                .where(AnnotationItem.set_id == set_id)
                .order_by(AnnotationItem.position)
            )
            return [r.image_id for r in rows]

    assert len(picked(a.id)) == 10 == len(set(picked(a.id)))
    assert set(picked(a.id)) <= set(images)
    assert picked(a.id) == picked(b.id)
    assert picked(a.id) != picked(c.id)
    assert a.target_size == 10 and a.sampling == "random" and a.overlap == 1 and a.created_by == team["admin"]
    assert [s.name for s in ann.list_sets(ws)] == ["a", "b", "c"]


def test_stratified_sampling_covers_strata(ws: Workspace) -> None:
    make_dataset(ws, n=60)
    aset = ann.create_annotation_set(
        ws, dataset="shapes", name="strat", size=20, sampling="stratified", seed=1
    )
    with read_session(ws) as s:
        items = list(s.exec(select(AnnotationItem).where(AnnotationItem.set_id == aset.id)))
        strata = Counter()
        all_strata = Counter()
        from backend.models import Image

        alt_of = {c.image_id: c.text for c in s.exec(select(Caption).where(Caption.kind == "alttext"))}
        chosen = {i.image_id for i in items}
        for img in s.exec(select(Image)):
            key = ann.stratum_of(alt_of.get(img.id), img.meta)
            all_strata[key] += 1
            if img.id in chosen:
                strata[key] += 1
    assert len(items) == 20
    # every stratum of the dataset is represented
    assert set(strata) == set(all_strata)
    assert {k[0] for k in strata} == {"none", "junk", "1-4", "5-9", "10-19"}
    assert {k[1] for k in strata} == {"1", "2", "3", "4+"}


def test_stratum_buckets_and_allocation() -> None:
    assert ann.alttext_bucket(None) == "none"
    assert ann.alttext_bucket("  ") == "none"
    assert ann.alttext_bucket("DSC_1234.JPG") == "junk"
    assert ann.alttext_bucket("https://example.com/x") == "junk"
    assert ann.alttext_bucket("IMG 2021") == "junk"
    assert ann.alttext_bucket("a cat") == "1-4"
    assert ann.alttext_bucket(" ".join(["w"] * 25)) == "20+"
    assert ann.object_count({"objects": [1, 2, 3]}) == 3
    assert ann.object_count({"n_objects": 5}) == 5
    assert ann.object_count(None) is None
    assert ann.stratum_of("a cat", {"objects": [1] * 6}) == ("1-4", "4+")
    alloc = ann.allocate({"a": 90, "b": 9, "c": 1}, 10)
    assert sum(alloc.values()) == 10 and alloc["c"] == 1 and alloc["b"] >= 1
    assert ann.allocate({"a": 3, "b": 2}, 5) == {"a": 3, "b": 2}
    assert sum(ann.allocate({"a": 5, "b": 5, "c": 5}, 2).values()) == 2


def test_create_set_errors(ws: Workspace) -> None:
    make_dataset(ws, n=5)
    with pytest.raises(AnnotationError, match="no dataset named 'nope'"):
        ann.create_annotation_set(ws, dataset="nope", name="x", size=2)
    with pytest.raises(AnnotationError, match="at least 1"):
        ann.create_annotation_set(ws, dataset="shapes", name="x", size=0)
    with pytest.raises(AnnotationError, match="larger than dataset 'shapes', which has 5 images"):
        ann.create_annotation_set(ws, dataset="shapes", name="x", size=6)
    with pytest.raises(AnnotationError, match="overlap"):
        ann.create_annotation_set(ws, dataset="shapes", name="x", size=2, overlap=0)
    with pytest.raises(AnnotationError, match="unknown sampling"):
        ann.create_annotation_set(ws, dataset="shapes", name="x", size=2, sampling="clever")
    with pytest.raises(AnnotationError, match="needs a name"):
        ann.create_annotation_set(ws, dataset="shapes", name=" ", size=2)
    ann.create_annotation_set(ws, dataset="shapes", name="x", size=5)
    with pytest.raises(AnnotationError, match="already exists"):
        ann.create_annotation_set(ws, dataset="shapes", name="x", size=2)
    assert issubclass(AnnotationError, ValueError)
    assert [s.name for s in ann.list_sets(ws)] == ["x"]


# --------------------------------------------------------------------------- claiming


def holders(ws: Workspace, set_id: int) -> Counter[int]:
    """item id -> number of live (active or submitted) assignments."""
    with read_session(ws) as s:
        rows = s.exec(
            select(Assignment.item_id)
            .join(AnnotationItem, AnnotationItem.id == Assignment.item_id)
            .where(AnnotationItem.set_id == set_id, Assignment.state.in_(("active", "submitted")))
        ).all()
    return Counter(rows)


def test_concurrent_claims_never_double_hold(ws: Workspace) -> None:
    make_dataset(ws, n=12)
    aset = ann.create_annotation_set(ws, dataset="shapes", name="race", size=12)
    user_ids = [quick_user(ws, f"u{i}") for i in range(8)]
    results: dict[int, list[int | None]] = {u: [] for u in user_ids}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(user_ids))

    def work(uid: int) -> None:
        try:
            barrier.wait()
            for _ in range(3):
                view = ann.next_item(ws, aset.id, uid)
                results[uid].append(view.image_id if view else None)
                if view is not None:
                    ann.submit(ws, aset.id, view.image_id, uid, f"short {uid}", f"long {uid}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(u,)) for u in user_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    claimed = [i for ids in results.values() for i in ids if i is not None]
    assert len(claimed) == 12 == len(set(claimed))  # 8 users x 3 tries, 12 images, none twice
    assert max(holders(ws, aset.id).values()) == 1
    assert sum(ids.count(None) for ids in results.values()) == 24 - 12


@pytest.mark.engines("postgresql")
def test_a_claim_in_flight_does_not_hold_up_another_annotator(ws: Workspace, team: dict[str, int]) -> None:
    """PostgreSQL: while one annotator's claim is still uncommitted, another annotator's claim goes
    past the image being claimed (SKIP LOCKED) and returns at once instead of queueing behind it
    (under one database-wide write lock it would wait, here until lock_timeout failed it)."""
    from backend.annotation.claims import _claim_new
    from backend.annotation.common import DEFAULT_CLAIM_TTL, load_set, lock_annotator

    make_dataset(ws, n=4)
    aset = ann.create_annotation_set(ws, dataset="shapes", name="inflight", size=4)
    with write_session(ws, concurrent=True) as s:  # ann's claim, held open
        lock_annotator(s, team["ann"])
        first = _claim_new(s, load_set(s, aset.id), team["ann"], claim_cutoff(DEFAULT_CLAIM_TTL))
        assert first is not None
        other = ann.next_item(ws, aset.id, team["bob"])  # another connection, while ann's is open
    assert other is not None and other.image_id != first.image_id
    assert sorted(holders(ws, aset.id).values()) == [1, 1]


def test_one_annotator_asking_in_many_tabs_at_once_holds_one_image(
    ws: Workspace, team: dict[str, int]
) -> None:
    """Ten requests of one annotator at once (tabs, double clicks) all get the same image: the
    annotator's requests run in turn, so the second sees the claim of the first."""
    make_dataset(ws, n=12)
    aset = ann.create_annotation_set(ws, dataset="shapes", name="tabs", size=12)
    barrier = threading.Barrier(10)
    got: list[int | None] = []
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            barrier.wait()
            view = ann.next_item(ws, aset.id, team["ann"])
            got.append(view.image_id if view else None)
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(got)) == 1 and None not in got
    assert sum(holders(ws, aset.id).values()) == 1


def test_overlap_two_allows_exactly_two(ws: Workspace, team: dict[str, int]) -> None:
    make_dataset(ws, n=3)
    aset = ann.create_annotation_set(ws, dataset="shapes", name="agree", size=1, overlap=2)
    a = ann.next_item(ws, aset.id, team["ann"])
    b = ann.next_item(ws, aset.id, team["bob"])
    c = ann.next_item(ws, aset.id, team["cat"])
    assert a is not None and b is not None and a.image_id == b.image_id
    assert c is None
    # a submission still counts toward the overlap
    ann.submit(ws, aset.id, a.image_id, team["ann"], "s", "l")
    assert ann.next_item(ws, aset.id, team["cat"]) is None
    assert ann.next_item(ws, aset.id, team["ann"]) is None  # never the same image again


def test_concurrent_claims_overlap_two(ws: Workspace) -> None:
    make_dataset(ws, n=4)
    aset = ann.create_annotation_set(ws, dataset="shapes", name="agree2", size=4, overlap=2)
    user_ids = [quick_user(ws, f"v{i}") for i in range(6)]
    barrier = threading.Barrier(len(user_ids))
    got: list[int | None] = []
    lock = threading.Lock()

    def work(uid: int) -> None:
        barrier.wait()
        view = ann.next_item(ws, aset.id, uid)
        with lock:
            got.append(view.image_id if view else None)

    threads = [threading.Thread(target=work, args=(u,)) for u in user_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    counts = holders(ws, aset.id)
    assert sorted(counts.values()) == [2, 2, 2]
    assert None not in got


def test_next_item_returns_current_claim_and_skips(ws: Workspace, team: dict[str, int]) -> None:
    make_dataset(ws, n=4)
    aset = ann.create_annotation_set(ws, dataset="shapes", name="s", size=3)
    first = ann.next_item(ws, aset.id, team["ann"])
    assert first is not None and first.state == "active" and first.position == 1 and first.total == 3
    assert first.alttext in ([], [ALTS[i] for i in range(5) if ALTS[i]][:1]) or isinstance(
        first.alttext, list
    )
    assert ann.next_item(ws, aset.id, team["ann"]).image_id == first.image_id  # same image until done
    ann.skip(ws, aset.id, first.image_id, team["ann"], reason="blurry")
    second = ann.next_item(ws, aset.id, team["ann"])
    assert second is not None and second.image_id != first.image_id
    # bob can take the skipped image; ann never gets it back
    assert ann.next_item(ws, aset.id, team["bob"]).image_id == first.image_id
    ann.submit(ws, aset.id, second.image_id, team["ann"], "s", "l")
    third = ann.next_item(ws, aset.id, team["ann"])
    assert third is not None and third.image_id not in (first.image_id, second.image_id)
    ann.submit(ws, aset.id, third.image_id, team["ann"], "s", "l")
    assert ann.next_item(ws, aset.id, team["ann"]) is None
    with pytest.raises(AnnotationError, match="already submitted"):
        ann.skip(ws, aset.id, third.image_id, team["ann"])
    with pytest.raises(AnnotationError, match="skipped this image"):
        ann.submit(ws, aset.id, first.image_id, team["ann"], "s", "l")


def test_stale_claim_can_be_reclaimed(ws: Workspace, team: dict[str, int]) -> None:
    make_dataset(ws, n=2)
    aset = ann.create_annotation_set(ws, dataset="shapes", name="ttl", size=1)
    held = ann.next_item(ws, aset.id, team["ann"])
    assert held is not None
    ann.save_draft(ws, held.image_id, team["ann"], "ann's words", "")
    assert ann.next_item(ws, aset.id, team["bob"]) is None  # held and fresh
    # two hours and a bit later, with no activity
    old = utcnow() - timedelta(hours=2, minutes=5)
    with write_session(ws) as s:
        for a in s.exec(select(Assignment)):
            a.updated_at = a.claimed_at = old
            s.add(a)
        from backend.models import Draft

        for d in s.exec(select(Draft)):
            d.updated_at = old
            s.add(d)
    assert ann.next_item(ws, aset.id, team["bob"], ttl=timedelta(hours=3)) is None  # a longer TTL keeps it
    taken = ann.next_item(ws, aset.id, team["bob"])
    assert taken is not None and taken.image_id == held.image_id
    ann.submit(ws, aset.id, taken.image_id, team["bob"], "bob s", "bob l")
    # ann's draft is kept, and her late submit is refused clearly (the text stays a draft)
    with pytest.raises(ClaimLost, match="kept as a draft"):
        ann.submit(ws, aset.id, held.image_id, team["ann"], "ann's words", "and more")
    draft = ann.load_draft(ws, held.image_id, team["ann"])
    assert draft is not None and draft.long_text == "and more"
    assert max(holders(ws, aset.id).values()) == 1


def test_liveness_rule_claim_or_draft_touched_within_ttl(ws: Workspace, team: dict[str, int]) -> None:
    """The one rule, asked directly and through a claim: a claim is live while it OR its draft
    was touched within the TTL; when both are older, it is stale and another annotator gets it."""
    make_dataset(ws, n=2)
    aset = ann.create_annotation_set(ws, dataset="shapes", name="liveness", size=1)
    held = ann.next_item(ws, aset.id, team["ann"])
    assert held is not None
    ann.save_draft(ws, held.image_id, team["ann"], "ann's words", "")
    ttl = ann.DEFAULT_CLAIM_TTL
    now = utcnow()
    old, recent = now - ttl - timedelta(minutes=5), now - ttl + timedelta(minutes=5)

    def touched(claim_at: datetime, draft_at: datetime) -> bool:
        """Set when the claim and the draft were last touched; is the claim live now?"""
        with write_session(ws) as s:
            assignment = s.exec(select(Assignment)).one()
            assignment.updated_at = assignment.claimed_at = claim_at
            s.add(assignment)
            draft = s.exec(select(Draft)).one()
            draft.updated_at = draft_at
            s.add(draft)
        with read_session(ws) as s:
            assignment = s.exec(select(Assignment)).one()
            return still_holds(s, assignment, held.image_id, claim_cutoff(ttl, now))

    assert touched(claim_at=old, draft_at=recent)  # an old claim kept live by a recent draft save
    assert ann.next_item(ws, aset.id, team["bob"]) is None
    assert touched(claim_at=recent, draft_at=old)  # a recent claim with an old draft
    assert ann.next_item(ws, aset.id, team["bob"]) is None
    assert not touched(claim_at=old, draft_at=old)  # both old: stale
    taken = ann.next_item(ws, aset.id, team["bob"])
    assert taken is not None and taken.image_id == held.image_id


# --------------------------------------------------------------------------- drafts and submit


def test_drafts_persist_and_submit_appends_revisions(ws: Workspace, team: dict[str, int]) -> None:
    make_dataset(ws, n=3)
    aset = ann.create_annotation_set(ws, dataset="shapes", name="d", size=2)
    view = ann.next_item(ws, aset.id, team["ann"])
    assert view is not None and view.draft_short is None and view.short_text == ""
    assert ann.save_draft(ws, view.image_id, team["ann"], "", "") is None  # nothing to save yet
    ann.save_draft(ws, view.image_id, team["ann"], "a red", "")
    ann.save_draft(ws, view.image_id, team["ann"], "a red circle", "a red circle on blue")
    # a new process would see the same: drafts live in the database
    from backend.db import dispose_engines

    dispose_engines(ws.db_url)
    again = ann.next_item(ws, aset.id, team["ann"])
    assert again.image_id == view.image_id
    assert (again.draft_short, again.draft_long) == ("a red circle", "a red circle on blue")
    assert ann.resume_item(ws, aset.id, team["ann"]).short_text == "a red circle"

    with pytest.raises(AnnotationError, match="long caption is empty"):
        ann.submit(ws, aset.id, view.image_id, team["ann"], "a red circle", "  ")
    assert ann.load_draft(ws, view.image_id, team["ann"]) is not None
    short, long = ann.submit(ws, aset.id, view.image_id, team["ann"], "a red circle", "a red circle on blue")
    assert short.kind == "human_short" and long.kind == "human_long"
    assert short.status == long.status == CaptionStatus.submitted.value
    assert ann.load_draft(ws, view.image_id, team["ann"]) is None
    # a late autosave of the submitted text does not resurrect a draft
    assert ann.save_draft(ws, view.image_id, team["ann"], "a red circle", "a red circle on blue") is None
    # nor does a page that sends its boxes before they were filled: no empty draft hides the caption
    assert ann.save_draft(ws, view.image_id, team["ann"], "", "") is None
    assert ann.load_draft(ws, view.image_id, team["ann"]) is None
    assert ann.item_view(ws, aset.id, view.image_id, team["ann"]).short_text == "a red circle"

    # go back and revise: a new revision, the old text stays in history
    nxt = ann.next_item(ws, aset.id, team["ann"])
    back = ann.previous_item(ws, aset.id, team["ann"], nxt.image_id)
    assert back is not None and back.image_id == view.image_id
    assert back.submitted_short == "a red circle" and back.status == "submitted"
    ann.save_draft(ws, view.image_id, team["ann"], "a big red circle", "a red circle on blue")
    assert ann.item_view(ws, aset.id, view.image_id, team["ann"]).has_unsubmitted_changes
    short2, long2 = ann.submit(
        ws, aset.id, view.image_id, team["ann"], "a big red circle", "a red circle on blue"
    )
    assert short2.id != short.id and long2.id == long.id  # unchanged long: no spurious revision
    assert [c.text for c in caption_history(ws, short2.id)] == ["a red circle", "a big red circle"]
    with read_session(ws) as s:
        assert current_human_caption(s, view.image_id, "human_short", team["ann"]).text == "a big red circle"
    hist = ann.annotator_history(ws, aset.id, team["ann"])
    assert [(h.image_id, h.state) for h in hist] == [(view.image_id, "submitted"), (nxt.image_id, "active")]
    assert ann.following_item(ws, aset.id, team["ann"], view.image_id).image_id == nxt.image_id
    assert ann.following_item(ws, aset.id, team["ann"], nxt.image_id).image_id == nxt.image_id  # the frontier
    assert ann.previous_item(ws, aset.id, team["ann"], view.image_id) is None
    with pytest.raises(AnnotationError, match="not part of annotation set"):
        ann.item_view(ws, aset.id, 999_999, team["ann"])


# --------------------------------------------------------------------------- review and progress


def test_rejected_comes_back_first_with_comment(ws: Workspace, team: dict[str, int]) -> None:
    make_dataset(ws, n=5)
    aset = ann.create_annotation_set(ws, dataset="shapes", name="r", size=4)
    first = ann.next_item(ws, aset.id, team["ann"])
    ann.submit(ws, aset.id, first.image_id, team["ann"], "a dog", "a dog on grass")
    second = ann.next_item(ws, aset.id, team["ann"])
    ann.submit(ws, aset.id, second.image_id, team["ann"], "a cat", "a cat on a mat")

    queue = ann.review_queue(ws, aset.id)
    assert [(e.image_id, e.annotator) for e in queue] == [(first.image_id, "ann"), (second.image_id, "ann")]
    assert ann.review_queue_count(ws, aset.id) == 2
    assert queue[0].short_text == "a dog" and queue[0].long_text == "a dog on grass"
    assert ann.review_queue(ws, aset.id, limit=1, offset=1)[0].image_id == second.image_id

    with pytest.raises(AnnotationError, match="needs a comment"):
        ann.review(ws, queue[0].caption_ids, team["admin"], approve=False, comment=" ")
    with pytest.raises(AnnotationError, match="not an admin"):
        ann.review(ws, queue[0].caption_ids, team["bob"], approve=True)
    ann.review(
        ws, queue[0].caption_ids, team["admin"], approve=False, comment="Count the dogs: there are two."
    )
    ann.review(ws, queue[1].caption_ids, team["admin"], approve=True)
    assert ann.review_queue_count(ws, aset.id) == 0
    assert ann.review_queue_count(ws, aset.id, status="rejected") == 1
    assert ann.review_queue_count(ws, aset.id, status="approved") == 1

    back = ann.next_item(ws, aset.id, team["ann"])  # rejected first, before any new image
    assert back.image_id == first.image_id
    assert back.status == "rejected" and back.review_comment == "Count the dogs: there are two."
    assert back.short_text == "a dog"
    ann.submit(ws, aset.id, first.image_id, team["ann"], "two dogs", "two dogs on grass")
    fixed = ann.item_view(ws, aset.id, first.image_id, team["ann"])
    assert fixed.status == "submitted" and fixed.review_comment is None
    new = ann.next_item(ws, aset.id, team["ann"])
    assert new.image_id not in (first.image_id, second.image_id)
    # re-submitting approved text unchanged keeps the approval
    ann.submit(ws, aset.id, second.image_id, team["ann"], "a cat", "a cat on a mat")
    assert ann.item_view(ws, aset.id, second.image_id, team["ann"]).status == "approved"


def test_progress_numbers(ws: Workspace, team: dict[str, int]) -> None:
    make_dataset(ws, n=6)
    aset = ann.create_annotation_set(ws, dataset="shapes", name="p", size=4, overlap=2)
    empty = ann.progress(ws, aset.id)
    assert (empty.items, empty.items_done, empty.submissions_target, empty.annotators) == (4, 0, 8, [])

    def do(user: str) -> int:
        view = ann.next_item(ws, aset.id, team[user])
        ann.submit(ws, aset.id, view.image_id, team[user], f"{user} short", f"{user} long")
        return view.image_id

    a1, b1 = do("ann"), do("bob")
    assert a1 == b1  # overlap 2: both caption the first image
    a2 = do("ann")
    skipped = ann.next_item(ws, aset.id, team["bob"])
    ann.skip(ws, aset.id, skipped.image_id, team["bob"])
    ann.next_item(ws, aset.id, team["bob"])  # holds one
    queue = {(e.image_id, e.annotator): e for e in ann.review_queue(ws, aset.id)}
    ann.review(ws, queue[(a1, "ann")].caption_ids, team["admin"], approve=True)
    ann.review(ws, queue[(a1, "bob")].caption_ids, team["admin"], approve=True)
    ann.review(ws, queue[(a2, "ann")].caption_ids, team["admin"], approve=False, comment="too short")

    p = ann.progress(ws, aset.id)
    rows = {r.annotator: r for r in p.annotators}
    assert (rows["ann"].submitted, rows["ann"].approved, rows["ann"].rejected, rows["ann"].skipped) == (
        2,
        1,
        1,
        0,
    )
    assert (rows["bob"].submitted, rows["bob"].approved, rows["bob"].skipped, rows["bob"].active) == (
        1,
        1,
        1,
        1,
    )
    assert rows["ann"].pending_review == 0 and rows["ann"].active == 0
    assert p.items == 4 and p.overlap == 2
    assert p.items_done == 1 and p.items_approved == 1
    assert p.submissions == 3 and p.submissions_target == 8
    assert p.fraction_done == 0.25
    assert ann.default_set_id(ws, team["bob"]) == aset.id


def test_resume_without_claim_takes_nothing_new(ws: Workspace, team: dict[str, int]) -> None:
    """An admin opening the page to review must not hold an image annotators then cannot get."""
    make_dataset(ws, n=2)
    aset = ann.create_annotation_set(ws, dataset="shapes", name="one-each", size=2, created_by=team["admin"])
    assert ann.resume_item(ws, aset.id, team["admin"], claim=False) is None
    first = ann.next_item(ws, aset.id, team["ann"])
    second = ann.next_item(ws, aset.id, team["bob"])
    assert first is not None and second is not None and first.image_id != second.image_id
    # what an annotator already holds is still returned without a new claim
    held = ann.resume_item(ws, aset.id, team["ann"], claim=False)
    assert held is not None and held.image_id == first.image_id
