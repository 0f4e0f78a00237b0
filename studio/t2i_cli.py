"""Commands for text-to-image work: ``t2i train``, ``generate``, ``eval`` (placeholder, built for issue 4)."""

from __future__ import annotations

import typer

t2i_app = typer.Typer(help="Fine-tune text-to-image pipelines on a caption mix.", no_args_is_help=True)


def generate_cmd() -> None:
    """Generate images from prompt sets × checkpoints × seeds."""
    raise typer.Exit(2)


def eval_cmd() -> None:
    """Automatic metrics of generated images."""
    raise typer.Exit(2)
