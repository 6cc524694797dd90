"""What a user's agent gets beside the reference stack: its configuration file, replay of its
faults, a clear word when it fails with no fault, an output folder that is never mixed with
another stack's, a hint when CARLA's package is missing, and docs and examples in the sdist."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from drivefi.campaign.runner import run_campaign
from drivefi.campaign.store import ResultsStore
from drivefi.core import Fault
from drivefi.faults.plan import Plan
from drivefi.run.testbed import Testbed
from drivefi.world.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
AGENT = ROOT / "tests" / "fixtures" / "old_paths_agent.py"
SC = load_scenario("lead_brake")

CONFIGURED = """
import os
import carla
from drivefi.stacks.agent import AutonomousAgent


class Configured(AutonomousAgent):
    def setup(self, path_to_conf_file):
        with open(os.environ["DRIVEFI_TEST_CONF"], "a") as f:
            f.write(path_to_conf_file + "\\n")

    def sensors(self):
        return [{"type": "sensor.speedometer", "id": "speed"}]

    def run_step(self, input_data, timestamp):
        return carla.VehicleControl(throttle=0.0, brake=1.0)
"""

RECKLESS = '''
import carla
from drivefi.stacks.agent import AutonomousAgent


class Reckless(AutonomousAgent):
    """Full throttle, whatever is ahead: it rear-ends the lead with no fault at all."""

    def sensors(self):
        return [{"type": "sensor.speedometer", "id": "speed"}]

    def run_step(self, input_data, timestamp):
        return carla.VehicleControl(throttle=1.0)
'''


def drivefi(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "drivefi", *map(str, args)], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=600)  # fmt: skip


def test_agent_config_reaches_setup(tmp_path):
    agent, conf, log = tmp_path / "agent.py", tmp_path / "agent.json", tmp_path / "setups.txt"
    agent.write_text(CONFIGURED)
    conf.write_text("{}")
    r = drivefi("points", "--agent", f"{agent}:Configured", "--agent-config", conf, "--json",
                env={"DRIVEFI_TEST_CONF": str(log)})  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert log.read_text().split() == [str(conf.resolve())]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--agent-config", "{conf}"], "the reference ADS takes no configuration"),
        (["--agent", str(AGENT), "--agent-config", "{missing}"], "not found"),
    ],
)
def test_a_bad_agent_config_is_one_line_and_exit_2(tmp_path, args, says):
    conf = tmp_path / "c.json"
    conf.write_text("{}")
    args = [a.format(conf=conf, missing=tmp_path / "nope.json") for a in args]
    r = drivefi("points", *args)
    assert r.returncode == 2 and says in r.stderr and "--agent-config" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_replay_of_an_agents_critical_fault_reproduces_its_stored_outcome(tmp_path):
    fault = Fault("control.steer", "m-fixed", 1.0, None, 60, 20, 0)
    db = tmp_path / "r.db"
    s = run_campaign(SC, Plan(SC.name, SC.steps, [fault]), db, testbed=Testbed.of(str(AGENT)),
                     progress=False)  # fmt: skip
    assert s.critical == 1
    store = ResultsStore(db)
    stored = store.outcomes(1).iloc[0]
    store.close()
    r = drivefi("replay", "lead_brake", "--agent", AGENT, "--point", "control.steer", "--model",
                "m-fixed", "--value", "1.0", "--start", "60", "--duration", "20",
                "--out", tmp_path / "rp.parquet", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["outcome"] == stored["outcome"] and got["critical"] == bool(stored["critical"])
    for k in ("min_delta_lon", "min_delta_lat"):  # bit for bit
        assert got[k] == stored[k], (k, got[k], stored[k])
    assert got["first_hazard_s"] == stored["first_hazard_step"] * SC.dt


def test_an_unsafe_golden_run_is_announced_and_the_search_goes_on(tmp_path):
    agent = tmp_path / "reckless.py"
    agent.write_text(RECKLESS)
    r = drivefi("pipeline", "lead_brake", "--agent", f"{agent}:Reckless", "--out", tmp_path / "o",
                "--budget", "5", "--training-runs", "20", "--durations", "20", "--rounds", "0",
                "--workers", "1", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    unsafe = s["golden"]["hazard_step_list"]
    assert unsafe and s["golden"]["hazard_steps"] == len(unsafe)
    assert "golden run of lead_brake is unsafe" in r.stderr and f"k = {unsafe[0]}" in r.stderr


def test_an_out_folder_of_another_scenario_is_refused_before_anything_changes(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    assert drivefi("record", "cut_in", "--out", out / "golden.parquet").returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    args = ["pipeline", "lead_brake", "--out", out, "--budget", "2", "--training-runs", "10",
            "--durations", "20", "--rounds", "0", "--workers", "1", "--json"]  # fmt: skip
    r = drivefi(*args)
    assert r.returncode == 2 and "cut_in" in r.stderr and "--overwrite" in r.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    r = drivefi(*args, "--overwrite")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["golden"]["scenario"] == "lead_brake"


def test_an_agent_that_needs_carla_names_the_extra(tmp_path):
    agent = tmp_path / "needs_carla.py"
    agent.write_text(
        "import sys\nsys.modules['carla'] = None  # as if not installed\nimport carla\n"
    )
    r = drivefi("points", "--agent", f"{agent}:A")
    assert r.returncode == 2 and "pip install 'drivefi[carla]'" in r.stderr


def test_the_sdist_carries_docs_and_examples(tmp_path):
    code = (
        "import sys; from setuptools import build_meta; "
        f"print(build_meta.build_sdist({str(tmp_path)!r}))"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with tarfile.open(tmp_path / r.stdout.strip().splitlines()[-1]) as tar:
        names = tar.getnames()
    for want in ("docs/agents.md", "examples/agents/fsm_agent.py", "CHANGELOG.md"):
        assert any(n.endswith(want) for n in names), want


def test_replay_db_of_an_agents_campaign_runs_that_agent_and_refuses_an_edited_file(tmp_path):
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT.read_text())
    fault = Fault("control.steer", "m-fixed", 1.0, None, 60, 20, 0)
    db = tmp_path / "r.db"
    run_campaign(SC, Plan(SC.name, SC.steps, [fault]), db, testbed=Testbed.of(str(agent)),
                 progress=False)  # fmt: skip
    store = ResultsStore(db)
    stored = store.outcomes(1).iloc[0]
    store.close()
    args = ("replay", "--db", db, "--fault", "0", "--out", tmp_path / "f.parquet", "--json")
    r = drivefi(*args)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert (got["min_delta_lon"], got["min_delta_lat"]) == (
        stored["min_delta_lon"], stored["min_delta_lat"])  # fmt: skip
    agent.write_text(agent.read_text() + "\n# edited\n")
    r = drivefi(*args)
    assert r.returncode == 2 and "has changed since" in r.stderr and "campaign 1" in r.stderr


def test_the_report_of_an_agents_campaign_names_the_stack_and_gives_replay_commands(tmp_path):
    from drivefi.report import build_report

    fault = Fault("control.steer", "m-fixed", 1.0, None, 60, 20, 0)
    db = tmp_path / "r.db"
    tb = Testbed.of(str(AGENT))
    run_campaign(SC, Plan(SC.name, SC.steps, [fault]), db, testbed=tb, progress=False)
    build_report(db, tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert f"stack under test: {tb.stack.identity}" in page
    assert f"drivefi replay lead_brake --agent {AGENT.resolve()}" in page
    assert f"drivefi replay --db {db}" in page
