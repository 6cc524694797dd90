"""The feature library of structure files: registered, vectorised transforms by name.

A structure file's feature node names a transform and its inputs (``{transform: gate, inputs:
[perception.lane_offset]}``); an unknown name is a load error. Each transform declares its input
roles, units, whether it is recursive (reads its own value one step back: a filter's memory) and
its parameters: ``fixed`` ones come from the file (``args:``), ``learned`` ones are chosen by the fit
from a grid (``drivefi.tbn.learn``), e.g. a plausibility gate's width learned from training runs
where faults were injected. Every function works on numpy arrays of any shape.

Vehicle and road transforms (kinematics, the vehicle interface) use the vehicle parameters in the
:class:`~drivefi.tbn.structure.Context`; none knows anything of a stack.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from drivefi.world.road import offset_curvature, offset_scale
from drivefi.world.vehicle import steer_target as vehicle_steer_target

INF = float("inf")


@dataclass(frozen=True)
class Transform:
    """``fn(xs, own_prev, ctx, params) -> array``: ``xs`` the inputs' values (list), ``own_prev``
    the node's own value one step back (recursive transforms; else None)."""

    name: str
    inputs: tuple[str, ...]  # input roles; '*' = any number
    units: str
    doc: str
    fn: Callable
    recursive: bool = False
    fixed: dict[str, float] = field(default_factory=dict)  # parameter -> default
    learned: tuple[str, ...] = ()  # parameters the fit chooses (grids in drivefi.tbn.learn)
    vectorised: bool = True

    @property
    def defaults(self) -> dict[str, float]:
        d = {p: INF for p in self.learned}  # inf: the learned mechanism is off
        d.update(self.fixed)  # unless the transform says what "off" is
        return d


REGISTRY: dict[str, Transform] = {}


def register(name, inputs, units, doc, recursive=False, fixed=None, learned=()):
    def deco(fn):
        REGISTRY[name] = Transform(
            name, tuple(inputs), units, doc, fn, recursive, dict(fixed or {}), tuple(learned)
        )
        return fn

    return deco


# -- road and vehicle kinematics ---------------------------------------------------------------
def _ref_kappa(kl, c):
    """Curvature of the road's reference line (lane_c to the right of the ego lane's centre) from
    the ego lane's curvature."""
    return offset_curvature(kl, -c.lane_c)


def _sdot(v, psi, e, kl, c):
    return v * np.cos(psi) / offset_scale(_ref_kappa(kl, c), c.lane_c + e)


@register("v_cos", ("v", "theta"), "m/s", "v cos(theta): world-x velocity")
def _v_cos(xs, own, c, p):
    return xs[0] * np.cos(xs[1])


@register("v_sin", ("v", "angle"), "m/s", "v sin(angle): world-y or lane-normal velocity")
def _v_sin(xs, own, c, p):
    return xs[0] * np.sin(xs[1])


@register("v_tan", ("v", "phi"), "m/s", "v tan(phi): yaw rate times the wheelbase")
def _v_tan(xs, own, c, p):
    return xs[0] * np.tan(xs[1])


@register("square", ("x",), "x²", "x squared (drag, kinetic energy)")
def _square(xs, own, c, p):
    return xs[0] ** 2


@register("sqrt_pos", ("x",), "sqrt(x)", "sqrt(max(x, 0)): speed from a stopping distance")
def _sqrt_pos(xs, own, c, p):
    return np.sqrt(np.maximum(xs[0], 0.0))


@register(
    "road_speed",
    ("v", "heading_error", "lane_offset", "curvature"),
    "m/s",
    "ds/dt: progress along the road's reference line",
)
def _road_speed(xs, own, c, p):
    return _sdot(*xs, c)


@register(
    "road_turn",
    ("v", "heading_error", "lane_offset", "curvature"),
    "rad/s",
    "kappa ds/dt: the road's turn rate under the ego",
)
def _road_turn(xs, own, c, p):
    return _ref_kappa(xs[3], c) * _sdot(*xs, c)


@register(
    "gap",
    ("obj_s", "obj_half_len", "s", "lane_offset", "curvature"),
    "m",
    "bumper-to-bumper distance along the ego's lane to an object",
)
def _gap(xs, own, c, p):
    obj_s, off, s, e, kl = xs
    return (obj_s - s) * offset_scale(_ref_kappa(kl, c), c.lane_c + e) - off


@register(
    "steer_increment",
    ("steer", "phi", "v"),
    "rad",
    "the vehicle's rate- and lateral-acceleration-limited road-wheel angle increment",
)
def _steer_increment(xs, own, c, p):
    steer, phi, v = xs
    if c.a_lat_max is None:
        tgt = np.clip(steer * c.phi_max, -c.phi_max, c.phi_max)
    else:
        tgt = vehicle_steer_target(steer, v, c)
    lim = c.steer_rate * c.dt
    return np.clip(tgt - phi, -lim, lim)


@register("throttle_push", ("throttle", "v"), "1", "throttle (1 - v / v_max): the engine's force")
def _throttle_push(xs, own, c, p):
    return xs[0] * np.maximum(1.0 - xs[1] / c.v_max, 0.0)


@register(
    "actuator_guard",
    ("command",),
    "1",
    "the vehicle interface: clamp to [lo, hi], a non-finite command keeps the last valid one",
    recursive=True,
    fixed={"lo": 0.0, "hi": 1.0},
)
def _guard(xs, own, c, p):
    x = xs[0]
    last = own if own is not None else np.zeros_like(x)
    return np.clip(np.where(np.isfinite(x), x, last), p["lo"], p["hi"])


# -- stack-agnostic module memory --------------------------------------------------------------
@register(
    "lag",
    ("x",),
    "x",
    "x one step back (a lag-2 parent x@2 is lag(x)@1)",
    recursive=True,
)
def _lag(xs, own, c, p):
    return xs[0]


def gate_step(x, g_prev, n_prev, width, coast):
    """One step of a plausibility gate: accept x when within ``width`` of the last accepted value
    (or after ``coast`` rejected steps, or with no value yet), else hold. Returns (value, misses)."""
    ok = ~np.isfinite(g_prev) | (np.abs(x - g_prev) <= width) | (n_prev >= coast)
    ok &= np.isfinite(x)
    return np.where(ok, x, g_prev), np.where(ok, 0.0, n_prev + 1.0)


@register(
    "gate",
    ("x",),
    "x",
    "plausibility gate: a reading more than `width` from the last accepted one is held out for up "
    "to `coast` steps (width, coast learned; inf = no gate)",
    recursive=True,
    learned=("width", "coast"),
)
def _gate(xs, own, c, p):
    """own = (value, misses) one step back."""
    g_prev, n_prev = own
    return gate_step(xs[0], g_prev, n_prev, p["width"], p["coast"])


@register(
    "rate_limit",
    ("x",),
    "x",
    "follows x at most `up` per second upward and `down` per second downward (learned; inf = free)",
    recursive=True,
    learned=("up", "down"),
)
def _rate_limit(xs, own, c, p):
    x = xs[0]
    prev = np.where(np.isfinite(own), own, x) if own is not None else x
    out = np.clip(x, prev - p["down"] * c.dt, prev + p["up"] * c.dt)
    return np.where(np.isfinite(x), out, prev)


@register(
    "dead_zone",
    ("x",),
    "x",
    "sign(x) max(abs(x) - width, 0): a module that ignores small inputs (a deadband); not in "
    "derived structures, add it in a structure file where a stack may have one",
    fixed={"width": 0.0},
    learned=("width",),
)
def _dead_zone(xs, own, c, p):
    x = xs[0]
    return np.sign(x) * np.maximum(np.abs(x) - p["width"], 0.0)


def library_markdown() -> str:
    """The library as a Markdown table (docs/tbn.md)."""
    rows = [
        "| transform | inputs | units | parameters | recursive | what |",
        "|---|---|---|---|---|---|",
    ]
    for t in REGISTRY.values():
        fixed = [f"{k}={v:g}" for k, v in t.fixed.items() if k not in t.learned]
        learned = [
            f"{k} (learned" + (f"; {t.fixed[k]:g} = off)" if k in t.fixed else ")")
            for k in t.learned
        ]
        par = ", ".join([*fixed, *learned])
        rows.append(
            f"| `{t.name}` | {', '.join(t.inputs)} | {t.units} | {par or '—'} | "
            f"{'yes' if t.recursive else ''} | {t.doc} |"
        )
    return "\n".join(rows)
