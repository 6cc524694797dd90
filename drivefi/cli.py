"""The ``drivefi`` command line (also ``python -m drivefi``).

Every user-facing error is one line on stderr and a non-zero exit (2 for bad input), never a
traceback; every command that summarises something takes ``--json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import typer
from rich.console import Console
from rich.table import Table

from drivefi.errors import DriveFIError, InputError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="DriveFI: find the faults that make a driving stack unsafe.",
)
console = Console()
err_console = Console(stderr=True)

JsonOpt = typer.Option(False, "--json", help="Print one JSON object on stdout instead of tables.")
SimOpt = typer.Option("embedded", "--sim", help="Where runs execute: embedded | carla.")
CarlaHostOpt = typer.Option("localhost", "--carla-host", help="CARLA server host.")
CarlaPortOpt = typer.Option(2000, "--carla-port", help="CARLA server RPC port.")
CarlaTimeoutOpt = typer.Option(
    10.0, "--carla-timeout", help="Seconds before a tick counts as failed."
)
CarlaRestartOpt = typer.Option(
    None, "--carla-restart-cmd", help="Command that restarts the server."
)


def bridge_options(
    sim: str, host: str, port: int, timeout: float, restart_cmd: str | None = None
) -> dict | None:
    """Check ``--sim``; for CARLA, the bridge options once the server has answered (else exit 2)."""
    if sim == "embedded":
        return None
    if sim != "carla":
        raise InputError(f"--sim: expected embedded or carla, got '{sim}'")
    from drivefi.bridges.carla.connection import check_server

    opts = {"host": host, "port": port, "timeout": timeout, "restart_cmd": restart_cmd}
    check_server(**opts)
    return opts


def emit_json(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, default=_jsonable) + "\n")


def _jsonable(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def kv_table(title: str, rows: dict) -> Table:
    t = Table(title=title, show_header=False)
    t.add_column("", style="bold")
    t.add_column("")
    for k, v in rows.items():
        t.add_row(k, f"{v:.3f}" if isinstance(v, float) else str(v))
    return t


@app.command("scenarios")
def scenarios_cmd(as_json: bool = JsonOpt) -> None:
    """List the bundled scenarios."""
    from drivefi.scenario import bundled_names, load_scenario

    items = []
    for name in bundled_names():
        sc = load_scenario(name)
        items.append(
            {
                "name": name,
                "duration": sc.duration,
                "dt": sc.dt,
                "actors": len(sc.actors),
                "description": sc.description,
            }
        )
    if as_json:
        emit_json({"scenarios": items})
        return
    t = Table(title="Bundled scenarios")
    for c in ("name", "duration [s]", "actors", "description"):
        t.add_column(c)
    for it in items:
        t.add_row(it["name"], f"{it['duration']:g}", str(it["actors"]), it["description"])
    console.print(t)


@app.command("record")
def record_cmd(
    scenario: str = typer.Argument(..., help="Bundled scenario name or YAML path."),
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
    agent: str = typer.Option(None, "--agent", help="User agent FILE.py:CLASS (carla)."),
    as_json: bool = JsonOpt,
) -> None:
    """Record the golden (fault-free) run of a scenario and print its summary."""
    from drivefi.recorder import record_golden, write_trace
    from drivefi.scenario import load_scenario

    sc = load_scenario(scenario)
    opts = bridge_options(sim, carla_host, carla_port, carla_timeout)
    if opts is None:
        trace = record_golden(sc, seed).trace
    else:
        from drivefi.bridges.carla.agent import load_agent_ads
        from drivefi.bridges.carla.bridge import make_carla_bridge
        from drivefi.bridges.carla.run import record_golden_carla

        bridge = make_carla_bridge(sc, **opts)
        ads = load_agent_ads(agent, sc, seed, bridge=bridge) if agent else None
        trace = record_golden_carla(sc, bridge, ads, seed)
    out = out or Path("out") / f"{sc.name}.golden.parquet"
    write_trace(trace, out)
    summary = {**trace.summary(), "trace": str(out)}
    if as_json:
        emit_json(summary)
    else:
        console.print(kv_table(f"Golden run: {sc.name}", summary))


def register_subcommands() -> None:
    """Attach the command groups that live in their own modules."""
    from drivefi import commands

    commands.register(app)


def main(argv: list[str] | None = None) -> int:
    register_subcommands()
    cmd = typer.main.get_command(app)
    try:
        rv = cmd.main(args=argv, prog_name="drivefi", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.exceptions.Abort:
        err_console.print("aborted")
        return 130
    except DriveFIError as e:
        err_console.print(
            f"error: {e}", style="bold red", markup=False, highlight=False, soft_wrap=True
        )
        return e.exit_code
    except KeyboardInterrupt:
        err_console.print("interrupted; stored results are kept")
        return 130


def entry() -> None:
    sys.exit(main())
