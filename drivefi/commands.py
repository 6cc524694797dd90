"""Command groups defined next to the code they drive, attached to the ``drivefi`` app."""

from __future__ import annotations

import importlib

import typer

MODULES = ["drivefi.campaign.cli", "drivefi.tbn.cli", "drivefi.search_cli"]


def register(app: typer.Typer) -> None:
    """Attach every command group that is available."""
    for name in MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name and name.startswith(err.name):
                continue
            raise
        mod.register(app)
