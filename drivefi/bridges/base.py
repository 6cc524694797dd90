"""The bridge contract (one simulator's runs, stepped by the closed loop) and the simulator that
makes bridges.

A :class:`Simulator` is a small picklable value (it travels to worker processes and Ray actors
inside a :class:`drivefi.run.testbed.Testbed`); simulators differ by this object, never by a name
compared in each layer: what a caller needs to know is one of its attributes."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from drivefi.core import Actuation, Observation
from drivefi.world.safety import SafetyPotential


class Bridge(Protocol):
    """The contract between the closed loop and a simulator (runs are arrays over N)."""

    name: str

    def reset(self, scenario, seed: int | None = None, n: int = 1) -> Observation: ...

    def step(self, act: Actuation) -> Observation:
        """Apply the (guarded) actuation and advance one step."""

    def guarded(self, act: Actuation) -> Actuation:
        """What the vehicle interface would apply for ``act`` now (clamped, non-finite replaced)."""

    def safety(self) -> SafetyPotential:
        """Safety potential of every run at the current step."""

    def accidents(self) -> tuple[np.ndarray, np.ndarray]:
        """(collided, departed) so far, bool arrays over runs."""

    def close(self) -> None: ...


class Simulator(Protocol):
    """Where runs execute: makes a fresh bridge for a scenario (picklable)."""

    name: str  # how campaigns and traces record it ("embedded", "carla")
    # a bridge restores a golden run's state at any step (bit-exact) and runs many runs in
    # lock-step: faulty runs start from the golden run's snapshots; otherwise each run is its own,
    # from step 0
    snapshots: bool
    # the simulation runs in the process that makes the bridge (a worker process can run a
    # campaign's batches by itself); a server-bound simulator's worker would first pay its own
    # golden run on the server
    in_process: bool

    @property
    def options(self) -> dict[str, Any]:
        """The bridge options, as stored with a campaign (plain values)."""

    def bridge(self, scenario) -> Bridge: ...

    def with_options(self, **options) -> Simulator:
        """The same simulator with some options replaced (e.g. a pool server's address)."""
