"""Perception and localization: detections from the bridge's observation, with seeded noise.

Noise is counter-based: a table drawn once from the seed and indexed by the step k, so every run
of a scenario and seed sees the same noise whatever batch it runs in, and a snapshot needs no
random-generator state.
"""

from __future__ import annotations

import numpy as np

from drivefi.core import InjectionPoint, Injector, Observation
from drivefi.world.safety import lateral_extent
from drivefi.world.scenario import SensorNoise

RANGE = 150.0  # detection range [m]; "nothing ahead" reads as this distance

POINTS = [
    InjectionPoint(
        "perception.obstacle_distance", 0.0, RANGE, "m", "gap to the nearest in-lane object ahead"
    ),
    InjectionPoint(
        "perception.obstacle_speed", 0.0, 40.0, "m/s", "that object's speed along the lane"
    ),
    InjectionPoint(
        "perception.lane_offset", -2.0, 2.0, "m", "ego offset from its lane centre (left +)"
    ),
    InjectionPoint("perception.heading_error", -0.5, 0.5, "rad", "ego heading minus lane heading"),
    InjectionPoint("localization.speed", 0.0, 40.0, "m/s", "ego speed estimate"),
]

NOISE_CHANNELS = 5


def noise_table(seed: int, steps: int) -> np.ndarray:
    """Standard-normal noise, shape (steps + 1, channels), fixed by the seed."""
    return np.random.default_rng([seed, 0xD21F]).standard_normal((steps + 1, NOISE_CHANNELS))


def nearest_ahead(ds, dd, psi, length, width, half_lane, ego_half_len):
    """The nearest object ahead in the ego's lane and within RANGE, per run (arrays (N, A)):
    (its index, its bumper-to-bumper gap, its half-extent along the lane); gap is inf when none."""
    o_lat = lateral_extent(0.5 * length, 0.5 * width, psi)
    o_lon = lateral_extent(0.5 * width, 0.5 * length, psi)
    gap = ds - ego_half_len - o_lon
    gaps = np.where((np.abs(dd) < half_lane + o_lat) & (ds > 0) & (gap < RANGE), gap, np.inf)
    n = gaps.shape[0]
    if gaps.shape[1] == 0:
        return np.zeros(n, np.int64), np.full(n, np.inf), np.zeros(n)
    j = np.argmin(gaps, axis=1)
    rows = np.arange(n)
    return j, gaps[rows, j], o_lon[rows, j]


def perceive(
    obs: Observation, noise: np.ndarray, sigma: SensorNoise, ego_len: float, inj: Injector
):
    """Returns (obstacle_distance, obstacle_speed, lane_offset, heading_error, speed), each (N,)."""
    k = obs.k
    z = noise[np.minimum(k, len(noise) - 1)]
    j, near, _ = nearest_ahead(
        obs.obj_ds, obs.obj_dd, obs.obj_psi, obs.obj_len, obs.obj_wid,
        0.5 * obs.lane_width[:, None], 0.5 * ego_len,
    )  # fmt: skip
    near_v = obs.obj_vlon[np.arange(len(k)), j] if obs.obj_vlon.shape[1] else np.zeros(len(k))
    seen = np.isfinite(near)
    dist = np.where(seen, np.maximum(near + sigma.distance * z[:, 0], 0.0), RANGE)
    ospeed = np.where(seen, np.maximum(near_v + sigma.speed * z[:, 1], 0.0), 0.0)
    dist = inj.apply("perception.obstacle_distance", dist, k)
    ospeed = inj.apply("perception.obstacle_speed", ospeed, k)
    offset = inj.apply("perception.lane_offset", obs.lane_offset + sigma.lane_offset * z[:, 2], k)
    heading = inj.apply("perception.heading_error", obs.heading_error + sigma.heading * z[:, 3], k)
    speed = inj.apply("localization.speed", np.maximum(obs.v + sigma.speed * z[:, 4], 0.0), k)
    return dist, ospeed, offset, heading, speed
