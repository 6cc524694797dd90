"""One lane frame and one safety potential: the derived lane quantities against closed forms, the
embedded road and a CARLA route answering alike, and the one assembly of d_stop, d_safe and delta."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest

from drivefi.bridges.carla.observe import observation_safety
from drivefi.bridges.embedded import EmbeddedBridge
from drivefi.world.road import (
    LaneFrame,
    OffsetLane,
    RoadGeometry,
    lane_steer,
    lateral_extent,
    offset_curvature,
    offset_scale,
)
from drivefi.world.safety import (
    LON_HORIZON,
    EgoState,
    LaneAt,
    Objects,
    StopParams,
    combine,
    d_safe,
    d_stop,
    safety,
)
from drivefi.world.scenario import Road, Segment, load_scenario

R = 80.0  # radius of the test arcs [m]


def arc_road(k: float, length: float = 200.0, lanes: int = 3, w: float = 3.5) -> RoadGeometry:
    return RoadGeometry.from_road(
        Road(lanes=lanes, lane_width=w, segments=[Segment(length=length, curvature=k)])
    )


def circumcurvature(x, y):
    """Signed curvature of the circle through three consecutive points (left turns positive),
    from the points alone: 4 * area / (a b c)."""
    (x0, x1, x2), (y0, y1, y2) = x, y
    cross = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)
    a, b, c = (
        math.hypot(x1 - x0, y1 - y0),
        math.hypot(x2 - x1, y2 - y1),
        math.hypot(x2 - x0, y2 - y0),
    )
    return 2.0 * cross / (a * b * c)


def frames():
    road = arc_road(1.0 / R)
    return {"road": road, "lane 1": road.lane_frame(1), "lane 0": OffsetLane(road, 1.75)}


# -- derived quantities against closed forms ------------------------------------------------------
@pytest.mark.parametrize("c", [-3.0, -1.75, 0.0, 0.5, 1.75, 5.25])
def test_curvature_of_a_parallel_of_a_circle(c):
    # a left turn of radius R: the parallel c to the left has radius R - c
    assert offset_curvature(1.0 / R, c) == pytest.approx(1.0 / (R - c), rel=1e-14)
    # a right turn of radius R (curvature -1/R): c to the left is farther out, radius R + c
    assert offset_curvature(-1.0 / R, c) == pytest.approx(-1.0 / (R + c), rel=1e-14)
    # a straight line stays straight; length along the parallel per unit s: (R - c) / R
    assert offset_curvature(0.0, c) == 0.0 and offset_scale(0.0, c) == 1.0
    assert offset_scale(1.0 / R, c) == pytest.approx((R - c) / R, rel=1e-14)
    # the lane-following angle of the kinematic bicycle on a circle of radius R - c
    L = 2.9
    assert lane_steer(L, 1.0 / R, c) == pytest.approx(math.atan(L / (R - c)), rel=1e-14)
    # mapped back: the reference line c to the right of a lane of curvature 1/(R - c) is the circle
    assert offset_curvature(1.0 / (R - c), -c) == pytest.approx(1.0 / R, rel=1e-14)


def test_derived_quantities_vectorise():
    k = np.array([[0.0, 0.01], [-0.02, 1.0 / R]])
    d = np.array([1.75, -0.5])
    np.testing.assert_array_equal(offset_curvature(k, d).shape, (2, 2))
    np.testing.assert_allclose(offset_curvature(k, d), k / (1 - k * d))


@pytest.mark.parametrize("psi", [0.0, 0.3, -0.7, 1.2, math.pi / 2, 2.8])
def test_lateral_extent_is_the_turned_box_s_half_width_across_the_lane(psi):
    hl, hw = 2.35, 0.95
    corners = [(sx * hl, sy * hw) for sx in (-1, 1) for sy in (-1, 1)]
    across = max(abs(u * math.sin(psi) + v * math.cos(psi)) for u, v in corners)
    along = max(abs(u * math.cos(psi) - v * math.sin(psi)) for u, v in corners)
    assert lateral_extent(hl, hw, psi) == pytest.approx(across, abs=1e-12)
    assert lateral_extent(hw, hl, psi) == pytest.approx(along, abs=1e-12)


# -- the protocol: one origin, derived quantities on the frame ------------------------------------
@pytest.mark.parametrize("name", ["road", "lane 1", "lane 0"])
def test_frames_meet_the_protocol_with_d_from_the_lane_centre(name):
    frame = frames()[name]
    for m in ("to_frame", "pose", "heading", "curvature", "lane_curvature", "scale"):
        assert callable(getattr(frame, m)), m
    assert set(LaneFrame.__dict__) >= {"to_frame", "pose", "lane_curvature", "scale"}
    centre = {"road": 0.0, "lane 1": 5.25, "lane 0": 1.75}[name]
    s = np.linspace(5.0, 150.0, 30)
    d = np.linspace(-1.5, 1.5, 30)
    x, y, th = frame.pose(s, d)
    # d = 0 is the lane centre: radius R - centre around the arc's centre (0, R)
    x0, y0, _ = frame.pose(s, 0.0)
    np.testing.assert_allclose(np.hypot(x0, y0 - R), R - centre, rtol=1e-12)
    np.testing.assert_allclose(np.hypot(x, y - R), R - centre - d, rtol=1e-12)
    np.testing.assert_allclose(th, s / R, atol=1e-12)
    s2, d2 = frame.to_frame(x, y)
    np.testing.assert_allclose(s2, s, atol=1e-9)
    np.testing.assert_allclose(d2, d, atol=1e-9)
    np.testing.assert_allclose(frame.heading(s), s / R, atol=1e-12)
    # the reference line's curvature, and the lane's from three points of the lane itself
    np.testing.assert_allclose(frame.curvature(s), 1.0 / R)
    for si, di in ((40.0, 0.0), (90.0, 0.8), (120.0, -1.2)):
        px, py, _ = frame.pose(np.array([si - 1.0, si, si + 1.0]), di)
        assert frame.lane_curvature(si, di) == pytest.approx(circumcurvature(px, py), rel=1e-8)
        assert frame.lane_curvature(si, di) == pytest.approx(1.0 / (R - centre - di), rel=1e-12)
        # scale: the chord length along the parallel per unit s
        qx, qy, _ = frame.pose(np.array([si, si + 1e-3]), di)
        chord = math.hypot(qx[1] - qx[0], qy[1] - qy[0])
        assert frame.scale(si, di) == pytest.approx(chord / 1e-3, rel=1e-8)


def test_lane_frame_converts_the_reference_line_s_d_once():
    road = arc_road(1.0 / R)
    lane = road.lane_frame(2)
    assert lane.ref_offset == pytest.approx(2.5 * 3.5)
    assert lane.from_ref(lane.to_ref(0.3)) == pytest.approx(0.3)
    assert lane.to_ref(0.0) == lane.ref_offset
    x, y, th = lane.pose(60.0, 0.4)
    rx, ry, rth = road.pose(60.0, lane.to_ref(0.4))
    assert (x, y, th) == (rx, ry, rth)
    L = 2.9
    assert lane.steer_angle(60.0, L) == pytest.approx(math.atan(L / (R - lane.ref_offset)))


def test_frame_ends_extend_the_end_pieces_and_never_return_nan():
    """Out of the frame's domain: the first and last pieces are extended (module docstring)."""
    k = 0.01
    road = RoadGeometry.from_road(
        Road(
            lanes=2, lane_width=3.5, segments=[Segment(length=50), Segment(length=100, curvature=k)]
        )
    )
    lane = road.lane_frame(0)
    # before the start: the first (straight) piece extended backwards
    x, y, th = lane.pose(-30.0, 0.5)
    assert (x, y, th) == pytest.approx((-30.0, 1.75 + 0.5, 0.0))
    assert lane.to_frame(-30.0, 2.25) == pytest.approx((-30.0, 0.5))
    # beyond the end: the last arc continues as the same circle
    for s in (150.0, 180.0, 260.0):
        xs, ys, _ = road.pose(np.array([s - 1.0, s, s + 1.0]), 1.75)
        assert circumcurvature(xs, ys) == pytest.approx(k / (1 - k * 1.75), rel=1e-7)
        assert lane.lane_curvature(s) == pytest.approx(k / (1 - k * 1.75), rel=1e-14)
        assert lane.heading(s) == pytest.approx(k * (s - 50.0))
    # a point far beyond the end projects onto the extended piece: finite, s past the length
    x, y, _ = lane.pose(250.0, -0.3)
    s2, d2 = lane.to_frame(x, y)
    assert np.isfinite([s2, d2]).all()
    assert (float(s2), float(d2)) == pytest.approx((250.0, -0.3), abs=1e-9)


# -- the embedded road and a CARLA route: the same answers ---------------------------------------
@pytest.mark.parametrize("name", ["curved_following", "highway"])
def test_embedded_lane_frame_and_carla_route_agree_on_the_same_pose(name):
    carla = pytest.importorskip("carla", reason="the CARLA client package builds the offline map")
    from drivefi.bridges.carla.observe import wrap
    from drivefi.bridges.carla.route import RouteFrame, road_edges, walk
    from drivefi.world.opendrive import scenario_opendrive

    sc = load_scenario(name)
    od = scenario_opendrive(sc)
    cmap = carla.Map(sc.name, od.xodr)
    wp0 = cmap.get_waypoint_xodr(od.road_id, od.lane_id(sc.ego.lane), 0.0)
    wps = walk(wp0, 1.0, od.length, forward=True)
    lc = (sc.ego.lane + 0.5) * sc.road.lane_width
    route = RouteFrame.from_waypoints(wps, road_edges, ref_offset=lc, s_start=wps[0].s - od.lead_in)
    br = EmbeddedBridge(sc)
    emb = br.lane
    rng = np.random.default_rng(3)
    # the embedded world's observation of a displaced, turned ego, and the route's reading of
    # the same pose
    obs = br.reset(sc, n=1)
    checked = 0
    for s in np.linspace(sc.ego.s + 5.0, min(br.road.length, od.length - od.lead_in) - 20, 40):
        off, psi = rng.uniform(-1.2, 1.2), rng.uniform(-0.3, 0.3)
        br.state.s[:] = s
        br.state.d[:] = emb.to_ref(off)
        br.state.psi[:] = psi
        obs = br.observe()
        p = route.project(float(obs.x[0]), float(obs.y[0]))
        assert p.s == pytest.approx(s, abs=1e-3)
        assert p.offset == pytest.approx(obs.lane_offset[0], abs=1e-3)
        assert float(wrap(obs.theta[0] - p.heading)) == pytest.approx(
            obs.heading_error[0], abs=1e-5
        )
        assert p.curvature == pytest.approx(obs.curvature[0], abs=1e-6)
        # the protocol's answers for the same point, on both frames
        se, de = emb.to_frame(obs.x, obs.y)
        sr, dr = route.to_frame(obs.x, obs.y)
        assert (float(de[0]), float(dr[0])) == pytest.approx((off, off), abs=1e-3)
        assert float(sr[0]) == pytest.approx(float(se[0]), abs=1e-3)
        assert float(route.lane_curvature(s, off)) == pytest.approx(
            float(emb.lane_curvature(s, off)), abs=1e-6
        )
        assert float(route.scale(s, off)) == pytest.approx(float(emb.scale(s, off)), abs=1e-5)
        checked += 1
    assert checked == 40


# -- one safety potential ------------------------------------------------------------------------
VEH = load_scenario("lead_brake").ego.vehicle
STOP = StopParams(a_max=VEH.a_max, wheelbase=VEH.wheelbase, steer_rate=VEH.steer_rate,
                  response_time=np.inf)  # fmt: skip


def test_safety_on_a_straight_lane_matches_the_closed_form():
    v = np.array([5.0, 15.0, 25.0])
    zero = np.zeros(3)
    ego = EgoState(s=zero + 100.0, d=zero + 1.75, psi=zero, v=v, phi=zero)
    lane = LaneAt(kappa=0.0, phi_lane=0.0, lo=0.0, hi=3.5)
    obj = Objects(*(np.full((3, 1), x) for x in (160.0, 1.75, 0.0, 10.0, 4.6, 1.9, 6.0)))
    sp = safety(ego, lane, obj, VEH, STOP)
    stop = v * v / (2 * VEH.a_max)
    gap = 60.0 - 0.5 * VEH.length - 2.3 + 10.0**2 / (2 * 6.0)
    side = 1.75 - 0.5 * VEH.width
    np.testing.assert_allclose(sp.d_stop_lon, stop, rtol=1e-12)
    np.testing.assert_allclose(sp.d_stop_lat, 0.0, atol=1e-12)
    np.testing.assert_allclose(sp.d_safe_lon, gap, rtol=1e-12)
    np.testing.assert_allclose(sp.d_safe_lat, side, rtol=1e-12)
    np.testing.assert_allclose(sp.delta_lon, gap - stop, rtol=1e-12)
    np.testing.assert_allclose(sp.delta_lat, side, rtol=1e-12)
    # nothing around: the horizon ahead
    none = Objects(*(np.zeros((3, 0)) for _ in range(7)))
    assert np.all(safety(ego, lane, none, VEH, STOP).d_safe_lon == LON_HORIZON)


def test_safety_is_the_assembly_of_d_stop_d_safe_and_combine():
    rng = np.random.default_rng(5)
    n, a = 50, 3
    ego = EgoState(
        *(rng.normal(m, sd, n) for m, sd in ((50, 5), (1.75, 0.5), (0, 0.1), (20, 5), (0, 0.1)))
    )
    kap = rng.normal(0, 0.01, n)
    lane = LaneAt(kap, lane_steer(VEH.wheelbase, kap, 1.75), 0.0, 3.5)
    obj = Objects(
        ego.s[:, None] + rng.uniform(-10, 60, (n, a)), rng.uniform(-2, 6, (n, a)),
        rng.normal(0, 0.1, (n, a)), rng.uniform(0, 25, (n, a)), np.full(a, 4.6), np.full(a, 1.9),
        np.full(a, 8.0),
    )  # fmt: skip
    sp = safety(ego, lane, obj, VEH)
    stop = d_stop(ego.v, ego.phi, ego.psi, ego.d, kap, lane.phi_lane, StopParams.of(VEH))
    safe = d_safe(ego.s, ego.d, ego.psi, VEH.length, VEH.width, 0.0, 3.5, kap, obj)
    want = combine(*stop, *safe)
    for f in ("d_stop_lon", "d_stop_lat", "d_safe_lon", "d_safe_lat", "delta_lon", "delta_lat"):
        np.testing.assert_array_equal(getattr(sp, f), getattr(want, f))
    # d_safe takes the objects as one Objects or as its seven arrays
    flat = d_safe(ego.s, ego.d, ego.psi, VEH.length, VEH.width, 0.0, 3.5, kap, *vars(obj).values())
    for x, y in zip(safe, flat, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("name", ["curved_following", "cut_in"])
def test_both_frames_give_one_potential(name):
    """The embedded bridge (the road's frame) and an observation (the lane centre's frame, as the
    CARLA bridge computes it) give the same potential through the one assembly."""
    sc = load_scenario(name)
    br = EmbeddedBridge(sc)
    obs = br.reset(sc, n=3)
    br.state.d[:] = br.lane.to_ref(np.array([-0.6, 0.0, 0.7]))
    br.state.psi[:] = [0.05, -0.1, 0.0]
    br.state.phi[:] = [0.02, -0.05, 0.1]
    for k in range(0, sc.steps, 7):
        br.state.k[:] = k
        br.state.s[:] = sc.ego.s + 0.9 * k * sc.ego.speed * sc.dt
        obs = br.observe()
        ref = br.safety()
        mine = observation_safety(obs, sc.ego.vehicle, br.actors.a_max)
        for f in ("d_stop_lon", "d_stop_lat", "d_safe_lon", "d_safe_lat", "delta_lon", "delta_lat"):
            np.testing.assert_allclose(getattr(mine, f), getattr(ref, f), rtol=1e-9, atol=1e-9)


def test_physics_functions_take_at_most_ten_parameters():
    from drivefi.tbn.hazard import score_faults
    from drivefi.world.safety import _rk4_piece

    for fn in (d_safe, _rk4_piece, score_faults, safety, d_stop):
        named = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        assert len(named) <= 10, (fn.__name__, len(named))
