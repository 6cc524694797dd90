"""``drivefi replay``: re-run one fault, write its trace and a plot against the golden run."""

from __future__ import annotations

from pathlib import Path

import typer

from drivefi.cli.options import (
    AgentConfigOpt,
    AgentOpt,
    AgentTimeoutOpt,
    JsonOpt,
    console,
    emit_json,
    kv_table,
    stack_spec,
)
from drivefi.util.atomic import atomic_path, check_output


def replay_cmd(
    scenario: str = typer.Argument(
        None, help="Bundled scenario name or YAML path (not needed with --db)."
    ),
    point: str = typer.Option(None, "--point", help="Injection point, e.g. control.steer."),
    model: str = typer.Option(
        None, "--model", help="Fault model (default: 1-fixed for one step, else m-fixed)."
    ),
    value: float = typer.Option(None, "--value", help="Value the point is stuck at."),
    bit: int = typer.Option(None, "--bit", help="Bit to flip (0-31), for --model bitflip."),
    start: int = typer.Option(None, "--start", help="First faulty step k."),
    duration: int = typer.Option(1, "--duration", help="Faulty steps m."),
    fault_seed: int = typer.Option(0, "--fault-seed", help="Seed of an m-random fault."),
    seed: int = typer.Option(
        None, "--seed", help="Seed of the sensor noise (default: the scenario's)."
    ),
    db: Path = typer.Option(None, "--db", help="Results database holding the fault to replay."),
    fault: int = typer.Option(None, "--fault", help="With --db: the fault's row in its plan."),
    campaign: int = typer.Option(
        None, "--campaign", help="With --db: the campaign (needed when it holds several)."
    ),
    out: Path = typer.Option(Path("replay.parquet"), "--out", help="Trace file to write."),
    plot: Path = typer.Option(None, "--plot", help="PNG to write (default: --out with .png)."),
    agent: str = AgentOpt,
    agent_config: str = AgentConfigOpt,
    agent_timeout: float = AgentTimeoutOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Re-run one fault of the stack under test (--agent) on the embedded simulator, from the
    golden run's state at its first step: write the faulty run's trace and a PNG of delta, speed
    and steering against the golden run. With --db, the stored fault of a campaign DriveFI can
    re-run as it ran (the reference stack's)."""
    from drivefi.campaign.replay import fault_of, replay, stored_fault, time_to_hazard
    from drivefi.errors import InputError
    from drivefi.faults.plan import fault_model_for
    from drivefi.report.plots import accident_of, png, timeline
    from drivefi.run.testbed import Testbed
    from drivefi.stacks import stored_stack
    from drivefi.world.scenario import load_scenario

    stored, testbed = None, None
    if db is not None:
        if fault is None:
            raise InputError("--db: give the fault to replay with --fault N")
        given = [n for n, v in (("--point", point), ("--value", value), ("--start", start),
                                ("--bit", bit), ("--model", model)) if v is not None]  # fmt: skip
        if agent not in (None, "reference") or agent_config is not None:
            given.append("--agent")
        if given:
            raise InputError(f"--db --fault replays a stored fault: drop {', '.join(given)}")
        stored = stored_fault(db, fault, campaign)
        c = stored.campaign
        spec = c["settings"].get("replay")
        if spec is None and c["sim"] != "embedded":
            from drivefi.campaign.replay import kept_trace

            kept = kept_trace(db, c["id"], fault)
            where = f"its kept trace is {kept}" if kept else "its trace was not kept"
            raise InputError(
                f"--db: campaign {c['id']} ran on {c['sim']}; drivefi replay runs the embedded "
                f"simulator and does not stand in for it ({where})"
            )
        if spec is None:  # an agent's campaign on the embedded simulator: that file, unchanged
            st = c["settings"]
            try:
                stack = stored_stack(st.get("stack", "reference"), st.get("agent"),
                                     st.get("agent_config"))  # fmt: skip
            except InputError as err:
                raise InputError(f"--db: campaign {c['id']}: {err}") from None
            spec = {"simulator": c["sim"], "agent": stack.agent, "conf": stack.conf}
        testbed = Testbed.from_replay_spec(spec)
        sc = load_scenario(scenario or c["scenario"])
        if sc.name != c["scenario"]:
            raise InputError(
                f"{scenario}: scenario '{sc.name}', but campaign {c['id']} ran '{c['scenario']}'"
            )
        f = stored.fault
        seed = c["seed"] if seed is None else seed
    else:
        if fault is not None or campaign is not None:
            raise InputError("--fault/--campaign: replay a stored fault with --db RESULTS.db")
        if scenario is None:
            raise InputError("SCENARIO: give a scenario (or --db RESULTS.db --fault N)")
        model = model or fault_model_for(duration)
        missing = []
        if model != "m-random" and point is None:
            missing.append("--point")
        if model in ("1-fixed", "m-fixed", "1-random") and value is None:
            missing.append("--value")
        if model == "bitflip" and bit is None:
            missing.append("--bit")
        if start is None:
            missing.append("--start")
        if missing:
            raise InputError(f"missing {', '.join(missing)} for a {model} fault")
        sc = load_scenario(scenario)
        f = fault_of(point, model, value, bit, start, duration, fault_seed)
        testbed = Testbed.of(stack_spec(agent, agent_config, agent_timeout))
    plot = plot or out.with_suffix(".png")
    check_output(out, "--out")  # before the run: a path that cannot be written costs nothing
    check_output(plot, "--plot")
    r = replay(sc, f, seed, testbed)
    from drivefi.run.trace import write_trace

    write_trace(r.trace, out)
    title = (
        f"{sc.name}: {f.point} {f.model} "
        f"{'bit ' + str(f.bit) if f.model == 'bitflip' else f.value} from "
        f"{f.start * sc.dt:.2f} s for {f.duration * sc.dt:.2f} s -> {r.outcome['outcome']}"
    )
    fig = timeline(r.trace.frame, r.golden, f.as_row(), sc.dt, title,
                   r.outcome["first_hazard_step"], accident_of(r.outcome))  # fmt: skip
    with atomic_path(plot, "--plot") as tmp:
        tmp.write_bytes(png(fig))
    tth = time_to_hazard(r.outcome, f, sc.dt)
    summary = {
        "scenario": sc.name,
        "fault": f.as_row(),
        "outcome": r.outcome["outcome"],
        "critical": bool(r.outcome["critical"]),
        "min_delta_lon": r.outcome["min_delta_lon"],
        "min_delta_lat": r.outcome["min_delta_lat"],
        "first_hazard_s": None if tth is None else r.outcome["first_hazard_step"] * sc.dt,
        "time_to_hazard_s": tth,
        "trace": str(out),
        "plot": str(plot),
    }
    if stored is not None:
        o = stored.outcome
        summary["matches_stored"] = bool(
            o.get("outcome") == r.outcome["outcome"]
            and o.get("min_delta_lon") == r.outcome["min_delta_lon"]
            and o.get("min_delta_lat") == r.outcome["min_delta_lat"]
        )
    if as_json:
        emit_json(summary)
    else:
        console.print(
            kv_table(f"Replay: {sc.name}", {k: v for k, v in summary.items() if k != "fault"})
        )


def register(app: typer.Typer) -> None:
    app.command("replay")(replay_cmd)
