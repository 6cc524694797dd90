"""Results store: SQLite, one row per planned fault, written as each batch of outcomes arrives.

Outcomes go in one transaction per batch (WAL journal), keyed by (campaign, fault index), so a
campaign killed at any moment resumes where it stopped and never loses or duplicates an outcome.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from drivefi import __version__
from drivefi.errors import InputError
from drivefi.faults import Fault

SCHEMA = """
CREATE TABLE IF NOT EXISTS campaigns (
    id INTEGER PRIMARY KEY,
    scenario TEXT NOT NULL,
    plan_hash TEXT NOT NULL,
    seed INTEGER NOT NULL,
    sim TEXT NOT NULL,
    version TEXT NOT NULL,
    created REAL NOT NULL,
    settings TEXT NOT NULL,
    UNIQUE (scenario, plan_hash, seed, sim)
);
CREATE TABLE IF NOT EXISTS faults (
    campaign INTEGER NOT NULL REFERENCES campaigns(id),
    idx INTEGER NOT NULL,
    point TEXT, model TEXT, value REAL, bit INTEGER, start INTEGER, duration INTEGER, seed INTEGER,
    PRIMARY KEY (campaign, idx)
);
CREATE TABLE IF NOT EXISTS outcomes (
    campaign INTEGER NOT NULL REFERENCES campaigns(id),
    idx INTEGER NOT NULL,
    status TEXT NOT NULL,            -- ok | error
    outcome TEXT,                    -- masked | hazard | accident (NULL when status = error)
    min_delta_lon REAL,
    min_delta_lat REAL,
    first_hazard_step INTEGER,
    collision_step INTEGER,
    departure_step INTEGER,
    golden_safe INTEGER,             -- golden run safe (delta > 0) at the fault's first step
    critical INTEGER,                -- golden safe there and the fault produced a hazard
    attempts INTEGER NOT NULL DEFAULT 1,
    error TEXT,
    finished REAL NOT NULL,
    PRIMARY KEY (campaign, idx)
);
"""

OUTCOME_FIELDS = [
    "status", "outcome", "min_delta_lon", "min_delta_lat", "first_hazard_step", "collision_step",
    "departure_step", "golden_safe", "critical", "attempts", "error",
]  # fmt: skip


# the columns a person reads first in campaign summaries (status table, report)
SUMMARY_COLUMNS = [
    "id",
    "scenario",
    "sim",
    "planned",
    "done",
    "masked",
    "hazard",
    "accident",
    "critical",
    "error",
]


@dataclass
class Campaign:
    id: int
    scenario: str
    plan_hash: str
    seed: int
    sim: str
    total: int


class ResultsStore:
    def __init__(self, path: str | Path, timeout: float = 2.0):
        self.path = Path(path)
        if self.path.exists() and self.path.is_dir():
            raise InputError(f"{self.path}: is a folder, expected a results database file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as err:
            raise self._error(err) from None

    def _error(self, err: Exception) -> InputError:
        msg = str(err)
        if "locked" in msg or "busy" in msg:
            return InputError(
                f"{self.path}: database is locked by another process (another campaign running?)"
            )
        if "not a database" in msg or "malformed" in msg:
            return InputError(
                f"{self.path}: not a DriveFI results database (corrupt or another kind of file)"
            )
        return InputError(f"{self.path}: database error: {msg}")

    def _tx(self, fn):
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                out = fn()
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
            return out
        except sqlite3.DatabaseError as err:
            raise self._error(err) from None

    def open_campaign(
        self,
        scenario: str,
        plan_hash: str,
        seed: int,
        sim: str,
        faults: list[Fault],
        settings: dict,
    ) -> Campaign:
        """The campaign for this scenario, plan, seed and simulator: resumed if stored, else created."""

        def work():
            row = self.db.execute(
                "SELECT id FROM campaigns WHERE scenario=? AND plan_hash=? AND seed=? AND sim=?",
                (scenario, plan_hash, seed, sim),
            ).fetchone()
            if row:
                return row[0]
            cur = self.db.execute(
                "INSERT INTO campaigns (scenario, plan_hash, seed, sim, version, created, settings) VALUES (?,?,?,?,?,?,?)",
                (scenario, plan_hash, seed, sim, __version__, time.time(), json.dumps(settings)),
            )
            cid = cur.lastrowid
            self.db.executemany(
                "INSERT INTO faults VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    (cid, i, f.point, f.model, f.value, f.bit, f.start, f.duration, f.seed)
                    for i, f in enumerate(faults)
                ],
            )
            return cid

        cid = self._tx(work)
        return Campaign(cid, scenario, plan_hash, seed, sim, len(faults))

    def done(self, campaign: Campaign, include_errors: bool = False) -> set[int]:
        q = "SELECT idx FROM outcomes WHERE campaign=?" + (
            "" if include_errors else " AND status='ok'"
        )
        try:
            return {r[0] for r in self.db.execute(q, (campaign.id,))}
        except sqlite3.DatabaseError as err:
            raise self._error(err) from None

    def write(self, campaign: Campaign, rows: list[dict]) -> None:
        """Store a batch of outcomes in one transaction (an error row may later be replaced by ok)."""
        now = time.time()

        def work():
            self.db.executemany(
                f"INSERT INTO outcomes (campaign, idx, {', '.join(OUTCOME_FIELDS)}, finished) "
                f"VALUES (?, ?, {', '.join('?' * len(OUTCOME_FIELDS))}, ?) "
                "ON CONFLICT (campaign, idx) DO UPDATE SET "
                + ", ".join(f"{f}=excluded.{f}" for f in OUTCOME_FIELDS)
                + ", finished=excluded.finished WHERE outcomes.status != 'ok'",
                [(campaign.id, r["idx"], *[r.get(f) for f in OUTCOME_FIELDS], now) for r in rows],
            )

        self._tx(work)

    def campaigns(self) -> list[dict]:
        try:
            rows = self.db.execute(
                """SELECT c.id, c.scenario, c.plan_hash, c.seed, c.sim, c.version, c.created,
                   (SELECT COUNT(*) FROM faults f WHERE f.campaign=c.id),
                   COUNT(o.idx),
                   SUM(o.outcome='masked'), SUM(o.outcome='hazard'), SUM(o.outcome='accident'),
                   SUM(o.status='error'), SUM(o.critical)
                   FROM campaigns c LEFT JOIN outcomes o ON o.campaign=c.id GROUP BY c.id ORDER BY c.id"""
            ).fetchall()
        except sqlite3.DatabaseError as err:
            raise self._error(err) from None
        keys = ["id", "scenario", "plan_hash", "seed", "sim", "version", "created", "planned", "done",
                "masked", "hazard", "accident", "error", "critical"]  # fmt: skip
        return [
            {k: (v if v is not None else 0) for k, v in zip(keys, r, strict=True)} for r in rows
        ]

    def outcomes(self, campaign_id: int | None = None):
        """All outcomes joined with their faults, as a pandas DataFrame."""
        import pandas as pd

        q = """SELECT f.campaign, f.idx, f.point, f.model, f.value, f.bit, f.start, f.duration, f.seed,
                      o.status, o.outcome, o.min_delta_lon, o.min_delta_lat, o.first_hazard_step,
                      o.collision_step, o.departure_step, o.golden_safe, o.critical, o.attempts, o.error
               FROM faults f LEFT JOIN outcomes o ON o.campaign=f.campaign AND o.idx=f.idx"""
        args: tuple = ()
        if campaign_id is not None:
            q += " WHERE f.campaign=?"
            args = (campaign_id,)
        try:
            return pd.read_sql_query(q + " ORDER BY f.campaign, f.idx", self.db, params=args)
        except sqlite3.DatabaseError as err:
            raise self._error(err) from None

    def close(self) -> None:
        self.db.close()
