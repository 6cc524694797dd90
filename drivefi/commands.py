"""Command groups defined next to the code they drive, attached to the ``drivefi`` app."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Attach every command group that is available."""
