"""``drivefi replay``: a fault given on the command line or stored in a results database."""

from __future__ import annotations

import json

import pytest

from drivefi.campaign.runner import run_campaign
from drivefi.campaign.store import ResultsStore
from drivefi.cli import main
from drivefi.core import Fault
from drivefi.faults.plan import Plan
from drivefi.run.trace import read_trace
from drivefi.world.scenario import load_scenario

SC = load_scenario("lead_brake")


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("replay") / "results.db"
    faults = [
        Fault("control.steer", "m-fixed", 1.0, None, 80, 20, 0),
        Fault("control.brake", "m-fixed", 0.0, None, 180, 20, 0),
        Fault("planning.target_speed", "1-fixed", 25.0, None, 300, 1, 0),
    ]
    run_campaign(SC, Plan(SC.name, SC.steps, faults), path, progress=False)
    return path


def test_replay_a_stored_fault(db, tmp_path, capsys):
    out = tmp_path / "t.parquet"
    rc = main(["replay", "--db", str(db), "--fault", "1", "--out", str(out), "--json"])
    s = json.loads(capsys.readouterr().out)
    assert rc == 0 and s["matches_stored"] is True
    store = ResultsStore(db)
    row = store.outcomes().iloc[1]
    store.close()
    assert s["outcome"] == row["outcome"] and s["min_delta_lon"] == row["min_delta_lon"]
    trace = read_trace(out)
    assert trace.meta["fault"]["point"] == "control.brake" and len(trace.frame) == SC.steps
    png = out.with_suffix(".png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert s["time_to_hazard_s"] == pytest.approx((row["first_hazard_step"] - 180) * SC.dt)


def test_replay_from_the_command_line_equals_the_stored_fault(db, tmp_path, capsys):
    out = tmp_path / "steer.parquet"
    plot = tmp_path / "plots" / "steer.png"
    rc = main(["replay", "lead_brake", "--point", "control.steer", "--value", "1",
               "--start", "80", "--duration", "20", "--out", str(out), "--plot", str(plot),
               "--json"])  # fmt: skip
    s = json.loads(capsys.readouterr().out)
    store = ResultsStore(db)
    row = store.outcomes().iloc[0]
    store.close()
    assert rc == 0 and s["fault"]["model"] == "m-fixed" and plot.is_file()
    assert (s["min_delta_lon"], s["min_delta_lat"]) == (row["min_delta_lon"], row["min_delta_lat"])


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["lead_brake", "--point", "control.steer", "--value", "3", "--start", "5"], "--value"),
        (["lead_brake", "--point", "nope", "--value", "0", "--start", "5"], "--point"),
        (
            [
                "lead_brake",
                "--point",
                "control.steer",
                "--value",
                "0",
                "--start",
                "395",
                "--duration",
                "20",
            ],
            "--start/--duration",
        ),
        (["lead_brake", "--point", "control.steer", "--start", "5"], "missing --value"),
        (
            ["lead_brake", "--point", "control.steer", "--model", "bitflip", "--start", "5"],
            "missing --bit",
        ),
        (["--db", "DB", "--fault", "99"], "--fault"),
        (["--db", "DB", "--fault", "0", "--point", "control.steer"], "drop --point"),
        (
            ["nope_scenario", "--point", "control.steer", "--value", "0", "--start", "5"],
            "scenario file not found",
        ),
    ],
)
def test_bad_replay_input_is_one_line_and_exit_2(db, tmp_path, capsys, args, expect):
    args = [str(db) if a == "DB" else a for a in args]
    rc = main(["replay", *args, "--out", str(tmp_path / "x.parquet")])
    err = capsys.readouterr().err
    assert rc == 2 and expect in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x.parquet").exists()


def test_campaign_run_label_and_report_options(tmp_path, capsys):
    """`campaign run --label` names the campaign's role; `report --plan` brings the predictions."""
    from drivefi.faults.plan import write_plan

    faults = [Fault("control.steer", "m-fixed", 1.0, None, 80, 20, 0)]
    plan = Plan(SC.name, SC.steps, faults, {"p_hazard": ["0.9"], "predicted_delta": ["-1.5"]})
    pfile = write_plan(plan, tmp_path / "plans" / "search.csv")
    db = tmp_path / "r.db"
    rc = main(["campaign", "run", "lead_brake", str(pfile), "--db", str(db), "--label", "search",
               "--json"])  # fmt: skip
    assert rc == 0
    capsys.readouterr()
    out = tmp_path / "r.html"
    rc = main(["report", str(db), "--out", str(out), "--plan", str(pfile), "--top", "1", "--json"])
    s = json.loads(capsys.readouterr().out)
    page = out.read_text()
    assert rc == 0 and s["search_campaign"] == 1 and s["timelines"] == 1
    assert "Bayesian search (campaign 1)" in page and "search.csv" in page
    rc = main(["report", str(db), "--out", str(out), "--plan", str(tmp_path / "none.csv")])
    assert rc == 2 and "plan file not found" in capsys.readouterr().err
