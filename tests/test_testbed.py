"""The testbed (simulator + stack under test) is resolved once and passed down: an agent file is
imported and set up once per process of a campaign, agents written against the old import paths
run unchanged (with one warning), and a testbed travels to worker processes as a value."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections import Counter
from pathlib import Path

from drivefi.bridges.embedded import EMBEDDED
from drivefi.run.testbed import Testbed
from drivefi.stacks import StackSpec

FIX = Path(__file__).parent / "fixtures"
OLD = FIX / "old_paths_agent.py"


def drivefi(*args, env=None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "drivefi", *map(str, args)], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, cwd=cwd, timeout=300)  # fmt: skip


def test_stack_spec_and_testbed_are_values():
    assert StackSpec.of("reference") == StackSpec.of(None) == StackSpec.of("") == StackSpec()
    assert StackSpec.of(" reference ").replayable and not StackSpec.of(str(OLD)).replayable
    tb = Testbed.of(str(OLD))
    assert tb.simulator is EMBEDDED and tb.stack.agent == str(OLD)
    assert pickle.loads(pickle.dumps(tb)) == tb
    assert Testbed().replay_spec == {"simulator": "embedded", "agent": None}
    assert Testbed.from_replay_spec(Testbed().replay_spec) == Testbed()
    assert tb.replay_spec is None and tb.keeps_traces == "hazards"  # an agent file may change


def test_an_agent_on_the_old_import_path_runs_unchanged_with_one_warning(tmp_path):
    r = drivefi("record", "lead_brake", "--agent", OLD, "--out", tmp_path / "g.parquet", "--json")
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if "Warning" in line]
    assert len(warnings) == 1 and "FutureWarning" in warnings[0], r.stderr
    assert "drivefi.ads.agent_loader is deprecated" in warnings[0]
    assert "drivefi.stacks.agent" in warnings[0] and str(OLD) in warnings[0]


def test_the_other_old_import_path_warns_too(tmp_path):
    agent = tmp_path / "agent.py"
    agent.write_text(
        OLD.read_text().replace(
            "from drivefi.ads.agent_loader import AutonomousAgent",
            "from drivefi.bridges.carla.agent import AutonomousAgent",
        )
    )
    r = drivefi("points", "--agent", agent, "--json")
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if "Warning" in line]
    assert len(warnings) == 1 and "drivefi.bridges.carla.agent is deprecated" in warnings[0]


def test_an_agent_file_is_set_up_once_per_process_of_a_campaign(tmp_path):
    setups = tmp_path / "setups.txt"
    env = {"DRIVEFI_TEST_SETUPS": str(setups)}
    plan = tmp_path / "plan.csv"
    r = drivefi("plan", "random", "lead_brake", "--model", "1-random", "--count", "24",
                "--agent", OLD, "--out", plan, env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr
    setups.unlink()
    r = drivefi("campaign", "run", "lead_brake", plan, "--db", tmp_path / "r.db", "--agent", OLD,
                "--workers", "2", "--json", env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr
    per_process = Counter(setups.read_text().split())
    assert per_process and max(per_process.values()) == 1, per_process
