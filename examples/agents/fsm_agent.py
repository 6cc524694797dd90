"""A behaviour state machine with Kalman filters and an LQR lane keeper, as a CARLA Leaderboard agent.

Architecture (one module per stage, an injection point at each seam)::

    estimation  ego speed: a steady-state Kalman filter on (speed, acceleration bias) driven by the
                agent's own acceleration command and the speedometer -> ``estimation.speed``
                lead: the nearest object in the lane corridor now, or heading into it within
                1 s at its lateral speed; a steady-state Kalman filter on (gap, lead speed, lead
                acceleration), reset when the lead changes -> ``estimation.gap`` and
                ``estimation.closing_speed`` (ego speed minus lead speed)
    behaviour   a state machine: CRUISE (set speed), FOLLOW (time-gap policy on the lead),
                STOP (a stopping profile behind a standing object), BRAKE (emergency: the safety
                envelope, gap plus the lead's stopping distance minus the ego's, is too small);
                transitions with hysteresis -> ``behaviour.target_speed``
    control     longitudinal: proportional speed control plus the lead's acceleration as feed-
                forward when following, through the inverse throttle/brake maps; lateral: an LQR
                on the lane-error model (offset, heading error, last wheel angle; input: the
                wheel-angle change), gains from ``scipy.linalg.solve_discrete_are`` on a speed
                grid, solved in ``setup`` (once per process) -> ``control.lqr_steer``

Both Kalman gains are also solved in ``setup`` (the filters' models are time-invariant),
so a step is a few dozen float operations. Inputs: only the pseudo-sensors
``sensor.speedometer`` and ``drivefi.observation``, so it runs on the embedded simulator and on
CARLA alike. Configuration (optional JSON file given to ``setup``): ``cruise_speed`` [m/s]
(default: the speed when the agent is engaged, at its first step), ``dt`` [s] (the control period
the filters and the LQR are designed for; default 0.05) and the car's parameters (``wheelbase``,
``length``, ``phi_max``, ``accel_max``, ``brake_max``, ``v_max``, ``drag``, ``rolling``).

State: everything that changes during a run lives on the instance as plain floats, an int and a
string; ``copy.deepcopy`` of the agent is a faithful snapshot (it copies that state and shares the
gains solved in ``setup``). ``get_state()`` returns the state as a JSON-able dict of plain data
and ``set_state(state)`` restores it, for frameworks that snapshot agents that way. No clock, no
randomness: the same inputs give the same controls, bit for bit. A speed reading that is not a
number counts as dropped (the filter predicts only); a non-finite value at any of the points is
driven through without an exception.
"""

from __future__ import annotations

import copy
import functools
import json
import math
from pathlib import Path

import carla
import numpy as np
from scipy.linalg import solve_discrete_are

import drivefi

try:  # the Leaderboard's base class when it is installed, DriveFI's drop-in otherwise
    from leaderboard.autoagents.autonomous_agent import AutonomousAgent
except ImportError:
    from drivefi.stacks.agent import AutonomousAgent

drivefi.declare(
    "estimation.speed", lo=0.0, hi=40.0, unit="m/s", doc="Kalman-filtered ego speed",
)  # fmt: skip
drivefi.declare(
    "estimation.gap", lo=0.0, hi=150.0, unit="m",
    doc="Kalman-filtered bumper-to-bumper gap to the lead (150: no lead)",
)  # fmt: skip
drivefi.declare(
    "estimation.closing_speed", lo=-40.0, hi=40.0, unit="m/s",
    doc="Kalman-filtered ego speed minus lead speed (positive: closing in)",
)  # fmt: skip
drivefi.declare(
    "behaviour.target_speed", lo=0.0, hi=40.0, unit="m/s",
    doc="speed the behaviour state machine asks for",
)  # fmt: skip
drivefi.declare(
    "control.lqr_steer", lo=-0.6, hi=0.6, unit="rad",
    doc="road-wheel angle of the LQR lane keeper (left positive)",
)  # fmt: skip

RANGE = 150.0  # sensing range [m]; a gap of RANGE means "no lead"
CAR = {  # the bundled scenarios' car; a configuration file may override any of these
    "wheelbase": 2.9, "length": 4.7, "phi_max": 0.6, "accel_max": 3.5, "brake_max": 9.5,
    "v_max": 50.0, "drag": 0.0004, "rolling": 0.1,
}  # fmt: skip
CRUISE, FOLLOW, STOP, BRAKE = "cruise", "follow", "stop", "brake"


def get_entry_point():
    return "FsmAgent"


def steady_kalman_gain(a, h, q, r) -> np.ndarray:
    """Steady-state Kalman gain (update form) of x' = A x + w, z = H x + v."""
    p = solve_discrete_are(a.T, h.T, q, r)  # steady prior covariance
    return p @ h.T @ np.linalg.inv(h @ p @ h.T + r)


@functools.lru_cache(maxsize=16)
def kalman_gains(dt: float):
    """Gains of the two filters (as plain floats), solved once per process and period."""
    # ego speed: x = (v, acceleration bias), input the acceleration command, z = speedometer
    k = steady_kalman_gain(
        np.array([[1.0, dt], [0.0, 1.0]]), np.array([[1.0, 0.0]]),
        np.diag([0.05, 0.5]) * dt, np.array([[0.01]]),
    )  # fmt: skip
    k_speed = (float(k[0, 0]), float(k[1, 0]))
    # lead: x = (gap, lead speed, lead acceleration), input the ego speed, z = (gap, lead speed)
    k = steady_kalman_gain(
        np.array([[1.0, dt, 0.5 * dt * dt], [0.0, 1.0, dt], [0.0, 0.0, 1.0]]),
        np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),
        np.diag([0.05, 0.5, 200.0]) * dt, np.diag([0.04, 0.01]),
    )  # fmt: skip
    return k_speed, tuple(tuple(float(x) for x in row) for row in k)


@functools.lru_cache(maxsize=16)
def lqr_gains(dt: float, wheelbase: float, q: tuple, r: float, v_step: float):
    """LQR gains (k_e, k_psi, k_u) at speeds 0, v_step, ..., 46 m/s, solved once per process.

    Lane-error model over one period: x = (lane offset e, heading error psi, last wheel angle
    minus the lane-following angle u), input du (u = u_prev + du held over the period):
    e' = v psi, psi' = v u / L. Cost: sum x' diag(q) x + r du^2.
    """
    gains = []
    for v in np.arange(0.0, 46.0 + 1e-9, v_step):
        v = max(v, 0.5)
        bp, be = v * dt / wheelbase, 0.5 * v * v * dt * dt / wheelbase
        a = np.array([[1.0, v * dt, be], [0.0, 1.0, bp], [0.0, 0.0, 1.0]])
        b = np.array([[be], [bp], [1.0]])
        rr = np.array([[r]])
        p = solve_discrete_are(a, b, np.diag(q), rr)
        gains.append(tuple(float(x) for x in np.linalg.solve(rr + b.T @ p @ b, b.T @ p @ a)[0]))
    return tuple(gains)


class FsmAgent(AutonomousAgent):
    """Cruise / follow / stop / brake state machine over Kalman-filtered estimates, LQR steering."""

    # estimation
    LOOK = 1.0  # an object heading into the lane within LOOK seconds is already the lead [s]
    # behaviour
    S0 = 5.0  # standstill gap [m]
    T_GAP = 1.2  # time gap when following [s]
    K_GAP = 0.35  # gap-error gain of the following policy [1/s]
    T_ENTER, T_EXIT = 3.0, 4.0  # follow a lead closer than S0 + T v (+ closing margin); hysteresis
    B_COMF = 3.0  # comfortable braking of the stopping profile and the closing margin [m/s^2]
    V_STANDING = 0.5  # a lead slower than this is standing [m/s]
    B_OWN, B_OTHER = 6.5, 8.0  # braking of the ego and of the lead in the safety envelope [m/s^2]
    ENV_ON, ENV_T, ENV_OFF = 2.0, 0.3, 4.0  # BRAKE below ENV_ON + ENV_T v, leave above + ENV_OFF
    A_LAT = 1.8  # comfortable lateral acceleration for the curve speed [m/s^2]
    # control
    K_V = 1.2  # speed gain [1/s]
    A_MIN, A_MAX = -8.5, 2.5  # acceleration command range [m/s^2]
    Q_LAT = (1.0, 40.0, 20.0)  # LQR weights of offset, heading error, wheel angle
    R_LAT = 2000.0  # LQR weight of the wheel-angle change per step
    V_STEP = 2.0  # speed grid of the LQR gains [m/s]

    def setup(self, path_to_conf_file):
        conf = {}
        if path_to_conf_file and Path(path_to_conf_file).is_file():
            conf = json.loads(Path(path_to_conf_file).read_text())
        self.car = {k: float(conf.get(k, v)) for k, v in CAR.items()}
        cruise = conf.get("cruise_speed")
        self.cruise = None if cruise is None else float(cruise)
        self.dt = dt = float(conf.get("dt", 0.05))
        self.k_speed, self.k_lead = kalman_gains(dt)
        self.lqr = lqr_gains(dt, self.car["wheelbase"], self.Q_LAT, self.R_LAT, self.V_STEP)
        # run state (plain data)
        self.set_speed = self.cruise
        self.mode = CRUISE
        self.v_est, self.bias = math.nan, 0.0
        self.lead_id = -1
        self.gap, self.v_lead, self.a_lead = RANGE, 0.0, 0.0
        self.a_cmd = 0.0
        self.u_dev = 0.0  # last wheel angle minus the lane-following angle then

    def set_global_plan(self, global_plan_gps, global_plan_world_coord):
        """The route, kept as plain data (GPS dicts; x, y, z, yaw tuples) so that the agent stays
        copyable (``carla.Transform`` cannot be deep-copied). This agent drives by its lane."""
        self._global_plan = [(dict(g), int(o)) for g, o in global_plan_gps]
        self._global_plan_world_coord = [
            ((t.location.x, t.location.y, t.location.z, t.rotation.yaw), int(o))
            for t, o in global_plan_world_coord
        ]

    def sensors(self):
        return [
            {"type": "sensor.speedometer", "reading_frequency": 20, "id": "speed"},
            {"type": "drivefi.observation", "id": "obs"},
        ]

    # -- snapshot hooks -------------------------------------------------------------------------
    def __deepcopy__(self, memo):
        """A snapshot: the run state is copied, the gains solved in ``setup`` are shared."""
        new = copy.copy(self)
        new.set_state(copy.deepcopy(self.get_state(), memo))
        return new

    _STATE = ("set_speed", "mode", "v_est", "bias", "lead_id", "gap", "v_lead", "a_lead",
              "a_cmd", "u_dev")  # fmt: skip

    def get_state(self) -> dict:
        """The agent's run state as plain data (floats, an int and the mode's name)."""
        return {name: getattr(self, name) for name in self._STATE}

    def set_state(self, state: dict) -> None:
        """Continue from a state ``get_state`` returned."""
        for name in self._STATE:
            setattr(self, name, state[name])

    # -- the step -------------------------------------------------------------------------------
    def run_step(self, input_data, timestamp):
        ob = input_data["obs"][1]
        v = drivefi.inject(
            "estimation.speed", self._estimate_speed(input_data["speed"][1]["speed"])
        )
        if self.set_speed is None:
            self.set_speed = v  # engaged at the current speed, as a cruise control is
        gap, closing = self._estimate_lead(ob["objects"], 0.5 * ob["lane_width"], v)
        gap = drivefi.inject("estimation.gap", gap)
        closing = drivefi.inject("estimation.closing_speed", closing)
        target, feedforward = self._behave(v, gap, v - closing, ob["curvature"])
        target = drivefi.inject("behaviour.target_speed", target)
        a_cmd = min(max(self.K_V * (target - v) + feedforward, self.A_MIN), self.A_MAX)
        phi_ff = math.atan(self.car["wheelbase"] * ob["curvature"])
        phi = drivefi.inject("control.lqr_steer", phi_ff + self._steer(v, ob))
        if a_cmd == a_cmd:  # the vehicle interface keeps the last valid command for a NaN
            self.a_cmd = a_cmd
        if phi == phi:
            cap = self.car["phi_max"]
            self.u_dev = min(max(phi, -cap), cap) - phi_ff
        return self._actuate(v, a_cmd, phi)

    # -- estimation -------------------------------------------------------------------------------
    def _estimate_speed(self, z: float) -> float:
        if not math.isfinite(self.v_est):  # first step (or a lost estimate): take the reading
            self.v_est, self.bias = float(z), 0.0
            return self.v_est
        kv, kb = self.k_speed
        pred = self.v_est + self.dt * (self.a_cmd + self.bias)
        if not math.isfinite(z):  # a dropped reading: predict only
            self.v_est = max(pred, 0.0)
            return self.v_est
        innov = z - pred
        self.v_est = max(pred + kv * innov, 0.0)
        self.bias = min(max(self.bias + kb * innov, -3.0), 3.0)
        return self.v_est

    def _estimate_lead(self, objects, half_lane: float, v: float):
        """(gap, closing speed) of the lead after the Kalman filter; (RANGE, 0) without one."""
        half_ego = 0.5 * self.car["length"]
        lead, gap, vlon = -1, RANGE, 0.0
        for i, o in enumerate(objects):
            if o["ds"] <= 0.0:
                continue
            c, s = abs(math.cos(o["psi"])), abs(math.sin(o["psi"]))
            reach = half_lane + 0.5 * (o["wid"] * c + o["len"] * s)
            if abs(o["dd"]) >= reach and abs(o["dd"] + self.LOOK * o["vlat"]) >= reach:
                continue
            g = o["ds"] - half_ego - 0.5 * (o["wid"] * s + o["len"] * c)
            if g < gap:
                lead, gap, vlon = i, g, o["vlon"]
        if lead < 0:
            self.lead_id, self.gap, self.v_lead, self.a_lead = -1, RANGE, 0.0, 0.0
            return RANGE, 0.0
        if lead != self.lead_id or not abs(gap - self.gap) < 5.0:  # a new lead: start its track
            self.lead_id, self.gap, self.v_lead, self.a_lead = lead, gap, vlon, 0.0
        else:
            (k00, k01), (k10, k11), (k20, k21) = self.k_lead
            dt = self.dt
            g_p = self.gap + dt * (self.v_lead - v) + 0.5 * dt * dt * self.a_lead
            v_p = self.v_lead + dt * self.a_lead
            y1, y2 = gap - g_p, vlon - v_p
            self.gap = g_p + k00 * y1 + k01 * y2
            self.v_lead = v_p + k10 * y1 + k11 * y2
            self.a_lead = min(max(self.a_lead + k20 * y1 + k21 * y2, -12.0), 6.0)
        return self.gap, v - self.v_lead

    # -- behaviour ------------------------------------------------------------------------------
    def _behave(self, v: float, gap: float, v_lead: float, curvature: float):
        """(target speed, acceleration feed-forward) from the state machine."""
        cruise = self.set_speed
        if abs(curvature) > 1e-6:
            cruise = min(cruise, math.sqrt(self.A_LAT / abs(curvature)))
        present = gap < RANGE
        v_lead_pos = max(v_lead, 0.0)
        closing = max(v - v_lead, 0.0)
        envelope = gap + v_lead_pos**2 / (2 * self.B_OTHER) - v * v / (2 * self.B_OWN)
        env_min = self.ENV_ON + self.ENV_T * v
        standing = v_lead < self.V_STANDING
        near = gap < self.S0 + self.T_ENTER * v + closing * closing / (2 * self.B_COMF)
        mode = self.mode
        # transitions (not when the gap is non-finite: the machine keeps its mode)
        if not present:
            mode = CRUISE
        elif envelope < env_min:
            mode = BRAKE
        elif mode == BRAKE:
            if envelope > env_min + self.ENV_OFF:
                mode = STOP if standing else FOLLOW
        elif standing and (near or mode == STOP):
            mode = STOP
        elif near or (
            mode == FOLLOW
            and gap < self.S0 + self.T_EXIT * v + closing * closing / (2 * self.B_COMF)
        ):
            mode = FOLLOW
        elif mode != CRUISE:
            mode = CRUISE
        self.mode = mode
        # targets
        if mode == CRUISE:
            return cruise, 0.0
        if mode == BRAKE:
            return 0.0, self.A_MIN
        if mode == STOP:  # the constant deceleration that stops S0 behind it, as feed-forward
            room = max(gap - self.S0, 0.0)
            return (
                min(cruise, math.sqrt(2.0 * self.B_COMF * room)),
                max(-v * v / (2.0 * max(room, 0.5)), self.A_MIN),
            )
        desired = self.S0 + self.T_GAP * v
        target = min(max(v_lead + self.K_GAP * (gap - desired), 0.0), cruise)
        return target, min(self.a_lead, 0.0)

    # -- control --------------------------------------------------------------------------------
    def _steer(self, v: float, ob: dict) -> float:
        """Wheel angle minus the lane-following angle: the LQR's (gains interpolated in speed)."""
        u_prev = self.u_dev if self.u_dev == self.u_dev else 0.0
        x = min(max(v / self.V_STEP, 0.0), len(self.lqr) - 1.000001)
        if x != x:  # a non-finite speed: hold the wheel where it is
            return u_prev
        i = int(x)
        f = x - i
        (a_e, a_p, a_u), (b_e, b_p, b_u) = self.lqr[i], self.lqr[i + 1]
        du = -(
            (a_e + f * (b_e - a_e)) * ob["lane_offset"]
            + (a_p + f * (b_p - a_p)) * ob["heading_error"]
            + (a_u + f * (b_u - a_u)) * u_prev
        )
        return u_prev + du

    def _actuate(self, v: float, a_cmd: float, phi: float):
        car = self.car
        need = a_cmd + car["rolling"] + car["drag"] * v * v
        push = car["accel_max"] * max(1.0 - v / car["v_max"], 1e-3)
        throttle = min(max(need / push, 0.0), 1.0) if need > 0.0 else 0.0
        brake = min(max(-need / car["brake_max"], 0.0), 1.0) if need < 0.0 else 0.0
        steer = min(max(phi / car["phi_max"], -1.0), 1.0)
        if need != need:  # non-finite: passed on, the vehicle interface keeps the last command
            throttle = brake = math.nan
        if phi != phi:
            steer = math.nan
        return carla.VehicleControl(throttle=throttle, steer=-steer, brake=brake)
