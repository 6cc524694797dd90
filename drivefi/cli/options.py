"""Options and output helpers shared by every ``drivefi`` command group."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from drivefi.errors import InputError

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
ScenarioArg = typer.Argument(..., help="Bundled scenario name or YAML path.")
AgentOpt = typer.Option(
    "reference",
    "--agent",
    help="Stack under test: 'reference' (the bundled ADS) or a Leaderboard-style agent FILE.py[:CLASS].",
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
    """Write ``obj`` as one JSON line on stdout (numpy scalars and paths converted)."""
    sys.stdout.write(json.dumps(obj, default=_jsonable) + "\n")


def _jsonable(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def kv_table(title: str, rows: dict) -> Table:
    """A two-column key/value table (floats to 3 decimals)."""
    t = Table(title=title, show_header=False)
    t.add_column("", style="bold")
    t.add_column("")
    for k, v in rows.items():
        t.add_row(k, f"{v:.3f}" if isinstance(v, float) else str(v))
    return t


def int_list(text: str, what: str) -> tuple[int, ...]:
    """Comma-separated whole numbers >= 1 (e.g. ``--durations 1,5,20``)."""
    try:
        out = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise InputError(f"{what}: expected comma-separated whole numbers, got '{text}'") from None
    if not out or min(out) < 1:
        raise InputError(f"{what}: expected whole numbers >= 1, got '{text}'")
    return out


def csv_list(text: str | None, conv=str, what: str = "list") -> list | None:
    """A comma-separated list converted item by item; None when ``text`` is empty."""
    if not text:
        return None
    try:
        return [conv(x.strip()) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{what}: expected a comma-separated list, got '{text}'") from None
