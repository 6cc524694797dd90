"""User agents (Leaderboard style) as the ADS, and ``drivefi.inject`` source-level injection points."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from drivefi_fakes.carla_server import FakeCarla

from drivefi.bridges.carla.bridge import make_carla_bridge
from drivefi.bridges.carla.connection import forget_sessions
from drivefi.core import Fault, Injector
from drivefi.errors import InputError
from drivefi.faults import FaultInjector
from drivefi.inject import active, declare, declared, inject
from drivefi.run.simulate import OutcomeRecorder, Simulation, TraceRecorder, run_once
from drivefi.stacks.agent.adapter import AgentStack
from drivefi.stacks.agent.loader import AgentError, AgentStepError
from drivefi.world.scenario import load_scenario

CARLA_MISSING = (
    "the carla client library is not installed (the carla extra has wheels only for "
    "Linux x86_64 and Windows AMD64, Python 3.10-3.12)"
)
carla = pytest.importorskip("carla", reason=CARLA_MISSING)

AGENT = Path(__file__).parent / "fixtures" / "leaderboard_agent.py"
SC = load_scenario("lead_brake").model_copy(update={"duration": 12.0})


@pytest.fixture(autouse=True)
def _fresh_sessions():
    forget_sessions()
    yield
    forget_sessions()


def run_agent(cls: str, fault: Fault | None = None, fake: FakeCarla | None = None):
    fake = fake or FakeCarla(SC)
    bridge = make_carla_bridge(SC, client_factory=fake.client)
    ads = AgentStack(f"{AGENT}:{cls}", SC, bridge=bridge)
    sim = Simulation(SC, bridge=bridge, ads=ads)
    rec, out = TraceRecorder(1, sim.steps, sim.points), OutcomeRecorder(1)
    injector = FaultInjector([fault], ads.points) if fault else None
    run_once(SC, bridge, ads, injector=injector, recorders=[rec, out])
    return rec, out, ads.agent, bridge, fake


def test_leaderboard_agent_under_the_bridge_with_a_fault_in_its_vehicle_control():
    rec, out, agent, bridge, fake = run_agent("GapKeeper")
    names = [p.name for p in AgentStack(str(AGENT), SC, bridge=bridge).points]
    assert names == ["control.throttle", "control.brake", "control.steer", "localization.speed",
                     "perception.gap", "planner.target_speed"]  # fmt: skip
    assert out.collision_step[0] < 0 and out.first_hazard[0] < 0 and rec.filled.all()
    assert rec.cols["v"][0, -1] < 1.0  # it stopped behind the braking lead
    # the agent's GNSS (a real sensor on the ego) arrived matched to every frame
    frames = [f for f, _ in agent.gnss]
    assert frames == list(range(bridge.frame0, bridge.frame0 + SC.steps))
    assert all(d.shape == (3,) and np.isfinite(d).all() for _, d in agent.gnss)
    assert fake.alive == [] and not fake.settings.synchronous_mode
    # steer stuck hard left (DriveFI convention) for 12 steps: CARLA got -0.6, the car drifts out
    f = Fault("control.steer", "m-fixed", 0.6, None, 40, 12)
    rec2, out2, _, bridge2, fake2 = run_agent("GapKeeper", f)
    np.testing.assert_allclose(rec2.cols["control.steer"][0, 40:52], 0.6)
    np.testing.assert_allclose(rec2.cols["steer"][0, 40:52], 0.6)
    assert rec2.cols["fault_active"][0, 40:52].all() and not rec2.cols["fault_active"][0, 52:].any()
    assert out2.first_hazard[0] >= 40 and rec2.cols["lane_offset"][0, 52] > 0.1
    # what reached CARLA is the vehicle interface's output: the wheels turn left (CARLA steer
    # negative) at the steering-rate limit, within the lateral-acceleration limit, not -0.6 at once
    sent = dict(fake2.ego().controls)
    steer = np.array([sent[bridge2.frame0 + k + 1].steer for k in range(40, 52)])
    vp = SC.ego.vehicle
    assert np.all(steer < 0) and np.all(
        np.diff(steer) >= -vp.steer_rate * SC.dt / vp.phi_max - 1e-9
    )
    assert np.abs(steer).max() < 0.1  # held at the lateral-acceleration limit at this speed


def test_user_declared_point_is_corrupted_by_a_plan_row():
    f = Fault("planner.target_speed", "m-fixed", 0.0, None, 20, 40)
    rec, *_ = run_agent("GroundTruthOnly", f)
    golden, *_ = run_agent("GroundTruthOnly")
    seen = rec.cols["planner.target_speed"][0]
    np.testing.assert_array_equal(seen[20:60], 0.0)
    assert (seen[:20] > 10).all() and (seen[60:70] > 0).all()
    assert rec.cols["v"][0, 60] < golden.cols["v"][0, 60] - 5.0  # the agent slowed down for it
    np.testing.assert_allclose(rec.cols["v"][0, :21], golden.cols["v"][0, :21])


def test_agent_runs_on_the_embedded_world_with_pseudo_sensors():
    ads = AgentStack(f"{AGENT}:GroundTruthOnly", SC)
    sim = Simulation(SC, ads=ads)
    out = OutcomeRecorder(1)
    sim.run(1, recorders=[out])
    assert out.collision_step[0] < 0 and out.first_hazard[0] < 0
    assert ads.agent._global_plan_world_coord and ads.agent._global_plan[0][0][
        "lat"
    ] == pytest.approx(0, abs=1e-3)
    # GNSS is a pseudo-sensor on the embedded simulator (the map's geo-reference) ...
    gk = AgentStack(f"{AGENT}:GapKeeper", SC)
    Simulation(SC, ads=gk).run(1)
    assert len(gk.agent.gnss) == SC.steps and gk.agent.gnss[0][1].shape == (3,)
    # ... a camera needs a CARLA server, and the error names it
    with pytest.raises(InputError, match=r"sensor\.camera\.rgb \('Center'\).*--sim carla"):
        AgentStack(f"{AGENT}:WithCamera", SC)


def test_agent_load_errors_and_crashes_are_clear(tmp_path):
    with pytest.raises(InputError, match="agent file not found"):
        AgentStack(f"{tmp_path}/nope.py:X", SC)
    with pytest.raises(InputError, match=r"no class 'Nope'.*GapKeeper"):
        AgentStack(f"{AGENT}:Nope", SC)
    broken = tmp_path / "broken.py"
    broken.write_text("import no_such_package_xyz\n")
    with pytest.raises(AgentError, match=r"importing .*broken\.py failed: ModuleNotFoundError"):
        AgentStack(f"{broken}:A", SC)
    fake = FakeCarla(SC)
    bridge = make_carla_bridge(SC, client_factory=fake.client)
    ads = AgentStack(f"{AGENT}:Crashing", SC, bridge=bridge)
    with pytest.raises(
        AgentStepError, match=r"Crashing\.run_step raised ValueError at step 3: model weights"
    ):
        run_once(SC, bridge, ads)
    assert fake.alive == [] and not fake.settings.synchronous_mode


def test_leaderboard_1_style_agent(tmp_path):
    """``__init__(path_to_conf_file)`` that calls setup, list-style sensors, a config file."""
    conf = tmp_path / "agent.json"
    conf.write_text('{"cruise": 12.0}')
    src = tmp_path / "lb1_agent.py"
    src.write_text(
        "import carla\n"
        "class Old:\n"
        "    def __init__(self, path_to_conf_file):\n"
        "        self.setup(path_to_conf_file)\n"
        "    def setup(self, path_to_conf_file):\n"
        "        self.conf = open(path_to_conf_file).read()\n"
        "    def sensors(self):\n"
        "        return [['sensor.speedometer', {'reading_frequency': 20}, 'speed']]\n"
        "    def run_step(self, input_data, timestamp):\n"
        "        v = input_data['speed'][1]['speed']\n"
        "        return carla.VehicleControl(throttle=0.0, brake=0.3 if v > 1 else 0.0, steer=0.0)\n"
    )
    ads = AgentStack(f"{src}:Old", SC, conf=str(conf))
    assert ads.agent.conf == '{"cruise": 12.0}' and ads.sensors[0]["id"] == "speed"
    out = OutcomeRecorder(1)
    sim = Simulation(SC, ads=ads)
    rec = TraceRecorder(1, sim.steps, sim.points)
    sim.run(1, recorders=[out, rec])
    assert rec.cols["v"][0, -1] < 1.0 and rec.cols["brake"][0, 5] == pytest.approx(0.3, abs=1e-6)


def test_inject_passes_through_outside_a_run_and_corrupts_inside():
    class Stuck(Injector):
        def corrupt(self, point, value, k):
            return np.where(k >= 5, -1.0, value) if point == "my.point" else value

    declare("my.point", lo=-1.0, hi=1.0, unit="m")
    obj = object()
    assert inject("my.point", obj) is obj  # nothing active: the very same object back
    assert declared()["my.point"].lo == -1.0
    inj = Stuck()
    with active(inj, np.array([3])):
        assert inject("my.point", 0.25) == 0.25
    with active(inj, np.array([7])):
        assert inject("my.point", 0.25) == -1.0 and isinstance(inject("my.point", 0.25), float)
    with active(inj, np.array([4, 9])):
        np.testing.assert_array_equal(inject("my.point", np.array([0.5, 0.5])), [0.5, -1.0])
    assert inj.seen["my.point"].tolist() == [0.5, -1.0]
    assert inject("my.point", 0.25) == 0.25  # the context is gone again


def test_public_api_re_export():
    import drivefi

    # README: agents declare points with drivefi.declare and route them through drivefi.inject
    assert callable(getattr(drivefi, "inject", None)), "drivefi does not re-export inject"
    assert callable(getattr(drivefi, "declare", None)), "drivefi does not re-export declare"
    assert drivefi.inject is inject and drivefi.declare is declare
    assert drivefi.inject("my.other", 1.5) == 1.5
