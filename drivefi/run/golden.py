"""Golden and faulty runs of a stack under test recorded as traces (:mod:`drivefi.run.trace`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from drivefi.run.rejoin import rejoin_for
from drivefi.run.simulate import Simulation, Snapshot, SnapshotRecorder, TraceRecorder
from drivefi.run.trace import Trace, trace_meta
from drivefi.util.seeds import check_seed
from drivefi.world.scenario import Scenario


def trace_frame(rec: TraceRecorder, run: int = 0) -> pd.DataFrame:
    cols = {"k": np.arange(rec.steps)}
    cols.update({c: a[run] for c, a in rec.cols.items()})
    return pd.DataFrame(cols)


def faulty_frame(golden: pd.DataFrame, rec: TraceRecorder, run: int) -> pd.DataFrame:
    """Faulty run ``run``'s whole trace: its own rows where it was simulated, the golden run's
    elsewhere (before it started from the golden run's snapshot, after it rejoined the golden
    run: :mod:`drivefi.run.rejoin`)."""
    own = rec.filled[run]
    cols = {"k": np.arange(rec.steps)}
    cols.update({c: np.where(own, a[run], golden[c].to_numpy()) for c, a in rec.cols.items()})
    return pd.DataFrame(cols)


@dataclass
class Golden:
    trace: Trace
    snapshots: Snapshot  # world+ADS state at every step (leading axis: step)


def record_golden(
    scenario: Scenario, seed: int | None = None, stack=None, snapshots: bool = True
) -> Golden:
    """Run the scenario fault-free and keep its trace and (``snapshots``) a snapshot at every step.

    ``stack``: the stack under test, a spec (``None``/``"reference"``, ``FILE.py[:CLASS]``) or a
    :class:`drivefi.core.Stack`. A stack that fails during the golden run raises
    :class:`drivefi.stacks.agent.loader.AgentStepError` naming the step."""
    from drivefi.stacks import identity_of, load_stack, stack_errors

    if seed is not None:
        check_seed(seed)
    seed = scenario.seed if seed is None else seed
    ads = stack if stack is not None and not isinstance(stack, str) else None
    ads = ads or load_stack(stack, scenario, seed)
    sim = Simulation(scenario, seed, ads=ads)
    rec = TraceRecorder(1, sim.steps, sim.points)
    snaps = SnapshotRecorder() if snapshots else None
    sim.run(1, recorders=[rec], snapshots=snaps)
    errors = stack_errors(sim.ads)
    if errors:
        from drivefi.stacks.agent.loader import AgentStepError

        raise AgentStepError(f"golden run of {scenario.name}: {errors[0][1]}")
    meta = trace_meta(scenario, sim.seed, stack=identity_of(sim.ads))
    return Golden(Trace(trace_frame(rec), meta), snaps.snapshot() if snaps else None)


def record_runs(
    scenario: Scenario,
    faults: list,
    seed: int | None = None,
    stack=None,
    golden: Golden | None = None,
    lead: int = 0,
) -> list[Trace]:
    """Faulty runs of the stack under test as full traces (training data for the 3-TBN).

    All runs go in one lock-step batch, each started from the golden run's snapshot ``lead``
    steps before its fault (from step 0 when the stack cannot be copied); rows before that are
    the golden run's. ``stack``: a spec or a :class:`drivefi.core.Stack`; ``golden``: its golden
    run (recorded when not given). A run whose stack raised is left out (its trace would stop
    being the stack's)."""
    from drivefi.faults import FaultInjector
    from drivefi.stacks import identity_of, load_stack, stack_errors

    seed = scenario.seed if seed is None else seed
    ads = stack if stack is not None and not isinstance(stack, str) else None
    ads = ads or load_stack(stack, scenario, seed)
    golden = golden or record_golden(scenario, seed, ads)
    if not faults:
        return []
    sim = Simulation(scenario, seed, ads=ads)
    n = len(faults)
    rec = TraceRecorder(n, sim.steps, sim.points)
    starts = np.array([max(f.start - lead, 0) for f in faults])
    copyable = getattr(golden.snapshots.ads, "error", None) is None
    snap = golden.snapshots.take(starts) if copyable else None
    sim.run(
        n,
        snapshot=snap,
        injector=FaultInjector(faults, ads.points),
        recorders=[rec],
        rejoin=rejoin_for(sim, golden, faults) if copyable else None,
    )
    failed = stack_errors(sim.ads)
    out = []
    for i, f in enumerate(faults):
        if i in failed:
            continue
        meta = trace_meta(scenario, seed, f.as_row(), identity_of(ads))
        out.append(Trace(faulty_frame(golden.trace.frame, rec, i), meta))
    return out
