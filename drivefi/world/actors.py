"""Scripted actors: other vehicles, pedestrians and static objects, as closed-form functions of time.

Actors do not react to the ego, so their state is a pure function of t. That lets a batch of runs
that sit at different steps (faults with different start steps) share one world description, and it
makes a snapshot of the world no more than the ego's state and the step counter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drivefi.world.road import RoadGeometry
from drivefi.world.scenario import Brake, Cross, CutIn, Scenario, Stop

KIND_CODES = {"vehicle": 0, "pedestrian": 1, "static": 2}


@dataclass(frozen=True)
class ActorStates:
    """Actor states at given times; each array has shape t.shape + (A,)."""

    s: np.ndarray
    d: np.ndarray
    v_lon: np.ndarray  # speed along the lane [m/s]
    v_lat: np.ndarray  # speed across the lane, to the left [m/s]
    psi: np.ndarray  # heading relative to the lane [rad]
    length: np.ndarray  # (A,)
    width: np.ndarray  # (A,)
    a_max: np.ndarray  # (A,) own maximum braking
    kind: np.ndarray  # (A,) KIND_CODES


class ActorSet:
    """The scenario's actors, vectorised: parameters are arrays of shape (A,)."""

    def __init__(self, scenario: Scenario, road: RoadGeometry):
        acts = scenario.actors
        self.count = len(acts)
        w = road.lane_width
        f = np.float64
        self.s0 = np.array([a.s for a in acts], f)
        self.d0 = np.array([(a.lane + 0.5) * w if a.lane is not None else a.d for a in acts], f)
        self.v0 = np.array([0.0 if isinstance(a.behaviour, Stop) else a.speed for a in acts], f)
        self.length = np.array([a.size[0] for a in acts], f)
        self.width = np.array([a.size[1] for a in acts], f)
        self.a_max = np.array([a.a_max for a in acts], f)
        self.kind = np.array([KIND_CODES[a.kind] for a in acts], np.int64)
        inf = np.inf
        # braking: start time and deceleration (never brakes: t = inf)
        self.tb = np.array(
            [a.behaviour.t if isinstance(a.behaviour, Brake) else inf for a in acts], f
        )
        self.db = np.array(
            [a.behaviour.decel if isinstance(a.behaviour, Brake) else 0.0 for a in acts], f
        )
        # lateral manoeuvre (cut-in: smooth cosine profile; cross: constant speed until to_d)
        self.tl = np.full(self.count, inf)
        self.dl = np.zeros(self.count)  # lateral distance to cover (signed)
        self.Tl = np.ones(self.count)  # duration of the lateral move
        self.cross = np.zeros(self.count, bool)
        for i, a in enumerate(acts):
            b = a.behaviour
            if isinstance(b, CutIn):
                self.tl[i], self.dl[i], self.Tl[i] = (
                    b.t,
                    (b.to_lane + 0.5) * w - self.d0[i],
                    b.duration,
                )
            elif isinstance(b, Cross):
                self.tl[i], self.dl[i] = b.t, b.to_d - self.d0[i]
                self.Tl[i] = abs(self.dl[i]) / b.speed
                self.cross[i] = True

    def at(self, t: np.ndarray) -> ActorStates:
        t = np.asarray(t, dtype=float)[..., None]
        # longitudinal: cruise at v0 until tb, then brake at db to a stop
        tb = np.minimum(t, self.tb)
        vb = np.maximum(self.v0 - self.db * np.maximum(t - self.tb, 0.0), 0.0)
        t_brake = np.where(self.db > 0, (self.v0 - vb) / np.where(self.db > 0, self.db, 1.0), 0.0)
        s = self.s0 + self.v0 * tb + 0.5 * (self.v0 + vb) * t_brake
        v_lon = np.where(t < self.tb, self.v0, vb)
        # lateral
        tau = np.clip((t - self.tl) / self.Tl, 0.0, 1.0)
        moving = (tau > 0) & (tau < 1)
        smooth = 0.5 * (1 - np.cos(np.pi * tau))
        frac = np.where(self.cross, tau, smooth)
        d = self.d0 + self.dl * frac
        rate = np.where(self.cross, 1.0, 0.5 * np.pi * np.sin(np.pi * tau)) * self.dl / self.Tl
        v_lat = np.where(moving, rate, 0.0)
        psi = np.arctan2(v_lat, v_lon)
        return ActorStates(s, d, v_lon, v_lat, psi, self.length, self.width, self.a_max, self.kind)
