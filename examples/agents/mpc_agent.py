"""A receding-horizon (MPC-style) driving agent, written as a CARLA Leaderboard agent.

Architecture (one module per stage, an injection point at each seam)::

    perception  objects of the ``drivefi.observation`` pseudo-sensor -> tracks in the lane frame
                (gap, speed, acceleration by differencing the speed of the object at the same
                index, lateral position and speed)
                -> ``perception.lead_gap``: gap to the nearest object in the lane corridor now
    prediction  constant acceleration along the lane (stopping at v = 0), constant lateral speed
                -> ``prediction.lead_accel``: the acceleration the lead is predicted with
                every track's future position gives the room ahead over the horizon, counting
                only the instants the track is predicted inside the ego's lane corridor (so a
                vehicle cutting in or a pedestrian stepping in is planned for before it arrives)
    planning    longitudinal: 115 two-piece acceleration sequences (3.6 s in 0.3 s steps) rolled
                out on a point-mass model with the actuator lag, all at once with numpy; cost =
                speed tracking + effort + jerk + a soft safety-envelope constraint (room ahead
                minus the ego's own stopping distance must stay above a speed-dependent margin);
                the best sequence's first acceleration is refined by a parabola through its
                neighbours -> ``planning.accel_cmd``
                lateral: a linear-quadratic program on the kinematic lane-error model (offset,
                heading error) along the chosen speed profile (7 steering moves, penalising
                offset, heading error, steering and steering rate); its explicit solution, a
                linear law in (offset, heading error, last move), is tabulated in ``setup`` over
                speed and acceleration and interpolated -> ``planning.wheel_angle``
    actuation   inverse longitudinal model (throttle and brake maps, rolling and air resistance)
                and wheel angle / maximum wheel angle, as a ``carla.VehicleControl`` (CARLA
                steers right for positive values)

Inputs: only the pseudo-sensors ``sensor.speedometer`` and ``drivefi.observation``, so it runs on
the embedded simulator and on CARLA alike. Configuration (optional JSON file given to ``setup``):
``cruise_speed`` [m/s] (default: the speed when the agent is engaged, i.e. at its first step)
and the car's parameters (``wheelbase``, ``length``, ``phi_max``, ``accel_max``, ``brake_max``,
``v_max``, ``drag``, ``rolling``, ``tau``; defaults: the bundled scenarios' car).

State: everything that changes during a run lives on the instance as plain floats and lists;
``copy.deepcopy`` of the agent is a faithful snapshot (it copies that state and shares the tables
made in ``setup``). ``get_state()`` returns the state as a JSON-able dict of plain data and
``set_state(state)`` restores it, for frameworks that snapshot agents that way. No clock, no
randomness: the same inputs give the same controls, bit for bit. A speed reading that is not a
number counts as dropped (the last valid one stands in); a non-finite value at any of the points
is driven through without an exception.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import carla
import numpy as np

import drivefi

try:  # the Leaderboard's base class when it is installed, DriveFI's drop-in otherwise
    from leaderboard.autoagents.autonomous_agent import AutonomousAgent
except ImportError:
    from drivefi.stacks.agent import AutonomousAgent

drivefi.declare(
    "perception.lead_gap", lo=0.0, hi=150.0, unit="m",
    doc="bumper-to-bumper gap to the nearest object in the ego's lane corridor (150: none)",
)  # fmt: skip
drivefi.declare(
    "prediction.lead_accel", lo=-10.0, hi=5.0, unit="m/s^2",
    doc="acceleration the lead object is predicted with",
)  # fmt: skip
drivefi.declare(
    "planning.accel_cmd", lo=-10.0, hi=4.0, unit="m/s^2",
    doc="first acceleration of the chosen receding-horizon plan",
)  # fmt: skip
drivefi.declare(
    "planning.wheel_angle", lo=-0.6, hi=0.6, unit="rad",
    doc="road-wheel angle of the lateral plan (left positive)",
)  # fmt: skip

RANGE = 150.0  # sensing range [m]; a lead gap of RANGE means "nothing ahead"
CAR = {  # the bundled scenarios' car; a configuration file may override any of these
    "wheelbase": 2.9, "length": 4.7, "phi_max": 0.6, "accel_max": 3.5, "brake_max": 9.5,
    "v_max": 50.0, "drag": 0.0004, "rolling": 0.1, "tau": 0.1,
}  # fmt: skip
_LATERAL_GAINS: dict[tuple, list] = {}  # explicit lateral gains, per parameters (read-only)


def get_entry_point():
    return "MpcAgent"


class MpcAgent(AutonomousAgent):
    """Receding-horizon planner on a kinematic model with a constant-acceleration predictor."""

    # planner
    DT = 0.3  # planning step [s]
    H = 12  # longitudinal horizon [steps] (3.6 s)
    H_LAT = 7  # lateral horizon [steps] (2.1 s)
    SEG1 = 2  # steps of the first acceleration piece (0.6 s)
    A1 = np.linspace(-9.0, 2.0, 23)  # first-piece accelerations [m/s^2]
    A2 = np.array([-8.0, -5.0, -2.0, 0.0, 1.0])  # second piece [m/s^2]
    B_OWN = 6.0  # braking the ego plans its own emergency stop with [m/s^2]
    B_OTHER = 8.0  # braking assumed for the objects ahead [m/s^2]
    MARGIN = 3.0  # standstill margin of the envelope [m]
    MARGIN_T = 0.3  # speed-proportional margin [s]
    PAD = 0.3  # lateral padding of the lane corridor for predicted objects [m]
    A_LAT = 1.8  # comfortable lateral acceleration for the curve speed [m/s^2]
    W_V, W_A, W_J, W_S = 1.0, 0.3, 4.0, 3000.0  # speed, effort, jerk, envelope weights
    Q_E, Q_PSI, R_U, R_DU = 1.0, 60.0, 30.0, 300.0  # lateral weights
    V_STEP, A_STEP = 1.0, 1.0
    V_GRID = np.arange(0.0, 45.0 + V_STEP, V_STEP)  # speed grid of the lateral gains [m/s]
    A_GRID = np.arange(-9.0, 3.0 + A_STEP, A_STEP)  # acceleration grid [m/s^2]

    def setup(self, path_to_conf_file):
        conf = {}
        if path_to_conf_file and Path(path_to_conf_file).is_file():
            conf = json.loads(Path(path_to_conf_file).read_text())
        self.car = {k: float(conf.get(k, v)) for k, v in CAR.items()}
        cruise = conf.get("cruise_speed")
        self.cruise = None if cruise is None else float(cruise)
        # candidate acceleration sequences (C, H), fixed for the whole run. A candidate starts
        # from the last command a_prev through the actuator lag: acc = seq + (a_prev - a1) lag,
        # so speed and position are a table plus a row in (v, a_prev), and effort and jerk a
        # quadratic in a_prev per candidate: all tabulated here.
        a1, a2 = np.meshgrid(self.A1, self.A2, indexing="ij")
        self.n1, self.n2 = a1.shape
        a1 = a1.reshape(-1, 1)  # row c = i1 * n2 + i2
        seq = np.where(np.arange(self.H) < self.SEG1, a1, a2.reshape(-1, 1))
        dt = self.DT
        lag = np.exp(-(np.arange(self.H) + 0.5) * dt / self.car["tau"])
        self.t_end = (np.arange(self.H) + 1.0) * dt
        self.t_list = self.t_end.tolist()
        vel_seq, self.vel_lag = dt * np.cumsum(seq, axis=1), dt * np.cumsum(lag)
        pos_seq = dt * (np.cumsum(vel_seq, axis=1) - 0.5 * vel_seq)
        self.pos_lag = dt * (np.cumsum(self.vel_lag) - 0.5 * self.vel_lag)
        self.vel0 = vel_seq - a1 * self.vel_lag  # speed = v + vel0 + a_prev vel_lag
        self.pos0 = pos_seq - a1 * self.pos_lag  # position = v t + pos0 + a_prev pos_lag
        # W_A sum(acc^2) + W_J (a_prev - a1)^2 = q0 + q1 a_prev + q2 a_prev^2
        a1 = a1[:, 0]
        e_seq, e_x, e_lag = (seq * seq).sum(axis=1), (seq * lag).sum(axis=1), (lag * lag).sum()
        w_a, w_j = self.W_A, self.W_J
        self.q0 = w_a * (e_seq - 2 * a1 * e_x + a1 * a1 * e_lag) + w_j * a1 * a1
        self.q1 = 2 * w_a * (e_x - a1 * e_lag) - 2 * w_j * a1
        self.q2 = w_a * e_lag + w_j
        self.lat_gains = self._lateral_gains()
        # run state (plain data)
        self.set_speed = self.cruise
        self.v_last = 0.0
        self.a_cmd = 0.0
        self.u_dev = 0.0  # last wheel angle minus the lane-following angle then
        self.last_t = None
        self.obj_v: list[float] = []
        self.obj_a: list[float] = []

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
        """A snapshot: the run state is copied, the tables made in ``setup`` are shared."""
        new = copy.copy(self)
        new.set_state(copy.deepcopy(self.get_state(), memo))
        return new

    def get_state(self) -> dict:
        """The agent's run state as plain data (floats, lists, None)."""
        return {
            "set_speed": self.set_speed,
            "v_last": self.v_last,
            "a_cmd": self.a_cmd,
            "u_dev": self.u_dev,
            "last_t": self.last_t,
            "obj_v": list(self.obj_v),
            "obj_a": list(self.obj_a),
        }

    def set_state(self, state: dict) -> None:
        """Continue from a state ``get_state`` returned (the dict is not kept)."""
        self.set_speed, self.v_last = state["set_speed"], state["v_last"]
        self.a_cmd = state["a_cmd"]
        self.u_dev, self.last_t = state["u_dev"], state["last_t"]
        self.obj_v, self.obj_a = list(state["obj_v"]), list(state["obj_a"])

    # -- the step -------------------------------------------------------------------------------
    def run_step(self, input_data, timestamp):
        v = float(input_data["speed"][1]["speed"])
        ob = input_data["obs"][1]
        if math.isfinite(v):
            self.v_last = v
        else:  # a reading that is not a number is a dropped one: the last valid one stands in
            v = self.v_last
        if self.set_speed is None and math.isfinite(v):
            self.set_speed = v  # engaged at the current speed, as a cruise control is
        dt = 0.05 if self.last_t is None else max(timestamp - self.last_t, 1e-3)
        self.last_t = float(timestamp)
        tracks, lead = self._perceive(ob["objects"], 0.5 * ob["lane_width"], dt)
        room = self._predict(tracks, lead, 0.5 * ob["lane_width"])
        a_cmd, vel = self._plan_speed(v, room, ob["curvature"])
        a_cmd = drivefi.inject("planning.accel_cmd", a_cmd)
        phi_ff = math.atan(self.car["wheelbase"] * ob["curvature"])  # lane-following angle
        u = self._plan_steer(v, float(vel[self.H_LAT - 1]), ob["lane_offset"], ob["heading_error"])
        phi = drivefi.inject("planning.wheel_angle", phi_ff + u)
        self._remember(a_cmd, phi, phi_ff)
        return self._actuate(v, a_cmd, phi)

    def _remember(self, a_cmd: float, phi: float, phi_ff: float) -> None:
        """What the car does with the commands, for the next plan's start: within its physical
        range, and (as the vehicle interface does) the last valid one for a non-finite command."""
        car = self.car
        if a_cmd == a_cmd:
            self.a_cmd = min(max(a_cmd, -car["brake_max"]), car["accel_max"])
        if phi == phi:
            self.u_dev = min(max(phi, -car["phi_max"]), car["phi_max"]) - phi_ff

    # -- perception: tracks in the lane frame ----------------------------------------------------
    def _perceive(self, objects, half_lane: float, dt: float):
        """Tracks ahead within range: [gap, vlon, accel, dd, vlat, half-width across the lane];
        and the index of the lead (nearest track inside the corridor now), or None."""
        while len(self.obj_v) < len(objects):
            self.obj_v.append(math.nan)
            self.obj_a.append(0.0)
        half_ego = 0.5 * self.car["length"]
        tracks, lead, lead_gap = [], None, RANGE
        for i, o in enumerate(objects):
            vlon = o["vlon"]
            prev = self.obj_v[i]
            if prev == prev:  # not nan: differentiate, lightly filtered
                acc = min(max((vlon - prev) / dt, -12.0), 6.0)
                self.obj_a[i] = 0.5 * self.obj_a[i] + 0.5 * acc
            self.obj_v[i] = vlon
            if o["ds"] <= 0.0:
                continue
            c, s = abs(math.cos(o["psi"])), abs(math.sin(o["psi"]))
            o_lat = 0.5 * (o["wid"] * c + o["len"] * s)
            gap = o["ds"] - half_ego - 0.5 * (o["wid"] * s + o["len"] * c)
            if gap >= RANGE:
                continue
            if abs(o["dd"]) < half_lane + o_lat and gap < lead_gap:
                lead, lead_gap = len(tracks), gap
            tracks.append([gap, vlon, self.obj_a[i], o["dd"], o["vlat"], o_lat])
        gap = drivefi.inject("perception.lead_gap", lead_gap)
        if lead is None and gap < RANGE:  # nothing seen, but the gap says something is there
            tracks.append([gap, 0.0, 0.0, 0.0, 0.0, 0.0])
            lead = len(tracks) - 1
        elif lead is not None:
            tracks[lead][0] = gap
        return tracks, lead

    # -- prediction: room ahead over the horizon -------------------------------------------------
    def _predict(self, tracks, lead, half_lane: float) -> np.ndarray:
        """Room ahead at the end of every planning step (H,): the smallest gap-plus-stopping-
        distance over the tracks predicted inside the corridor then (inf when none)."""
        acc_lead = tracks[lead][2] if lead is not None else 0.0
        acc_lead = drivefi.inject("prediction.lead_accel", acc_lead)
        if lead is not None:
            tracks[lead][2] = acc_lead
        room = [math.inf] * self.H
        t_end, t_last = self.t_list, self.t_list[-1]
        for gap, vlon, acc, dd, vlat, o_lat in tracks:
            # the time window in which the track is inside the corridor: |dd + vlat t| < reach
            reach = half_lane + o_lat + self.PAD
            if vlat == 0.0:
                t_in, t_out = (-math.inf, math.inf) if abs(dd) < reach else (0.0, 0.0)
            else:
                t1, t2 = (-reach - dd) / vlat, (reach - dd) / vlat
                t_in, t_out = min(t1, t2), max(t1, t2)
            if not (t_out > 0.0 and t_in < t_last):  # never inside over the horizon
                continue
            t_stop = max(vlon / -acc, 0.0) if acc < 0.0 else math.inf
            for h, t in enumerate(t_end):
                if t_in < t < t_out:
                    tt = min(t, t_stop)
                    vo = max(vlon + acc * tt, 0.0)
                    r = gap + vlon * tt + 0.5 * acc * tt * tt + vo * vo / (2.0 * self.B_OTHER)
                    if not r >= room[h]:  # the smaller; NaN (a corrupted track) wins
                        room[h] = r
        return np.array(room)

    # -- planning ---------------------------------------------------------------------------------
    def _plan_speed(self, v: float, room: np.ndarray, curvature: float):
        """First acceleration of the best candidate sequence, and that sequence's speeds (H,)."""
        v_ref = self.set_speed
        if abs(curvature) > 1e-6:
            v_ref = min(v_ref, math.sqrt(self.A_LAT / abs(curvature)))
        a_prev = self.a_cmd
        vel = self.vel0 + (v + a_prev * self.vel_lag)
        np.maximum(vel, 0.0, out=vel)
        pos = self.pos0 + (v * self.t_end + a_prev * self.pos_lag)
        np.maximum.accumulate(pos, axis=1, out=pos)  # a stopped car stays where it stopped
        # shortfall of the envelope (room - pos - own stopping distance) below the margin
        short = vel * (self.MARGIN_T + vel / (2.0 * self.B_OWN))
        short += pos
        short += self.MARGIN - room
        np.maximum(short, 0.0, out=short)
        dv = vel - v_ref
        cost = self.W_V * np.einsum("ch,ch->c", dv, dv)
        cost += self.W_S * np.einsum("ch,ch->c", short, short)
        cost += self.q0 + a_prev * (self.q1 + a_prev * self.q2)
        best = int(np.argmin(cost))
        i1 = best // self.n2
        a1 = float(self.A1[i1])
        if 0 < i1 < self.n1 - 1:  # parabola through the neighbours along the first piece
            c0, c1, c2 = cost[best - self.n2], cost[best], cost[best + self.n2]
            curv = c0 - 2.0 * c1 + c2
            if curv > 0.0:
                a1 += 0.5 * (c0 - c2) / curv * float(self.A1[1] - self.A1[0])
        return a1, vel[best]

    def _lateral_gains(self) -> list:
        """Explicit solution of the lateral linear-quadratic program, for a grid of speed
        profiles v_j = max(v0 + a j dt, 0): the first move is u0 = k_e e0 + k_psi psi0 + k_u u_prev
        (u: wheel angle minus the lane-following angle). Returns nested lists of plain floats
        [speed][acceleration] -> (k_e, k_psi, k_u), computed once per process and parameters.

        The program, for n steps of dt: psi_{j+1} = psi_j + dt v_j u_j / L,
        e_{j+1} = e_j + dt v_j psi_j + dt^2 v_j^2 u_j / (2 L); minimise
        sum Q_E e^2 + Q_PSI psi^2 + R_U u^2 + R_DU (u_j - u_{j-1})^2.
        """
        n, dt, wb = self.H_LAT, self.DT, self.car["wheelbase"]
        key = (n, dt, wb, self.Q_E, self.Q_PSI, self.R_U, self.R_DU, self.V_STEP, self.A_STEP)
        if key in _LATERAL_GAINS:
            return _LATERAL_GAINS[key]
        tril, strict = np.tril(np.ones((n, n))), np.tril(np.ones((n, n)), -1)
        d = np.eye(n) - np.eye(n, k=-1)
        v0, a = np.meshgrid(self.V_GRID, self.A_GRID, indexing="ij")
        vv = np.maximum(v0[..., None] + a[..., None] * dt * np.arange(n), 0.0)  # (V, A, n)
        b = dt * vv / wb
        g_psi = tril * b[..., None, :]
        g_e = (dt * vv)[..., :, None] * strict * b[..., None, :]
        g_e = g_e + np.eye(n) * (0.5 * dt * b * vv)[..., None, :]
        g_e = tril @ g_e
        gt = np.swapaxes
        hess = (
            self.Q_E * gt(g_e, -1, -2) @ g_e
            + self.Q_PSI * gt(g_psi, -1, -2) @ g_psi
            + self.R_U * np.eye(n)
            + self.R_DU * d.T @ d
        )
        row0 = np.linalg.inv(hess)[..., 0, :]  # first move's row of the inverse
        ones = np.ones(n)
        free_psi = np.cumsum(dt * vv, axis=-1)  # e_free = e0 + free_psi * psi0
        g_e_t, g_psi_t = gt(g_e, -1, -2), gt(g_psi, -1, -2)
        k_e = -np.einsum("...i,...ij,j->...", row0, self.Q_E * g_e_t, ones)
        k_psi = -np.einsum(
            "...i,...i->...",
            row0,
            self.Q_E * (g_e_t @ free_psi[..., None])[..., 0] + self.Q_PSI * (g_psi_t @ ones),
        )
        k_u = row0[..., 0] * self.R_DU
        _LATERAL_GAINS[key] = np.stack([k_e, k_psi, k_u], axis=-1).tolist()
        return _LATERAL_GAINS[key]

    def _plan_steer(self, v: float, v_end: float, e0: float, psi0: float) -> float:
        """Wheel angle minus the lane-following angle: the lateral plan's first move along the
        chosen speed profile (reaching ``v_end`` at the end of the lateral horizon), from the
        tabulated gains."""
        u_prev = self.u_dev if self.u_dev == self.u_dev else 0.0
        a = (v_end - v) / (self.H_LAT * self.DT)
        # bilinear interpolation on the (speed, acceleration) grid, clamped to its ends
        x = min(max((v - self.V_GRID[0]) / self.V_STEP, 0.0), len(self.V_GRID) - 1.000001)
        y = min(max((a - self.A_GRID[0]) / self.A_STEP, 0.0), len(self.A_GRID) - 1.000001)
        if x != x or y != y:  # a non-finite speed: hold the wheel where it is
            return u_prev
        i, j = int(x), int(y)
        fx, fy = x - i, y - j
        g0, g1 = self.lat_gains[i], self.lat_gains[i + 1]
        w00, w10, w01, w11 = (1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy
        k = [
            w00 * g0[j][n] + w10 * g1[j][n] + w01 * g0[j + 1][n] + w11 * g1[j + 1][n]
            for n in range(3)
        ]
        return k[0] * e0 + k[1] * psi0 + k[2] * u_prev

    # -- actuation --------------------------------------------------------------------------------
    def _actuate(self, v: float, a_cmd: float, phi: float):
        car = self.car
        resist = car["rolling"] + car["drag"] * v * v
        need = a_cmd + resist
        push = car["accel_max"] * max(1.0 - v / car["v_max"], 1e-3)
        throttle = min(max(need / push, 0.0), 1.0) if need > 0.0 else 0.0
        brake = min(max(-need / car["brake_max"], 0.0), 1.0) if need < 0.0 else 0.0
        steer = min(max(phi / car["phi_max"], -1.0), 1.0)
        # a corrupted (non-finite) command is passed on as it is: the vehicle interface keeps
        # the last valid command for it
        if need != need:
            throttle = brake = math.nan
        if phi != phi:
            steer = math.nan
        return carla.VehicleControl(throttle=throttle, steer=-steer, brake=brake)
