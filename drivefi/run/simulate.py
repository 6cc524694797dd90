"""Closed loop of bridge and ADS over a batch of runs, with pluggable per-step recording.

One loop serves the golden run (N = 1, full trace and a snapshot at every step), exhaustive and
random campaigns (N faults in lock-step, started from the golden run's snapshots at their own
fault steps, keeping only outcome summaries) and the benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from drivefi.bridges.embedded import EmbeddedBridge, WorldState
from drivefi.core import Actuation, Injector, Observation
from drivefi.run.trace import TRACE_ACT, TRACE_LANE, TRACE_SAFETY, TRACE_STATE
from drivefi.stacks.reference import ReferenceADS
from drivefi.world.safety import SafetyPotential
from drivefi.world.scenario import Scenario

if TYPE_CHECKING:
    from drivefi.run.rejoin import GoldenTail, Rejoin


@dataclass
class Snapshot:
    """World and stack state of runs at a step (leading axis: runs, or steps for a golden run).

    ``ads`` is the stack's own state type: the reference ADS's arrays, or a user agent's copies
    (:class:`drivefi.stacks.agent.snapshot.AgentState`, whose ``copyable`` says whether it has any)."""

    world: WorldState
    ads: object

    def take(self, idx) -> Snapshot:
        return Snapshot(self.world.take(idx), self.ads.take(idx))


@dataclass
class StepRecord:
    """Everything known about the runs at one step, handed to recorders."""

    obs: Observation
    applied: Actuation
    seen: dict[str, np.ndarray]
    safety: SafetyPotential
    collided: np.ndarray
    departed: np.ndarray
    fault_active: np.ndarray
    live: np.ndarray  # runs still inside the scenario's duration


class Recorder(Protocol):
    """Anything that takes every step's record (outcome summaries, full traces)."""

    def record(self, rec: StepRecord) -> None: ...

    def rejoin(self, rows: np.ndarray, k: np.ndarray, tail: GoldenTail) -> None:
        """Runs ``rows`` rejoined the golden run at steps ``k`` (:mod:`drivefi.run.rejoin`): they
        are not recorded again; ``tail`` summarises the golden run's remaining steps."""


@dataclass
class OutcomeRecorder:
    """Per-run summary: min deltas, first hazard step, collision and departure steps."""

    n: int
    from_step: np.ndarray | int = 0  # count only steps at or after this (a fault's first step)
    min_delta_lon: np.ndarray = field(init=False)
    min_delta_lat: np.ndarray = field(init=False)
    first_hazard: np.ndarray = field(init=False)
    collision_step: np.ndarray = field(init=False)
    departure_step: np.ndarray = field(init=False)

    def __post_init__(self):
        self.min_delta_lon = np.full(self.n, np.inf)
        self.min_delta_lat = np.full(self.n, np.inf)
        self.first_hazard = np.full(self.n, -1, np.int64)
        self.collision_step = np.full(self.n, -1, np.int64)
        self.departure_step = np.full(self.n, -1, np.int64)

    def record(self, rec: StepRecord) -> None:
        k, sp = rec.obs.k, rec.safety
        live = rec.live & (k >= self.from_step)
        self.min_delta_lon = np.where(
            live, np.minimum(self.min_delta_lon, sp.delta_lon), self.min_delta_lon
        )
        self.min_delta_lat = np.where(
            live, np.minimum(self.min_delta_lat, sp.delta_lat), self.min_delta_lat
        )
        for arr, now in (
            (self.first_hazard, sp.hazard),
            (self.collision_step, rec.collided),
            (self.departure_step, rec.departed),
        ):
            new = live & now & (arr < 0)
            arr[new] = k[new]

    def put(self, i: int, one: OutcomeRecorder) -> None:
        """Take run 0 of ``one`` (a run of its own) as run ``i``."""
        for name in ("min_delta_lon", "min_delta_lat", "first_hazard", "collision_step",
                     "departure_step"):  # fmt: skip
            getattr(self, name)[i] = getattr(one, name)[0]

    def rejoin(self, rows: np.ndarray, k: np.ndarray, tail: GoldenTail) -> None:
        self.min_delta_lon[rows] = np.minimum(self.min_delta_lon[rows], tail.min_delta_lon[k])
        self.min_delta_lat[rows] = np.minimum(self.min_delta_lat[rows], tail.min_delta_lat[k])
        for arr, after in (
            (self.first_hazard, tail.hazard),
            (self.collision_step, tail.collision),
            (self.departure_step, tail.departure),
        ):
            new = arr[rows] < 0
            arr[rows[new]] = after[k[new]]


class TraceRecorder:
    """Full per-step columns, shape (N, steps), rows aligned on the absolute step index."""

    def __init__(self, n: int, steps: int, points: list[str]):
        self.steps, self.points = steps, points
        names = ["t", *TRACE_STATE, *TRACE_LANE, *TRACE_ACT, *points, *TRACE_SAFETY]
        self.cols = {c: np.full((n, steps), np.nan) for c in names}
        for c in ("hazard", "collision", "departure", "fault_active"):
            self.cols[c] = np.zeros((n, steps), bool)
        self.filled = np.zeros((n, steps), bool)

    def record(self, rec: StepRecord) -> None:
        rows = np.flatnonzero(rec.live)
        k = rec.obs.k[rows]
        o, sp, c = rec.obs, rec.safety, self.cols

        def put(name, arr):
            c[name][rows, k] = np.asarray(arr)[rows]

        put("t", o.t)
        for n_ in TRACE_STATE:
            put(n_, getattr(o, n_))
        put("s", o.s)
        put("lane_offset", o.lane_offset)
        put("heading_error", o.heading_error)
        put("curvature", o.curvature)
        for n_ in TRACE_ACT:
            put(n_, getattr(rec.applied, n_))
        for p in self.points:
            put(p, rec.seen[p])
        for n_ in TRACE_SAFETY:
            put(n_, getattr(sp, n_))
        put("hazard", sp.hazard)
        put("collision", rec.collided)
        put("departure", rec.departed)
        put("fault_active", rec.fault_active)
        self.filled[rows, k] = True

    def put(self, i: int, one: TraceRecorder) -> None:
        """Take run 0 of ``one`` (a run of its own) as run ``i``."""
        for c, a in self.cols.items():
            a[i] = one.cols[c][0]
        self.filled[i] = one.filled[0]

    def rejoin(self, rows: np.ndarray, k: np.ndarray, tail: GoldenTail) -> None:
        """Nothing to add: a rejoined run's rows stay unfilled, and a kept trace takes the golden
        run's there (:func:`drivefi.run.golden.faulty_frame`)."""


class SnapshotRecorder:
    """World and stack state of run 0 at every step (for a golden run)."""

    def __init__(self):
        self.world: list[WorldState] = []
        self.ads: list = []

    def snapshot(self) -> Snapshot:
        return Snapshot(WorldState.stack(self.world), type(self.ads[0]).stack(self.ads))


class Simulation:
    """Bridge + stack for one scenario and seed; the embedded bridge and reference ADS by default.

    ``ads`` is any :class:`drivefi.core.Stack` (see :func:`drivefi.stacks.load_stack`). Snapshots
    (``snapshot=``, ``snapshots=``) need the embedded bridge; any bridge that keeps the
    :class:`drivefi.bridges.base.Bridge` contract runs from step 0. Runs whose stack failed
    (``ads.errors``) keep running with held commands; the loop stops early once all have failed.
    """

    def __init__(self, scenario: Scenario, seed: int | None = None, bridge=None, ads=None):
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        self.bridge = bridge if bridge is not None else EmbeddedBridge(scenario)
        self.ads = ads if ads is not None else ReferenceADS(scenario, self.seed)
        self.steps = scenario.steps
        self.points = [p.name for p in self.ads.points]
        bind = getattr(self.ads, "bind", None)
        if bind is not None:
            bind(self.bridge)

    def start(self, n: int = 1, snapshot: Snapshot | None = None) -> Observation:
        if snapshot is None:
            obs = self.bridge.reset(self.scenario, self.seed, n)
            self.ads.reset(n)
            return obs
        self.ads.restore(snapshot.ads)
        return self.bridge.restore(snapshot.world)

    def run(
        self,
        n: int = 1,
        snapshot: Snapshot | None = None,
        injector: Injector | None = None,
        recorders: list[Recorder] = (),
        snapshots: SnapshotRecorder | None = None,
        rejoin: Rejoin | None = None,
    ) -> None:
        """Run every run from its current step to the end of the scenario (``rejoin``: a
        :class:`drivefi.run.rejoin.Rejoin` that ends runs early once they rejoin the golden run)."""
        self.ads.injector = injector or Injector()
        obs = self.start(n, snapshot)
        k0 = int(obs.k.min())
        for _ in range(k0, self.steps):
            live = obs.k < self.steps
            if rejoin is not None:
                back = rejoin.check(self.bridge.state, self.ads, obs.k, live)
                for r in recorders if back.size else ():
                    r.rejoin(back, obs.k[back], rejoin.tail)
                live &= ~rejoin.done
                if not live.any():
                    break
            if snapshots is not None:
                snapshots.world.append(self.bridge.state.take(slice(0, 1)))
                snapshots.ads.append(self.ads.state.take(slice(0, 1)))
            act = self.ads.step(obs)
            if recorders:
                collided, departed = self.bridge.accidents()
                rec = StepRecord(
                    obs,
                    self.bridge.guarded(act),
                    self.ads.injector.seen,
                    self.bridge.safety(),
                    collided,
                    departed,
                    self.ads.injector.active(obs.k),
                    live,
                )
                for r in recorders:
                    r.record(rec)
            obs = self.bridge.step(act)
            if getattr(self.ads, "all_failed", False):
                break


def run_once(
    scenario: Scenario,
    bridge,
    ads=None,
    seed: int | None = None,
    injector: Injector | None = None,
    recorders: list[Recorder] = (),
) -> Simulation:
    """One run of ``scenario`` on ``bridge`` (N = 1, from step 0); the bridge and the stack are
    closed afterwards, whatever happens (a crash in the stack or a Ctrl-C still leaves a CARLA
    server as it was found). A stack that failed raises
    :class:`drivefi.stacks.agent.loader.AgentStepError` naming the step."""
    sim = Simulation(scenario, seed, bridge=bridge, ads=ads)
    try:
        sim.run(1, injector=injector, recorders=list(recorders))
        errors = getattr(sim.ads, "errors", None)
        if errors:
            from drivefi.stacks.agent.loader import AgentStepError

            raise AgentStepError(f"run of {scenario.name} on {bridge.name}: {errors[0][1]}")
    finally:
        close_run(bridge, ads)
    return sim


def close_run(bridge, ads=None) -> None:
    """Close a run's bridge and stack (a CARLA server is left as it was found; an agent's
    ``destroy`` is called)."""
    bridge.close()
    close = getattr(ads, "close", None)
    if callable(close):
        close()
