"""Arena backend on a real SQLite workspace: campaigns, scheduling, tickets, votes, CSV, results.

Generated datasets are built here as the ``generate`` job writes them (Image rows with
``meta["generated"]``, a t2i Artifact with its caption mix), so no model is needed.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import math
import threading
from collections import Counter
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from PIL import Image as PILImage
from sqlalchemy import text
from sqlmodel import SQLModel, func, select

from backend import arena
from backend.arena import ArenaError, RowErrors, TicketError
from backend.arena.models import ArenaTicket, EvalPair, Judgment
from backend.captions import add_caption
from backend.datasets import get_or_create_dataset
from backend.db import engines, read_session, write_session
from backend.jobs.models import Artifact
from backend.models import Dataset, Image, User
from backend.users import add_user, verify_login
from backend.workspace import Workspace

pytestmark = pytest.mark.engines("sqlite", "postgresql")

MIX_A = {"recap_long": 0.5, "recap_short": 0.3, "alttext": 0.2}


def make_generated(
    ws: Workspace,
    name: str,
    checkpoints: dict[str, list[str]],
    prompts: int = 4,
    seeds: tuple[int, ...] = (0, 1),
) -> dict[str, int]:
    """A dataset of generated images: ``checkpoints`` maps label -> regimes. Returns artifact ids."""
    artifacts: dict[str, int] = {}
    with write_session(ws) as s:
        dataset = get_or_create_dataset(s, name)
        for n, (label, regimes) in enumerate(checkpoints.items()):
            art = Artifact(
                kind="t2i",
                name=label,
                path=f"runs/{n}/pipeline",
                meta={
                    "mix": MIX_A if n == 0 else {"alttext": 1.0},
                    "usage": {"recap_long": 5},
                    "captioners": {"recap_long": [f"captioner-run-{n}"]},
                    "caption_condition": "RECAP Mix" if n == 0 else "alt-text only",
                },
            )
            s.add(art)
            s.flush()
            artifacts[label] = art.id
            for regime, p, seed in itertools.product(regimes, range(prompts), seeds):
                s.add(
                    Image(
                        dataset_id=dataset.id,
                        sha256=f"{label}-{regime}-{p}-{seed}".encode().hex().ljust(64, "0")[:64],
                        ext="png",
                        width=8,
                        height=8,
                        nbytes=10,
                        original_key=f"{label}/{regime}/{p:05d}_seed{seed}.png",
                        meta={
                            "generated": {
                                "run_id": None,
                                "checkpoint": label,
                                "artifact_id": art.id,
                                "prompt": f"prompt number {p}",
                                "prompt_index": p,
                                "category": "animals" if p % 2 else "objects",
                                "seed": seed,
                                "regime": regime,
                            }
                        },
                    )
                )
    return artifacts


def users(ws: Workspace, n: int, prefix: str = "ann") -> list[int]:
    return [add_user(ws, f"{prefix}{i}", "annotator", "pw-123456789").id for i in range(n)]


def judgments(ws: Workspace) -> list[Judgment]:
    with read_session(ws) as s:
        return list(s.exec(select(Judgment)))


def vote_all(
    ws: Workspace, campaign: str, annotator: int, choose=lambda t: "left", limit: int = 10_000
) -> int:  # noqa: ANN001
    n = 0
    while n < limit and (ticket := arena.next_ticket(ws, campaign, annotator)) is not None:
        arena.submit_vote(ws, ticket.token, annotator, choose(ticket), 1200)
        n += 1
    return n


# --------------------------------------------------------------------------- schema


def test_migrations_match_the_models(ws: Workspace) -> None:
    import backend.arena.models  # noqa: F401
    import backend.evaluation  # noqa: F401
    import backend.jobs.models  # noqa: F401
    import backend.scores  # noqa: F401

    with engines(ws.db_url)[0].connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []


# --------------------------------------------------------------------------- campaigns


def test_campaign_from_generated_datasets_has_systems_pairs_and_training_meta(ws: Workspace) -> None:
    arts = make_generated(ws, "gen1", {"ckpt-a": ["raw", "upsampled"], "ckpt-b": ["raw"]})
    make_generated(ws, "gen2", {"ckpt-c": ["raw"]})
    campaign = arena.create_campaign_from_generated(
        ws, "gen", ["gen1", "gen2"], ["matches the prompt", "image quality"], target_per_pair=2
    )
    (summary,) = arena.list_campaigns(ws)
    assert summary.name == "gen" and summary.systems == 4
    # 4 prompts x 2 seeds, every pair of the 4 systems
    assert summary.pairs == 8 * 6 and summary.gold_pairs == 0
    assert summary.total == 8 * 6 * 2 * 2
    results = arena.campaign_results(ws, campaign.name, bootstrap_rounds=5)
    assert set(results.systems) == {"ckpt-a", "ckpt-a [upsampled]", "ckpt-b", "ckpt-c"}
    a = results.systems["ckpt-a [upsampled]"]
    assert a["mix"] == MIX_A and a["caption_condition"] == "RECAP Mix" and a["regime"] == "upsampled"
    assert a["artifact_id"] == arts["ckpt-a"] and a["captioner"] == "captioner-run-0"
    assert results.systems["ckpt-b"]["caption_condition"] == "alt-text only"
    with pytest.raises(ArenaError, match="already exists"):
        arena.create_campaign_from_generated(ws, "gen", ["gen1"], ["x"])
    with pytest.raises(ArenaError, match="no dataset named 'nope'"):
        arena.create_campaign_from_generated(ws, "g2", ["nope"], ["x"])


def _png(path: Path, colour: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.new("RGB", (8, 8), colour).save(path)


def test_campaign_from_folders_imports_images_and_refuses_bad_rows_with_line_numbers(
    ws: Workspace, tmp_path: Path
) -> None:
    root = tmp_path / "outs"
    rows = []
    for si, system in enumerate(("sysA", "sysB")):
        for p in range(3):
            _png(root / system / f"{p}.png", (si * 100, p * 50, 0))
            rows.append([system, f"{p}.png", f"prompt {p}", "cat", "", "DALL-E 3 mix" if si else ""])
    good = tmp_path / "prompts.csv"
    with good.open("w", newline="") as fh:
        csv.writer(fh).writerows(
            [["system", "file", "prompt", "category", "seed", "caption_condition"], *rows]
        )
    # a corrupt image, a missing file, a bad seed and an escaping path: all refused, nothing written
    (root / "sysA" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    bad = tmp_path / "bad.csv"
    bad.write_text(
        good.read_text()
        + "sysA,broken.png,prompt 9,,,\n"
        + "sysB,missing.png,prompt 9,,,\n"
        + "sysB,0.png,prompt 8,,seven,\n"
        + "sysB,../sysA/0.png,prompt 7,,,\n"
    )
    with pytest.raises(RowErrors) as info:
        arena.create_campaign_from_folders(ws, "folders", root, bad, ["matches the prompt"])
    message = str(info.value)
    for line, what in ((8, "corrupt"), (9, "not found"), (10, "seed 'seven'"), (11, "..")):
        assert f"line {line}:" in message and what in message, message
    with read_session(ws) as s:
        assert s.exec(select(func.count()).select_from(Image)).one() == 0
        assert s.exec(select(Dataset)).first() is None
    assert arena.list_campaigns(ws) == []
    missing_col = tmp_path / "nocol.csv"
    missing_col.write_text("system,file\nsysA,0.png\n")
    with pytest.raises(ArenaError, match="missing column\\(s\\) prompt"):
        arena.create_campaign_from_folders(ws, "folders", root, missing_col, ["x"])

    campaign = arena.create_campaign_from_folders(
        ws, "folders", root, good, ["matches the prompt"], gold_share=0.5
    )
    (summary,) = arena.list_campaigns(ws)
    assert summary.pairs == 3 and summary.gold_pairs == 2
    with read_session(ws) as s:
        dataset = s.exec(select(Dataset).where(Dataset.name == "arena-folders")).one()
        assert (
            s.exec(select(func.count()).select_from(Image).where(Image.dataset_id == dataset.id)).one() == 6
        )
    results = arena.campaign_results(ws, campaign.name, bootstrap_rounds=5)
    assert results.systems["sysB"]["caption_condition"] == "DALL-E 3 mix"
    assert results.systems["sysA"]["caption_condition"] is None
    ann = users(ws, 1)[0]
    ticket = arena.next_ticket(ws, "folders", ann)
    assert ticket is not None and ticket.left_image.exists() and ticket.right_image.exists()


def make_captioned(ws: Workspace, n: int = 6) -> None:
    with write_session(ws) as s:
        dataset = get_or_create_dataset(s, "photos")
        for i in range(n):
            im = Image(
                dataset_id=dataset.id, sha256=f"{i:064x}", ext="jpg", width=4, height=4, nbytes=4,
                original_key=f"img{i}.jpg",
            )  # fmt: skip
            s.add(im)
            s.flush()
            add_caption(s, im.id, "alttext", f"alt text of {i}")
            add_caption(s, im.id, "recap_long", f"a long recaption of image {i}")
            if i % 2:
                add_caption(s, im.id, "recap_short", f"short {i}")


def test_gold_pairs_only_while_regular_work_is_left(ws: Workspace) -> None:
    """Gold checks attention during real judging: once an annotator has no regular pair left,
    no gold pair is handed out to make up their gold share (before, one came last)."""
    make_captioned(ws)
    arena.create_caption_campaign(
        ws, "caps", "photos", ["alttext", "recap_long", "recap_short"], gold_share=0.3, repeat_share=0,
        target_per_pair=1,
    )  # fmt: skip
    first, second = users(ws, 2)
    vote_all(ws, "caps", first, limit=9)
    vote_all(ws, "caps", second)  # takes the regular pairs the first left, then runs out
    with read_session(ws) as s:
        rows = s.exec(
            select(Judgment.annotator_id, EvalPair.is_gold)
            .join(EvalPair, EvalPair.id == Judgment.pair_id)
            .order_by(Judgment.id)
        ).all()
    for annotator in (first, second):
        kinds = "".join("G" if gold else "r" for who, gold in rows if who == annotator)
        assert "G" in kinds and kinds.endswith("r"), kinds
    assert "".join("G" if g else "r" for who, g in rows if who == second) == "rrrGrr"


def test_caption_campaign_compares_kinds_with_gold_decoys(ws: Workspace) -> None:
    make_captioned(ws)
    with pytest.raises(ArenaError, match="no usable caption of kind\\(s\\) human_long"):
        arena.create_caption_campaign(ws, "caps", "photos", ["alttext", "human_long"])
    campaign = arena.create_caption_campaign(
        ws, "caps", "photos", ["alttext", "recap_long", "recap_short"], gold_share=0.3, repeat_share=0
    )
    (summary,) = arena.list_campaigns(ws)
    # 3 images with all three kinds (3 pairs each), 3 with two (1 pair each)
    assert campaign.kind == "caption" and summary.pairs == 12 and summary.gold_pairs == 4
    ann = users(ws, 1)[0]

    def choose(ticket: arena.Ticket) -> str:
        # a careful annotator: picks the caption that is about the image shown (its number)
        assert ticket.left_text and ticket.right_text and ticket.left_image == ticket.right_image
        shown = int(ticket.left_image.stem, 16)
        return "left" if ticket.left_text.endswith(f" {shown}") else "right"

    n = vote_all(ws, "caps", ann, choose)
    assert n == 12 + 4  # every regular pair once, and each gold pair while gold stays <= 30 %
    results = arena.campaign_results(ws, "caps", bootstrap_rounds=5)
    (gold,) = results.gold_accuracy.to_dict(orient="records")
    assert gold["n_gold"] == 4 and gold["accuracy"] == 1.0
    assert {g["caption_condition"] for g in results.by_condition} == {"alttext", "recap_long", "recap_short"}


# --------------------------------------------------------------------------- scheduling and tickets


def test_scheduling_never_repeats_a_pair_and_balances_votes(ws: Workspace) -> None:
    make_generated(ws, "gen", {"a": ["raw"], "b": ["raw"], "c": ["raw"]}, prompts=5, seeds=(0,))
    arena.create_campaign_from_generated(ws, "bal", ["gen"], ["q1", "q2"], target_per_pair=3, repeat_share=0)
    anns = users(ws, 4)
    with read_session(ws) as s:
        all_slots = {(p.id, c) for p in s.exec(select(EvalPair)) for c in ("q1", "q2")}
    slots = 15 * 2
    assert len(all_slots) == slots
    # round-robin annotators, half the work: every vote goes to a least-voted slot among those
    # the annotator has not judged yet (a greedy scheduler cannot promise more: when an annotator
    # has judged every least-voted slot, they must take a busier one)
    for _ in range(15):
        for a in anns:
            before = Counter((j.pair_id, j.criterion) for j in judgments(ws))
            mine = {(j.pair_id, j.criterion) for j in judgments(ws) if j.annotator_id == a}
            t = arena.next_ticket(ws, "bal", a)
            arena.submit_vote(ws, t.token, a, "tie", 500)
            (new,) = [
                j for j in judgments(ws) if (j.pair_id, j.criterion) not in mine and j.annotator_id == a
            ]
            slot = (new.pair_id, new.criterion)
            assert before[slot] == min(before[k] for k in all_slots - mine), (slot, before)
    for a in anns:
        vote_all(ws, "bal", a)
    rows = judgments(ws)
    keys = [(j.pair_id, j.annotator_id, j.criterion) for j in rows]
    assert len(keys) == len(set(keys))  # no annotator saw a pair twice under one criterion
    per_slot = Counter((j.pair_id, j.criterion) for j in rows)
    assert set(per_slot.values()) == {3} and len(per_slot) == slots
    assert arena.next_ticket(ws, "bal", anns[0]) is None
    (summary,) = arena.list_campaigns(ws)
    assert summary.done == summary.total == 90


def test_planned_repeats_swap_sides_and_only_they_repeat(ws: Workspace) -> None:
    make_generated(ws, "gen", {"a": ["raw"], "b": ["raw"], "c": ["raw"]}, prompts=8, seeds=(0,))
    arena.create_campaign_from_generated(ws, "rep", ["gen"], ["q"], target_per_pair=1, repeat_share=0.25)
    (ann,) = users(ws, 1)
    vote_all(ws, "rep", ann)
    rows = judgments(ws)
    first = {j.pair_id: j for j in rows if not j.is_repeat}
    repeats = [j for j in rows if j.is_repeat]
    assert len(first) == 24 and len(repeats) == 6  # floor(0.25 * 24)
    for j in repeats:
        assert j.left_image_id != first[j.pair_id].left_image_id  # shown the other way round
    results = arena.campaign_results(ws, "rep", bootstrap_rounds=5)
    (row,) = results.consistency.to_dict(orient="records")
    assert row["n_repeats"] == 6 and row["n_swapped"] == 6 and row["rate"] == 0.0  # always "left"


def test_tickets_randomise_sides_record_them_and_reveal_no_system(ws: Workspace) -> None:
    make_generated(ws, "gen", {"alpha-ckpt": ["raw"], "beta-ckpt": ["raw"]}, prompts=100, seeds=(0,))
    arena.create_campaign_from_generated(ws, "sides", ["gen"], ["q"], target_per_pair=1, repeat_share=0)
    (ann,) = users(ws, 1)
    ticket = arena.next_ticket(ws, "sides", ann)
    assert arena.next_ticket(ws, "sides", ann) == ticket  # re-asking returns the open ticket
    values = [str(v) for v in dataclasses.asdict(ticket).values()]
    assert not any("alpha" in v or "beta" in v for v in values), values
    assert {f.name for f in dataclasses.fields(ticket)} >= {"token", "prompt", "left_image", "right_image"}
    assert not any(f.name.endswith("_id") or "system" in f.name for f in dataclasses.fields(ticket))
    assert len(ticket.token) >= 20
    vote_all(ws, "sides", ann)
    with read_session(ws) as s:
        tickets = {t.id: t for t in s.exec(select(ArenaTicket))}
        rows = list(s.exec(select(Judgment)))
        from backend.arena.models import EvalPair

        pairs = {p.id: p for p in s.exec(select(EvalPair))}
    assert len(rows) == 100
    left_is_a = sum(j.left_image_id == pairs[j.pair_id].a_id for j in rows)
    assert 25 <= left_is_a <= 75  # 100 fair coin flips
    for j in rows:
        assert j.left_image_id == tickets[j.ticket_id].left_id
    # the receipt reveals the systems only after the vote; every left/right matches the record
    votes = arena.campaign_votes(ws, "sides")
    assert set(votes["model_a"]) == {"alpha-ckpt", "beta-ckpt"} and (votes["outcome"] == "a").all()


def test_votes_are_idempotent_and_checked(ws: Workspace) -> None:
    make_generated(ws, "gen", {"a": ["raw"], "b": ["raw"]}, prompts=3, seeds=(0,))
    arena.create_campaign_from_generated(ws, "idem", ["gen"], ["q"], target_per_pair=2, repeat_share=0)
    ann, other = users(ws, 2)
    t = arena.next_ticket(ws, "idem", ann)
    with pytest.raises(ArenaError, match="choice 'middle'"):
        arena.submit_vote(ws, t.token, ann, "middle", 10)
    with pytest.raises(ArenaError, match="elapsed_ms -5"):
        arena.submit_vote(ws, t.token, ann, "left", -5)
    with pytest.raises(TicketError, match="another annotator"):
        arena.submit_vote(ws, t.token, other, "left", 10)
    first = arena.submit_vote(ws, t.token, ann, "right", 900)
    again = arena.submit_vote(ws, t.token, ann, "left", 950)
    assert not first.duplicate and again.duplicate
    assert "'a'" not in repr(first) and "'b'" not in repr(first)  # a receipt names no system
    (j,) = judgments(ws)
    assert j.choice == "right" and j.elapsed_ms == 900 and j.server_ms is not None and j.server_ms > 0
    with pytest.raises(TicketError, match="unknown ticket"):
        arena.submit_vote(ws, "forged-token", ann, "left", 10)
    # skip: the pair is not offered again to this annotator; a skipped ticket takes no vote
    t2 = arena.next_ticket(ws, "idem", ann)
    arena.skip_ticket(ws, t2.token, ann)
    arena.skip_ticket(ws, t2.token, ann)  # idempotent
    with pytest.raises(TicketError, match="skipped"):
        arena.submit_vote(ws, t2.token, ann, "left", 10)
    t3 = arena.next_ticket(ws, "idem", ann)
    assert t3 is not None and t3.token != t2.token
    arena.submit_vote(ws, t3.token, ann, "tie", 10, flags=["hallucination"])
    assert arena.next_ticket(ws, "idem", ann) is None  # 3 pairs: one voted, one skipped, one voted
    arena.close_campaign(ws, "idem")
    assert arena.next_ticket(ws, "idem", other) is None


def test_ten_concurrent_voters_lose_and_duplicate_nothing(ws: Workspace) -> None:
    make_generated(
        ws, "gen", {"a": ["raw"], "b": ["raw"], "c": ["raw"], "d": ["raw"]}, prompts=10, seeds=(0,)
    )
    arena.create_campaign_from_generated(ws, "race", ["gen"], ["q"], target_per_pair=5, repeat_share=0.1)
    anns = users(ws, 10)
    acknowledged: Counter[int] = Counter()
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(len(anns))

    def voter(a: int) -> None:
        start.wait()
        try:
            for _ in range(10):
                t = arena.next_ticket(ws, "race", a)
                if t is None:
                    break
                receipt = arena.submit_vote(ws, t.token, a, "left", 100)
                arena.submit_vote(ws, t.token, a, "left", 100)  # a double click
                assert not receipt.duplicate
                with lock:
                    acknowledged[a] += 1
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=voter, args=(a,)) for a in anns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = judgments(ws)
    assert Counter(j.annotator_id for j in rows) == acknowledged
    assert sum(acknowledged.values()) == 100
    assert len({j.ticket_id for j in rows}) == len(rows)
    assert len({(j.pair_id, j.annotator_id, j.criterion, j.is_repeat) for j in rows}) == len(rows)
    assert max(Counter(j.pair_id for j in rows if not j.is_repeat).values()) <= 5


# --------------------------------------------------------------------------- CSV and results


VOTES_CSV = """prompt,left,right,winner,annotator,criterion
a red cube,sysA,sysB,left,alice,matches the prompt
a red cube,sysB,sysA,right,bob,matches the prompt
a blue ball,sysA,sysC,left,alice,matches the prompt
a blue ball,sysC,sysB,tie,bob,matches the prompt
a green tree,sysB,sysC,both_bad,alice,matches the prompt
a green tree,sysA,sysC,left,carol,matches the prompt
"""


def test_import_votes_creates_campaign_and_refuses_malformed_rows(ws: Workspace, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(
        VOTES_CSV
        + "a cat,sysA,sysB,lft,alice,matches the prompt\n"
        + "a cat,sysA,sysA,left,alice,matches the prompt\n"
        + "a cat,sysA,sysB,left,,matches the prompt\n"
    )
    with pytest.raises(RowErrors) as info:
        arena.import_votes_csv(ws, "imported", bad)
    message = str(info.value)
    assert "line 8: winner 'lft'" in message and "line 9: left and right are the same" in message
    assert "line 10: empty annotator" in message and "nothing was written" in message
    doubled = tmp_path / "doubled.csv"
    doubled.write_text(VOTES_CSV + VOTES_CSV.split("\n", 1)[1].splitlines()[2] + "\n")
    with pytest.raises(RowErrors) as info:
        arena.import_votes_csv(ws, "imported", doubled)
    assert "line 8: repeats line 4 exactly" in str(info.value)
    assert arena.list_campaigns(ws) == [] and judgments(ws) == []
    good = tmp_path / "good.csv"
    good.write_text(VOTES_CSV)
    report = arena.import_votes_csv(ws, "imported", good)
    assert report.created_campaign and report.votes == 6
    assert sorted(report.systems_created) == ["sysA", "sysB", "sysC"]
    assert sorted(report.annotators_created) == ["alice", "bob", "carol"]
    with read_session(ws) as s:
        alice = s.exec(select(User).where(User.name == "alice")).one()
    assert not alice.active and not verify_login(ws, "alice", "")  # no login for imported names
    results = arena.campaign_results(ws, "imported", bootstrap_rounds=20)
    table = results.ratings.set_index("system")
    # sysA won all four of its votes: still a finite rating, ranked first
    assert math.isfinite(table.loc["sysA", "rating"]) and table.loc["sysA", "wins"] == 4
    assert table.loc["sysA", "losses"] == 0 and table["rating"].idxmax() == "sysA"
    assert table.loc["sysB", "ties"] == 2  # one tie + one both_bad
    # an imported campaign has no images to show: nothing is ever handed out for judging
    assert arena.next_ticket(ws, "imported", users(ws, 1)[0]) is None


def test_export_import_round_trip(ws: Workspace, tmp_path: Path) -> None:
    make_generated(ws, "gen", {"a": ["raw"], "b": ["raw"], "c": ["raw"]}, prompts=6, seeds=(0, 1))
    arena.create_campaign_from_generated(ws, "orig", ["gen"], ["q"], target_per_pair=2, gold_share=0.2)
    for a in users(ws, 2):
        vote_all(
            ws, "orig", a, choose=lambda t: "left" if t.prompt.endswith(("1", "3")) else "right", limit=20
        )
    first = tmp_path / "first.csv"
    n = arena.export_votes_csv(ws, "orig", first)
    assert n == 40
    rows = list(csv.DictReader(first.open()))
    assert {r["is_gold"] for r in rows} == {"0", "1"}  # gold pairs were asked too
    arena.import_votes_csv(ws, "copy", first)
    second = tmp_path / "second.csv"
    arena.export_votes_csv(ws, "copy", second)

    def comparable(path: Path) -> list[dict[str, str]]:
        return [
            {k: v for k, v in r.items() if k != "source"}
            for r in csv.DictReader(io.StringIO(path.read_text()))
        ]

    assert comparable(first) == comparable(second)
    a, b = (
        arena.campaign_results(ws, "orig", bootstrap_rounds=10),
        arena.campaign_results(ws, "copy", bootstrap_rounds=10),
    )
    assert a.ratings["rating"].round(6).tolist() == b.ratings["rating"].round(6).tolist()
    assert a.gold_accuracy.to_dict() == b.gold_accuracy.to_dict()
    # the same timed votes again (into the copy, or back into the original) are refused, not doubled
    for campaign in ("copy", "orig"):
        with pytest.raises(RowErrors) as again:
            arena.import_votes_csv(ws, campaign, first)
        assert "line 2: this vote is already in campaign" in str(again.value)
        assert "40 bad row(s), nothing was written" in str(again.value)
    assert arena.export_votes_csv(ws, "copy", tmp_path / "third.csv") == 40
    assert arena.export_votes_csv(ws, "orig", tmp_path / "third.csv") == 40
    out = arena.export_results_csv(ws, "orig", tmp_path / "results.csv")
    header = (tmp_path / "results.csv").read_text().splitlines()[0]
    assert (
        header.startswith("system,rating,lower,upper,rank,wins,losses,ties") and "caption_condition" in header
    )
    assert out.to_json()["systems"]["a"]["caption_condition"] == "RECAP Mix"


def test_datasets_under_open_campaigns_are_blinded_until_closed(ws: Workspace) -> None:
    """Review hides these from annotators: a generated image's key names its checkpoint."""
    make_generated(ws, "gen-blind", {"a": ["raw"], "b": ["raw"]}, prompts=2, seeds=(0,))
    make_generated(ws, "gen-free", {"a": ["raw"], "b": ["raw"]}, prompts=2, seeds=(0,))
    assert arena.blinded_datasets(ws) == set()
    arena.create_campaign_from_generated(ws, "blind", ["gen-blind"], ["q"])
    assert arena.blinded_datasets(ws) == {"gen-blind"}
    arena.close_campaign(ws, "blind")
    assert arena.blinded_datasets(ws) == set()


# --------------------------------------------------------------------------- blind for the whole campaign


def walk_and_count_named(ws: Workspace, campaign: str, annotator: int) -> tuple[int, int, int]:
    """Vote through the whole campaign as one annotator and count what they could know beforehand.

    The annotator links a picture to every earlier showing of it (by eye, or by bytes: here by
    the image file shown), and learns a system for it from anything the API hands them: the vote
    receipt and, after every vote, a reveal if one is given. Returns (pairs judged, pairs whose
    *both* systems they could name before voting, pairs with at least one side nameable).
    """
    with read_session(ws) as s:
        names = {n for (n,) in s.exec(text("SELECT name FROM arenasystem")).all()}
    learnt: dict[Path, str] = {}
    shown: list[tuple[Path, Path]] = []
    both = one = 0
    while (ticket := arena.next_ticket(ws, campaign, annotator)) is not None:
        left, right = ticket.left_image, ticket.right_image
        assert left is not None and right is not None
        known = (left in learnt) + (right in learnt)
        both += known == 2
        one += known >= 1
        receipt = arena.submit_vote(ws, ticket.token, annotator, "left", 700)
        shown.append((left, right))
        for field_name, value in dataclasses.asdict(receipt).items():  # whatever the receipt tells
            if isinstance(value, str) and value in names:
                learnt[left if "left" in field_name else right] = value
        told = arena.reveal_votes(ws, campaign, annotator)
        for (l_path, r_path), vote in zip(shown, told.votes if told else [], strict=False):
            learnt[l_path], learnt[r_path] = vote.left_system, vote.right_system
    return len(shown), both, one


@pytest.mark.parametrize("gold_share", [0.0, 0.3])
def test_no_system_can_be_named_before_its_vote_whatever_was_revealed(
    ws: Workspace, gold_share: float
) -> None:
    """The issue's reproduction: 3 systems, 2 prompts, 2 criteria, repeat share 0.5, reveal on.

    Before, each receipt named the two systems, and since a picture recurs in other pairs, under
    the other criterion, as a swapped repeat and in gold pairs, an annotator could name both
    systems before voting in 13 of 16 pairs. Now nothing is told until nothing can follow.
    """
    make_generated(
        ws, "gen", {"a-ckpt": ["raw"], "b-ckpt": ["raw"], "c-ckpt": ["raw"]}, prompts=2, seeds=(0,)
    )
    arena.create_campaign_from_generated(
        ws, "leak", ["gen"], ["matches the prompt", "image quality"],
        target_per_pair=1, repeat_share=0.5, gold_share=gold_share,
    )  # fmt: skip
    (ann,) = users(ws, 1)
    judged, both, one = walk_and_count_named(ws, "leak", ann)
    rows = judgments(ws)
    assert judged == len(rows) and sum(j.is_repeat for j in rows) >= 3  # repeats did recur
    with read_session(ws) as s:
        gold_votes = s.exec(
            text("SELECT count(*) FROM judgment j JOIN evalpair p ON p.id = j.pair_id WHERE p.is_gold = TRUE")
        ).one()[0]
    assert (gold_votes > 0) == (gold_share > 0)
    assert (both, one) == (0, 0), f"{both} of {judged} pairs nameable before the vote ({one} with one side)"
    # nothing was left, so the reveal is given now: every vote with the systems it was between
    told = arena.reveal_votes(ws, "leak", ann)
    assert told is not None and told.reason == "finished" and len(told.votes) == judged
    with read_session(ws) as s:
        shown_left = s.exec(
            text(
                "SELECT s.name FROM judgment j JOIN evalimage e ON e.id = j.left_image_id "
                "JOIN arenasystem s ON s.id = e.system_id ORDER BY j.id"
            )
        ).all()
    assert [v.left_system for v in told.votes] == [r[0] for r in shown_left]
    assert all(v.left_system == v.right_system for v in told.votes if v.is_gold)  # gold: one system
    assert arena.next_ticket(ws, "leak", ann) is None


def test_reveal_waits_until_nothing_can_follow_then_ends_judging(ws: Workspace) -> None:
    make_generated(ws, "gen", {"a": ["raw"], "b": ["raw"], "c": ["raw"]}, prompts=3, seeds=(0,))
    arena.create_campaign_from_generated(
        ws, "rev", ["gen"], ["q1", "q2"], target_per_pair=2, repeat_share=0.2
    )
    ann, other = users(ws, 2)
    vote_all(ws, "rev", ann, limit=4)
    assert arena.reveal_votes(ws, "rev", ann) is None  # work is left for them: nothing is told
    held = arena.next_ticket(ws, "rev", ann)
    assert arena.reveal_votes(ws, "rev", ann) is None  # a pair on screen: still nothing
    told = arena.reveal_votes(ws, "rev", ann, finish=True)  # "Finish": ends their judging
    assert told is not None and told.reason == "ended" and len(told.votes) == 4
    assert all({v.left_system, v.right_system} <= {"a", "b", "c"} for v in told.votes)
    assert sum(shown for _, shown in told.preferred_counts().values()) == 8
    assert arena.reveal_votes(ws, "rev", ann) == told  # asking again: the same reveal
    # from now on they are not blind here: no pair, and no vote, not even on the pair they held
    assert arena.next_ticket(ws, "rev", ann) is None
    with pytest.raises(TicketError, match="skipped|seen which systems"):
        arena.submit_vote(ws, held.token, ann, "left", 500)
    assert len([j for j in judgments(ws) if j.annotator_id == ann]) == 4
    # another annotator is untouched: pairs go on, nothing told until they finish
    assert vote_all(ws, "rev", other) > 0
    assert arena.reveal_votes(ws, "rev", other).reason == "finished"
    with read_session(ws) as s:
        recorded = s.exec(text("SELECT annotator_id, reason FROM arenareveal ORDER BY id")).all()
    assert [tuple(r) for r in recorded] == [(ann, "ended"), (other, "finished")]


def test_closing_is_final_and_refuses_votes_on_pairs_already_shown(ws: Workspace) -> None:
    """Closing unblinds the datasets at once, so a pair still on screen must not take a vote."""
    make_generated(ws, "gen-close", {"a": ["raw"], "b": ["raw"]}, prompts=3, seeds=(0,))
    arena.create_campaign_from_generated(ws, "shut", ["gen-close"], ["q"], target_per_pair=2, repeat_share=0)
    ann, other = users(ws, 2)
    on_screen = arena.next_ticket(ws, "shut", ann)
    assert arena.blinded_datasets(ws) == {"gen-close"}
    arena.close_campaign(ws, "shut")
    assert arena.blinded_datasets(ws) == set()
    with pytest.raises(TicketError, match="closed"):
        arena.submit_vote(ws, on_screen.token, ann, "left", 500)
    assert judgments(ws) == []
    assert arena.next_ticket(ws, "shut", ann) is None  # the open ticket is not shown again either
    assert arena.next_ticket(ws, "shut", other) is None
    with pytest.raises(arena.CampaignClosedForGood, match="cannot be reopened"):
        arena.close_campaign(ws, "shut", reopen=True)
    assert arena.get_campaign(ws, "shut").status == "closed"
    assert arena.reveal_votes(ws, "shut", ann).reason == "closed"  # safe now: nothing can follow


def test_every_image_of_a_campaign_is_shown_on_one_canvas(ws: Workspace, tmp_path: Path) -> None:
    """A system's native size or aspect ratio must not tell it apart."""
    from backend.arena.canvas import canvas_for

    assert canvas_for([(512, 512), (1024, 1024)]) == (1024, 1024)
    assert canvas_for([(768, 512), (1536, 1024)]) == (1024, 683)  # one shared aspect is kept
    assert canvas_for([(512, 768)]) == (512, 768)
    assert canvas_for([(96, 96), (128, 96), (80, 120)]) == (128, 128)  # mixed aspects: square
    assert canvas_for([(4000, 3000), (300, 300)]) == (1024, 1024)
    assert canvas_for([]) is None
    root = tmp_path / "outs"
    rows = ["system,file,prompt"]
    for system, size in (("wide", (128, 96)), ("tall", (80, 120)), ("square", (96, 96))):
        for p in range(2):
            (root / system).mkdir(parents=True, exist_ok=True)
            PILImage.new("RGB", size, (p * 90, 40, 40)).save(root / system / f"{p}.png")
            rows.append(f"{system},{p}.png,prompt {p}")
    (tmp_path / "prompts.csv").write_text("\n".join(rows) + "\n")
    arena.create_campaign_from_folders(ws, "shapes", root, tmp_path / "prompts.csv", ["q"], target_per_pair=1)
    (ann,) = users(ws, 1)
    canvases = set()
    while (ticket := arena.next_ticket(ws, "shapes", ann)) is not None:
        canvases.add(ticket.canvas)
        arena.submit_vote(ws, ticket.token, ann, "tie", 300)
    assert canvases == {(128, 128)}
