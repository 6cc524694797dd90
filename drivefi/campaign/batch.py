"""One batch of faulty runs: start from the golden run's snapshots, run in lock-step, label outcomes.

Outcome labels: ``accident`` (collision or road departure), ``hazard`` (delta_lon <= 0 or
delta_lat <= 0 at some step), else ``masked``. A fault is ``critical`` when the golden run was
safe at its first step and the faulty run reached a hazard (or an accident).
"""

from __future__ import annotations

import numpy as np

from drivefi.campaign.context import BatchContext
from drivefi.campaign.outcome import keep_trace, label, stack_error_row
from drivefi.core import Fault
from drivefi.faults import FaultInjector
from drivefi.run.golden import Golden, faulty_frame, record_golden
from drivefi.run.rejoin import rejoin_for
from drivefi.run.simulate import OutcomeRecorder, Simulation, TraceRecorder
from drivefi.stacks import load_stack, stack_errors
from drivefi.world.scenario import Scenario

_GOLDEN: dict[tuple, tuple] = {}


def golden_for(scenario: Scenario, seed: int, agent: str | None = None) -> Golden:
    """The golden run of a scenario, seed and stack, computed once per process (deterministic)."""
    return _golden_and_stack(scenario, seed, agent)[0]


def _golden_and_stack(scenario: Scenario, seed: int, agent: str | None):
    key = (scenario.model_dump_json(), seed, agent)
    if key not in _GOLDEN:
        _GOLDEN.clear()
        stack = load_stack(agent, scenario, seed)
        _GOLDEN[key] = (record_golden(scenario, seed, stack), stack)
    return _GOLDEN[key]


def starts_from_snapshots(golden: Golden) -> tuple[bool, str | None]:
    """Whether faulty runs start from the golden run's snapshots, and if not, why."""
    error = getattr(golden.snapshots.ads, "error", None)
    return error is None, error


def run_batch(ctx: BatchContext, batch: list[tuple[int, Fault]]) -> list[dict]:
    """Run ``batch`` ((plan index, fault) pairs); return one outcome row per fault."""
    idx = [i for i, _ in batch]
    faults = [f for _, f in batch]
    keep = ctx.keep_traces != "none"
    rows, traces, golden = inject_batch(ctx.scenario, ctx.seed, ctx.agent, faults, keep)
    for r, i in zip(rows, idx, strict=True):
        r["idx"] = i
    if traces is not None:
        _keep(ctx, traces, golden, faults, idx, rows)
    return rows


def inject_batch(
    scenario: Scenario, seed: int, agent: str | None, faults: list[Fault], traces: bool = False
) -> tuple[list[dict], TraceRecorder | None, Golden]:
    """Run ``faults`` in one lock-step batch of the stack ``agent`` (None: the reference ADS),
    each from the golden run's snapshot at its step (from step 0 when the stack cannot be
    copied): (one outcome row per fault, the faulty runs' traces when ``traces``, the golden)."""
    golden, stack = _golden_and_stack(scenario, seed, agent)
    starts = np.array([f.start for f in faults])
    sim = Simulation(scenario, seed, ads=stack)
    n = len(faults)
    snapshots, _ = starts_from_snapshots(golden)
    out = OutcomeRecorder(n, from_step=0 if snapshots else starts)
    rec = TraceRecorder(n, sim.steps, sim.points) if traces else None
    sim.run(
        n,
        snapshot=golden.snapshots.take(starts) if snapshots else None,
        injector=FaultInjector(faults, sim.ads.points),
        recorders=[out] if rec is None else [out, rec],
        rejoin=rejoin_for(sim, golden, faults) if snapshots else None,
    )
    g = golden.trace.frame
    golden_safe = (g["delta_lon"].to_numpy()[starts] > 0) & (g["delta_lat"].to_numpy()[starts] > 0)
    rows = label(out, golden_safe)
    for j, (step, message) in stack_errors(sim.ads).items():
        rows[j] = stack_error_row(step, message)
    return rows, rec, golden


def _keep(ctx: BatchContext, traces: TraceRecorder, golden: Golden, faults, idx, rows) -> None:
    """Write faulty traces (the golden run's rows where a run was not simulated)."""
    stack = golden.trace.meta.get("stack", "reference")
    for j, (f, i, r) in enumerate(zip(faults, idx, rows, strict=True)):
        if ctx.keep_traces == "hazards" and r["outcome"] == "masked" and r["status"] == "ok":
            continue
        keep_trace(ctx, faulty_frame(golden.trace.frame, traces, j), f, i, r, stack)
