"""Any stack under test: a user's agent runs for real on the embedded simulator, behind the same
stack interface as the reference ADS (golden runs, campaigns, snapshots, errors, traces)."""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

import numpy as np
import pytest

from drivefi.campaign.runner import run_campaign
from drivefi.core import Fault
from drivefi.errors import InputError
from drivefi.faults import FaultInjector
from drivefi.faults.plan import Plan, exhaustive, random_plan, read_plan, write_plan
from drivefi.run.golden import record_golden
from drivefi.run.simulate import OutcomeRecorder, Simulation, TraceRecorder
from drivefi.run.testbed import Testbed
from drivefi.run.trace import read_trace
from drivefi.stacks import load_stack, stack_identity, stack_points
from drivefi.world.scenario import bundled_names, load_scenario


def _has_carla() -> bool:
    try:
        import carla  # noqa: F401
    except ImportError:
        return False
    return True


HAS_CARLA = _has_carla()
# Most tests here run agents on the embedded simulator, but every agent they load (the fixtures,
# examples/agents/, the docs' minimal agent) imports carla for carla.VehicleControl, and the
# embedded stand-ins build carla.Map/Location objects: only those tests need the carla package.
needs_carla = pytest.mark.skipif(
    not HAS_CARLA,
    reason="the agents under test import carla; the carla client library is not installed",
)

ROOT = Path(__file__).resolve().parent.parent
FIX = Path(__file__).parent / "fixtures"
GAP = f"{FIX / 'leaderboard_agent.py'}:GroundTruthOnly"
CARLA_STYLE = str(FIX / "carla_style_agent.py")
SPECIAL = FIX / "special_agents.py"
SC = load_scenario("lead_brake").model_copy(update={"duration": 12.0})


def example_specs() -> list[str]:
    """Every agent under examples/agents/ (FILE, or FILE:CLASS when it has no get_entry_point)."""
    folder = ROOT / "examples" / "agents"
    specs = []
    for path in sorted(folder.glob("*.py")) if folder.is_dir() else []:
        src = path.read_text()
        if "def get_entry_point" in src:
            specs.append(str(path))
            continue
        spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
        mod = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(mod)
        except ImportError:
            if HAS_CARLA:
                raise
            specs.append(str(path))  # its tests are skipped without carla; collection goes on
            continue
        for name, obj in vars(mod).items():
            if inspect.isclass(obj) and obj.__module__ == mod.__name__ and hasattr(obj, "run_step"):
                specs.append(f"{path}:{name}")
    return specs


SNAPSHOT_AGENTS = [GAP, CARLA_STYLE, f"{SPECIAL}:Hooked", *example_specs()]


def traces(spec: str, faults: list[Fault], from_snapshots: bool, sc=SC):
    stack = load_stack(spec, sc)
    golden = record_golden(sc, stack=stack) if from_snapshots else None
    sim = Simulation(sc, ads=stack)
    n = len(faults)
    rec, out = TraceRecorder(n, sim.steps, sim.points), OutcomeRecorder(n)
    starts = np.array([f.start for f in faults])
    if from_snapshots:
        out.from_step = 0
        snap = golden.snapshots.take(starts)
    else:
        out.from_step, snap = starts, None
    sim.run(n, snapshot=snap, injector=FaultInjector(faults, stack.points), recorders=[rec, out])
    return rec, out, stack


@needs_carla
def test_an_agent_is_not_the_reference_stack():
    ref = record_golden(SC).trace
    for spec in (GAP, CARLA_STYLE):
        g = record_golden(SC, stack=spec).trace
        assert not np.array_equal(g.frame["throttle"], ref.frame["throttle"])
        assert g.meta["stack"] == stack_identity(spec) != ref.meta["stack"] == "reference"
        assert "perception.obstacle_distance" not in g.frame  # the reference's points are not its
    assert "sha256=" in stack_identity(GAP)


@needs_carla
@pytest.mark.parametrize(
    "spec", SNAPSHOT_AGENTS, ids=lambda s: Path(s.split(":")[0]).stem + s[-12:]
)
def test_run_from_a_snapshot_equals_the_same_fault_from_step_0(spec):
    points = stack_points(spec)
    faults = []
    for j, p in enumerate(points):
        v = p.lo + (0.2 + 0.15 * (j % 4)) * (p.hi - p.lo)
        faults.append(Fault(p.name, "m-fixed", float(v), None, 30 + 17 * j, 12))
        faults.append(Fault(p.name, "bitflip", None, 30 - (j % 3), 90 + 11 * j, 1))
    a, out_a, stack = traces(spec, faults, True)
    assert stack.copy_error is None or "Hooked" in spec
    b, out_b, _ = traces(spec, faults, False)
    for i, f in enumerate(faults):
        for col in a.cols:
            x, y = a.cols[col][i, f.start :], b.cols[col][i, f.start :]
            assert np.array_equal(x, y, equal_nan=True), (f, col)
    for name in ("min_delta_lon", "min_delta_lat", "first_hazard", "collision_step"):
        assert np.array_equal(getattr(out_a, name), getattr(out_b, name))


@needs_carla
def test_declared_points_are_in_plans_and_corrupt_what_the_agent_sees(tmp_path):
    names = [p.name for p in stack_points(CARLA_STYLE)]
    assert names == [
        "control.throttle",
        "control.brake",
        "control.steer",
        "localization.speed",
        "perception.lead_gap",
        "planning.lookahead",
    ]  # fmt: skip  (setup, import)
    pts = stack_points(CARLA_STYLE)
    plan = exhaustive(SC, ["perception.lead_gap"], None, [20], 60, stack_points=pts)
    assert {f.value for f in plan.faults} == {0.0, 37.5, 75.0, 112.5, 150.0}  # declared range
    write_plan(plan, tmp_path / "p.csv")
    assert read_plan(tmp_path / "p.csv", pts).faults == plan.faults
    with pytest.raises(InputError, match=r"unknown injection point 'perception\.lead_gap'"):
        read_plan(tmp_path / "p.csv")  # the reference ADS has no such point
    rnd = random_plan(SC, "1-random", 20, points=["planning.lookahead"], stack_points=pts)
    assert all(1.0 <= f.value <= 30.0 for f in rnd.faults)
    # a zero gap (setup() point): the agent sees it and brakes for the phantom obstacle
    faults = [Fault("perception.lead_gap", "m-fixed", 0.0, None, 40, 20)]
    rec, _, _ = traces(CARLA_STYLE, faults, True)
    golden = record_golden(SC, stack=CARLA_STYLE).trace.frame
    np.testing.assert_array_equal(rec.cols["perception.lead_gap"][0, 40:60], 0.0)
    assert (golden["perception.lead_gap"].to_numpy()[40:60] > 20).all()
    assert rec.cols["v"][0, 60] < golden["v"][60] - 3.0
    # a 30 m lookahead (import-time point) on a curve: the agent cuts the corner
    curve = load_scenario("curved_following").model_copy(update={"duration": 10.0})
    faults = [Fault("planning.lookahead", "m-fixed", 30.0, None, 100, 40)]
    rec, _, _ = traces(CARLA_STYLE, faults, True, curve)
    golden = record_golden(curve, stack=CARLA_STYLE).trace.frame
    np.testing.assert_array_equal(rec.cols["planning.lookahead"][0, 100:140], 30.0)
    assert golden["planning.lookahead"].to_numpy()[100:140].max() < 20.0
    assert np.abs(rec.cols["lane_offset"][0, 100:160] - golden["lane_offset"][100:160]).max() > 0.1


@needs_carla
def test_an_agent_that_raises_gives_error_outcomes_and_the_campaign_goes_on(tmp_path):
    spec = f"{SPECIAL}:Fragile"
    faults = [
        Fault("localization.speed", "m-fixed", 40.0, None, 50, 5),  # the agent raises at step 50
        Fault("localization.speed", "m-fixed", 10.0, None, 60, 5),
        Fault("control.brake", "m-fixed", 1.0, None, 70, 5),
    ]
    plan = Plan(SC.name, SC.steps, faults)
    s = run_campaign(SC, plan, tmp_path / "r.db", progress=False, testbed=Testbed.of(spec))
    # the stack's failure under the fault is that fault's outcome (done, not an error)
    assert (s.done, s.error, s.stack_failure, s.masked + s.hazard + s.accident) == (3, 0, 1, 2)
    assert s.stack == stack_identity(spec) and s.runs_start == "golden snapshots"
    from drivefi.campaign.store import ResultsStore

    store = ResultsStore(tmp_path / "r.db")
    out = store.outcomes()
    store.close()
    row = out[out.outcome == "stack_failure"].iloc[0]
    assert row.idx == 0 and row.status == "ok" and row.critical == 0
    line = _line_of(SPECIAL, 'raise ValueError("implausible speed")')
    assert row.error == (
        f"Fragile.run_step raised ValueError at step 50: implausible speed ({SPECIAL}:{line})"
    )


@needs_carla
def test_an_agent_that_cannot_be_copied_runs_from_step_0_and_says_so(tmp_path):
    faults = [
        Fault("planning.cruise", "m-fixed", 0.0, None, 40, 20),
        Fault("control.steer", "1-fixed", 1.0, None, 80, 1),
    ]
    plan = Plan(SC.name, SC.steps, faults)
    s = run_campaign(
        SC, plan, tmp_path / "u.db", progress=False, testbed=Testbed.of(f"{SPECIAL}:Uncopyable")
    )
    h = run_campaign(
        SC, plan, tmp_path / "h.db", progress=False, testbed=Testbed.of(f"{SPECIAL}:Hooked")
    )
    assert s.runs_start.startswith("step 0 (the agent cannot be copied: TypeError")
    assert h.runs_start == "golden snapshots"
    assert (s.done, s.error) == (2, 0)
    from drivefi.campaign.store import ResultsStore

    rows = []
    for db in ("u.db", "h.db"):
        store = ResultsStore(tmp_path / db)
        rows.append(store.outcomes()[["outcome", "min_delta_lon", "min_delta_lat"]])
        store.close()
    assert rows[0].equals(rows[1])  # same agent logic: same outcomes, bit for bit


@needs_carla
def test_keep_traces_writes_agent_traces_and_resume_refuses_another_stack(tmp_path):
    faults = [Fault("perception.lead_gap", "m-fixed", 0.0, None, 40, 20),
              Fault("control.throttle", "1-fixed", 1.0, None, 100, 1)]  # fmt: skip
    plan = Plan(SC.name, SC.steps, faults)
    db = tmp_path / "k.db"
    run_campaign(SC, plan, db, progress=False, testbed=Testbed.of(CARLA_STYLE), keep_traces="all")
    files = sorted((tmp_path / "k.traces").glob("*.parquet"))
    assert len(files) == 2
    t = read_trace(files[0])
    assert t.meta["stack"] == stack_identity(CARLA_STYLE) and t.meta["fault"]["start"] == 40
    assert (t.frame["perception.lead_gap"].to_numpy()[40:60] == 0.0).all()
    # a plan both stacks can run: resuming it with another stack is refused
    common = Plan(SC.name, SC.steps, faults[1:])
    run_campaign(SC, common, tmp_path / "c.db", progress=False, testbed=Testbed.of(CARLA_STYLE))
    with pytest.raises(
        InputError, match=r"was run with stack .*carla_style_agent.*not 'reference'"
    ):
        run_campaign(SC, common, tmp_path / "c.db", progress=False)


def test_bad_agent_specs_are_one_clear_line(tmp_path):
    from drivefi.stacks.agent.loader import AgentError

    with pytest.raises(AgentError, match=r"nope\.py:Nope: agent file not found"):
        load_stack(f"{tmp_path}/nope.py:Nope", SC)
    bad = tmp_path / "bad.py"
    bad.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(AgentError, match=r"bad\.py:A: importing .*failed: RuntimeError: boom"):
        load_stack(f"{bad}:A", SC)
    assert AgentError("x").exit_code == 2


@needs_carla
def test_a_missing_agent_class_names_the_classes_there():
    from drivefi.stacks.agent.loader import AgentError

    with pytest.raises(AgentError, match=r"has no class 'Nope'; agent classes there: .*GapKeeper"):
        load_stack(f"{FIX / 'leaderboard_agent.py'}:Nope", SC)  # the file imports carla


@needs_carla
def test_carla_style_agent_runs_unchanged_on_embedded_and_through_the_fake_server():
    from drivefi_fakes.carla_server import FakeCarla

    from drivefi.bridges.carla.bridge import make_carla_bridge
    from drivefi.bridges.carla.connection import forget_sessions
    from drivefi.run.simulate import run_once

    forget_sessions()
    fake = FakeCarla(SC)
    bridge = make_carla_bridge(SC, client_factory=fake.client)
    stack = load_stack(CARLA_STYLE, SC, bridge=bridge)
    rec, out = TraceRecorder(1, SC.steps, [p.name for p in stack.points]), OutcomeRecorder(1)
    run_once(SC, bridge, stack, recorders=[rec, out])
    forget_sessions()
    assert stack.agent.vehicle is not None and not hasattr(stack.agent.vehicle, "_view")
    emb = record_golden(SC, stack=CARLA_STYLE).trace.frame
    assert out.first_hazard[0] < 0 and out.collision_step[0] < 0 and not emb["hazard"].any()
    # the fake server's vehicle is the embedded model behind CARLA's start and measurement
    # conventions: the same drive, up to a fraction of a m/s
    np.testing.assert_allclose(rec.cols["v"][0], emb["v"], atol=0.75)
    np.testing.assert_allclose(rec.cols["x"][0], emb["x"], atol=1.0)
    assert emb["v"].iloc[-1] < 8.0  # it slowed down behind the braking lead


@needs_carla
def test_embedded_stand_ins_follow_carla_conventions():
    from drivefi.stacks.agent.carla_api import CarlaDataProvider

    sc = load_scenario("curved_following")
    stack = load_stack(CARLA_STYLE, sc)
    sim = Simulation(sc, ads=stack)
    sim.run(1)
    agent = stack.agent
    veh = agent.vehicle
    o = stack.obs
    tf = veh.get_transform()
    assert (tf.location.x, tf.location.y) == pytest.approx((o.x[0], -o.y[0]))
    assert tf.rotation.yaw == pytest.approx(-np.degrees(o.theta[0]))
    wp = agent.map.get_waypoint(tf.location)
    assert type(wp).__name__ == "Waypoint" and wp.lane_id == -2 + sc.ego.lane
    assert wp.transform.location.distance(tf.location) < 0.5
    v = veh.get_velocity()
    assert np.hypot(v.x, v.y) == pytest.approx(o.v[0])
    ctrl = veh.get_control()
    st = stack.bridge.state
    assert (ctrl.throttle, ctrl.steer) == pytest.approx((st.last_throttle[0], -st.last_steer[0]))
    assert veh.bounding_box.extent.x == pytest.approx(sc.ego.vehicle.length / 2)
    assert veh.get_world().get_map() is agent.map
    with pytest.raises(RuntimeError, match="no run is active"):
        CarlaDataProvider.get_hero_actor()  # only while an agent steps


def _docs_blocks(lang: str) -> list[str]:
    """The ``lang`` code blocks of docs/agents.md."""
    text = (ROOT / "docs" / "agents.md").read_text()
    return [b.split("```", 1)[0] for b in text.split(f"```{lang}\n")[1:]]


@needs_carla
def test_the_minimal_agent_of_the_docs_is_safe_on_every_bundled_scenario(tmp_path):
    src = tmp_path / "my_agent.py"
    src.write_text(_docs_blocks("python")[0])
    for name in bundled_names():
        sc = load_scenario(name)
        g = record_golden(sc, stack=str(src)).trace
        assert g.meta["stack"].endswith(
            f"my_agent.py:Minimal sha256={stack_identity(str(src)).split('=')[1]}"
        )
        assert not g.frame["hazard"].any(), name
        assert not (g.frame["collision"].any() or g.frame["departure"].any()), name
        assert "planner.target_speed" in g.frame


@needs_carla
@pytest.mark.slow
def test_the_commands_of_the_docs_run_as_written(tmp_path):
    import subprocess
    import sys

    (tmp_path / "my_agent.py").write_text(_docs_blocks("python")[0])
    lines = [ln.split("  #")[0].strip() for ln in _docs_blocks("sh")[0].splitlines()]
    bindir = Path(sys.executable).parent
    for cmd in [ln for ln in lines if ln.startswith("drivefi ")]:
        if cmd.startswith("drivefi pipeline"):
            cmd += " --budget 5 --training-runs 20 --rounds 0 --durations 20"
        r = subprocess.run(f"{bindir}/{cmd} --json", shell=True, cwd=tmp_path,
                           capture_output=True, text=True, timeout=600)  # fmt: skip
        assert r.returncode == 0, f"{cmd}\n{r.stderr[-2000:]}"


@needs_carla
def test_the_carla_api_block_of_the_docs_runs_inside_an_agent(tmp_path):
    block = _docs_blocks("python")[1]
    src = tmp_path / "api_agent.py"
    body = "\n".join("        " + ln for ln in block.splitlines())
    src.write_text(f"""
import carla
from drivefi.stacks.agent import AutonomousAgent


class ApiUser(AutonomousAgent):
    def sensors(self):
        return []

    def run_step(self, input_data, timestamp):
{body}
        self.target = target
        return carla.VehicleControl(throttle=0.2)
""")
    stack = load_stack(f"{src}:ApiUser", SC)
    Simulation(SC, ads=stack).run(1)
    assert not stack.errors and stack.agent.target.x != 0.0


SENSOR_AGENT = """
import carla
from drivefi.stacks.agent.loader import AutonomousAgent

class Recorder(AutonomousAgent):
    def setup(self, conf):
        self.seen = []

    def sensors(self):
        return [{"type": "sensor.other.gnss", "id": "gps"}, {"type": "sensor.other.imu", "id": "imu"},
                {"type": "sensor.opendrive_map", "id": "map"}, {"type": "drivefi.observation", "id": "o"}]

    def run_step(self, input_data, timestamp):
        self.seen.append({k: v for k, v in input_data.items()})
        return carla.VehicleControl(throttle=0.3, steer=-0.05, brake=0.0)
"""


@needs_carla
def test_gnss_imu_and_map_pseudo_sensors_follow_the_leaderboard(tmp_path):
    import carla

    src = tmp_path / "sensor_agent.py"
    src.write_text(SENSOR_AGENT)
    sc = load_scenario("curved_following").model_copy(update={"duration": 3.0})
    stack = load_stack(f"{src}:Recorder", sc)
    Simulation(sc, ads=stack).run(1)
    seen = stack.agent.seen
    assert len(seen) == sc.steps and seen[7]["gps"][0] == 7
    xodr = seen[0]["map"][1]["opendrive"]
    assert all(s["map"][1]["opendrive"] is xodr for s in seen)  # rendered once, not every step
    from drivefi.world.opendrive import opendrive_user_data, scenario_opendrive

    assert xodr == scenario_opendrive(sc).xodr  # the document the CARLA bridge loads
    assert '<speed max="15.0" unit="m/s"/>' in xodr and seen[0]["o"][1]["speed_limit"] == 15.0
    assert opendrive_user_data(xodr)["ego_wheelbase"] == sc.ego.vehicle.wheelbase
    cmap = carla.Map("m", xodr)
    for s in (seen[0], seen[-1]):
        o, gps, imu = s["o"][1], s["gps"][1], s["imu"][1]
        # the observation's y and theta are the trace's (right-handed); CARLA's are negated
        geo = cmap.transform_to_geolocation(carla.Location(o["x"], -o["y"], 0.0))
        np.testing.assert_allclose(gps, [geo.latitude, geo.longitude, geo.altitude], atol=1e-9)
        # compass: 0 = north (-y in CARLA), clockwise; yaw 0 (east) is pi/2
        assert imu[6] == pytest.approx(np.mod(np.radians(o["yaw"]) + np.pi / 2, 2 * np.pi))
        assert imu[2] == pytest.approx(9.81) and imu[0] == pytest.approx(o["a"])
        assert o["theta"] == pytest.approx(-np.radians(o["yaw"]))
        assert o["set_speed"] == sc.ego.cruise_speed and o["ego_length"] == sc.ego.vehicle.length
        vp = sc.ego.vehicle  # the vehicle's limits, as the docs' table lists them
        assert o["version"] == 3 and (o["phi_max"], o["brake_max"], o["steer_rate"]) == (
            vp.phi_max, vp.brake_max, vp.steer_rate)  # fmt: skip
    # steering left (CARLA steer < 0): yaw turns counter-clockwise, the gyroscope's z is negative
    last = seen[-1]
    assert last["imu"][1][5] < 0 and last["o"][1]["phi"] > 0
    assert last["o"][1]["yaw"] < seen[0]["o"][1]["yaw"]


OBS_AGENT = """
import carla
from drivefi.stacks.agent.loader import AutonomousAgent

class Seen(AutonomousAgent):
    def setup(self, conf):
        self.seen = []

    def sensors(self):
        return [{"type": "drivefi.observation", "id": "o"}]

    def run_step(self, input_data, timestamp):
        self.seen.append(input_data["o"][1])
        return carla.VehicleControl(throttle=0.3, steer=-0.05, brake=0.0)

class SeenV2(Seen):
    observation_version = 2

class SeenV9(Seen):
    observation_version = 9
"""


@needs_carla
def test_one_frame_convention_per_name_across_observation_and_trace(tmp_path):
    """x, y, theta mean the same in the observation as in the trace; an agent pinned to version 2
    still gets version 2's CARLA-frame y and theta; an unknown version is refused at load."""
    src = tmp_path / "obs_agent.py"
    src.write_text(OBS_AGENT)
    sc = load_scenario("curved_following").model_copy(update={"duration": 3.0})
    seen, g = {}, None
    for cls in ("Seen", "SeenV2"):
        stack = load_stack(f"{src}:{cls}", sc)
        g = record_golden(sc, stack=stack, snapshots=False).trace.frame
        seen[cls] = stack.agent.seen
    for k in (0, 20, sc.steps - 1):
        o, o2, row = seen["Seen"][k], seen["SeenV2"][k], g.iloc[k]
        assert o["version"] == 3 and o2["version"] == 2
        assert (o["x"], o["y"], o["theta"]) == pytest.approx((row["x"], row["y"], row["theta"]))
        assert o["yaw"] == pytest.approx(-np.degrees(row["theta"]))  # CARLA's, as carla.Rotation
        assert (o2["y"], o2["theta"]) == pytest.approx((-o["y"], -o["theta"]))
    assert abs(g["y"].iloc[-1] - g["y"].iloc[0]) > 0.1  # the ego moved sideways: signs are tested
    with pytest.raises(InputError, match=r"observation_version = 9.*versions 2, 3"):
        load_stack(f"{src}:SeenV9", sc)


def test_input_records_are_the_dicts_of_their_keys():
    from drivefi.stacks.agent.inputs import record

    keys = ("a", "it's", 'q"uote', "back\\slash\n", "ü", "a b")
    vals = (1, 2.5, None, [3], "x", -0.0)
    got = record(keys)(*vals)
    assert got == dict(zip(keys, vals, strict=True)) and list(got) == list(keys)
    assert record(keys)(*vals) is not got  # a new dict each call
    odd = (1, ("t", 2), "s")  # sensor ids need not be strings
    assert record(odd)(1, 2, 3) == {1: 1, ("t", 2): 2, "s": 3}
    assert record(())() == {}


def _line_of(path: Path, text: str) -> int:
    """The line of ``path`` that holds ``text``."""
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)
