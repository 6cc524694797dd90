"""The results store and the local executor under hostile use: foreign files, read-only stores,
errors, concurrent campaigns, killed campaigns and workers, atomic exports."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from procs import alive, descendants, rows

from drivefi.campaign.executor import LocalExecutor
from drivefi.campaign.runner import run_campaign
from drivefi.campaign.store import SCHEMA_VERSION, ResultsStore
from drivefi.cli import main
from drivefi.errors import InputError
from drivefi.faults.plan import exhaustive, write_plan
from drivefi.util.atomic import atomic_path
from drivefi.world.scenario import load_scenario

SC = load_scenario("lead_brake")
ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


def small_plan(stride=100, durations=(1, 5)):
    return exhaustive(
        SC, ["control.steer", "planning.target_speed"], durations=list(durations), stride=stride
    )


@pytest.fixture(scope="module")
def done_db(tmp_path_factory):
    d = tmp_path_factory.mktemp("done")
    plan = small_plan()
    run_campaign(SC, plan, d / "r.db", progress=False)
    return d / "r.db", write_plan(plan, d / "p.csv")


# -- the store's identity ----------------------------------------------------------------------
def foreign_sqlite(path: Path) -> bytes:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE users (name TEXT)")
    con.execute("INSERT INTO users VALUES ('ada')")
    con.commit()
    con.close()
    return path.read_bytes()


@pytest.mark.parametrize(
    "argv",
    [
        ["campaign", "status"],
        ["campaign", "export", "--csv", "X"],
        ["campaign", "run", "lead_brake", "PLAN"],
        ["report", "--out", "X"],
    ],
)
def test_foreign_sqlite_file_is_refused_and_left_byte_identical(tmp_path, capsys, argv, done_db):
    db = tmp_path / "foreign.sqlite"
    before = foreign_sqlite(db)
    argv = [a.replace("X", str(tmp_path / "out")).replace("PLAN", str(done_db[1])) for a in argv]
    argv = [*argv[:1], str(db), *argv[1:]] if argv[0] == "report" else [*argv, "--db", str(db)]
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and "not a DriveFI results database" in err and str(db) in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert db.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign.sqlite"]


def test_store_is_marked_with_a_schema_version(done_db):
    con = sqlite3.connect(done_db[0])
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    meta = dict(con.execute("SELECT key, value FROM drivefi_meta").fetchall())
    assert meta["format"] == "drivefi-results" and meta["schema"] == str(SCHEMA_VERSION)
    con.close()


def test_newer_schema_and_text_files_refused(tmp_path, done_db):
    newer = tmp_path / "newer.db"
    newer.write_bytes(done_db[0].read_bytes())
    con = sqlite3.connect(newer)
    con.execute("UPDATE drivefi_meta SET value='99' WHERE key='schema'")
    con.commit()
    con.close()
    with pytest.raises(InputError, match="schema version 99"):
        ResultsStore(newer)
    txt = tmp_path / "notes.db"
    txt.write_text("hello")
    with pytest.raises(InputError, match="not an SQLite file"):
        ResultsStore(txt, write=True)
    assert txt.read_text() == "hello"


def test_read_only_store_can_be_read(tmp_path, done_db, capsys):
    db = tmp_path / "ro.db"
    db.write_bytes(done_db[0].read_bytes())
    before = db.read_bytes()
    db.chmod(0o444)
    tmp_path.chmod(0o555)
    try:
        store = ResultsStore(db)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store.db.execute("CREATE TABLE x (a)")  # opened with mode=ro, even as root
        store.close()
        assert main(["campaign", "status", "--db", str(db), "--json"]) == 0
        status = json.loads(capsys.readouterr().out)
        assert status["campaigns"][0]["done"] == 80
        out = tmp_path.parent / f"{tmp_path.name}-export.csv"
        assert main(["campaign", "export", "--db", str(db), "--csv", str(out)]) == 0
        assert len(out.read_text().splitlines()) == 81
    finally:
        tmp_path.chmod(0o755)
    assert db.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ro.db"]


def test_export_of_an_unknown_campaign_exit_2(tmp_path, capsys, done_db):
    out = tmp_path / "x.csv"
    rc = main(
        ["campaign", "export", "--db", str(done_db[0]), "--csv", str(out), "--campaign", "999"]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "campaign 999" in err and "campaigns: 1" in err
    assert not out.exists()


def test_status_counts_errors_apart_and_the_store_gives_their_reasons(tmp_path, capsys):
    plan = small_plan(stride=200, durations=(1,))
    db = tmp_path / "e.db"
    store = ResultsStore(db, write=True)
    camp = store.open_campaign(SC.name, plan.digest(), SC.seed, "carla", plan.faults, {})
    store.write(camp, [{"idx": i, "status": "error", "attempts": 3, "error": f"tick {i} timed out"}
                       for i in range(len(plan.faults))])  # fmt: skip
    store.close()
    assert main(["campaign", "status", "--db", str(db), "--json"]) == 0
    c = json.loads(capsys.readouterr().out)["campaigns"][0]
    assert (c["planned"], c["done"], c["error"], c["pending"]) == (
        len(plan.faults),
        0,
        len(plan.faults),
        0,
    )
    errors = ResultsStore(db).errors(camp.id)
    assert list(errors["error"]) == [f"tick {i} timed out" for i in range(len(plan.faults))]
    assert main(["campaign", "errors", "--db", str(db), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["errors"]
    assert shown[0]["error"] == "tick 0 timed out" and shown[0]["attempts"] == 3


# -- atomic outputs ------------------------------------------------------------------------------
def test_atomic_writers_never_share_a_temp_file(tmp_path):
    target = tmp_path / "same.txt"
    errors = []

    def write(k):
        try:
            for _ in range(30):
                with atomic_path(target) as tmp:
                    tmp.write_text(str(k) * 1000)
        except Exception as err:  # pragma: no cover - what the test looks for
            errors.append(err)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    text = target.read_text()
    assert len(text) == 1000 and len(set(text)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["same.txt"]


@pytest.mark.parametrize(
    "make,needle",
    [(lambda p: p.mkdir(), "is a folder"), (lambda p: None, "is a file, not a folder")],
)
def test_bad_export_destinations_exit_2(tmp_path, capsys, done_db, make, needle):
    out = tmp_path / "dest.csv"
    make(out)
    if "not a folder" in needle:
        (tmp_path / "afile").write_text("x")
        out = tmp_path / "afile" / "x.csv"
    rc = main(["campaign", "export", "--db", str(done_db[0]), "--csv", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and "Traceback" not in err


def test_export_to_a_full_disk_exit_2(capsys, done_db):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    rc = main(["campaign", "export", "--db", str(done_db[0]), "--csv", "/dev/full"])
    err = capsys.readouterr().err
    assert rc == 2 and "/dev/full" in err and "Traceback" not in err


@pytest.mark.slow
def test_killed_export_never_leaves_a_truncated_csv(tmp_path, done_db):
    out = tmp_path / "x.csv"
    out.write_text("previous,export\n")
    cmd = [
        sys.executable,
        "-m",
        "drivefi",
        "campaign",
        "export",
        "--db",
        str(done_db[0]),
        "--csv",
        str(out),
    ]
    for delay in (0.5, 1.0, 1.5, 2.0, 3.0):
        p = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        p.kill()
        p.wait()
        text = out.read_text()
        assert text == "previous,export\n" or len(text.splitlines()) == 81


# -- concurrent campaigns and killed processes -----------------------------------------------------
def stored(db: Path) -> int:
    """Outcomes stored so far (0 while the store is being created)."""
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0)
    except sqlite3.DatabaseError:
        return 0
    try:
        return con.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0]
    except sqlite3.DatabaseError:
        return 0
    finally:
        con.close()


def _run_cmd(db, plan_path, *extra):
    return [sys.executable, "-m", "drivefi", "campaign", "run", "lead_brake", str(plan_path),
            "--db", str(db), "--json", *extra]  # fmt: skip


@pytest.mark.slow
def test_two_campaigns_on_one_db_share_the_work_and_keep_traces_without_races(tmp_path):
    plan = small_plan(stride=20)
    plan_path = write_plan(plan, tmp_path / "p.csv")
    db = tmp_path / "shared.db"
    cmd = _run_cmd(db, plan_path, "--batch-size", "10", "--keep-traces", "all")
    procs = [subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]  # fmt: skip
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    sums = [json.loads(o) for o, _ in outs]
    n = len(plan.faults)
    assert sum(s["ran_now"] for s in sums) == n  # each fault ran once, in one of the two
    assert all(s["done"] == n for s in sums) and min(s["ran_now"] for s in sums) > 0
    con = sqlite3.connect(db)
    total, distinct = con.execute("SELECT COUNT(*), COUNT(DISTINCT idx) FROM outcomes").fetchone()
    assert total == distinct == n
    assert con.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0
    traces = sorted(p for p in (tmp_path / "shared.traces").iterdir() if p.name != "golden")
    assert len(traces) == n and all(t.suffix == ".parquet" for t in traces)
    assert [p.name for p in (tmp_path / "shared.traces" / "golden").iterdir()] == ["c1.parquet"]


@pytest.mark.slow
def test_kill_9_of_a_campaign_leaves_no_process_behind(tmp_path):
    plan_path = write_plan(small_plan(stride=4, durations=(1,)), tmp_path / "p.csv")
    db = tmp_path / "k.db"
    proc = subprocess.Popen(_run_cmd(db, plan_path, "--workers", "2", "--batch-size", "20"),
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    seen: set[int] = set()
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        seen |= descendants(proc.pid)
        if len(seen) >= 3 and db.exists() and stored(db):  # forkserver + two workers
            break
        time.sleep(0.1)
    seen |= descendants(proc.pid)
    assert proc.poll() is None and len(seen) >= 3
    os.kill(proc.pid, signal.SIGKILL)  # the driver only, as a user's kill -9 would
    proc.wait()
    t0 = time.time()
    while alive(seen) and time.time() - t0 < 5:
        time.sleep(0.1)
    assert not alive(seen), f"left behind: {alive(seen)}"


@pytest.mark.slow
def test_a_killed_pool_worker_does_not_fail_the_campaign(tmp_path):
    plan = small_plan(stride=10, durations=(1,))
    me = os.getpid()
    killed = []

    def killer():
        deadline = time.time() + 120
        while time.time() < deadline:
            workers = [p for p in descendants(me) if Path(f"/proc/{p}/stat").exists()]
            grand = [
                p
                for p in workers
                if int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1]) != me
            ]
            if len(grand) >= 2:
                time.sleep(1.0)
                os.kill(grand[0], signal.SIGKILL)  # as the OOM killer would
                killed.append(grand[0])
                return
            time.sleep(0.05)

    t = threading.Thread(target=killer)
    t.start()
    s = run_campaign(SC, plan, tmp_path / "a.db", LocalExecutor(2), progress=False, batch_size=10)
    t.join()
    assert killed, "no worker was killed"
    assert s.done == len(plan.faults) and s.error == 0
    run_campaign(SC, plan, tmp_path / "b.db", progress=False)
    assert rows(tmp_path / "a.db").equals(rows(tmp_path / "b.db"))


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--carla-servers", "a:1,b:2"], "--carla-servers: needs --sim carla"),
        (["--sim", "carla", "--carla-servers", "a:x"], "expected host:port"),
        (
            ["--executor", "ray", "--ray-address", "127.0.0.1:1", "--ray-timeout", "3"],
            "--ray-address 127.0.0.1:1: no Ray cluster answers within 3 s",
        ),
        (["--executor", "dask"], "--executor: expected local or ray"),
        (["--ray-address", "10.0.0.1:6379"], "--ray-address: needs --executor ray"),
        (["--seed", "-1"], "--seed: expected a seed 0..9223372036854775807"),
        (["--seed", str(2**63)], "--seed: expected a seed 0..9223372036854775807"),
    ],
)
def test_bad_run_options_exit_2_and_no_db(tmp_path, capsys, done_db, extra, needle):
    db = tmp_path / "r.db"
    t0 = time.time()
    rc = main(["campaign", "run", "lead_brake", str(done_db[1]), "--db", str(db), *extra])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and "Traceback" not in err, err
    assert time.time() - t0 < 10 and not db.exists()


LEGACY_SCHEMA = """
CREATE TABLE campaigns (id INTEGER PRIMARY KEY, scenario TEXT NOT NULL, plan_hash TEXT NOT NULL,
    seed INTEGER NOT NULL, sim TEXT NOT NULL, version TEXT NOT NULL, created REAL NOT NULL,
    settings TEXT NOT NULL, UNIQUE (scenario, plan_hash, seed, sim));
CREATE TABLE faults (campaign INTEGER NOT NULL, idx INTEGER NOT NULL, point TEXT, model TEXT,
    value REAL, bit INTEGER, start INTEGER, duration INTEGER, seed INTEGER, PRIMARY KEY (campaign, idx));
CREATE TABLE outcomes (campaign INTEGER NOT NULL, idx INTEGER NOT NULL, status TEXT NOT NULL,
    outcome TEXT, min_delta_lon REAL, min_delta_lat REAL, first_hazard_step INTEGER,
    collision_step INTEGER, departure_step INTEGER, golden_safe INTEGER, critical INTEGER,
    attempts INTEGER NOT NULL DEFAULT 1, error TEXT, finished REAL NOT NULL, PRIMARY KEY (campaign, idx));
"""


def test_a_store_of_the_unversioned_schema_is_read_and_upgraded(tmp_path, done_db, capsys):
    """Stores written before the schema version (three tables, no markers) stay usable."""
    db = tmp_path / "v1.db"
    con = sqlite3.connect(db)
    con.executescript(LEGACY_SCHEMA)
    con.close()
    before = db.read_bytes()
    assert main(["campaign", "status", "--db", str(db), "--json"]) == 0  # read-only: unchanged
    assert json.loads(capsys.readouterr().out)["campaigns"] == [] and db.read_bytes() == before
    plan = small_plan(stride=200, durations=(1,))
    s = run_campaign(SC, plan, db, progress=False)
    assert s.done == len(plan.faults)
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    con.close()


STORE_RACE = """
import sys, time
from drivefi.campaign.store import ResultsStore
while time.time() < float(sys.argv[2]):
    pass
ResultsStore(sys.argv[1], write=True).close()
"""


def test_campaigns_started_together_on_a_new_db_all_open_it(tmp_path):
    """Processes creating one new store at the same moment (SQLite can answer "busy" at once to
    the switch to WAL) retry instead of failing with "locked"."""
    for i in range(4):
        db = tmp_path / f"r{i}.db"
        start = str(time.time() + 1.0)
        procs = [subprocess.Popen([sys.executable, "-c", STORE_RACE, str(db), start], env=ENV,
                                  stderr=subprocess.PIPE, text=True) for _ in range(3)]  # fmt: skip
        errs = [p.communicate(timeout=60)[1] for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0], errs
