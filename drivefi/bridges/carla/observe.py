"""The safety potential of an observation (the route's lane frame is in :mod:`.route`).

:func:`observation_safety` computes d_stop / d_safe / delta from an :class:`Observation` alone,
in the frame of the ego's lane centre, with the one assembly of :func:`drivefi.world.safety.safety`.
It equals the embedded bridge's own computation (which works from the road's right edge): both
frames describe the same geometry.
"""

from __future__ import annotations

import numpy as np

from drivefi.bridges.carla.route import LanePoint, RouteFrame, road_edges
from drivefi.core import Observation
from drivefi.world.road import lane_steer
from drivefi.world.safety import EgoState, LaneAt, Objects, SafetyPotential, StopParams, safety

__all__ = ["LanePoint", "RouteFrame", "observation_safety", "road_edges", "wrap"]


def wrap(a):
    """Angle wrapped to (-pi, pi]."""
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi


def observation_safety(
    obs: Observation, vehicle, obj_amax, stop: StopParams | None = None
) -> SafetyPotential:
    """Safety potential of every run of ``obs``, from the observation alone.

    Works in the ego lane centre's frame: the lateral offset is ``obs.lane_offset``, the frame's
    curvature ``obs.curvature``, the lane spans +-lane_width/2, the ego sits at s = 0 and the
    objects at (``obj_ds``, ``obj_dd``), their s lengths along the ego's parallel already
    (gap_kappa 0). ``obj_amax`` is each object's own maximum braking, shape (A,) or (N, A).
    """
    kc, off = obs.curvature, obs.lane_offset
    half = 0.5 * obs.lane_width
    ego = EgoState(np.zeros_like(off), off, obs.heading_error, obs.v, obs.phi)
    lane = LaneAt(kc, lane_steer(vehicle.wheelbase, kc), -half, half, gap_kappa=0.0)
    amax = np.broadcast_to(np.asarray(obj_amax, float), obs.obj_ds.shape)
    objects = Objects(
        obs.obj_ds, obs.obj_dd, obs.obj_psi, obs.obj_vlon, obs.obj_len, obs.obj_wid, amax
    )
    return safety(ego, lane, objects, vehicle, stop)
