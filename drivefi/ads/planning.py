"""Planning: a safe-following target speed (ACC) and lane keeping on the lane centre.

Planning reads perception through the gated trackers of :mod:`drivefi.ads.tracking`.

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


def plan(dist, ospeed, cruise: float, k, inj: Injector, p: PlannerParams = PlannerParams()):
    """Target speed (N,) after the injector."""
    room = np.maximum(dist - p.standstill + ospeed * ospeed / (2 * p.lead_brake), 0.0)
    v_follow = p.brake * (np.sqrt(p.headway**2 + 2 * room / p.brake) - p.headway)
    target = np.where(dist >= RANGE, cruise, np.minimum(cruise, v_follow))
    return inj.apply("planning.target_speed", target, k)
