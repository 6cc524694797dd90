"""``drivefi pipeline``: the main job, from the golden run to the summary."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.table import Table

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
    StructureOpt,
    console,
    durations_for,
    emit_json,
    err_console,
    executor_and_simulator,
    kv_table,
    stack_spec,
    work_progress,
)


def pipeline_cmd(
    scenario: str = ScenarioArg,
    out: Path = typer.Option(
        ..., "--out", help="Folder for every artefact.", rich_help_panel="Output"
    ),
    budget: int = typer.Option(
        300,
        "--budget",
        min=1,
        help="Faults to inject to validate the search (and for random FI).",
        rich_help_panel="What to search",
    ),
    training_runs: int = typer.Option(
        300,
        "--training-runs",
        min=10,
        help="Random-fault runs to fit the 3-TBN on.",
        rich_help_panel="What to search",
    ),
    durations: str = typer.Option(
        "1,5,20", "--durations", help="Fault durations in steps.", rich_help_panel="What to search"
    ),
    workers: int = typer.Option(
        None,
        "--workers",
        min=1,
        help="Parallel workers (default 2; 1 on one CARLA server).",
        rich_help_panel="Simulation",
    ),
    seed: int = typer.Option(
        0,
        "--seed",
        help="Seed of the training faults, the rounds' picks and the random baseline.",
        rich_help_panel="What to search",
    ),
    sim: str = SimOpt,
    executor: str = ExecutorOpt,
    ray_address: str = RayAddressOpt,
    ray_timeout: float = RayTimeoutOpt,
    carla_host: str = CarlaHostOpt,
    carla_port: int = CarlaPortOpt,
    carla_timeout: float = CarlaTimeoutOpt,
    carla_restart_cmd: str = CarlaRestartOpt,
    carla_servers: str = CarlaServersOpt,
    carla_run_timeout: float = CarlaRunTimeoutOpt,
    agent: str = AgentOpt,
    agent_config: str = AgentConfigOpt,
    agent_timeout: float = AgentTimeoutOpt,
    structure: str = StructureOpt,
    rounds: int = typer.Option(
        3,
        "--rounds",
        min=0,
        help="Active-refit rounds of the search.",
        rich_help_panel="What to search",
    ),
    budget_share: float = typer.Option(
        0.10,
        "--budget-share",
        min=0.0,
        max=1.0,
        help="Share of the candidate space the search may simulate (training runs included).",
        rich_help_panel="What to search",
    ),
    train_sim: str = typer.Option(
        None,
        "--train-sim",
        help="Where the search learns the stack (golden, training and round runs): the --sim "
        "simulator (default) or 'embedded' (only validation and random FI then run on --sim).",
        rich_help_panel="Simulation",
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Start over in an --out that holds another scenario's or stack's run.",
        rich_help_panel="Output",
    ),
    as_json: bool = JsonOpt,
) -> None:
    """The main job: golden -> training runs -> fit -> search in active-refit rounds -> validate ->
    random baseline -> summary."""
    from drivefi.bridges.embedded import EMBEDDED
    from drivefi.cli.guard import supervise
    from drivefi.errors import InputError
    from drivefi.pipeline import PipelineOptions, run_pipeline
    from drivefi.run.testbed import Testbed
    from drivefi.util.atomic import check_output_dir
    from drivefi.util.seeds import check_seed
    from drivefi.world.scenario import load_scenario

    sc = load_scenario(scenario)
    check_seed(seed)
    durs = durations_for(durations, sc)
    check_output_dir(out, "--out")
    if workers is None:
        workers = 1 if sim == "carla" and not carla_servers else 2  # one ticking client a server
    if train_sim not in (None, "embedded", sim):
        raise InputError(f"--train-sim: expected embedded or {sim}, got '{train_sim}'")
    ex, simu = executor_and_simulator(executor, workers, ray_address, ray_timeout, sim,
                                      carla_servers, carla_host, carla_port, carla_timeout,
                                      carla_restart_cmd, carla_run_timeout)  # fmt: skip
    testbed = Testbed.of(stack_spec(agent, agent_config, agent_timeout), simu)
    supervise(testbed.stack, "pipeline")  # an agent's native crash: one line, not a dead process
    train_on = EMBEDDED if train_sim == "embedded" and sim != "embedded" else None
    opts = PipelineOptions(budget, training_runs, durs, workers, seed, structure, rounds,
                           budget_share, train_on, overwrite)  # fmt: skip
    start = getattr(ex, "start", None)
    try:
        if start is not None:
            start()  # join the cluster (or fail) before any artefact is written
        with work_progress(not as_json) as bar:
            s = run_pipeline(sc, out, testbed, opts, ex, progress=not as_json,
                             log=lambda m: err_console.print(m, style="dim", markup=False),
                             on_progress=bar)  # fmt: skip
    finally:
        close = getattr(ex, "close", None)
        if close is not None:
            close()
    if as_json:
        emit_json(s.as_dict())
        return
    g = s.golden
    console.print(
        f"golden run: {g['steps']} steps, min delta_lon {g['min_delta_lon']:.2f} m at {g['min_delta_lon_t']:.2f} s, "
        f"min delta_lat {g['min_delta_lat']:.2f} m at {g['min_delta_lat_t']:.2f} s, "
        f"collision {'yes' if g['collision'] else 'no'}"
        + (f", UNSAFE at {g['hazard_steps']} step(s) with no fault" if g["hazard_steps"] else ""),
        highlight=False,
    )
    t = Table(title=f"DriveFI pipeline: {sc.name}")
    t.add_column("")
    t.add_column("Bayesian search", justify="right")
    t.add_column("random FI", justify="right")
    t.add_row("3-TBN structure", s.structure, "")
    t.add_row("candidates scored", f"{s.candidates_scored:,}", "")
    t.add_row("predicted critical (incl. confirmed in rounds)", f"{s.predicted_critical:,}", "")
    t.add_row("confirmed critical in the rounds", f"{s.confirmed_in_rounds:,}", "")
    t.add_row("validation: fresh predictions injected", f"{s.injected:,}", f"{s.random_injected:,}")
    t.add_row("hazards (critical)", f"{s.confirmed_hazards:,}", f"{s.random_hazards:,}")
    t.add_row("of which accidents", f"{s.confirmed_accidents:,}", f"{s.random_accidents:,}")
    t.add_row("in distinct cases", f"{s.validation_cases:,}", f"{s.random_cases:,}")
    if s.stack_failures or s.random_stack_failures:
        t.add_row("stack failures", f"{s.stack_failures:,}", f"{s.random_stack_failures:,}")
    t.add_row("precision", "-" if s.precision is None else f"{s.precision:.3f}", "")
    t.add_row(
        "hazards per injection",
        f"{s.hazards_per_injection_search:.3f}",
        f"{s.hazards_per_injection_random:.4f}",
    )
    t.add_row(
        "simulated in all (training + rounds + validation)",
        f"{s.simulated_runs:,} ({100 * s.simulated_share:.1f} %)",
        f"{s.random_injected:,}",
    )
    t.add_row("critical found in all", f"{s.found_critical:,}", f"{s.random_hazards:,}")
    t.add_row("distinct cases found in all", f"{s.search_cases:,}", f"{s.random_cases:,}")
    t.add_row(
        "critical per simulated run",
        f"{s.critical_per_run:.3f}",
        f"{s.hazards_per_injection_random:.4f}",
    )
    t.add_row(
        "cases per simulated run", f"{s.cases_per_run:.3f}", f"{s.random_cases_per_injection:.4f}"
    )
    t.add_row("speed-up (per simulated run)", _speed(s.speedup, s.critical_per_run), "")
    t.add_row("speed-up in cases (per simulated run)", _speed(s.case_speedup, s.cases_per_run), "")
    t.add_row(
        "speed-up in validation (per injection)",
        _speed(s.speedup_validation, s.hazards_per_injection_search),
        "",
    )
    console.print(t)
    if s.rounds:
        rt = Table(title="Active refit: rounds")
        cols = ("round", "injected", "of them critical", "runs incl. plan", "plan",
                "confirmed critical")  # fmt: skip
        for col in cols:
            rt.add_column(col, justify="right")
        before = 0
        for r in s.rounds:
            new = r["confirmed"] - before
            before = r["confirmed"]
            hit = f"{new} ({new / r['injected']:.0%})" if r["injected"] else "-"
            rt.add_row(str(r["round"]), str(r["injected"]), hit,
                       *(str(r[k]) for k in ("simulated", "predicted", "confirmed")))  # fmt: skip
        console.print(rt)
    _print_evidence(s)
    console.print(
        kv_table("Wall time per stage [s]", {k: round(v, 2) for k, v in s.stage_seconds.items()})
    )
    console.print(
        f"artefacts in {out}/: golden.parquet model.json search_plan.csv random_plan.csv results.db report.html"
    )
    sys.stdout.flush()


def _print_evidence(s) -> None:
    """What the search does not know: unreached points, and the unresolved groups."""
    from drivefi.search.evidence import top_unresolved

    for name, runs in s.unreached_points.items():
        console.print(
            f"unreached point {name}: no fault of {runs} run(s) there changed the stack's "
            "commands; left out of the search space, never planned",
            highlight=False,
        )
    console.print(
        f"evidence: {len(s.groups):,} groups (point x duration class x 1-s phase), "
        f"{s.unresolved_groups:,} unresolved" + (", the first:" if s.unresolved_groups else ""),
        highlight=False,
    )
    for g in top_unresolved(s.groups, 5):
        a, b = g["phase_window"]
        console.print(
            f"  {g['point']} {g['duration_class']} {a:g}-{b:g} s: {g['runs']} run(s), "
            f"{g['critical']} critical, {g['predicted_critical']} predicted: {g['why']}",
            highlight=False,
        )


def _speed(x: float | None, search_rate: float) -> str:
    """A speed-up (one decimal, as the report shows it); inf when random FI found none."""
    if x is None:
        return "inf (random found none)" if search_rate > 0 else "-"
    return f"{x:.1f}x"


def register(app: typer.Typer) -> None:
    app.command("pipeline")(pipeline_cmd)
