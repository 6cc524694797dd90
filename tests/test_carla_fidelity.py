"""A fault means the same on the embedded world and on CARLA: the vehicle interface, steering,
starting speed, scripted actors, settings, sensor translation, and fakes that fail like carla."""

from __future__ import annotations

import math

import numpy as np
import pytest
from drivefi_fakes.carla_server import FakeCarla

from drivefi.bridges.carla.bridge import CarlaBridge, make_carla_bridge
from drivefi.bridges.carla.connection import forget_sessions
from drivefi.core import Actuation, Fault
from drivefi.faults import FaultInjector
from drivefi.run.simulate import Simulation, TraceRecorder
from drivefi.stacks.agent.sensors import SEMANTIC_POINT, blueprint_attributes, to_agent_data
from drivefi.world.scenario import load_scenario
from drivefi.world.vehicle import Applied, VehicleInterface, steer_limit

carla = pytest.importorskip("carla")


@pytest.fixture(autouse=True)
def _fresh_sessions():
    forget_sessions()
    yield
    forget_sessions()


def short(name: str, duration: float):
    return load_scenario(name).model_copy(update={"duration": duration})


def bridge_on(fake: FakeCarla, sc, **kw) -> CarlaBridge:
    return make_carla_bridge(sc, client_factory=fake.client, **kw)


# -- the vehicle interface ------------------------------------------------------------------------
STEER_FAULT = Fault("control.steer", "m-fixed", 1.0, None, 20, 12)


def wheel_angles(sc, fault):
    """The wheel angle the vehicle interface sends, step by step, on both bridges."""
    vp = sc.ego.vehicle
    fake = FakeCarla(sc)
    sim = Simulation(sc, bridge=bridge_on(fake, sc))
    sim.run(1, injector=FaultInjector([fault], sim.ads.points))
    frame0 = sim.bridge.frame0
    sent = {f - frame0 - 1: -c.steer * vp.phi_max for f, c in fake.ego().controls if f > frame0}
    carla_phi = np.array([sent[k] for k in range(sc.steps - 1)])
    ref = Simulation(sc)
    rec = TraceRecorder(1, ref.steps, ref.points)
    ref.run(1, injector=FaultInjector([fault], ref.ads.points), recorders=[rec])
    embedded_phi = rec.cols["phi"][0, 1:]  # the wheel angle after step k's interface output
    return carla_phi, embedded_phi, fake


def test_vehicle_interface_effect_is_identical_on_both_bridges():
    sc = short("lead_brake", 3.0)
    vp = sc.ego.vehicle
    carla_phi, embedded_phi, _ = wheel_angles(sc, STEER_FAULT)
    k = slice(STEER_FAULT.start, STEER_FAULT.start + STEER_FAULT.duration)
    # steer = 1 (phi_max = 0.6 rad) reaches the wheels on both simulators only as the interface
    # lets it: the steering-rate limit, then the lateral-acceleration limit at 20 m/s
    lim = float(steer_limit(17.0, vp))  # the ego slows a little behind the braking lead
    assert np.abs(carla_phi[k]).max() < lim < 0.1 * vp.phi_max
    np.testing.assert_allclose(carla_phi[k], embedded_phi[k], rtol=0.03, atol=1e-4)
    np.testing.assert_allclose(carla_phi, embedded_phi, atol=0.01)


def test_the_identity_check_fails_when_carla_skips_the_interface(monkeypatch):
    """Sending the guarded command straight to CARLA (the interface skipped) breaks the identity."""
    sc = short("lead_brake", 3.0)

    def raw(self, cmd, state):
        g = self.guard(cmd, state)
        return Applied(g, g.throttle, g.brake, g.steer * self.p.phi_max, g.steer)

    monkeypatch.setattr(VehicleInterface, "apply", raw)
    carla_phi, _, _ = wheel_angles(sc, STEER_FAULT)
    monkeypatch.undo()
    _, embedded_phi, _ = wheel_angles(sc, STEER_FAULT)
    k = slice(STEER_FAULT.start, STEER_FAULT.start + STEER_FAULT.duration)
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(carla_phi[k], embedded_phi[k], rtol=0.03, atol=1e-4)


def test_throttle_and_brake_lag_and_the_guard_reach_carla():
    sc = short("lead_brake", 2.0)
    vp = sc.ego.vehicle
    fake = FakeCarla(sc)
    b = bridge_on(fake, sc)
    b.reset(sc)
    ego = fake.ego()
    alpha = 1 - math.exp(-sc.dt / vp.actuator_tau)
    thr = ego.control.throttle
    for cmd in (1.0, np.nan, 1.0, 0.0):  # NaN keeps the last valid command (1.0)
        b.step(Actuation(np.array([cmd]), np.zeros(1), np.zeros(1)))
        thr = thr + alpha * (1.0 - thr) if cmd != 0.0 else thr * (1 - alpha)
        assert ego.control.throttle == pytest.approx(thr, abs=1e-6)
    b.close()


def test_steering_maps_to_the_same_wheel_angle():
    """steer = s turns the front wheels by s * phi_max at speed (the steering curve is flat)."""
    sc = short("lead_brake", 3.0)
    fake = FakeCarla(sc)
    b = bridge_on(fake, sc)
    obs = b.reset(sc)
    for _ in range(30):
        obs = b.step(Actuation(np.array([0.1]), np.zeros(1), np.array([0.02])))
    assert obs.v[0] > 15.0
    assert obs.phi[0] == pytest.approx(0.02 * sc.ego.vehicle.phi_max, rel=1e-3)
    b.close()
    # without matching, CARLA's default steering curve turns the wheels less at 70 km/h
    forget_sessions()
    b = bridge_on(fake, sc, match_steering=False)
    obs = b.reset(sc)
    for _ in range(30):
        obs = b.step(Actuation(np.array([0.1]), np.zeros(1), np.array([0.02])))
    assert obs.phi[0] < 0.95 * 0.02 * math.radians(70.0)
    b.close()


def test_starting_speed_held_and_scripted_actors_carry_their_velocity():
    sc = short("lead_brake", 8.0)
    fake = FakeCarla(sc)
    b = bridge_on(fake, sc)
    obs = b.reset(sc)
    assert obs.v[0] == pytest.approx(sc.ego.speed, abs=1e-6)  # a velocity set before the first
    assert obs.s[0] == pytest.approx(sc.ego.s, abs=1e-3)  # tick is lost; the bridge holds it
    lead = fake.history[b._actors[0].id]
    speeds = []
    for _ in range(sc.steps - 1):
        b.step(Actuation(np.array([0.2]), np.zeros(1), np.zeros(1)))
        speeds.append(math.hypot(lead.velocity.x, lead.velocity.y))
    tab = b._table
    np.testing.assert_allclose(speeds, tab.v_lon[1 : len(speeds) + 1, 0], atol=1e-6)
    assert speeds[0] == pytest.approx(20.0) and min(speeds) < 10.0  # it brakes from 6 s on


def test_users_settings_are_what_is_restored_and_no_traffic_manager_unless_asked():
    sc = short("lead_brake", 1.0)
    fake = FakeCarla(sc)
    user = carla.WorldSettings()
    user.no_rendering_mode, user.fixed_delta_seconds, user.max_substeps = True, 0.02, 7
    fake.settings = user
    b = bridge_on(fake, sc)
    b.reset(sc)  # generates the scenario's world (which would reset a world's settings)
    assert fake.settings.synchronous_mode and fake.settings.fixed_delta_seconds == sc.dt
    assert fake.tm_sync_log == []
    tm = b.traffic_manager()  # something asks for one: synchronous, seeded, for this run only
    assert tm is b.traffic_manager() and fake.tm_sync_log == [True] and fake.tm_seeds == [sc.seed]
    b.close()
    s = fake.settings
    assert (s.synchronous_mode, s.no_rendering_mode, s.fixed_delta_seconds, s.max_substeps) == (
        False,
        True,
        pytest.approx(0.02),
        7,
    )
    assert fake.tm_sync_log == [True, False]


def test_fake_server_fails_like_carla_on_wrong_calls():
    sc = short("lead_brake", 1.0)
    fake = FakeCarla(sc)
    client = fake.client("127.0.0.1", 2000)
    with pytest.raises(TypeError):
        fake.world.get_snapshot(1, 2, 3)
    with pytest.raises(TypeError):
        client.load_world("Town01", True, None, "extra")
    with pytest.raises(TypeError):
        client.apply_batch_sync(commands=[], tick=True)  # the keyword is do_tick
    with pytest.raises(AttributeError):
        client.load_map("Town01")
    with pytest.raises(RuntimeError, match="not found"):  # real keyword names are accepted
        client.load_world(map_name="Town42", reset_settings=False)
    from drivefi.world.opendrive import write_opendrive

    client.generate_opendrive_world(
        opendrive=write_opendrive(sc.road, name=sc.name).xodr, parameters=None, reset_settings=False
    )
    lib = fake.world.get_blueprint_library()
    cam, car = lib.find("sensor.camera.rgb"), lib.find("vehicle.audi.tt")
    assert cam.has_attribute("image_size_x") and not cam.has_attribute("range")
    assert car.has_attribute("role_name") and not car.has_attribute("fov")
    with pytest.raises(IndexError):
        cam.set_attribute("range", "85")


# -- sensors ------------------------------------------------------------------------------------------
SPECS = [
    {"type": "sensor.camera.rgb", "id": "Center", "x": 0.7, "y": 0.0, "z": 1.6, "roll": 0.0,
     "pitch": 0.0, "yaw": 0.0, "width": 300, "height": 200, "fov": 100},
    {"type": "sensor.lidar.ray_cast", "id": "LIDAR", "x": 0.7, "y": 0.0, "z": 1.6, "roll": 0.0,
     "pitch": 0.0, "yaw": 0.0},
    {"type": "sensor.lidar.ray_cast_semantic", "id": "SEM", "x": 0.7, "y": 0.0, "z": 1.6,
     "roll": 0.0, "pitch": 0.0, "yaw": 0.0},
    {"type": "sensor.other.radar", "id": "RADAR", "x": 2.0, "y": 0.0, "z": 1.0, "roll": 0.0,
     "pitch": 0.0, "yaw": 0.0, "horizontal_fov": 30, "vertical_fov": 10},
    {"type": "sensor.other.gnss", "id": "GPS", "x": 0.0, "y": 0.0, "z": 1.6, "yaw": 45.0},
    {"type": "sensor.other.imu", "id": "IMU", "x": 0.0, "y": 0.0, "z": 1.6, "roll": 0.0,
     "pitch": 0.0, "yaw": 0.0},
]  # fmt: skip


def test_blueprint_attributes_as_the_leaderboard_sets_them():
    by = {s["id"]: blueprint_attributes(s) for s in SPECS}
    assert by["Center"] == {"image_size_x": "300", "image_size_y": "200", "fov": "100"}
    lidar = by["LIDAR"]
    assert (lidar["range"], lidar["rotation_frequency"], lidar["channels"]) == ("85", "10", "64")
    assert (lidar["upper_fov"], lidar["lower_fov"], lidar["points_per_second"]) == (
        "10",
        "-30",
        "600000",
    )
    assert lidar["dropoff_general_rate"] == "0.45" and "dropoff_general_rate" not in by["SEM"]
    assert by["SEM"]["range"] == "85"
    assert by["RADAR"] == {
        "horizontal_fov": "30",
        "vertical_fov": "10",
        "points_per_second": "1500",
        "range": "100",
    }
    assert by["GPS"]["noise_lat_stddev"] == "5e-06" and by["GPS"]["noise_lat_bias"] == "0.0"
    assert by["IMU"]["noise_accel_stddev_z"] == "0.015"
    assert all("x" not in a and "id" not in a for a in by.values())


def test_sensor_data_per_type_reaches_the_agent_as_the_leaderboard_hands_it():
    sc = short("lead_brake", 1.0)  # the lead vehicle is 38 m ahead: beyond CARLA's default 10 m
    fake = FakeCarla(sc)
    b = bridge_on(fake, sc, sensors=SPECS)
    b.reset(sc)
    b.step(Actuation(np.array([0.1]), np.zeros(1), np.zeros(1)))
    raw = b.sensor_data()
    by_type = {a.type_id: a for a in fake.actors.values() if a.family == "sensor"}
    assert by_type["sensor.lidar.ray_cast"].attributes["range"] == "85"
    assert by_type["sensor.camera.rgb"].attributes["image_size_x"] == "300"
    assert all(a.parent == fake.ego().id for a in by_type.values())
    data = {s["id"]: to_agent_data(s, raw[s["id"]][1]) for s in SPECS}
    frame = raw["Center"][0]
    assert all(f == frame for f, _ in raw.values())

    img = data["Center"]
    assert img.shape == (200, 300, 4) and img.dtype == np.uint8
    assert img[0, 7, 0] == 7 and img[5, 0, 1] == 5  # BGRA, row-major (height, width, 4)

    pts = data["LIDAR"]
    assert pts.dtype == np.float32 and pts.ndim == 2 and pts.shape[1] == 4
    assert np.any(np.abs(pts[:, 0] - 37.3) < 1.0)  # the lead vehicle, 38 m ahead of the ego

    sem = data["SEM"]
    assert sem.dtype == SEMANTIC_POINT and len(sem) == len(pts)
    assert np.all(sem["object_tag"] == 14) and np.all(sem["cos_inc_angle"] == 1.0)
    assert sem["x"] == pytest.approx(pts[:, 0])

    radar = data["RADAR"]
    assert radar.shape == (1, 4)  # depth, altitude, azimuth, velocity
    depth, _altitude, az, vel = radar[0]
    assert depth == pytest.approx(36.0, abs=1.0) and abs(az) < 0.01 and abs(vel) < 0.5

    gps = data["GPS"]
    loc = fake.ego().world_transform().location
    geo = fake.map.transform_to_geolocation(loc)
    assert gps.tolist() == pytest.approx([geo.latitude, geo.longitude, geo.altitude])
    gnss_actor = by_type["sensor.other.gnss"]
    assert gnss_actor.rel.rotation.yaw == 0.0  # mounted unrotated, as the Leaderboard does

    imu = data["IMU"]
    assert imu.shape == (7,) and imu.dtype == np.float64 and 0.0 <= imu[6] < 2 * math.pi
    b.close()


def test_a_town_already_on_the_server_is_not_reloaded():
    from drivefi.world.scenario import Road, Segment

    sc = short("lead_brake", 1.0)
    town = Road(lanes=2, segments=[Segment(length=400.0)])
    fake = FakeCarla(sc, towns={"Town98": town})
    place = {"town": "Town98", "ego": {"road_id": 0, "lane_id": -2, "s": 60.0}}
    for _ in range(2):  # a fresh connection each time: only the server knows what it has loaded
        forget_sessions()
        b = make_carla_bridge(sc, client_factory=fake.client, placement=place)
        b.reset(sc)
        b.close()
    assert fake.loaded == ["Town98"]
    calls = [c.load_world_if_different.call_args for _, _, c in fake.clients]
    assert calls[-1].args == ("Town98",) and calls[-1].kwargs == {"reset_settings": False}
    assert all(not c.load_world.called for _, _, c in fake.clients)


def test_the_scenario_schema_imports_no_bridge():
    import subprocess
    import sys

    code = (
        "import sys, drivefi.world.scenario; "
        "bad = [m for m in sys.modules if m.startswith('drivefi.bridges')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- one meaning of s and of gaps ----------------------------------------------------------------
def test_s_and_gaps_in_a_bend_mean_the_same_on_both_bridges():
    """In a bend, gaps along the lane are the road's s differences scaled to the ego's lateral
    position (1 - curvature x offset): ~1 m of 30 m here. Both bridges must measure the same."""
    from drivefi.bridges.embedded import EmbeddedBridge

    sc = load_scenario("curved_following")
    lead = sc.actors[0]
    sc = sc.model_copy(
        update={
            "duration": 1.0,
            "ego": sc.ego.model_copy(update={"s": 120.0, "lane": 1}),  # the outer lane, in the bend
            "actors": [
                lead.model_copy(update={"s": 150.0, "lane": 1}),  # ahead in the ego's lane
                lead.model_copy(update={"s": 160.0, "lane": 0}),  # ahead in the inner lane
            ],
        }
    )
    emb = EmbeddedBridge(sc).reset(sc)
    b = bridge_on(FakeCarla(sc), sc)
    car = b.reset(sc)
    b.close()
    assert abs(emb.curvature[0]) > 0.006 and abs(emb.obj_ds[0, 0] - 30.0) > 0.5  # it matters
    assert car.s[0] == pytest.approx(emb.s[0], abs=0.05)
    np.testing.assert_allclose(car.obj_ds, emb.obj_ds, atol=0.05)
    np.testing.assert_allclose(car.obj_dd, emb.obj_dd, atol=0.01)
