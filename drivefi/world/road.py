"""The lane frame: a reference line of straight and constant-curvature pieces, and its lanes.

One geometry serves every simulator. A point is (s, d) in the lane frame: s along the reference
line, d to its left (:class:`LaneFrame`). :class:`RoadGeometry` is a chain of arcs (a line is an
arc of curvature 0): the embedded road builds it from the scenario's segments (the reference line
is the road's right edge, lane i spans d in [i*w, (i+1)*w]); the CARLA route builds it from a map
lane's waypoints (:mod:`drivefi.bridges.carla.route`). All functions take numpy arrays of any
shape.

Ends of the frame: past the last piece the last piece is extended (before the first, the first),
so ``pose`` and ``to_frame`` are defined everywhere; a point is projected onto the piece it lies
beside that is nearest to it, or onto an extended end piece when it lies beside none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from drivefi.world.scenario import Road


class LaneFrame(Protocol):
    """Lane-frame coordinates: s along a reference line, d to its left (arrays broadcast)."""

    def to_frame(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """(s, d) of Cartesian points (x, y)."""

    def pose(self, s, d=0.0) -> tuple[np.ndarray, ...]:
        """Cartesian (x, y) of lane-frame points (s, d) and the reference line's heading there
        (a map route adds the ground height z)."""

    def curvature(self, s) -> np.ndarray:
        """Curvature of the reference line at s [1/m] (left turns positive)."""


@dataclass(frozen=True)
class RoadGeometry:
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

    def pose(self, s: np.ndarray, d: np.ndarray | float = 0.0):
        """Cartesian (x, y) of lane-frame point (s, d) and the road heading there."""
        s = np.asarray(s, dtype=float)
        i = self.segment(s)
        x, y, th = _advance(self.x0[i], self.y0[i], self.th0[i], self.kappa[i], s - self.s0[i])
        return x - d * np.sin(th), y + d * np.cos(th), th


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
