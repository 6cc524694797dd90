"""``drivefi record``: record the golden (fault-free) run of a scenario."""

from __future__ import annotations

from pathlib import Path

import typer

from drivefi.cli.options import (
    AgentConfigOpt,
    AgentOpt,
    AgentTimeoutOpt,
    CarlaHostOpt,
    CarlaPortOpt,
    CarlaTimeoutOpt,
    JsonOpt,
    ScenarioArg,
    SimOpt,
    console,
    emit_json,
    kv_table,
    simulator,
    stack_spec,
)


def record_cmd(
    scenario: str = ScenarioArg,
    out: Path = typer.Option(
        None, "--out", help="Trace file (Parquet); default out/<scenario>.golden.parquet"
    ),
    seed: int = typer.Option(
        None, "--seed", help="Seed of the sensor noise (default: the scenario's)."
    ),
    sim: str = SimOpt,
    carla_host: str = CarlaHostOpt,
    carla_port: int = CarlaPortOpt,
    carla_timeout: float = CarlaTimeoutOpt,
    agent: str = AgentOpt,
    agent_config: str = AgentConfigOpt,
    agent_timeout: float = AgentTimeoutOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Record the golden (fault-free) run of a scenario and print its summary."""
    from drivefi.cli.guard import supervise
    from drivefi.run.golden import record_golden
    from drivefi.run.testbed import Testbed
    from drivefi.run.trace import write_trace
    from drivefi.util.atomic import check_output
    from drivefi.util.seeds import check_seed
    from drivefi.world.scenario import load_scenario

    sc = load_scenario(scenario)
    if seed is not None:
        check_seed(seed)
    out = out or Path("out") / f"{sc.name}.golden.parquet"
    check_output(out, "--out")
    testbed = Testbed.of(
        stack_spec(agent, agent_config, agent_timeout),
        simulator(sim, carla_host, carla_port, carla_timeout),
    )
    supervise(testbed.stack, "record")  # an agent's native crash: one line, not a dead process
    trace = record_golden(sc, seed, testbed=testbed, snapshots=False).trace
    write_trace(trace, out, "--out")
    summary = {**trace.summary(), "stack": trace.meta.get("stack"), "trace": str(out)}
    if as_json:
        emit_json(summary)
    else:
        console.print(kv_table(f"Golden run: {sc.name}", summary))


def register(app: typer.Typer) -> None:
    app.command("record")(record_cmd)
