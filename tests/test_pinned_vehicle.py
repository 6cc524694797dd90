"""Pins the vehicle interface's steering limits against the physics the README states.

README ("The embedded world"): the vehicle interface limits the steering rate (0.5 rad/s) and the
lateral acceleration the steering may ask for (2 m/s^2); the ego is a kinematic bicycle. For a
kinematic bicycle of wheelbase L at speed v the lateral acceleration of a road-wheel angle phi is
a_lat = v^2 tan(phi) / L, so the largest angle the interface may deliver is

    phi_lim(v) = min(atan(a_lat_max * L / v^2), phi_max)        (phi_max binds at low speed)

The expected values below are computed here from that formula, independently of
``drivefi.world.vehicle.steer_limit``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from drivefi.core import Actuation, Fault
from drivefi.faults import FaultInjector
from drivefi.run.simulate import Simulation, TraceRecorder
from drivefi.world.scenario import VehicleParams, load_scenario
from drivefi.world.vehicle import ActuatorState, VehicleInterface

DT = 0.05  # the bundled scenarios' step
# below ~2.91 m/s (default vehicle) the road-wheel limit phi_max binds; above it a_lat_max does
SPEEDS = [0.0, 0.3, 0.5, 1.0, 2.0, 2.9, 2.95, 3.0, 5.0, 10.0, 16.0, 20.0, 30.0, 40.0]


def closed_form_limit(v: float, wheelbase: float, a_lat_max: float, phi_max: float) -> float:
    """Kinematic bicycle: a_lat = v^2 tan(phi) / L  =>  phi = atan(a_lat L / v^2), clipped."""
    if v == 0.0:
        return phi_max  # no lateral acceleration at standstill, whatever the angle
    return min(math.atan(a_lat_max * wheelbase / (v * v)), phi_max)


def settle(p: VehicleParams, speeds, steer: float, steps: int = 200):
    """Hold a steer command on the vehicle interface at constant speeds until the road-wheel
    angle settles; returns the angles of every step, shape (steps, N)."""
    n = len(speeds)
    st = ActuatorState(*(np.zeros(n) for _ in range(6)), np.asarray(speeds, float))
    vi = VehicleInterface(p, DT)
    cmd = Actuation(np.zeros(n), np.zeros(n), np.full(n, steer))
    out = []
    for _ in range(steps):
        a = vi.apply(cmd, st)
        np.testing.assert_allclose(a.steer, a.phi / p.phi_max)  # steer is the angle over phi_max
        vi.commit(st, a)
        st.v = np.asarray(speeds, float)  # the interface does not move the car: hold the speed
        out.append(a.phi.copy())
    return np.array(out)


def test_readme_limits_are_the_defaults():
    p = VehicleParams()
    assert (p.a_lat_max, p.steer_rate) == (2.0, 0.5)  # README: 2 m/s^2, 0.5 rad/s


@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize(
    "vehicle",
    [
        {},  # the default vehicle of every bundled scenario
        {"wheelbase": 3.5, "a_lat_max": 4.0, "phi_max": 0.5},  # a different one, same physics
    ],
    ids=["default", "other"],
)
def test_applied_steering_limit_is_the_kinematic_bicycle_closed_form(vehicle, sign):
    p = VehicleParams(**vehicle)
    phis = settle(p, SPEEDS, sign)
    expected = np.array([closed_form_limit(v, p.wheelbase, p.a_lat_max, p.phi_max) for v in SPEEDS])
    np.testing.assert_allclose(phis[-1], sign * expected, rtol=1e-12, atol=1e-15)
    # never beyond the limit on the way there, and at most steer_rate * dt per step
    assert np.all(np.abs(phis) <= expected + 1e-15)
    steps = np.diff(np.vstack([np.zeros(len(SPEEDS)), phis]), axis=0)
    assert np.abs(steps).max() <= p.steer_rate * DT + 1e-15
    # phi_max binds at low speed, the lateral acceleration limit above it
    crossover = math.sqrt(p.a_lat_max * p.wheelbase / math.tan(p.phi_max))
    v = np.array(SPEEDS)
    low, high = v < crossover, v > crossover
    assert low.any() and high.any()
    np.testing.assert_allclose(np.abs(phis[-1][low]), p.phi_max, rtol=1e-12)
    a_lat = v[high] ** 2 * np.tan(np.abs(phis[-1][high])) / p.wheelbase
    np.testing.assert_allclose(a_lat, p.a_lat_max, rtol=1e-9)


def test_low_speed_limit_of_a_vehicle_with_a_low_lateral_acceleration_limit():
    p = VehicleParams(a_lat_max=0.2)  # valid (> 0): a_lat_max * L = 0.58 < tan(0.6) = 0.68
    speeds = [0.3, 0.5, 0.8, 1.0, 2.0]
    phis = settle(p, speeds, 1.0)
    expected = [closed_form_limit(v, p.wheelbase, p.a_lat_max, p.phi_max) for v in speeds]
    np.testing.assert_allclose(phis[-1], expected, rtol=1e-12)


def test_the_embedded_world_applies_the_limit_at_the_speed_of_each_step():
    """A stuck steering command on the reference stack: at speed (lead_brake, ~20 m/s) the wheel
    angle of step k+1 is exactly the closed-form limit at the speed of step k; stopped behind the
    lead (v = 0) it ramps at the steering rate to phi_max."""
    sc = load_scenario("lead_brake")
    p = sc.ego.vehicle
    sim = Simulation(sc)
    faults = [
        Fault("control.steer", "m-fixed", 1.0, None, 100, 20),  # at ~20 m/s
        Fault("control.steer", "m-fixed", -1.0, None, 100, 20),
        Fault("control.steer", "m-fixed", 1.0, None, 300, 40),  # stopped
    ]
    rec = TraceRecorder(len(faults), sim.steps, sim.points)
    sim.run(len(faults), injector=FaultInjector(faults, sim.ads.points), recorders=[rec])
    phi, v = rec.cols["phi"], rec.cols["v"]
    lim = np.array([[closed_form_limit(x, p.wheelbase, p.a_lat_max, p.phi_max) for x in row]
                    for row in v])  # fmt: skip
    # every step of every run: the angle is within the limit at the previous step's speed
    assert np.all(np.abs(phi[:, 1:]) <= lim[:, :-1] + 1e-12)
    for i, sign in ((0, 1.0), (1, -1.0)):
        assert np.all(v[i, 100:120] > 15.0)
        np.testing.assert_allclose(phi[i, 101:121], sign * lim[i, 100:120], rtol=1e-12)
        assert np.all(lim[i, 100:120] < 0.02)  # a_lat_max binds: far below phi_max
    assert np.all(v[2, 300:340] == 0.0)
    ramp = phi[2, 301:341]
    np.testing.assert_allclose(np.diff(ramp[:23]), p.steer_rate * sc.dt, rtol=1e-9)
    np.testing.assert_allclose(ramp[-10:], p.phi_max, rtol=1e-12)
