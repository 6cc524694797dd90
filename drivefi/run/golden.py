"""Golden runs: the fault-free run of a scenario on a testbed, its trace and its snapshots.

:func:`record_golden` is the one function that records a golden run, on any simulator: on one with
snapshots it keeps the world and stack state at every step (faulty runs start from them); on one
without (CARLA) it is a run from step 0 on a fresh bridge, closed afterwards, its trace carrying
what the bridge says of itself (server, town).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from drivefi.run.simulate import (
    Simulation,
    Snapshot,
    SnapshotRecorder,
    TraceRecorder,
    close_run,
)
from drivefi.run.testbed import Testbed
from drivefi.run.trace import Trace, trace_meta
from drivefi.stacks import identity_of, stack_errors
from drivefi.util import crash
from drivefi.util.seeds import check_seed
from drivefi.world.scenario import Scenario


def trace_frame(rec: TraceRecorder, run: int = 0) -> pd.DataFrame:
    cols = {"k": np.arange(rec.steps)}
    cols.update({c: a[run] for c, a in rec.cols.items()})
    return pd.DataFrame(cols)


def faulty_frame(
    golden: pd.DataFrame, rec: TraceRecorder, run: int, blank_before: int = 0
) -> pd.DataFrame:
    """Faulty run ``run``'s whole trace: its own rows where it was simulated, the golden run's
    elsewhere (before it started from the golden run's snapshot, after it rejoined the golden
    run: :mod:`drivefi.run.rejoin`). Rows before step ``blank_before`` are left blank (NaN,
    flags False) where the run did not simulate them: a training trace holds only what the run
    itself added to the golden run's."""
    own = rec.filled[run] | (np.arange(rec.steps) < blank_before)
    cols = {"k": np.arange(rec.steps)}
    cols.update({c: np.where(own, a[run], golden[c].to_numpy()) for c, a in rec.cols.items()})
    return pd.DataFrame(cols)


@dataclass
class Golden:
    trace: Trace
    snapshots: Snapshot | None  # world+stack state at every step (leading axis: step), if any

    @property
    def copyable(self) -> bool:
        """Faulty runs can start from these snapshots (the stack's state could be copied)."""
        return self.snapshots is not None and getattr(self.snapshots.ads, "error", None) is None

    @property
    def why_not_copyable(self) -> str | None:
        return None if self.snapshots is None else getattr(self.snapshots.ads, "error", None)

    def safe_at(self, steps: np.ndarray) -> np.ndarray:
        """Whether the golden run is safe (both deltas > 0) at each of ``steps``."""
        g = self.trace.frame
        return (g["delta_lon"].to_numpy()[steps] > 0) & (g["delta_lat"].to_numpy()[steps] > 0)


def record_golden(
    scenario: Scenario,
    seed: int | None = None,
    stack=None,
    snapshots: bool = True,
    testbed: Testbed | None = None,
    bridge=None,
) -> Golden:
    """Run the scenario fault-free on ``testbed`` (default: the embedded simulator) and keep its
    trace and (``snapshots``, where the simulator has them) a snapshot at every step.

    ``stack``: the stack under test, a spec (``None``/``"reference"``, ``FILE.py[:CLASS]``) or a
    loaded :class:`drivefi.core.Stack` to use; ``bridge``: a bridge to run on instead of a fresh
    one of the testbed's simulator. Where the simulator has no snapshots the bridge is closed
    afterwards, and the stack too if it was made here. A stack that fails during the golden run raises
    :class:`drivefi.stacks.agent.loader.AgentStepError` naming the step; where a parent watches
    this process (:mod:`drivefi.cli.guard`), the step is kept as the process's crash mark, so a
    stack that crashes the process in native code is named with its step too."""
    if seed is not None:
        check_seed(seed)
    seed = scenario.seed if seed is None else seed
    loaded = stack if stack is not None and not isinstance(stack, str) else None
    testbed = testbed or Testbed.of(None if loaded is not None else stack)
    bridge = bridge if bridge is not None else testbed.bridge(scenario)
    ads = loaded
    where = f"the golden run of {scenario.name}"
    try:
        crash.mark(f"{where}, setting up the stack")
        ads = ads or testbed.load(scenario, seed, bridge)
        sim = Simulation(scenario, seed, bridge=bridge, ads=ads)
        rec = TraceRecorder(1, sim.steps, sim.points)
        snaps = SnapshotRecorder() if snapshots and testbed.simulator.snapshots else None
        marks = [_StepMark(where)] if crash.active() else []
        crash.mark(f"{where}, step 0")
        sim.run(1, recorders=[rec, *marks], snapshots=snaps)
    finally:
        crash.mark("")
        if not testbed.simulator.snapshots:  # a run on its own bridge: done with both
            close_run(bridge, ads if loaded is None else None)
    errors = stack_errors(sim.ads)
    if errors:
        from drivefi.stacks.agent.loader import AgentStepError

        err = AgentStepError(f"golden run of {scenario.name}: {errors[0][1]}")
        err.details = getattr(sim.ads, "tracebacks", {}).get(0)
        raise err
    meta = trace_meta(scenario, sim.seed, stack=identity_of(sim.ads))
    describe = getattr(bridge, "run_meta", None)
    if describe is not None:
        meta.update(describe())
    return Golden(Trace(trace_frame(rec), meta), snaps.snapshot() if snaps else None)


class _StepMark:
    """Keeps the step the golden run is at as this process's crash mark
    (:mod:`drivefi.util.crash`): a parent that sees the process die of a signal names the step.
    Added only when a parent reads the marks; one small write per step."""

    def __init__(self, where: str):
        self.where = where

    def record(self, rec) -> None:  # called after the stack stepped: the next step is k + 1
        crash.mark(f"{self.where}, step {int(rec.obs.k[0]) + 1}")

    def rejoin(self, rows, k, tail) -> None:
        pass


_GOLDEN: dict[tuple, tuple] = {}


def golden_of(testbed: Testbed, scenario: Scenario, seed: int) -> tuple[Golden, object]:
    """(the golden run, the loaded stack) of a scenario, seed and testbed, once per process
    (deterministic): every batch of a campaign on this process starts from them."""
    key = (scenario.model_dump_json(), seed, repr(testbed))
    if key not in _GOLDEN:
        _GOLDEN.clear()
        stack = testbed.load(scenario, seed) if testbed.simulator.snapshots else None
        _GOLDEN[key] = (record_golden(scenario, seed, stack, testbed=testbed), stack)
    return _GOLDEN[key]
