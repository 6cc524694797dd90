"""Runs on CARLA: one closed-loop run with guaranteed clean-up, and golden runs as traces.

These are what ``drivefi record --sim carla`` and the campaign's CARLA batches call; both close
the bridge in ``finally`` (the bridge also cleans up by itself on its own failures and at the end
of the scenario), so a crash in the ADS or a Ctrl-C still leaves the server as it was found.
"""

from __future__ import annotations

from drivefi.core import Injector
from drivefi.run.simulate import Recorder, Simulation, TraceRecorder
from drivefi.world.scenario import Scenario


def run_carla(
    scenario: Scenario,
    bridge,
    ads=None,
    seed: int | None = None,
    injector: Injector | None = None,
    recorders: list[Recorder] = (),
) -> Simulation:
    """One run of ``scenario`` on ``bridge`` (N = 1, from step 0); the bridge is closed afterwards."""
    sim = Simulation(scenario, seed, bridge=bridge, ads=ads)
    try:
        sim.run(1, injector=injector, recorders=list(recorders))
        errors = getattr(sim.ads, "errors", None)
        if errors:
            from drivefi.stacks.agent.loader import AgentStepError

            raise AgentStepError(f"run of {scenario.name} on CARLA: {errors[0][1]}")
    finally:
        bridge.close()
        close = getattr(ads, "close", None)
        if callable(close):
            close()
    return sim


def record_golden_carla(scenario: Scenario, bridge, ads=None, seed: int | None = None):
    """The fault-free run on CARLA as a :class:`drivefi.run.trace.Trace` (same schema as embedded;
    the metadata adds ``sim``, the server address and version and the ADS)."""
    from drivefi.run.golden import trace_frame
    from drivefi.run.trace import Trace, trace_meta
    from drivefi.stacks import identity_of

    seed = scenario.seed if seed is None else seed
    points = [p.name for p in (ads.points if ads is not None else _reference_points())]
    rec = TraceRecorder(1, scenario.steps, points)
    run_carla(scenario, bridge, ads, seed, None, [rec])
    meta = trace_meta(scenario, seed, stack=identity_of(ads))
    sess = getattr(bridge, "session", None)
    meta.update(
        {
            "sim": "carla",
            "carla": {
                "address": bridge.config.address,
                "server_version": getattr(sess, "server_version", None),
                "town": bridge.town,
                "dt": bridge.dt,
            },
            "ads": getattr(ads, "spec", None) or "reference",
        }
    )
    return Trace(trace_frame(rec), meta)


def _reference_points():
    from drivefi.stacks.reference import INJECTION_POINTS

    return INJECTION_POINTS
