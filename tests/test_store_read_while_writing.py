"""``campaign status``, ``errors`` and ``export`` answer while another process writes the store:
they open it read-only (SQLite ``mode=ro``: no journal switch, no table creation, no migration) and
read the last committed state under WAL, never waiting for the writer's open transaction."""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import subprocess
import sys
import time

from drivefi.campaign.runner import run_campaign
from drivefi.core import Fault
from drivefi.faults.plan import Plan
from drivefi.world.scenario import load_scenario

SC = load_scenario("lead_brake")


def drivefi(*args, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "drivefi", *map(str, args)], capture_output=True,
                          text=True, env=dict(os.environ), timeout=timeout)  # fmt: skip


def test_status_errors_and_export_answer_while_another_process_holds_the_write_lock(tmp_path):
    db = tmp_path / "r.db"
    faults = [Fault("control.steer", "m-fixed", 0.5, None, 60 + 10 * i, 5, 0) for i in range(3)]
    run_campaign(SC, Plan(SC.name, SC.steps, faults), db, progress=False)
    # another campaign's process: WAL on, BEGIN IMMEDIATE (the write lock), a row changed and
    # not committed, the transaction kept open while the readers run
    writer = subprocess.Popen(
        [sys.executable, "-c", (
            "import sqlite3, sys\n"
            f"con = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
            "con.execute('PRAGMA journal_mode=WAL')\n"
            "con.execute('BEGIN IMMEDIATE')\n"
            "con.execute(\"UPDATE outcomes SET outcome='accident' WHERE idx=0\")\n"
            "con.execute(\"INSERT INTO runners VALUES ('w', 'h', 1, 0, 0)\")\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n"
            "con.execute('ROLLBACK')\n"
        )],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert writer.stdout.readline().strip() == "locked"
        with sqlite3.connect(db, timeout=0.1) as probe:  # the lock is real: a write is refused
            try:
                probe.execute("BEGIN IMMEDIATE")
                raise AssertionError("the writer does not hold the write lock")
            except sqlite3.OperationalError as err:
                assert "locked" in str(err)
        before = sorted(p.name for p in tmp_path.iterdir())
        t0 = time.monotonic()
        status = drivefi("campaign", "status", "--db", db, "--json")
        errors = drivefi("campaign", "errors", "--db", db, "--json")
        out = tmp_path / "out.csv"
        export = drivefi("campaign", "export", "--db", db, "--csv", out, "--json")
        took = time.monotonic() - t0
        assert writer.poll() is None  # the writer still holds its transaction
    finally:
        writer.communicate("", timeout=10)
    for r in (status, errors, export):
        assert r.returncode == 0, r.stderr
    assert took < 15, took  # three process starts; none waited for the writer
    (c,) = json.loads(status.stdout)["campaigns"]
    assert (c["planned"], c["done"], c["pending"]) == (3, 3, 0)
    assert c["accident"] == 0  # the writer's uncommitted change is not read
    rows = list(csv.DictReader(out.open()))
    assert [r["idx"] for r in rows] == ["0", "1", "2"] and rows[0]["outcome"] != "accident"
    # reading created nothing beside the store (the CSV aside) and changed no journal mode
    after = sorted(p.name for p in tmp_path.iterdir() if p.name != "out.csv")
    assert after == before
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
