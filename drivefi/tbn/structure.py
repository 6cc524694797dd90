"""Structure of the 3-TBN: the variables of one time slice, their parents, and derived features.

A slice t holds, in topological order: the exogenous road/actor inputs, the ego kinematics at
step t, features of them, the ADS's injection-point outputs as the stack saw them (perception ->
planning -> control), the speed controller's own command ``u_lon``, the actuation the vehicle
applied, and features of it. Parents are (variable, lag): lag 0 is the same slice, lag 1 the
previous one. The unrolled 3-TBN has slices 0, 1, 2 (steps k-1, k, k+1) with nodes ``v_0, v_1,
v_2``; slices 1 and 2 share one transition CPD per variable, slice 0 keeps only lag-0 parents.

Kinds: ``exo`` given from the scenario (roots), ``state`` and ``point`` and ``ctrl`` linear-Gaussian
CPDs, ``feature`` and ``applied`` deterministic functions of their parents (they also carry a fitted
linear CPD so the whole graph is a linear-Gaussian network for pgmpy and the covariance).
Recursive features (a lag-1 self-parent) replay the reference ADS's gated trackers, speed reference
and PI integral on the observed readings (see ``INITIAL`` and ``drivefi.tbn.dataset.add_features``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from drivefi.ads import tracking
from drivefi.ads.control import ControlParams
from drivefi.ads.control import reference as speed_reference
from drivefi.ads.perception import RANGE
from drivefi.ads.planning import PlannerParams
from drivefi.vehicle import steer_target as vehicle_steer_target

PLANNER = PlannerParams()
CONTROL = ControlParams()

# structure version: bump when variables, parents or feature definitions change
STRUCTURE_VERSION = 2
NO_LEAD = 200.0  # lead_s - s when nothing is ahead (beyond the perception range) [m]

POINTS = (
    "perception.obstacle_distance",
    "perception.obstacle_speed",
    "perception.lane_offset",
    "perception.heading_error",
    "localization.speed",
    "planning.target_speed",
    "control.throttle",
    "control.brake",
    "control.steer",
)
STATE = ("x", "y", "theta", "v", "phi", "a", "s", "lane_offset", "heading_error")
EXO = ("curvature", "lead_s", "lead_off", "lead_v")
APPLIED = {"throttle": "control.throttle", "brake": "control.brake", "steer": "control.steer"}
# what the safety potential needs from a predicted slice
SAFETY_STATE = ("s", "lane_offset", "heading_error", "v", "phi")


@dataclass(frozen=True)
class Context:
    """Constants the derived features need: step, vehicle parameters, lane geometry."""

    dt: float
    wheelbase: float
    phi_max: float
    steer_rate: float
    v_max: float
    accel_max: float
    brake_max: float
    a_lat_max: float | None
    lane_c: float  # ego lane centre, from the road's reference line [m]
    # the reference ADS's gated trackers (drivefi.ads.tracking) and speed-reference rise
    gain: float = tracking.P.gain
    gate_offset: float = tracking.P.gate_offset  # [m]
    gate_heading: float = tracking.P.gate_heading  # [rad]
    gate_gap: float = tracking.P.gate_gap  # [m]
    gate_speed: float = tracking.P.gate_speed  # [m/s]
    max_coast: int = tracking.P.max_coast  # [steps]
    ref_rise: float = 2.0  # [m/s^2]
    range_max: float = RANGE  # perception range [m]

    @property
    def tracker(self) -> tracking.TrackerParams:
        return tracking.TrackerParams(
            self.gain, self.gate_offset, self.gate_heading, self.gate_gap, self.gate_speed,
            self.max_coast,
        )  # fmt: skip

    @classmethod
    def from_meta(cls, meta: dict) -> Context:
        vp = meta["vehicle"]
        return cls(
            dt=float(meta["dt"]),
            wheelbase=float(vp["wheelbase"]),
            phi_max=float(vp["phi_max"]),
            steer_rate=float(vp["steer_rate"]),
            v_max=float(vp["v_max"]),
            accel_max=float(vp["accel_max"]),
            brake_max=float(vp["brake_max"]),
            a_lat_max=float(vp["a_lat_max"]) if "a_lat_max" in vp else None,
            lane_c=(float(meta["ego_lane"]) + 0.5) * float(meta["lane_width"]),
        )

    @classmethod
    def from_scenario(cls, scenario) -> Context:
        from drivefi.recorder import trace_meta

        return cls.from_meta(trace_meta(scenario, scenario.seed))

    def as_dict(self) -> dict:
        return dict(self.__dict__)


Cols = dict[str, np.ndarray]
FeatureFn = Callable[[Cols, Cols, Context], np.ndarray]


def steer_target(steer, v, c: Context):
    """Road-wheel angle the steering actuator moves toward: the vehicle's own function (the
    Context carries its parameters); traces without a lateral-acceleration limit clip at phi_max."""
    if c.a_lat_max is None:
        return np.clip(steer * c.phi_max, -c.phi_max, c.phi_max)
    return vehicle_steer_target(steer, v, c)


def _ref_kappa(cur: Cols, c: Context):
    """Curvature of the road's reference line from the ego lane's curvature."""
    kl = cur["curvature"]
    return kl / (1.0 + kl * c.lane_c)


def _sdot(cur: Cols, prev: Cols, c: Context):
    kr = _ref_kappa(cur, c)
    den = 1.0 - kr * (c.lane_c + cur["lane_offset"])
    return cur["v"] * np.cos(cur["heading_error"]) / den


def _guard(name: str) -> FeatureFn:
    point = APPLIED[name]

    def fn(cur: Cols, prev: Cols, c: Context):
        lo = 0.0 if name != "steer" else -1.0
        val = cur[point]
        return np.clip(np.where(np.isfinite(val), val, prev[name]), lo, 1.0)

    return fn


def _speed_tracker(cur: Cols, prev: Cols, c: Context):
    return tracking.track_speed(
        prev["speed_est"], prev["speed_miss"], cur["localization.speed"], cur["a"], c.dt, c.tracker
    )


def _lane_tracker(cur: Cols, prev: Cols, c: Context):
    return tracking.track_lane(
        prev["lane_est"], prev["heading_est"], prev["lane_miss"],
        cur["perception.lane_offset"], cur["perception.heading_error"], cur["speed_est"],
        cur["phi"], cur["curvature"], c.dt, c.wheelbase, c.tracker,
    )  # fmt: skip


def _obstacle_tracker(cur: Cols, prev: Cols, c: Context):
    return tracking.track_obstacle(
        prev["gap_est"], prev["ospeed_est"], prev["gap_miss"],
        cur["perception.obstacle_distance"], cur["perception.obstacle_speed"], cur["speed_est"],
        c.dt, c.range_max, c.tracker,
    )  # fmt: skip


def _out(fn, i: int) -> FeatureFn:
    return lambda cur, prev, c: np.asarray(fn(cur, prev, c)[i], float)


def _ref(cur: Cols, prev: Cols, c: Context):
    """The speed controller's reference: a lower target at once, a higher one at ref_rise."""
    return speed_reference(prev["ref"], cur["planning.target_speed"], c.dt, c.ref_rise)


def _pi_int(cur: Cols, prev: Cols, c: Context):
    """The speed controller's anti-windup integral of ref - speed_est."""
    err = cur["ref"] - cur["speed_est"]
    i_max = CONTROL.i_max
    return np.where(
        np.isfinite(err), np.clip(prev["pi_int"] + err * c.dt, -i_max, i_max), prev["pi_int"]
    )


def _pi_int0(cur: Cols, c: Context):
    """The integral before a run's first recorded step, from the command observed there (the
    trackers start on the measurement, so the error is target - speed reading)."""
    p = CONTROL
    err = cur["planning.target_speed"] - cur["localization.speed"]
    i0 = (cur["u_lon"] - p.kp * err) / p.ki - err * c.dt
    return np.clip(np.where(np.isfinite(i0), i0, 0.0), -p.i_max, p.i_max)


# Recursive features (a lag-1 self-parent): the reference ADS's gated trackers and its speed
# reference, replayed on the observed perception. INITIAL gives the state before a run's first
# recorded step: a tracker that already follows the measurement (a trace that starts mid-run
# comes from a golden snapshot whose trackers had converged).
INITIAL: dict[str, Callable[[Cols, Context], np.ndarray]] = {
    "speed_est": lambda cur, c: np.full(np.shape(cur["v"]), np.nan),
    "speed_miss": lambda cur, c: np.full(np.shape(cur["v"]), 10.0**6),
    "gap_est": lambda cur, c: np.full(np.shape(cur["v"]), c.range_max),
    "ospeed_est": lambda cur, c: np.zeros(np.shape(cur["v"])),
    "gap_miss": lambda cur, c: np.zeros(np.shape(cur["v"])),
    "ref": lambda cur, c: np.full(np.shape(cur["v"]), np.nan),
    "pi_int": _pi_int0,
    "lane_est": lambda cur, c: cur["perception.lane_offset"],
    "heading_est": lambda cur, c: cur["perception.heading_error"],
    "lane_miss": lambda cur, c: np.zeros(np.shape(cur["v"])),
}


def _room(dist, vo):
    """sqrt of the planner's room: its following speed is linear in it (drivefi.ads.planning)."""
    p = PLANNER
    r = dist - p.standstill + vo * vo / (2 * p.lead_brake) + 0.5 * p.brake * p.headway**2
    return np.sqrt(np.maximum(r, 0.0))


FEATURES: dict[str, FeatureFn] = {
    "vcos_th": lambda cur, prev, c: cur["v"] * np.cos(cur["theta"]),
    "vsin_th": lambda cur, prev, c: cur["v"] * np.sin(cur["theta"]),
    "vtan": lambda cur, prev, c: cur["v"] * np.tan(cur["phi"]),
    "vsin": lambda cur, prev, c: cur["v"] * np.sin(cur["heading_error"]),
    "sdot": _sdot,
    "ksdot": lambda cur, prev, c: _ref_kappa(cur, c) * _sdot(cur, prev, c),
    "gap": lambda cur, prev, c: (
        (cur["lead_s"] - cur["s"]) * (1.0 - _ref_kappa(cur, c) * (c.lane_c + cur["lane_offset"]))
        - cur["lead_off"]
    ),
    "v2": lambda cur, prev, c: cur["v"] ** 2,
    "speed_est": _out(_speed_tracker, 0),
    "speed_miss": _out(_speed_tracker, 1),
    "gap_est": _out(_obstacle_tracker, 0),
    "ospeed_est": _out(_obstacle_tracker, 1),
    "gap_miss": _out(_obstacle_tracker, 2),
    "room": lambda cur, prev, c: _room(cur["gap_est"], cur["ospeed_est"]),
    "ref": _ref,
    "pi_int": _pi_int,
    "lane_est": _out(_lane_tracker, 0),
    "heading_est": _out(_lane_tracker, 1),
    "lane_miss": _out(_lane_tracker, 2),
    "ey": lambda cur, prev, c: np.arctan2(
        CONTROL.k_e * cur["lane_est"], np.maximum(cur["speed_est"], 0.0) + CONTROL.v_soft
    ),
    "throttle": _guard("throttle"),
    "brake": _guard("brake"),
    "steer": _guard("steer"),
    "dphi": lambda cur, prev, c: np.clip(
        steer_target(cur["steer"], cur["v"], c) - cur["phi"],
        -c.steer_rate * c.dt,
        c.steer_rate * c.dt,
    ),
    "push": lambda cur, prev, c: cur["throttle"] * np.maximum(1.0 - cur["v"] / c.v_max, 0.0),
}


def u_lon(cur: Cols, c: Context) -> np.ndarray:
    """Observed longitudinal command [m/s^2] from throttle and brake (NaN where either saturates)."""
    thr, brk = cur["control.throttle"], cur["control.brake"]
    u = c.accel_max * thr - c.brake_max * brk
    return np.where((thr < 1.0) & (brk < 1.0), u, np.nan)


@dataclass(frozen=True)
class Var:
    name: str
    kind: str  # exo | state | feature | point | ctrl | applied
    parents: tuple[tuple[str, int], ...] = ()

    @property
    def memory(self) -> tuple[str, ...]:
        """Lag-1 self-parents of an injection point: they carry the module's own (natural) output,
        not a value a fault forced, the way a tracker or controller state would."""
        return tuple(p for p, lag in self.parents if lag == 1 and p == self.name and p in POINTS)

    @property
    def deterministic(self) -> bool:
        return self.kind in ("feature", "applied")


def _p(*names: str) -> tuple[tuple[str, int], ...]:
    """Parents: 'name' is lag 0, 'name@1' lag 1."""
    out = []
    for n in names:
        base, _, lag = n.partition("@")
        out.append((base, int(lag or 0)))
    return tuple(out)


OBSTACLE_IN = ("perception.obstacle_distance", "perception.obstacle_speed", "speed_est")
LANE_IN = ("perception.lane_offset", "perception.heading_error", "speed_est", "phi", "curvature")

VARS: tuple[Var, ...] = (
    Var("curvature", "exo"),
    Var("lead_s", "exo"),
    Var("lead_off", "exo"),
    Var("lead_v", "exo"),
    Var("x", "state", _p("x@1", "vcos_th@1")),
    Var("y", "state", _p("y@1", "vsin_th@1")),
    Var("theta", "state", _p("theta@1", "vtan@1")),
    Var("v", "state", _p("v@1", "a@1")),
    Var("phi", "state", _p("phi@1", "dphi@1")),
    Var("a", "state", _p("a@1", "push@1", "brake@1", "v2@1", "v@1")),
    Var("s", "state", _p("s@1", "sdot@1")),
    Var("lane_offset", "state", _p("lane_offset@1", "vsin@1")),
    Var("heading_error", "state", _p("heading_error@1", "vtan@1", "ksdot@1")),
    Var("vcos_th", "feature", _p("v", "theta")),
    Var("vsin_th", "feature", _p("v", "theta")),
    Var("vtan", "feature", _p("v", "phi")),
    Var("vsin", "feature", _p("v", "heading_error")),
    Var("sdot", "feature", _p("v", "heading_error", "lane_offset", "curvature")),
    Var("ksdot", "feature", _p("v", "heading_error", "lane_offset", "curvature")),
    Var("v2", "feature", _p("v")),
    Var("gap", "feature", _p("lead_s", "lead_off", "s", "lane_offset", "curvature")),
    Var("perception.obstacle_distance", "point", _p("gap")),
    Var("perception.obstacle_speed", "point", _p("lead_v")),
    Var("perception.lane_offset", "point", _p("lane_offset")),
    Var("perception.heading_error", "point", _p("heading_error")),
    Var("localization.speed", "point", _p("v")),
    Var("speed_est", "feature", _p("localization.speed", "a", "speed_est@1", "speed_miss@1")),
    Var("speed_miss", "feature", _p("localization.speed", "a", "speed_est@1", "speed_miss@1")),
    *(
        Var(n, "feature", _p(*OBSTACLE_IN, "gap_est@1", "ospeed_est@1", "gap_miss@1"))
        for n in ("gap_est", "ospeed_est", "gap_miss")
    ),
    Var("room", "feature", _p("gap_est", "ospeed_est")),
    Var("planning.target_speed", "point", _p("gap_est", "ospeed_est", "room")),
    Var("ref", "feature", _p("planning.target_speed", "ref@1")),
    Var("pi_int", "feature", _p("ref", "speed_est", "pi_int@1")),
    Var("u_lon", "ctrl", _p("ref", "speed_est", "pi_int")),
    Var("control.throttle", "point", _p("u_lon")),
    Var("control.brake", "point", _p("u_lon")),
    *(
        Var(n, "feature", _p(*LANE_IN, "lane_est@1", "heading_est@1", "lane_miss@1"))
        for n in ("lane_est", "heading_est", "lane_miss")
    ),
    Var("ey", "feature", _p("lane_est", "speed_est")),
    Var("control.steer", "point", _p("lane_est", "heading_est", "ey", "curvature")),
    Var("throttle", "applied", _p("control.throttle", "throttle@1")),
    Var("brake", "applied", _p("control.brake", "brake@1")),
    Var("steer", "applied", _p("control.steer", "steer@1")),
    Var("dphi", "feature", _p("steer", "phi", "v")),
    Var("push", "feature", _p("throttle", "v")),
)


@dataclass(frozen=True)
class Structure:
    """The slice variables and the unrolled 3-TBN's node names and edges."""

    vars: tuple[Var, ...] = VARS

    @cached_property
    def names(self) -> list[str]:
        return [v.name for v in self.vars]

    @cached_property
    def index(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.names)}

    @cached_property
    def by_name(self) -> dict[str, Var]:
        return {v.name: v for v in self.vars}

    @property
    def stochastic(self) -> list[str]:
        return [v.name for v in self.vars if v.kind in ("state", "point", "ctrl")]

    def parents(self, name: str, first_slice: bool = False) -> tuple[tuple[str, int], ...]:
        """Parents of a variable; in the first slice, lag-1 parents are dropped."""
        ps = self.by_name[name].parents
        return tuple(p for p in ps if p[1] == 0) if first_slice else ps

    def descendants(self, roots: list[str] | tuple[str, ...]) -> list[str]:
        """Same-slice descendants of ``roots`` (excluded), in slice order."""
        hit = set(roots)
        out = []
        for v in self.vars:
            if v.name in hit:
                continue
            if any(lag == 0 and p in hit for p, lag in v.parents):
                hit.add(v.name)
                out.append(v.name)
        return out

    def nodes(self, slices: int = 3) -> list[str]:
        """Unrolled node names in topological order: slice by slice."""
        return [node(n, t) for t in range(slices) for n in self.names]

    def edges(self, slices: int = 3) -> list[tuple[str, str]]:
        out = []
        for t in range(slices):
            for v in self.vars:
                for p, lag in self.parents(v.name, first_slice=t == 0):
                    out.append((node(p, t - lag), node(v.name, t)))
        return out

    def check(self) -> None:
        """Parents must come earlier in the slice (lag 0) and exist."""
        seen: set[str] = set()
        for v in self.vars:
            for p, lag in v.parents:
                if p not in self.index:
                    raise ValueError(f"{v.name}: unknown parent {p}")
                if lag == 0 and p not in seen:
                    raise ValueError(f"{v.name}: same-slice parent {p} is not earlier")
                if lag not in (0, 1):
                    raise ValueError(f"{v.name}: lag {lag} not in (0, 1)")
            if v.deterministic and v.name not in FEATURES:
                raise ValueError(f"{v.name}: no feature function")
            seen.add(v.name)


def node(name: str, t: int) -> str:
    """Unrolled node name: variable ``v`` in slice 1 is ``v_1``."""
    return f"{name}_{t}"


STRUCTURE = Structure()
STRUCTURE.check()
