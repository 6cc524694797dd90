"""Real CARLA towns (Town01, Town04 from tests/fixtures/towns): routes through junctions, road
edges inside junctions, and golden runs of bundled scenarios placed on them (fake server, real map)."""

from __future__ import annotations

import gzip
import math
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from drivefi_fakes.carla_server import FakeCarla

from drivefi.bridges.carla.bridge import make_carla_bridge
from drivefi.bridges.carla.connection import forget_sessions
from drivefi.bridges.carla.route import (
    RouteFrame,
    RouteTargets,
    _follow,
    _turn,
    _yaw,
    edges_for,
    road_edges,
    walk,
)
from drivefi.bridges.carla.settings import CarlaPlacement, RoutePoint
from drivefi.errors import InputError
from drivefi.run.simulate import OutcomeRecorder, Simulation, TraceRecorder
from drivefi.world.scenario import load_scenario

carla = pytest.importorskip("carla")

TOWNS = Path(__file__).parent / "fixtures" / "towns"
STRAIGHT = math.radians(15.0)


@pytest.fixture(autouse=True)
def _fresh_sessions():
    forget_sessions()
    yield
    forget_sessions()


@cache
def xodr(town: str) -> str:
    return gzip.decompress((TOWNS / f"{town}.xodr.gz").read_bytes()).decode()


@cache
def town_map(town: str):
    return carla.Map(town, xodr(town))


def junction_entries(town: str):
    """(waypoint before the split, its branches) of every lane that splits, once each."""
    seen, out = set(), []
    for w in town_map(town).generate_waypoints(2.0):
        nxt = w.next(2.0)
        if len(nxt) > 1:
            key = (w.road_id, w.lane_id, tuple(sorted((n.road_id, n.lane_id) for n in nxt)))
            if key not in seen:
                seen.add(key)
                out.append((w, nxt))
    return out


def exit_turn(wp, branch) -> float:
    """Heading change from ``wp`` to where ``branch`` leaves the junction [rad]."""
    return _turn(_yaw(wp), _yaw(_follow(branch, True)[-1]))


# -- routes -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("town", ["Town01", "Town04"])
@pytest.mark.parametrize("step", [1.0, 3.0])
def test_routes_go_straight_through_junctions_with_a_straight_lane(town, step):
    checked = 0
    for w, branches in junction_entries(town):
        if min(exit_turn(w, b) for b in branches) > STRAIGHT:
            continue  # a T-junction from its stem: no straight-through lane
        route = walk(w, step, 80.0, forward=True)
        first = next(i for i, r in enumerate(route) if r.is_junction)
        out = next((i for i in range(first, len(route)) if not route[i].is_junction), None)
        after = route[out:] if out is not None else route[-1:]  # leaving the first junction
        assert _turn(_yaw(w), _yaw(after[0])) <= STRAIGHT, (town, w.road_id, w.lane_id, step)
        checked += 1
    assert checked >= (20 if town == "Town01" else 45)


def test_an_explicit_route_takes_the_named_turn_and_an_unreachable_one_is_refused():
    cmap = town_map("Town01")
    for w, branches in junction_entries("Town01"):
        turning = [b for b in branches if exit_turn(w, b) > math.radians(60)]
        straight = [b for b in branches if exit_turn(w, b) <= STRAIGHT]
        if turning and straight:
            break
    out = _follow(turning[0], True)[-1]  # the road after the turn
    for point in (
        RoutePoint(road_id=out.road_id, lane_id=out.lane_id),
        RoutePoint(x=out.transform.location.x, y=out.transform.location.y),
    ):
        targets = RouteTargets(cmap, [point], "Town01")
        route = walk(w, 1.0, 80.0, forward=True, targets=targets)
        assert not targets.items  # reached
        assert any((r.road_id, r.lane_id) == (out.road_id, out.lane_id) for r in route)
        assert _turn(_yaw(w), _yaw(route[-1])) > math.radians(60)
    # a scenario whose route names a lane it never reaches: one clear error naming the entry
    sc = load_scenario("lead_brake")
    place = CarlaPlacement(
        town="Town01",
        ego={"road_id": w.road_id, "lane_id": w.lane_id, "s": round(w.s, 2)},
        route=[{"road_id": 9999, "lane_id": -1}],
    )
    fake = FakeCarla(sc, towns={"Town01": xodr("Town01")})
    with pytest.raises(InputError, match=r"carla\.route\.0: .* never reaches road 9999"):
        make_carla_bridge(sc, client_factory=fake.client, placement=place).reset(sc)
    assert fake.alive == []


def test_ego_on_driving_lanes_inside_a_junction_is_not_off_the_road():
    """Inside a junction the route's road edges come from the driving surface around the ego, so an
    ego 1.2 m off its lane centre whose box stays on driving lanes has not left the road."""
    cmap = town_map("Town01")
    start = cmap.get_waypoint_xodr(0, -1, 0.0)
    wps = walk(start, 1.0, 250.0, forward=True)
    frame = RouteFrame.from_waypoints(wps, edges_for(cmap), ref_offset=1.75)
    half_l, half_w = 2.35, 0.95
    on_lanes = old_flags = 0
    for wp in wps:
        if not wp.is_junction:
            continue
        yaw = math.radians(wp.transform.rotation.yaw)
        fx, fy, lx, ly = math.cos(yaw), math.sin(yaw), math.sin(yaw), -math.cos(yaw)
        loc = wp.transform.location
        for off in (-1.2, 1.2):
            corners = [
                carla.Location(
                    loc.x + a * half_l * fx + (off + b * half_w) * lx,
                    loc.y + a * half_l * fy + (off + b * half_w) * ly,
                    loc.z,
                )
                for a in (-1, 1)
                for b in (-1, 1)
            ]
            drive = carla.LaneType.Driving
            if any(cmap.get_waypoint(c, False, drive) is None for c in corners):
                continue
            on_lanes += 1
            x, y = loc.x + off * lx, -(loc.y + off * ly)
            p = frame.project(x, y)
            assert p.offset == pytest.approx(off, abs=1e-3)
            assert p.offset - half_w >= p.right and p.offset + half_w <= p.left, (wp.road_id, off)
            left, right = road_edges(wp)  # the connecting road's own (empty) neighbourhood
            old_flags += off - half_w < right or off + half_w > left
    assert on_lanes >= 10 and old_flags >= 5  # lane neighbours alone would call these accidents


# -- golden runs on towns -------------------------------------------------------------------------------
def golden_on_town(name: str, town: str, road: int, lane: int, s: float, route=()):
    sc = load_scenario(name)
    fake = FakeCarla(sc, towns={town: xodr(town)})
    place = CarlaPlacement(
        town=town, ego={"road_id": road, "lane_id": lane, "s": s}, route=list(route)
    )
    bridge = make_carla_bridge(sc, client_factory=fake.client, placement=place)
    sim = Simulation(sc, bridge=bridge)
    rec, out = TraceRecorder(1, sim.steps, sim.points), OutcomeRecorder(1)
    sim.run(1, recorders=[rec, out])
    assert fake.alive == [] and fake.loaded == [town]
    return sc, bridge, rec.cols, out


def test_golden_run_on_a_town04_highway_curve_is_safe():
    # placed as the README's example (its route is the straight way the bridge would take anyway)
    route = [{"road_id": 36, "lane_id": 5}, {"x": 410.1, "y": -181.5}]
    sc, _, c, out = golden_on_town("highway", "Town04", 37, 5, 20.0, route)
    assert out.collision_step[0] < 0 and out.departure_step[0] < 0 and out.first_hazard[0] < 0
    assert out.min_delta_lat[0] > 0.3 and out.min_delta_lon[0] > 1.0
    # the curve (radius ~160 m) needs more than 2 m/s^2 at the scenario's 30 m/s: the reference
    # ADS slows for it, and keeps in its lane
    curve = np.abs(c["curvature"][0]) > 0.005
    assert curve.sum() > 100
    v = c["v"][0][curve]
    assert v.max() ** 2 * 0.0064 < 1.9 and c["v"][0, 0] == pytest.approx(30.0)
    assert np.abs(c["lane_offset"][0]).max() < 0.4
    # s and gaps mean what they mean on the embedded road: the lead starts 65 m ahead
    assert c["s"][0, 0] == pytest.approx(sc.ego.s, abs=1e-3)


def test_golden_run_through_a_town01_junction_is_safe():
    sc, bridge, c, out = golden_on_town("lead_brake", "Town01", 0, -1, 0.0)
    assert out.collision_step[0] < 0 and out.departure_step[0] < 0 and out.first_hazard[0] < 0
    # the ego drove through a junction (straight through it)
    s_end = float(c["s"][0, -1])
    pts = [bridge.route.pose(s, 0.0) for s in np.arange(sc.ego.s, s_end, 2.0)]
    cmap = town_map("Town01")
    inside = [
        cmap.get_waypoint(carla.Location(float(x), float(-y), 0.0)).is_junction
        for x, y, _, _ in pts
    ]
    assert sum(inside) >= 5
    assert np.abs(c["heading_error"][0]).max() < 0.02 and np.abs(c["lane_offset"][0]).max() < 0.1


def test_one_lane_frame_for_the_embedded_road_and_a_map_route():
    """RoadGeometry (the embedded road) and RouteFrame (a map route) answer the same lane-frame
    questions the same way: to_frame inverts pose, on the road's own OpenDRIVE."""
    from drivefi.world.opendrive import scenario_opendrive
    from drivefi.world.road import RoadGeometry

    sc = load_scenario("curved_following")
    geo = RoadGeometry.from_road(sc.road)
    od = scenario_opendrive(sc)
    cmap = carla.Map(sc.name, od.xodr)
    wps = walk(cmap.get_waypoint_xodr(0, od.lane_id(0), 0.0), 1.0, od.length, forward=True)
    lc = 0.5 * sc.road.lane_width
    route = RouteFrame.from_waypoints(wps, road_edges, ref_offset=lc, s_start=wps[0].s - od.lead_in)
    s = np.linspace(0.0, 600.0, 97)
    d = np.linspace(-0.5, 6.5, 97)
    for frame in (geo, route):  # the route's d is measured from its lane's centre
        x, y = frame.pose(s, d)[:2]
        s2, d2 = frame.to_frame(x, y)
        np.testing.assert_allclose(s2, s, atol=1e-3)
        np.testing.assert_allclose(d2, d, atol=1e-3)
    gx, gy, _ = geo.pose(s, d)
    rx, ry, _, _ = route.pose(s, d - lc)
    np.testing.assert_allclose(np.hypot(gx - rx, gy - ry), 0.0, atol=2e-3)
    np.testing.assert_allclose(route.curvature(s), geo.curvature(s), atol=1e-5)
