"""The safety potential of an observation (the route's lane frame is in :mod:`.route`).

:func:`observation_safety` computes d_stop / d_safe / delta from an :class:`Observation` alone,
in the frame of the ego's lane centre. It equals the embedded bridge's own computation (which
works from the road's right edge): both frames describe the same geometry.
"""

from __future__ import annotations

import numpy as np

from drivefi.bridges.carla.route import LanePoint, RouteFrame, road_edges
from drivefi.core import Observation
from drivefi.world.safety import SafetyPotential, StopParams, combine, d_safe, d_stop

__all__ = ["LanePoint", "RouteFrame", "observation_safety", "road_edges", "wrap"]


def wrap(a):
    """Angle wrapped to (-pi, pi]."""
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi


def observation_safety(
    obs: Observation, vehicle, obj_amax, stop: StopParams | None = None
) -> SafetyPotential:
    """Safety potential of every run of ``obs``, from the observation alone.

    Works in the ego lane centre's frame: the lateral offset is ``obs.lane_offset``, the frame's
    curvature ``obs.curvature``, the lane spans +-lane_width/2, objects sit at (``obj_ds``,
    ``obj_dd``). ``obj_amax`` is each object's own maximum braking, shape (A,) or (N, A).
    """
    p = stop or StopParams.of(vehicle)
    kc, off, psi = obs.curvature, obs.lane_offset, obs.heading_error
    half = 0.5 * obs.lane_width
    phi_lane = np.arctan(vehicle.wheelbase * kc)
    st = d_stop(obs.v, obs.phi, psi, off, kc, phi_lane, p)
    amax = np.broadcast_to(np.asarray(obj_amax, float), obs.obj_ds.shape)
    sf = d_safe(
        np.zeros_like(off), off, psi, vehicle.length, vehicle.width, -half, half, 0.0,
        obs.obj_ds, obs.obj_dd, obs.obj_psi, obs.obj_vlon, obs.obj_len, obs.obj_wid, amax,
    )  # fmt: skip
    return combine(*st, *sf)
