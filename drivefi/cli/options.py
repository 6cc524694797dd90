"""Options and output helpers shared by every ``drivefi`` command group."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from drivefi.bridges.base import Simulator
from drivefi.errors import InputError
from drivefi.util.progress import Progress, silent

# no emoji codes: a user's text (an agent named Robot, a path like a:b:c) is printed as written
console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)

JsonOpt = typer.Option(
    False,
    "--json",
    help="Print one JSON object on stdout instead of tables.",
    rich_help_panel="Output",
)
SimOpt = typer.Option(
    "embedded", "--sim", help="Where runs execute: embedded | carla.", rich_help_panel="Simulation"
)
CarlaHostOpt = typer.Option(
    "localhost", "--carla-host", help="CARLA server host.", rich_help_panel="CARLA"
)
CarlaPortOpt = typer.Option(
    2000, "--carla-port", help="CARLA server RPC port.", rich_help_panel="CARLA"
)
CarlaTimeoutOpt = typer.Option(
    10.0, "--carla-timeout", help="Seconds before a tick counts as failed.", rich_help_panel="CARLA"
)
CarlaRestartOpt = typer.Option(
    None, "--carla-restart-cmd", help="Command that restarts the server.", rich_help_panel="CARLA"
)
ScenarioArg = typer.Argument(..., help="Bundled scenario name or YAML path.")
AgentOpt = typer.Option(
    "reference",
    "--agent",
    help="Stack under test: 'reference' (the bundled ADS) or a Leaderboard-style agent FILE.py[:CLASS].",
    rich_help_panel="Stack under test",
)
AgentConfigOpt = typer.Option(
    None,
    "--agent-config",
    help="File passed to the agent's setup() (the Leaderboard's --agent-config); agents only.",
    rich_help_panel="Stack under test",
)
AgentTimeoutOpt = typer.Option(
    10.0,
    "--agent-timeout",
    min=0.0,
    help="Seconds one run_step of the agent may take; past it the run ends as a stack failure "
    "and the campaign goes on (0: no limit).",
    rich_help_panel="Stack under test",
)
StructureOpt = typer.Option(
    None,
    "--structure",
    help="3-TBN structure file (YAML, models/NAME); default: the stack's models/ file or one "
    "derived from its points. 'twin' = the white-box oracle of the reference stack.",
    rich_help_panel="Stack under test",
)


def stack_spec(agent: str | None, agent_config: str | None = None, timeout: float = 10.0):
    """``--agent``, ``--agent-config`` and ``--agent-timeout`` as the stack under test (checked:
    the config file exists, and only an agent takes one; else exit 2)."""
    from drivefi.stacks import StackSpec

    spec = StackSpec.of(agent, timeout=timeout or None)
    if agent_config is None:
        return spec
    if spec.agent is None:
        raise InputError("--agent-config: the reference ADS takes no configuration; give --agent")
    conf = Path(agent_config)
    if not conf.is_file():
        raise InputError(f"--agent-config: {conf} not found (expected the agent's config file)")
    return StackSpec.of(spec.agent, str(conf.resolve()), spec.timeout)


def simulator(
    sim: str, host: str, port: int, timeout: float, restart_cmd: str | None = None
) -> Simulator:
    """``--sim`` as a simulator; for CARLA, once the server has answered (else exit 2)."""
    from drivefi.bridges.embedded import EMBEDDED

    if sim == "embedded":
        return EMBEDDED
    if sim != "carla":
        raise InputError(f"--sim: expected embedded or carla, got '{sim}'")
    from drivefi.bridges.carla.connection import check_server
    from drivefi.bridges.carla.simulator import CarlaSimulator

    opts = {"host": host, "port": port, "timeout": timeout, "restart_cmd": restart_cmd}
    check_server(**opts)
    return CarlaSimulator(opts)


# where faults run (campaign run, pipeline)
ExecutorOpt = typer.Option("local", "--executor", help="local | ray", rich_help_panel="Simulation")
RayAddressOpt = typer.Option(
    None,
    "--ray-address",
    help="Ray cluster to join (host:port of the head, ray://host:port or auto); "
    "default with --executor ray: a local Ray on 127.0.0.1 only.",
    rich_help_panel="Ray",
)
RayTimeoutOpt = typer.Option(
    20.0,
    "--ray-timeout",
    min=1.0,
    help="Seconds to reach and join --ray-address (else exit 2).",
    rich_help_panel="Ray",
)
WorkerMemoryOpt = typer.Option(
    None,
    "--worker-memory",
    min=64,
    help="MiB of memory each worker process may use; a stack that allocates past it fails its "
    "run (stack_failure, MemoryError). Local executor only.",
    rich_help_panel="Simulation",
)
CarlaServersOpt = typer.Option(
    None,
    "--carla-servers",
    help="A pool of CARLA servers, host:port[,host:port...] or @FILE (one a line): one Ray actor "
    "per server; --carla-restart-cmd may use {host} and {port}.",
    rich_help_panel="CARLA",
)
CarlaRunTimeoutOpt = typer.Option(
    None,
    "--carla-run-timeout",
    min=1.0,
    help="Seconds a pool server may take for one run before it counts as hung "
    "(default 60 + 0.25 x scenario steps).",
    rich_help_panel="CARLA",
)


def executor_and_simulator(
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
    worker_memory: int | None = None,
):
    """The campaign's executor and simulator from the command line (checked, nothing started)."""
    from drivefi.campaign.executor import make_executor

    if executor not in ("local", "ray"):
        raise InputError(f"--executor: expected local or ray, got '{executor}'")
    if carla_servers:
        from drivefi.campaign.carla_pool import CarlaPoolExecutor, parse_servers

        if sim != "carla":
            raise InputError("--carla-servers: needs --sim carla")
        if worker_memory:
            raise InputError("--worker-memory: needs --executor local (no CARLA server pool)")
        servers = parse_servers(carla_servers)
        ex = CarlaPoolExecutor(
            servers, ray_address, ray_timeout, carla_restart_cmd, carla_run_timeout
        )
        from drivefi.bridges.carla.simulator import CarlaSimulator

        return ex, CarlaSimulator({"timeout": carla_timeout})
    if sim == "carla" and workers > 1:
        raise InputError(
            f"--workers {workers}: one CARLA server takes one ticking client (synchronous mode); "
            "to run in parallel, give a pool of servers with --carla-servers"
        )
    simu = simulator(sim, carla_host, carla_port, carla_timeout, carla_restart_cmd)
    ex = make_executor(executor, workers, ray_address, ray_timeout, memory_mb=worker_memory)
    return ex, simu


def emit_json(obj: dict) -> None:
    """Write ``obj`` as one JSON line on stdout (numpy scalars and paths converted; infinities and
    NaN, which JSON cannot write, as null)."""
    sys.stdout.write(json.dumps(_finite(obj), default=_jsonable, allow_nan=False) + "\n")


def _finite(o):
    import math

    import numpy as np

    if isinstance(o, float | np.floating):
        return float(o) if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_finite(v) for v in o]
    return o


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
    t.add_column("", overflow="fold")
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


def durations_for(text: str, scenario, what: str = "--durations") -> tuple[int, ...]:
    """:func:`int_list` of fault durations, each at most the scenario's step count."""
    out = int_list(text, what)
    if max(out) > scenario.steps:
        raise InputError(
            f"{what}: expected durations 1..{scenario.steps} (the steps of '{scenario.name}'), "
            f"got {max(out)}"
        )
    return out


def csv_list(text: str | None, conv=str, what: str = "list") -> list | None:
    """A comma-separated list converted item by item; None when ``text`` is empty."""
    if not text:
        return None
    try:
        return [conv(x.strip()) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{what}: expected a comma-separated list, got '{text}'") from None


@contextlib.contextmanager
def work_progress(enabled: bool = True) -> Iterator[Progress]:
    """A bar on stderr for :mod:`drivefi.util.progress` reports: one bar per kind of work (its
    ``what``), started on the first report and closed at ``finished`` or at the end."""
    if not enabled:
        yield silent
        return
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    bar = Bar(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )
    state: dict = {"task": None, "what": None}

    def report(what: str, done: int, total: int) -> None:
        if not what:  # finished: close the display (another may follow)
            bar.stop()
            state.update(task=None, what=None)
            return
        if state["task"] is None:
            bar.start()
        if what != state["what"]:
            if state["task"] is not None:
                bar.remove_task(state["task"])
            state.update(task=bar.add_task(what, total=total), what=what)
        bar.update(state["task"], completed=done, total=total)

    try:
        yield report
    finally:
        bar.stop()
