"""Offline maps: the OpenDRIVE of every bundled scenario, parsed by the carla client library.

Tolerance: lane-centre positions from the map's waypoints within 1 mm of the embedded road geometry,
headings within 1e-5 rad, lane widths exact; lane-frame coordinates of points anywhere on the road
(s, lane offset, heading, curvature) within 1 mm / 1e-5 rad / 1e-6 1/m along the whole route.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from drivefi.bridges.carla.observe import observation_safety
from drivefi.bridges.carla.route import RouteFrame, road_edges
from drivefi.bridges.embedded import EmbeddedBridge
from drivefi.stacks.reference import ReferenceADS
from drivefi.world.opendrive import from_carla, to_carla, write_opendrive
from drivefi.world.road import RoadGeometry
from drivefi.world.scenario import Road, Segment, bundled_names, load_scenario

CARLA_MISSING = (
    "the carla client library is not installed (the carla extra has wheels only for "
    "Linux x86_64 and Windows AMD64, Python 3.10-3.12)"
)
carla = pytest.importorskip("carla", reason=CARLA_MISSING)

POS_TOL, HEAD_TOL, KAPPA_TOL = 1e-3, 1e-5, 1e-6


def lane_route(cmap, od, lane, lane_width, step=1.0):
    """The bridge's lane frame of a generated road: reference line = the road's right edge."""
    wp = cmap.get_waypoint_xodr(od.road_id, od.lane_id(lane), 0.0)
    wps = [wp]
    while nxt := wps[-1].next(step):
        wps.append(nxt[0])
    lc = (lane + 0.5) * lane_width
    return RouteFrame.from_waypoints(wps, road_edges, ref_offset=lc, s_start=wps[0].s - od.lead_in)


@pytest.mark.parametrize("name", bundled_names())
def test_opendrive_of_bundled_scenario_matches_embedded_road(name):
    sc = load_scenario(name)
    od = write_opendrive(sc.road, name=name)
    cmap = carla.Map(name, od.xodr)
    geo = RoadGeometry.from_road(sc.road)
    w = sc.road.lane_width
    s_grid = np.arange(-od.lead_in + 1.0, geo.length + 100.0, 7.3)
    for lane in range(sc.road.lanes):
        # every lane's centre, width and heading straight from the waypoints
        for s in s_grid:
            wp = cmap.get_waypoint_xodr(od.road_id, od.lane_id(lane), od.odr_s(s))
            x, y, th = from_carla(wp.transform)
            ex, ey, eth = geo.pose(s, (lane + 0.5) * w)
            assert math.hypot(x - ex, y - ey) < POS_TOL, (lane, s)
            assert abs(th - eth) < HEAD_TOL
            assert wp.lane_width == pytest.approx(w, abs=1e-9)
            assert wp.lane_type == carla.LaneType.Driving and od.lane_index(wp.lane_id) == lane
        # a point anywhere on the road projects to the right lane
        x, y, _ = geo.pose(123.0, (lane + 0.3) * w)
        wp = cmap.get_waypoint(carla.Location(x=x, y=-y))
        assert od.lane_index(wp.lane_id) == lane
    # the lane frame the bridge builds: offsets, heading, curvature, width, edges along the route
    lane = sc.ego.lane
    lc = (lane + 0.5) * w
    route = lane_route(cmap, od, lane, w)
    hint = None
    for s in np.arange(-40.0, geo.length + 100.0, 0.53):
        kap = float(geo.curvature(s))
        for off in (-1.4, 0.0, 0.9):
            x, y, th = geo.pose(s, lc + off)
            p = route.project(float(x), float(y), hint)
            hint = p.s
            assert abs(p.s - s) < POS_TOL and abs(p.offset - off) < POS_TOL, (s, off)
            assert abs(p.heading - th) < HEAD_TOL
            assert abs(p.curvature - kap / (1 - kap * lc)) < KAPPA_TOL
            assert p.width == pytest.approx(w)
            assert p.left == pytest.approx((sc.road.lanes - lane - 0.5) * w)
            assert p.right == pytest.approx(-lc)
            bx, by, bh, _ = route.pose(s, off)
            assert math.hypot(bx - x, by - y) < POS_TOL and abs(bh - th) < HEAD_TOL


def test_right_turns_negative_curvature_and_transforms():
    road = Road(
        lanes=3, lane_width=3.2, segments=[Segment(length=40), Segment(length=120, curvature=-0.02)]
    )
    od = write_opendrive(road)
    cmap = carla.Map("r", od.xodr)
    route = lane_route(cmap, od, 1, 3.2, step=0.5)
    geo = RoadGeometry.from_road(road)
    for s in (50.0, 100.0, 150.0):
        x, y, _ = geo.pose(s, 1.5 * 3.2 + 0.4)
        p = route.project(float(x), float(y))
        assert p.offset == pytest.approx(0.4, abs=POS_TOL) and p.s == pytest.approx(s, abs=POS_TOL)
        assert p.curvature == pytest.approx(-0.02 / (1 + 0.02 * 1.5 * 3.2), abs=KAPPA_TOL)
    # CARLA is left-handed: y flips, yaw turns the other way
    tf = to_carla(10.0, 2.0, math.radians(30.0), 0.5)
    assert (tf.location.x, tf.location.y, tf.rotation.yaw) == pytest.approx((10.0, -2.0, -30.0))
    assert from_carla(tf) == pytest.approx((10.0, 2.0, math.radians(30.0)))


@pytest.mark.parametrize("name", ["curved_following", "highway", "pedestrian_crossing"])
def test_safety_from_observation_equals_embedded(name):
    """The generic helper (lane-centre frame) gives the embedded bridge's safety potential."""
    sc = load_scenario(name)
    bridge = EmbeddedBridge(sc)
    ads = ReferenceADS(sc)
    obs = bridge.reset(sc, n=1)
    ads.reset(1)
    for _ in range(sc.steps):
        ref, mine = bridge.safety(), observation_safety(obs, sc.ego.vehicle, bridge.actors.a_max)
        for f in ("d_stop_lon", "d_stop_lat", "d_safe_lon", "d_safe_lat", "delta_lon", "delta_lat"):
            np.testing.assert_allclose(getattr(mine, f), getattr(ref, f), rtol=1e-9, atol=1e-9)
        obs = bridge.step(ads.step(obs))


def test_generated_opendrive_carries_speed_limit_set_speed_and_ego_size():
    import xml.etree.ElementTree as ET

    from drivefi.world.opendrive import opendrive_user_data, scenario_opendrive

    sc = load_scenario("highway")
    od = scenario_opendrive(sc)
    speed = ET.fromstring(od.xodr.encode()).find("road/type/speed")
    assert (float(speed.get("max")), speed.get("unit")) == (sc.ego.cruise_speed, "m/s")
    vp = sc.ego.vehicle
    assert opendrive_user_data(od.xodr) == {
        "set_speed": sc.ego.cruise_speed,
        "ego_length": vp.length,
        "ego_width": vp.width,
        "ego_wheelbase": vp.wheelbase,
    }
    cmap = carla.Map(sc.name, od.xodr)  # still a map carla reads, lanes as before
    wp = cmap.get_waypoint_xodr(od.road_id, od.lane_id(1), od.odr_s(100.0))
    assert wp.lane_width == pytest.approx(sc.road.lane_width)
