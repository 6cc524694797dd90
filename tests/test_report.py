"""Report and replay: replay equals the stored outcome; the page labels the campaigns, compares
them, groups cases, maps critical faults, shows timelines, calibration and replay commands."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from drivefi.campaign.replay import command_for, replay, replay_many, stored_fault
from drivefi.campaign.runner import run_campaign
from drivefi.campaign.store import ResultsStore
from drivefi.core import Fault
from drivefi.faults.plan import Plan, write_plan
from drivefi.pipeline import random_baseline
from drivefi.report import build_report
from drivefi.report.data import CampaignData, group_cases, with_times
from drivefi.run.testbed import Testbed
from drivefi.world.scenario import load_scenario

SC = load_scenario("lead_brake")


def search_like_plan() -> Plan:
    """Faults of the kind the search proposes (steering stuck for 1 s, brake released before the
    lead car brakes), with the search's extra columns."""
    faults = [
        Fault("control.steer", "m-fixed", v, None, k, 20, 0)
        for v in (1.0, -1.0)
        for k in range(40, 111, 10)
    ]
    faults += [Fault("control.brake", "m-fixed", 0.0, None, k, 20, 0) for k in (170, 180, 190)]
    faults += [Fault("planning.target_speed", "1-fixed", 25.0, None, 300, 1, 0)]  # masked
    n = len(faults)
    rng = np.random.default_rng(3)
    extra = {
        "p_hazard": [f"{p:.6g}" for p in rng.uniform(0.5, 1.0, n)],
        "predicted_delta": [f"{d:.6g}" for d in rng.uniform(-3, 1, n)],
    }
    return Plan(SC.name, SC.steps, faults, extra)


@pytest.fixture(scope="module")
def pipeline_db(tmp_path_factory):
    """A results database as the pipeline leaves it: a labelled search and random campaign."""
    d = tmp_path_factory.mktemp("rep")
    db = d / "results.db"
    plan = search_like_plan()
    write_plan(plan, d / "search_plan.csv")
    run_campaign(SC, plan, db, progress=False, label="search")
    base = random_baseline(SC, 40, [1, 5, 20], seed=0)
    write_plan(base, d / "random_plan.csv")
    run_campaign(SC, base, db, progress=False, label="random")
    return d, db, plan


def test_replay_equals_the_stored_outcome(pipeline_db):
    _, db, _ = pipeline_db
    store = ResultsStore(db)
    df = store.outcomes()
    store.close()
    crit = df[df.critical == 1]
    picks = [crit.iloc[0], crit.iloc[len(crit) // 2], crit.iloc[-1], df[df.critical == 0].iloc[0]]
    faults, singles = [], []
    for r in picks:
        sf = stored_fault(db, int(r["idx"]), int(r["campaign"]))
        one = replay(SC, sf.fault, sf.campaign["seed"])
        for k in ("outcome", "min_delta_lon", "min_delta_lat", "first_hazard_step", "critical"):
            assert one.outcome[k] == sf.outcome[k], (k, sf.fault)
        # the trace: golden rows before the fault, the faulty run after, same margins as stored
        f = one.trace.frame
        k0 = sf.fault.start
        assert f["delta_lat"].iloc[:k0].equals(one.golden["delta_lat"].iloc[:k0])
        assert f["delta_lat"].iloc[k0:].min() == sf.outcome["min_delta_lat"]
        assert f["fault_active"].iloc[k0] and not f["fault_active"].iloc[:k0].any()
        faults.append(sf.fault)
        singles.append(one)
    # a batch replays each fault as it replays alone, trace and all
    many = replay_many(SC, faults, SC.seed)
    for one, m in zip(singles, many, strict=True):
        assert m.outcome == one.outcome and m.trace.frame.equals(one.trace.frame)


def test_stored_fault_needs_a_campaign_when_there_are_several(pipeline_db):
    from drivefi.errors import InputError

    _, db, _ = pipeline_db
    with pytest.raises(InputError, match="choose one with --campaign"):
        stored_fault(db, 0)
    with pytest.raises(InputError, match="--fault: campaign 1 has faults 0"):
        stored_fault(db, 10_000, 1)


def test_cases_group_by_point_value_duration_class_and_phase():
    """Same point and value, duration class and 1-second phase of the drive form one case
    whatever their outcome (the case takes its most severe member's); another phase, value or
    duration class starts a new one."""
    rows = []

    def add(idx, point, value, start, dur, outcome, lat=-1.0):
        rows.append({"idx": idx, "point": point, "model": "m-fixed", "value": value, "bit": None,
                     "seed": 0, "start": start, "duration": dur, "status": "ok",
                     "outcome": outcome, "critical": 1, "min_delta_lon": 5.0,
                     "min_delta_lat": lat, "first_hazard_step": start + 4})  # fmt: skip

    add(0, "control.steer", 1.0, 100, 20, "hazard")  # 5.00 s: phase 5, sustained
    add(1, "control.steer", 1.0, 110, 20, "hazard", -2.0)  # 5.50 s: same case
    add(2, "control.steer", 1.0, 119, 12, "hazard")  # 5.95 s, 0.6 s: same case
    add(3, "control.steer", 1.0, 120, 20, "hazard")  # 6.00 s: next phase
    add(4, "control.steer", -1.0, 105, 20, "hazard")  # other value
    add(5, "control.steer", 1.0, 115, 20, "accident", -0.5)  # other outcome, same case
    add(6, "control.steer", 1.0, 101, 5, "hazard")  # short: other duration class
    df = with_times(pd.DataFrame(rows), 0.05)
    camp = CampaignData({"id": 1, "scenario": "lead_brake", "sim": "embedded", "seed": 1}, {},
                        df, SC)  # fmt: skip
    cases = group_cases([camp])
    assert len(cases) == 4
    big = cases.iloc[0]  # the case with an accident comes first
    assert big["outcome"] == "accident" and big["count"] == 4
    assert (big["t_first"], big["t_last"]) == pytest.approx((5.0, 5.95))  # seconds, not steps
    assert big["rep_idx"] == 5  # its most severe fault: the accident
    assert big["worst"] == -2.0
    assert big["tth_min"] == pytest.approx(0.2)  # 4 steps x 0.05 s


def test_replay_command_reads_back_exactly():
    f = Fault("perception.obstacle_distance", "1-fixed", 12.345678901234, None, 7, 1, 0)
    cmd = command_for("lead_brake", f, None, "x.parquet")
    assert "--value 12.345678901234 " in cmd and "--seed" not in cmd
    assert command_for("lead_brake", Fault("control.steer", "m-fixed", -1.0, None, 3, 20), 5) == (
        "drivefi replay lead_brake --point control.steer --model m-fixed --value -1 --start 3 "
        "--duration 20 --seed 5 --out replay.parquet"
    )
    bf = command_for("lead_brake", Fault("control.steer", "bitflip", None, 30, 3, 1), None)
    assert "--bit 30" in bf and "--value" not in bf


def test_report_shows_what_to_act_on(pipeline_db):
    d, db, _ = pipeline_db
    out = d / "report.html"
    s = build_report(db, out, top=3)
    page = out.read_text()
    text = re.sub(r"<[^>]+>", " ", page)
    # labelled campaigns and their comparison
    assert s["search_campaign"] == 1 and s["random_campaign"] == 2
    assert "Bayesian search (campaign 1)" in text and "random FI baseline (campaign 2)" in text
    assert "critical per injection" in text and "Speed-up of the search" in text
    # distinct cases, timelines, heat map, calibration, replay commands
    assert s["cases"] >= 3 and s["timelines"] >= 3
    assert "distinct cases" in text and 'id="case1"' in page
    assert 'alt="timeline of case 1"' in page and "heat map of critical faults" in page
    assert "calibration plot" in page and "search_plan.csv" in text
    assert "drivefi replay lead_brake --point control." in page
    assert f"drivefi replay --db {db} --campaign 1 --fault " in page  # each listed fault
    assert "&lt;code" not in page and "&lt;span" not in page  # HTML cells are not escaped
    assert "time to hazard" in text and "fault starts" in text
    # self-contained: inline PNGs only, no scripts, no external resources
    assert page.count("data:image/png;base64,") >= 6
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    # every replay command in the page replays a fault of the database to its stored outcome
    cmd = re.search(r"drivefi replay lead_brake (--point \S+) --model (\S+) --value (\S+) "
                    r"--start (\d+) --duration (\d+)", page)  # fmt: skip
    f = Fault(cmd[1].split()[1], cmd[2], float(cmd[3]), None, int(cmd[4]), int(cmd[5]))
    store = ResultsStore(db)
    df = store.outcomes()
    store.close()
    row = df[(df.point == f.point) & (df.value == f.value) & (df.start == f.start)
             & (df.duration == f.duration)].iloc[0]  # fmt: skip
    assert replay(SC, f).outcome["min_delta_lat"] == row["min_delta_lat"]


def test_report_without_roles_or_predictions(tmp_path):
    """A database from `campaign run` alone: no roles, no plan next to it; still a full page."""
    db = tmp_path / "r.db"
    run_campaign(SC, random_baseline(SC, 12, [20], seed=4), db, progress=False)
    s = build_report(db, tmp_path / "r.html", top=1)
    text = (tmp_path / "r.html").read_text()
    assert s["search_campaign"] is None and "No campaign is labelled" in text
    assert "No campaign of this database ran a search plan" in text


def test_other_simulators_show_kept_traces_and_are_never_replayed(tmp_path):
    """A campaign that ran on CARLA: its faults are not re-run on the embedded simulator in its
    place; the report says its traces were not kept, and uses them once they are."""
    from drivefi.run.trace import write_trace

    db = tmp_path / "carla.db"
    fault = Fault("control.steer", "m-fixed", 1.0, None, 80, 20, 0)
    stand_in = replay(SC, fault)  # a faulty run to store as if CARLA had produced it
    store = ResultsStore(db, write=True)
    camp = store.open_campaign(SC.name, "h", SC.seed, "carla", [fault], {"label": "random"})
    store.write(camp, [{**stand_in.outcome, "idx": 0}])
    store.close()
    s = build_report(db, tmp_path / "a.html")
    page = (tmp_path / "a.html").read_text()
    assert s["timelines"] == 0 and "ran on carla without kept traces" in page
    assert "drivefi replay" not in page
    write_trace(stand_in.trace, tmp_path / "carla.traces" / "c1_0000000.parquet")
    s = build_report(db, tmp_path / "b.html")
    page = (tmp_path / "b.html").read_text()
    assert s["timelines"] == 1 and "kept trace" in page and "drivefi replay" not in page


def test_a_campaign_whose_runs_all_failed_shows_why(tmp_path):
    """Failed runs are neither masked nor critical: the page says they failed, and why."""
    from pathlib import Path

    agent = f"{Path(__file__).parent / 'fixtures' / 'special_agents.py'}:Fragile"
    faults = [Fault("localization.speed", "1-fixed", 40.0, None, k, 1, 0) for k in (20, 60, 90)]
    db = tmp_path / "r.db"
    s = run_campaign(
        SC, Plan(SC.name, SC.steps, faults), db, progress=False, testbed=Testbed.of(agent)
    )
    assert s.stack_failure == 3 and s.error == 0
    build_report(db, tmp_path / "r.html")
    text = (tmp_path / "r.html").read_text()
    assert "every injected fault was masked" not in text
    assert "No fault ran to the end: all 3 runs failed" in text
    assert "id='failed'" in text and "implausible speed" in text


def test_a_users_stack_is_never_stood_in_for_by_the_reference_golden_run(tmp_path, monkeypatch):
    """The heat map of an agent's campaign draws the agent's stored golden run, never the
    reference's, and the report runs no golden run for it."""
    from pathlib import Path

    import drivefi.run.golden as golden

    agent = f"{Path(__file__).parent / 'fixtures' / 'special_agents.py'}:Cruiser"
    faults = [Fault("control.steer", "m-fixed", 1.0, None, k, 20, 0) for k in (20, 60)]
    db = tmp_path / "r.db"
    s = run_campaign(
        SC, Plan(SC.name, SC.steps, faults), db, progress=False, testbed=Testbed.of(agent)
    )
    assert s.error == 0

    def refuse(*args, **kw):
        raise AssertionError(f"the report ran a golden run: {args} {kw}")

    monkeypatch.setattr(golden, "golden_of", refuse)
    monkeypatch.setattr(golden, "record_golden", refuse)
    build_report(db, tmp_path / "r.html")
    text = (tmp_path / "r.html").read_text()
    # the strip is the agent's own golden run, the one its campaign stored
    assert "Golden margin strip: stored with the campaign" in text and "Cruiser" in text
