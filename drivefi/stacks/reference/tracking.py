"""Gated trackers between perception and planning: the plausibility checks of the reference ADS.

Each tracker predicts its quantity from the vehicle's own motion, blends in the new measurement
when it falls inside a gate, and otherwise coasts on the prediction for at most ``max_coast``
steps before it re-initialises on the measurement. The obstacle tracker always accepts a
measurement that makes the situation more dangerous (a nearer or slower object), so a real
obstacle is never ignored; it coasts only through readings that would make the ego bolder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TrackerParams:
    gain: float = 0.5
    gate_offset: float = 0.25  # [m]
    gate_heading: float = 0.04  # [rad]
    gate_gap: float = 3.0  # [m]
    gate_speed: float = 1.5  # [m/s]
    max_coast: int = 30  # steps (1.5 s at dt = 0.05 s)


P = TrackerParams()


def _gated(pred, z, ok, miss, p: TrackerParams):
    """Blend accepted measurements, coast otherwise, re-initialise after max_coast misses."""
    finite = np.isfinite(z)
    ok = ok & finite
    reset = finite & ~ok & (miss >= p.max_coast)
    est = np.where(ok, pred + p.gain * (z - pred), np.where(reset, z, pred))
    return est, ok | reset


def track_lane(est, miss, z, v, phi, curvature, dt, wheelbase, p=P):
    """Lane offset and heading error from the estimate ``est`` and the measurement ``z`` (each an
    (offset [m], heading error [rad]) pair); returns (offset, heading, coasting count)."""
    (e_hat, psi_hat), (z_e, z_psi) = est, z
    e_p = e_hat + dt * v * np.sin(psi_hat)
    psi_p = psi_hat + dt * (v * np.tan(phi) / wheelbase - curvature * v)
    ok = (np.abs(z_e - e_p) <= p.gate_offset) & (np.abs(z_psi - psi_p) <= p.gate_heading)
    ok &= np.isfinite(z_psi)
    e_new, took = _gated(e_p, z_e, ok, miss, p)
    psi_new = np.where(took, np.where(ok, psi_p + p.gain * (z_psi - psi_p), z_psi), psi_p)
    return e_new, psi_new, np.where(took, 0, miss + 1)


def track_obstacle(gap_hat, vo_hat, miss, z_gap, z_vo, v, dt, range_max, p=P):
    """Gap to and speed of the object ahead; returns (gap, speed, coasting count)."""
    none = gap_hat >= range_max
    gap_p = np.where(none, range_max, gap_hat + dt * (vo_hat - v))
    near = (z_gap < gap_p - p.gate_gap) | (z_vo < vo_hat - p.gate_speed)
    inside = (np.abs(z_gap - gap_p) <= p.gate_gap) & (np.abs(z_vo - vo_hat) <= p.gate_speed)
    ok = (near | inside | none) & np.isfinite(z_vo)
    gap, took = _gated(gap_p, z_gap, ok, miss, p)
    gap = np.where(ok & (near | none), z_gap, gap)  # a new or nearer object: take it as measured
    vo = np.where(
        took, np.where(ok & ~(near | none), vo_hat + p.gain * (z_vo - vo_hat), z_vo), vo_hat
    )
    return np.minimum(gap, range_max), vo, np.where(took, 0, miss + 1)


def track_speed(v_hat, miss, z_v, accel, dt, p=P):
    """Ego speed from the localization estimate and the measured acceleration."""
    v_p = np.maximum(v_hat + dt * accel, 0.0)
    ok = np.abs(z_v - v_p) <= p.gate_speed
    v_new, took = _gated(np.where(np.isfinite(v_p), v_p, z_v), z_v, ok, miss, p)
    return v_new, np.where(took, 0, miss + 1)
