"""The example agents of examples/agents/ (Leaderboard-style stacks under test besides the
reference ADS): safe golden runs on every bundled scenario, their own injection points, snapshot
hooks, and CARLA through the fake server."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from drivefi.core import Fault
from drivefi.faults import FaultInjector
from drivefi.run.simulate import Simulation, TraceRecorder
from drivefi.stacks.agent.adapter import AgentStack
from drivefi.world.scenario import bundled_names, load_scenario

AGENTS_DIR = Path(__file__).resolve().parent.parent / "examples" / "agents"
AGENT_FILES = sorted(p for p in AGENTS_DIR.glob("*.py") if not p.name.startswith("_"))
AGENT_IDS = [p.stem for p in AGENT_FILES]
ACTUATION = ("throttle", "brake", "steer")
SHORT = load_scenario("lead_brake").model_copy(update={"duration": 5.0})  # lead ahead, no braking

_GOLDEN: dict[tuple[str, str], dict[str, np.ndarray]] = {}


def run(agent: Path, scenario, fault: Fault | None = None, may_fail: bool = False):
    """One run of the agent on the embedded simulator: (trace columns of the run, its ADS)."""
    ads = AgentStack(str(agent), scenario)
    sim = Simulation(scenario, ads=ads)
    rec = TraceRecorder(1, sim.steps, sim.points)
    injector = FaultInjector([fault], ads.points) if fault is not None else None
    sim.run(1, injector=injector, recorders=[rec])
    assert rec.filled.all() or (may_fail and ads.errors)
    return {c: a[0] for c, a in rec.cols.items()}, ads


def golden(agent: Path, name: str) -> dict[str, np.ndarray]:
    key = (agent.stem, name)
    if key not in _GOLDEN:
        _GOLDEN[key] = run(agent, load_scenario(name))[0]
    return _GOLDEN[key]


def test_there_are_example_agents():
    assert len(AGENT_FILES) >= 2
    for agent in AGENT_FILES:
        ads = AgentStack(str(agent), SHORT)  # the class comes from the file's get_entry_point()
        assert {s["type"] for s in ads.sensors} <= {"sensor.speedometer", "drivefi.observation"}
        assert len(ads.user_points) >= 3, f"{agent.name} declares too few injection points"
        assert all(np.isfinite([p.lo, p.hi]).all() and p.lo < p.hi for p in ads.user_points)


@pytest.mark.parametrize("name", bundled_names())
@pytest.mark.parametrize("agent", AGENT_FILES, ids=AGENT_IDS)
def test_golden_run_is_safe(agent, name):
    c = golden(agent, name)
    assert (c["delta_lon"] > 0).all(), f"delta_lon min {c['delta_lon'].min():.2f} m"
    assert (c["delta_lat"] > 0).all(), f"delta_lat min {c['delta_lat'].min():.3f} m"
    assert not c["collision"].any() and not c["departure"].any() and not c["hazard"].any()
    assert c["v"][: len(c["v"]) // 4].max() > 10.0  # it drives


@pytest.mark.parametrize("agent", AGENT_FILES, ids=AGENT_IDS)
def test_golden_runs_are_deterministic_and_differ_from_the_reference_stack(agent, golden_run):
    again, _ = run(agent, load_scenario("lead_brake"))
    first = golden(agent, "lead_brake")
    for col in (*ACTUATION, "v", "lane_offset", "delta_lon"):
        np.testing.assert_array_equal(again[col], first[col])
    for name in bundled_names():
        mine, ref = golden(agent, name), golden_run(name).trace.frame
        diff = max(np.abs(mine[c] - ref[c].to_numpy()).max() for c in ACTUATION)
        assert diff > 0.05, f"{agent.stem} on {name} drives like the reference stack"
        assert np.abs(mine["v"] - ref["v"].to_numpy()).max() > 0.5


def _actuation(c):
    return np.stack([c[n] for n in ACTUATION])


@pytest.mark.parametrize("agent", AGENT_FILES, ids=AGENT_IDS)
def test_every_declared_point_changes_what_the_agent_does(agent):
    """A fault forcing a declared point to either end of its range shows in the point's column;
    at one end at least, the agent's actuation departs from its golden run."""
    gold, ads = run(agent, SHORT)
    start, m = 40, 20
    for p in ads.user_points:
        changed = []
        for value in (p.lo, p.hi):
            c, _ = run(agent, SHORT, Fault(p.name, "m-fixed", value, None, start, m))
            np.testing.assert_array_equal(c[p.name][start : start + m], value)
            np.testing.assert_array_equal(c[p.name][:start], gold[p.name][:start])
            np.testing.assert_array_equal(_actuation(c)[:, :start], _actuation(gold)[:, :start])
            assert c["fault_active"][start : start + m].all()
            changed.append(np.abs(_actuation(c) - _actuation(gold))[:, start:].max() > 0.01)
        assert any(changed), f"{agent.stem}: forcing {p.name} changes nothing"


class _Spy:
    """Records every run_step's inputs, the agent's state before it, and the control."""

    def __init__(self, agent, at: int):
        self.agent, self.at, self.inputs, self.controls = agent, at, [], []
        self.copy = self.state = None
        self.run_step = agent.run_step
        agent.run_step = self

    def __call__(self, input_data, timestamp):
        if len(self.inputs) == self.at:
            del self.agent.run_step  # no spy inside the copy
            self.copy, self.state = copy.deepcopy(self.agent), self.agent.get_state()
            self.agent.run_step = self
        self.inputs.append((copy.deepcopy(input_data), timestamp))
        ctrl = self.run_step(input_data, timestamp)
        self.controls.append((ctrl.throttle, ctrl.brake, ctrl.steer))
        return ctrl


@pytest.mark.parametrize("agent", AGENT_FILES, ids=AGENT_IDS)
def test_state_hooks_and_deepcopy_are_faithful_snapshots(agent):
    """An agent restored at step k (from a deep copy, or a fresh agent given get_state() as
    plain JSON data) produces the very same controls from step k on."""
    sc = load_scenario("lead_brake").model_copy(update={"duration": 9.0})
    k = 125  # the lead brakes since 6 s: trackers, filters and the state machine are all busy
    ads = AgentStack(str(agent), sc)
    spy = _Spy(ads.agent, k)
    Simulation(sc, ads=ads).run(1)
    state = json.loads(json.dumps(spy.state))
    fresh = AgentStack(str(agent), sc).agent
    fresh.set_state(state)
    for restored in (spy.copy, fresh):
        out = []
        for data, t in spy.inputs[k:]:
            ctrl = restored.run_step(copy.deepcopy(data), t)
            out.append((ctrl.throttle, ctrl.brake, ctrl.steer))
        assert out == spy.controls[k:]


@pytest.mark.parametrize("agent", AGENT_FILES, ids=AGENT_IDS)
def test_agent_runs_on_carla_through_the_fake_server(agent):
    pytest.importorskip("carla")
    from drivefi_fakes.carla_server import FakeCarla

    from drivefi.bridges.carla.bridge import make_carla_bridge
    from drivefi.bridges.carla.connection import forget_sessions
    from drivefi.run.simulate import run_once

    sc = load_scenario("cut_in").model_copy(update={"duration": 5.0})  # the cut-in and after
    forget_sessions()
    try:
        fake = FakeCarla(sc)
        bridge = make_carla_bridge(sc, client_factory=fake.client)
        ads = AgentStack(str(agent), sc, bridge=bridge)
        rec = TraceRecorder(1, sc.steps, [p.name for p in ads.points])
        run_once(sc, bridge, ads, recorders=[rec])
    finally:
        forget_sessions()
    c = {n: a[0] for n, a in rec.cols.items()}
    assert rec.filled.all()
    assert (c["delta_lon"] > 0).all() and (c["delta_lat"] > 0).all()
    assert not c["collision"].any() and not c["departure"].any()
    assert fake.alive == [] and not fake.settings.synchronous_mode
    # the fake server's vehicle physics is its own (tyre slip, other lag), not the embedded model:
    # the agent drives alike on both, within what that difference in physics explains
    emb, _ = run(agent, sc)
    for col, tol in (("v", 0.75), ("lane_offset", 0.3)):
        np.testing.assert_allclose(c[col], emb[col], atol=tol, rtol=0, err_msg=col)


@pytest.mark.parametrize("agent", AGENT_FILES, ids=AGENT_IDS)
def test_non_finite_values_at_any_point_never_crash_the_agent(agent):
    """NaN or infinity forced at any point (as a bit flip can make) is driven through without an
    exception or a numpy warning: the agent recovers its golden behaviour's safety afterwards, or,
    where the corruption reaches its command, the run ends as a stack failure that says so."""
    sc = load_scenario("cut_in").model_copy(update={"duration": 4.0})
    _, ads = run(agent, sc)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        for p in ads.points:
            for value in (np.nan, np.inf, -np.inf):
                fault = Fault(p.name, "m-fixed", value, None, 30, 3)
                c, failed = run(agent, sc, fault, may_fail=True)
                if failed.errors:
                    assert "returned a non-finite command at step 30" in failed.errors[0][1]
                    continue
                assert np.isfinite(c["v"]).all() and not c["collision"].any(), (p.name, value)


@pytest.mark.parametrize("agent", AGENT_FILES, ids=AGENT_IDS)
def test_faulty_run_from_a_snapshot_equals_the_run_from_step_0(agent):
    """World snapshot and agent deep copy at the fault's first step k, then the fault: the very
    same steps (bit for bit) as the run that carries the fault from step 0."""
    from drivefi.bridges.embedded import EmbeddedBridge

    sc = load_scenario("lead_brake").model_copy(update={"duration": 9.0})
    k = 125  # the lead brakes since 6 s
    fault = Fault(
        "planning.accel_cmd" if "mpc" in agent.stem else "estimation.gap",
        "m-fixed",
        2.0 if "mpc" in agent.stem else 10.0,
        None,
        k,
        15,
    )
    full, _ = run(agent, sc, fault)
    # the golden run up to step k, keeping the world and the agent there
    bridge, ads = EmbeddedBridge(sc), AgentStack(str(agent), sc)
    sim = Simulation(sc, bridge=bridge, ads=ads)
    obs = sim.start(1)
    for _ in range(k):
        obs = bridge.step(ads.step(obs))
    world, snap = bridge.snapshot(), copy.deepcopy(ads.agent)
    ads.step(obs)  # the golden run goes on: the snapshot must not follow it
    # the faulty run from the snapshot, on a fresh bridge and wrapper
    bridge2, ads2 = EmbeddedBridge(sc), AgentStack(str(agent), sc)
    ads2.reset(1)
    ads2.agent = snap
    ads2.injector = FaultInjector([fault], ads2.points)
    obs = bridge2.restore(world)
    for step in range(k, sc.steps):
        act = ads2.step(obs)
        applied = bridge2.guarded(act)
        for col in ACTUATION:
            assert getattr(applied, col)[0] == full[col][step], (col, step)
        assert obs.v[0] == full["v"][step] and obs.lane_offset[0] == full["lane_offset"][step]
        obs = bridge2.step(act)
    assert (
        np.abs(_actuation(full) - _actuation(golden(agent, "lead_brake"))[:, : sc.steps]).max()
        > 0.05
    )
