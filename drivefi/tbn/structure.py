"""Structure of the 3-TBN: the variables of one time slice, their parents and feature functions.

A :class:`Structure` is built from a structure file in ``models/`` (:mod:`drivefi.tbn.structure_file`):
the world's exogenous inputs (roots), the ego kinematics and lane frame (``state``), the stack's
injection points in module order (``point``), deterministic ``feature`` nodes (registered
transforms, :mod:`drivefi.tbn.transforms`) and the vehicle interface's ``applied`` actuation.
Parents are (variable, lag): lag 0 is the same slice, lag 1 the previous one (a lag-2 parent of the
file becomes a ``lag`` feature's lag-1 parent). The unrolled 3-TBN has slices 0, 1, 2 (steps k-1,
k, k+1) with nodes ``v_0, v_1, v_2``; slices 1 and 2 share one transition CPD per variable, slice 0
keeps only lag-0 parents.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

NO_LEAD = 200.0  # obj_s - s when nothing is ahead [m]

# the ego kinematics and lane frame every trace records (the vehicle, not the stack)
STATE = ("x", "y", "theta", "v", "phi", "a", "s", "lane_offset", "heading_error")
# what the safety potential needs from a predicted slice
SAFETY_STATE = ("s", "lane_offset", "heading_error", "v", "phi")
# the world's exogenous inputs a trace and its scenario give
WORLD = ("curvature", "lead_s", "lead_off", "lead_v")
# the vehicle interface: applied actuation -> the stack's command point
KEEPS_FORCED = "keeps_forced"  # a point's learned memory semantics (Structure.keeps_forced)
APPLIED = {"throttle": "control.throttle", "brake": "control.brake", "steer": "control.steer"}
KINDS = ("exo", "state", "feature", "point", "ctrl", "applied")
MODULE_RANK = {
    "perception": 0, "localization": 0, "localisation": 0, "sensing": 0, "sensor": 0,
    "detection": 0,
    "tracking": 1, "tracker": 1, "estimation": 1, "estimator": 1, "prediction": 1,
    "predictor": 1, "fusion": 1,
    "planning": 2, "planner": 2, "behaviour": 2, "behavior": 2, "decision": 2,
    "control": 3, "controller": 3,
}  # fmt: skip


@dataclass(frozen=True)
class Context:
    """Constants the features need: step, vehicle parameters, lane geometry."""

    dt: float
    wheelbase: float
    phi_max: float
    steer_rate: float
    v_max: float
    accel_max: float
    brake_max: float
    a_lat_max: float | None
    lane_c: float  # ego lane centre, from the road's reference line [m]

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
        from drivefi.run.trace import trace_meta

        return cls.from_meta(trace_meta(scenario, scenario.seed))

    @classmethod
    def of(cls, d: dict) -> Context:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})

    def as_dict(self) -> dict:
        return dict(self.__dict__)


Cols = dict[str, np.ndarray]
FeatureFn = Callable[[Cols, Cols, Context], np.ndarray]


def module_of(point: str) -> str:
    return point.split(".", 1)[0]


def module_rank(point: str) -> int | None:
    return MODULE_RANK.get(module_of(point))


@dataclass(frozen=True)
class Var:
    name: str
    kind: str  # exo | state | feature | point | ctrl | applied
    parents: tuple[tuple[str, int], ...] = ()
    points: tuple[str, ...] = field(default=(), compare=False, repr=False)

    @property
    def memory(self) -> tuple[str, ...]:
        """Lag-1 self-parents of an injection point: they carry the module's own (natural) output,
        not a value a fault forced, the way a tracker or controller state would."""
        return tuple(
            p for p, lag in self.parents if lag == 1 and p == self.name and p in self.points
        )

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


@dataclass(frozen=True, eq=False)
class Structure:
    """The slice variables, their feature functions, and the unrolled 3-TBN's nodes and edges."""

    vars: tuple[Var, ...]
    features: dict[str, FeatureFn]
    points: tuple[str, ...]
    initial: dict[str, Callable[[Cols, Context], np.ndarray]] = field(default_factory=dict)
    state: tuple[str, ...] = STATE
    exo: tuple[str, ...] = WORLD
    applied: dict[str, str] = field(default_factory=lambda: dict(APPLIED))
    name: str = "custom"
    stack: str = "reference"
    oracle: bool = False
    source: str = "<structure>"
    doc: dict = field(default_factory=dict)  # the file's content (stored in model files)
    params: dict[str, dict[str, float]] = field(default_factory=dict)  # transform parameters
    observed: dict[str, Callable[[Cols, Context], np.ndarray]] = field(default_factory=dict)
    init_state: dict[str, str] = field(default_factory=dict)  # trace meta ads_state -> node
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)

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
            if v.deterministic and v.name not in self.features:
                raise ValueError(f"{v.name}: no feature function")
            seen.add(v.name)

    def keeps_forced(self, point: str) -> bool:
        """Whether the module of ``point`` keeps a value a fault forced there as its own past
        (e.g. a controller that starts from its last command), learned from the training runs;
        else its memory holds the output it computed (the default)."""
        return bool(self.params.get(point, {}).get(KEEPS_FORCED, 0.0))


def node(name: str, t: int) -> str:
    """Unrolled node name: variable ``v`` in slice 1 is ``v_1``."""
    return f"{name}_{t}"
