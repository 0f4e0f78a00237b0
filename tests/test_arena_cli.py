"""``recap-studio arena`` end to end on a real workspace.

Most calls go through typer's CliRunner (the real app, in-process: each subprocess would pay
seconds of imports); the contract the Results tooling relies on — ``results --json`` — runs as a
real ``recap-studio`` subprocess.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from backend import arena
from backend.db import migrate
from backend.users import add_user
from backend.workspace import Workspace
from tests.conftest import run_cli
from tests.test_arena_backend import VOTES_CSV, make_generated, vote_all

pytestmark = pytest.mark.timeout(180)


def cli(home: Path, *args: str):  # noqa: ANN201 - click's Result
    """The real ``recap-studio`` app, in-process; returns click's Result (exit_code, stdout, stderr)."""
    from typer.testing import CliRunner

    from studio.cli import app

    return CliRunner().invoke(app, ["--home", str(home), *args])


def last_json(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert lines, "no output"
    return json.loads(lines[-1])


def test_import_results_json_and_export(tmp_path: Path) -> None:
    home = tmp_path / "home"
    votes = tmp_path / "votes.csv"
    votes.write_text(VOTES_CSV)
    bad = tmp_path / "bad.csv"
    bad.write_text(VOTES_CSV + "a cat,sysA,sysB,maybe,alice,matches the prompt\n")
    refused = cli(home, "arena", "import-votes", "imp", str(bad))
    assert refused.exit_code == 2 and refused.stdout == ""
    assert refused.stderr.startswith(
        "error: bad.csv: 1 bad row(s), nothing was written: line 8: winner 'maybe'"
    )
    assert len(refused.stderr.strip().splitlines()) == 1
    done = cli(home, "arena", "import-votes", "imp", str(votes), "--json")
    assert done.exit_code == 0, done.stderr
    assert last_json(done.stdout)["votes"] == 6
    result = run_cli(home, "arena", "results", "imp", "--bootstrap", "30", "--json")  # a real subprocess
    assert result.returncode == 0, result.stderr
    data = last_json(result.stdout)
    assert data["campaign"] == "imp" and set(data["systems"]) == {"sysA", "sysB", "sysC"}
    for row in data["systems"].values():
        assert {"rating", "lower", "upper", "rank", "wins", "losses", "ties"} <= set(row)
    a = data["systems"]["sysA"]
    assert a["losses"] == 0 and a["wins"] == 4 and a["rank"] == 1  # unbeaten, yet finite
    assert all(math.isfinite(a[k]) for k in ("rating", "lower", "upper"))
    assert a["lower"] <= a["rating"] <= a["upper"]
    table = cli(home, "arena", "results", "imp", "--bootstrap", "10")
    assert table.exit_code == 0 and "sysA" in table.stdout and "Left side won" in table.stdout
    out = tmp_path / "out.csv"
    exported = cli(home, "arena", "export-votes", "imp", str(out))
    assert exported.exit_code == 0, exported.stderr
    rows = list(csv.DictReader(out.open()))
    assert [r["winner"] for r in rows] == ["left", "right", "left", "tie", "both_bad", "left"]


def test_create_from_generated_and_bad_usage(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ws = Workspace(home).ensure()
    migrate(ws)
    make_generated(ws, "gen", {"ckpt-a": ["raw"], "ckpt-b": ["raw"]}, prompts=3, seeds=(0,))
    none = cli(home, "arena", "create", "c1", "--criteria", "q")
    assert none.exit_code == 2 and "give exactly one source" in none.stderr
    both = cli(
        home, "arena", "create", "c1", "--from-generated", "gen", "--captions", "gen", "--kinds", "a,b"
    )
    assert both.exit_code == 2 and "got --from-generated, --captions" in both.stderr
    no_csv = cli(home, "arena", "create", "c1", "--from-folders", str(tmp_path))
    assert no_csv.exit_code == 2 and "--from-folders needs --prompts" in no_csv.stderr
    unknown = cli(home, "arena", "create", "c1", "--from-generated", "nope")
    assert unknown.exit_code == 2 and unknown.stderr.strip() == "error: no dataset named 'nope'"
    share = cli(home, "arena", "create", "c1", "--from-generated", "gen", "--gold-share", "0.9")
    assert share.exit_code == 2 and "gold share must be between 0 and 0.5" in share.stderr
    created = cli(
        home, "arena", "create", "c1", "--from-generated", "gen",
        "--criteria", "matches the prompt,image quality", "--target", "1", "--repeat-share", "0", "--json",
    )  # fmt: skip
    assert created.exit_code == 0, created.stderr
    summary = last_json(created.stdout)
    assert summary["pairs"] == 3 and summary["criteria"] == ["matches the prompt", "image quality"]
    annotator = add_user(ws, "ann", "annotator", "pw-123456789").id
    assert vote_all(ws, "c1", annotator) == 6
    missing = cli(home, "arena", "results", "c1", "--criterion", "speed", "--json")
    assert missing.exit_code == 2 and "criterion 'speed' is not one of" in missing.stderr
    result = cli(
        home, "arena", "results", "c1", "--criterion", "image quality", "--bootstrap", "10", "--json"
    )
    data = last_json(result.stdout)
    assert data["n_votes"] == 3 and data["systems"]["ckpt-a"]["caption_condition"] == "RECAP Mix"
    assert arena.list_campaigns(ws)[0].done == 6
