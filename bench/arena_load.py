"""Arena load benchmark: 20 annotators voting at once through the real studio server.

What it does, in order:

1. a fresh workspace in a temp folder: 20 annotator accounts and a t2i campaign over a
   generated-style dataset (Image rows with ``meta["generated"]``; 6 systems x N prompts, so
   every annotator always has pairs left);
2. the real server (``recap-studio serve`` in a subprocess, as tests/conftest.py starts it);
3. one thread per annotator, each logged in with ``gradio_client.Client(url, auth=...)``, calling
   the studio's JSON endpoints ``arena_next`` then ``arena_vote`` as fast as the server answers
   for ``--seconds`` (no think time: a worst case, humans take seconds per vote). About one vote
   in 20 is submitted twice, as a double click would;
4. the server is stopped and the database is checked: every acknowledged vote must be stored
   (lost = acknowledged tickets without a judgment), and no ticket, and no (pair, annotator,
   criterion, is_repeat), may hold two judgments (duplicated);
5. latency: server-side ``Judgment.server_ms`` (time inside ``submit_vote``, lock wait and
   insert included) and the client round trip of each endpoint, p50/p99;
6. the time to compute ratings with 100 bootstrap rounds on 100,000 synthetic votes (goal < 3 s);
7. with ``--engine``: steps 1-5 on each engine named (SQLite, the embedded default, and/or
   PostgreSQL: a private server started here with durable settings, as tests/postgres_cluster.py
   starts one), then ``--stored-votes`` votes imported into the engine (``arena import``'s code)
   and the campaign's ratings computed from the stored votes; a summary table per engine.

Run:  .venv/bin/python bench/arena_load.py [--seconds 60] [--annotators 20] [--engine sqlite|postgresql|both]
The images are database rows only: the endpoints measured here send JSON, never pictures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

PASSWORD = "bench-pass-1234"
SYSTEMS = ("sd-alttext", "sd-recap-mix", "sd-recap-long", "sd-dalle3-mix", "sd-human", "sd-empty")


@dataclass
class WorkerStats:
    acked: list[str] = field(default_factory=list)  # tokens the server said it stored
    next_ms: list[float] = field(default_factory=list)
    vote_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    double_submits: int = 0
    exhausted: bool = False


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def build_workspace(home: Path, annotators: int, prompts: int) -> list[str]:
    from backend import arena
    from backend.datasets import get_or_create_dataset
    from backend.db import migrate, write_session
    from backend.jobs.models import Artifact
    from backend.models import Image
    from backend.users import add_user
    from backend.workspace import Workspace

    ws = Workspace(home).ensure()
    migrate(ws)
    names = [f"judge{i:02d}" for i in range(annotators)]
    for name in names:
        add_user(ws, name, "annotator", PASSWORD)
    with write_session(ws) as s:
        dataset = get_or_create_dataset(s, "bench-generated")
        for n, system in enumerate(SYSTEMS):
            art = Artifact(
                kind="t2i", name=system, path=f"runs/{n}/pipeline", meta={"caption_condition": system}
            )
            s.add(art)
            s.flush()
            for p in range(prompts):
                s.add(
                    Image(
                        dataset_id=dataset.id,
                        sha256=f"{n:08x}{p:056x}",
                        ext="png",
                        width=512,
                        height=512,
                        nbytes=1,
                        original_key=f"{system}/raw/{p:05d}_seed0.png",
                        meta={
                            "generated": {
                                "checkpoint": system,
                                "artifact_id": art.id,
                                "prompt": f"bench prompt {p}",
                                "prompt_index": p,
                                "category": f"cat{p % 5}",
                                "seed": 0,
                                "regime": "raw",
                            }
                        },
                    )
                )
    arena.create_campaign_from_generated(
        ws, "load", ["bench-generated"], ["matches the prompt"], target_per_pair=3, repeat_share=0.1
    )
    return names


def login(url: str, name: str, attempts: int = 3):  # noqa: ANN201 - gradio_client.Client
    """One logged-in client. Logins go one at a time: each fetches the whole app config."""
    from gradio_client import Client

    for attempt in range(attempts):
        try:
            return Client(
                url,
                auth=(name, PASSWORD),
                verbose=False,
                httpx_kwargs={"timeout": 120},
                analytics_enabled=False,
            )
        except Exception:  # noqa: BLE001 - retried, then raised
            if attempt == attempts - 1:
                raise
            time.sleep(2)
    return None


def annotator(  # noqa: ANN001
    client, name: str, seconds: float, start: threading.Barrier, stats: WorkerStats, think_s: float = 0.0
) -> None:
    """One annotator: next pair, look at it ``think_s`` (±50 %, 0 = vote at once), vote, repeat."""
    rng = random.Random(name)
    start.wait()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            t0 = time.perf_counter()
            ticket = client.predict("load", api_name="/arena_next")
            t1 = time.perf_counter()
            stats.next_ms.append((t1 - t0) * 1000)
            if not ticket:
                stats.exhausted = True
                return
            choice = rng.choice(("left", "right", "left", "right", "tie", "both_bad"))
            elapsed = rng.randint(800, 6000)
            if think_s > 0:
                time.sleep(think_s * rng.uniform(0.5, 1.5))
            t2 = time.perf_counter()
            answer = client.predict(ticket["token"], choice, elapsed, api_name="/arena_vote")
            stats.vote_ms.append((time.perf_counter() - t2) * 1000)
            if not (isinstance(answer, dict) and answer.get("ok")):
                stats.errors.append(f"vote {name}: unexpected answer {answer!r}")
                continue
            stats.acked.append(ticket["token"])
            if rng.random() < 0.05:  # a double click: must not store a second vote
                again = client.predict(ticket["token"], choice, elapsed, api_name="/arena_vote")
                stats.double_submits += 1
                if not (isinstance(again, dict) and again.get("ok")):
                    stats.errors.append(f"double submit {name}: {again!r}")
        except Exception as exc:  # noqa: BLE001 - every failure is counted and shown
            stats.errors.append(f"{name}: {type(exc).__name__}: {exc}")


def direct_voter(home: Path, name: str, seconds: float, start: threading.Barrier, stats: WorkerStats) -> None:
    """The same loop against the backend functions, no HTTP: what the backend alone sustains."""
    from backend import arena
    from backend.users import get_user
    from backend.workspace import Workspace

    ws = Workspace(home)
    uid = get_user(ws, name).id
    rng = random.Random(name)
    start.wait()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            t0 = time.perf_counter()
            ticket = arena.next_ticket(ws, "direct", uid)
            t1 = time.perf_counter()
            stats.next_ms.append((t1 - t0) * 1000)
            if ticket is None:
                stats.exhausted = True
                return
            arena.submit_vote(ws, ticket.token, uid, rng.choice(("left", "right", "tie")), 1000)
            stats.vote_ms.append((time.perf_counter() - t1) * 1000)
            stats.acked.append(ticket.token)
        except Exception as exc:  # noqa: BLE001 - counted and shown
            stats.errors.append(f"{name}: {type(exc).__name__}: {exc}")


def run_direct(home: Path, names: list[str], seconds: float) -> None:
    from backend import arena
    from backend.workspace import Workspace

    arena.create_campaign_from_generated(
        Workspace(home),
        "direct",
        ["bench-generated"],
        ["matches the prompt"],
        target_per_pair=3,
        repeat_share=0.1,
    )
    results = [WorkerStats() for _ in names]
    start = threading.Barrier(len(names))
    threads = [
        threading.Thread(target=direct_voter, args=(home, n, seconds, start, r), daemon=True)
        for n, r in zip(names, results, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 60)
    acked = [tok for r in results for tok in r.acked]
    errors = [e for r in results for e in r.errors]
    vote_ms = [v for r in results for v in r.vote_ms]
    next_ms = [v for r in results for v in r.next_ms]
    print(
        f"\nbackend alone (no HTTP, same process): {len(names)} threads x {seconds:.0f}s on campaign 'direct'"
    )
    print(f"  votes: {len(acked)} ({len(acked) / seconds:.1f}/s), errors {len(errors)}")
    print(f"  next_ticket p50 {pct(next_ms, 50):.1f} ms, p99 {pct(next_ms, 99):.1f} ms; "
          f"submit_vote p50 {pct(vote_ms, 50):.1f} ms, p99 {pct(vote_ms, 99):.1f} ms (20 threads, one GIL)")  # fmt: skip


def check_database(home: Path, acked: list[str]) -> dict[str, object]:
    from sqlalchemy import text

    from backend.db import read_session
    from backend.workspace import Workspace

    ws = Workspace(home)
    with read_session(ws) as s:
        stored = {
            row[0]: row[1]
            for row in s.exec(
                text(
                    "SELECT t.token, count(j.id) FROM arenaticket t LEFT JOIN judgment j ON j.ticket_id = t.id "
                    "GROUP BY t.id"
                )
            ).all()
        }
        dup_keys = s.exec(
            text(
                "SELECT count(*) FROM (SELECT 1 FROM judgment GROUP BY pair_id, annotator_id, criterion, is_repeat "
                "HAVING count(*) > 1) AS dup"
            )
        ).one()[0]
        server_ms = [
            r[0] for r in s.exec(text("SELECT server_ms FROM judgment WHERE server_ms IS NOT NULL")).all()
        ]
        judgments = s.exec(text("SELECT count(*) FROM judgment")).one()[0]
        repeats = s.exec(text("SELECT count(*) FROM judgment WHERE is_repeat = TRUE")).one()[0]
        per_pair = [
            r[0]
            for r in s.exec(
                text("SELECT count(*) FROM judgment WHERE is_repeat = FALSE GROUP BY pair_id, criterion")
            ).all()
        ]
    lost = [t for t in acked if stored.get(t, 0) == 0]
    dup_tickets = sum(1 for n in stored.values() if n > 1)
    return {
        "judgments": judgments,
        "repeats": repeats,
        "lost": len(lost),
        "duplicated": dup_tickets + dup_keys,
        "server_ms": server_ms,
        "per_pair": per_pair,
        "acked_unique": len(set(acked)),
    }


def rating_benchmark(
    n_votes: int, rounds: int, systems: int = 10, seed: int = 0
) -> tuple[float, pd.DataFrame]:
    """Seconds for campaign-style ratings (fit + bootstrap intervals) on synthetic Bradley–Terry votes."""
    from backend import stats

    rng = np.random.default_rng(seed)
    names = [f"sys{i}" for i in range(systems)]
    strength = np.linspace(-1.0, 1.0, systems)
    a = rng.integers(0, systems, n_votes)
    b = (a + rng.integers(1, systems, n_votes)) % systems
    p = 1 / (1 + np.exp(-(strength[a] - strength[b])))
    u = rng.random(n_votes)
    outcome = np.where(u < 0.1, "tie", np.where(rng.random(n_votes) < p, "a", "b"))
    votes = pd.DataFrame({"model_a": np.array(names)[a], "model_b": np.array(names)[b], "outcome": outcome})
    t0 = time.perf_counter()
    table = stats.bootstrap_bt(votes, rounds=rounds, seed=seed)
    return time.perf_counter() - t0, table


def server_load(args: argparse.Namespace, engine: str) -> dict[str, float]:
    """Steps 1-5 on the engine the environment names (RECAP_STUDIO_DB_URL or the folder's SQLite)."""
    from tests.conftest import start_studio, stop_studio

    with tempfile.TemporaryDirectory(prefix="arena-load-") as tmp:
        home = Path(tmp) / "home"
        t0 = time.perf_counter()
        names = build_workspace(home, args.annotators, args.prompts)
        print(f"workspace: {args.annotators} annotators, {len(SYSTEMS)} systems x {args.prompts} prompts "
              f"= {args.prompts * 15} pairs, built in {time.perf_counter() - t0:.1f}s")  # fmt: skip
        studio = start_studio(home, demo=False)
        try:
            results = [WorkerStats() for _ in names]
            t1 = time.perf_counter()
            clients = [login(studio.url, n) for n in names]
            print(f"{len(clients)} annotators logged in (gradio_client) in {time.perf_counter() - t1:.1f}s")
            start = threading.Barrier(len(names))
            threads = [
                threading.Thread(
                    target=annotator, args=(c, n, args.seconds, start, r, args.think_s), daemon=True
                )
                for c, n, r in zip(clients, names, results, strict=True)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(args.seconds + 120)
            hung = sum(t.is_alive() for t in threads)
        finally:
            stop_studio(studio)
        acked = [tok for r in results for tok in r.acked]
        errors = [e for r in results for e in r.errors]
        db = check_database(home, acked)
        if args.direct_seconds > 0:
            run_direct(home, names, args.direct_seconds)
        log = studio.log.read_text(errors="replace")
    integrity = log.count("IntegrityError")
    print(
        f"\n{args.annotators} annotators x {args.seconds:.0f}s (think {args.think_s:g} s per pair) through "
        f"arena_next/arena_vote on {studio.url}"
    )
    print(f"  acknowledged votes:   {len(acked)}  ({len(acked) / args.seconds:.1f}/s), "
          f"double submits {sum(r.double_submits for r in results)}")  # fmt: skip
    print(f"  stored judgments:     {db['judgments']}  (of them planned repeats: {db['repeats']})")
    print(
        f"  errors:               {len(errors)}"
        + (f"  e.g. {Counter(errors).most_common(3)}" if errors else "")
    )
    print(f"  lost votes:           {db['lost']}  (acknowledged, not in the database)")
    print(
        f"  duplicated votes:     {db['duplicated']}  (+ {integrity} IntegrityError lines in the server log)"
    )
    print(f"  threads still running after the deadline: {hung}")
    per_pair = db["per_pair"]
    if per_pair:
        print(f"  votes per pair:       min {min(per_pair)}, max {max(per_pair)} "
              f"over {len(per_pair)} pairs touched (target 3)")  # fmt: skip
    server_ms = db["server_ms"]
    vote_ms = [v for r in results for v in r.vote_ms]
    next_ms = [v for r in results for v in r.next_ms]
    print(
        f"  server-side vote (Judgment.server_ms): p50 {pct(server_ms, 50):.1f} ms, p99 {pct(server_ms, 99):.1f} ms"
    )
    print(
        f"  client round trip arena_vote:          p50 {pct(vote_ms, 50):.1f} ms, p99 {pct(vote_ms, 99):.1f} ms"
    )
    print(
        f"  client round trip arena_next:          p50 {pct(next_ms, 50):.1f} ms, p99 {pct(next_ms, 99):.1f} ms"
    )
    if any(r.exhausted for r in results):
        print("  note: some annotators ran out of pairs; raise --prompts")
    return {
        "votes_per_s": len(acked) / args.seconds,
        "errors": len(errors),
        "lost": db["lost"],
        "duplicated": db["duplicated"],
        "server_p50_ms": pct(server_ms, 50),
        "server_p99_ms": pct(server_ms, 99),
    }


def stored_votes_ratings(n_votes: int, rounds: int, systems: int = 10, seed: int = 0) -> dict[str, float]:
    """``n_votes`` synthetic votes imported into the engine in use, then the campaign's ratings
    computed from what is stored (the Results tab's path): seconds for each."""
    import csv

    from backend import arena
    from backend.arena.results import campaign_results
    from backend.db import migrate
    from backend.workspace import Workspace

    rng = np.random.default_rng(seed)
    names = [f"sys{i}" for i in range(systems)]
    strength = np.linspace(-1.0, 1.0, systems)
    with tempfile.TemporaryDirectory(prefix="arena-votes-") as tmp:
        ws = Workspace(Path(tmp) / "home").ensure()
        migrate(ws)
        path = Path(tmp) / "votes.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            out = csv.writer(f)
            out.writerow(["prompt", "left", "right", "winner", "annotator", "criterion", "seed"])
            for v in range(n_votes):
                a = int(rng.integers(systems))
                b = (a + int(rng.integers(1, systems))) % systems
                p = 1 / (1 + np.exp(-(strength[a] - strength[b])))
                u = rng.random()
                winner = "tie" if u < 0.1 else ("left" if rng.random() < p else "right")
                # one vote per (prompt, annotator): the import never folds two votes together
                out.writerow(
                    [f"prompt {v // 50}", names[a], names[b], winner, f"judge{v % 50}", "overall", 0]
                )
        t0 = time.perf_counter()
        arena.import_votes_csv(ws, "stored", path)
        imported = time.perf_counter() - t0
        t0 = time.perf_counter()
        campaign_results(ws, "stored", bootstrap_rounds=rounds, seed=seed)
        return {"import_s": imported, "ratings_s": time.perf_counter() - t0}


@contextlib.contextmanager
def database(engine: str) -> Iterator[None]:
    """The environment names ``engine``'s database for everything run inside (servers included)."""
    from backend.workspace import DB_URL_ENV

    if engine == "sqlite":
        yield
        return
    from tests.postgres_cluster import start_cluster

    cluster = start_cluster({"max_connections": "300"})  # durable defaults otherwise (fsync on)
    try:
        os.environ[DB_URL_ENV] = cluster.new_database(template=None)
        yield
    finally:
        from backend.db import dispose_engines

        dispose_engines(os.environ.pop(DB_URL_ENV))
        cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the annotators vote")
    parser.add_argument("--annotators", type=int, default=20)
    parser.add_argument(
        "--think-s",
        type=float,
        default=0.0,
        help="seconds an annotator looks at a pair before voting (±50%%); 0 = no pause, the worst case",
    )
    parser.add_argument("--prompts", type=int, default=400, help="prompts per system (15 pairs each)")
    parser.add_argument("--rating-votes", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--skip-server", action="store_true", help="no server load (ratings only)")
    parser.add_argument("--engine", choices=("sqlite", "postgresql", "both"), default="sqlite")
    parser.add_argument(
        "--stored-votes", type=int, default=0, help="votes imported into each engine, then rated (0: skip)"
    )
    parser.add_argument(
        "--direct-seconds", type=float, default=10.0, help="also vote on the backend without HTTP (0: skip)"
    )
    args = parser.parse_args()

    engines = ("sqlite", "postgresql") if args.engine == "both" else (args.engine,)
    summary: dict[str, dict[str, float]] = {}
    for engine in engines:
        print(f"\n===== engine: {engine} =====")
        with database(engine):
            row = {} if args.skip_server else server_load(args, engine)
            if args.stored_votes > 0:
                row |= stored_votes_ratings(args.stored_votes, args.rounds)
            summary[engine] = row

    seconds, table = rating_benchmark(args.rating_votes, args.rounds)
    print(f"\nratings: fit + {args.rounds} bootstrap rounds on {args.rating_votes:,} synthetic votes "
          f"({len(table)} systems): {seconds:.2f} s (goal < 3 s)")  # fmt: skip
    widths = (table["upper"] - table["lower"]).round(1).tolist()
    print(f"  interval widths: {widths}; median {statistics.median(widths):.1f} rating points")
    if any(summary.values()):
        keys = sorted({k for row in summary.values() for k in row})
        print("\nper engine: " + ", ".join(keys))
        for engine, row in summary.items():
            print(f"  {engine:<11}" + "  ".join(f"{k}={row.get(k, float('nan')):.2f}" for k in keys))
        print(json.dumps({"engines": summary}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
