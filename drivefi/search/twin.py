"""The white-box oracle ("twin"): the reference stack's own trackers, speed reference and PI
replayed inside a 3-TBN structure. It is a replica of the reference stack's code, kept only as a
named oracle (``--model twin``) to compare the black-box model against; never the default and never
the source of a headline figure. Formerly: Structure of the 3-TBN: the variables of one time slice, their parents, and derived features.

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

import numpy as np

from drivefi.stacks.reference import INJECTION_POINTS, tracking
from drivefi.stacks.reference.control import ControlParams
from drivefi.stacks.reference.control import reference as speed_reference
from drivefi.stacks.reference.perception import RANGE
from drivefi.stacks.reference.planning import PlannerParams
from drivefi.tbn.structure import APPLIED, Context, Structure, Var, _p
from drivefi.world.road import offset_curvature, offset_scale
from drivefi.world.vehicle import steer_target as vehicle_steer_target

REF_RISE = 2.0  # the speed reference's rise [m/s^2]

PLANNER = PlannerParams()
CONTROL = ControlParams()

# structure version: bump when variables, parents or feature definitions change
STRUCTURE_VERSION = 2

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
    return offset_curvature(cur["curvature"], -c.lane_c)


def _sdot(cur: Cols, prev: Cols, c: Context):
    kr = _ref_kappa(cur, c)
    den = offset_scale(kr, c.lane_c + cur["lane_offset"])
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
        prev["speed_est"], prev["speed_miss"], cur["localization.speed"], cur["a"], c.dt, tracking.P
    )


def _lane_tracker(cur: Cols, prev: Cols, c: Context):
    return tracking.track_lane(
        (prev["lane_est"], prev["heading_est"]), prev["lane_miss"],
        (cur["perception.lane_offset"], cur["perception.heading_error"]), cur["speed_est"],
        cur["phi"], cur["curvature"], c.dt, c.wheelbase, tracking.P,
    )  # fmt: skip


def _obstacle_tracker(cur: Cols, prev: Cols, c: Context):
    return tracking.track_obstacle(
        prev["gap_est"], prev["ospeed_est"], prev["gap_miss"],
        cur["perception.obstacle_distance"], cur["perception.obstacle_speed"], cur["speed_est"],
        c.dt, RANGE, tracking.P,
    )  # fmt: skip


def _out(fn, i: int) -> FeatureFn:
    return lambda cur, prev, c: np.asarray(fn(cur, prev, c)[i], float)


def _ref(cur: Cols, prev: Cols, c: Context):
    """The speed controller's reference: a lower target at once, a higher one at ref_rise."""
    return speed_reference(prev["ref"], cur["planning.target_speed"], c.dt, REF_RISE)


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
    "gap_est": lambda cur, c: np.full(np.shape(cur["v"]), RANGE),
    "ospeed_est": lambda cur, c: np.zeros(np.shape(cur["v"])),
    "gap_miss": lambda cur, c: np.zeros(np.shape(cur["v"])),
    "ref": lambda cur, c: np.full(np.shape(cur["v"]), np.nan),
    "pi_int": _pi_int0,
    "lane_est": lambda cur, c: cur["perception.lane_offset"],
    "heading_est": lambda cur, c: cur["perception.heading_error"],
    "lane_miss": lambda cur, c: np.zeros(np.shape(cur["v"])),
}


def _room(dist, vo):
    """sqrt of the planner's room: its following speed is linear in it (drivefi.stacks.reference.planning)."""
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
        (cur["lead_s"] - cur["s"]) * offset_scale(_ref_kappa(cur, c), c.lane_c + cur["lane_offset"])
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


def _u_lon_observed(cols, c):
    """The controller's command where observed; unknown where a fault forced throttle or brake."""
    forced = cols["faulted.control.throttle"] | cols["faulted.control.brake"]
    return np.where(forced, np.nan, u_lon(cols, c))


ADS_STATE = {
    "integral": "pi_int", "offset": "lane_est", "heading": "heading_est", "coast": "lane_miss",
    "gap": "gap_est", "ospeed": "ospeed_est", "ocoast": "gap_miss", "speed": "speed_est",
    "scoast": "speed_miss", "ref": "ref",
}  # fmt: skip

TWIN = Structure(
    vars=VARS,
    features=FEATURES,
    points=POINTS,
    initial=INITIAL,
    name="twin",
    stack="reference",
    oracle=True,
    source="drivefi.search.twin (white-box oracle)",
    doc={
        "structure": "twin",
        "oracle": True,
        "python": "drivefi.search.twin",
        "version": STRUCTURE_VERSION,
    },
    observed={"u_lon": _u_lon_observed},
    init_state=ADS_STATE,
    ranges={p.name: (p.lo, p.hi) for p in INJECTION_POINTS},
)
TWIN.check()


def _register() -> None:
    from drivefi.tbn.structure_file import PY_STRUCTURES

    PY_STRUCTURES["twin"] = TWIN


_register()
