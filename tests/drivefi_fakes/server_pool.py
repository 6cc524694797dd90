"""Fake CARLA servers for a server pool in tests and benchmarks: paced, crashing and hanging.

A real pool has one CARLA process per address; a campaign's Ray actor in another process connects
to it. The fakes (:class:`drivefi_fakes.carla_server.FakeCarla`) live inside the process that
uses them, so :class:`FakeServers` is a picklable ``carla.Client`` factory: in each process it
builds (once) the fake for the address it is asked for. What must outlive a process, as a real
server outlives its client, lives in files of ``state_dir``: a server that crashed stays down, and
a server that hung keeps hanging, until ``{state_dir}/{port}.revive`` exists (the restart command
``touch {state_dir}/{port}.revive``, see :meth:`FakeServers.restart_cmd`, stands in for starting a
new server).

``script`` tells each server what to do, by port: ``("crash", n, tick)`` goes down at ``tick`` of
its n-th run (run 1 is the golden run), ``("hang", n, tick)`` blocks the tick for ``hang_s``
seconds (a server that stopped answering, past the client's own time-out). ``tick_s`` paces every
tick like a real server (CARLA needs ~20 ms per synchronous tick without cameras).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

_FAKES: dict[tuple, object] = {}


@dataclass(frozen=True)
class FakeServers:
    """``carla.Client``-compatible factory for a pool of fake servers (see module docstring)."""

    scenario_json: str
    state_dir: str
    script: tuple = ()  # (port, "crash" | "hang", run n, tick)
    tick_s: float = 0.0
    hang_s: float = 3600.0

    def __call__(self, host: str = "127.0.0.1", port: int = 2000, worker_threads: int = 0):
        return self.server(host, port).client(host, port)

    def __repr__(self) -> str:  # stable: part of the bridge options' cache key
        return f"FakeServers({self.state_dir!r}, script={self.script!r}, tick_s={self.tick_s})"

    def restart_cmd(self) -> str:
        """The ``--carla-restart-cmd`` that revives a fake server."""
        return f"touch {self.state_dir}/{{port}}.revive"

    def server(self, host: str, port: int):
        key = (self, host, int(port))
        fake = _FAKES.get(key)
        if fake is None:
            fake = _make(self, int(port))
            _FAKES[key] = fake
        return fake


def _make(spec: FakeServers, port: int):
    from drivefi.world.scenario import Scenario
    from drivefi_fakes.carla_server import FakeCarla

    state = Path(spec.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    revive = state / f"{port}.revive"
    down_mark, hung_mark = state / f"{port}.down", state / f"{port}.hung"
    events = [(kind, n, tick) for p, kind, n, tick in spec.script if int(p) == port]

    def hook(fake):
        if spec.tick_s > 0:
            time.sleep(spec.tick_s)
        if hung_mark.exists() and not revive.exists():
            time.sleep(spec.hang_s)  # still hung: nobody restarted it
        for kind, n, tick in events:
            if fake.runs != n or fake.run_ticks != tick:
                continue
            if kind == "crash" and not down_mark.exists():
                down_mark.touch()
                return "crash"
            if kind == "hang" and not hung_mark.exists():
                hung_mark.touch()
                time.sleep(spec.hang_s)
        return None

    scenario = Scenario.model_validate_json(spec.scenario_json)
    fake = FakeCarla(scenario, fail_hook=hook, revive_file=revive)
    if down_mark.exists() and not revive.exists():
        fake.down = True  # it crashed under a previous client and nobody restarted it
    return fake


def forget() -> None:
    """Drop this process's fakes (tests)."""
    _FAKES.clear()
