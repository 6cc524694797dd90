"""Perception and localization: detections from the bridge's observation, with seeded noise.

Noise is counter-based: a table drawn once from the seed and indexed by the step k, so every run
of a scenario and seed sees the same noise whatever batch it runs in, and a snapshot needs no
random-generator state.
"""

from __future__ import annotations

import numpy as np

from drivefi.ads.injector import InjectionPoint, Injector
from drivefi.bridges.base import Observation
from drivefi.scenario import SensorNoise

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


def perceive(
    obs: Observation, noise: np.ndarray, sigma: SensorNoise, ego_len: float, inj: Injector
):
    """Returns (obstacle_distance, obstacle_speed, lane_offset, heading_error, speed), each (N,)."""
    k = obs.k
    z = noise[np.minimum(k, len(noise) - 1)]
    half_w = 0.5 * obs.lane_width[:, None]
    o_lat = 0.5 * obs.obj_wid * np.abs(np.cos(obs.obj_psi)) + 0.5 * obs.obj_len * np.abs(
        np.sin(obs.obj_psi)
    )
    o_lon = 0.5 * obs.obj_len * np.abs(np.cos(obs.obj_psi)) + 0.5 * obs.obj_wid * np.abs(
        np.sin(obs.obj_psi)
    )
    gap = obs.obj_ds - 0.5 * ego_len - o_lon
    in_lane = (np.abs(obs.obj_dd) < half_w + o_lat) & (obs.obj_ds > 0) & (gap < RANGE)
    gaps = np.where(in_lane, gap, np.inf)
    if gaps.shape[1]:
        j = np.argmin(gaps, axis=1)
        rows = np.arange(len(k))
        near, near_v = gaps[rows, j], obs.obj_vlon[rows, j]
    else:
        near, near_v = np.full(len(k), np.inf), np.zeros(len(k))
    seen = np.isfinite(near)
    dist = np.where(seen, np.maximum(near + sigma.distance * z[:, 0], 0.0), RANGE)
    ospeed = np.where(seen, np.maximum(near_v + sigma.speed * z[:, 1], 0.0), 0.0)
    dist = inj.apply("perception.obstacle_distance", dist, k)
    ospeed = inj.apply("perception.obstacle_speed", ospeed, k)
    offset = inj.apply("perception.lane_offset", obs.lane_offset + sigma.lane_offset * z[:, 2], k)
    heading = inj.apply("perception.heading_error", obs.heading_error + sigma.heading * z[:, 3], k)
    speed = inj.apply("localization.speed", np.maximum(obs.v + sigma.speed * z[:, 4], 0.0), k)
    return dist, ospeed, offset, heading, speed
