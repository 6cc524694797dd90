"""Plans, campaigns, the results store: resume after SIGKILL, bad input, CLI."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from drivefi.campaign.executor import LocalExecutor
from drivefi.campaign.runner import run_campaign
from drivefi.campaign.store import ResultsStore
from drivefi.cli import main
from drivefi.faults.plan import exhaustive, random_plan, read_plan, write_plan
from drivefi.world.scenario import load_scenario

SC = load_scenario("lead_brake")


def small_plan(stride=40, durations=(1, 5)):
    return exhaustive(
        SC, ["control.steer", "planning.target_speed"], durations=list(durations), stride=stride
    )


def outcome_rows(db):
    df = ResultsStore(db).outcomes()
    return df.drop(columns=["campaign"]).sort_values("idx").reset_index(drop=True)


def test_plan_round_trip_and_grids(tmp_path):
    plan = small_plan()
    path = write_plan(plan, tmp_path / "p.csv")
    back = read_plan(path)
    assert back.faults == plan.faults and back.scenario == "lead_brake"
    assert back.digest() == plan.digest()
    # every start x point x value x duration; default grid has both ends
    assert len(plan.faults) == (len(range(0, 400, 40)) + len(range(0, 396, 40))) * 2 * 5
    vals = {f.value for f in plan.faults if f.point == "control.steer"}
    assert {-1.0, 1.0} <= vals and len(vals) == 5
    r1, r2 = random_plan(SC, "bitflip", 50, 3, seed=4), random_plan(SC, "bitflip", 50, 3, seed=4)
    assert r1.faults == r2.faults and all(0 <= f.bit <= 31 and f.duration == 3 for f in r1.faults)


def test_campaign_counts_and_parallel_equals_serial(tmp_path):
    plan = small_plan()
    a = run_campaign(SC, plan, tmp_path / "a.db", LocalExecutor(1), progress=False)
    b = run_campaign(SC, plan, tmp_path / "b.db", LocalExecutor(2), progress=False, batch_size=7)
    assert a.done == b.done == len(plan.faults)
    assert a.masked + a.hazard + a.accident == len(plan.faults)
    assert a.critical > 0  # steer stuck for 5 steps at speed is critical
    ra, rb = outcome_rows(tmp_path / "a.db"), outcome_rows(tmp_path / "b.db")
    assert ra.equals(rb)
    # running again resumes: nothing left to do, nothing duplicated
    again = run_campaign(SC, plan, tmp_path / "a.db", progress=False)
    assert again.ran_now == 0 and again.done == len(plan.faults)
    assert outcome_rows(tmp_path / "a.db").equals(ra)


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path):
    plan = small_plan(stride=4, durations=(1,))
    plan_path = write_plan(plan, tmp_path / "p.csv")
    db = tmp_path / "killed.db"
    cmd = [
        sys.executable,
        "-m",
        "drivefi",
        "campaign",
        "run",
        "lead_brake",
        str(plan_path),
        "--db",
        str(db),
        "--batch-size",
        "20",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 120
    n = 0
    while time.time() < deadline:
        time.sleep(0.05)
        if db.exists():
            try:
                n = sqlite3.connect(db).execute("SELECT COUNT(*) FROM outcomes").fetchone()[0]
            except sqlite3.DatabaseError:
                n = 0
            if n >= 60:
                break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 0 < n < len(plan.faults), "the kill must land in the middle of the campaign"
    stored = sqlite3.connect(db).execute("SELECT COUNT(*) FROM outcomes").fetchone()[0]
    assert stored < len(plan.faults)
    rc = subprocess.run(cmd, capture_output=True, timeout=300).returncode
    assert rc == 0
    con = sqlite3.connect(db)
    total, distinct = con.execute("SELECT COUNT(*), COUNT(DISTINCT idx) FROM outcomes").fetchone()
    assert total == distinct == len(plan.faults)
    run_campaign(SC, plan, tmp_path / "clean.db", progress=False)
    assert (
        outcome_rows(db)
        .drop(columns=["attempts"])
        .equals(outcome_rows(tmp_path / "clean.db").drop(columns=["attempts"]))
    )


BAD_ROWS = [
    ("control.steer,m-fixed,0.5,,abc,5,0", "field 'start'"),
    ("control.wheel,m-fixed,0.5,,10,5,0", "unknown injection point"),
    ("control.steer,bitflip,,40,10,1,0", "field 'bit'"),
    ("control.steer,m-fixed,7.0,,10,5,0", "field 'value'"),
    ("control.steer,1-fixed,0.5,,10,3,0", "field 'duration'"),
    ("control.steer,sticky,0.5,,10,3,0", "field 'model'"),
    ("control.steer,m-fixed,0.5", "row 1"),
]


@pytest.mark.parametrize("row,needle", BAD_ROWS)
def test_bad_plan_rows_exit_2(tmp_path, capsys, row, needle):
    p = tmp_path / "bad.csv"
    p.write_text(
        f"# drivefi plan scenario=lead_brake steps=400\npoint,model,value,bit,start,duration,seed\n{row}\n"
    )
    rc = main(["campaign", "run", "lead_brake", str(p), "--db", str(tmp_path / "r.db")])
    err = capsys.readouterr().err
    assert rc == 2
    assert needle in err and str(p) in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def _db_with_outcomes(tmp_path):
    plan = small_plan(stride=100)
    path = write_plan(plan, tmp_path / "p.csv")
    db = tmp_path / "r.db"
    run_campaign(SC, plan, db, progress=False)
    return path, db, outcome_rows(db)


def test_plan_for_another_scenario_exit_2(tmp_path, capsys):
    path, db, before = _db_with_outcomes(tmp_path)
    rc = main(["campaign", "run", "cut_in", str(path), "--db", str(db)])
    err = capsys.readouterr().err
    assert rc == 2 and "lead_brake" in err and "cut_in" in err
    assert outcome_rows(db).equals(before)


def test_locked_database_exit_2_and_nothing_lost(tmp_path, capsys):
    path, db, before = _db_with_outcomes(tmp_path)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        rc = main(["campaign", "run", "lead_brake", str(path), "--db", str(db)])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    err = capsys.readouterr().err
    assert rc == 2 and "locked" in err and str(db) in err
    assert outcome_rows(db).equals(before)


def test_corrupt_database_exit_2(tmp_path, capsys):
    db = tmp_path / "junk.db"
    db.write_bytes(b"this is not sqlite" * 100)
    plan_path = write_plan(small_plan(stride=200), tmp_path / "p.csv")
    rc = main(["campaign", "run", "lead_brake", str(plan_path), "--db", str(db)])
    err = capsys.readouterr().err
    assert rc == 2 and "not a DriveFI results database" in err
    assert db.read_bytes() == b"this is not sqlite" * 100


def test_cli_plan_status_export(tmp_path, capsys):
    plan = tmp_path / "r.csv"
    assert (
        main(
            [
                "plan",
                "random",
                "lead_brake",
                "--model",
                "m-random",
                "--count",
                "30",
                "--m",
                "4",
                "--out",
                str(plan),
                "--json",
            ]
        )
        == 0
    )
    info = json.loads(capsys.readouterr().out)
    assert info["faults"] == 30
    db = tmp_path / "r.db"
    assert main(["campaign", "run", "lead_brake", str(plan), "--db", str(db), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (
        summary["done"] == 30 and summary["masked"] + summary["hazard"] + summary["accident"] == 30
    )
    assert main(["campaign", "status", "--db", str(db), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["campaigns"][0]["done"] == 30
    out = tmp_path / "x.csv"
    assert main(["campaign", "export", "--db", str(db), "--csv", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 31
    assert main(["campaign", "status", "--db", str(tmp_path / "none.db")]) == 2


def test_report_html(tmp_path, capsys):
    _, db, _ = _db_with_outcomes(tmp_path)
    out = tmp_path / "r.html"
    assert main(["report", str(db), "--out", str(out), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    page = out.read_text()
    assert s["campaigns"][0]["done"] == 80
    assert page.count("data:image/png;base64,") >= 3 and "Critical faults by point" in page
    assert main(["report", str(tmp_path / "missing.db")]) == 2
