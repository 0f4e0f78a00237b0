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
from backend.workspace import Workspace, open_workspace
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
    home: Annotated[
        str | None,
        typer.Option("--home", help="Workspace folder (default: $RECAP_STUDIO_HOME or ~/recap-studio)."),
    ] = None,
) -> None:
    State.home = home


@app.command("import")
def import_cmd(
    source: Annotated[
        Path, typer.Argument(help="Folder, table (.csv/.jsonl/.parquet), .tar shard(s) or datasets folder.")
    ],
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset to import into (created if new).")],
    fmt: Annotated[str, typer.Option("--format", help="auto|folder|table|webdataset|hf")] = "auto",
    image_column: Annotated[str | None, typer.Option(help="Table column with image paths.")] = None,
    caption_column: Annotated[str | None, typer.Option(help="Table column with alt-text.")] = None,
    max_pixels: Annotated[
        int | None,
        typer.Option(min=1, help="Reject images with more pixels than this (decompression bombs)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary as the last line.")] = False,
) -> None:
    """Import images and their alt-text; bad items are skipped with a reason."""
    from backend.images import DEFAULT_MAX_PIXELS
    from backend.ingest import SourceError, import_source

    ws = _ws()
    try:
        with progress_bar(enabled=sys.stderr.isatty() or not as_json) as update:
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
    except SourceError as exc:
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


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 7860,
) -> None:
    """Start the studio web app (login required)."""
    from studio.app import serve as serve_app

    ws = _ws()
    out.print(f"RECAP Studio on http://{host}:{port}  (workspace {ws.home})")
    serve_app(ws, host=host, port=port)


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


@user_app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(help="Login name.")],
    role: Annotated[str, typer.Option("--role", help="admin or annotator")] = "annotator",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
) -> None:
    """Add a user. The password is read from stdin (--password-stdin) or prompted for."""
    from backend.users import UserError, add_user

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = add_user(_ws(), name, role, password)
    except UserError as exc:
        raise fail(str(exc)) from None
    out.print(f"Added {user.role} '{user.name}'.")


@user_app.command("list")
def user_list() -> None:
    """List users and roles."""
    from backend.users import list_users

    table = Table("name", "role", "active")
    for u in list_users(_ws()):
        table.add_row(u.name, u.role, "yes" if u.active else "no")
    out.print(table)


# runs: model jobs, the runs list and tiny models (studio/runs_cli.py)
from studio import runs_cli  # noqa: E402 - registered on the app defined above

app.add_typer(runs_cli.captioner_app, name="captioner")
app.command("recaption")(runs_cli.recaption_cmd)
app.add_typer(runs_cli.score_app, name="score")
app.add_typer(runs_cli.runs_app, name="runs")
app.add_typer(runs_cli.models_app, name="models")

# text-to-image: training, generation, automatic metrics (studio/t2i_cli.py)
from studio import t2i_cli  # noqa: E402

app.add_typer(t2i_cli.t2i_app, name="t2i")
app.command("generate")(t2i_cli.generate_cmd)
app.command("eval")(t2i_cli.eval_cmd)

# arena: blind pairwise campaigns and their results (studio/arena_cli.py)
from studio import arena_cli  # noqa: E402

app.add_typer(arena_cli.arena_app, name="arena")


if __name__ == "__main__":
    app()
