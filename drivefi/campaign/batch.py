"""One batch of faulty runs: start from the golden run's snapshots, run in lock-step, label outcomes.

Outcome labels: ``accident`` (collision or road departure), ``hazard`` (delta_lon <= 0 or
delta_lat <= 0 at some step), else ``masked``. A fault is ``critical`` when the golden run was
safe at its first step and the faulty run reached a hazard (or an accident).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from drivefi.campaign.context import BatchContext
from drivefi.campaign.outcome import label
from drivefi.faults import Fault, FaultInjector
from drivefi.recorder import Golden, Trace, record_golden, trace_meta, write_trace
from drivefi.scenario import Scenario
from drivefi.simulate import OutcomeRecorder, Simulation, TraceRecorder

__all__ = ["BatchContext", "golden_for", "label", "run_batch"]


_GOLDEN: dict[tuple, Golden] = {}


def golden_for(scenario: Scenario, seed: int) -> Golden:
    """The golden run of a scenario and seed, computed once per process (it is deterministic)."""
    key = (scenario.model_dump_json(), seed)
    if key not in _GOLDEN:
        _GOLDEN.clear()
        _GOLDEN[key] = record_golden(scenario, seed)
    return _GOLDEN[key]


def run_batch(ctx: BatchContext, batch: list[tuple[int, Fault]]) -> list[dict]:
    """Run ``batch`` ((plan index, fault) pairs) on the embedded simulator; one outcome row per
    fault. (:func:`drivefi.campaign.dispatch.run_batch` picks the bridge.)"""
    golden = golden_for(ctx.scenario, ctx.seed)
    idx = [i for i, _ in batch]
    faults = [f for _, f in batch]
    starts = np.array([f.start for f in faults])
    sim = Simulation(ctx.scenario, ctx.seed)
    n = len(faults)
    out = OutcomeRecorder(n)
    recorders = [out]
    traces = None
    if ctx.keep_traces != "none":
        traces = TraceRecorder(n, sim.steps, sim.points)
        recorders.append(traces)
    sim.run(
        n,
        snapshot=golden.snapshots.take(starts),
        injector=FaultInjector(faults, sim.ads.points),
        recorders=recorders,
    )
    g = golden.trace.frame
    golden_safe = (g["delta_lon"].to_numpy()[starts] > 0) & (g["delta_lat"].to_numpy()[starts] > 0)
    rows = label(out, golden_safe)
    for r, i in zip(rows, idx, strict=True):
        r["idx"] = i
    if traces is not None:
        _keep(ctx, traces, golden, faults, idx, rows)
    return rows


def _keep(ctx: BatchContext, traces: TraceRecorder, golden: Golden, faults, idx, rows) -> None:
    """Write faulty traces: golden rows before the fault step, the faulty run's rows after."""
    from drivefi.recorder import trace_frame

    g = golden.trace.frame
    for j, (f, i, r) in enumerate(zip(faults, idx, rows, strict=True)):
        if ctx.keep_traces == "hazards" and r["outcome"] == "masked":
            continue
        frame = pd.concat(
            [g.iloc[: f.start], trace_frame(traces, j).iloc[f.start :]], ignore_index=True
        )
        meta = trace_meta(
            ctx.scenario, ctx.seed, {**f.as_row(), "plan_index": i, "outcome": r["outcome"]}
        )
        write_trace(Trace(frame, meta), Path(ctx.trace_dir) / f"c{ctx.campaign_id}_{i:07d}.parquet")
