"""The CARLA bridge's real code path against autospec fakes of a server (no server needed).

The fake's vehicle physics is its own (a dynamic bicycle with tyre slip, not the embedded model),
so a golden run through the bridge must behave like the embedded golden run (same outcome, close
states), not echo it; every failure path must leave the fake server as it was found.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from drivefi_fakes.carla_server import FakeCarla

from drivefi.bridges.carla import bridge as bridge_mod
from drivefi.bridges.carla.bridge import CarlaBridge, make_carla_bridge
from drivefi.bridges.carla.connection import (
    CarlaConnectionError,
    CarlaVersionError,
    check_server,
    forget_sessions,
)
from drivefi.bridges.carla.settings import (
    CarlaPlacement,
    carla_config,
    load_carla_scenario,
)
from drivefi.bridges.carla.simulator import CarlaSimulator
from drivefi.core import Actuation, Fault, Injector
from drivefi.errors import InputError, SimulatorError
from drivefi.faults import FaultInjector
from drivefi.run.golden import record_golden
from drivefi.run.simulate import OutcomeRecorder, Simulation, TraceRecorder, run_once
from drivefi.run.testbed import Testbed
from drivefi.world.scenario import Road, Segment, load_scenario
from drivefi.world.vehicle import steer_limit

CARLA_MISSING = (
    "the carla client library is not installed (the carla extra has wheels only for "
    "Linux x86_64 and Windows AMD64, Python 3.10-3.12)"
)
carla = pytest.importorskip("carla", reason=CARLA_MISSING)

FIXTURES = Path(__file__).parent / "fixtures"
TOWN99 = Road(
    lanes=3,
    lane_width=3.6,
    segments=[Segment(length=100), Segment(length=250, curvature=0.004), Segment(length=300)],
)


@pytest.fixture(autouse=True)
def _fresh_sessions():
    forget_sessions()
    yield
    forget_sessions()


def short(name: str, duration: float = 6.0):
    return load_scenario(name).model_copy(update={"duration": duration})


def bridge_on(fake: FakeCarla, sc, **kw) -> CarlaBridge:
    return make_carla_bridge(sc, client_factory=fake.client, **kw)


def assert_clean(fake: FakeCarla, original_sync: bool = False) -> None:
    """Settings and Traffic Manager restored, every actor we spawned destroyed."""
    assert fake.settings.synchronous_mode is original_sync
    assert fake.settings_log[-1].synchronous_mode is original_sync
    assert not fake.tm_sync_log or fake.tm_sync_log[-1] is False
    assert fake.alive == []
    assert sorted(fake.destroyed) == sorted(fake.spawned)


class FixedADS:
    """A stand-in stack: the same actuation every step (for accident tests)."""

    def __init__(self, throttle=0.0, brake=0.0, steer=0.0, fail_at=None):
        self.points = []
        self.act = Actuation(np.array([throttle]), np.array([brake]), np.array([steer]))
        self.injector = Injector()
        self.state = None
        self.fail_at = fail_at

    def reset(self, n=1):
        pass

    def step(self, obs):
        if self.fail_at is not None and obs.k[0] >= self.fail_at:
            raise ValueError("perception model crashed")
        return self.act


# -- the closed loop --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["lead_brake", "curved_following", "highway"])
def test_golden_run_through_bridge_matches_embedded(name):
    sc = load_scenario(name)
    fake = FakeCarla(sc)
    sim = Simulation(sc, bridge=bridge_on(fake, sc))
    rec, out = TraceRecorder(1, sim.steps, sim.points), OutcomeRecorder(1)
    sim.run(1, recorders=[rec, out])
    ref = Simulation(sc)
    rec2, out2 = TraceRecorder(1, ref.steps, ref.points), OutcomeRecorder(1)
    ref.run(1, recorders=[rec2, out2])
    assert rec.filled.all()
    # another vehicle model under the same stack and vehicle interface: close, not equal
    tol = {"x": 2.0, "y": 2.0, "v": 0.4, "s": 2.0, "lane_offset": 0.2, "heading_error": 0.01,
           "delta_lon": 2.5, "delta_lat": 0.2}  # fmt: skip
    for col, t in tol.items():
        np.testing.assert_allclose(rec.cols[col], rec2.cols[col], atol=t, rtol=0, err_msg=col)
    assert np.abs(rec.cols["x"] - rec2.cols["x"]).max() > 1e-3  # not an echo of the embedded model
    assert not rec.cols["hazard"].any() and not rec.cols["collision"].any()
    assert out.min_delta_lon == pytest.approx(out2.min_delta_lon, abs=1.5)
    # synchronous mode with the scenario's step while it ran; everything restored after
    during = fake.settings_log[0]
    assert during.synchronous_mode and during.fixed_delta_seconds == pytest.approx(sc.dt)
    assert fake.tm_sync_log == [] and fake.tm_seeds == []  # nothing used a Traffic Manager
    assert fake.generated == 1
    assert_clean(fake)
    hero = [a for a in fake.destroyed]
    assert len(hero) == 1 + len(sc.actors) + 2  # ego, actors, collision + lane-invasion sensors


def test_golden_trace_schema_and_world_reuse(tmp_path):
    sc = short("cut_in", 4.0)
    fake = FakeCarla(sc)
    trace = record_golden(sc, testbed=Testbed(CarlaSimulator()), bridge=bridge_on(fake, sc)).trace
    ref = record_golden(sc)
    assert list(trace.frame.columns) == list(ref.trace.frame.columns)
    assert len(trace.frame) == sc.steps
    assert (
        trace.meta["sim"] == "carla"
        and trace.meta["carla"]["server_version"] == fake.server_version
    )
    assert {
        k: v for k, v in trace.meta.items() if k not in ("sim", "carla", "ads")
    } == ref.trace.meta
    # a second run (new bridge, new connection) reuses the generated world: the server has it
    forget_sessions()
    run_once(sc, bridge_on(fake, sc))
    assert fake.generated == 1 and len(fake.clients) == 2
    assert_clean(fake)


def test_actuation_is_guarded_and_steer_flipped():
    sc = short("lead_brake", 2.0)
    fake = FakeCarla(sc)
    b = bridge_on(fake, sc)
    obs0 = b.reset(sc)
    assert obs0.k[0] == 0 and obs0.s[0] == pytest.approx(sc.ego.s, abs=1e-3)
    assert obs0.v[0] == pytest.approx(sc.ego.speed, abs=1e-3)
    ego = fake.ego()
    vp = sc.ego.vehicle
    thr0 = ego.control.throttle
    b.step(Actuation(np.array([0.3]), np.array([0.0]), np.array([0.4])))  # 0.4 = left
    # what reaches the vehicle is the vehicle interface's output: lagged throttle, rate-limited
    # and lateral-acceleration-limited wheel angle, CARLA's right-positive steer
    alpha = 1 - math.exp(-sc.dt / vp.actuator_tau)
    assert ego.control.throttle == pytest.approx(thr0 + alpha * (0.3 - thr0), abs=1e-6)
    phi1 = min(vp.steer_rate * sc.dt, float(steer_limit(obs0.v, vp)[0]))  # from phi0 = 0
    assert ego.control.steer == pytest.approx(-phi1 / vp.phi_max, abs=1e-6)
    assert ego.control.steer == pytest.approx(-b.applied.steer[0])
    assert ego.physics_control.wheels[0].max_steer_angle == pytest.approx(math.degrees(0.6))
    assert [(p.x, p.y) for p in ego.physics_control.steering_curve] == [(0, 1), (500, 1)]
    # NaN keeps the last valid command, out of range is clamped
    g = b.guarded(Actuation(np.array([np.nan]), np.array([7.0]), np.array([-3.0])))
    assert (g.throttle[0], g.brake[0], g.steer[0]) == (pytest.approx(0.3), 1.0, -1.0)
    before = (ego.control.throttle, ego.control.steer)
    b.step(Actuation(np.array([np.nan]), np.array([7.0]), np.array([-3.0])))
    assert ego.control.throttle == pytest.approx(before[0] + alpha * (0.3 - before[0]), abs=1e-6)
    assert ego.control.brake == pytest.approx(alpha, abs=1e-6)
    assert ego.control.steer > before[1]  # toward the right (CARLA positive), at the rate limit
    theta = [
        b.step(Actuation(np.zeros(1), np.zeros(1), np.array([0.5]))).theta[0] for _ in range(10)
    ]
    assert theta[-1] > theta[0]  # DriveFI's left steer turns left on CARLA too
    b.close()
    b.close()  # idempotent
    assert_clean(fake)
    with pytest.raises(SimulatorError, match="not active"):
        b.step(Actuation(np.zeros(1), np.zeros(1), np.zeros(1)))


@pytest.mark.parametrize("late", [False, True])
def test_collision_from_sensor_matched_to_frame(late, monkeypatch):
    sc = short("stopped_vehicle", 12.0)
    fake = FakeCarla(sc, late_events=late)
    b = bridge_on(fake, sc)
    out = OutcomeRecorder(1)
    run_once(sc, b, FixedADS(throttle=1.0), recorders=[out])
    box_step = int(out.collision_step[0])
    assert box_step > 0
    hits = [e for e in b.events if e[0] == "collision"]
    assert hits and hits[0][1] - b.frame0 == box_step  # the event's frame is the step's frame
    assert_clean(fake)
    # the collision sensor alone (boxes never overlap) still flags it, late events a step later
    forget_sessions()
    monkeypatch.setattr(bridge_mod, "obb_overlap", lambda *a: np.zeros(1, bool))
    out2 = OutcomeRecorder(1)
    run_once(sc, bridge_on(fake, sc), FixedADS(throttle=1.0), recorders=[out2])
    assert out2.collision_step[0] == box_step + (1 if late else 0)


def test_departure_and_lane_invasion_events():
    sc = short("lead_brake", 5.0)
    fake = FakeCarla(sc)
    b = bridge_on(fake, sc)
    out = OutcomeRecorder(1)
    run_once(sc, b, FixedADS(throttle=0.3, steer=0.15), recorders=[out])
    assert out.departure_step[0] > 0 and out.collision_step[0] < 0
    assert any(e[0] == "lane_invasion" for e in b.events)


# -- failures -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("kind", "needle"), [("timeout", "timed out"), ("error", "server error")])
def test_failure_at_a_tick_restores_settings_and_destroys_actors(kind, needle):
    sc = short("highway", 4.0)
    fake = FakeCarla(sc, fail_at=30, fail_kind=kind)
    b = bridge_on(fake, sc)
    with pytest.raises(SimulatorError, match=needle) as err:
        Simulation(sc, bridge=b).run(1, recorders=[OutcomeRecorder(1)])
    assert "step 28" in str(err.value) and "127.0.0.1:2000" in str(err.value)
    assert b.failure == str(err.value) and not b.active
    assert_clean(fake)
    assert fake.settings_log[0].synchronous_mode  # it was synchronous while it ran
    # the next run reconnects (a new client) and completes
    run_once(sc, bridge_on(fake, sc))
    assert len(fake.clients) == 2
    assert_clean(fake)


def test_crashed_server_is_restarted_with_the_users_command(tmp_path):
    sc = short("lead_brake", 3.0)
    revived = tmp_path / "revived"
    fake = FakeCarla(sc, fail_at=20, fail_kind="crash", revive_file=revived)
    b = bridge_on(fake, sc, restart_cmd=f"touch {revived}", restart_wait=10.0)
    with pytest.raises(SimulatorError, match="timed out"):
        run_once(sc, b)
    assert (
        b.teardown_errors
    )  # the dead server could not be cleaned up, and that did not mask the error
    assert not revived.exists()
    out = OutcomeRecorder(1)
    run_once(
        sc, bridge_on(fake, sc, restart_cmd=f"touch {revived}", restart_wait=10.0), recorders=[out]
    )
    assert revived.exists() and out.collision_step[0] < 0
    # a restart command that fails is reported with its exit code
    forget_sessions()
    dead = FakeCarla(sc, down=True)
    with pytest.raises(CarlaConnectionError, match="exit code 3"):
        bridge_on(dead, sc, restart_cmd="exit 3").reset(sc)


def test_exception_in_the_stack_or_ctrl_c_still_cleans_up():
    sc = short("lead_brake", 3.0)
    fake = FakeCarla(sc)
    with pytest.raises(ValueError, match="perception model crashed"):
        run_once(sc, bridge_on(fake, sc), FixedADS(throttle=0.2, fail_at=15))
    assert_clean(fake)
    fake2 = FakeCarla(sc, fail_at=12, fail_kind="interrupt")
    b = bridge_on(fake2, sc)
    with pytest.raises(KeyboardInterrupt):
        Simulation(sc, bridge=b).run(1)  # no finally around it: the bridge cleans up itself
    assert_clean(fake2)


def test_another_client_ticking_fails_the_run():
    sc = short("lead_brake", 3.0)
    fake = FakeCarla(sc, foreign_tick_at=10)
    with pytest.raises(SimulatorError, match="another client is ticking"):
        run_once(sc, bridge_on(fake, sc))
    assert_clean(fake)


def test_version_mismatch_and_unreachable_server_are_clear_exit_2():
    sc = short("lead_brake", 1.0)
    old = FakeCarla(sc, server_version="0.9.15")
    with pytest.raises(CarlaVersionError) as err:
        bridge_on(old, sc).reset(sc)
    msg = str(err.value)
    assert err.value.exit_code == 2 and "0.9.15" in msg and old.client_version in msg
    assert "pip install carla==0.9.15" in msg
    assert old.runs == 0 and old.spawned == []  # refused before touching the world
    down = FakeCarla(sc, down=True)
    with pytest.raises(CarlaConnectionError) as err:
        bridge_on(down, sc).reset(sc)
    assert err.value.exit_code == 2 and isinstance(err.value, SimulatorError)
    assert "cannot reach a CARLA server at 127.0.0.1:2000" in str(err.value)
    assert "CarlaUE4.sh -RenderOffScreen -nosound -carla-rpc-port=2000" in str(err.value)
    # the real client against a port where nothing listens
    with pytest.raises(CarlaConnectionError, match=r"127\.0\.0\.1:2987"):
        check_server(host="127.0.0.1", port=2987, timeout=0.5)


def test_options_and_contract_limits():
    with pytest.raises(InputError, match="--carla-port"):
        carla_config(port=0)
    with pytest.raises(InputError, match="--carla-timeout"):
        carla_config(timeout=-1)
    cfg = carla_config(host="h", port=2002, timeout=None)
    assert cfg.traffic_manager_port == 8002 and cfg.timeout == 10.0
    sc = short("lead_brake", 1.0)
    b = bridge_on(FakeCarla(sc), sc)
    with pytest.raises(ValueError, match="n=1"):
        b.reset(sc, n=2)
    with pytest.raises(InputError, match="embedded"):
        b.restore(None)


# -- towns --------------------------------------------------------------------------------------------
def test_scenario_placed_on_a_town_by_road_lane_s():
    sc, placement = load_carla_scenario(FIXTURES / "town_scenario.yaml")
    assert placement.town == "Town99" and placement.ego.lane_id == -2
    fake = FakeCarla(sc, towns={"Town99": TOWN99})
    b = make_carla_bridge(sc, client_factory=fake.client, placement=placement)
    obs = b.reset(sc)
    assert fake.loaded == ["Town99"]
    wp = fake.map.get_waypoint_xodr(0, -2, 60.0)
    x, y = wp.transform.location.x, -wp.transform.location.y
    assert math.hypot(obs.x[0] - x, obs.y[0] - y) < 0.05 and abs(obs.lane_offset[0]) < 1e-3
    assert obs.s[0] == pytest.approx(sc.ego.s, abs=0.05) and obs.lane_width[0] == pytest.approx(3.6)
    assert obs.obj_ds[0, 0] == pytest.approx(50.0, abs=0.05) and abs(obs.obj_dd[0, 0]) < 1e-3
    assert obs.obj_ds[0, 1] == pytest.approx(20.0, abs=0.05)
    assert obs.obj_dd[0, 1] == pytest.approx(3.6, abs=1e-3)
    b.close()
    out = OutcomeRecorder(1)
    run_once(
        sc, make_carla_bridge(sc, client_factory=fake.client, placement=placement), recorders=[out]
    )
    assert out.collision_step[0] < 0 and out.departure_step[0] < 0 and out.min_delta_lon[0] > 0
    assert fake.loaded == ["Town99"]  # loaded once, reused
    assert_clean(fake)


def test_placement_validation_names_the_field(tmp_path):
    with pytest.raises(ValueError, match="needs 'ego"):
        CarlaPlacement(town="Town04")
    with pytest.raises(ValueError, match="need 'town'"):
        CarlaPlacement(ego={"road_id": 1, "lane_id": -1, "s": 0})
    bad = (
        (FIXTURES / "town_scenario.yaml")
        .read_text()
        .replace("lane_id: -2, s: 60.0", "lane_id: 0, s: 60.0")
    )
    (tmp_path / "bad.yaml").write_text(bad)
    with pytest.raises(InputError, match=r"bad\.yaml: field 'carla\.ego\.lane_id'"):
        load_carla_scenario(tmp_path / "bad.yaml")
    sc, placement = load_carla_scenario("lead_brake")  # no carla block: (scenario, None)
    assert placement is None and sc.name == "lead_brake"
    sc = load_scenario("lead_brake")
    fake = FakeCarla(sc, towns={"Town99": TOWN99})
    place = CarlaPlacement(town="Town99", ego={"road_id": 0, "lane_id": -2, "s": 9999.0})
    with pytest.raises(InputError, match="Town99 has no lane road_id=0 lane_id=-2 at s=9999"):
        make_carla_bridge(sc, client_factory=fake.client, placement=place).reset(sc)
    assert_clean(fake)


def test_faults_through_the_bridge_match_embedded():
    """A 1-fixed and an m-fixed fault give the same outcomes as on the embedded world."""
    sc = short("lead_brake", 8.0)
    faults = [
        Fault("control.steer", "1-fixed", 1.0, None, 40, 1),
        Fault("control.steer", "m-fixed", 0.5, None, 40, 10),
    ]
    for f in faults:
        fake = FakeCarla(sc)
        sim = Simulation(sc, bridge=bridge_on(fake, sc))
        out = OutcomeRecorder(1)
        sim.run(1, injector=FaultInjector([f], sim.ads.points), recorders=[out])
        ref = Simulation(sc)
        out2 = OutcomeRecorder(1)
        ref.run(1, injector=FaultInjector([f], ref.ads.points), recorders=[out2])
        assert (out.first_hazard[0] < 0) == (out2.first_hazard[0] < 0)
        assert abs(out.first_hazard[0] - out2.first_hazard[0]) <= 4
        assert (out.departure_step[0] < 0) == (out2.departure_step[0] < 0)
        assert abs(out.departure_step[0] - out2.departure_step[0]) <= 4
        # another vehicle model behind the same vehicle interface: the same outcome, close margins
        assert (out.min_delta_lat[0] > 0) == (out2.min_delta_lat[0] > 0)
        assert out.min_delta_lat[0] == pytest.approx(out2.min_delta_lat[0], abs=0.5)
        assert_clean(fake)
