"""The reference ADS: perception -> planning -> control, with every module output injectable."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drivefi.ads import control, perception, planning
from drivefi.ads.injector import InjectionPoint, Injector
from drivefi.bridges.base import Observation
from drivefi.scenario import Scenario
from drivefi.state import BatchState
from drivefi.vehicle import Actuation

INJECTION_POINTS: list[InjectionPoint] = perception.POINTS + planning.POINTS + control.POINTS
POINTS_BY_NAME = {p.name: p for p in INJECTION_POINTS}


@dataclass
class ADSState(BatchState):
    integral: np.ndarray  # speed-controller integral
    offset: np.ndarray  # lane tracker: offset from the lane centre [m]
    heading: np.ndarray  # lane tracker: heading error [rad]
    coast: np.ndarray  # lane tracker: steps since the last accepted measurement


class ReferenceADS:
    """ADS contract: step(observation) -> actuation; module outputs pass through ``injector``."""

    points = INJECTION_POINTS

    def __init__(self, scenario: Scenario, seed: int | None = None, injector: Injector | None = None):
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        self.noise = perception.noise_table(self.seed, scenario.steps)
        self.injector = injector or Injector()
        self.state: ADSState | None = None

    def reset(self, n: int = 1) -> None:
        z = np.zeros(n)
        self.state = ADSState(integral=z, offset=z.copy(), heading=z.copy(), coast=np.zeros(n, np.int64))

    def snapshot(self) -> ADSState:
        return self.state.copy()

    def restore(self, state: ADSState) -> None:
        self.state = state.copy()

    def step(self, obs: Observation) -> Actuation:
        sc, inj, k = self.scenario, self.injector, obs.k
        vp = sc.ego.vehicle
        dist, ospeed, offset, heading, speed = perception.perceive(obs, self.noise, sc.sensor_noise, vp.length, inj)
        st = self.state
        target = planning.plan(dist, ospeed, sc.ego.cruise_speed, k, inj)
        st.offset, st.heading, st.coast = planning.track_lane(
            st.offset, st.heading, st.coast, offset, heading, speed, obs.phi, obs.curvature, sc.dt, vp.wheelbase
        )
        thr, brk, st.integral = control.longitudinal(target, speed, st.integral, sc.dt, vp, k, inj)
        steer = control.lateral(st.offset, st.heading, speed, obs.curvature, vp, k, inj)
        return Actuation(thr, brk, steer)
