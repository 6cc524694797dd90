"""Outcome rows: label a batch of recorded runs masked / hazard / accident, critical or not.

``accident``: collision or road departure; ``hazard``: delta_lon <= 0 or delta_lat <= 0 at some
step; ``stack_failure``: the stack failed (:func:`stack_failure`); else ``masked``. A fault is ``critical`` when the golden run was safe at its first step and
the faulty run reached a hazard (or an accident).
"""

from __future__ import annotations

import numpy as np

from drivefi.run.simulate import OutcomeRecorder

STACK_FAILURE = "stack_failure"


def label(rec: OutcomeRecorder, golden_safe: np.ndarray) -> list[dict]:
    rows = []
    for i in range(rec.n):
        accident = rec.collision_step[i] >= 0 or rec.departure_step[i] >= 0
        hazard = rec.first_hazard[i] >= 0
        outcome = "accident" if accident else "hazard" if hazard else "masked"
        rows.append(
            {
                "status": "ok",
                "outcome": outcome,
                "min_delta_lon": float(rec.min_delta_lon[i]),
                "min_delta_lat": float(rec.min_delta_lat[i]),
                "first_hazard_step": int(rec.first_hazard[i]),
                "collision_step": int(rec.collision_step[i]),
                "departure_step": int(rec.departure_step[i]),
                "golden_safe": int(golden_safe[i]),
                "critical": int(bool(golden_safe[i]) and (hazard or accident)),
                "attempts": 1,
                "error": None,
            }
        )
    return rows


def error_row(idx: int, attempts: int, reasons: list[str]) -> dict:
    """The row of a fault whose every attempt failed: status error, with the reasons."""
    return {
        "idx": idx,
        "status": "error",
        "outcome": None,
        "attempts": attempts,
        "error": "; ".join(reasons),
    }


def stack_failure(row: dict, step: int, message: str) -> dict:
    """The outcome of a run whose stack failed (raised, timed out, or commanded something that is
    not a finite control): what the fault did to the stack, an outcome of its own, never
    ``masked`` and never retried; ``error`` holds the step and what happened. Its min deltas are
    those up to the failure."""
    msg = message if f"step {step}" in message else f"at step {step}: {message}"
    return {**row, "outcome": STACK_FAILURE, "critical": 0, "error": msg}


def keep_trace(ctx, frame, fault, idx: int, row: dict, stack: str) -> None:
    """Write one faulty run's trace (chosen by :func:`drivefi.campaign.batch.kept_frames`), its
    metadata carrying the fault, its plan index and its outcome."""
    from pathlib import Path

    from drivefi.run.trace import Trace, trace_meta, write_trace

    info = {**fault.as_row(), "plan_index": idx, "outcome": row.get("outcome"),
            "error": row.get("error")}  # fmt: skip
    meta = {**trace_meta(ctx.scenario, ctx.seed, info, stack), "sim": ctx.testbed.simulator.name}
    write_trace(Trace(frame, meta), Path(ctx.trace_dir) / f"c{ctx.campaign_id}_{idx:07d}.parquet")
