"""Safety potential: stopping distance d_stop, safe distance d_safe and delta = d_safe - d_stop.

Everything works on numpy arrays of any (broadcastable) shape: one state, a trace, a batch of runs,
or a whole candidate-fault space, in one vectorised call.

Emergency stop (DESIGN.md, "Physics and safety"): decelerate at a_max until v = 0; the steering
angle phi is held for the response time rho, then moves back to the lane-following angle
atan(L * kappa_lane) at the steering-rate limit. The path is integrated in arc length sigma
(so a fixed number of RK4 steps resolves any speed) in the Frenet frame of the road's reference
line, whose curvature kappa is taken as constant over the stop:

    de/dsigma   = sin(psi)
    dpsi/dsigma = tan(phi(sigma)) / L - kappa cos(psi) / (1 - kappa e)

e is the lateral offset and psi the heading error, so following a curve is not drift. The stop is
split where the steering schedule has kinks (end of hold, end of return), and each piece gets
``rk_steps`` RK4 steps, doubled for the elements whose stop turns so far that a step would turn
by more than MAX_TURN_PER_STEP (a large angle held at speed turns through many radians): within
1e-3 m of the exact stop everywhere, at the fixed cost for ordinary states. d_stop_lon is the arc length v^2 / (2 a_max) (exact). The lateral stop is
measured on both sides (left: max of e - e0, right: max of e0 - e); delta_lat is the smaller of the
two sides' margins, which is the side the car drifts toward whenever it drifts one way.

:func:`safety` assembles the potential (d_stop, d_safe, delta) from the ego's state in a lane frame
(:class:`EgoState`), the frame's quantities where the ego is (:class:`LaneAt`) and the objects
around it (:class:`Objects`): the one assembly both bridges and the 3-TBN's hazard model use. The
frame's derived quantities (curvature of a parallel, its scale, the lane-following angle, a box's
lateral extent) come from :mod:`drivefi.world.road`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drivefi.world.road import lateral_extent, offset_scale

__all__ = [
    "LON_HORIZON",
    "EgoState",
    "LaneAt",
    "Objects",
    "SafetyPotential",
    "StopParams",
    "combine",
    "d_safe",
    "d_stop",
    "lateral_extent",
    "safety",
    "step_levels",
]

LON_HORIZON = 250.0  # d_safe_lon when nothing is ahead [m]: beyond any stopping distance we use


@dataclass(frozen=True)
class StopParams:
    """Vehicle parameters the stop manoeuvre needs (rho may be np.inf: steering held throughout)."""

    a_max: float
    wheelbase: float
    steer_rate: float
    response_time: float

    @classmethod
    def of(cls, vehicle) -> StopParams:
        return cls(vehicle.a_max, vehicle.wheelbase, vehicle.steer_rate, vehicle.response_time)


@dataclass(frozen=True)
class _Path:
    """The stopping path in the lane frame (offset e, heading error psi) and its largest
    excursions from the start offset e0: up (to the left), down (to the right)."""

    e: np.ndarray
    psi: np.ndarray
    e0: np.ndarray
    up: np.ndarray
    down: np.ndarray


def _rk4_piece(path: _Path, lo, hi, phi_at, kappa, L, n) -> _Path:
    """Integrate (e, psi) from sigma=lo to hi in n RK4 steps; track max excursion each side.

    ``phi_at`` is a function of sigma, or an array when the steering is constant on the piece.
    """
    e, psi, e0, up, down = path.e, path.psi, path.e0, path.up, path.down
    h = (hi - lo) / n
    sig = lo
    const = not callable(phi_at)
    if const:
        c = np.tan(phi_at) / L
    straight = not np.any(kappa)

    def f(e_, p_, tanphi_, sin_p=None):
        sp = np.sin(p_) if sin_p is None else sin_p
        if straight:
            return sp, tanphi_
        return sp, tanphi_ - kappa * np.cos(p_) / offset_scale(kappa, e_)

    sin_a = np.sin(psi)
    for _ in range(n):
        if const:
            t1 = th = t4 = c
        else:
            t1 = np.tan(phi_at(sig)) / L
            th = np.tan(phi_at(sig + 0.5 * h)) / L
            t4 = np.tan(phi_at(sig + h)) / L

        k1e, k1p = f(e, psi, t1, sin_a)
        k2e, k2p = f(e + 0.5 * h * k1e, psi + 0.5 * h * k1p, th)
        k3e, k3p = f(e + 0.5 * h * k2e, psi + 0.5 * h * k2p, th)
        k4e, k4p = f(e + h * k3e, psi + h * k3p, t4)
        e_a = e
        e = e + h / 6.0 * (k1e + 2 * k2e + 2 * k3e + k4e)
        psi = psi + h / 6.0 * (k1p + 2 * k2p + 2 * k3p + k4p)
        sig = sig + h
        up = np.maximum(up, e - e0)
        down = np.maximum(down, e0 - e)
        # The path's extreme may lie between two nodes (de/dsigma = sin(psi) changes sign there,
        # e.g. a heading error being steered out, or a held turn past half a circle): take the
        # maximum of the cubic Hermite interpolant of e on that step, for those elements only.
        sin_b = np.sin(psi)
        turn = sin_a * sin_b < 0
        if turn.any():
            up, down = _between_nodes(e_a, e, sin_a, sin_b, h, turn, e0, up, down)
        sin_a = sin_b
    return _Path(e, psi, e0, up, down)


def _between_nodes(ea, eb, sa, sb, h, turn, e0, up, down):
    """Raise up/down where ``turn`` by the interior extremum of the Hermite cubic of one step.

    On t in [0, 1]: p(t) = ea + h sa t + B t^2 + C t^3 matches e and de/dsigma at both nodes;
    p'(0) p'(1) < 0, so p' has exactly one root in (0, 1).
    """
    shape = turn.shape
    ea, eb, sa, sb = (np.broadcast_to(x, shape)[turn] for x in (ea, eb, sa, sb))
    hh = np.broadcast_to(h, shape)[turn]
    dlt = eb - ea
    b = 3.0 * dlt - hh * (2.0 * sa + sb)
    c = hh * (sa + sb) - 2.0 * dlt
    c0 = hh * sa  # p'(t) = c0 + 2 b t + 3 c t^2
    q = -(b + np.copysign(np.sqrt(np.maximum(b * b - 3.0 * c * c0, 0.0)), b))
    with np.errstate(divide="ignore", invalid="ignore"):
        r1 = q / (3.0 * c)
        r2 = c0 / q
    t = np.clip(np.where((r1 >= 0) & (r1 <= 1), r1, r2), 0.0, 1.0)
    t = np.where(np.isfinite(t), t, 0.0)
    pe = ea + t * (c0 + t * (b + t * c))
    ref = np.broadcast_to(e0, shape)[turn]
    up = np.array(up, copy=True)
    down = np.array(down, copy=True)
    up[turn] = np.maximum(up[turn], pe - ref)
    down[turn] = np.maximum(down[turn], ref - pe)
    return up, down


MAX_TURN_PER_STEP = 0.2  # [rad]: the most an RK4 step may turn the path (see d_stop)
MAX_LEVEL = 6  # at most rk_steps * 2**6 steps per piece (a 6-step piece turning 77 rad)


def _schedule(v, phi, phi_lane, p: StopParams):
    """Arc lengths where the steering schedule has kinks: (s_stop, s1 end of hold, s2 end of return)."""
    a, r, rho = p.a_max, p.steer_rate, p.response_time
    s_stop = v * v / (2 * a)
    t_stop = v / a

    def sigma_at(t):
        t = np.minimum(t, t_stop)
        return v * t - 0.5 * a * t * t

    t1 = np.minimum(rho, t_stop)
    t2 = np.minimum(rho + np.abs(phi - phi_lane) / r, t_stop)
    return s_stop, sigma_at(t1), sigma_at(t2)


def step_levels(v, phi, psi, e, kappa, phi_lane, p: StopParams, rk_steps: int = 6) -> np.ndarray:
    """Per element, the doubling level l such that ``rk_steps * 2**l`` RK4 steps per piece turn the
    path by at most MAX_TURN_PER_STEP each (arrays of the broadcast shape, already non-negative v).

    Bound on the turn: the path turns in the lane frame at tan(phi) / L - k cos(psi), with
    k = kappa / (1 - kappa e), that is at most |tan(phi) / L - k| + |k| (1 - cos psi). Over the
    hold and the return phi lies between phi and phi_lane; over the rest it is phi_lane; psi is at
    most the initial heading error plus the first-order turn, and e moves by at most the stop's
    length times sin(psi), which bounds how much k grows. On the lane-following angle with a small
    heading error the stop turns by almost nothing in the lane frame, as it should.
    """
    s_stop, _, s2 = _schedule(v, phi, phi_lane, p)
    L = p.wheelbase
    with np.errstate(divide="ignore", invalid="ignore"):
        k = kappa / np.maximum(np.abs(offset_scale(kappa, e)), 1e-3)
        r_phi, r_lane = np.abs(np.tan(phi) / L - k), np.abs(np.tan(phi_lane) / L - k)
        first = np.maximum(r_phi, r_lane) * s2 + r_lane * (s_stop - s2)
        psi_max = np.abs(psi) + first
        drift = s_stop * np.minimum(psi_max, 1.0)  # bound on |e - e0|
        k_hi = np.abs(kappa) / np.maximum(1.0 - np.abs(kappa) * (np.abs(e) + drift), 0.02)
        grow = np.maximum(k_hi - np.abs(k), 0.0) * s_stop
        turn = first + grow + k_hi * np.minimum(0.5 * psi_max * psi_max, 2.0) * s_stop
    need = turn / (rk_steps * MAX_TURN_PER_STEP)
    with np.errstate(divide="ignore"):
        lev = np.ceil(np.log2(np.maximum(need, 1.0)))
    return np.clip(np.where(np.isfinite(lev), lev, MAX_LEVEL), 0, MAX_LEVEL).astype(np.int64)


def d_stop(
    v,
    phi,
    psi,
    e,
    kappa,
    phi_lane,
    p: StopParams,
    rk_steps: int = 6,
):
    """Stopping distances: (d_stop_lon, d_stop_left, d_stop_right), arrays of the broadcast shape.

    v speed, phi steering angle, psi heading error to the lane, e lateral offset from the reference
    line (only used through kappa*e), kappa reference-line curvature, phi_lane the lane-following
    steering angle the wheels return to.

    Each piece of the stop gets ``rk_steps`` RK4 steps, doubled per element (see
    :func:`step_levels`) until no step turns the path by more than MAX_TURN_PER_STEP: a stop that
    turns through many radians (steering held at a large angle, rho = infinity) keeps the 1e-3 m
    accuracy of an ordinary one. Elements are integrated in groups of equal step count, so each
    element's result does not depend on the rest of the batch.
    """
    v, phi, psi, e, kappa, phi_lane = np.broadcast_arrays(
        *(np.asarray(a, dtype=float) for a in (v, phi, psi, e, kappa, phi_lane))
    )
    v = np.maximum(v, 0.0)
    args = (v, phi, psi, e, kappa, phi_lane)
    lev = step_levels(*args, p, rk_steps)
    if not lev.any():
        return _d_stop_fixed(*args, p, rk_steps)
    out = tuple(np.empty(v.shape) for _ in range(3))
    for lv in np.unique(lev):
        sel = lev == lv
        res = _d_stop_fixed(*(x[sel] for x in args), p, rk_steps * 2 ** int(lv))
        for o, r_ in zip(out, res, strict=True):
            o[sel] = r_
    return out


def _d_stop_fixed(v, phi, psi, e, kappa, phi_lane, p: StopParams, n: int):
    """d_stop with ``n`` RK4 steps per piece for every element (same-shape arrays, v >= 0)."""
    a, L, r, rho = p.a_max, p.wheelbase, p.steer_rate, p.response_time
    s_stop, s1, s2 = _schedule(v, phi, phi_lane, p)
    gap = phi - phi_lane

    def phi_ramp(sig):
        # time at arc length sig, in the cancellation-free form 2 sig / (v + sqrt(v^2 - 2 a sig))
        root = np.sqrt(np.maximum(v * v - 2 * a * sig, 0.0))
        den = v + root
        t = np.where(den > 0, 2 * sig / np.where(den > 0, den, 1.0), 0.0)
        back = np.maximum(np.abs(gap) - r * (t - rho), 0.0)
        return phi_lane + np.sign(gap) * back

    path = _Path(e, psi, e, np.zeros_like(v), np.zeros_like(v))
    path = _rk4_piece(path, np.zeros_like(v), s1, phi, kappa, L, n)
    if np.any(s2 > s1):
        path = _rk4_piece(path, s1, s2, phi_ramp, kappa, L, n)
    if np.any(s_stop > s2):
        path = _rk4_piece(path, s2, s_stop, phi_lane, kappa, L, n)
    return s_stop, path.up, path.down


@dataclass(frozen=True)
class SafetyPotential:
    d_stop_lon: np.ndarray
    d_stop_lat: np.ndarray
    d_safe_lon: np.ndarray
    d_safe_lat: np.ndarray
    delta_lon: np.ndarray
    delta_lat: np.ndarray

    @property
    def hazard(self) -> np.ndarray:
        return (self.delta_lon <= 0) | (self.delta_lat <= 0)


@dataclass(frozen=True)
class Objects:
    """The objects around the ego in its lane frame, arrays of shape S + (A,) (A may be 0):
    position s along the frame [m], offset d [m], heading psi to the lane [rad], speed along the
    lane v_lon [m/s], length and width [m], own maximum braking a_max [m/s^2]."""

    s: np.ndarray
    d: np.ndarray
    psi: np.ndarray
    v_lon: np.ndarray
    length: np.ndarray
    width: np.ndarray
    a_max: np.ndarray

    @classmethod
    def of(cls, actors) -> Objects:
        """From anything with these attributes (e.g. :class:`drivefi.world.actors.ActorStates`)."""
        return cls(*(getattr(actors, f) for f in cls.__dataclass_fields__))


def d_safe(s, d, psi, ego_len: float, ego_wid: float, lane_lo, lane_hi, kappa, *objects):
    """Safe distances (d_safe_lon, d_safe_left, d_safe_right).

    Ego arrays (s, d, psi) have shape S; ``objects`` is one :class:`Objects` (or its seven arrays
    in field order), shape S + (A,). lane_lo/lane_hi bound the ego's lane; s differences are
    lengths along the line of curvature ``kappa`` at d = 0, scaled to the ego's parallel
    (:func:`drivefi.world.road.offset_scale`). Longitudinal: over objects overlapping the lane
    corridor and ahead, the smallest bumper-to-bumper gap plus the object's own stopping distance
    when it moves the same way. Lateral: from the ego's side to its lane boundary, or to a nearer
    object beside it.
    """
    obj = objects[0] if len(objects) == 1 else Objects(*objects)
    s, d, psi = (np.asarray(a, float) for a in (s, d, psi))
    hl, hw = 0.5 * ego_len, 0.5 * ego_wid
    ext = lateral_extent(hl, hw, psi)
    left = lane_hi - (d + ext)
    right = (d - ext) - lane_lo
    lon = np.full(np.broadcast(s, d).shape, LON_HORIZON)
    if np.shape(obj.s)[-1] > 0:
        ohl, ohw = 0.5 * obj.length, 0.5 * obj.width
        o_lat = lateral_extent(ohl, ohw, obj.psi)
        o_lon = lateral_extent(ohw, ohl, obj.psi)
        ds = (obj.s - s[..., None]) * offset_scale(np.asarray(kappa)[..., None], d[..., None])
        lo_, hi_ = np.asarray(lane_lo)[..., None], np.asarray(lane_hi)[..., None]
        in_lane = (obj.d + o_lat > lo_) & (obj.d - o_lat < hi_)
        gap = ds - hl - o_lon
        ahead = in_lane & (ds > 0)
        vpos = np.maximum(obj.v_lon, 0.0)
        cand = np.where(ahead, gap + vpos * vpos / (2 * obj.a_max), np.inf)
        lon = np.minimum(lon, cand.min(axis=-1))
        beside = np.abs(ds) < hl + o_lon
        e_ext = ext[..., None]
        gl = np.where(
            beside & (obj.d > d[..., None]), obj.d - o_lat - (d[..., None] + e_ext), np.inf
        )
        gr = np.where(
            beside & (obj.d <= d[..., None]), d[..., None] - e_ext - (obj.d + o_lat), np.inf
        )
        left = np.minimum(left, gl.min(axis=-1))
        right = np.minimum(right, gr.min(axis=-1))
    return lon, left, right


def combine(stop_lon, stop_left, stop_right, safe_lon, safe_left, safe_right) -> SafetyPotential:
    """delta = d_safe - d_stop, lateral on the side with the smaller margin."""
    dl = safe_left - stop_left
    dr = safe_right - stop_right
    use_left = dl <= dr
    return SafetyPotential(
        d_stop_lon=stop_lon,
        d_stop_lat=np.where(use_left, stop_left, stop_right),
        d_safe_lon=safe_lon,
        d_safe_lat=np.where(use_left, safe_left, safe_right),
        delta_lon=safe_lon - stop_lon,
        delta_lat=np.minimum(dl, dr),
    )


@dataclass(frozen=True)
class EgoState:
    """The ego in a lane frame: s [m], offset d [m] (left positive), heading error psi [rad],
    speed v [m/s], road-wheel angle phi [rad]; arrays of one shape S."""

    s: np.ndarray
    d: np.ndarray
    psi: np.ndarray
    v: np.ndarray
    phi: np.ndarray


@dataclass(frozen=True)
class LaneAt:
    """The lane frame where the ego is (arrays of shape S, or scalars).

    ``kappa``: curvature of the frame's d = 0 line at the ego's s [1/m] (the stop is integrated in
    that frame); ``phi_lane``: the lane-following road-wheel angle the stop returns to [rad];
    ``lo``, ``hi``: the ego lane's bounds in d [m]; ``gap_kappa``: curvature of the line along
    which the objects' s are measured (None: ``kappa``; 0 when the objects' s are lengths along
    the ego's own parallel already, as an :class:`drivefi.core.Observation`'s ``obj_ds``).
    """

    kappa: np.ndarray | float
    phi_lane: np.ndarray | float
    lo: np.ndarray | float
    hi: np.ndarray | float
    gap_kappa: np.ndarray | float | None = None


def safety(
    ego: EgoState,
    lane: LaneAt,
    objects: Objects,
    vehicle,
    stop: StopParams | None = None,
    distinct: bool = False,
) -> SafetyPotential:
    """The safety potential (d_stop, d_safe, delta) of ego states in a lane frame.

    ``vehicle`` gives the ego's ``length`` and ``width`` (a
    :class:`drivefi.world.scenario.VehicleParams`), ``stop`` its stop parameters (default
    :meth:`StopParams.of` the vehicle). Works on arrays of any shape S (objects S + (A,)).
    ``distinct``: integrate the stop once per distinct state (the same bits: see
    :func:`d_stop_distinct`), for batches where many states repeat (the 3-TBN's predictions).
    """
    p = stop or StopParams.of(vehicle)
    gap_kappa = lane.kappa if lane.gap_kappa is None else lane.gap_kappa
    stop_of = d_stop_distinct if distinct else d_stop
    st = stop_of(ego.v, ego.phi, ego.psi, ego.d, lane.kappa, lane.phi_lane, p)
    sf = d_safe(
        ego.s, ego.d, ego.psi, vehicle.length, vehicle.width, lane.lo, lane.hi, gap_kappa, objects
    )
    return combine(*st, *sf)


def d_stop_distinct(v, phi, psi, e, kappa, phi_lane, stop: StopParams):
    """:func:`d_stop`, integrated once per distinct input (told apart by their bytes, 0.0 and
    -0.0 too): d_stop integrates each element on its own (equal step counts grouped), so the
    distinct inputs alone give the same bits. Worth it where many inputs repeat (a candidate
    value the stack clips or ignores, a fault whose effect has not reached the vehicle yet)."""
    args = np.broadcast_arrays(
        *(np.asarray(a, dtype=float) for a in (v, phi, psi, e, kappa, phi_lane))
    )
    shape = args[0].shape
    n = int(np.prod(shape))
    if n < 64:
        return d_stop(*args, stop)
    rows = np.empty((n, 6))
    for j, a in enumerate(args):
        rows[:, j] = a.ravel()
    keys = rows.view(np.dtype((np.void, rows.itemsize * 6))).ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    if len(first) > 0.9 * n:
        return d_stop(*args, stop)
    u = rows[first]
    res = d_stop(*(u[:, j] for j in range(6)), stop)
    return tuple(r[inverse.ravel()].reshape(shape) for r in res)
