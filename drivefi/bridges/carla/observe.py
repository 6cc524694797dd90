"""Lane geometry through a map's waypoints, and the safety potential of an observation.

:class:`RouteFrame` samples the ego's lane centre from waypoints (``Waypoint.next``) once per
run and answers, for any point, the lane-frame coordinates the embedded bridge uses: progress
``s``, offset from the lane centre (left positive), lane heading, curvature of the lane centre,
lane width and the road's edges. Between two samples the lane centre is taken as the circular arc
through both with their headings, so straight and constant-curvature roads are reproduced exactly
(up to the map's float32 positions), and the projection is closed-form.

:func:`observation_safety` computes d_stop / d_safe / delta from an :class:`Observation` alone,
in the frame of the ego's lane centre. It equals the embedded bridge's own computation (which
works from the road's right edge): both frames describe the same geometry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from drivefi.bridges.base import Observation
from drivefi.safety import SafetyPotential, StopParams, combine, d_safe, d_stop


@dataclass(frozen=True)
class LanePoint:
    """Where a point sits in the route's lane frame."""

    s: float  # progress along the route [m] (scenario s for a generated road)
    c: float  # arc length along the lane centre [m]
    offset: float  # from the lane centre, left positive [m]
    heading: float  # lane heading there (right-handed, rad)
    curvature: float  # of the lane centre [1/m]
    width: float  # lane width [m]
    left: float  # offset of the road's left edge from the lane centre [m]
    right: float  # offset of the road's right edge (negative) [m]
    z: float  # ground height [m]
    index: int  # sample interval (a hint for the next projection)


@dataclass(frozen=True)
class RouteFrame:
    """Samples of a lane centre (M,) in the scenario's right-handed frame."""

    x: np.ndarray
    y: np.ndarray
    h: np.ndarray  # unwrapped heading [rad]
    s: np.ndarray  # reported progress (monotone)
    w: np.ndarray  # lane width
    left: np.ndarray
    right: np.ndarray
    z: np.ndarray
    dc: np.ndarray = None  # (M-1,) arc length of each interval
    kc: np.ndarray = None  # (M-1,) curvature of each interval
    c: np.ndarray = None  # (M,) cumulative arc length

    def __post_init__(self):
        if len(self.x) < 2:
            raise ValueError("a route needs at least two samples")
        dh = np.diff(self.h)
        chord = np.hypot(np.diff(self.x), np.diff(self.y))
        half = 0.5 * dh
        arc = chord * np.where(
            np.abs(half) > 1e-12, half / np.where(half == 0, 1, np.sin(half)), 1.0
        )
        object.__setattr__(self, "dc", arc)
        object.__setattr__(self, "kc", dh / np.maximum(arc, 1e-9))
        object.__setattr__(self, "c", np.concatenate([[0.0], np.cumsum(arc)]))

    @property
    def m(self) -> int:
        return len(self.x)

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_waypoints(cls, wps: list, s: np.ndarray | None = None) -> RouteFrame:
        """Samples at ``wps`` (carla.Waypoint, in driving order); ``s`` defaults to arc length."""
        from drivefi.bridges.carla.opendrive import from_carla

        xs, ys, hs, ws, zs, le, ri = [], [], [], [], [], [], []
        for wp in wps:
            x, y, th = from_carla(wp.transform)
            xs.append(x)
            ys.append(y)
            hs.append(th)
            zs.append(float(wp.transform.location.z))
            w = float(wp.lane_width)
            ws.append(w)
            left, right = road_edges(wp)
            le.append(left)
            ri.append(right)
        h = np.unwrap(np.array(hs))
        frame = cls(
            np.array(xs),
            np.array(ys),
            h,
            np.zeros(len(xs)),
            np.array(ws),
            np.array(le),
            np.array(ri),
            np.array(zs),
        )
        s_arr = frame.c.copy() if s is None else np.asarray(s, float)
        return cls(frame.x, frame.y, frame.h, s_arr, frame.w, frame.left, frame.right, frame.z)

    def shifted(self, ds: float) -> RouteFrame:
        return RouteFrame(
            self.x, self.y, self.h, self.s + ds, self.w, self.left, self.right, self.z
        )

    # -- queries --------------------------------------------------------------------------------
    def _local(self, i: int, x: float, y: float) -> tuple[float, float]:
        """(arc length from sample i, offset) of a point, on interval i's arc (extended)."""
        h, k = self.h[i], self.kc[i]
        dx, dy = x - self.x[i], y - self.y[i]
        ch, sh = math.cos(h), math.sin(h)
        u, v = dx * ch + dy * sh, -dx * sh + dy * ch
        if abs(k) < 1e-12:
            return u, v
        a, b = k * u, 1.0 - k * v
        return math.atan2(a, b) / k, (1.0 - math.hypot(a, b)) / k

    def _nearest(self, x: float, y: float, lo: int, hi: int) -> tuple[int, float]:
        ax, ay = self.x[lo:hi], self.y[lo:hi]
        bx, by = self.x[lo + 1 : hi + 1], self.y[lo + 1 : hi + 1]
        ex, ey = bx - ax, by - ay
        t = np.clip(
            ((x - ax) * ex + (y - ay) * ey) / np.maximum(ex * ex + ey * ey, 1e-12), 0.0, 1.0
        )
        d2 = (ax + t * ex - x) ** 2 + (ay + t * ey - y) ** 2
        j = int(np.argmin(d2))
        return lo + j, float(d2[j])

    def project(self, x: float, y: float, hint: int | None = None) -> LanePoint:
        """The lane-frame coordinates of point (x, y); ``hint`` is the last answer's ``index``."""
        last = self.m - 2
        if hint is not None:
            lo, hi = max(hint - 8, 0), min(hint + 64, last + 1)
            i, d2 = self._nearest(x, y, lo, hi)
            if d2 > 100.0 or (i == hi - 1 and hi <= last):
                i, d2 = self._nearest(x, y, 0, last + 1)
        else:
            i, d2 = self._nearest(x, y, 0, last + 1)
        for _ in range(4):
            cl, off = self._local(i, x, y)
            if cl < 0 and i > 0:
                i -= 1
            elif cl > self.dc[i] and i < last:
                i += 1
            else:
                break
        cl, off = self._local(i, x, y)
        frac = cl / self.dc[i] if self.dc[i] > 0 else 0.0
        f = min(max(frac, 0.0), 1.0)
        return LanePoint(
            s=float(self.s[i] + frac * (self.s[i + 1] - self.s[i])),
            c=float(self.c[i] + cl),
            offset=float(off),
            heading=float(self.h[i] + self.kc[i] * cl),
            curvature=float(self.kc[i]),
            width=float(self.w[i] + f * (self.w[i + 1] - self.w[i])),
            left=float(self.left[i] + f * (self.left[i + 1] - self.left[i])),
            right=float(self.right[i] + f * (self.right[i + 1] - self.right[i])),
            z=float(self.z[i] + f * (self.z[i + 1] - self.z[i])),
            index=i,
        )

    def pose(self, s, offset=0.0):
        """(x, y, heading, z) at progress ``s`` and lane offset ``offset`` (arrays broadcast)."""
        s, offset = np.broadcast_arrays(np.asarray(s, float), np.asarray(offset, float))
        i = np.clip(np.searchsorted(self.s, s, side="right") - 1, 0, self.m - 2)
        span = self.s[i + 1] - self.s[i]
        frac = (s - self.s[i]) / np.where(span > 0, span, 1.0)
        cl = frac * self.dc[i]
        k = self.kc[i]
        th = k * cl
        small = np.abs(k) < 1e-12
        ks = np.where(small, 1.0, k)
        u = np.where(small, cl, np.sin(th) / ks) - offset * np.sin(th)
        v = np.where(small, 0.0, (1.0 - np.cos(th)) / ks) + offset * np.cos(th)
        h = self.h[i]
        x = self.x[i] + u * np.cos(h) - v * np.sin(h)
        y = self.y[i] + u * np.sin(h) + v * np.cos(h)
        f = np.clip(frac, 0.0, 1.0)
        z = self.z[i] + f * (self.z[i + 1] - self.z[i])
        return x, y, h + th, z


def road_edges(wp, max_lanes: int = 16) -> tuple[float, float]:
    """Offsets of the road's left and right edge from waypoint ``wp``'s lane centre.

    The road is every adjacent driving lane, in either direction (an oncoming lane is road too).
    """
    import carla

    half = 0.5 * float(wp.lane_width)
    edges = []
    for first in ("get_left_lane", "get_right_lane"):
        total, cur, step, seen = half, wp, first, {wp.lane_id}
        for _ in range(max_lanes):
            nxt = getattr(cur, step)()
            if nxt is None or nxt.lane_type != carla.LaneType.Driving or nxt.lane_id in seen:
                break
            seen.add(nxt.lane_id)
            if (nxt.lane_id > 0) != (cur.lane_id > 0):
                # crossed the centre line: "outward" is now the other side of that lane's direction
                step = "get_right_lane" if step == "get_left_lane" else "get_left_lane"
            total += float(nxt.lane_width)
            cur = nxt
        edges.append(total)
    return edges[0], -edges[1]


def wrap(a):
    """Angle wrapped to (-pi, pi]."""
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi


def observation_safety(
    obs: Observation, vehicle, obj_amax, stop: StopParams | None = None
) -> SafetyPotential:
    """Safety potential of every run of ``obs``, from the observation alone.

    Works in the ego lane centre's frame: the lateral offset is ``obs.lane_offset``, the frame's
    curvature ``obs.curvature``, the lane spans +-lane_width/2, objects sit at (``obj_ds``,
    ``obj_dd``). ``obj_amax`` is each object's own maximum braking, shape (A,) or (N, A).
    """
    p = stop or StopParams.of(vehicle)
    kc, off, psi = obs.curvature, obs.lane_offset, obs.heading_error
    half = 0.5 * obs.lane_width
    phi_lane = np.arctan(vehicle.wheelbase * kc)
    st = d_stop(obs.v, obs.phi, psi, off, kc, phi_lane, p)
    amax = np.broadcast_to(np.asarray(obj_amax, float), obs.obj_ds.shape)
    sf = d_safe(
        np.zeros_like(off), off, psi, vehicle.length, vehicle.width, -half, half, 0.0,
        obs.obj_ds, obs.obj_dd, obs.obj_psi, obs.obj_vlon, obs.obj_len, obs.obj_wid, amax,
    )  # fmt: skip
    return combine(*st, *sf)
