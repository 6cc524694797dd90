"""Ego vehicle: actuation guard, actuator dynamics and the kinematic bicycle, on arrays of shape (N,).

The kinematic bicycle (dx/dt = v cos theta, dy/dt = v sin theta, dtheta/dt = v tan(phi) / L) is
integrated in the road's Frenet frame (s along the reference line, d to its left, psi = theta minus
the road heading), which is the same motion in other coordinates; x, y, theta follow from the road
geometry. Explicit Euler with the simulator's fixed step keeps one step a handful of array ops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drivefi.road import RoadGeometry
from drivefi.scenario import VehicleParams


@dataclass(frozen=True)
class Actuation:
    """What the ADS asks of the vehicle: throttle [0,1], brake [0,1], steer [-1,1]; arrays (N,)."""

    throttle: np.ndarray
    brake: np.ndarray
    steer: np.ndarray


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
    v2 = np.maximum(v, 1.0) ** 2
    return np.minimum(np.arctan(p.wheelbase * p.a_lat_max / v2), p.phi_max)


def steer_target(steer, v, p: VehicleParams):
    """Road-wheel angle the steering actuator moves toward for a guarded steer command."""
    lim = steer_limit(v, p)
    return np.clip(steer * p.phi_max, -lim, lim)


def step_vehicle(st, act: Actuation, p: VehicleParams, road: RoadGeometry, dt: float) -> None:
    """Advance the vehicle fields of a world state ``st`` by one step, in place.

    ``act`` is the guarded actuation. Throttle and brake reach the wheels through a first-order lag;
    the road-wheel angle follows steer * phi_max (within the speed-dependent steering limit) at
    most ``steer_rate`` per second.
    """
    kappa = road.curvature(st.s)
    den = 1.0 - kappa * st.d
    ds = st.v * np.cos(st.psi) / den
    s_new = st.s + dt * ds
    d_new = st.d + dt * st.v * np.sin(st.psi)
    psi_new = st.psi + dt * (st.v * np.tan(st.phi) / p.wheelbase - kappa * ds)
    v_new = np.maximum(st.v + dt * st.a, 0.0)
    alpha = 1.0 - np.exp(-dt / p.actuator_tau)
    thr = st.thr + alpha * (act.throttle - st.thr)
    brk = st.brk + alpha * (act.brake - st.brk)
    lim = p.steer_rate * dt
    phi = st.phi + np.clip(steer_target(act.steer, st.v, p) - st.phi, -lim, lim)
    st.s, st.d, st.psi, st.v, st.phi, st.thr, st.brk = s_new, d_new, psi_new, v_new, phi, thr, brk
    st.a = acceleration(v_new, thr, brk, p)
