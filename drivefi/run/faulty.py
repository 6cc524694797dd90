"""Faulty runs: the one function that runs a batch of faults on a testbed.

Training runs, the search's rounds, campaigns (process pool, Ray, CARLA server pool) and replay all
come here. On a simulator with snapshots the batch runs in lock-step, each run started from the
golden run's snapshot at its fault's step (``lead`` steps earlier for training traces; from step
0 when the stack cannot be copied), and runs that rejoin the golden run stop early
(:mod:`drivefi.run.rejoin`). On one without snapshots each fault is a run of its own from step 0
on a fresh bridge, closed afterwards; a simulator failure there raises
:class:`drivefi.errors.SimulatorError` for the caller to retry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drivefi.core import Fault
from drivefi.faults import FaultInjector
from drivefi.run.golden import Golden, faulty_frame, golden_of
from drivefi.run.rejoin import rejoin_for
from drivefi.run.simulate import OutcomeRecorder, Simulation, TraceRecorder, close_run
from drivefi.run.testbed import Testbed
from drivefi.run.trace import Trace, trace_meta
from drivefi.stacks import identity_of, stack_errors
from drivefi.world.scenario import Scenario


@dataclass
class FaultyRuns:
    """What a batch of faulty runs left: per-run outcome summaries (counted from each fault's
    first step), full traces when asked for, the runs whose stack failed, and their golden run."""

    scenario: Scenario
    seed: int
    faults: list[Fault]
    outcomes: OutcomeRecorder
    traces: TraceRecorder | None
    errors: dict[int, tuple[int, str]]  # run -> (step, message)
    golden: Golden
    stack: str  # the stack's identity

    def trace(self, run: int, blank_before: int = 0) -> Trace:
        """Run ``run``'s whole trace (the golden run's rows where it was not simulated, but
        blank before ``blank_before``: :func:`drivefi.run.golden.faulty_frame`)."""
        meta = trace_meta(self.scenario, self.seed, self.faults[run].as_row(), self.stack)
        frame = faulty_frame(self.golden.trace.frame, self.traces, run, blank_before)
        return Trace(frame, meta)


def run_faults(
    scenario: Scenario,
    faults: list[Fault],
    testbed: Testbed | None = None,
    seed: int | None = None,
    traces: bool = False,
    lead: int = 0,
) -> FaultyRuns:
    """Run ``faults`` on ``testbed`` (default: the reference ADS on the embedded simulator) from
    its golden run (recorded once per process); see the module docstring."""
    testbed = testbed or Testbed()
    seed = scenario.seed if seed is None else seed
    golden, stack = golden_of(testbed, scenario, seed)
    n = len(faults)
    out = OutcomeRecorder(n, from_step=np.array([f.start for f in faults], np.int64))
    if testbed.simulator.snapshots:
        sim = Simulation(scenario, seed, bridge=testbed.bridge(scenario), ads=stack)
        rec = TraceRecorder(n, sim.steps, sim.points) if traces else None
        starts = np.array([max(f.start - lead, 0) for f in faults], np.int64)
        sim.run(
            n,
            snapshot=golden.snapshots.take(starts) if golden.copyable else None,
            injector=FaultInjector(faults, stack.points),
            recorders=[out] if rec is None else [out, rec],
            rejoin=rejoin_for(sim, golden, faults) if golden.copyable else None,
        )
        errors = stack_errors(sim.ads)
        identity = identity_of(stack)
    else:
        rec, errors, identity = None, {}, testbed.stack.identity
        for i, f in enumerate(faults):
            one, trace, err = _run_alone(scenario, f, testbed, seed, traces)
            out.put(i, one)
            if trace is not None:
                rec = rec or TraceRecorder(n, scenario.steps, list(trace.points))
                rec.put(i, trace)
            if err:
                errors[i] = err[0]
    return FaultyRuns(scenario, seed, faults, out, rec, errors, golden, identity)


def _run_alone(scenario: Scenario, fault: Fault, testbed: Testbed, seed: int, traces: bool):
    """One fault as a run of its own from step 0 on a fresh bridge (closed afterwards)."""
    bridge = testbed.bridge(scenario)
    ads = None
    try:
        ads = testbed.load(scenario, seed, bridge)
        sim = Simulation(scenario, seed, bridge=bridge, ads=ads)
        out = OutcomeRecorder(1, from_step=fault.start)
        rec = TraceRecorder(1, sim.steps, sim.points) if traces else None
        sim.run(1, injector=FaultInjector([fault], ads.points),
                recorders=[out] if rec is None else [out, rec])  # fmt: skip
        return out, rec, stack_errors(sim.ads)
    finally:
        close_run(bridge, ads)


def record_runs(
    scenario: Scenario,
    faults: list[Fault],
    testbed: Testbed | None = None,
    seed: int | None = None,
    lead: int = 0,
) -> list[Trace | None]:
    """Faulty runs of the stack under test as traces (training data for the 3-TBN), one per fault,
    each started ``lead`` steps before its fault: blank before its start, the golden run's rows
    after it rejoined the golden run. None where the stack failed (its trace would stop being the
    stack's). A stack whose state has a ``summary(i)`` (the reference
    ADS's) adds it at the run's first step as ``stack_state`` metadata."""
    if not faults:
        return []
    runs = run_faults(scenario, faults, testbed, seed, traces=True, lead=lead)
    starts = [max(f.start - lead, 0) for f in faults]
    snaps = runs.golden.snapshots
    summary = getattr(snaps.ads, "summary", None) if snaps is not None else None
    out = []
    for i in range(len(faults)):
        if i in runs.errors:
            out.append(None)
            continue
        tr = runs.trace(i, blank_before=starts[i])
        if summary is not None:
            tr.meta["ads_state"] = summary(starts[i])
        out.append(tr)
    return out
