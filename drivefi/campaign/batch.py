"""One batch of a campaign: its faults run on the campaign's testbed, each given an outcome row.

Outcome labels: ``accident`` (collision or road departure), ``hazard`` (delta_lon <= 0 or
delta_lat <= 0 at some step), else ``masked``. A fault is ``critical`` when the golden run was
safe at its first step and the faulty run reached a hazard (or an accident). A run whose stack
failed is the outcome ``stack_failure``, with what happened; a batch the simulator failed (a tick time-out, a server error)
is attempted again, up to ``ctx.retries`` times, then stored with status ``error`` and the
reasons, and the campaign goes on.
"""

from __future__ import annotations

import numpy as np

from drivefi.campaign.context import BatchContext
from drivefi.campaign.outcome import error_row, keep_trace, label, stack_failure
from drivefi.core import Fault
from drivefi.errors import SimulatorError
from drivefi.run.faulty import FaultyRuns, run_faults
from drivefi.run.golden import Golden, golden_of


def golden(ctx: BatchContext) -> Golden:
    """The campaign's golden run on its testbed (once per process, retried like a batch)."""
    reasons = []
    for _ in range(ctx.retries + 1):
        try:
            return golden_of(ctx.testbed, ctx.scenario, ctx.seed)[0]
        except SimulatorError as err:
            reasons.append(str(err))
    raise SimulatorError(f"golden run failed {ctx.retries + 1} times: {reasons[-1]}")


def attempt(ctx: BatchContext, batch: list[tuple[int, Fault]]) -> tuple[list[dict], FaultyRuns]:
    """One attempt at ``batch`` ((plan index, fault) pairs): one outcome row per fault, and the
    runs. A simulator failure raises :class:`SimulatorError`."""
    golden(ctx)
    faults = [f for _, f in batch]
    runs = run_faults(ctx.scenario, faults, ctx.testbed, ctx.seed, ctx.keep_traces != "none")
    rows = label(runs.outcomes, runs.golden.safe_at(np.array([f.start for f in faults])))
    for j, (step, message) in runs.errors.items():
        rows[j] = stack_failure(rows[j], step, message)
    for r, (i, _) in zip(rows, batch, strict=True):
        r["idx"] = i
    return rows, runs


def kept_frames(ctx: BatchContext, rows: list[dict], runs: FaultyRuns) -> dict[int, object]:
    """The trace frames ``--keep-traces`` keeps, by position in the batch."""
    if runs.traces is None:
        return {}
    keep = {}
    for j, r in enumerate(rows):
        if ctx.keep_traces == "hazards" and r["outcome"] == "masked" and r["status"] == "ok":
            continue
        keep[j] = runs.trace(j).frame
    return keep


def run_batch(ctx: BatchContext, batch: list[tuple[int, Fault]]) -> list[dict]:
    """Run ``batch``; return one outcome row per fault (kept traces written as they come)."""
    reasons = []
    for n in range(1, ctx.retries + 2):
        try:
            rows, runs = attempt(ctx, batch)
        except SimulatorError as err:
            reasons.append(f"attempt {n}: {err}")
            continue
        except MemoryError:  # DriveFI's own work past --worker-memory: not the stack's doing
            reasons.append(f"attempt {n}: the worker ran out of memory (--worker-memory)")
            break
        for r in rows:
            if r["status"] == "ok":
                r["attempts"] = n
        for j, frame in kept_frames(ctx, rows, runs).items():
            keep_trace(ctx, frame, batch[j][1], batch[j][0], rows[j], runs.stack)
        return rows
    return [error_row(i, ctx.retries + 1, reasons) for i, _ in batch]
