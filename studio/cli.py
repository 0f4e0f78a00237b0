"""The ``recap-studio`` command line (typer). It calls the same backend functions as the UI.

Exit codes: 0 success (an import that skipped bad items still succeeded), 1 an
operation failed, 2 bad usage or a source that cannot be read — with one clear line on
stderr and nothing written.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from backend.db import migrate
from backend.workspace import DB_URL_ENV, Workspace, open_workspace
from studio import startup
from studio.console import fail, out, progress_bar

app = typer.Typer(help="RECAP Studio: recaptioning workflow for text-to-image models.", no_args_is_help=True)
user_app = typer.Typer(help="Manage studio users.", no_args_is_help=True)
app.add_typer(user_app, name="user")


class State:
    home: str | None = None


def _ws() -> Workspace:
    ws = open_workspace(State.home)
    migrate(ws)
    return ws


@app.callback()
def main(
    ctx: typer.Context,
    home: Annotated[
        str | None,
        typer.Option("--home", help="Workspace folder (default: $RECAP_STUDIO_HOME or ~/recap-studio)."),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="Database URL, e.g. postgresql://user:password@host:5432/studio for a team "
            "(default: $RECAP_STUDIO_DB_URL, else the folder's own SQLite studio.db).",
        ),
    ] = None,
) -> None:
    if ctx.invoked_subcommand != "serve":  # the console script paused it; serve resumes it
        startup.resume_collector()  # once the server answers (studio/startup.py)
    State.home = home
    if db:
        from backend.db import normalise_url

        try:
            normalise_url(db)
        except ValueError as exc:
            raise fail(str(exc)) from None
        # through the environment: job runners started from here must open the same database
        os.environ[DB_URL_ENV] = db


@app.command("import")
def import_cmd(
    source: Annotated[
        str,
        typer.Argument(
            help="Folder, table (.csv/.jsonl/.parquet), .tar shard(s) or datasets folder; with --by-reference "
            "also a URI (s3://bucket/prefix/)."
        ),
    ],
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset to import into (created if new).")],
    fmt: Annotated[str, typer.Option("--format", help="auto|folder|table|webdataset|hf")] = "auto",
    image_column: Annotated[str | None, typer.Option(help="Table column with image paths.")] = None,
    caption_column: Annotated[str | None, typer.Option(help="Table column with alt-text.")] = None,
    max_pixels: Annotated[
        int | None,
        typer.Option(min=1, help="Reject images with more pixels than this (decompression bombs)."),
    ] = None,
    by_reference: Annotated[
        bool,
        typer.Option(
            "--by-reference",
            help="Register .tar / .parquet shards where they lie (key, size, SHA-256, alt-text) instead of "
            "copying their images into the workspace: for corpora too large to import.",
        ),
    ] = False,
    engine: Annotated[
        str, typer.Option(help="With --by-reference: local|ray (one task per shard on a Ray cluster).")
    ] = "local",
    ray_address: Annotated[
        str, typer.Option(help="With --engine ray: the cluster (host:port, or auto); empty starts Ray here.")
    ] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary as the last line.")] = False,
) -> None:
    """Import images and their alt-text; bad items are skipped with a reason."""
    from backend.images import DEFAULT_MAX_PIXELS
    from backend.ingest import SourceError, import_source
    from backend.ingest.by_reference import register_shards
    from backend.ray_cluster import RayUnavailable

    if not by_reference and (engine != "local" or ray_address):
        raise fail("--engine and --ray-address apply to --by-reference imports")
    if by_reference and fmt not in ("auto", "webdataset", "table"):
        raise fail(f"--by-reference reads .tar and .parquet shards, not --format {fmt}")
    ws = _ws()
    try:
        with progress_bar(enabled=sys.stderr.isatty() or not as_json) as update:
            if by_reference:
                report = register_shards(
                    ws,
                    source,
                    dataset,
                    engine=engine,
                    ray_address=ray_address,
                    image_column=image_column,
                    caption_column=caption_column,
                    max_pixels=max_pixels or DEFAULT_MAX_PIXELS,
                    progress=update,
                )
            else:
                report = import_source(
                    ws,
                    source,
                    dataset,
                    fmt=fmt,
                    image_column=image_column,
                    caption_column=caption_column,
                    max_pixels=max_pixels or DEFAULT_MAX_PIXELS,
                    progress=update,
                )
    except (SourceError, RayUnavailable) as exc:
        raise fail(str(exc)) from None
    except OSError as exc:  # the workspace's fault (disk full, permissions), not the source's
        raise fail(str(exc), 1) from None
    summary = report.as_dict()
    if as_json:
        print(json.dumps(summary))
        return
    skipped = summary["skipped"]
    out.print(
        f"Imported {summary['imported']} images into '{summary['dataset']}': "
        f"{summary['duplicates']} duplicates, {len(skipped)} skipped.",
        markup=False,
        highlight=False,
    )
    shown = 50
    for skip in skipped[:shown]:
        out.print(
            f"  skipped {skip['item']}: {skip['reason']}", markup=False, highlight=False, soft_wrap=True
        )
    if len(skipped) > shown:
        out.print(f"  ... and {len(skipped) - shown} more (use --json for the full list)", markup=False)
    recoded = summary["not_utf8"]  # imported, but their encoding was inferred: worth checking
    for text in recoded[:shown]:
        out.print(
            f"  not UTF-8, read as {text['read_as']}: {text['item']} ({text['text']})",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    if len(recoded) > shown:
        out.print(
            f"  ... and {len(recoded) - shown} more not UTF-8 (use --json for the full list)", markup=False
        )


@app.command()
def stats(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Image and caption counts of a dataset."""
    from backend.datasets import DatasetNotFound, dataset_summary

    try:
        summary = dataset_summary(_ws(), name)
    except DatasetNotFound as exc:
        raise fail(str(exc)) from None
    if as_json:
        print(json.dumps({"images": summary.images, "captions": summary.captions}))
        return
    table = Table("caption kind", "count", title=f"{name}: {summary.images} images")
    for kind, n in summary.captions.items():
        table.add_row(kind, str(n))
    out.print(table)


@app.command()
def datasets() -> None:
    """List datasets."""
    from backend.datasets import all_summaries

    table = Table("dataset", "images", "captions")
    for s in all_summaries(_ws()):
        table.add_row(s.name, str(s.images), ", ".join(f"{k}: {v}" for k, v in s.captions.items()))
    out.print(table)


@app.command()
def export(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    fmt: Annotated[str, typer.Option("--format", help="folder|jsonl|parquet|webdataset|hf")],
    out_path: Annotated[
        Path, typer.Option("--out", help="Output path (relative paths go under the workspace's exports/).")
    ],
    kind: Annotated[
        str | None, typer.Option("--kind", help="Caption kind for folder export's .txt files.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Export a dataset with every caption kind and its provenance."""
    from backend.export import ExportError, export_dataset

    ws = _ws()
    try:
        with progress_bar(enabled=not as_json) as update:
            report = export_dataset(ws, name, fmt, out_path, kind=kind, progress=update)
    except ExportError as exc:
        raise fail(str(exc)) from None
    summary = report.as_dict()
    if as_json:
        print(json.dumps(summary))
    else:
        kinds = ", ".join(f"{k}: {n}" for k, n in summary["captions"].items())
        out.print(
            f"Exported {summary['images']} images ({kinds}) to {summary['path']}",
            markup=False,
            soft_wrap=True,
        )
        if summary["missing_kind"]:
            out.print(
                f"  {summary['missing_kind']} images had no {summary['kind'] or 'alttext'} caption",
                markup=False,
            )


@app.command("migrate")
def migrate_cmd(
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="The empty database to copy into: postgresql://user:password@host/db, sqlite:///path/studio.db, "
            "or a workspace folder (its studio.db).",
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the per-table counts as JSON.")] = False,
) -> None:
    """Copy this workspace's database (see --db) into another engine, every table's count checked.

    SQLite to PostgreSQL for a team, and back. The images, runs and exports stay in the workspace
    folder; afterwards start the studio with --db (or $RECAP_STUDIO_DB_URL) set to the new database.
    """
    from backend.db import DatabaseUnavailable, DatabaseURLError, normalise_url
    from backend.db_copy import CopyError, copy_database

    source = _ws()
    try:
        target_url = normalise_url(to) if "://" in to else Workspace(Path(to).expanduser().resolve()).default_db_url
        target = Workspace(source.home, target_url)
        with progress_bar(enabled=not as_json) as update:
            report = copy_database(source, target, progress=update)
    except (CopyError, DatabaseURLError, DatabaseUnavailable) as exc:
        raise fail(str(exc)) from None
    if as_json:
        print(json.dumps(report.as_dict()))
        return
    table = Table("table", "rows", title=f"{report.source} -> {report.target}: {report.total} rows, counts equal")
    for name, n in report.rows.items():
        table.add_row(name, str(n))
    out.print(table)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 7860,
    session_hours: Annotated[
        float | None,
        typer.Option(help="How long a login lasts (default $RECAP_STUDIO_SESSION_HOURS or 12)."),
    ] = None,
    max_upload_mb: Annotated[
        int | None,
        typer.Option(
            help="Largest file a form accepts, in MB (default $RECAP_STUDIO_MAX_UPLOAD_MB or 1024)."
        ),
    ] = None,
) -> None:
    """Start the studio web app (login required)."""
    from studio.app import max_upload_mb as upload_limit
    from studio.app import serve as serve_app
    from studio.sessions import session_hours as session_limit

    try:  # a bad setting is one line now, not a traceback once the server starts
        session_limit(session_hours)
        upload_limit(max_upload_mb)
    except ValueError as exc:
        raise fail(str(exc)) from None
    ws = _ws()
    out.print(f"RECAP Studio on http://{host}:{port}  (workspace {ws.home})")
    serve_app(ws, host=host, port=port, session_hours=session_hours, max_upload=max_upload_mb)


@app.command()
def demo(
    serve_after: Annotated[bool, typer.Option("--serve", help="Start the studio afterwards.")] = False,
    host: Annotated[str, typer.Option(help="Interface to listen on (with --serve).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (with --serve).")] = 7860,
) -> None:
    """Create the offline demo workspace (idempotent) and print how to log in."""
    from backend.demo import PASSWORD_ENV, create_demo
    from backend.users import UserError

    ws = _ws()
    try:
        info = create_demo(ws)
    except UserError as exc:  # the users come first, so nothing else was written
        source = f" (from ${PASSWORD_ENV})" if os.environ.get(PASSWORD_ENV) else ""
        raise fail(f"demo users{source}: {exc}") from None
    out.print(info.describe(), markup=False, highlight=False, soft_wrap=True)
    if serve_after:
        from studio.app import serve as serve_app

        out.print(f"Open http://{host}:{port} and log in as above.")
        serve_app(ws, host=host, port=port)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from stdin (else it is prompted for).")
]


@user_app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(help="Login name.")],
    role: Annotated[str, typer.Option("--role", help="admin or annotator")] = "annotator",
    password_stdin: PasswordStdin = False,
) -> None:
    """Add a user (password of at least 12 characters, read from stdin or prompted for)."""
    from backend.users import UserError, add_user

    password = _read_password(password_stdin)
    try:
        user = add_user(_ws(), name, role, password)
    except UserError as exc:
        raise fail(str(exc)) from None
    out.print(f"Added {user.role} '{user.name}'.")


@user_app.command("passwd")
def user_passwd(
    name: Annotated[str, typer.Argument(help="Login name.")],
    password_stdin: PasswordStdin = False,
) -> None:
    """Set a user's password: their open sessions end and any login lock is lifted."""
    from backend.users import UserError, set_password

    password = _read_password(password_stdin)
    try:
        set_password(_ws(), name, password)
    except UserError as exc:
        raise fail(str(exc)) from None
    out.print(f"Password of '{name}' changed; their open sessions end.", markup=False, highlight=False)


def _set_active(name: str, active: bool) -> None:
    from backend.users import UserError, set_active

    try:
        set_active(_ws(), name, active)
    except UserError as exc:
        raise fail(str(exc)) from None
    out.print(f"User '{name}' {'enabled' if active else 'disabled'}.", markup=False, highlight=False)


@user_app.command("disable")
def user_disable(name: Annotated[str, typer.Argument(help="Login name.")]) -> None:
    """Disable a login (open sessions end within seconds); captions and votes stay."""
    _set_active(name, False)


@user_app.command("enable")
def user_enable(name: Annotated[str, typer.Argument(help="Login name.")]) -> None:
    """Enable a disabled login again (and lift any login lock)."""
    _set_active(name, True)


@user_app.command("unlock")
def user_unlock(name: Annotated[str, typer.Argument(help="Login name.")]) -> None:
    """Lift the lock that repeated failed logins put on a user name."""
    from backend.users import unlock

    lifted = unlock(_ws(), name)
    out.print(
        f"Lock on '{name}' lifted." if lifted else f"'{name}' was not locked.", markup=False, highlight=False
    )


@user_app.command("list")
def user_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List users: role, whether they may log in, and any login lock."""
    from backend.users import list_users, locked_names

    ws = _ws()
    users, locks = list_users(ws), locked_names(ws)
    if as_json:
        records = [
            {
                "name": u.name,
                "role": u.role,
                "active": u.active,
                "locked_until": locks[u.name].isoformat() if u.name in locks else None,
            }
            for u in users
        ]
        print(json.dumps(records))
        return
    table = Table("name", "role", "active", "locked until")
    for u in users:
        until = locks.get(u.name)
        table.add_row(
            u.name, u.role, "yes" if u.active else "no", until.isoformat(timespec="seconds") if until else ""
        )
    out.print(table)


# runs and models (studio/runs_cli.py), text-to-image reports (studio/t2i_cli.py); every job command
# (captioner train, recaption, score clip, t2i train, generate, eval, runs selftest) is generated
# from its job kind's schema by studio/job_cli.py
from studio import job_cli, miniature_cli, runs_cli, t2i_cli  # noqa: E402 - registered on the app defined above

app.add_typer(runs_cli.captioner_app, name="captioner")
app.add_typer(runs_cli.score_app, name="score")
app.add_typer(runs_cli.runs_app, name="runs")
app.add_typer(runs_cli.models_app, name="models")
app.add_typer(t2i_cli.t2i_app, name="t2i")
app.add_typer(miniature_cli.miniature_app, name="miniature")
app.add_typer(miniature_cli.experiment_app, name="experiment")
job_groups = {"captioner": runs_cli.captioner_app, "score": runs_cli.score_app, "runs": runs_cli.runs_app}
job_cli.register(
    app,
    {
        **job_groups, "t2i": t2i_cli.t2i_app, "miniature": miniature_cli.miniature_app,
        "experiment": miniature_cli.experiment_app,
    },
)  # fmt: skip

# arena: blind pairwise campaigns and their results (studio/arena_cli.py)
from studio import arena_cli  # noqa: E402

app.add_typer(arena_cli.arena_app, name="arena")

# structured prompt sets: what the extractor read per prompt (studio/prompts_cli.py)
from studio import prompts_cli  # noqa: E402

app.add_typer(prompts_cli.prompts_app, name="prompts")


if __name__ == "__main__":
    app()
