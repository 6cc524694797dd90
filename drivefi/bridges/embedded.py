"""The embedded simulator: a batch of N runs of one scenario in lock-step, on arrays of shape (N,).

The world state is the ego's Frenet state, its actuator states, the last valid command of the
vehicle interface, accident flags and the step counter k. Actors are closed-form functions of time,
so runs in one batch may sit at different steps: a faulty run starts from the golden run's state at
its own fault step, and a batch of faults with different start steps still runs in lock-step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from drivefi.core import PREVIEW, Actuation, Observation
from drivefi.util.state import BatchState
from drivefi.world.actors import ActorSet, ActorStates
from drivefi.world.road import OffsetLane, RoadGeometry, lateral_extent, offset_curvature
from drivefi.world.safety import EgoState, LaneAt, Objects, SafetyPotential, StopParams, safety
from drivefi.world.scenario import Scenario
from drivefi.world.vehicle import VehicleInterface, acceleration, step_vehicle


@dataclass
class WorldState(BatchState):
    k: np.ndarray
    s: np.ndarray
    d: np.ndarray
    psi: np.ndarray
    v: np.ndarray
    phi: np.ndarray
    a: np.ndarray
    thr: np.ndarray
    brk: np.ndarray
    last_throttle: np.ndarray
    last_brake: np.ndarray
    last_steer: np.ndarray
    collided: np.ndarray
    departed: np.ndarray


@dataclass(frozen=True)
class EmbeddedSimulator:
    """The built-in simulator (:class:`drivefi.bridges.base.Simulator`): deterministic, with
    snapshots and lock-step batches of runs."""

    name: ClassVar[str] = "embedded"
    snapshots: ClassVar[bool] = True
    in_process: ClassVar[bool] = True

    @property
    def options(self) -> dict:
        return {}

    def bridge(self, scenario: Scenario) -> EmbeddedBridge:
        return EmbeddedBridge(scenario)

    def with_options(self, **options) -> EmbeddedSimulator:
        if options:
            raise ValueError(f"the embedded simulator takes no options, got {sorted(options)}")
        return self


EMBEDDED = EmbeddedSimulator()


class EmbeddedBridge:
    """Bridge contract: reset(scenario, seed) -> observation; step(actuation) -> observation; close()."""

    name = "embedded"

    def __init__(self, scenario: Scenario):
        self.scenario = scenario
        self.road = RoadGeometry.from_road(scenario.road)
        self.actors = ActorSet(scenario, self.road)
        self.vp = scenario.ego.vehicle
        self.stop_params = StopParams.of(self.vp)
        self.dt = scenario.dt
        self.interface = VehicleInterface(self.vp, self.dt)
        lane = scenario.ego.lane
        self.lane_lo = lane * self.road.lane_width
        self.lane_hi = (lane + 1) * self.road.lane_width
        self.lane_c = 0.5 * (self.lane_lo + self.lane_hi)
        # the ego lane's frame: d from its centre (the world state keeps the road's d, from the
        # reference line on the road's right edge)
        self.lane = OffsetLane(self.road, self.lane_c)
        self.state: WorldState | None = None
        # actors are functions of time only: tabulate them (and their poses) once per step index
        steps = scenario.steps + 2
        tab = self.actors.at(np.arange(steps) * self.dt)
        self._act = tab
        self._act_pose = self.road.pose(tab.s, tab.d)
        self._kmax = steps - 1

    # -- contract -----------------------------------------------------------------------------
    def reset(
        self, scenario: Scenario | None = None, seed: int | None = None, n: int = 1
    ) -> Observation:
        """Start n identical runs at step 0. The embedded world itself is deterministic; the seed
        drives the ADS's sensor noise, so it is accepted here only for the common bridge contract."""
        if scenario is not None and scenario is not self.scenario:
            self.__init__(scenario)
        e = self.scenario.ego
        z = np.zeros(n)
        v0 = np.full(n, float(e.speed))
        self.state = WorldState(
            k=np.zeros(n, np.int64),
            s=np.full(n, float(e.s)),
            d=np.full(n, self.lane_c),
            psi=z.copy(),
            v=v0,
            phi=np.full(n, self.lane.steer_angle(np.full(n, float(e.s)), self.vp.wheelbase)),
            a=z.copy(),
            thr=z.copy(),
            brk=z.copy(),
            last_throttle=z.copy(),
            last_brake=z.copy(),
            last_steer=z.copy(),
            collided=np.zeros(n, bool),
            departed=np.zeros(n, bool),
        )
        # start in equilibrium: throttle that holds the initial speed
        p = self.vp
        need = p.rolling * (v0 > 0) + p.drag * v0 * v0
        self.state.thr = np.clip(need / (p.accel_max * np.maximum(1 - v0 / p.v_max, 1e-6)), 0, 1)
        self.state.a = acceleration(v0, self.state.thr, self.state.brk, p)
        self.state.last_throttle = self.state.thr.copy()
        self.state.last_steer = self.state.phi / p.phi_max
        self._flags()
        return self.observe()

    def restore(self, state: WorldState) -> Observation:
        """Continue from a snapshot (a copy is taken, the snapshot stays untouched)."""
        self.state = state.copy()
        return self.observe()

    def snapshot(self) -> WorldState:
        return self.state.copy()

    def guarded(self, act: Actuation) -> Actuation:
        return self.interface.guard(act, self.state)

    def accidents(self) -> tuple[np.ndarray, np.ndarray]:
        return self.state.collided.copy(), self.state.departed.copy()

    def step(self, act: Actuation) -> Observation:
        st = self.state
        step_vehicle(st, self.interface.apply(act, st), self.vp, self.road, self.dt)
        st.k = st.k + 1
        self._flags()
        return self.observe()

    def close(self) -> None:
        self.state = None

    # -- world --------------------------------------------------------------------------------
    def actors_at(self, k: np.ndarray) -> ActorStates:
        i = np.minimum(k, self._kmax)
        a = self._act
        return ActorStates(
            a.s[i], a.d[i], a.v_lon[i], a.v_lat[i], a.psi[i], a.length, a.width, a.a_max, a.kind
        )

    def actor_poses(self, k: int) -> tuple[np.ndarray, ...]:
        """World pose and speed of every actor at step k: x, y [m], heading [rad], speed [m/s]."""
        i = min(int(k), self._kmax)
        x, y, th = (c[i] for c in self._act_pose)
        a = self._act
        return x, y, th + a.psi[i], np.hypot(a.v_lon[i], a.v_lat[i])

    def gaps(self, obj: ActorStates, s, d) -> np.ndarray:
        """Distances along the ego's parallel (road d) from ego s to the objects, (N, A)."""
        return (obj.s - s[:, None]) * self.road.scale(s, d)[:, None]

    def observe(self) -> Observation:
        st = self.state
        obj = self.actors_at(st.k)
        x, y, th_road = self.road.pose(st.s, st.d)
        n = st.n
        shape = (n, self.actors.count)
        return Observation(
            k=st.k.copy(),
            t=st.k * self.dt,
            s=st.s.copy(),
            x=x,
            y=y,
            theta=th_road + st.psi,
            v=st.v.copy(),
            phi=st.phi.copy(),
            a=st.a.copy(),
            lane_offset=self.lane.from_ref(st.d),
            heading_error=st.psi.copy(),
            curvature=self.lane.lane_curvature(st.s),
            lane_width=np.full(n, self.road.lane_width),
            obj_ds=self.gaps(obj, st.s, st.d),
            obj_dd=self.lane.from_ref(obj.d),
            obj_vlon=obj.v_lon,
            obj_vlat=obj.v_lat,
            obj_psi=obj.psi,
            obj_len=np.broadcast_to(obj.length, shape),
            obj_wid=np.broadcast_to(obj.width, shape),
            obj_kind=np.broadcast_to(obj.kind, shape),
            curvature_ahead=self.curvature_ahead(st.s),
        )

    def curvature_ahead(self, s):
        """Largest |curvature| of the ego lane within each PREVIEW distance ahead of s, (N, P)."""
        r = self.road
        out = np.zeros((len(s), len(PREVIEW)))
        for j in np.flatnonzero(r.kappa):  # straight segments add nothing
            k = abs(offset_curvature(r.kappa[j], self.lane_c))  # the lane centre's
            end = r.s0[j + 1] if j + 1 < len(r.s0) else np.inf
            on = (end > s)[:, None] & ((r.s0[j] - s)[:, None] <= PREVIEW)
            np.maximum(out, k * on, out=out)
        return out

    def lane_at(self, s) -> LaneAt:
        """The road's frame (d from the reference line) where the ego is, for :func:`safety`."""
        kap = self.road.curvature(s)
        return LaneAt(kap, self.lane.steer_angle(s, self.vp.wheelbase), self.lane_lo, self.lane_hi)

    def potential(self, k, ego: EgoState) -> SafetyPotential:
        """Safety potential of ego states (the road's d, from its reference line) at steps k."""
        obj = Objects.of(self.actors_at(k))
        return safety(ego, self.lane_at(ego.s), obj, self.vp, self.stop_params)

    def safety(self, st: WorldState | None = None) -> SafetyPotential:
        """Safety potential of every run at its current step."""
        st = st or self.state
        return self.potential(st.k, EgoState(st.s, st.d, st.psi, st.v, st.phi))

    def _flags(self) -> None:
        st = self.state
        p = self.vp
        ext = lateral_extent(0.5 * p.length, 0.5 * p.width, st.psi)
        st.departed = st.departed | (st.d - ext < 0.0) | (st.d + ext > self.road.width)
        if self.actors.count:
            i = np.minimum(st.k, self._kmax)
            obj = self.actors_at(st.k)
            x, y, th = self.road.pose(st.s, st.d)
            ox, oy, oth = (c[i] for c in self._act_pose)
            hit = obb_overlap(
                x[:, None], y[:, None], (th + st.psi)[:, None], 0.5 * p.length, 0.5 * p.width,
                ox, oy, oth + obj.psi, 0.5 * obj.length, 0.5 * obj.width,
            ).any(axis=-1)  # fmt: skip
            st.collided = st.collided | hit


def obb_overlap(x1, y1, th1, hl1, hw1, x2, y2, th2, hl2, hw2):
    """Oriented bounding boxes overlap (separating-axis test), vectorised over broadcast shapes."""
    dx, dy = x2 - x1, y2 - y1
    reach = np.hypot(hl1, hw1) + np.hypot(hl2, hw2)
    near = dx * dx + dy * dy <= reach * reach
    if not near.any():
        return near
    c1, s1, c2, s2 = np.cos(th1), np.sin(th1), np.cos(th2), np.sin(th2)
    sep = np.zeros(np.broadcast(dx, th1, th2).shape, bool)
    # axes of box 1 and box 2: (c, s) along the length, (-s, c) across
    for ax, ay in ((c1, s1), (-s1, c1), (c2, s2), (-s2, c2)):
        dist = np.abs(dx * ax + dy * ay)
        r1 = hl1 * np.abs(c1 * ax + s1 * ay) + hw1 * np.abs(-s1 * ax + c1 * ay)
        r2 = hl2 * np.abs(c2 * ax + s2 * ay) + hw2 * np.abs(-s2 * ax + c2 * ay)
        sep |= dist > r1 + r2
    return ~sep & near
