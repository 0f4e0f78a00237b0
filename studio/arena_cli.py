"""Commands for the Arena: ``arena create|import-votes|export-votes|results`` (placeholder, issue 5)."""

from __future__ import annotations

import typer

arena_app = typer.Typer(help="Blind pairwise evaluation campaigns.", no_args_is_help=True)
