"""Faulty runs that rejoin the golden run stop being simulated (drivefi.run.rejoin): their outcomes
and kept traces are the same, bit for bit, as when they run to the end; an agent whose memory
still differs from the golden run's does not rejoin, even while the world is the same."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from types import SimpleNamespace

import carla
import numpy as np
import pandas as pd
import pytest

import drivefi.campaign.batch as batch
from drivefi.bridges.embedded import EmbeddedBridge
from drivefi.campaign.context import BatchContext
from drivefi.core import Fault
from drivefi.faults.plan import exhaustive
from drivefi.run.golden import faulty_frame
from drivefi.run.rejoin import SWITCH, GoldenTail, _next
from drivefi.run.testbed import Testbed
from drivefi.stacks import load_stack
from drivefi.stacks.agent.equal import same_state
from drivefi.stacks.agent.snapshot import register_carla_types
from drivefi.world.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
AGENTS = [
    *(str(p) for p in sorted((ROOT / "examples" / "agents").glob("*.py"))),
    str(FIX / "carla_style_agent.py"),
    f"{FIX / 'special_agents.py'}:Hooked",
]
LEAD_BRAKE = load_scenario("lead_brake")


def _both(spec, faults, monkeypatch, scenario=LEAD_BRAKE):
    """(rows, traces) of one batch with rejoining, then without it."""
    ctx = BatchContext(scenario, scenario.seed, Testbed.of(spec), keep_traces="all")
    out = []
    for switch in ("1", "0"):
        monkeypatch.setenv(SWITCH, switch)
        rows, runs = batch.attempt(ctx, list(enumerate(faults)))
        out.append((rows, runs.traces))
    return runs.golden, out


CASES = [(spec, "lead_brake") for spec in AGENTS] + [(AGENTS[0], "highway")]  # 3 objects


@pytest.mark.parametrize(
    ("spec", "scenario"), CASES, ids=lambda s: Path(s.split(":")[0]).stem.removesuffix(".yaml")
)
def test_rejoined_runs_have_the_same_outcomes_and_traces_bit_for_bit(spec, scenario, monkeypatch):
    sc = load_scenario(scenario)
    stack = load_stack(spec, sc)
    plan = exhaustive(sc, None, None, [1, 5], 40, stack_points=stack.points)
    faults = plan.faults[:: max(1, len(plan.faults) // 48)]
    golden, [(rows, rec), (rows_full, rec_full)] = _both(spec, faults, monkeypatch, sc)
    assert rows == rows_full
    rejoined = rec.filled.sum(axis=1) < rec_full.filled.sum(axis=1)
    assert 0 < rejoined.sum() < len(faults), f"{rejoined.sum()} of {len(faults)} rejoined"
    g = golden.trace.frame
    for j in np.flatnonzero(rejoined):
        mine, full = faulty_frame(g, rec, j), faulty_frame(g, rec_full, j)
        assert list(mine.columns) == list(full.columns)
        for c in mine.columns:
            a, b = mine[c].to_numpy(), full[c].to_numpy()
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), (faults[j], c)


def test_an_agent_whose_memory_differs_does_not_rejoin_while_the_world_matches(monkeypatch):
    spec = f"{FIX / 'special_agents.py'}:Delayed"
    faults = [Fault("monitor.alarm", "1-fixed", 1.0, None, k, 1) for k in (60, 120)]
    golden, [(rows, rec), (rows_full, rec_full)] = _both(spec, faults, monkeypatch)
    assert rows == rows_full
    assert rec.filled.sum() == rec_full.filled.sum()  # none rejoined
    # the world was the golden run's for 40 steps, then the agent braked: the fault mattered
    g = golden.trace.frame["v"].to_numpy()
    for j, f in enumerate(faults):
        v = rec.cols["v"][j]
        assert np.array_equal(v[f.start : f.start + 40], g[f.start : f.start + 40])
        assert v[f.start + 60] < g[f.start + 60] - 1.0


def test_same_state_compares_what_a_snapshot_captures():
    register_carla_types()

    class Agent:
        def __init__(self):
            self.x, self.rng, self.gen = 1.0, random.Random(3), np.random.default_rng(1)
            self.arr, self.me, self.on_tick = np.zeros(3), self, self.tick
            self.seen = [carla.Location(1, 2, 3), carla.VehicleControl(throttle=0.5)]

        def tick(self):
            pass

    a = Agent()
    assert same_state(a, copy.deepcopy(a))  # cycles and bound methods included
    changes = [
        lambda b: b.rng.random(),  # a random generator's hidden state
        lambda b: b.gen.random(),
        lambda b: b.arr.__setitem__(0, -0.0),  # bits, not values
        lambda b: setattr(b.seen[0], "x", 1.5),
        lambda b: setattr(b.seen[1], "brake", 0.1),
        lambda b: setattr(b, "y", 0),  # a new attribute
        lambda b: setattr(b, "on_tick", b.__init__),
        lambda b: setattr(b, "x", np.float64(1.0)),  # another type
    ]
    for change in changes:
        b = copy.deepcopy(a)
        change(b)
        assert not same_state(a, b)
    nan = copy.deepcopy(a)
    a.x = nan.x = float("nan")
    assert same_state(a, nan)
    # stand-ins of two runs stand for each other only when paired
    run1, run2 = SimpleNamespace(run=1), SimpleNamespace(run=2)
    a.hero, nan.hero = run1, run2
    assert not same_state(a, nan)
    assert same_state(a, nan, {id(run1): id(run2)})


def test_golden_tail_and_world_state_equality():
    flags = np.array([0, 1, 0, 0, 1, 0], bool)
    want = [next((i for i in range(k, 6) if flags[i]), -1) for k in range(6)]
    assert _next(flags).tolist() == want
    frame = pd.DataFrame(
        {"delta_lon": [3.0, 1.0, 2.0], "delta_lat": [1.0, 2.0, 0.5],
         "hazard": [False, True, False], "collision": [False] * 3, "departure": [False] * 3}
    )  # fmt: skip
    tail = GoldenTail.of(frame)
    assert tail.min_delta_lon.tolist() == [1.0, 1.0, 2.0]
    assert tail.min_delta_lat.tolist() == [0.5, 0.5, 0.5]
    assert tail.hazard.tolist() == [1, 1, -1] and tail.collision.tolist() == [-1, -1, -1]
    br = EmbeddedBridge(LEAD_BRAKE)
    br.reset(n=3)
    other = br.state.copy()
    other.v[1] = np.nextafter(other.v[1], np.inf)
    br.state.psi[2], other.psi[2] = 0.0, -0.0  # equal values, other bits
    assert br.state.same(other).tolist() == [True, False, False]
    # pairwise rows: run 0 against runs 0, 1 and 2 of ``other``; only (0, 0) is equal
    same_rows = br.state.same_rows(np.array([0, 0, 0, 2]), other, np.array([0, 1, 2, 2]))
    assert same_rows.tolist() == [0]
    nan = br.state.copy()
    nan.v[:] = np.nan  # NaN equals NaN, bit for bit
    assert nan.same(nan.copy()).all()


def test_pool_workers_take_the_campaigns_rejoin_switch(monkeypatch):
    """Workers fork from a server that keeps the environment of the first campaign; the switch
    the campaign sees now is handed to them."""
    import os

    from drivefi.campaign import containment, executor

    monkeypatch.setattr(containment, "die_with", lambda pid: None)
    monkeypatch.setattr(executor, "_CTX", None)
    monkeypatch.setenv(SWITCH, "1")
    executor._init_worker(None, 0, {SWITCH: "0"})
    assert os.environ[SWITCH] == "0"
    executor._init_worker(None, 0, {})
    assert SWITCH not in os.environ
