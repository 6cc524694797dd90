"""``drivefi scenarios``: list the bundled scenarios."""

from __future__ import annotations

import typer
from rich.table import Table

from drivefi.cli.options import JsonOpt, console, emit_json


def scenarios_cmd(as_json: bool = JsonOpt) -> None:
    """List the bundled scenarios."""
    from drivefi.world.scenario import bundled_names, load_scenario

    items = []
    for name in bundled_names():
        sc = load_scenario(name)
        items.append(
            {
                "name": name,
                "duration": sc.duration,
                "dt": sc.dt,
                "actors": len(sc.actors),
                "description": sc.description,
            }
        )
    if as_json:
        emit_json({"scenarios": items})
        return
    t = Table(title="Bundled scenarios")
    for c in ("name", "duration [s]", "actors", "description"):
        t.add_column(c, overflow="fold")
    for it in items:
        t.add_row(it["name"], f"{it['duration']:g}", str(it["actors"]), it["description"])
    console.print(t)


def register(app: typer.Typer) -> None:
    app.command("scenarios")(scenarios_cmd)
