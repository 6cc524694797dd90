"""``drivefi points``: the injection points of the stack under test."""

from __future__ import annotations

import typer

from drivefi.cli.options import AgentOpt, JsonOpt, console, emit_json


def points_cmd(agent: str = AgentOpt, as_json: bool = JsonOpt) -> None:
    """List the stack's injection points: name, range, unit, module (an agent's declared ones too)."""
    from rich.table import Table

    from drivefi.stacks import describe_points, stack_identity, stack_points

    rows = describe_points(stack_points(agent))
    if as_json:
        emit_json({"stack": stack_identity(agent), "points": rows})
        return
    t = Table(title=f"Injection points of {stack_identity(agent)}")
    for c in ("name", "range", "unit", "module", "description"):
        t.add_column(c)
    for r in rows:
        t.add_row(r["name"], f"{r['lo']:g} .. {r['hi']:g}", r["unit"], r["module"], r["doc"])
    console.print(t)


def register(app: typer.Typer) -> None:
    app.command("points")(points_cmd)
