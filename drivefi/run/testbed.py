"""The testbed: a simulator bridge + a stack under test + their options, resolved once.

The CLI (or an API caller) builds one :class:`Testbed` and passes it down; everything that runs a
scenario takes it. Simulators differ by the :class:`drivefi.bridges.base.Simulator` object, stacks
by the :class:`drivefi.stacks.StackSpec`: no layer below the CLI compares a simulator's or a
stack's name to decide what to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from drivefi.bridges.base import Simulator
from drivefi.bridges.embedded import EMBEDDED
from drivefi.core import InjectionPoint, Stack
from drivefi.stacks import StackSpec
from drivefi.world.scenario import Scenario


@dataclass(frozen=True)
class Testbed:
    """Where and what to run (picklable: it travels to worker processes and Ray actors)."""

    __test__ = False  # not a pytest test class, whatever its name

    simulator: Simulator = EMBEDDED
    stack: StackSpec = field(default_factory=StackSpec)

    @classmethod
    def of(cls, agent: str | StackSpec | None = None, simulator: Simulator | None = None,
           conf: str | None = None) -> Testbed:  # fmt: skip
        """From ``--agent`` (and ``--agent-config``) and a simulator (default: embedded)."""
        return cls(simulator or EMBEDDED, StackSpec.of(agent, conf))

    def bridge(self, scenario: Scenario):
        """A fresh bridge of this testbed's simulator for ``scenario``."""
        return self.simulator.bridge(scenario)

    def load(self, scenario: Scenario, seed: int | None = None, bridge=None) -> Stack:
        """The stack under test for ``scenario`` (on ``bridge`` where the stack needs its bridge
        from the start: an agent's real sensors on CARLA)."""
        return self.stack.load(scenario, seed, bridge)

    def points(self) -> list[InjectionPoint]:
        return self.stack.points()

    def on(self, simulator: Simulator) -> Testbed:
        """The same stack on another simulator."""
        return replace(self, simulator=simulator)

    @property
    def replay_spec(self) -> dict | None:
        """What a stored campaign keeps to re-run its faults exactly later (the report's
        timelines, ``drivefi replay --db``), or None where that cannot be promised: a stack
        outside DriveFI may have changed since, and only a simulator with snapshots re-runs a
        fault as its campaign ran it."""
        if not (self.stack.replayable and self.simulator.snapshots):
            return None
        return {"simulator": self.simulator.name, "agent": self.stack.agent}

    @classmethod
    def from_replay_spec(cls, spec: dict) -> Testbed:
        """The testbed a stored :attr:`replay_spec` names."""
        from drivefi.bridges.embedded import EMBEDDED

        simulators = {EMBEDDED.name: EMBEDDED}
        return cls(simulators[spec["simulator"]], StackSpec.of(spec.get("agent"), spec.get("conf")))

    @property
    def keeps_traces(self) -> str:
        """Which faulty runs' traces a campaign keeps by default so that the report can show
        them: none where any stored fault re-runs exactly in milliseconds (a bundled stack on a
        simulator with snapshots), else the hazards."""
        return "none" if self.replay_spec is not None else "hazards"
