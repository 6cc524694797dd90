"""Planning: a safe-following target speed (ACC) and lane keeping on the lane centre.

Planning reads perception through the gated trackers of :mod:`drivefi.stacks.reference.tracking`.

The following speed keeps the gap to the object ahead, plus that object's stopping distance,
at least the ego's own stopping distance at the planner's braking plus a standstill gap and a
time headway: v^2 / (2 b) + T v <= gap - s0 + v_o^2 / (2 b_o). Planning with b below the
vehicle's a_max is what leaves the golden run a safety margin.

The curve speed keeps the lateral acceleration v^2 |kappa| at most ``a_lat``, below the vehicle
interface's steering limit (2 m/s^2 by default) so that the car can steer through the curve, and
brakes for a curve ahead at ``curve_brake``: v^2 <= a_lat / |kappa_j| + 2 b_c D_j over the lane
preview (the largest |kappa| within D_j ahead). It never binds on the bundled scenarios (their
curves need at most 1.5 m/s^2 at their cruise speeds).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drivefi.core import InjectionPoint, Injector
from drivefi.stacks.reference.perception import RANGE

POINTS = [InjectionPoint("planning.target_speed", 0.0, 40.0, "m/s", "speed the controller tracks")]


@dataclass(frozen=True)
class PlannerParams:
    brake: float = 4.0  # b: braking the planner plans with [m/s^2]
    lead_brake: float = 8.0  # b_o: braking assumed for the object ahead [m/s^2]
    headway: float = 0.4  # T [s]
    standstill: float = 4.0  # s0 [m]
    a_lat: float = 1.6  # lateral acceleration the curve speed allows [m/s^2]
    curve_brake: float = 2.0  # b_c: braking toward a curve ahead [m/s^2]


def curve_speed(curvature, ahead, preview, p: PlannerParams = PlannerParams()):
    """Largest speed (N,) that keeps v^2 |kappa| <= a_lat here and can slow to it for every curve
    of the preview ((N, P) largest |kappa| within ``preview`` (P,) metres; None: none given)."""
    here = np.sqrt(p.a_lat / np.maximum(np.abs(curvature), 1e-9))
    if ahead is None or not ahead.any():
        return here
    # the largest curvature within D_j lies beyond D_(j-1) (else D_(j-1) sees it): brake from there
    preview = np.asarray(preview, float)
    start = np.concatenate([[0.0], preview[:-1]])
    v2 = p.a_lat / np.maximum(ahead, 1e-9) + 2.0 * p.curve_brake * start
    return np.minimum(here, np.sqrt(np.min(v2, axis=-1)))


def plan(
    dist, ospeed, cruise: float, k, inj: Injector, p: PlannerParams = PlannerParams(), v_curve=None
):
    """Target speed (N,) after the injector; ``v_curve`` is :func:`curve_speed` (None: no limit)."""
    room = np.maximum(dist - p.standstill + ospeed * ospeed / (2 * p.lead_brake), 0.0)
    v_follow = p.brake * (np.sqrt(p.headway**2 + 2 * room / p.brake) - p.headway)
    target = np.where(dist >= RANGE, cruise, np.minimum(cruise, v_follow))
    if v_curve is not None:
        target = np.minimum(target, v_curve)
    return inj.apply("planning.target_speed", target, k)
