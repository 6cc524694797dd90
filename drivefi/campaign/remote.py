"""Campaign batches on a bridge without snapshots (CARLA): each fault is one run from step 0.

A run that fails (tick time-out, server error) is retried up to ``ctx.retries`` times on a fresh
connection; after that its outcome is stored with status ``error`` and the reason, and the
campaign goes on. The golden run on that bridge gives ``golden_safe`` at each fault step.
"""

from __future__ import annotations

import numpy as np

from drivefi.campaign.context import BatchContext
from drivefi.campaign.outcome import keep_trace, label, stack_error_row
from drivefi.core import Fault
from drivefi.errors import SimulatorError
from drivefi.faults import FaultInjector
from drivefi.run.simulate import OutcomeRecorder, Simulation, TraceRecorder
from drivefi.stacks import load_stack, stack_errors

_GOLDEN_DELTAS: dict[tuple, np.ndarray] = {}


def make_bridge(ctx: BatchContext):
    if ctx.sim == "carla":
        from drivefi.bridges.carla.bridge import make_carla_bridge

        return make_carla_bridge(ctx.scenario, **ctx.bridge_options)
    raise SimulatorError(f"unknown simulator '{ctx.sim}'")


def make_ads(ctx: BatchContext, bridge=None):
    """The stack under test for this run's bridge: the user's agent or the reference ADS."""
    return load_stack(ctx.agent, ctx.scenario, ctx.seed, bridge=bridge)


def _attempt(ctx: BatchContext, fault: Fault | None, recorders_for) -> dict:
    """One run on a fresh bridge: ``recorders_for(points)`` makes the recorders; returns the
    stack's errors ``{0: (step, message)}`` (empty when the stack ran to the end)."""
    bridge = make_bridge(ctx)
    ads = None
    try:
        ads = make_ads(ctx, bridge)
        points = _points(ads)
        injector = FaultInjector([fault], points) if fault is not None else None
        sim = Simulation(ctx.scenario, ctx.seed, bridge=bridge, ads=ads)
        sim.run(1, injector=injector, recorders=recorders_for([p.name for p in points]))
        return stack_errors(sim.ads)
    finally:
        bridge.close()
        close = getattr(ads, "close", None)
        if callable(close):
            close()


def golden_safe_steps(ctx: BatchContext) -> np.ndarray:
    """Per step: the golden run on this bridge is safe there (recorded once per process)."""
    key = (
        ctx.scenario.model_dump_json(),
        ctx.seed,
        ctx.sim,
        repr(sorted(ctx.bridge_options.items())),
        ctx.agent,
    )
    if key not in _GOLDEN_DELTAS:
        last = None
        for _ in range(ctx.retries + 1):
            made = []

            def recorders_for(names, made=made):
                made.append(TraceRecorder(1, ctx.scenario.steps, names))
                return made

            try:
                errors = _attempt(ctx, None, recorders_for)
            except SimulatorError as err:
                last = err
                continue
            if errors:
                from drivefi.stacks.agent.loader import AgentStepError

                raise AgentStepError(f"golden run of {ctx.scenario.name}: {errors[0][1]}")
            c = made[0].cols
            _GOLDEN_DELTAS[key] = (c["delta_lon"][0] > 0) & (c["delta_lat"][0] > 0)
            break
        else:
            raise SimulatorError(f"golden run failed {ctx.retries + 1} times: {last}")
    return _GOLDEN_DELTAS[key]


def _points(ads) -> list:
    if ads is None:
        from drivefi.stacks.reference import INJECTION_POINTS

        return list(INJECTION_POINTS)
    return list(ads.points)


def attempt_fault(ctx: BatchContext, idx: int, fault: Fault, safe: np.ndarray):
    """One attempt of one fault on a fresh bridge: its outcome row and, when the campaign keeps
    traces, the run's trace frame (else None). A server failure raises :class:`SimulatorError`."""
    from drivefi.run.golden import trace_frame

    out = OutcomeRecorder(1, from_step=fault.start)
    made = []

    def recorders_for(names):
        if ctx.keep_traces != "none":
            made.append(TraceRecorder(1, ctx.scenario.steps, names))
        return [out, *made]

    errors = _attempt(ctx, fault, recorders_for)
    row = stack_error_row(*errors[0]) if errors else label(out, np.array([safe[fault.start]]))[0]
    row["idx"] = idx
    return row, (trace_frame(made[0]) if made else None)


def keep_frame(ctx: BatchContext, frame, fault: Fault, row: dict) -> None:
    """Write a run's trace frame (from step 0) as ``campaign run --keep-traces`` asks."""
    from drivefi.stacks import stack_identity

    keep_trace(ctx, frame, fault, row["idx"], row, stack_identity(ctx.agent))


def run_batch_on_bridge(ctx: BatchContext, batch: list[tuple[int, Fault]]) -> list[dict]:
    safe = golden_safe_steps(ctx)
    rows = []
    for idx, fault in batch:
        reasons = []
        for attempt in range(1, ctx.retries + 2):
            try:
                row, frame = attempt_fault(ctx, idx, fault, safe)
            except SimulatorError as err:
                reasons.append(f"attempt {attempt}: {err}")
                continue
            if row["status"] == "ok":
                row["attempts"] = attempt
            if frame is not None:
                keep_frame(ctx, frame, fault, row)
            break
        else:
            row = {
                "status": "error",
                "outcome": None,
                "attempts": ctx.retries + 1,
                "error": "; ".join(reasons),
            }
        row["idx"] = idx
        rows.append(row)
    return rows
