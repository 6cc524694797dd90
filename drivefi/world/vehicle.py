"""Ego vehicle: the vehicle interface (guard, actuator lag, steering limits) and the kinematic
bicycle, on arrays of shape (N,).

:class:`VehicleInterface` is what stands between an ADS's command and a vehicle: it clamps the
command, replaces a non-finite one with the last valid one, passes throttle and brake through a
first-order lag and moves the road-wheel angle toward ``steer * phi_max`` (within the speed's
lateral-acceleration limit) at the steering-rate limit. Both bridges apply it identically: the
embedded world feeds its output to the kinematic bicycle below, the CARLA bridge sends it to the
server's vehicle as a ``VehicleControl`` (whose steering is set to reach ``phi_max`` at steer 1).

The kinematic bicycle (dx/dt = v cos theta, dy/dt = v sin theta, dtheta/dt = v tan(phi) / L) is
integrated in the road's Frenet frame (s along the reference line, d to its left, psi = theta minus
the road heading), which is the same motion in other coordinates; x, y, theta follow from the road
geometry. Explicit Euler with the simulator's fixed step keeps one step a handful of array ops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from drivefi.core import Actuation
from drivefi.util.state import BatchState
from drivefi.world.road import RoadGeometry, offset_scale
from drivefi.world.scenario import VehicleParams


def guard(cmd: Actuation, last: Actuation) -> Actuation:
    """The vehicle-interface contract: a non-finite command keeps the last valid one; clamp ranges."""
    thr = np.clip(np.where(np.isfinite(cmd.throttle), cmd.throttle, last.throttle), 0.0, 1.0)
    brk = np.clip(np.where(np.isfinite(cmd.brake), cmd.brake, last.brake), 0.0, 1.0)
    st = np.clip(np.where(np.isfinite(cmd.steer), cmd.steer, last.steer), -1.0, 1.0)
    return Actuation(thr, brk, st)


def acceleration(v, thr, brk, p: VehicleParams):
    """Longitudinal acceleration from the actuator states: throttle map, brake map, resistances."""
    push = p.accel_max * thr * np.maximum(1.0 - v / p.v_max, 0.0)
    resist = p.rolling * (v > 0) + p.drag * v * v
    return push - p.brake_max * brk - resist


def steer_limit(v, p: VehicleParams):
    """Largest road-wheel angle the steering interface allows at speed v: the lateral-acceleration
    limit a_lat_max (as driver-assistance steering interfaces enforce), never above phi_max."""
    with np.errstate(divide="ignore"):  # at rest: atan(inf) = pi/2, then phi_max
        return np.minimum(np.arctan(p.wheelbase * p.a_lat_max / np.square(v)), p.phi_max)


def steer_target(steer, v, p: VehicleParams):
    """Road-wheel angle the steering actuator moves toward for a guarded steer command."""
    lim = steer_limit(v, p)
    return np.clip(steer * p.phi_max, -lim, lim)


@dataclass(frozen=True)
class Applied:
    """What the vehicle interface delivers for one step: the guarded command and the actuator
    outputs that reach the vehicle (arrays (N,))."""

    command: Actuation  # clamped, non-finite entries replaced by the last valid command
    throttle: np.ndarray  # throttle after the actuator lag [0, 1]
    brake: np.ndarray  # brake after the actuator lag [0, 1]
    phi: np.ndarray  # road-wheel angle after the steering-rate and lateral limits [rad]
    steer: np.ndarray  # that angle as a steer value, phi / phi_max, in [-1, 1]


class InterfaceState(Protocol):
    """What the interface reads: the last valid command, the actuator states and the speed."""

    last_throttle: np.ndarray
    last_brake: np.ndarray
    last_steer: np.ndarray
    thr: np.ndarray
    brk: np.ndarray
    phi: np.ndarray
    v: np.ndarray


class VehicleInterface:
    """The vehicle interface of one vehicle and step size (see the module docstring)."""

    def __init__(self, p: VehicleParams, dt: float):
        self.p, self.dt = p, float(dt)
        self.alpha = 1.0 - np.exp(-dt / p.actuator_tau)
        self.rate = p.steer_rate * dt

    def guard(self, cmd: Actuation, state: InterfaceState) -> Actuation:
        return guard(cmd, Actuation(state.last_throttle, state.last_brake, state.last_steer))

    def apply(self, cmd: Actuation, state: InterfaceState) -> Applied:
        """The interface's output for ``cmd`` from ``state`` (not modified; see :meth:`commit`)."""
        g = self.guard(cmd, state)
        thr = state.thr + self.alpha * (g.throttle - state.thr)
        brk = state.brk + self.alpha * (g.brake - state.brk)
        lim = self.rate
        phi = state.phi + np.clip(steer_target(g.steer, state.v, self.p) - state.phi, -lim, lim)
        return Applied(g, thr, brk, phi, phi / self.p.phi_max)

    @staticmethod
    def commit(state: InterfaceState, applied: Applied) -> None:
        """Write ``applied`` into ``state`` (last valid command, actuator states), in place."""
        c = applied.command
        state.last_throttle, state.last_brake, state.last_steer = c.throttle, c.brake, c.steer
        state.thr, state.brk, state.phi = applied.throttle, applied.brake, applied.phi


@dataclass
class ActuatorState(BatchState):
    """The interface's own state where the vehicle's physics lives elsewhere (CARLA), (N,)."""

    last_throttle: np.ndarray
    last_brake: np.ndarray
    last_steer: np.ndarray
    thr: np.ndarray
    brk: np.ndarray
    phi: np.ndarray
    v: np.ndarray

    @classmethod
    def start(cls, throttle: float, steer: float, v: float, p: VehicleParams) -> ActuatorState:
        """One run at equilibrium: throttle that holds speed v, lane-following steer."""
        a = np.array
        return cls(a([throttle]), a([0.0]), a([steer]), a([throttle]), a([0.0]),
                   a([steer * p.phi_max]), a([v]))  # fmt: skip


def equilibrium_throttle(v, p: VehicleParams):
    """Throttle that holds speed v (the resistances balanced)."""
    need = p.rolling * (v > 0) + p.drag * v * v
    return np.clip(need / (p.accel_max * np.maximum(1 - v / p.v_max, 1e-6)), 0, 1)


def step_vehicle(st, act: Applied, p: VehicleParams, road: RoadGeometry, dt: float) -> None:
    """Advance the vehicle fields of a world state ``st`` by one step, in place.

    ``act`` is the vehicle interface's output for this step (:meth:`VehicleInterface.apply`): the
    kinematics move with the current wheel angle and speed, then the actuator states become the
    interface's and the acceleration follows from them.
    """
    kappa = road.curvature(st.s)
    den = offset_scale(kappa, st.d)
    ds = st.v * np.cos(st.psi) / den
    s_new = st.s + dt * ds
    d_new = st.d + dt * st.v * np.sin(st.psi)
    psi_new = st.psi + dt * (st.v * np.tan(st.phi) / p.wheelbase - kappa * ds)
    v_new = np.maximum(st.v + dt * st.a, 0.0)
    VehicleInterface.commit(st, act)
    thr, brk = act.throttle, act.brake
    st.s, st.d, st.psi, st.v = s_new, d_new, psi_new, v_new
    st.a = acceleration(v_new, thr, brk, p)
