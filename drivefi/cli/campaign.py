"""``drivefi campaign ...``: run fault plans and read their results."""

from __future__ import annotations

from pathlib import Path

import typer

from drivefi.cli.options import (
    AgentOpt,
    CarlaHostOpt,
    CarlaPortOpt,
    CarlaRestartOpt,
    CarlaTimeoutOpt,
    JsonOpt,
    ScenarioArg,
    SimOpt,
    bridge_options,
    console,
    emit_json,
    kv_table,
)
from drivefi.errors import InputError

campaign_app = typer.Typer(no_args_is_help=True, help="Run fault plans and read their results.")


@campaign_app.command("run")
def campaign_run(
    scenario: str = ScenarioArg,
    plan: Path = typer.Argument(..., help="Plan CSV."),
    db: Path = typer.Option(..., "--db", help="Results database (SQLite); created or resumed."),
    workers: int = typer.Option(1, "--workers", min=1, help="Parallel worker processes."),
    sim: str = SimOpt,
    executor: str = typer.Option("local", "--executor", help="local | ray"),
    ray_address: str = typer.Option(
        None, "--ray-address", help="Ray cluster address (default: start a local one)."
    ),
    keep_traces: str = typer.Option("none", "--keep-traces", help="none | hazards | all"),
    seed: int = typer.Option(
        None, "--seed", help="Seed of the sensor noise (default: the scenario's)."
    ),
    batch_size: int = typer.Option(None, "--batch-size", min=1, help="Faults per lock-step batch."),
    carla_host: str = CarlaHostOpt,
    carla_port: int = CarlaPortOpt,
    carla_timeout: float = CarlaTimeoutOpt,
    carla_restart_cmd: str = CarlaRestartOpt,
    retries: int = typer.Option(
        2, "--retries", min=0, help="Retries of a failed run before it is marked error."
    ),
    agent: str = AgentOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Run a fault plan; outcomes are stored as they arrive, so re-running resumes."""
    from drivefi.campaign.executor import make_executor
    from drivefi.campaign.runner import run_campaign
    from drivefi.plan import read_plan
    from drivefi.scenario import load_scenario

    if keep_traces not in ("none", "hazards", "all"):
        raise InputError(f"--keep-traces: expected none, hazards or all, got '{keep_traces}'")
    sc = load_scenario(scenario)
    from drivefi.stack import stack_points

    p = read_plan(plan, stack_points(agent))
    opts = bridge_options(sim, carla_host, carla_port, carla_timeout, carla_restart_cmd)
    summary = run_campaign(
        sc, p, db, make_executor(executor, workers, ray_address), seed, sim, keep_traces, batch_size,
        progress=True, bridge_options=opts, retries=retries, agent=agent,
    )  # fmt: skip
    if as_json:
        emit_json(summary.as_dict())
    else:
        console.print(kv_table(f"Campaign {summary.campaign_id}: {sc.name}", summary.as_dict()))


@campaign_app.command("status")
def campaign_status(db: Path = typer.Option(..., "--db"), as_json: bool = JsonOpt) -> None:
    """Progress and outcome counts of every campaign in a results database."""
    from rich.table import Table

    from drivefi.campaign.store import SUMMARY_COLUMNS, ResultsStore

    if not db.is_file():
        raise InputError(f"{db}: results database not found")
    store = ResultsStore(db)
    rows = store.campaigns()
    store.close()
    if as_json:
        emit_json({"db": str(db), "campaigns": rows})
        return
    t = Table(title=f"Campaigns in {db}")
    cols = SUMMARY_COLUMNS
    for c in cols:
        t.add_column(c)
    for r in rows:
        t.add_row(*(str(r[c]) for c in cols))
    console.print(t)


@campaign_app.command("export")
def campaign_export(
    db: Path = typer.Option(..., "--db"),
    csv: Path = typer.Option(..., "--csv", help="CSV file to write (faults joined with outcomes)."),
    campaign: int = typer.Option(None, "--campaign", help="Only this campaign id."),
    as_json: bool = JsonOpt,
) -> None:
    """Write every fault with its outcome to CSV."""
    from drivefi.campaign.store import ResultsStore

    if not db.is_file():
        raise InputError(f"{db}: results database not found")
    store = ResultsStore(db)
    frame = store.outcomes(campaign)
    store.close()
    csv.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(csv, index=False)
    info = {"csv": str(csv), "rows": len(frame)}
    emit_json(info) if as_json else console.print(kv_table("Export", info))


def register(app: typer.Typer) -> None:
    app.add_typer(campaign_app, name="campaign")
