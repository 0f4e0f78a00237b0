"""Campaign results: which criterion the headline ratings are of, and what the intervals resample.

A real SQLite workspace; the votes enter through ``arena import-votes`` (CSV), as external
judgments do, from a seeded simulation in which 3 annotators judge every system pair of a
prompt under 2 criteria. The CLI runs in-process through typer's CliRunner.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backend import arena, stats
from backend.arena import ArenaError
from backend.arena.results import CLUSTER
from backend.db import migrate
from backend.workspace import Workspace

pytestmark = pytest.mark.timeout(300)

CRITERIA = ("matches the prompt", "image quality")  # the first is the campaign's primary
SYSTEMS = {"sysA": 0.0, "sysB": 0.6, "sysC": 1.2}
PROMPTS = 12
SEED = 7


def votes_csv(path: Path) -> Path:
    """Every pair of every prompt, 3 annotators × 2 criteria; quality has a per-image random
    effect shared by all of an image's votes, so votes on one prompt are correlated."""
    rng = np.random.default_rng(SEED)
    names = list(SYSTEMS)
    rows = []
    for p in range(PROMPTS):
        quality = {n: SYSTEMS[n] + rng.normal(0, 1.0) for n in names}
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                for criterion in CRITERIA:
                    for annotator in ("ann", "bob", "cid"):
                        left, right = (a, b) if rng.random() < 0.5 else (b, a)
                        p_left = 1 / (1 + np.exp(-(quality[left] - quality[right])))
                        winner = "left" if rng.random() < p_left else "right"
                        rows.append([f"prompt {p}", left, right, winner, annotator, criterion])
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows([["prompt", "left", "right", "winner", "annotator", "criterion"], *rows])
    return path


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, Path]:
    root = tmp_path_factory.mktemp("arena-results")
    ws = Workspace(root / "home").ensure()
    migrate(ws)
    report = arena.import_votes_csv(ws, "sim", votes_csv(root / "votes.csv"))
    assert report.votes == PROMPTS * 3 * 2 * 3, f"seed {SEED}"
    return ws, root


def test_headline_is_the_primary_criterion_and_pooling_is_asked_for(imported: tuple[Workspace, Path]) -> None:
    ws, _ = imported
    default = arena.campaign_results(ws, "sim", bootstrap_rounds=50)
    assert default.criteria == list(CRITERIA) and default.primary_criterion == CRITERIA[0]
    assert default.criterion == CRITERIA[0] and not default.pooled
    assert default.n_votes == PROMPTS * 3 * 3  # one criterion's votes, not both
    assert set(default.per_criterion) == set(CRITERIA)  # every criterion alone, the primary included
    primary = default.per_criterion[CRITERIA[0]].set_index("system")["rating"]
    assert default.ratings.set_index("system")["rating"].to_dict() == pytest.approx(primary.to_dict())

    other = arena.campaign_results(ws, "sim", criterion=CRITERIA[1], bootstrap_rounds=50)
    assert other.criterion == CRITERIA[1] and not other.pooled and other.n_votes == PROMPTS * 3 * 3
    pooled = arena.campaign_results(ws, "sim", pool_criteria=True, bootstrap_rounds=50)
    assert pooled.pooled and pooled.criterion is None and pooled.n_votes == PROMPTS * 3 * 3 * 2
    with pytest.raises(ArenaError, match="not both"):
        arena.campaign_results(ws, "sim", criterion=CRITERIA[0], pool_criteria=True)
    data = pooled.to_json()
    assert data["pooled"] and data["primary_criterion"] == CRITERIA[0]
    assert data["intervals"]["resampled_units"] == PROMPTS and data["intervals"]["rounds"] == 50
    json.dumps(data, default=str)


def test_intervals_and_votes_needed_resample_prompts(imported: tuple[Workspace, Path]) -> None:
    ws, _ = imported
    results = arena.campaign_results(ws, "sim", bootstrap_rounds=60, seed=3)
    votes = arena.campaign_votes(ws, "sim")
    assert set(votes[CLUSTER]) == {f"prompt: prompt {p}" for p in range(PROMPTS)}
    rated = votes[votes["criterion"] == CRITERIA[0]].reset_index(drop=True)
    expected = stats.bootstrap_bt(rated, rounds=60, seed=3, cluster=CLUSTER)
    table = results.ratings.set_index("system").loc[expected["system"]]
    np.testing.assert_allclose(table[["rating", "lower", "upper"]].to_numpy(dtype=float),
                               expected[["rating", "lower", "upper"]].to_numpy(dtype=float))  # fmt: skip
    by_vote = stats.bootstrap_bt(rated, rounds=60, seed=3)
    assert (expected["upper"] - expected["lower"]).mean() > (by_vote["upper"] - by_vote["lower"]).mean()
    needed = results.votes_needed
    assert set(needed["n_clusters"]) == {PROMPTS} and set(needed["n_votes"]) == {len(rated)}
    pd.testing.assert_frame_equal(
        needed.reset_index(drop=True),
        stats.votes_to_separate(rated, rounds=60, seed=3, cluster=CLUSTER).reset_index(drop=True),
    )


def cli(home: Path, *args: str):  # noqa: ANN201 - click's Result
    from typer.testing import CliRunner

    from studio.cli import app

    return CliRunner().invoke(app, ["--home", str(home), *args])


def test_cli_states_the_criterion_and_the_resampled_prompts(imported: tuple[Workspace, Path]) -> None:
    ws, _ = imported
    table = cli(ws.home, "arena", "results", "sim", "--bootstrap", "20")
    assert table.exit_code == 0, table.stderr
    text = " ".join(table.stdout.split())
    assert f"criterion: {CRITERIA[0]} (primary)" in text
    assert f"bootstrap over {PROMPTS} prompt(s)" in text
    assert f"Other criteria: {CRITERIA[1]} (--criterion NAME); --all-criteria pools them" in text
    pooled = cli(ws.home, "arena", "results", "sim", "--all-criteria", "--bootstrap", "20", "--json")
    data = json.loads(pooled.stdout.strip().splitlines()[-1])
    assert data["pooled"] and data["n_votes"] == PROMPTS * 3 * 3 * 2
    pooled_table = cli(ws.home, "arena", "results", "sim", "--all-criteria", "--bootstrap", "20")
    assert "all criteria pooled" in " ".join(pooled_table.stdout.split())
    both = cli(ws.home, "arena", "results", "sim", "--all-criteria", "--criterion", CRITERIA[0])
    assert both.exit_code == 2 and "not both" in both.stderr
