"""Pins of the campaign reliability promises of the README ("What a campaign survives", Ray, the
CARLA server pool) that no other test checked, before the campaign code is restructured:

- SIGTERM and Ctrl-C of ``drivefi campaign run``: prompt non-zero exit, no worker left, claims
  given back, stored outcomes kept, a rerun completes with one outcome per fault;
- claims of a campaign killed with SIGKILL: taken over at once on the same host, after the lease
  from another host, no fault lost or run twice;
- a fault that kills its worker process: its batch is split until that fault alone is an error;
- Ray: a killed Ray worker's task runs again, a killed driver's campaign resumes;
- CARLA server pool: a killed driver's campaign resumes; every server out is exit 1;
- a killed ``campaign export``: the kill lands during the write, the previous file is intact.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from procs import alive, descendants, outcomes, rows

from drivefi.bridges.carla.simulator import CarlaSimulator
from drivefi.campaign.executor import LocalExecutor
from drivefi.campaign.runner import run_campaign
from drivefi.campaign.store import LEASE_S, ResultsStore
from drivefi.core import Fault
from drivefi.faults.plan import Plan, exhaustive, write_plan
from drivefi.run.testbed import Testbed
from drivefi.world.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
SC = load_scenario("lead_brake")  # 400 steps: the CLI runs bundled scenarios by name
SHORT = SC.model_copy(update={"duration": 5.0})  # 100 steps, for the API-level campaigns
POINTS = ["control.steer", "planning.target_speed"]


# -- helpers ---------------------------------------------------------------------------------------
def stored(db: Path) -> int:
    """Outcomes stored so far (0 while the store is being created)."""
    return _count(db, "outcomes")


def _count(db: Path, table: str) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0)
    except sqlite3.DatabaseError:
        return 0
    try:
        return con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    except sqlite3.DatabaseError:
        return 0
    finally:
        con.close()


def query(db: Path, sql: str, args: tuple = ()) -> list:
    con = sqlite3.connect(db, timeout=5.0)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def wait_until(cond, timeout: float, what: str, proc=None, step: float = 0.05):
    """Poll ``cond`` until true; fail naming ``what`` (and the process's stderr if it ended)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        if proc is not None and proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            pytest.fail(f"the process ended (rc {proc.returncode}) before {what}: {err[-2000:]}")
        time.sleep(step)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def outcome_rows(db: Path, idxs=None) -> list[tuple]:
    """The stored outcome rows (every column, ``finished`` included), of ``idxs`` only if given."""
    got = query(db, "SELECT * FROM outcomes ORDER BY idx")
    return got if idxs is None else [r for r in got if r[1] in set(idxs)]


def one_outcome_per_fault(db: Path, n: int) -> None:
    total, distinct, lo, hi = query(
        db, "SELECT COUNT(*), COUNT(DISTINCT idx), MIN(idx), MAX(idx) FROM outcomes"
    )[0]
    assert (total, distinct, lo, hi) == (n, n, 0, n - 1)


def same_outcomes(db: Path, ref: Path) -> None:
    """Every fault's stored outcome equals the clean run's (attempts aside)."""
    a, b = rows(db).drop(columns=["attempts"]), rows(ref).drop(columns=["attempts"])
    assert a.equals(b)


DRIVER = """
import json, sys
from drivefi.campaign.runner import run_campaign
from drivefi.faults.plan import read_plan
from drivefi.world.scenario import Scenario
sc_path, plan_path, db, kind, opts = sys.argv[1:6]
opts = json.loads(opts)
sc = Scenario.model_validate_json(open(sc_path).read())
extra = {}
if kind == "local":
    from drivefi.campaign.executor import LocalExecutor
    ex = LocalExecutor(opts.get("workers", 1))
elif kind == "ray":
    from drivefi.campaign.ray_executor import RayExecutor
    ex = RayExecutor(2)
else:
    from drivefi.campaign.carla_pool import CarlaPoolExecutor, Server
    from drivefi_fakes.server_pool import FakeServers
    pool = FakeServers(sc.model_dump_json(), opts["state"], tick_s=opts["tick_s"])
    ex = CarlaPoolExecutor([Server("127.0.0.1", p) for p in opts["ports"]], run_timeout=30.0)
    from drivefi.bridges.carla.simulator import CarlaSimulator
    from drivefi.run.testbed import Testbed
    extra = {"testbed": Testbed(CarlaSimulator({"timeout": 5.0, "client_factory": pool}))}
run_campaign(sc, read_plan(plan_path), db, ex, progress=False, batch_size=opts.get("batch_size"),
             **extra)
"""


def start_driver(tmp_path: Path, sc, plan: Plan, db: Path, kind: str, **opts) -> subprocess.Popen:
    """A campaign of ``plan`` on ``sc`` in a process of its own (its own session)."""
    sc_path = tmp_path / "scenario.json"
    sc_path.write_text(sc.model_dump_json())
    plan_path = write_plan(plan, tmp_path / "plan.csv")
    argv = [sys.executable, "-c", DRIVER, str(sc_path), str(plan_path), str(db), kind,
            json.dumps(opts)]  # fmt: skip
    return subprocess.Popen(argv, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip


def kill9(proc: subprocess.Popen) -> None:
    """SIGKILL the driver process only (as a user's ``kill -9 PID``), and reap it."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def pool_workers(root: int) -> set[int]:
    """The process-pool workers below ``root``: children of its forkserver (the forkserver itself
    lives as long as ``root`` by design)."""
    out = set()
    for p in descendants(root):
        try:
            parent = int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if "multiprocessing.forkserver" in cmdline(parent):
            out.add(p)
    return out


def cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def all_gone(pids: set[int], timeout: float) -> set[int]:
    t0 = time.time()
    while alive(pids) and time.time() - t0 < timeout:
        time.sleep(0.1)
    return alive(pids)


# -- 1. SIGTERM and Ctrl-C of `drivefi campaign run` -------------------------------------------------
@pytest.fixture(scope="module")
def cli_plan(tmp_path_factory):
    """500 faults of the 400-step lead_brake, the plan file and a clean run's store."""
    d = tmp_path_factory.mktemp("cli")
    plan = exhaustive(SC, POINTS, durations=[1], stride=8)
    run_campaign(SC, plan, d / "clean.db", progress=False)
    return plan, write_plan(plan, d / "p.csv"), d / "clean.db"


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig,group",
    [(signal.SIGTERM, False), (signal.SIGINT, True)],
    ids=["SIGTERM-to-the-driver", "Ctrl-C-to-the-process-group"],
)
def test_signalled_campaign_stops_promptly_cleanly_and_resumes(tmp_path, cli_plan, sig, group):
    plan, plan_path, clean = cli_plan
    n = len(plan.faults)
    db = tmp_path / "r.db"
    cmd = [sys.executable, "-m", "drivefi", "campaign", "run", "lead_brake", str(plan_path),
           "--db", str(db), "--json"]  # fmt: skip
    proc = subprocess.Popen([*cmd, "--workers", "2", "--batch-size", "10"], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    seen: set[int] = set()

    def running():
        seen.update(descendants(proc.pid))
        return len(seen) >= 3 and stored(db) >= 20  # forkserver + 2 workers, 2 batches stored

    wait_until(running, 120, "two stored batches", proc)
    seen |= descendants(proc.pid)
    before = stored(db)
    assert 0 < before < n, "the signal must land in the middle of the campaign"
    t0 = time.time()
    if group:
        os.killpg(proc.pid, sig)  # a terminal's Ctrl-C: SIGINT to the whole foreground group
    else:
        os.kill(proc.pid, sig)  # `kill PID`
    out, err = proc.communicate(timeout=60)
    took = time.time() - t0
    assert proc.returncode != 0 and out == "", (proc.returncode, out)
    assert proc.returncode == (143 if sig == signal.SIGTERM else 130)
    assert took < 10, f"took {took:.1f} s to stop"
    if sig == signal.SIGTERM:  # (Ctrl-C also reaches the workers: an idle one may print one)
        assert "Traceback" not in err, err[-2000:]
    assert not all_gone(seen, 5), f"left behind: {alive(seen)}"
    # every outcome written is kept (and nothing half-written); claims given back
    after = stored(db)
    assert before <= after < n
    assert query(db, "PRAGMA integrity_check") == [("ok",)]
    assert _count(db, "claims") == 0 and _count(db, "runners") == 0
    kept = outcome_rows(db)
    # the rerun resumes: it runs only the faults without an outcome, and ends with one per fault
    res = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads(res.stdout)
    assert (summary["ran_now"], summary["done"], summary["error"]) == (n - after, n, 0)
    one_outcome_per_fault(db, n)
    same_outcomes(db, clean)
    assert outcome_rows(db, [r[1] for r in kept]) == kept, "the rerun rewrote stored outcomes"


# -- 2. Claims of a campaign killed with SIGKILL ----------------------------------------------------
@pytest.fixture(scope="module")
def short_plan(tmp_path_factory):
    """500 faults of a 100-step lead_brake and a clean run's store."""
    d = tmp_path_factory.mktemp("short")
    plan = exhaustive(SHORT, POINTS, durations=[1], stride=2)
    run_campaign(SHORT, plan, d / "clean.db", progress=False)
    return plan, d / "clean.db"


def killed_with_claims(tmp_path: Path, plan: Plan, db: Path) -> list[int]:
    """Run ``plan`` in a process, SIGKILL it while it holds claims; the claimed fault indices."""
    proc = start_driver(tmp_path, SHORT, plan, db, "local", batch_size=10)
    try:
        wait_until(lambda: stored(db) >= 30, 120, "stored outcomes", proc)

        def stopped_with_claims():  # stopped, so its claims cannot go away before the kill
            os.kill(proc.pid, signal.SIGSTOP)
            if _count(db, "claims") > 0:
                return True
            os.kill(proc.pid, signal.SIGCONT)
            return False

        wait_until(stopped_with_claims, 60, "live claims", proc, step=0.01)
    finally:
        kill9(proc)
    claimed = [r[0] for r in query(db, "SELECT idx FROM claims ORDER BY idx")]
    assert claimed, "the kill must land while the campaign holds claims"
    assert stored(db) < len(plan.faults)
    assert not set(claimed) & {r[0] for r in query(db, "SELECT idx FROM outcomes")}
    assert query(db, "SELECT COUNT(*) FROM runners")[0][0] == 1  # the dead campaign's row
    return claimed


@pytest.mark.slow
def test_claims_of_a_killed_campaign_are_taken_over_at_once_on_the_same_host(tmp_path, short_plan):
    plan, clean = short_plan
    db = tmp_path / "r.db"
    claimed = killed_with_claims(tmp_path, plan, db)
    before = stored(db)
    t0 = time.time()
    s = run_campaign(SHORT, plan, db, LocalExecutor(1), progress=False, poll=0.1)  # lease: 30 s
    took = time.time() - t0
    assert took < LEASE_S / 2, f"{took:.1f} s: the dead process's claims waited for the lease"
    assert s.done == len(plan.faults) and s.error == 0 and s.ran_now == len(plan.faults) - before
    one_outcome_per_fault(db, len(plan.faults))
    assert set(claimed) <= {r[0] for r in query(db, "SELECT idx FROM outcomes")}
    assert _count(db, "claims") == 0 and _count(db, "runners") == 0
    same_outcomes(db, clean)


@pytest.mark.slow
def test_claims_of_a_campaign_on_another_host_are_taken_over_after_the_lease(tmp_path, short_plan):
    """The dead campaign's row is made to look like a campaign of another host that beat just
    now: its process cannot be checked, so its claims wait for the (short) lease to run out."""
    plan, clean = short_plan
    n = len(plan.faults)
    db = tmp_path / "r.db"
    claimed = killed_with_claims(tmp_path, plan, db)
    lease = 3.0
    marked = time.time()
    con = sqlite3.connect(db)
    con.execute("UPDATE runners SET host='another-host.invalid', heartbeat=?", (marked,))
    con.commit()
    con.close()
    before = stored(db)
    s = run_campaign(SHORT, plan, db, LocalExecutor(1), progress=False, lease=lease, poll=0.1)
    assert s.done == n and s.error == 0 and s.ran_now == n - before
    one_outcome_per_fault(db, n)
    fin = dict(query(db, "SELECT idx, finished FROM outcomes"))
    taken = [fin[i] for i in claimed]
    assert min(taken) >= marked + lease, "claims taken over before the lease ran out"
    assert max(taken) < marked + lease + 30, "claims taken over long after the lease ran out"
    assert _count(db, "claims") == 0 and _count(db, "runners") == 0
    same_outcomes(db, clean)


# -- 3. A fault that kills its worker process --------------------------------------------------------
KILLER_AGENT = """
import os
import signal

import carla

from drivefi.stacks.agent.loader import AutonomousAgent
from drivefi.inject import declare, inject

declare("planning.cruise", lo=0.0, hi=40.0, unit="m/s", doc="speed the agent holds")
declare("monitor.kill", lo=0.0, hi=1.0, doc="above 0.5: the agent's process is killed at once")


class Killer(AutonomousAgent):
    \"\"\"special_agents.Cruiser, but its process is killed (as by the OOM killer: an os._exit
    would only fail its run) while monitor.kill reads > 0.5.\"\"\"

    def setup(self, path_to_conf_file):
        self.integral = 0.0

    def sensors(self):
        return [{"type": "sensor.speedometer", "id": "speed"},
                {"type": "drivefi.observation", "id": "truth"}]

    def run_step(self, input_data, timestamp):
        if inject("monitor.kill", 0.0) > 0.5:
            os.kill(os.getpid(), signal.SIGKILL)
        speed = input_data["speed"][1]["speed"]
        truth = input_data["truth"][1]
        ahead = [o["ds"] for o in truth["objects"] if o["ds"] > 0 and abs(o["dd"]) < 2.0]
        cruise = truth["set_speed"] if not ahead or min(ahead) > 40.0 else 0.0
        err = inject("planning.cruise", cruise) - speed
        self.integral = max(min(self.integral + err * truth["dt"], 5.0), -5.0)
        a = 0.8 * err + 0.1 * self.integral
        return carla.VehicleControl(throttle=min(max(a / 3.5, 0.0), 1.0), steer=0.0,
                                    brake=min(max(-a / 9.5, 0.0), 1.0))
"""
KILLER_IDX = 5


@pytest.fixture(scope="module")
def worker_killing_campaign(tmp_path_factory):
    """16 innocent faults and, at plan index 5, one that makes the agent's process exit: the
    campaign on 2 workers in batches of 4, and the innocent faults alone on 1 worker."""
    d = tmp_path_factory.mktemp("killer")
    (d / "killer_agent.py").write_text(KILLER_AGENT)
    agent = f"{d / 'killer_agent.py'}:Killer"
    innocent = [Fault("planning.cruise", "m-fixed", v, None, k, 10, 0)
                for k in range(10, 90, 10) for v in (0.0, 30.0)]  # fmt: skip
    faults = list(innocent)
    faults.insert(KILLER_IDX, Fault("monitor.kill", "m-fixed", 1.0, None, 40, 5, 0))
    plan = Plan(SHORT.name, SHORT.steps, faults)
    me = os.getpid()
    before = pool_workers(me)
    s = run_campaign(SHORT, plan, d / "k.db", LocalExecutor(2), Testbed.of(agent), progress=False,
                     batch_size=4)  # fmt: skip
    left = all_gone(pool_workers(me) - before, 5)
    run_campaign(SHORT, Plan(SHORT.name, SHORT.steps, innocent), d / "ref.db", LocalExecutor(1),
                 Testbed.of(agent), progress=False)  # fmt: skip
    return s, plan, d / "k.db", d / "ref.db", left


COMPARED = ["point", "model", "value", "start", "duration", "status", "outcome", "min_delta_lon",
            "min_delta_lat", "first_hazard_step", "collision_step", "departure_step",
            "golden_safe", "critical"]  # fmt: skip


@pytest.mark.slow
def test_a_fault_that_kills_its_worker_is_stored_as_an_error_and_the_campaign_completes(
    worker_killing_campaign,
):
    s, plan, db, ref, left = worker_killing_campaign
    n = len(plan.faults)
    assert s.planned == n and s.done + s.error == n and s.ran_now == n
    one_outcome_per_fault(db, n)
    got = outcomes(db)
    k = got.loc[got["idx"] == KILLER_IDX].iloc[0]
    assert k["status"] == "error" and pd.isna(k["outcome"])
    assert (
        k["error"].startswith("the worker process died (SIGKILL")
        and "running this fault" in k["error"]
    )
    assert k["attempts"] >= 3  # MAX_BREAKS pools broken before it is given up
    assert _count(db, "claims") == 0 and _count(db, "runners") == 0
    assert not left, f"pool workers left behind: {left}"
    # the innocent faults that have an outcome have the one they have when run alone
    ok = got[got["status"] == "ok"][COMPARED].reset_index(drop=True)
    alone = outcomes(ref)[COMPARED]
    merged = ok.merge(alone, on=["point", "model", "value", "start", "duration"], how="left",
                      suffixes=("", "_alone"), indicator=True)  # fmt: skip
    assert (merged["_merge"] == "both").all()
    for c in COMPARED[5:]:
        assert merged[c].tolist() == merged[f"{c}_alone"].tolist(), c


@pytest.mark.slow
def test_only_the_fault_that_kills_its_worker_is_stored_as_an_error(worker_killing_campaign):
    s, plan, db, _, _ = worker_killing_campaign
    got = outcomes(db)
    errors = sorted(got.loc[got["status"] == "error", "idx"])
    assert errors == [KILLER_IDX], f"innocent faults stored as errors: {errors}"
    assert s.error == 1 and s.done == len(plan.faults) - 1


# -- 6. A killed export --------------------------------------------------------------------------
N_EXPORT = 40_000


def big_store(db: Path) -> tuple[object, object]:
    """A store of N_EXPORT faults, half of them with (synthetic) outcomes; the campaign and the
    fault-to-row function to finish it."""
    faults = [Fault("control.steer", "1-fixed", (i % 7) / 7, None, i % 399, 1, 0)
              for i in range(N_EXPORT)]  # fmt: skip
    store = ResultsStore(db, write=True)
    camp = store.open_campaign(SC.name, "synthetic", SC.seed, "embedded", faults, {})

    def row(i):
        return {"idx": i, "status": "ok", "outcome": "masked", "min_delta_lon": i / 3,
                "min_delta_lat": 1.5, "first_hazard_step": -1, "collision_step": -1,
                "departure_step": -1, "golden_safe": 1, "critical": 0, "attempts": 1}  # fmt: skip

    store.write(camp, [row(i) for i in range(N_EXPORT // 2)])
    store.close()
    return camp, row


@pytest.mark.slow
def test_a_kill_during_the_export_write_leaves_the_previous_export_intact(tmp_path):
    db = tmp_path / "big.db"
    camp, row = big_store(db)
    out = tmp_path / "x.csv"
    cmd = [sys.executable, "-m", "drivefi", "campaign", "export", "--db", str(db),
           "--csv", str(out)]  # fmt: skip
    assert subprocess.run(cmd, env=ENV, capture_output=True, timeout=120).returncode == 0
    previous = out.read_bytes()  # the export of the half-done campaign
    assert previous.count(b"\n") == N_EXPORT + 1
    store = ResultsStore(db, write=True)
    store.write(camp, [row(i) for i in range(N_EXPORT // 2, N_EXPORT)])
    store.close()
    landed = []
    for _ in range(5):
        proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        tmp = None
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:  # busy: the write lasts ~0.3 s
            found = list(tmp_path.glob(".x.csv.*.tmp"))
            if found and found[0].stat().st_size > 0:
                tmp = found[0]
                break
        proc.kill()
        proc.wait()
        text = out.read_bytes()
        assert text == previous or text.count(b"\n") == N_EXPORT + 1  # never a partial file
        if tmp is not None and tmp.exists():  # killed between its first bytes and the rename
            landed.append((tmp.read_bytes(), text))
            tmp.unlink()
            break
    assert landed, "no kill landed during the write"
    partial, dest = landed[0]
    assert dest == previous, "the kill during the write changed the destination"
    assert partial.count(b"\n") < N_EXPORT + 1, "the temporary file was already complete"
    assert partial.startswith(previous.split(b"\n", 1)[0])  # a CSV being written, header first
    # the same export, not killed, replaces the file whole
    assert subprocess.run(cmd, env=ENV, capture_output=True, timeout=120).returncode == 0
    new = out.read_bytes()
    assert new != previous and new.count(b"\n") == N_EXPORT + 1
    assert new.startswith(partial.rsplit(b"\n", 1)[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.db", "x.csv"]


# -- 4. Ray: a killed worker's task runs again; a killed driver's campaign resumes ------------------
# (the Ray and server-pool tests come last: they share one Ray session of this process)
@pytest.fixture(scope="module")
def ray_session():
    """One local Ray in this process for the Ray and server-pool tests (the executors reuse it)."""
    pytest.importorskip("ray")
    from drivefi.campaign.ray_session import RaySession

    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = ENV["PYTHONPATH"]  # Ray's workers import this checkout's drivefi
    s = RaySession(num_cpus=2)
    try:
        s.start()
        yield s
    finally:
        s.close()
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


@pytest.mark.slow
def test_ray_retries_a_killed_workers_task_and_a_killed_driver_resumes(
    tmp_path, short_plan, ray_session
):
    from drivefi.campaign.ray_executor import TASK_RETRIES, RayExecutor

    assert TASK_RETRIES >= 1
    plan, clean = short_plan
    n = len(plan.faults)
    db = tmp_path / "r.db"
    proc = start_driver(tmp_path, SHORT, plan, db, "ray", batch_size=3)
    seen: set[int] = set()
    try:
        busy: list[int] = []

        def working():
            seen.update(descendants(proc.pid))
            busy[:] = [p for p in seen if cmdline(p).startswith("ray::run_batch")]
            return stored(db) >= 6 and busy

        def stopped_in_a_task():  # stopped, so the kill lands while it runs the batch
            if not working():
                return False
            os.kill(busy[0], signal.SIGSTOP)
            if cmdline(busy[0]).startswith("ray::run_batch"):
                return True
            os.kill(busy[0], signal.SIGCONT)
            return False

        wait_until(stopped_in_a_task, 120, "a Ray worker running a batch", proc)
        os.kill(busy[0], signal.SIGKILL)  # as the OOM killer would
        killed_at, t_kill = stored(db), time.time()
        assert killed_at < n / 2
        # without a retry the task's error would end the campaign within a second or so
        wait_until(lambda: time.time() - t_kill > 2.5 and stored(db) >= killed_at + 30, 120,
                   "the campaign going on after the Ray worker was killed", proc)  # fmt: skip
        assert not alive([busy[0]])
        seen |= descendants(proc.pid)
    finally:
        kill9(proc)
    before = stored(db)
    assert before < n, "the driver must be killed in the middle of the campaign"
    assert "Traceback" not in proc.stderr.read()
    assert not all_gone(seen, 10), f"left behind: {alive(seen)}"
    # resume under Ray: only the faults without an outcome run, one outcome per fault in the end
    s = run_campaign(SHORT, plan, db, RayExecutor(2), progress=False)
    assert (s.ran_now, s.done, s.error) == (n - before, n, 0)
    one_outcome_per_fault(db, n)
    assert _count(db, "claims") == 0 and _count(db, "runners") == 0
    same_outcomes(db, clean)


# -- 5. CARLA server pool (fake servers): a killed driver resumes; every server out is exit 1 ---------
PORTS = (2000, 2002)


@pytest.fixture(scope="module")
def pool_scenario(tmp_path_factory):
    """lead_brake cut to 2 s (40 steps), as a scenario file the CLI can load, and 16 faults."""
    pytest.importorskip("carla")
    from drivefi.faults.plan import random_plan

    path = tmp_path_factory.mktemp("pool") / "lead_brake.yaml"
    text = (ROOT / "scenarios" / "lead_brake.yaml").read_text()
    assert "duration: 20.0" in text
    path.write_text(text.replace("duration: 20.0", "duration: 2.0"))
    sc = load_scenario(path)
    return sc, path, random_plan(sc, "m-random", 16, 8, seed=3)


def pool_executor(servers=PORTS, **kw):
    from drivefi.campaign.carla_pool import CarlaPoolExecutor, Server

    return CarlaPoolExecutor([Server("127.0.0.1", p) for p in servers], **kw)


@pytest.mark.slow
def test_a_killed_pool_driver_resumes_and_its_actors_die_with_it(
    tmp_path, pool_scenario, ray_session
):
    from drivefi_fakes.server_pool import FakeServers

    sc, _, plan = pool_scenario
    n = len(plan.faults)
    db = tmp_path / "pool.db"
    state = tmp_path / "state"
    proc = start_driver(tmp_path, sc, plan, db, "pool", state=str(state), tick_s=0.02,
                        ports=list(PORTS))  # fmt: skip
    seen: set[int] = set()
    try:

        def running():
            seen.update(descendants(proc.pid))
            return stored(db) >= 3

        wait_until(running, 120, "3 faults stored by the pool", proc)
        seen |= descendants(proc.pid)
        actors = [p for p in seen if cmdline(p).startswith("ray::ServerWorker")]
        assert len(actors) == len(PORTS), [cmdline(p)[:40] for p in seen]
    finally:
        kill9(proc)
    before = outcome_rows(db)
    assert 3 <= len(before) < n, "the driver must be killed in the middle of the campaign"
    assert not all_gone(seen, 10), f"left behind: {[cmdline(p)[:60] for p in alive(seen)]}"
    # rerun on the same servers: the faults without an outcome run, the stored ones stay
    pool = FakeServers(sc.model_dump_json(), str(state))  # unpaced: the same outcomes, sooner
    ex = pool_executor(run_timeout=30.0)
    try:
        tb = Testbed(CarlaSimulator({"timeout": 5.0, "client_factory": pool}))
        s = run_campaign(sc, plan, db, ex, tb, progress=False)
    finally:
        ex.close()
    assert (s.ran_now, s.done, s.error) == (n - len(before), n, 0)
    one_outcome_per_fault(db, n)
    assert outcome_rows(db, [r[1] for r in before]) == before
    assert _count(db, "claims") == 0 and _count(db, "runners") == 0


@pytest.mark.slow
def test_every_pool_server_out_is_exit_1_and_the_stored_outcomes_stay(
    tmp_path, pool_scenario, ray_session, capsys, monkeypatch
):
    """Through the command line (the fake servers' client factory put into its bridge options):
    each server runs one fault, crashes on its next and, with no restart command, stays down."""
    from drivefi_fakes.server_pool import FakeServers

    import drivefi.cli.campaign as cli_campaign
    from drivefi.cli import main

    sc, sc_path, plan = pool_scenario
    n = len(plan.faults)
    state = tmp_path / "state"
    script = tuple((p, "crash", 3, 5) for p in PORTS)  # run 1 is the golden run
    pool = FakeServers(sc.model_dump_json(), str(state), script)
    real = cli_campaign.executor_and_simulator

    def with_fakes(*args):
        ex, simulator = real(*args)
        return ex, simulator.with_options(client_factory=pool)

    monkeypatch.setattr(cli_campaign, "executor_and_simulator", with_fakes)
    plan_path = write_plan(plan, tmp_path / "p.csv")
    db = tmp_path / "r.db"
    argv = ["campaign", "run", str(sc_path), str(plan_path), "--db", str(db), "--sim", "carla",
            "--carla-servers", ",".join(f"127.0.0.1:{p}" for p in PORTS), "--carla-timeout", "2",
            "--json"]  # fmt: skip
    t0 = time.time()
    rc = main(argv)
    took = time.time() - t0
    out, err = capsys.readouterr()
    assert rc == 1, err
    assert out == "" and "Traceback" not in err
    line = "error: every CARLA server of the pool failed and was taken out (127.0.0.1:2000, "
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith(line), err
    assert "run again to resume" in lines[0]
    assert took < 60
    store = ResultsStore(db)
    c = store.campaigns()[0]
    store.close()
    assert (c["planned"], c["done"], c["error"], c["pending"]) == (n, len(PORTS), 0, n - len(PORTS))
    before = outcome_rows(db)
    assert [r[2] for r in before] == ["ok"] * len(PORTS)
    assert _count(db, "claims") == 0 and _count(db, "runners") == 0
    # the servers restarted by hand: the same command resumes and completes
    for p in PORTS:
        (state / f"{p}.revive").touch()
    assert main(argv) == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    assert (summary["ran_now"], summary["done"], summary["error"]) == (n - len(PORTS), n, 0)
    one_outcome_per_fault(db, n)
    assert outcome_rows(db, [r[1] for r in before]) == before
