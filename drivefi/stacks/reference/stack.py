"""The reference ADS: perception -> planning -> control, with every module output injectable."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np

from drivefi.core import PREVIEW, Actuation, InjectionPoint, Injector, Observation
from drivefi.stacks.reference import control, perception, planning, tracking
from drivefi.util.state import BatchState
from drivefi.world.scenario import Scenario

INJECTION_POINTS: list[InjectionPoint] = perception.POINTS + planning.POINTS + control.POINTS
POINTS_BY_NAME = {p.name: p for p in INJECTION_POINTS}


@dataclass
class ADSState(BatchState):
    integral: np.ndarray  # speed-controller integral
    offset: np.ndarray  # lane tracker: offset from the lane centre [m]
    heading: np.ndarray  # lane tracker: heading error [rad]
    coast: np.ndarray  # lane tracker: steps since the last accepted measurement
    gap: np.ndarray  # obstacle tracker: gap [m] (RANGE: none)
    ospeed: np.ndarray  # obstacle tracker: its speed [m/s]
    ocoast: np.ndarray
    speed: np.ndarray  # ego speed tracker [m/s] (NaN until the first measurement)
    scoast: np.ndarray
    ref: np.ndarray  # speed reference the controller tracks (rate-limited target) [m/s]

    def summary(self, i: int) -> dict[str, float]:
        """Run (or step) ``i``'s state as plain numbers: a training trace's ``ads_state``
        metadata, from which the white-box oracle (:mod:`drivefi.search.twin`) replays it."""
        return {f.name: float(getattr(self, f.name)[i]) for f in fields(self)}


class ReferenceADS:
    """ADS contract: step(observation) -> actuation; module outputs pass through ``injector``."""

    points = INJECTION_POINTS
    errors: ClassVar[dict[int, tuple[int, str]]] = {}  # the reference ADS never fails a run

    def __init__(
        self, scenario: Scenario, seed: int | None = None, injector: Injector | None = None
    ):
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        self.noise = perception.noise_table(self.seed, scenario.steps)
        self.injector = injector or Injector()
        self.state: ADSState | None = None

    def reset(self, n: int = 1) -> None:
        z, c = np.zeros(n), np.zeros(n, np.int64)
        self.state = ADSState(
            integral=z, offset=z.copy(), heading=z.copy(), coast=c, gap=np.full(n, perception.RANGE),
            ospeed=z.copy(), ocoast=c.copy(), speed=np.full(n, np.nan), scoast=c + 10**6, ref=np.full(n, np.nan),
        )  # fmt: skip

    def snapshot(self) -> ADSState:
        return self.state.copy()

    def restore(self, state: ADSState) -> None:
        self.state = state.copy()

    def step(self, obs: Observation) -> Actuation:
        sc, inj, k = self.scenario, self.injector, obs.k
        vp = sc.ego.vehicle
        dist, ospeed, offset, heading, speed = perception.perceive(
            obs, self.noise, sc.sensor_noise, vp.length, inj
        )
        st, dt = self.state, sc.dt
        st.speed, st.scoast = tracking.track_speed(st.speed, st.scoast, speed, obs.a, dt)
        v = st.speed
        st.gap, st.ospeed, st.ocoast = tracking.track_obstacle(
            st.gap, st.ospeed, st.ocoast, dist, ospeed, v, dt, perception.RANGE
        )
        v_curve = planning.curve_speed(obs.curvature, obs.curvature_ahead, PREVIEW)
        target = planning.plan(st.gap, st.ospeed, sc.ego.cruise_speed, k, inj, v_curve=v_curve)
        st.offset, st.heading, st.coast = tracking.track_lane(
            (st.offset, st.heading),
            st.coast,
            (offset, heading),
            v,
            obs.phi,
            obs.curvature,
            dt,
            vp.wheelbase,
        )
        st.ref = control.reference(st.ref, target, dt)
        thr, brk, st.integral = control.longitudinal(st.ref, v, st.integral, dt, vp, k, inj)
        steer = control.lateral(st.offset, st.heading, v, obs.curvature, vp, k, inj)
        return Actuation(thr, brk, steer)
