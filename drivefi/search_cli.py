"""``drivefi search`` and ``drivefi pipeline`` commands."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

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


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        out = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise InputError(f"{what}: expected comma-separated whole numbers, got '{text}'") from None
    if not out or min(out) < 1:
        raise InputError(f"{what}: expected whole numbers >= 1, got '{text}'")
    return out


def search_cmd(
    scenario: str = typer.Argument(..., help="Bundled scenario name or YAML path."),
    model: Path = typer.Option(..., "--model", help="Fitted 3-TBN (JSON)."),
    out: Path = typer.Option(..., "--out", help="Critical-fault plan (CSV) to write."),
    golden: Path = typer.Option(None, "--golden", help="Golden trace (default: recorded now)."),
    points: str = typer.Option(
        None, "--points", help="Comma-separated injection points (default: all)."
    ),
    models: str = typer.Option(
        "1-fixed,m-fixed", "--models", help="Some of 1-fixed,m-fixed,bitflip."
    ),
    durations: str = typer.Option("1,5,20", "--durations", help="Fault durations in steps."),
    top: int = typer.Option(None, "--top", min=1, help="Keep the N most critical candidates."),
    min_prob: float = typer.Option(
        None,
        "--min-prob",
        min=0.0,
        max=1.0,
        help="Keep candidates with P(hazard) >= P (default 0.5 unless --top).",
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Score every candidate fault with the 3-TBN and write the predicted-critical ones as a plan."""
    from drivefi.plan import write_plan
    from drivefi.recorder import read_trace, record_golden
    from drivefi.scenario import load_scenario
    from drivefi.search import search
    from drivefi.tbn import load_model

    sc = load_scenario(scenario)
    m = load_model(model)
    g = read_trace(golden) if golden else record_golden(sc).trace
    if golden and g.meta.get("scenario") != sc.name:
        raise InputError(
            f"{golden}: golden trace of scenario '{g.meta.get('scenario')}', not '{sc.name}'"
        )
    if min_prob is None and top is None:
        min_prob = 0.5
    pts = [p.strip() for p in points.split(",")] if points else None
    res = search(sc, m, g, top=top, min_prob=min_prob, points=pts,
                 models=tuple(x.strip() for x in models.split(",")), durations=_ints(durations, "--durations"))  # fmt: skip
    write_plan(res.plan, out)
    info = {"plan": str(out), "scenario": sc.name, "candidates_scored": res.candidates,
            "predicted_critical": res.predicted_critical, "written": len(res.plan.faults),
            "seconds": res.seconds, "candidates_per_s": res.rate}  # fmt: skip
    emit_json(info) if as_json else console.print(kv_table("Critical-fault search", info))


def pipeline_cmd(
    scenario: str = typer.Argument(..., help="Bundled scenario name or YAML path."),
    out: Path = typer.Option(..., "--out", help="Folder for every artefact."),
    budget: int = typer.Option(
        300, "--budget", min=1, help="Faults to inject to validate the search (and for random FI)."
    ),
    training_runs: int = typer.Option(
        300, "--training-runs", min=10, help="Random-fault runs to fit the 3-TBN on."
    ),
    durations: str = typer.Option("1,5,20", "--durations", help="Fault durations in steps."),
    workers: int = typer.Option(2, "--workers", min=1),
    seed: int = typer.Option(0, "--seed"),
    sim: str = SimOpt,
    carla_host: str = CarlaHostOpt,
    carla_port: int = CarlaPortOpt,
    carla_timeout: float = CarlaTimeoutOpt,
    carla_restart_cmd: str = CarlaRestartOpt,
    as_json: bool = JsonOpt,
) -> None:
    """The main job: golden -> training runs -> fit -> search -> validate -> random baseline -> summary."""
    from drivefi.pipeline import run_pipeline
    from drivefi.scenario import load_scenario

    sc = load_scenario(scenario)
    opts = bridge_options(sim, carla_host, carla_port, carla_timeout, carla_restart_cmd)
    if opts is not None:
        workers = 1  # one ticking client per server
    err = Console(stderr=True)
    s = run_pipeline(sc, out, budget, training_runs, _ints(durations, "--durations"), workers, seed,
                     progress=not as_json, log=lambda m: err.print(m, style="dim", markup=False),
                     sim=sim, bridge_options=opts)  # fmt: skip
    if as_json:
        emit_json(s.as_dict())
        return
    g = s.golden
    console.print(
        f"golden run: {g['steps']} steps, min delta_lon {g['min_delta_lon']:.2f} m at {g['min_delta_lon_t']:.2f} s, "
        f"min delta_lat {g['min_delta_lat']:.2f} m at {g['min_delta_lat_t']:.2f} s, "
        f"collision {'yes' if g['collision'] else 'no'}",
        highlight=False,
    )
    t = Table(title=f"DriveFI pipeline: {sc.name}")
    t.add_column("")
    t.add_column("Bayesian search", justify="right")
    t.add_column("random FI", justify="right")
    t.add_row("candidates scored", f"{s.candidates_scored:,}", "")
    t.add_row("predicted critical", f"{s.predicted_critical:,}", "")
    t.add_row("injected", f"{s.injected:,}", f"{s.random_injected:,}")
    t.add_row("hazards (critical)", f"{s.confirmed_hazards:,}", f"{s.random_hazards:,}")
    t.add_row("of which accidents", f"{s.confirmed_accidents:,}", f"{s.random_accidents:,}")
    t.add_row("precision", f"{s.precision:.3f}", "")
    t.add_row(
        "hazards per injection",
        f"{s.hazards_per_injection_search:.3f}",
        f"{s.hazards_per_injection_random:.4f}",
    )
    sp = (
        "inf (random found none)"
        if s.speedup is None and s.hazards_per_injection_search > 0
        else f"{s.speedup or 0:.1f}x"
    )
    t.add_row("speed-up", sp, "")
    console.print(t)
    console.print(
        kv_table("Wall time per stage [s]", {k: round(v, 2) for k, v in s.stage_seconds.items()})
    )
    console.print(
        f"artefacts in {out}/: golden.parquet model.json search_plan.csv random_plan.csv results.db report.html"
    )
    sys.stdout.flush()


def register(app: typer.Typer) -> None:
    app.command("search")(search_cmd)
    app.command("pipeline")(pipeline_cmd)
