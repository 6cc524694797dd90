"""``drivefi plan ...`` and ``drivefi campaign ...`` commands."""

from __future__ import annotations

from pathlib import Path

import typer

from drivefi.cli import (
    CarlaHostOpt,
    CarlaPortOpt,
    CarlaRestartOpt,
    CarlaTimeoutOpt,
    JsonOpt,
    SimOpt,
    bridge_options,
    console,
    emit_json,
    kv_table,
)
from drivefi.errors import InputError

plan_app = typer.Typer(no_args_is_help=True, help="Make fault plans (CSV).")
campaign_app = typer.Typer(no_args_is_help=True, help="Run fault plans and read their results.")

# where faults run (campaign run, pipeline)
ExecutorOpt = typer.Option("local", "--executor", help="local | ray")
RayAddressOpt = typer.Option(
    None,
    "--ray-address",
    help="Ray cluster to join (host:port of the head, ray://host:port or auto); "
    "default with --executor ray: a local Ray on 127.0.0.1 only.",
)
RayTimeoutOpt = typer.Option(
    20.0, "--ray-timeout", min=1.0, help="Seconds to reach and join --ray-address (else exit 2)."
)
CarlaServersOpt = typer.Option(
    None,
    "--carla-servers",
    help="A pool of CARLA servers, host:port[,host:port...] or @FILE (one a line): one Ray actor "
    "per server; --carla-restart-cmd may use {host} and {port}.",
)
CarlaRunTimeoutOpt = typer.Option(
    None,
    "--carla-run-timeout",
    min=1.0,
    help="Seconds a pool server may take for one run before it counts as hung "
    "(default 60 + 0.25 x scenario steps).",
)


def executor_and_bridge(
    executor: str,
    workers: int,
    ray_address: str | None,
    ray_timeout: float,
    sim: str,
    carla_servers: str | None,
    carla_host: str,
    carla_port: int,
    carla_timeout: float,
    carla_restart_cmd: str | None,
    carla_run_timeout: float | None = None,
):
    """The campaign's executor and bridge options from the command line (checked, nothing started)."""
    from drivefi.campaign.executor import make_executor

    if executor not in ("local", "ray"):
        raise InputError(f"--executor: expected local or ray, got '{executor}'")
    if carla_servers:
        from drivefi.campaign.carla_pool import CarlaPoolExecutor, parse_servers

        if sim != "carla":
            raise InputError("--carla-servers: needs --sim carla")
        servers = parse_servers(carla_servers)
        ex = CarlaPoolExecutor(
            servers, ray_address, ray_timeout, carla_restart_cmd, carla_run_timeout
        )
        return ex, {"timeout": carla_timeout}
    opts = bridge_options(sim, carla_host, carla_port, carla_timeout, carla_restart_cmd)
    return make_executor(executor, workers, ray_address, ray_timeout), opts


def _csv_list(text: str | None, conv=str, what: str = "list") -> list | None:
    if not text:
        return None
    try:
        return [conv(x.strip()) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{what}: expected a comma-separated list, got '{text}'") from None


@plan_app.command("random")
def plan_random(
    scenario: str = typer.Argument(..., help="Bundled scenario name or YAML path."),
    model: str = typer.Option(..., "--model", help="1-random | m-random | bitflip"),
    count: int = typer.Option(..., "--count", min=1, help="Number of faults."),
    m: int = typer.Option(1, "--m", min=1, help="Duration in steps (m-random, bitflip)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the draws."),
    points: str = typer.Option(
        None, "--points", help="Comma-separated injection points (default: all)."
    ),
    out: Path = typer.Option(..., "--out", help="Plan CSV to write."),
    as_json: bool = JsonOpt,
) -> None:
    """Random faults: uniform start step, point and value (or bit)."""
    from drivefi.plan import random_plan, write_plan
    from drivefi.scenario import load_scenario

    sc = load_scenario(scenario)
    plan = random_plan(sc, model, count, m, seed, _csv_list(points, what="--points"))
    write_plan(plan, out)
    _plan_summary(plan, out, as_json)


@plan_app.command("exhaustive")
def plan_exhaustive(
    scenario: str = typer.Argument(..., help="Bundled scenario name or YAML path."),
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
    as_json: bool = JsonOpt,
) -> None:
    """Every start step x point x value x duration."""
    from drivefi.ads import INJECTION_POINTS
    from drivefi.plan import exhaustive, write_plan
    from drivefi.scenario import load_scenario

    sc = load_scenario(scenario)
    pts = _csv_list(points, what="--points") or [p.name for p in INJECTION_POINTS]
    vals = _csv_list(values, float, "--values")
    plan = exhaustive(
        sc,
        pts,
        {p: vals for p in pts} if vals else None,
        _csv_list(durations, int, "--durations"),
        stride,
    )
    write_plan(plan, out)
    _plan_summary(plan, out, as_json)


def _plan_summary(plan, out: Path, as_json: bool) -> None:
    from collections import Counter

    info = {"plan": str(out), "scenario": plan.scenario, "faults": len(plan.faults)}
    info.update({f"model {k}": v for k, v in sorted(Counter(f.model for f in plan.faults).items())})
    if as_json:
        emit_json(info)
    else:
        console.print(kv_table("Fault plan", info))


@campaign_app.command("run")
def campaign_run(
    scenario: str = typer.Argument(..., help="Bundled scenario name or YAML path."),
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
    retries: int = typer.Option(
        2, "--retries", min=0, help="Retries of a failed run before it is marked error."
    ),
    agent: str = typer.Option(
        None, "--agent", help="User agent FILE.py:CLASS to test instead of the reference ADS."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Run a fault plan; outcomes are stored as they arrive, so re-running resumes. Campaigns
    started on one --db share its remaining faults."""
    from drivefi.campaign.runner import run_campaign
    from drivefi.plan import read_plan
    from drivefi.scenario import load_scenario

    if keep_traces not in ("none", "hazards", "all"):
        raise InputError(f"--keep-traces: expected none, hazards or all, got '{keep_traces}'")
    sc = load_scenario(scenario)
    points = None
    if agent:
        from drivefi.bridges.carla.agent import agent_points

        points = agent_points(agent)
    p = read_plan(plan, points)
    ex, opts = executor_and_bridge(executor, workers, ray_address, ray_timeout, sim, carla_servers,
                                   carla_host, carla_port, carla_timeout, carla_restart_cmd,
                                   carla_run_timeout)  # fmt: skip
    try:
        summary = run_campaign(
            sc, p, db, ex, seed, sim, keep_traces, batch_size,
            progress=True, bridge_options=opts, retries=retries, agent=agent,
        )  # fmt: skip
    finally:
        ex_close = getattr(ex, "close", None)
        if ex_close is not None:
            ex_close()
    if as_json:
        emit_json(summary.as_dict())
    else:
        console.print(kv_table(f"Campaign {summary.campaign_id}: {sc.name}", summary.as_dict()))


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
    t = Table(title=f"Campaigns in {db}")
    cols = SUMMARY_COLUMNS
    for c in cols:
        t.add_column(c)
    for r in rows:
        t.add_row(*(str(r[c]) for c in cols))
    console.print(t)
    failed = sum(r["error"] for r in rows)
    if failed:
        console.print(
            f"{failed} fault(s) failed to run: `drivefi campaign errors --db {db}` shows why"
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
    """Write every fault with its outcome to CSV (atomically: never a truncated file)."""
    from drivefi.atomic import atomic_path
    from drivefi.campaign.store import ResultsStore

    store = ResultsStore(db)
    try:
        frame = store.outcomes(campaign)
    finally:
        store.close()
    with atomic_path(csv) as tmp:
        frame.to_csv(tmp, index=False)
    info = {"csv": str(csv), "rows": len(frame)}
    emit_json(info) if as_json else console.print(kv_table("Export", info))


def report_cmd(
    db: Path = typer.Argument(..., help="Results database."),
    out: Path = typer.Option(Path("report.html"), "--out", help="HTML file to write."),
    as_json: bool = JsonOpt,
) -> None:
    """One HTML page: every campaign's outcomes, critical faults by point and model, plots."""
    from drivefi.report import build_report

    s = build_report(db, out)
    if as_json:
        emit_json(s)
    else:
        console.print(f"report written to {out} ({len(s['campaigns'])} campaigns)")


def register(app: typer.Typer) -> None:
    app.add_typer(plan_app, name="plan")
    app.add_typer(campaign_app, name="campaign")
    app.command("report")(report_cmd)
