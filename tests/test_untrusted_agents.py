"""An untrusted agent never hangs, crashes or misleads a campaign: a stack that raises, hangs,
returns a non-finite or malformed command under a fault is that fault's outcome
(``stack_failure``, naming what happened and where), never ``masked``; innocent faults are never
blamed; the agent's prints never reach DriveFI's stdout; a stack that fails with no fault stops
the command with exit 2 naming the step."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("carla")

FIX = Path(__file__).parent / "fixtures" / "misbehaving_agents.py"


def drivefi(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "drivefi", *map(str, args)], capture_output=True,
                          text=True, env=dict(os.environ), timeout=timeout)  # fmt: skip


PLAN = """# drivefi plan scenario=lead_brake steps=400
point,model,value,bit,start,duration,seed
planning.trigger,m-fixed,1.0,,60,5,0
control.throttle,m-fixed,1.0,,60,5,0
planning.trigger,1-fixed,1.0,,120,1,0
control.steer,m-fixed,0.0,,120,5,0
"""


@pytest.mark.parametrize(
    ("cls", "says"),
    [
        ("Raises", "raised RuntimeError at step 60: the planner lost its map"),
        ("Hangs", "timed out at step 60"),
        ("ReturnsNaN", "returned a non-finite command at step 60"),
        ("ReturnsTuple", "returned tuple at step 60; expected a carla.VehicleControl"),
        ("Exits", "called os._exit(3) at step 60"),
        ("SysExits", "called sys.exit(4) at step 60"),
        ("Prints", None),
    ],
)
def test_a_stack_failure_under_a_fault_is_its_outcome_and_innocent_faults_are_not_blamed(
    tmp_path, cls, says
):
    plan = tmp_path / "plan.csv"
    plan.write_text(PLAN)
    db = tmp_path / "r.db"
    r = drivefi("campaign", "run", "lead_brake", plan, "--db", db, "--agent", f"{FIX}:{cls}",
                "--agent-timeout", "1", "--workers", "2", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads(r.stdout)  # one JSON object: the agent's prints went elsewhere
    with sqlite3.connect(db) as con:
        rows = con.execute(
            "SELECT idx, status, outcome, error FROM outcomes ORDER BY idx"
        ).fetchall()
    assert [r[0] for r in rows] == [0, 1, 2, 3]  # one outcome per fault
    assert all(status == "ok" for _, status, _, _ in rows)
    innocent = [rows[1], rows[3]]
    assert all(o in ("masked", "hazard", "accident") for _, _, o, _ in innocent), rows
    guilty = [rows[0], rows[2]]
    if says is None:  # printing is no failure
        assert summary["stack_failure"] == 0 and "xxxx" in r.stderr
        return
    assert all(o == "stack_failure" for _, _, o, _ in guilty), rows
    assert says in guilty[0][3]
    assert f"{FIX}:" in guilty[0][3] or "exit" in says  # the agent's file and line
    assert summary["stack_failure"] == 2 and summary["error"] == 0 and summary["masked"] <= 2


@pytest.mark.parametrize(
    ("cls", "says"),
    [
        ("GoldenRaises", "raised RuntimeError at step 50: the planner lost its map"),
        ("GoldenHangs", "timed out at step 50"),
        ("GoldenNaN", "returned a non-finite command at step 50"),
        ("GoldenTuple", "returned tuple at step 50"),
        ("GoldenExits", "called os._exit(3) at step 50"),
    ],
)
@pytest.mark.parametrize("command", ["record", "pipeline"])
def test_a_stack_that_fails_with_no_fault_stops_the_command_naming_the_step(
    tmp_path, cls, says, command
):
    out = ["--out", tmp_path / ("g.parquet" if command == "record" else "o")]
    r = drivefi(command, "lead_brake", "--agent", f"{FIX}:{cls}", "--agent-timeout", "1", *out)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert says in lines[-1] and "golden run" in lines[-1] and "Traceback" not in r.stderr
    assert not (tmp_path / "g.parquet").exists() and not (tmp_path / "o" / "model.json").exists()


def _left_behind(tag: str) -> list[int]:
    """Processes still running that carry ``tag`` in their environment (the command's children)."""
    out = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if tag.encode() in (proc / "environ").read_bytes():
                out.append(int(proc.name))
        except OSError:
            pass
    return out


@pytest.mark.parametrize(
    "cls", ["Raises", "Hangs", "ReturnsNaN", "ReturnsTuple", "Exits", "Prints"]
)
def test_the_pipeline_finishes_on_an_agent_that_fails_under_faults(tmp_path, cls):
    import uuid

    unique = uuid.uuid4().hex
    tag = f"DRIVEFI_TEST_TAG={unique}"
    r = subprocess.run(
        [sys.executable, "-m", "drivefi", "pipeline", "lead_brake", "--agent", f"{FIX}:{cls}",
         "--out", str(tmp_path / "o"), "--budget", "5", "--training-runs", "24", "--durations",
         "5,20", "--rounds", "1", "--workers", "2", "--agent-timeout", "1", "--json"],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "DRIVEFI_TEST_TAG": unique},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads(r.stdout)  # one JSON object, whatever the agent printed
    assert s["injected"] == 5 and "Traceback" not in r.stderr
    time.sleep(0.5)
    assert not _left_behind(tag), "processes left behind"


def test_an_agent_that_prints_in_its_golden_run_keeps_json_valid(tmp_path):
    r = drivefi("record", "lead_brake", "--agent", f"{FIX}:GoldenPrints", "--out",
                tmp_path / "g.parquet", "--json")  # fmt: skip
    assert r.returncode == 0 and json.loads(r.stdout)["steps"] == 400
    assert "x" * 100 in r.stderr


def test_a_resumed_campaign_removes_the_temporary_traces_of_a_killed_writer(tmp_path):
    from drivefi.campaign.runner import run_campaign
    from drivefi.core import Fault
    from drivefi.faults.plan import Plan
    from drivefi.world.scenario import load_scenario

    sc = load_scenario("lead_brake")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    folder = tmp_path / "r.traces"
    folder.mkdir()
    stray = folder / f".c1_0000000.parquet.{dead}.0badc0de.tmp"
    mine = folder / f".c1_0000001.parquet.{os.getpid()}.0badc0de.tmp"  # a live writer's
    for f in (stray, mine):
        f.write_bytes(b"half a parquet file")
        os.utime(f, (0, 0))
    plan = Plan(sc.name, sc.steps, [Fault("control.steer", "m-fixed", 1.0, None, 60, 20, 0)])
    run_campaign(sc, plan, tmp_path / "r.db", keep_traces="all", progress=False)
    assert not stray.exists() and mine.exists()
    assert (folder / "c1_0000000.parquet").is_file()


@pytest.mark.parametrize("cls", ["Exits", "Raises"])
def test_with_one_worker_a_stack_that_exits_fails_its_run_not_the_command(tmp_path, cls):
    plan = tmp_path / "plan.csv"
    plan.write_text(PLAN)
    r = drivefi("campaign", "run", "lead_brake", plan, "--db", tmp_path / "r.db", "--agent",
                f"{FIX}:{cls}", "--workers", "1", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout)["stack_failure"] == 2


def test_a_zombie_campaign_counts_as_dead():
    """A killed campaign its parent has not reaped yet is a zombie: its workers must not take it
    for a live process (they watch it and exit with it)."""
    from drivefi.campaign.containment import pid_alive

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    for _ in range(200):  # exited, not reaped: a zombie
        if Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            break
        time.sleep(0.01)
    assert not pid_alive(child.pid)
    child.wait()
    assert not pid_alive(child.pid) and pid_alive(os.getpid())


def test_an_agent_past_the_worker_memory_limit_fails_its_run_and_innocents_are_not_blamed(tmp_path):
    plan = tmp_path / "plan.csv"
    plan.write_text(PLAN)
    db = tmp_path / "r.db"
    r = drivefi("campaign", "run", "lead_brake", plan, "--db", db, "--agent", f"{FIX}:Hoards",
                "--workers", "1", "--worker-memory", "3000", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads(r.stdout)
    assert (s["stack_failure"], s["error"], s["done"]) == (2, 0, 4)
    with sqlite3.connect(db) as con:
        reasons = [e for (e,) in con.execute("SELECT error FROM outcomes WHERE error IS NOT NULL")]
    assert all("raised MemoryError at step" in e for e in reasons), reasons


def test_debug_shows_the_agents_own_traceback(tmp_path):
    r = drivefi("--debug", "record", "lead_brake", "--agent", f"{FIX}:GoldenRaises",
                "--out", tmp_path / "g.parquet")  # fmt: skip
    assert r.returncode == 2
    first, rest = r.stderr.split("\n", 1)
    assert "lost its map" in first and "Traceback" in rest and f'File "{FIX}"' in rest


def test_worker_memory_with_ray_is_refused_not_ignored(tmp_path):
    plan = tmp_path / "plan.csv"
    plan.write_text(PLAN)
    r = drivefi("campaign", "run", "lead_brake", plan, "--db", tmp_path / "r.db", "--agent",
                f"{FIX}:Raises", "--executor", "ray", "--worker-memory", "3000")  # fmt: skip
    assert r.returncode == 2 and "--worker-memory" in r.stderr and not (tmp_path / "r.db").exists()
