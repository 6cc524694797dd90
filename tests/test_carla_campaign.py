"""Campaigns with ``sim="carla"`` end to end: plan -> runner -> CARLA bridge (fake server) -> store."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from drivefi_fakes.carla_server import FakeCarla
from procs import outcomes

from drivefi.bridges.carla import connection
from drivefi.bridges.carla.simulator import CarlaSimulator
from drivefi.bridges.embedded import EMBEDDED
from drivefi.campaign.executor import LocalExecutor
from drivefi.campaign.runner import run_campaign
from drivefi.core import Fault
from drivefi.faults.plan import Plan, read_plan, write_plan
from drivefi.run.testbed import Testbed
from drivefi.world.scenario import load_scenario

CARLA_MISSING = (
    "the carla client library is not installed (the carla extra has wheels only for "
    "Linux x86_64 and Windows AMD64, Python 3.10-3.12)"
)
pytest.importorskip("carla", reason=CARLA_MISSING)

AGENT = Path(__file__).parent / "fixtures" / "leaderboard_agent.py"
SC = load_scenario("lead_brake").model_copy(update={"duration": 8.0})


@pytest.fixture
def server(monkeypatch):
    """A fake server that ``carla.Client`` connects to, for the campaign's own bridge factory."""
    connection.forget_sessions()
    holder = {}

    def use(fake: FakeCarla) -> FakeCarla:
        holder["fake"] = fake
        monkeypatch.setattr(connection, "default_client_factory", lambda: fake.client)
        return fake

    yield use
    connection.forget_sessions()


def test_golden_then_1_fixed_and_m_fixed_faults_from_a_plan(server, tmp_path):
    fake = server(FakeCarla(SC))
    plan = Plan(
        SC.name,
        SC.steps,
        [
            Fault("control.steer", "1-fixed", 1.0, None, 40, 1),
            Fault("control.steer", "m-fixed", 0.5, None, 40, 10),
            Fault("planning.target_speed", "m-fixed", 0.0, None, 20, 30),
        ],
    )
    plan = read_plan(write_plan(plan, tmp_path / "plan.csv"))
    carla_sum = run_campaign(
        SC, plan, tmp_path / "carla.db", LocalExecutor(1), progress=False,
        testbed=Testbed(CarlaSimulator({"timeout": 5.0})), retries=1,
    )  # fmt: skip
    emb_sum = run_campaign(SC, plan, tmp_path / "emb.db", LocalExecutor(1), progress=False)
    assert carla_sum.done == emb_sum.done == 3 and carla_sum.error == 0
    got, ref = outcomes(tmp_path / "carla.db"), outcomes(tmp_path / "emb.db")
    assert list(got.columns) == list(ref.columns) and list(got.dtypes) == list(ref.dtypes)
    exact = ["point", "model", "value", "start", "duration", "status", "outcome",
             "golden_safe", "critical", "attempts"]  # fmt: skip
    assert got[exact].equals(ref[exact])
    # the fake server's vehicle is another model behind the same vehicle interface: the same
    # outcomes, the same steps within a few, close margins (embedded runs start at the fault step
    # from snapshots, CARLA runs from step 0)
    for col in ("first_hazard_step", "collision_step", "departure_step"):
        assert ((got[col] < 0) == (ref[col] < 0)).all() and (got[col] - ref[col]).abs().max() <= 4
    assert ((got["min_delta_lat"] > 0) == (ref["min_delta_lat"] > 0)).all()
    masked = ref["outcome"] == "masked"
    assert (got["min_delta_lat"] - ref["min_delta_lat"])[masked].abs().max() < 0.05
    assert (got["min_delta_lon"] - ref["min_delta_lon"]).abs().max() < 0.5
    assert set(got["outcome"]) >= {"hazard"}  # the stuck steer is found on CARLA too
    assert fake.runs == 4 and fake.alive == [] and not fake.settings.synchronous_mode
    # resuming runs nothing again
    again = run_campaign(
        SC,
        plan,
        tmp_path / "carla.db",
        progress=False,
        testbed=Testbed(CarlaSimulator({"timeout": 5.0})),
    )
    assert again.ran_now == 0 and fake.runs == 4


def test_failed_run_is_retried_then_marked_error_and_the_campaign_completes(server, tmp_path):
    def hook(fake):
        # every attempt of the fault at step 20 times out: its throttle (through the vehicle
        # interface's lag, 0.39 or more after one step of 1.0) reaches the vehicle at tick 22
        ego = fake.ego()
        return "timeout" if fake.run_ticks == 22 and ego.control.throttle > 0.3 else None

    fake = server(FakeCarla(SC, fail_hook=hook))
    plan = Plan(
        SC.name,
        SC.steps,
        [Fault("control.throttle", "1-fixed", 1.0, None, s, 1) for s in (10, 20, 30)],
    )
    summary = run_campaign(
        SC,
        plan,
        tmp_path / "r.db",
        progress=False,
        testbed=Testbed(CarlaSimulator({"timeout": 5.0})),
        retries=1,
    )
    assert summary.done == 2 and summary.error == 1 and summary.ran_now == 3  # done: ok outcomes
    rows = outcomes(tmp_path / "r.db")
    bad = rows.iloc[1]
    assert bad["status"] == "error" and bad["attempts"] == 2 and pd.isna(bad["outcome"])
    assert bad["error"].count("timed out") == 2 and "attempt 2:" in bad["error"]
    assert list(rows["status"]) == ["ok", "error", "ok"]
    assert fake.alive == [] and not fake.settings.synchronous_mode and len(fake.clients) >= 3


def test_campaign_with_a_user_agent(server, tmp_path):
    """Faults in the agent's VehicleControl and in a point it declared with drivefi.inject."""
    server(FakeCarla(SC))
    plan = Plan(
        SC.name,
        SC.steps,
        [
            Fault("control.steer", "m-fixed", 0.6, None, 40, 12),
            Fault("planner.target_speed", "m-fixed", 40.0, None, 110, 50),
            Fault("control.brake", "1-fixed", 0.0, None, 50, 1),
        ],
    )
    summary = run_campaign(
        SC, plan, tmp_path / "a.db", progress=False, testbed=Testbed.of(f"{AGENT}:GroundTruthOnly", CarlaSimulator({"timeout": 5.0})),
    )  # fmt: skip
    rows = outcomes(tmp_path / "a.db")
    assert summary.error == 0, rows["error"].tolist()
    assert rows["outcome"][0] in ("hazard", "accident") and rows["outcome"][1] in (
        "hazard",
        "accident",
    )
    assert rows["outcome"][2] == "masked"


def test_pipeline_learns_on_the_embedded_simulator_only_when_asked_and_validates_on_carla(
    server, tmp_path
):
    """--train-sim embedded: the search learns on the embedded simulator and injects on the
    (fake) CARLA server; the confirmed outcomes equal the embedded simulator's."""
    from drivefi.pipeline import run_pipeline

    server(FakeCarla(SC))
    opts = {"host": "127.0.0.1", "port": 2000, "timeout": 5.0}
    s = run_pipeline(SC, tmp_path / "carla", budget=3, training_runs=30, durations=(20,), workers=1,
                     progress=False, log=lambda m: None, testbed=Testbed(CarlaSimulator(opts)),
                     train_on=EMBEDDED, rounds=0)  # fmt: skip
    e = run_pipeline(SC, tmp_path / "emb", budget=3, training_runs=30, durations=(20,), workers=1,
                     progress=False, log=lambda m: None, rounds=0)  # fmt: skip
    assert s.injected == e.injected == 3
    assert (s.confirmed_hazards, s.random_hazards) == (e.confirmed_hazards, e.random_hazards)
    camp = outcomes(tmp_path / "carla" / "results.db")
    assert (camp.status == "ok").all()


@pytest.mark.parametrize("agent", [None, f"{AGENT}:GroundTruthOnly"], ids=["reference", "agent"])
def test_pipeline_on_carla_learns_the_stack_there(server, tmp_path, agent):
    """pipeline --sim carla: the golden run, the training runs and the rounds' injections are the
    stack under test's runs on the (fake) CARLA server, stored as campaigns of the results store;
    no embedded run stands in for them."""
    import sqlite3

    from drivefi.pipeline import run_pipeline
    from drivefi.run.trace import read_trace

    server(FakeCarla(SC))
    opts = {"host": "127.0.0.1", "port": 2000, "timeout": 5.0}
    out = tmp_path / "carla"
    s = run_pipeline(SC, out, budget=1, training_runs=8, durations=(20,), workers=1,
                     progress=False, log=lambda m: None, testbed=Testbed.of(agent, CarlaSimulator(opts)),
                      rounds=1, budget_share=0.003)  # fmt: skip
    assert read_trace(out / "golden.parquet").meta["sim"] == "carla"
    with sqlite3.connect(out / "results.db") as db:
        labels = dict(db.execute("SELECT id, settings FROM campaigns").fetchall())
    roles = sorted(json.loads(v).get("label") for v in labels.values())
    assert {"training", "round 1", "random"} <= set(roles), roles
    rows = outcomes(out / "results.db")
    assert (rows.status == "ok").all(), rows.error.tolist()
    n_round = int(s.rounds[-1]["injected"]) if len(s.rounds) > 1 else 0
    # probes: points no training run reached, tried with their range's ends (8 runs are few)
    assert len(rows) == 8 + s.probe_runs + n_round + s.injected + s.random_injected
    assert s.simulated_runs == 8 + s.probe_runs + n_round + s.injected
