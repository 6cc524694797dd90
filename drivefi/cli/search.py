"""``drivefi search``: score every candidate fault with the 3-TBN and write a plan."""

from __future__ import annotations

from pathlib import Path

import typer

from drivefi.cli.options import (
    AgentConfigOpt,
    AgentOpt,
    AgentTimeoutOpt,
    JsonOpt,
    ScenarioArg,
    console,
    durations_for,
    emit_json,
    kv_table,
    stack_spec,
    work_progress,
)


def search_cmd(
    scenario: str = ScenarioArg,
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
    agent: str = AgentOpt,
    agent_config: str = AgentConfigOpt,
    agent_timeout: float = AgentTimeoutOpt,
    stride: int = typer.Option(1, "--stride", min=1, help="Score every n-th start step."),
    oracle: bool = typer.Option(
        False, "--oracle", help="Accept a model of the white-box oracle structure (twin)."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Score every candidate fault with the 3-TBN and write the predicted-critical ones as a plan."""
    from drivefi.faults.plan import write_plan
    from drivefi.run.golden import record_golden
    from drivefi.run.testbed import Testbed
    from drivefi.run.trace import check_golden, read_trace
    from drivefi.search import search
    from drivefi.search.training import point_specs
    from drivefi.tbn import check_scenario, check_stack, load_model
    from drivefi.tbn.model_io import check_structure
    from drivefi.util.atomic import check_output
    from drivefi.world.scenario import load_scenario

    if oracle:
        import drivefi.search.twin  # noqa: F401  (registers the oracle structure)
    sc = load_scenario(scenario)
    durs = durations_for(durations, sc)
    check_output(out, "--out")
    testbed = Testbed.of(stack_spec(agent, agent_config, agent_timeout))
    names = [p.name for p in point_specs(testbed)]
    g = None
    if golden:  # every file is checked before the model is loaded or anything is simulated
        g = read_trace(golden)
        check_golden(g, sc, golden, names)
    m = load_model(model)
    check_stack(m, testbed.stack.structure_name, names, str(model))
    now = structure_now(m, testbed)
    if now is not None:
        check_structure(m, now, str(model))
    check_scenario(m, sc.name, str(model))
    g = g or record_golden(sc, testbed=testbed).trace
    if min_prob is None and top is None:
        min_prob = 0.5
    pts = [p.strip() for p in points.split(",")] if points else None
    with work_progress(not as_json) as bar:
        res = search(sc, m, g, top=top, min_prob=min_prob, points=pts, stride=stride,
                     models=tuple(x.strip() for x in models.split(",")), durations=durs,
                     progress=bar)  # fmt: skip
    write_plan(res.plan, out, "--out")
    info = {"plan": str(out), "scenario": sc.name,
            "structure": m.structure.name + (" [ORACLE]" if m.structure.oracle else ""), "candidates_scored": res.candidates,
            "predicted_critical": res.predicted_critical, "written": len(res.plan.faults),
            "seconds": res.seconds, "candidates_per_s": res.rate}  # fmt: skip
    emit_json(info) if as_json else console.print(kv_table("Critical-fault search", info))


def structure_now(model, testbed):
    """The structure the stack under test has now, to compare with the one ``model`` was fitted
    with: the structure file the fit read if it is here (a user's copy, ``models/``), the
    structure derived from the stack's points if the fit derived it, the stack's default
    structure if it has the model's structure name; None where nothing here says (a user's
    structure file that is not on this machine, an oracle): then only the stack and points are
    checked."""
    from pathlib import Path

    from drivefi.search.training import structure_for

    st = model.structure
    if st.oracle:
        return None  # code, not a file: --oracle accepts it (check_stack checks its stack)
    if st.source and Path(st.source).is_file():
        return structure_for(testbed, st.source)
    default = structure_for(testbed)
    return default if default.name == st.name else None


def register(app: typer.Typer) -> None:
    app.command("search")(search_cmd)
