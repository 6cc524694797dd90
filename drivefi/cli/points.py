"""``drivefi points``: the injection points of the stack under test."""

from __future__ import annotations

import typer

from drivefi.cli.options import AgentConfigOpt, AgentOpt, JsonOpt, console, emit_json, stack_spec


def points_cmd(
    agent: str = AgentOpt, agent_config: str = AgentConfigOpt, as_json: bool = JsonOpt
) -> None:
    """List the stack's injection points: name, range, unit, module (an agent's declared ones too)."""
    from rich.table import Table

    from drivefi.stacks import describe_points

    stack = stack_spec(agent, agent_config)
    rows = describe_points(stack.points())
    if as_json:
        emit_json({"stack": stack.identity, "points": rows})
        return
    t = Table(title=f"Injection points of {stack.identity}")
    for c in ("name", "range", "unit", "module", "description"):
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(r["name"], f"{r['lo']:g} .. {r['hi']:g}", r["unit"], r["module"], r["doc"])
    console.print(t)


def register(app: typer.Typer) -> None:
    app.command("points")(points_cmd)
