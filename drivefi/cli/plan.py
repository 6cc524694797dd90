"""``drivefi plan ...``: make fault plans (CSV)."""

from __future__ import annotations

from pathlib import Path

import typer

from drivefi.cli.options import (
    AgentConfigOpt,
    AgentOpt,
    JsonOpt,
    ScenarioArg,
    console,
    csv_list,
    emit_json,
    kv_table,
    stack_spec,
)

plan_app = typer.Typer(no_args_is_help=True, help="Make fault plans (CSV).")


@plan_app.command("random")
def plan_random(
    scenario: str = ScenarioArg,
    model: str = typer.Option(..., "--model", help="1-random | m-random | bitflip"),
    count: int = typer.Option(..., "--count", min=1, help="Number of faults."),
    m: int = typer.Option(1, "--m", min=1, help="Duration in steps (m-random, bitflip)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the draws."),
    points: str = typer.Option(
        None, "--points", help="Comma-separated injection points (default: all)."
    ),
    out: Path = typer.Option(..., "--out", help="Plan CSV to write."),
    agent: str = AgentOpt,
    agent_config: str = AgentConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Random faults: uniform start step, point and value (or bit), over the stack's points."""
    from drivefi.faults.plan import random_plan, write_plan
    from drivefi.util.atomic import check_output
    from drivefi.world.scenario import load_scenario

    sc = load_scenario(scenario)
    check_output(out, "--out")
    known = stack_spec(agent, agent_config).points()
    plan = random_plan(sc, model, count, m, seed, csv_list(points, what="--points"), known)
    write_plan(plan, out, "--out")
    _plan_summary(plan, out, as_json)


@plan_app.command("exhaustive")
def plan_exhaustive(
    scenario: str = ScenarioArg,
    points: str = typer.Option(
        None, "--points", help="Comma-separated injection points (default: all)."
    ),
    values: str = typer.Option(
        None,
        "--values",
        help="Comma-separated values for every point (default: each point's grid).",
    ),
    durations: str = typer.Option(
        "1", "--durations", help="Comma-separated durations in steps, e.g. 1,5,20."
    ),
    stride: int = typer.Option(1, "--stride", min=1, help="Every K-th start step."),
    out: Path = typer.Option(..., "--out", help="Plan CSV to write."),
    agent: str = AgentOpt,
    agent_config: str = AgentConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Every start step x point x value x duration (value grids from each point's range)."""
    from drivefi.faults.plan import exhaustive, write_plan
    from drivefi.util.atomic import check_output
    from drivefi.world.scenario import load_scenario

    sc = load_scenario(scenario)
    check_output(out, "--out")
    known = stack_spec(agent, agent_config).points()
    pts = csv_list(points, what="--points") or [p.name for p in known]
    vals = csv_list(values, float, "--values")
    plan = exhaustive(
        sc,
        pts,
        {p: vals for p in pts} if vals else None,
        csv_list(durations, int, "--durations"),
        stride,
        known,
    )
    write_plan(plan, out, "--out")
    _plan_summary(plan, out, as_json)


def _plan_summary(plan, out: Path, as_json: bool) -> None:
    from collections import Counter

    info = {"plan": str(out), "scenario": plan.scenario, "faults": len(plan.faults)}
    info.update({f"model {k}": v for k, v in sorted(Counter(f.model for f in plan.faults).items())})
    if as_json:
        emit_json(info)
    else:
        console.print(kv_table("Fault plan", info))


def register(app: typer.Typer) -> None:
    app.add_typer(plan_app, name="plan")
