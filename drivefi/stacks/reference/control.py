"""Control: PI speed control to throttle/brake, Stanley-style lane keeping to steer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drivefi.core import InjectionPoint, Injector
from drivefi.world.scenario import VehicleParams

POINTS = [
    InjectionPoint("control.throttle", 0.0, 1.0, "", "throttle command"),
    InjectionPoint("control.brake", 0.0, 1.0, "", "brake command"),
    InjectionPoint("control.steer", -1.0, 1.0, "", "steer command (phi = steer * phi_max)"),
]


@dataclass(frozen=True)
class ControlParams:
    kp: float = 1.2  # [1/s]
    ki: float = 0.2  # [1/s^2]
    i_max: float = 5.0  # anti-windup bound of the integral [m/s * s]
    k_psi: float = 1.0  # heading-error gain
    k_e: float = 0.8  # cross-track gain [1/s]
    v_soft: float = 2.0  # softening speed of the cross-track term [m/s]


def reference(ref, target, dt: float, rise: float = 2.0):
    """Speed reference: follows a lower target at once (braking is never delayed) and a higher
    one at most ``rise`` m/s^2, so a spurious jump of the target cannot floor the throttle."""
    up = np.where(np.isfinite(ref), ref + rise * dt, target)
    out = np.minimum(target, up)
    return np.where(np.isfinite(out), out, ref)


def longitudinal(
    target, speed, integral, dt: float, vp: VehicleParams, k, inj: Injector, p=ControlParams()
):
    """Returns (throttle, brake, new integral). A non-finite error leaves the integral unchanged."""
    err = target - speed
    integral = np.where(np.isfinite(err), np.clip(integral + err * dt, -p.i_max, p.i_max), integral)
    a_cmd = p.kp * err + p.ki * integral
    throttle = inj.apply("control.throttle", np.clip(a_cmd / vp.accel_max, 0.0, 1.0), k)
    brake = inj.apply("control.brake", np.clip(-a_cmd / vp.brake_max, 0.0, 1.0), k)
    return throttle, brake, integral


def lateral(
    offset, heading, speed, curvature, vp: VehicleParams, k, inj: Injector, p=ControlParams()
):
    """Steer command: follow the lane's curvature, correct heading error and cross-track offset."""
    phi = (
        np.arctan(vp.wheelbase * curvature)
        - p.k_psi * heading
        - np.arctan2(p.k_e * offset, np.maximum(speed, 0.0) + p.v_soft)
    )
    return inj.apply("control.steer", np.clip(phi / vp.phi_max, -1.0, 1.0), k)
