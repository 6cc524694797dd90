"""Road geometry: a reference line of straight and constant-curvature segments, and its lanes.

The reference line is the road's right edge; a point is (s, d) in the lane frame: s along the
reference line, d to its left. Lane i spans d in [i*w, (i+1)*w]. All functions take numpy arrays
of any shape. Past the road's last segment the last segment is extended.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drivefi.scenario import Road


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
