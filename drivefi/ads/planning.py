"""Planning: a safe-following target speed (ACC) and lane keeping on the lane centre.

Lane keeping tracks the ego's lane offset and heading error with a gated filter: it predicts them
from the vehicle's own motion, blends in the perception measurement, and rejects a measurement
that jumps beyond the gate (coasting on the prediction) for at most ``max_coast`` steps, after
which it re-initialises on the measurement. This is the plausibility check real lane trackers do.

The following speed keeps the gap to the object ahead, plus that object's stopping distance,
at least the ego's own stopping distance at the planner's braking plus a standstill gap and a
time headway: v^2 / (2 b) + T v <= gap - s0 + v_o^2 / (2 b_o). Planning with b below the
vehicle's a_max is what leaves the golden run a safety margin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drivefi.ads.injector import InjectionPoint, Injector
from drivefi.ads.perception import RANGE

POINTS = [InjectionPoint("planning.target_speed", 0.0, 40.0, "m/s", "speed the controller tracks")]


@dataclass(frozen=True)
class PlannerParams:
    brake: float = 4.0  # b: braking the planner plans with [m/s^2]
    lead_brake: float = 8.0  # b_o: braking assumed for the object ahead [m/s^2]
    headway: float = 0.4  # T [s]
    standstill: float = 4.0  # s0 [m]


@dataclass(frozen=True)
class TrackerParams:
    gain: float = 0.5
    gate_offset: float = 0.25  # [m]
    gate_heading: float = 0.04  # [rad]
    max_coast: int = 10  # steps


def track_lane(e_hat, psi_hat, miss, z_e, z_psi, v, phi, curvature, dt, wheelbase, p=TrackerParams()):
    """One step of the lane tracker; returns the new (offset, heading error, coasting count)."""
    e_p = e_hat + dt * v * np.sin(psi_hat)
    psi_p = psi_hat + dt * (v * np.tan(phi) / wheelbase - curvature * v)
    ie, ip = z_e - e_p, z_psi - psi_p
    finite = np.isfinite(ie) & np.isfinite(ip)
    ok = finite & (np.abs(ie) <= p.gate_offset) & (np.abs(ip) <= p.gate_heading)
    reset = finite & ~ok & (miss >= p.max_coast)
    e_new = np.where(ok, e_p + p.gain * ie, np.where(reset, z_e, e_p))
    psi_new = np.where(ok, psi_p + p.gain * ip, np.where(reset, z_psi, psi_p))
    return e_new, psi_new, np.where(ok | reset, 0, miss + 1)


def plan(dist, ospeed, cruise: float, k, inj: Injector, p: PlannerParams = PlannerParams()):
    """Target speed (N,) after the injector."""
    room = np.maximum(dist - p.standstill + ospeed * ospeed / (2 * p.lead_brake), 0.0)
    v_follow = p.brake * (np.sqrt(p.headway**2 + 2 * room / p.brake) - p.headway)
    target = np.where(dist >= RANGE, cruise, np.minimum(cruise, v_follow))
    return inj.apply("planning.target_speed", target, k)
