"""The lane frame: a reference line of straight and constant-curvature pieces, and its lanes.

One geometry serves every simulator, and the quantities derived from it are written here once.

Coordinates. A lane frame (:class:`LaneFrame`) places a point at (s, d): s [m] along the frame's
*reference line*, d [m] to the left of the frame's *lane centre* (the line ``pose(s, 0)``
traces), the one origin for lateral position. :class:`RoadGeometry` is a reference line: a chain
of arcs (a line is an arc of curvature 0). The embedded road builds it from the scenario's
segments with the reference line on the road's right edge (lane i spans [i*w, (i+1)*w] from it);
its own ``pose`` / ``to_frame`` / ``curvature`` are the frame of the line itself (its lane centre
is the line, d = the distance from the road's right edge). The lane frame of a lane on it is
:class:`OffsetLane` (``road.lane_frame(i)``): the same s, d measured from that lane's centre,
which runs ``ref_offset`` to the left of the reference line. The CARLA route
(:class:`drivefi.bridges.carla.route.RouteFrame`) is an :class:`OffsetLane` built from a map
lane's waypoints, on the same reference line (the scenario road's right edge), so s, d and gaps
mean the same on both simulators. Code that holds the reference line's d (the embedded world's
state, the scripted actors) converts with ``frame.from_ref`` / ``frame.to_ref``, never by hand.

Derived quantities, written once: :func:`offset_scale` (1 - kappa d: length along the line at
offset d per unit s), :func:`offset_curvature` (kappa / (1 - kappa d): the curvature of the line
at offset d), :func:`lane_steer` (the kinematic bicycle's lane-following road-wheel angle),
:func:`lateral_extent` (the half-extent of a turned box across the lane). On a frame:
``lane_curvature(s, d)``, ``scale(s, d)``, ``steer_angle(s, wheelbase)``. All functions take
numpy arrays of any shape.

Ends of the frame (what an out-of-domain point returns): past the last piece the last piece is
extended (before the first, the first), so ``pose``, ``to_frame``, ``heading`` and ``curvature``
are defined and finite for every finite (s, d) and (x, y), never NaN: a point is projected onto
the piece it lies beside that is nearest to it, or onto an extended end piece when it lies beside
none, so s may be below the first piece's start or beyond the end. The derived quantities are
finite wherever the parallel exists (1 - kappa d > 0, short of the centre of curvature). A
route's sampled quantities (lane width, road edges, ground height) hold their end values there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from drivefi.world.scenario import Road


# -- derived quantities of a line and its parallels --------------------------------------------------
def offset_scale(kappa, d):
    """Length of the parallel at offset d (left positive) of a line of curvature kappa, per unit
    length of the line: 1 - kappa d [1]. Turns s differences into lengths along the parallel."""
    return 1.0 - kappa * d


def offset_curvature(kappa, d):
    """Curvature [1/m] of the parallel at offset d (left positive) of a line of curvature kappa
    (left turns positive): kappa / (1 - kappa d). A left-turning circle of radius R has, d to its
    left, radius R - d. With d = -c it maps a curvature back: the line c to the right."""
    return kappa / offset_scale(kappa, d)


def lane_steer(wheelbase, kappa, d=0.0):
    """Road-wheel angle [rad] that follows the parallel at offset d of a line of curvature kappa:
    atan(L kappa_d) for the kinematic bicycle of wheelbase L (DESIGN.md, the lane-following angle)."""
    return np.arctan(wheelbase * kappa / offset_scale(kappa, d))


def lateral_extent(half_len, half_wid, psi):
    """Half-extent across the lane [m] of a box turned by psi to the lane (with the halves
    swapped: its half-extent along the lane)."""
    return half_wid * np.abs(np.cos(psi)) + half_len * np.abs(np.sin(psi))


class LaneFrame(Protocol):
    """The lane frame every part shares (module docstring): s along the reference line, d from
    the lane centre, left positive; arrays broadcast; defined beyond the frame's ends."""

    def to_frame(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """(s, d) of Cartesian points (x, y)."""

    def pose(self, s, d=0.0) -> tuple[np.ndarray, ...]:
        """Cartesian (x, y) of lane-frame points (s, d) and the lane's heading there (a map route
        adds the ground height z)."""

    def heading(self, s) -> np.ndarray:
        """Heading of the lane at s [rad] (the reference line's: they are parallel)."""

    def curvature(self, s) -> np.ndarray:
        """Curvature of the reference line at s [1/m] (left turns positive)."""

    def lane_curvature(self, s, d=0.0) -> np.ndarray:
        """Curvature of the parallel at offset d from the lane centre [1/m] (d = 0: the lane's)."""

    def scale(self, s, d=0.0) -> np.ndarray:
        """Length along the parallel at offset d per unit s [1]."""


@dataclass(frozen=True)
class RoadGeometry:
    """A reference line: a chain of arcs. As a :class:`LaneFrame` it is the frame of the line
    itself (d from the line; on the embedded road, from the road's right edge); a lane on it is
    :meth:`lane_frame`."""

    s0: np.ndarray  # segment start positions along the reference line
    x0: np.ndarray
    y0: np.ndarray
    th0: np.ndarray
    kappa: np.ndarray
    lanes: int
    lane_width: float
    length: float  # total length of the reference line [m]

    @classmethod
    def from_road(cls, road: Road) -> RoadGeometry:
        s0, x0, y0, th0, kap = [0.0], [0.0], [0.0], [0.0], []
        for seg in road.segments:
            k, ln = seg.curvature, seg.length
            kap.append(k)
            x, y, th = _advance(x0[-1], y0[-1], th0[-1], k, ln)
            s0.append(s0[-1] + ln)
            x0.append(x)
            y0.append(y)
            th0.append(th)
        return cls(
            np.array(s0[:-1]),
            np.array(x0[:-1]),
            np.array(y0[:-1]),
            np.array(th0[:-1]),
            np.array(kap),
            road.lanes,
            road.lane_width,
            s0[-1],
        )

    @classmethod
    def from_pieces(
        cls, x0, y0, th0, kappa, lengths, s_start: float = 0.0, **lanes
    ) -> RoadGeometry:
        """A chain of arcs from each piece's start pose, curvature and length."""
        lengths = np.asarray(lengths, float)
        s0 = s_start + np.concatenate([[0.0], np.cumsum(lengths)[:-1]])
        return cls(
            s0, np.asarray(x0, float), np.asarray(y0, float), np.asarray(th0, float),
            np.asarray(kappa, float), lanes.get("lanes", 1), lanes.get("lane_width", 0.0),
            float(s0[-1] + lengths[-1]),
        )  # fmt: skip

    def heading(self, s) -> np.ndarray:
        s = np.asarray(s, dtype=float)
        i = self.segment(s)
        return self.th0[i] + self.kappa[i] * (s - self.s0[i])

    def to_frame(self, x, y, s_range=None) -> tuple[np.ndarray, np.ndarray]:
        """(s, d) of points (x, y): the exact projection onto the nearest piece (module docstring);
        ``s_range`` = (lo, hi) considers only the pieces that overlap it (a frame that passes
        the same place twice, e.g. a route around a loop, is then read where the point was last)."""
        x, y = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float))
        px, py = x[..., None], y[..., None]
        ln = np.append(np.diff(self.s0), self.length - self.s0[-1])
        n = len(self.s0)
        idx = np.arange(n)
        if s_range is not None:
            keep = (self.s0 + ln >= s_range[0]) & (self.s0 <= s_range[1])
            idx = idx[keep] if keep.any() else idx
        s0, ln = self.s0[idx], ln[idx]
        along, d = arc_local(self.x0[idx], self.y0[idx], self.th0[idx], self.kappa[idx], px, py)
        lo = np.where(idx == 0, -np.inf, -1e-9)
        hi = np.where(idx == n - 1, np.inf, ln + 1e-9)
        beside = (along >= lo) & (along <= hi)
        cost = np.where(beside, np.abs(d), np.inf)
        # a point beside no piece (outside a kink): the nearer end of the nearest piece
        fallback = np.abs(d) + np.maximum(np.maximum(-along, along - ln), 0.0)
        cost = np.where(beside.any(axis=-1, keepdims=True), cost, fallback)
        j = np.argmin(cost, axis=-1)
        pick = np.take_along_axis
        a = pick(along, j[..., None], -1)[..., 0]
        dd = pick(d, j[..., None], -1)[..., 0]
        return s0[j] + a, dd

    @property
    def width(self) -> float:
        return self.lanes * self.lane_width

    def lane_center(self, lane: np.ndarray | int) -> np.ndarray:
        return (np.asarray(lane, dtype=float) + 0.5) * self.lane_width

    def segment(self, s: np.ndarray) -> np.ndarray:
        return np.clip(np.searchsorted(self.s0, s, side="right") - 1, 0, len(self.s0) - 1)

    def curvature(self, s: np.ndarray) -> np.ndarray:
        """Curvature of the reference line at s."""
        return self.kappa[self.segment(s)]

    def lane_curvature(self, s, d=0.0) -> np.ndarray:
        """Curvature of the parallel d to the left of the reference line at s."""
        return offset_curvature(self.curvature(s), d)

    def scale(self, s, d=0.0) -> np.ndarray:
        """Length along the parallel d to the left of the reference line per unit s."""
        return offset_scale(self.curvature(s), d)

    def lane_frame(self, lane: int) -> OffsetLane:
        """The lane frame of lane ``lane`` (0 = the rightmost): d from its centre."""
        return OffsetLane(self, float(self.lane_center(lane)))

    def pose(self, s: np.ndarray, d: np.ndarray | float = 0.0):
        """Cartesian (x, y) of lane-frame point (s, d) and the road heading there."""
        s = np.asarray(s, dtype=float)
        i = self.segment(s)
        x, y, th = _advance(self.x0[i], self.y0[i], self.th0[i], self.kappa[i], s - self.s0[i])
        return x - d * np.sin(th), y + d * np.cos(th), th


@dataclass(frozen=True)
class OffsetLane:
    """The lane frame of a lane whose centre runs ``ref_offset`` to the left of the reference line
    ``ref`` (module docstring): s along ``ref``, d from the lane centre."""

    ref: RoadGeometry  # the reference line, along which s runs
    ref_offset: float  # the lane centre's d from the reference line [m]

    # -- between the reference line's d and the lane's ----------------------------------------
    def to_ref(self, d):
        """The reference line's d of lane offset d."""
        return d + self.ref_offset

    def from_ref(self, d_ref):
        """The lane offset of the reference line's d."""
        return d_ref - self.ref_offset

    # -- the lane frame ---------------------------------------------------------------------------
    def to_frame(self, x, y, s_range=None) -> tuple[np.ndarray, np.ndarray]:
        """(s, d) of points (x, y), d from the lane centre (``s_range``: see
        :meth:`RoadGeometry.to_frame`)."""
        s, d = self.ref.to_frame(x, y, s_range)
        return s, self.from_ref(d)

    def pose(self, s, d=0.0):
        """Cartesian (x, y) of lane-frame points (s, d) and the lane's heading there."""
        return self.ref.pose(s, self.to_ref(d))

    def heading(self, s) -> np.ndarray:
        return self.ref.heading(s)

    def curvature(self, s) -> np.ndarray:
        """Curvature of the reference line at s (the lane centre's: :meth:`lane_curvature`)."""
        return self.ref.curvature(s)

    def lane_curvature(self, s, d=0.0) -> np.ndarray:
        """Curvature of the parallel d to the left of the lane centre at s (d = 0: the lane's)."""
        return offset_curvature(self.ref.curvature(s), self.to_ref(d))

    def scale(self, s, d=0.0) -> np.ndarray:
        """Length along the parallel d to the left of the lane centre per unit s."""
        return offset_scale(self.ref.curvature(s), self.to_ref(d))

    def steer_angle(self, s, wheelbase: float) -> np.ndarray:
        """The road-wheel angle that follows the lane centre at s (:func:`lane_steer`)."""
        return lane_steer(wheelbase, self.ref.curvature(s), self.ref_offset)


def arc_local(x0, y0, th0, k, x, y):
    """(arc length along, offset to the left) of point (x, y) relative to the arc that starts at
    (x0, y0) with heading th0 and curvature k (exact; the arc extended past its ends)."""
    dx, dy = x - x0, y - y0
    ch, sh = np.cos(th0), np.sin(th0)
    u, v = dx * ch + dy * sh, -dx * sh + dy * ch
    k = np.asarray(k, dtype=float)
    small = np.abs(k) < 1e-12
    ks = np.where(small, 1.0, k)
    a, b = ks * u, 1.0 - ks * v
    along = np.where(small, u, np.arctan2(a, b) / ks)
    off = np.where(small, v, (1.0 - np.hypot(a, b)) / ks)
    return along, off


def _advance(x0, y0, th0, k, ds):
    """Pose after travelling ds along an arc of curvature k (exact; stable as k -> 0)."""
    k = np.asarray(k, dtype=float)
    th = th0 + k * ds
    # sin(a+b)-sin(a) = 2 cos(a + b/2) sin(b/2); divide by k with sinc for small k
    half = 0.5 * k * ds
    sinc = np.sinc(half / np.pi)  # sin(half)/half
    x = x0 + ds * np.cos(th0 + half) * sinc
    y = y0 + ds * np.sin(th0 + half) * sinc
    return x, y, th
