"""Verdict campaigns (absolute human verdicts) on a real SQLite workspace, and their CLI.

One image and its prompt at a time, faithful or not, with the prompt's required elements as
"missing" ticks; success rates per system with cluster-bootstrap intervals over prompts, RECAP's
relative improvement against a baseline, agreement between annotators. Blind by the pairwise
arena's rules. Generated datasets are built as in ``test_arena_backend`` (no model needed).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import text

from backend import arena, stats
from backend.arena import ArenaError, RowErrors, TicketError
from backend.arena.elements import load_elements
from backend.compositional.prompts import ObjectSpec, Relation, StructuredPrompt
from backend.db import read_session
from backend.workspace import Workspace
from tests.ingest_fixtures import stored_json
from tests.test_arena_backend import judgments, make_generated, users
from tests.test_arena_cli import cli, last_json

pytestmark = [pytest.mark.timeout(240), pytest.mark.engines("sqlite", "postgresql")]

SYSTEMS = {"ckpt-a": ["raw"], "ckpt-b": ["raw"], "ckpt-c": ["raw"]}
ELEMENTS = ["a red cube", "a blue ball", "red cube left of blue ball"]


def structured(p: int) -> StructuredPrompt:
    return StructuredPrompt(
        f"prompt number {p}",
        (ObjectSpec("cube", 1, "red"), ObjectSpec("ball", 2, "blue")),
        (Relation(0, "left of", 1),),
    )


def elements_file(tmp_path: Path, prompts: int) -> Path:
    """Half the prompts as plain element lists, half as structured prompts (our own layout)."""
    lines = []
    for p in range(prompts):
        if p % 2:
            lines.append(json.dumps(structured(p).to_json()))
        else:
            lines.append(json.dumps({"prompt": f"prompt number {p}", "elements": ELEMENTS}))
    path = tmp_path / "elements.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def verdict_campaign(ws: Workspace, tmp_path: Path, name: str = "v", prompts: int = 4, **kwargs) -> None:  # noqa: ANN003
    make_generated(ws, f"gen-{name}", SYSTEMS, prompts=prompts, seeds=(0,))
    arena.create_verdict_campaign(
        ws, name, datasets=[f"gen-{name}"], elements_file=elements_file(tmp_path, prompts), **kwargs
    )


# --------------------------------------------------------------------------- creation


def test_elements_come_from_plain_lists_and_structured_prompts(tmp_path: Path) -> None:
    got = load_elements(elements_file(tmp_path, 2))
    assert got["prompt number 0"] == ELEMENTS
    assert got["prompt number 1"] == ["red cube", "2x blue ball", "red cube left of 2x blue ball"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"prompt": "a", "elements": ["x"]}\n'
        "not json\n"
        '{"prompt": "b"}\n'
        '{"prompt": "a", "elements": ["y"]}\n'
        '{"prompt": "c", "objects": [{"class": "cat", "count": 0}]}\n'
    )
    with pytest.raises(RowErrors) as refused:
        load_elements(bad)
    assert [e.split(":")[0] for e in refused.value.errors] == ["line 2", "line 3", "line 4", "line 5"]
    assert "other elements on line 1" in refused.value.errors[2]


GENEVAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "geneval_evaluation_metadata.jsonl"


@pytest.mark.skipif(
    not GENEVAL.is_file(), reason=f"reference data {GENEVAL} is absent (tests read ../shared/data)"
)
def test_elements_from_geneval_metadata_and_our_demo_world_set() -> None:
    """GenEval's layout goes through backend.compositional.loaders (its one reader)."""
    geneval = load_elements(GENEVAL)
    assert len(geneval) == 553
    assert geneval["a photo of two backpacks"] == ["2x backpack"]
    assert geneval["a photo of a bird below a skateboard"] == ["skateboard", "bird", "bird below skateboard"]
    demo = load_elements(Path(__file__).resolve().parents[1] / "assets" / "prompts" / "demo_world.jsonl")
    assert demo["a circle"] == ["circle"] and all(demo.values())


def test_verdict_campaign_has_one_item_per_image_with_its_elements(ws: Workspace, tmp_path: Path) -> None:
    verdict_campaign(ws, tmp_path, target_per_item=2, repeat_share=0.0, baseline="ckpt-b")
    summary = arena.list_campaigns(ws)[0]
    assert (summary.kind, summary.systems, summary.pairs, summary.total) == ("verdict", 3, 12, 24)
    assert summary.criteria == [arena.DEFAULT_QUESTION]
    campaign = arena.get_campaign(ws, "v")
    assert campaign.meta["baseline"] == "ckpt-b"
    assert campaign.meta["elements"]["prompts_with_elements"] == 4
    with read_session(ws) as s:
        pairs = s.exec(text("SELECT a_id, b_id, a_system_id, b_system_id FROM evalpair")).all()
        stored = s.exec(text("SELECT prompt, elements FROM evalimage")).all()
    assert all(a == b and sa == sb for a, b, sa, sb in pairs)  # each image is shown alone
    assert {p: stored_json(e) for p, e in stored}["prompt number 0"] == ELEMENTS
    # bad input: clear errors, nothing stored
    make_generated(ws, "other", SYSTEMS, prompts=2, seeds=(0,))
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text('{"prompt": "a photo of nothing here", "elements": ["x"]}\n')
    with pytest.raises(ArenaError, match="names none of the campaign's 2 prompts"):
        arena.create_verdict_campaign(ws, "w", datasets=["other"], elements_file=wrong)
    with pytest.raises(ArenaError, match="baseline 'ckpt-z' is not a system"):
        arena.create_verdict_campaign(ws, "w", datasets=["other"], baseline="ckpt-z")
    with pytest.raises(ArenaError, match="exactly one source"):
        arena.create_verdict_campaign(ws, "w", datasets=["other"], root=tmp_path, prompts_csv=wrong)
    with pytest.raises(ArenaError, match="already exists"):
        arena.create_verdict_campaign(ws, "v", datasets=["other"])
    with pytest.raises(ArenaError, match="question asked of every image must not be empty"):
        arena.create_verdict_campaign(ws, "w", datasets=["other"], question=" ")
    assert [c.name for c in arena.list_campaigns(ws)] == ["v"]
    # pairwise campaigns ignore element records entirely
    arena.create_campaign_from_generated(ws, "pairs", ["other"], ["q"])
    with read_session(ws) as s:
        assert s.exec(text("SELECT count(*) FROM evalimage WHERE elements IS NOT NULL")).one()[0] == 12


def _record(ws: Workspace, checkpoint: str, key: str, value: object) -> None:
    from backend.db import write_session
    from backend.models import Image

    with write_session(ws) as s:
        for (image_id,) in s.exec(text("SELECT id FROM image")).all():
            row = s.get(Image, image_id)
            g = dict(row.meta["generated"])
            if g["checkpoint"] == checkpoint:
                g[key] = value(g["prompt_index"]) if callable(value) else value
                row.meta = {"generated": g}
                s.add(row)


def test_elements_recorded_on_generated_images_belong_to_the_prompt(ws: Workspace) -> None:
    """The hook for a generate job that keeps its prompt set's structure in meta['generated'];
    only system a's images carry it, yet every image of the prompt gets the same ticks (ticks
    that differ by system would tell the systems apart)."""
    make_generated(ws, "gen", {"a": ["raw"], "b": ["raw"]}, prompts=2, seeds=(0,))
    _record(ws, "a", "structured", lambda p: structured(p).to_json())
    arena.create_verdict_campaign(ws, "hook", datasets=["gen"], target_per_item=1)
    (ann,) = users(ws, 1)
    seen = set()
    while (ticket := arena.next_ticket(ws, "hook", ann)) is not None:
        seen.add(ticket.elements)
        arena.submit_vote(ws, ticket.token, ann, "yes", 100)
    assert seen == {("red cube", "2x blue ball", "red cube left of 2x blue ball")}
    _record(ws, "b", "elements", ["something else"])
    with pytest.raises(ArenaError, match="2 prompt\\(s\\) carry different required elements"):
        arena.create_verdict_campaign(ws, "clash", datasets=["gen"])


# --------------------------------------------------------------------------- scheduling and votes


def test_scheduling_balances_systems_and_prompts_up_to_the_target(ws: Workspace, tmp_path: Path) -> None:
    verdict_campaign(ws, tmp_path, prompts=4, target_per_item=2, repeat_share=0.0)
    anns = users(ws, 3)
    with read_session(ws) as s:
        system_of = dict(
            s.exec(
                text("SELECT e.id, s.name FROM evalimage e JOIN arenasystem s ON s.id = e.system_id")
            ).all()
        )
    first = arena.next_ticket(ws, "v", anns[0])
    assert first.kind == "verdict" and first.right_image is None and first.elements
    # the first tickets of three annotators go to three different systems (least-judged system first)
    opened = [first] + [arena.next_ticket(ws, "v", a) for a in anns[1:]]
    with read_session(ws) as s:
        shown = [
            system_of[
                s.exec(text("SELECT left_id FROM arenaticket WHERE token = :t").bindparams(t=t.token)).one()[
                    0
                ]
            ]
            for t in opened
        ]
    assert sorted(shown) == sorted(SYSTEMS)
    for a, t in zip(anns, opened, strict=True):
        arena.submit_vote(ws, t.token, a, "yes", 800)
    counts = Counter()
    for a in anns:
        while (t := arena.next_ticket(ws, "v", a)) is not None:
            arena.submit_vote(ws, t.token, a, "no", 900)
    for j in judgments(ws):
        counts[(j.pair_id, j.annotator_id)] += 1
    assert max(counts.values()) == 1  # nobody judges an image twice (no repeats asked)
    per_item = Counter(j.pair_id for j in judgments(ws))
    assert set(per_item.values()) == {2} and len(per_item) == 12  # every image exactly at target
    assert arena.list_campaigns(ws)[0].done == 24


def test_verdicts_are_idempotent_timed_and_checked(ws: Workspace, tmp_path: Path) -> None:
    verdict_campaign(ws, tmp_path, target_per_item=1, repeat_share=0.0)
    make_generated(ws, "pairgen", {"a": ["raw"], "b": ["raw"]}, prompts=1, seeds=(0,))
    arena.create_campaign_from_generated(ws, "pairwise", ["pairgen"], ["q"])
    ann, other = users(ws, 2)
    t = arena.next_ticket(ws, "v", ann)
    assert arena.next_ticket(ws, "v", ann).token == t.token  # a reload returns the same image
    with pytest.raises(ArenaError, match="choice must be yes or no, not 'left'"):
        arena.submit_vote(ws, t.token, ann, "left", 500)
    with pytest.raises(ArenaError, match="misses nothing"):
        arena.submit_vote(ws, t.token, ann, "yes", 500, missing=[t.elements[0]])
    with pytest.raises(ArenaError, match="not an element of this prompt: 'a green hat'"):
        arena.submit_vote(ws, t.token, ann, "no", 500, missing=["a green hat"])
    with pytest.raises(TicketError, match="another annotator"):
        arena.submit_vote(ws, t.token, other, "no", 500)
    assert judgments(ws) == []  # every refusal wrote nothing
    ticked = [t.elements[2], t.elements[0]]
    first = arena.submit_vote(ws, t.token, ann, "no", 1234, missing=ticked)
    again = arena.submit_vote(ws, t.token, ann, "no", 1234, missing=ticked)
    assert (first.duplicate, again.duplicate) == (False, True) and first.next_available
    (j,) = judgments(ws)
    assert (j.choice, j.elapsed_ms, j.flags) == ("no", 1234, {"missing": [t.elements[0], t.elements[2]]})
    assert j.server_ms is not None and j.server_ms >= 0
    skipped = arena.next_ticket(ws, "v", ann)
    arena.skip_ticket(ws, skipped.token, ann)
    assert arena.next_ticket(ws, "v", ann).token != skipped.token
    # and a pairwise campaign refuses verdicts
    p = arena.next_ticket(ws, "pairwise", ann)
    with pytest.raises(ArenaError, match="must be one of left, right, tie, both_bad"):
        arena.submit_vote(ws, p.token, ann, "yes", 500)
    with pytest.raises(ArenaError, match="verdict campaigns only"):
        arena.submit_vote(ws, p.token, ann, "left", 500, missing=["x"])


def test_no_system_is_named_before_the_last_verdict_and_closing_is_final(
    ws: Workspace, tmp_path: Path
) -> None:
    """The pairwise arena's guarantee, through the same code: 3 systems, repeats on."""
    verdict_campaign(ws, tmp_path, prompts=2, target_per_item=1, repeat_share=0.5)
    ann, late = users(ws, 2)
    names = set(SYSTEMS)
    images: list[Path] = []
    while (t := arena.next_ticket(ws, "v", ann)) is not None:
        shown = {k: v for k, v in dataclasses.asdict(t).items() if k not in ("left_image", "right_image")}
        assert not [v for v in map(str, shown.values()) if any(n in v for n in names)]
        images.append(t.left_image)
        receipt = arena.submit_vote(ws, t.token, ann, random.Random(len(images)).choice(["yes", "no"]), 400)
        assert not any(n in str(dataclasses.asdict(receipt)) for n in names)
        if receipt.next_available and arena.next_ticket(ws, "v", ann) is not None:
            assert arena.reveal_votes(ws, "v", ann) is None  # work is left: nothing is told
    repeats = sum(j.is_repeat for j in judgments(ws))
    assert repeats >= 1 and len(images) == 6 + repeats and len(set(images)) == 6  # images did recur
    told = arena.reveal_votes(ws, "v", ann)
    assert told.reason == "finished" and told.kind == "verdict"
    assert sum(shown for _, shown in told.verdict_counts().values()) == len(images)
    assert set(told.verdict_counts()) == names
    on_screen = arena.next_ticket(ws, "v", late)
    assert on_screen is None  # the target (1 per image) is reached: nothing for them
    arena.close_campaign(ws, "v")
    with pytest.raises(arena.CampaignClosedForGood):
        arena.close_campaign(ws, "v", reopen=True)


def test_a_closed_verdict_campaign_refuses_the_image_on_screen(ws: Workspace, tmp_path: Path) -> None:
    verdict_campaign(ws, tmp_path, prompts=2, target_per_item=1)
    (ann,) = users(ws, 1)
    t = arena.next_ticket(ws, "v", ann)
    arena.close_campaign(ws, "v")
    with pytest.raises(TicketError, match="closed"):
        arena.submit_vote(ws, t.token, ann, "yes", 300)
    assert judgments(ws) == [] and arena.reveal_votes(ws, "v", ann).reason == "closed"


# --------------------------------------------------------------------------- statistics


def test_cluster_bootstrap_resamples_prompts_not_images() -> None:
    """Copies of a prompt's images add no information: the interval must not narrow (it would if
    images were resampled one by one)."""
    rng = np.random.default_rng(3)
    rows = [
        {"system": s, "cluster": f"p{p}", "score": float(rng.random() < 0.3 + 0.4 * (s == "B"))}
        for p in range(15)
        for s in ("A", "B")
    ]
    once = pd.DataFrame(rows)
    copied = pd.concat([once] * 4, ignore_index=True)
    a = stats.RateBootstrap(once, rounds=400, seed=11).table()
    b = stats.RateBootstrap(copied, rounds=400, seed=11).table()
    assert np.allclose(a[["rate", "lower", "upper"]], b[["rate", "lower", "upper"]])
    assert list(b["items"]) == [60, 60] and list(b["prompts"]) == [15, 15]


def test_relative_improvement_and_its_interval_come_from_the_same_rounds() -> None:
    items = pd.DataFrame(
        {
            "system": ["base", "recap"] * 10,
            "cluster": [f"p{p}" for p in range(10) for _ in range(2)],
            "score": [0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.5, 1.0] * 2,
        }
    )
    boot = stats.RateBootstrap(items, rounds=300, seed=5)
    table = boot.table().set_index("system")
    assert table.loc["base", "rate"] == pytest.approx(0.5) and table.loc["recap", "rate"] == pytest.approx(
        0.8
    )
    (row,) = boot.improvements("base").to_dict(orient="records")
    assert row["relative"] == pytest.approx((0.8 - 0.5) / 0.5)
    rel = (boot.samples[:, 1] - boot.samples[:, 0]) / boot.samples[:, 0]
    rel = rel[np.isfinite(rel)]
    assert (row["lower"], row["upper"]) == pytest.approx(tuple(np.quantile(rel, [0.025, 0.975])))
    assert row["undefined"] == 300 - len(rel)
    with pytest.raises(ValueError, match="baseline 'nope'"):
        boot.improvements("nope")


def test_label_agreement_on_verdicts() -> None:
    labels = pd.DataFrame(
        {
            "item": [1, 1, 2, 2, 3, 3, 4, 4],
            "annotator": ["x", "y"] * 4,
            "label": ["yes", "yes", "no", "no", "yes", "yes", "no", "no"],
        }
    )
    same = stats.label_agreement(labels)
    assert same.fleiss.kappa == pytest.approx(1.0) and same.alpha.alpha == pytest.approx(1.0)
    assert same.cohen.loc[0, "n_items"] == 4
    flipped = labels.assign(
        label=np.where((labels["annotator"] == "y") & (labels["item"] % 2 == 0), "yes", labels["label"])
    )
    worse = stats.label_agreement(flipped)
    assert worse.fleiss.kappa < 0.5 and worse.cohen.loc[0, "agreement"] == pytest.approx(0.5)
    retest = stats.retest_consistency(
        pd.concat([labels.assign(is_repeat=False), labels.head(2).assign(is_repeat=True, label="no")])
    )
    assert list(retest["consistent"]) == [0, 0] and list(retest["n_repeats"]) == [1, 1]


def test_results_rates_improvement_agreement_and_missing_elements(ws: Workspace, tmp_path: Path) -> None:
    """Known verdicts: ckpt-a always faithful, ckpt-b on half the prompts, ckpt-c never (its
    second element ticked missing); two annotators who agree, then a repeat."""
    verdict_campaign(ws, tmp_path, prompts=4, target_per_item=2, repeat_share=0.0, baseline="ckpt-b")
    anns = users(ws, 2)

    def answer(token: str) -> tuple[str, list[str]]:
        with read_session(ws) as s:
            system, prompt, elements = s.exec(
                text(
                    "SELECT s.name, e.prompt, e.elements FROM arenaticket t JOIN evalimage e ON e.id = t.left_id "
                    "JOIN arenasystem s ON s.id = e.system_id WHERE t.token = :t"
                ).bindparams(t=token)
            ).one()
        p = int(prompt.rsplit(" ", 1)[1])
        if system == "ckpt-a" or (system == "ckpt-b" and p % 2 == 0):
            return "yes", []
        return "no", [stored_json(elements)[1]] if system == "ckpt-c" else []

    for a in anns:
        while (t := arena.next_ticket(ws, "v", a)) is not None:
            verdict, missing = answer(t.token)
            arena.submit_vote(ws, t.token, a, verdict, 700, missing=missing)
    results = arena.verdict_results(ws, "v", bootstrap_rounds=200)
    rates = results.rates.set_index("system")
    assert list(rates["rate"]) == [1.0, 0.5, 0.0] and list(rates["votes"]) == [8, 8, 8]
    assert all(rates["lower"] <= rates["rate"]) and all(rates["rate"] <= rates["upper"])
    assert rates.loc["ckpt-b", "lower"] < 0.5 < rates.loc["ckpt-b", "upper"]  # prompts differ: an interval
    assert results.n_clusters == 4 and results.baseline == "ckpt-b"
    improvement = results.improvements.set_index("system")
    assert improvement.loc["ckpt-a", "relative"] == pytest.approx(1.0)  # (1 - 0.5) / 0.5
    assert improvement.loc["ckpt-c", "relative"] == pytest.approx(-1.0)
    assert results.raw_agreement == 1.0 and results.agreement.alpha.alpha == pytest.approx(1.0)
    missing = results.missing.set_index(["element", "system"])
    assert missing.loc[("a blue ball", "ckpt-c"), "missing"] == 4  # 2 prompts x 2 annotators
    assert missing.loc[("2x blue ball", "ckpt-c"), "missing"] == 4
    assert missing["missing"].sum() == 8
    other = arena.verdict_results(ws, "v", baseline="ckpt-a", bootstrap_rounds=50)
    assert other.improvements.set_index("system").loc["ckpt-b", "relative"] == pytest.approx(-0.5)
    data = results.to_json()
    assert data["kind"] == "verdict" and data["systems"]["ckpt-a"]["relative_improvement"]["relative"] == 1.0
    assert (
        data["systems"]["ckpt-b"]["success_rate"]["value"] == 0.5
        and data["systems"]["ckpt-b"]["success_rate"]["n"] == 4
    )
    json.dumps(data)  # JSON-safe
    with pytest.raises(ArenaError, match="collects verdicts"):
        arena.campaign_results(ws, "v")
    out = tmp_path / "verdicts.csv"
    assert arena.export_votes_csv(ws, "v", out) == 24
    exported = list(csv.DictReader(out.open()))
    assert {r["verdict"] for r in exported} == {"yes", "no"} and {r["system"] for r in exported} == set(
        SYSTEMS
    )
    assert json.loads(next(r["missing"] for r in exported if r["system"] == "ckpt-c"))
    with pytest.raises(ArenaError, match="cannot be imported"):
        arena.import_votes_csv(ws, "v", _pairwise_csv(tmp_path))


def _pairwise_csv(tmp_path: Path) -> Path:
    path = tmp_path / "pairs.csv"
    path.write_text("prompt,left,right,winner,annotator,criterion\nx,a,b,left,ann,q\n")
    return path


# --------------------------------------------------------------------------- CLI


def test_cli_creates_a_verdict_campaign_and_reports_success_rates(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ws = Workspace(home).ensure()
    from backend.db import migrate

    migrate(ws)
    make_generated(ws, "gen", SYSTEMS, prompts=4, seeds=(0,))
    elements = elements_file(tmp_path, 4)
    for args, message in (
        (["--verdict", "--captions", "gen", "--kinds", "a,b"], "use --from-generated or --from-folders"),
        (["--verdict", "--from-generated", "gen", "--criteria", "q"], "give it with --question"),
        (["--verdict", "--from-generated", "gen", "--gold-share", "0.2"], "no gold pairs"),
        (["--from-generated", "gen", "--baseline", "ckpt-a"], "--baseline go(es) with --verdict"),
        (["--verdict", "--from-generated", "gen", "--baseline", "nope"], "baseline 'nope' is not a system"),
    ):
        refused = cli(home, "arena", "create", "vc", *args)
        assert refused.exit_code == 2 and message in refused.stderr, refused.stderr
    created = cli(
        home, "arena", "create", "vc", "--verdict", "--from-generated", "gen", "--elements", str(elements),
        "--baseline", "ckpt-b", "--target", "1", "--repeat-share", "0", "--question", "Faithful?", "--json",
    )  # fmt: skip
    assert created.exit_code == 0, created.stderr
    summary = last_json(created.stdout)
    assert (summary["kind"], summary["pairs"], summary["total"], summary["criteria"]) == (
        "verdict",
        12,
        12,
        ["Faithful?"],
    )
    assert summary["elements"]["prompts_with_elements"] == 4
    (ann,) = users(ws, 1)
    n = 0
    while (t := arena.next_ticket(ws, "vc", ann)) is not None:
        arena.submit_vote(ws, t.token, ann, "yes" if n % 3 else "no", 500)
        n += 1
    assert n == 12
    wrong = cli(home, "arena", "results", "vc", "--criterion", "x")
    assert wrong.exit_code == 2 and "one question" in wrong.stderr
    result = cli(home, "arena", "results", "vc", "--bootstrap", "50", "--json")
    assert result.exit_code == 0, result.stderr
    data = last_json(result.stdout)
    assert data["kind"] == "verdict" and data["baseline"] == "ckpt-b" and data["n_votes"] == 12
    for name in SYSTEMS:
        row = data["systems"][name]
        assert row["lower"] <= row["rate"] <= row["upper"] and row["votes"] == 4
    assert data["systems"]["ckpt-b"]["relative_improvement"] is None
    table = cli(home, "arena", "results", "vc", "--bootstrap", "50", "--baseline", "ckpt-a")
    assert table.exit_code == 0 and "vs ckpt-a" in table.stdout and "bootstrap over 4 prompt" in table.stdout
    rates_csv = tmp_path / "rates.csv"
    assert cli(home, "arena", "results", "vc", "--bootstrap", "20", "--csv", str(rates_csv)).exit_code == 0
    assert {r["system"] for r in csv.DictReader(rates_csv.open())} == set(SYSTEMS)
    pairwise = cli(home, "arena", "results", "vc", "--all-criteria")
    assert pairwise.exit_code == 2
