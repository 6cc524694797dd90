"""An adaptive cruise control (ACC) agent with a Kalman-filtered gap estimate, written as a CARLA
Leaderboard agent: the common shape of a real stack, a state estimator on a perception output.

Architecture (an injection point at each seam)::

    perception  the nearest object ahead in the ego's lane (or entering it within 1 s) among the
                ``drivefi.observation`` objects -> ``perception.lead_gap`` (bumper to bumper,
                150 m: none) and ``perception.lead_speed`` (its speed along the lane, 0: none)
    estimation  constant-velocity Kalman filter (numpy, full covariance) on x = (gap, gap rate),
                measuring both; the track starts when a lead appears, ends when the gap reaches
                the sensing range, and restarts when a gap jumps more than GATE from its
                prediction (another object) -> ``estimation.gap`` and ``estimation.closing_speed``
    ACC         time-gap policy (standstill gap + time gap x speed) with a kinematic braking
                floor, capped by the set speed (the observation's ``set_speed``, lowered in bends)
    control     inverse throttle/brake maps; lane keeping by curvature feed-forward plus a
                Stanley-style law on heading error and lane offset

State: the filter's state and covariance (plain lists) and a few floats on the instance, so
``copy.deepcopy`` of the agent is a faithful snapshot; ``get_state()``/``set_state()`` give and take it as JSON-able data. No
clock, no randomness. Non-finite values at any point are driven through without an exception.
"""

from __future__ import annotations

import math

import carla
import numpy as np

import drivefi

try:  # the Leaderboard's base class when it is installed, DriveFI's drop-in otherwise
    from leaderboard.autoagents.autonomous_agent import AutonomousAgent
except ImportError:
    from drivefi.stacks.agent import AutonomousAgent

RANGE = 150.0  # sensing range [m]; a gap of RANGE means "no lead"
drivefi.declare(
    "perception.lead_gap", lo=0.0, hi=RANGE, unit="m",
    doc="measured bumper-to-bumper gap to the lead (150: none)",
)  # fmt: skip
drivefi.declare(
    "perception.lead_speed", lo=0.0, hi=40.0, unit="m/s",
    doc="measured speed of the lead along the lane (0: none)",
)  # fmt: skip
drivefi.declare(
    "estimation.gap", lo=0.0, hi=RANGE, unit="m",
    doc="Kalman-filtered gap to the lead (150: no track)",
)  # fmt: skip
drivefi.declare(
    "estimation.closing_speed", lo=-40.0, hi=40.0, unit="m/s",
    doc="Kalman-filtered ego speed minus lead speed (positive: closing in)",
)  # fmt: skip

CAR = {  # the bundled scenarios' car
    "wheelbase": 2.9, "length": 4.7, "phi_max": 0.6, "accel_max": 3.5, "brake_max": 9.5,
    "v_max": 50.0, "drag": 0.0004, "rolling": 0.1,
}  # fmt: skip


def get_entry_point():
    return "KalmanACCAgent"


class KalmanACCAgent(AutonomousAgent):
    """Kalman-filtered lead tracking, time-gap ACC, Stanley-style lane keeping."""

    LOOK = 1.0  # an object entering the lane within LOOK seconds is already the lead [s]
    Q_ACC = 3.0  # relative-acceleration noise of the constant-velocity model [m^2/s^3]
    R_GAP, R_SPEED = 0.25, 0.25  # measurement variances [m^2], [m^2/s^2]
    GATE = 8.0  # a gap this far from the prediction is another object: restart the track [m]
    S0, T_GAP = 5.0, 1.4  # standstill gap [m] and time gap [s] of the spacing policy
    K_GAP, K_REL, K_V = 0.25, 0.9, 0.5  # gap, closing-speed and set-speed gains [1/s^2], [1/s]
    S_STOP = 3.0  # the braking floor stops this far behind the lead [m]
    A_MIN, A_MAX = -9.0, 2.0  # acceleration command range [m/s^2]
    A_LAT = 1.8  # comfortable lateral acceleration for the bend speed [m/s^2]
    K_PSI, K_E, V_SOFT = 1.0, 1.5, 3.0  # lane keeping: heading gain, offset gain [1/s], [m/s]

    def setup(self, path_to_conf_file):
        self.car = dict(CAR)
        self.v_last = 0.0  # last valid speed reading [m/s]
        self.x = [RANGE, 0.0]  # filter state: gap [m], gap rate (lead minus ego speed) [m/s]
        self.p = [[0.0, 0.0], [0.0, 0.0]]  # its covariance
        self.tracking = False  # a lead is tracked

    def sensors(self):
        return [
            {"type": "sensor.speedometer", "reading_frequency": 20, "id": "speed"},
            {"type": "drivefi.observation", "id": "obs"},
        ]

    def get_state(self) -> dict:
        """The run state as plain data (deepcopy copies the same attributes)."""
        return {"v_last": self.v_last, "x": list(self.x), "p": [list(r) for r in self.p],
                "tracking": self.tracking}  # fmt: skip

    def set_state(self, state: dict) -> None:
        self.v_last, self.tracking = state["v_last"], state["tracking"]
        self.x, self.p = list(state["x"]), [list(r) for r in state["p"]]

    def run_step(self, input_data, timestamp):
        ob = input_data["obs"][1]
        v = float(input_data["speed"][1]["speed"])
        if math.isfinite(v):
            self.v_last = v
        else:  # a reading that is not a number counts as dropped: the last valid one stands in
            v = self.v_last
        gap, v_lead = self._perceive(ob["objects"], 0.5 * ob["lane_width"])
        gap = drivefi.inject("perception.lead_gap", gap)
        v_lead = drivefi.inject("perception.lead_speed", v_lead)
        gap, closing = self._estimate(gap, v_lead, v, ob["dt"])
        gap = drivefi.inject("estimation.gap", gap)
        closing = drivefi.inject("estimation.closing_speed", closing)
        a_cmd = self._acc(v, gap, closing, ob["set_speed"], ob["curvature"])
        return self._actuate(v, a_cmd, self._steer(v, ob))

    def _perceive(self, objects, half_lane: float):
        """(gap, speed) of the nearest object ahead in the lane or entering it; (RANGE, 0)."""
        gap, v_lead = RANGE, 0.0
        for o in objects:
            reach = half_lane + 0.5 * o["wid"]
            ahead = o["ds"] > 0.0
            inside = abs(o["dd"]) < reach or abs(o["dd"] + self.LOOK * o["vlat"]) < reach
            g = o["ds"] - 0.5 * (self.car["length"] + o["len"])
            if ahead and inside and g < gap:
                gap, v_lead = max(g, 0.0), o["vlon"]
        return gap, v_lead

    def _estimate(self, gap: float, v_lead: float, v: float, dt: float):
        """Kalman filter on (gap, gap rate): (estimated gap, closing speed); (RANGE, 0) without
        a track. Non-finite measurements count as missing."""
        if not (math.isfinite(gap) and gap < RANGE):  # no lead (or out of range): end the track
            self.tracking, self.x = False, [RANGE, 0.0]
            return RANGE, 0.0
        rate = v_lead - v if math.isfinite(v_lead) else None  # None: the gap alone is measured
        f = np.array([[1.0, dt], [0.0, 1.0]])
        x = f @ np.array(self.x)
        p = f @ np.array(self.p) @ f.T + self.Q_ACC * np.array(
            [[dt**3 / 3.0, dt * dt / 2.0], [dt * dt / 2.0, dt]]
        )
        if not self.tracking or abs(gap - x[0]) > self.GATE:  # a new lead: start its track
            x = np.array([gap, 0.0 if rate is None else rate])
            p = np.diag([self.R_GAP, self.R_SPEED if rate is not None else 25.0])
        else:
            h = np.eye(2) if rate is not None else np.array([[1.0, 0.0]])
            z = np.array([gap, rate] if rate is not None else [gap])
            r = np.diag([self.R_GAP, self.R_SPEED][: len(z)])
            k = p @ h.T @ np.linalg.inv(h @ p @ h.T + r)
            x = x + k @ (z - h @ x)
            p = (np.eye(2) - k @ h) @ p
        self.tracking = True
        self.x, self.p = x.tolist(), p.tolist()
        return min(max(self.x[0], 0.0), RANGE), -self.x[1]

    def _acc(self, v: float, gap: float, closing: float, set_speed: float, curvature: float):
        """Acceleration command: the set speed's, or the time-gap policy's when lower."""
        v_set = set_speed
        if abs(curvature) > 1e-6:
            v_set = min(v_set, math.sqrt(self.A_LAT / abs(curvature)))
        a = self.K_V * (v_set - v)
        if gap < RANGE:  # following: spacing error and closing speed, and a braking floor
            a_follow = self.K_GAP * (gap - self.S0 - self.T_GAP * v) - self.K_REL * closing
            if closing > 0.0:  # the constant deceleration that stops S_STOP behind the lead
                a_follow = min(a_follow, -closing * closing / (2.0 * max(gap - self.S_STOP, 0.5)))
            a = min(a, a_follow)
        if a != a:  # non-finite: passed on, the vehicle interface keeps the last command
            return a
        return min(max(a, self.A_MIN), self.A_MAX)

    def _steer(self, v: float, ob: dict) -> float:
        """Road-wheel angle (left positive): bend feed-forward, heading and offset feedback."""
        ff = math.atan(self.car["wheelbase"] * ob["curvature"])
        fb = self.K_PSI * ob["heading_error"] + math.atan(
            self.K_E * ob["lane_offset"] / (v + self.V_SOFT)
        )
        return ff - fb

    def _actuate(self, v: float, a_cmd: float, phi: float):
        """Inverse longitudinal model (rolling and air resistance) and wheel angle / phi_max,
        as a ``carla.VehicleControl`` (CARLA steers right for positive values)."""
        car = self.car
        need = a_cmd + car["rolling"] + car["drag"] * v * v
        push = car["accel_max"] * max(1.0 - v / car["v_max"], 1e-3)
        throttle = min(max(need / push, 0.0), 1.0) if need > 0.0 else 0.0
        brake = min(max(-need / car["brake_max"], 0.0), 1.0) if need < 0.0 else 0.0
        if need != need:
            throttle = brake = math.nan
        return carla.VehicleControl(
            throttle=throttle, brake=brake, steer=-min(max(phi / car["phi_max"], -1.0), 1.0)
        )
