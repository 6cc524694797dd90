"""An agent that crashes its process in native code (SIGSEGV, a SIGKILL of its own) never takes a
campaign down: with ``--workers 1`` a user's agent runs in a pool of one worker process, so the
fault that crashes it is found and stored alone (``stack_failure`` naming the signal and the
agent's line when the fault handler saw the agent's step, else ``error`` naming the signal),
innocent faults get ordinary outcomes, and a resumed campaign does not run it again. A native
crash in the golden run of ``record`` / ``pipeline`` / ``campaign run`` ends the command with one
line naming the step and exit 2."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("carla")

FIX = Path(__file__).parent / "fixtures" / "native_crash_agents.py"

PLAN = """# drivefi plan scenario=lead_brake steps=400
point,model,value,bit,start,duration,seed
planning.trigger,m-fixed,1.0,,60,5,0
control.throttle,m-fixed,1.0,,60,5,0
control.steer,m-fixed,0.0,,120,5,0
planning.trigger,1-fixed,1.0,,120,1,0
"""


def drivefi(*args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "drivefi", *map(str, args)], capture_output=True,
                          text=True, env=dict(os.environ), timeout=timeout)  # fmt: skip


def outcomes(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute(
            "SELECT idx, status, outcome, attempts, error FROM outcomes ORDER BY idx"
        ).fetchall()


def test_a_segfault_under_a_fault_is_that_faults_stack_failure_with_one_worker(tmp_path):
    plan = tmp_path / "plan.csv"
    plan.write_text(PLAN)
    db = tmp_path / "r.db"
    run = ("campaign", "run", "lead_brake", plan, "--db", db, "--agent", f"{FIX}:Segfaults",
           "--workers", "1", "--json")  # fmt: skip
    r = drivefi(*run)
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads(r.stdout)
    assert (s["done"], s["stack_failure"], s["error"]) == (4, 2, 0), s
    rows = outcomes(db)
    assert [row[0] for row in rows] == [0, 1, 2, 3]
    innocent = [rows[1], rows[2]]
    assert all(st == "ok" and o in ("masked", "hazard", "accident") for _, st, o, _, _ in innocent)
    for _, status, outcome, attempts, error in (rows[0], rows[3]):
        assert (status, outcome, attempts) == ("ok", "stack_failure", 1), error
        assert "crashed the worker process (SIGSEGV" in error and "run_step" in error
        assert f"{FIX}:15 in misbehave" in error  # the agent's own line
    assert "Traceback" not in r.stderr
    again = drivefi(*run)  # resumed: the crashing faults have their outcome, none runs again
    assert again.returncode == 0 and json.loads(again.stdout)["ran_now"] == 0, again.stderr


def test_an_agent_that_kills_its_process_under_a_fault_is_an_error_naming_the_signal(tmp_path):
    plan = tmp_path / "plan.csv"
    plan.write_text("\n".join(PLAN.splitlines()[:4]) + "\n")  # one guilty, one innocent fault
    db = tmp_path / "r.db"
    r = drivefi("campaign", "run", "lead_brake", plan, "--db", db, "--agent",
                f"{FIX}:KillsItself", "--workers", "1", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads(r.stdout)
    assert (s["done"], s["error"], s["stack_failure"]) == (1, 1, 0), s
    (_, gs, go, ga, ge), (_, ist, io, _, _) = outcomes(db)
    assert (gs, go, ga) == ("error", None, 3)  # no trace of whose it was: retried, then stored
    assert "the worker process died (SIGKILL" in ge and "running this fault" in ge
    assert ist == "ok" and io in ("masked", "hazard", "accident")


SEGV = (f"crashed the process (SIGSEGV, segmentation fault) during the golden run of lead_brake, "
        f"step 50 ({FIX}:15 in misbehave)")  # fmt: skip
KILL = "the process died (SIGKILL, killed) during the golden run of lead_brake, step 50"


@pytest.mark.parametrize(
    ("cls", "says", "command"),
    [
        ("GoldenSegfaults", SEGV, "record"),
        ("GoldenSegfaults", SEGV, "pipeline"),
        ("GoldenSegfaults", SEGV, "campaign"),
        ("GoldenKillsItself", KILL, "record"),
    ],
)
def test_a_native_crash_in_the_golden_run_ends_the_command_with_one_line(
    tmp_path, cls, says, command
):
    if command == "campaign":
        plan = tmp_path / "plan.csv"
        plan.write_text(PLAN)
        args = ("campaign", "run", "lead_brake", plan, "--db", tmp_path / "r.db")
    else:
        out = tmp_path / ("g.parquet" if command == "record" else "o")
        args = (command, "lead_brake", "--out", out)
    r = drivefi(*args, "--agent", f"{FIX}:{cls}", "--json")
    assert r.returncode == 2, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert says in last and "stored results are kept" in last, last
    assert "Traceback" not in r.stderr and "Fatal Python error" not in r.stderr
    assert r.stdout == ""  # no half summary
    assert not (tmp_path / "g.parquet").exists() and not (tmp_path / "o" / "model.json").exists()


def test_the_bundled_stack_still_runs_in_process_with_one_worker():
    from drivefi.campaign.context import BatchContext
    from drivefi.campaign.executor import LocalExecutor
    from drivefi.run.testbed import Testbed
    from drivefi.world.scenario import load_scenario

    sc = load_scenario("lead_brake")
    ref = BatchContext(sc, sc.seed, Testbed(), "none", None)
    agent = BatchContext(sc, sc.seed, Testbed.of(f"{FIX}:Segfaults"), "none", None)
    assert LocalExecutor(1).in_process(ref) and not LocalExecutor(1).in_process(agent)
    assert not LocalExecutor(2).in_process(ref) and not LocalExecutor(1, 500).in_process(ref)
