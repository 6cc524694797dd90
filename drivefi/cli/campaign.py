"""``drivefi campaign ...``: run fault plans and read their results."""

from __future__ import annotations

from pathlib import Path

import typer

from drivefi.cli.options import (
    AgentConfigOpt,
    AgentOpt,
    AgentTimeoutOpt,
    CarlaHostOpt,
    CarlaPortOpt,
    CarlaRestartOpt,
    CarlaRunTimeoutOpt,
    CarlaServersOpt,
    CarlaTimeoutOpt,
    ExecutorOpt,
    JsonOpt,
    RayAddressOpt,
    RayTimeoutOpt,
    ScenarioArg,
    SimOpt,
    WorkerMemoryOpt,
    console,
    emit_json,
    executor_and_simulator,
    kv_table,
    stack_spec,
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
    executor: str = ExecutorOpt,
    ray_address: str = RayAddressOpt,
    ray_timeout: float = RayTimeoutOpt,
    keep_traces: str = typer.Option("none", "--keep-traces", help="none | hazards | all"),
    seed: int = typer.Option(
        None, "--seed", help="Seed of the sensor noise (default: the scenario's)."
    ),
    batch_size: int = typer.Option(None, "--batch-size", min=1, help="Faults per lock-step batch."),
    carla_host: str = CarlaHostOpt,
    carla_port: int = CarlaPortOpt,
    carla_timeout: float = CarlaTimeoutOpt,
    carla_restart_cmd: str = CarlaRestartOpt,
    carla_servers: str = CarlaServersOpt,
    carla_run_timeout: float = CarlaRunTimeoutOpt,
    worker_memory: int = WorkerMemoryOpt,
    retries: int = typer.Option(
        2, "--retries", min=0, help="Retries of a failed run before it is marked error."
    ),
    agent: str = AgentOpt,
    agent_config: str = AgentConfigOpt,
    agent_timeout: float = AgentTimeoutOpt,
    label: str = typer.Option(
        None, "--label", help="The campaign's role in the report: search | random (or a name)."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Run a fault plan; outcomes are stored as they arrive, so re-running resumes. Campaigns
    started on one --db share its remaining faults."""
    from drivefi.campaign.runner import CampaignOptions, run_campaign
    from drivefi.cli.guard import supervise
    from drivefi.faults.plan import read_plan
    from drivefi.world.scenario import load_scenario

    if keep_traces not in ("none", "hazards", "all"):
        raise InputError(f"--keep-traces: expected none, hazards or all, got '{keep_traces}'")
    sc = load_scenario(scenario)
    from drivefi.run.testbed import Testbed

    stack = stack_spec(agent, agent_config, agent_timeout)
    p = read_plan(plan, stack.points())
    _check_run_inputs(sc, p, db, seed, keep_traces)
    supervise(stack, "campaign run")  # an agent's native crash in its golden run: one line
    ex, simu = executor_and_simulator(executor, workers, ray_address, ray_timeout, sim,
                                      carla_servers, carla_host, carla_port, carla_timeout,
                                      carla_restart_cmd, carla_run_timeout,
                                      worker_memory)  # fmt: skip
    opts = CampaignOptions(seed, keep_traces, batch_size, True, retries, label=label)
    try:
        summary = run_campaign(sc, p, db, ex, Testbed(simu, stack), opts)
    finally:
        ex_close = getattr(ex, "close", None)
        if ex_close is not None:
            ex_close()
    if as_json:
        emit_json(summary.as_dict())
    else:
        console.print(kv_table(f"Campaign {summary.campaign_id}: {sc.name}", summary.as_dict()))


def _check_run_inputs(sc, p, db: Path, seed: int | None, keep_traces: str) -> None:
    """What a campaign would otherwise fail on after creating its database: the plan against
    the scenario, the seed, and the folder for kept traces (``<db>.traces``)."""
    from drivefi.util.atomic import check_output_dir
    from drivefi.util.seeds import check_seed

    p.check_scenario(sc)
    if seed is not None:
        check_seed(seed)
    if keep_traces != "none":
        check_output_dir(Path(str(db.with_suffix("")) + ".traces"), "trace folder")


@campaign_app.command("status")
def campaign_status(db: Path = typer.Option(..., "--db"), as_json: bool = JsonOpt) -> None:
    """Progress and outcome counts of every campaign in a results database (read-only): done
    counts stored outcomes, error the faults whose runs failed, pending the rest."""
    from rich.table import Table

    from drivefi.campaign.store import SUMMARY_COLUMNS, ResultsStore

    store = ResultsStore(db)
    try:
        rows = store.campaigns()
    finally:
        store.close()
    if as_json:
        emit_json({"db": str(db), "campaigns": rows})
        return
    t = Table(title=f"Campaigns in {db}")  # a column per campaign: readable at 80 columns
    t.add_column("campaign", style="bold")
    for r in rows:
        t.add_column(str(r["id"]), justify="right", overflow="fold")
    for c in SUMMARY_COLUMNS[1:]:
        t.add_row(c, *(str(r[c]) for r in rows))
    console.print(t)
    failed = sum(r["error"] + r["stack_failure"] for r in rows)
    if failed:
        console.print(
            f"{failed} run(s) failed (the stack under its fault, or the simulator): "
            f"`drivefi campaign errors --db {db}` shows why"
        )


@campaign_app.command("errors")
def campaign_errors(
    db: Path = typer.Option(..., "--db"),
    campaign: int = typer.Option(None, "--campaign", help="Only this campaign id."),
    as_json: bool = JsonOpt,
) -> None:
    """The faults whose runs failed, with every attempt's reason (read-only)."""
    from rich.table import Table

    from drivefi.campaign.store import ResultsStore

    store = ResultsStore(db)
    try:
        frame = store.errors(campaign)
    finally:
        store.close()
    if as_json:
        emit_json({"db": str(db), "errors": frame.to_dict(orient="records")})
        return
    t = Table(title=f"Failed runs in {db}")
    for c in ("campaign", "idx", "point", "model", "start", "duration", "attempts", "error"):
        t.add_column(c, overflow="fold")
    for r in frame.itertuples(index=False):
        t.add_row(*(str(getattr(r, c)) for c in ("campaign", "idx", "point", "model", "start",
                                                 "duration", "attempts", "error")))  # fmt: skip
    console.print(t)


@campaign_app.command("export")
def campaign_export(
    db: Path = typer.Option(..., "--db"),
    csv: Path = typer.Option(..., "--csv", help="CSV file to write (faults joined with outcomes)."),
    campaign: int = typer.Option(None, "--campaign", help="Only this campaign id."),
    as_json: bool = JsonOpt,
) -> None:
    """Write every fault with its outcome to CSV (atomically: never a truncated file). Column
    ``drawn``: what an m-random fault (point ``*``) drew, its first steps' points and values."""
    from drivefi.campaign.store import ResultsStore
    from drivefi.report.data import campaign_settings, drawn_column
    from drivefi.util.atomic import atomic_path

    store = ResultsStore(db)
    try:
        frame = store.outcomes(campaign)
        settings = campaign_settings(store)
    finally:
        store.close()
    frame.insert(frame.columns.get_loc("seed") + 1, "drawn", drawn_column(frame, settings))
    with atomic_path(csv) as tmp:
        frame.to_csv(tmp, index=False)
    info = {"csv": str(csv), "rows": len(frame)}
    emit_json(info) if as_json else console.print(kv_table("Export", info))


def register(app: typer.Typer) -> None:
    app.add_typer(campaign_app, name="campaign")
