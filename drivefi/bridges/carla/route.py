"""The ego's route through a CARLA map, as a lane frame (:class:`RouteFrame`).

A route follows the ego's lane through the map's waypoints (``Waypoint.next`` / ``previous``).
Where the lane branches (a junction), it takes the branch whose lane leaves the junction heading
most nearly as it entered, measured at the junction's exit rather than one step ahead (turning
lanes often start straight), so the choice does not depend on the sampling step. An explicit
route (road/lane ids or CARLA locations, as a Leaderboard route lists them) overrides that choice
at every branch that leads to its next entry.

:class:`RouteFrame` is the sampled lane as a :class:`drivefi.world.road.RoadGeometry`: between two
samples the lane centre is the circular arc through both with their headings, so straight and
constant-curvature lanes are reproduced exactly (up to the map's float32 positions). Its reference
line, along which ``s`` runs, lies ``ref_offset`` to the right of the lane centre: the scenario
road's right edge, as on the embedded road, so ``s`` and gaps mean the same on both simulators.
It is the :class:`drivefi.world.road.OffsetLane` of the lane, so its lane frame (d from the lane
centre), its derived quantities and its ends are those of :mod:`drivefi.world.road`; a projection
past the route's ends reads the end samples' width, edges and height.
Road edges come from the lanes that really surround each sample: the adjacent driving lanes on a
road, and, inside a junction (where a connecting road has no neighbours in the OpenDRIVE), the
driving surface found by probing across the lane at that sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from drivefi.errors import InputError
from drivefi.world.road import OffsetLane, RoadGeometry, offset_curvature

LOOKAHEAD = 60.0  # how far a branch is followed to judge where it leads [m]
PROBE = 0.25  # spacing of the probes across a junction [m]
MAX_REACH = 12.0  # farthest road edge searched from the lane centre [m]
WINDOW = (30.0, 60.0, 15.0)  # a hinted projection: s behind, s ahead, largest offset [m]


@dataclass(frozen=True)
class LanePoint:
    """Where a point sits in the route's lane frame."""

    s: float  # progress along the route's reference line [m]
    offset: float  # from the lane centre, left positive [m]
    heading: float  # lane heading there (right-handed, rad)
    curvature: float  # of the lane centre [1/m]
    width: float  # lane width [m]
    left: float  # offset of the road's left edge from the lane centre [m]
    right: float  # offset of the road's right edge (negative) [m]
    z: float  # ground height [m]
    index: int  # the sample interval it lies in


@dataclass(frozen=True)
class RouteFrame(OffsetLane):
    """A sampled lane centre (M samples) as a lane frame; see the module docstring. ``ref`` is
    the reference line (one arc per sample interval), ``ref_offset`` the lane centre's d on it."""

    w: np.ndarray  # (M,) lane width
    left: np.ndarray  # (M,) road edges as offsets from the lane centre
    right: np.ndarray
    z: np.ndarray

    @property
    def m(self) -> int:
        return len(self.w)

    @property
    def s(self) -> np.ndarray:
        """s at every sample."""
        return np.append(self.ref.s0, self.ref.length)

    @classmethod
    def from_samples(
        cls, x, y, h, w, left, right, z, ref_offset: float = 0.0, s_start: float = 0.0
    ) -> RouteFrame:
        """From lane-centre samples (right-handed x, y, unwrapped heading h) in driving order."""
        x, y, h = (np.asarray(a, float) for a in (x, y, h))
        if len(x) < 2:
            raise ValueError("a route needs at least two samples")
        dh = np.diff(h)
        chord = np.hypot(np.diff(x), np.diff(y))
        half = 0.5 * dh
        safe = np.where(np.abs(half) > 1e-12, half, 1.0)
        dc = chord * np.where(np.abs(half) > 1e-12, half / np.sin(safe), 1.0)
        kc = dh / np.maximum(dc, 1e-9)
        stretch = 1.0 + kc * ref_offset  # reference-line length per lane-centre length
        if np.any(stretch <= 0.05):
            i = int(np.argmin(stretch))
            raise InputError(
                f"the route turns right with radius {1 / abs(kc[i]):.1f} m near x={x[i]:.0f} "
                f"y={y[i]:.0f}, tighter than the reference line {ref_offset:.2f} m to its right"
            )
        hs, hc = np.sin(h[:-1]), np.cos(h[:-1])
        ref = RoadGeometry.from_pieces(
            x[:-1] + ref_offset * hs, y[:-1] - ref_offset * hc, h[:-1], kc / stretch,
            dc * stretch, s_start,
        )  # fmt: skip
        arr = (np.asarray(a, float) for a in (w, left, right, z))
        return cls(ref, float(ref_offset), *arr)

    @classmethod
    def from_waypoints(cls, wps: list, edges=None, **kw) -> RouteFrame:
        """Samples at ``wps`` (carla.Waypoint, in driving order); ``edges(wp)`` gives each
        sample's (left, right) road edges (default :func:`road_edges`)."""
        from drivefi.world.opendrive import from_carla

        edges = edges or road_edges
        rows = []
        for wp in wps:
            x, y, th = from_carla(wp.transform)
            left, right = edges(wp)
            rows.append((x, y, th, float(wp.lane_width), left, right, wp.transform.location.z))
        x, y, th, w, le, ri, z = np.array(rows, float).T
        return cls.from_samples(x, y, np.unwrap(th), w, le, ri, z, **kw)

    def shifted(self, ds: float) -> RouteFrame:
        r = self.ref
        ref = RoadGeometry(
            r.s0 + ds, r.x0, r.y0, r.th0, r.kappa, r.lanes, r.lane_width, r.length + ds
        )
        return RouteFrame(ref, self.ref_offset, self.w, self.left, self.right, self.z)

    # -- the lane frame (to_frame, heading, curvature, lane_curvature: OffsetLane's) -------------
    def project(self, x: float, y: float, hint: float | None = None) -> LanePoint:
        """The lane-frame coordinates of point (x, y). ``hint`` is the point's last ``s``: the
        projection then looks near it first (WINDOW), so a route that passes the same place twice
        is read where the point really is; a point far off that window is projected globally."""
        s, d = None, None
        if hint is not None:
            s, d = (float(v) for v in self.to_frame(x, y, (hint - WINDOW[0], hint + WINDOW[1])))
            if abs(d) > WINDOW[2]:
                s = None
        if s is None:
            s, d = (float(v) for v in self.to_frame(x, y))
        r = self.ref
        i = int(r.segment(s))
        span = (r.length if i == len(r.s0) - 1 else r.s0[i + 1]) - r.s0[i]
        f = min(max((s - r.s0[i]) / span if span > 0 else 0.0, 0.0), 1.0)
        kref = float(r.kappa[i])

        def lerp(a):
            return float(a[i] + f * (a[i + 1] - a[i]))

        return LanePoint(
            s=s,
            offset=d,
            heading=float(r.heading(s)),
            curvature=offset_curvature(kref, self.ref_offset),
            width=lerp(self.w),
            left=lerp(self.left),
            right=lerp(self.right),
            z=lerp(self.z),
            index=i,
        )

    def pose(self, s, offset=0.0):
        """(x, y, heading, z) at progress ``s`` and lane offset ``offset`` (arrays broadcast)."""
        s, offset = np.broadcast_arrays(np.asarray(s, float), np.asarray(offset, float))
        x, y, h = super().pose(s, offset)
        i = self.ref.segment(s)
        r = self.ref
        ends = np.append(r.s0[1:], r.length)
        f = np.clip((s - r.s0[i]) / np.maximum(ends[i] - r.s0[i], 1e-9), 0.0, 1.0)
        z = self.z[i] + f * (self.z[i + 1] - self.z[i])
        return x, y, h, z

    def max_curvature_ahead(self, s, distance: float) -> float:
        """Largest |curvature| of the lane centre within ``distance`` ahead of s."""
        r = self.ref
        ends = np.append(r.s0[1:], r.length)
        sel = (ends > s) & (r.s0 < s + distance)
        if not sel.any():
            return 0.0
        k = r.kappa[sel]
        return float(np.max(np.abs(offset_curvature(k, self.ref_offset))))


# -- edges ----------------------------------------------------------------------------------------
def road_edges(wp, max_lanes: int = 16) -> tuple[float, float]:
    """Offsets of the road's left and right edge from waypoint ``wp``'s lane centre, from the
    adjacent driving lanes, in either direction (an oncoming lane is road too)."""
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


def surface_edges(cmap, wp) -> tuple[float, float]:
    """Road edges at ``wp`` from the driving surface itself: probes across the lane (every
    ``PROBE`` m) until one is on no driving lane of the map. Used inside junctions, where the
    lanes that overlap the ego's connecting road are other connecting roads."""
    import carla

    loc, rot = wp.transform.location, wp.transform.rotation
    yaw = math.radians(rot.yaw)
    # CARLA is left-handed: the lane's left is (sin yaw, -cos yaw) in its x, y
    lx, ly = math.sin(yaw), -math.cos(yaw)
    half = 0.5 * float(wp.lane_width)
    out = []
    for sign in (1.0, -1.0):
        edge = half
        o = half + PROBE
        while o <= MAX_REACH:
            p = carla.Location(loc.x + sign * o * lx, loc.y + sign * o * ly, loc.z)
            if (
                cmap.get_waypoint(p, project_to_road=False, lane_type=carla.LaneType.Driving)
                is None
            ):
                break
            edge = o
            o += PROBE
        out.append(edge)
    return out[0], -out[1]


def edges_for(cmap):
    """The edge function of a map: lane neighbours on roads, the probed surface in junctions."""

    def edges(wp):
        if wp.is_junction:
            return surface_edges(cmap, wp)
        return road_edges(wp)

    return edges


# -- walking ----------------------------------------------------------------------------------------
def _yaw(wp) -> float:
    return math.radians(wp.transform.rotation.yaw)


def _turn(a: float, b: float) -> float:
    return abs((b - a + math.pi) % (2 * math.pi) - math.pi)


def _follow(wp, forward: bool, distance: float = LOOKAHEAD, step: float = 2.0) -> list:
    """Waypoints along ``wp``'s lane until it has left a junction (or ``distance``), taking the
    first branch at any further split."""
    out, went, inside = [wp], 0.0, wp.is_junction
    while went < distance:
        nxt = wp.next(step) if forward else wp.previous(step)
        if not nxt:
            break
        wp = nxt[0]
        out.append(wp)
        went += step
        inside = inside or wp.is_junction
        if inside and not wp.is_junction:
            break
    return out


def straightest(wp, candidates: list, forward: bool):
    """The branch that leaves the junction heading most nearly as ``wp`` enters it."""
    h = _yaw(wp)
    return min(candidates, key=lambda c: _turn(h, _yaw(_follow(c, forward)[-1])))


class RouteTargets:
    """The pending entries of an explicit route, as (road_id, lane_id) of the map."""

    def __init__(self, cmap, points, town: str = "the town"):
        import carla

        self.items: list[tuple[int, int, int]] = []  # (entry index, road_id, lane_id)
        for i, p in enumerate(points or []):
            if p.road_id is not None:
                self.items.append((i, p.road_id, p.lane_id))
                continue
            wp = cmap.get_waypoint(carla.Location(x=p.x, y=p.y, z=0.0))
            if wp is None:
                raise InputError(f"carla.route.{i}: ({p.x}, {p.y}) is on no driving lane of {town}")
            self.items.append((i, wp.road_id, wp.lane_id))

    def passed(self, wp) -> None:
        while self.items and (wp.road_id, wp.lane_id) == self.items[0][1:]:
            self.items.pop(0)

    def choose(self, wp, candidates: list, forward: bool):
        if self.items:
            _, road, lane = self.items[0]
            for c in candidates:
                if any((w.road_id, w.lane_id) == (road, lane) for w in _follow(c, forward)):
                    return c
            for c in candidates:  # the road named, in whichever lane the branch has
                if any(w.road_id == road for w in _follow(c, forward)):
                    return c
        return straightest(wp, candidates, forward)


def walk(wp, step: float, distance: float, forward: bool, targets: RouteTargets | None = None):
    """Waypoints from ``wp`` every ``step`` metres along its lane for ``distance`` metres,
    through junctions as the module docstring says."""
    out = [wp]
    for _ in range(math.ceil(distance / step)):
        nxt = wp.next(step) if forward else wp.previous(step)
        if not nxt:
            break
        if len(nxt) == 1:
            wp = nxt[0]
        elif targets is not None:
            wp = targets.choose(wp, nxt, forward)
        else:
            wp = straightest(wp, nxt, forward)
        if targets is not None:
            targets.passed(wp)
        out.append(wp)
    return out
