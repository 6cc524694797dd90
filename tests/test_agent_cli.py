"""``--agent`` on the command line: the chosen stack runs, a bad one is one line and exit 2."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from drivefi.cli import main
from drivefi.run.trace import read_trace
from drivefi.stacks import stack_identity

pytest.importorskip("carla")

FIX = Path(__file__).parent / "fixtures"
AGENT = str(FIX / "carla_style_agent.py")


def run(capsys, *argv) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("/nonexistent.py:Nope", r"--agent /nonexistent.py:Nope: agent file not found"),
        (
            f"{FIX / 'leaderboard_agent.py'}:Nope",
            r"leaderboard_agent.py:Nope: .* has no class 'Nope'",
        ),
    ],
)
def test_bad_agent_is_one_line_and_exit_2(capsys, tmp_path, spec, expected):
    for argv in (
        ["record", "lead_brake", "--agent", spec, "--out", str(tmp_path / "t.parquet")],
        ["points", "--agent", spec],
        [
            "plan",
            "random",
            "lead_brake",
            "--model",
            "1-random",
            "--count",
            "3",
            "--agent",
            spec,
            "--out",
            str(tmp_path / "p.csv"),
        ],
    ):
        rc, _, err = run(capsys, *argv)
        assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert re.search(expected, " ".join(err.split())), err
    assert not (tmp_path / "t.parquet").exists()


def test_record_points_plan_and_campaign_with_an_agent(capsys, tmp_path):
    rc, out, _ = run(capsys, "points", "--agent", AGENT, "--json")
    pts = json.loads(out)
    assert rc == 0 and pts["stack"] == stack_identity(AGENT)
    assert [p["name"] for p in pts["points"]][4:] == ["perception.lead_gap", "planning.lookahead"]
    assert pts["points"][4] | {"doc": ""} == {"name": "perception.lead_gap", "lo": 0.0, "hi": 150.0,
                                             "unit": "m", "module": "perception", "doc": ""}  # fmt: skip

    ref, mine = tmp_path / "ref.parquet", tmp_path / "mine.parquet"
    assert run(capsys, "record", "lead_brake", "--out", str(ref), "--json")[0] == 0
    rc, out, _ = run(capsys, "record", "lead_brake", "--agent", AGENT, "--out", str(mine), "--json")
    assert rc == 0 and json.loads(out)["stack"] == stack_identity(AGENT)
    a, b = read_trace(ref), read_trace(mine)
    assert a.meta["stack"] == "reference" and b.meta["stack"] == stack_identity(AGENT)
    assert not a.frame["throttle"].equals(b.frame["throttle"])

    plan = tmp_path / "plan.csv"
    rc, _, err = run(capsys, "plan", "exhaustive", "lead_brake", "--points", "perception.lead_gap",
                     "--durations", "20", "--stride", "100", "--out", str(plan))  # fmt: skip
    assert (
        rc == 2 and "unknown injection point 'perception.lead_gap'" in err
    )  # not a reference point
    rc, out, _ = run(capsys, "plan", "exhaustive", "lead_brake", "--agent", AGENT, "--points",
                     "perception.lead_gap", "--durations", "20", "--stride", "100",
                     "--out", str(plan), "--json")  # fmt: skip
    assert rc == 0 and json.loads(out)["faults"] == 4 * 5
    rc, _, err = run(
        capsys, "campaign", "run", "lead_brake", str(plan), "--db", str(tmp_path / "r.db")
    )
    assert rc == 2 and "perception.lead_gap" in err  # the reference ADS cannot run this plan
    rc, out, _ = run(capsys, "campaign", "run", "lead_brake", str(plan), "--db", str(tmp_path / "r.db"),
                     "--agent", AGENT, "--keep-traces", "all", "--json")  # fmt: skip
    s = json.loads(out)
    assert rc == 0 and s["done"] == 20 and s["stack"] == stack_identity(AGENT)
    assert len(list((tmp_path / "r.traces").glob("*.parquet"))) == 20
    # replay --db re-runs the campaign's own stack: the agent (its file unchanged), never the
    # reference in its place
    rc, out, err = run(capsys, "replay", "--db", str(tmp_path / "r.db"), "--fault", "0",
                       "--out", str(tmp_path / "f.parquet"), "--json")  # fmt: skip
    assert rc == 0, err
    assert read_trace(tmp_path / "f.parquet").meta["stack"] == stack_identity(AGENT)
    rc, out, _ = run(capsys, "plan", "random", "lead_brake", "--model", "1-random", "--count", "10",
                     "--points", "planning.lookahead", "--agent", AGENT, "--out", str(plan), "--json")  # fmt: skip
    assert rc == 0 and json.loads(out)["faults"] == 10
