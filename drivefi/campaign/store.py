"""Results store: SQLite, one row per planned fault, written as each batch of outcomes arrives.

Outcomes go in one transaction per batch (WAL journal), keyed by (campaign, fault index), so a
campaign killed at any moment resumes where it stopped and never loses or duplicates an outcome.

The file is marked as DriveFI's: ``PRAGMA application_id``, ``PRAGMA user_version`` (the schema
version) and a ``drivefi_meta`` table. Any other file (another program's SQLite database, a text
file) is refused before anything is written, so it stays byte-identical. A store opened for reading
(``write=False``: status, export, report) is opened with SQLite's ``mode=ro``: no journal switch, no
table creation, and a read-only file or folder can be read.

Campaigns sharing one store share its work: a runner *claims* a batch of faults (table ``claims``,
owned by a row of ``runners`` that a heartbeat keeps fresh) before running it, and the claim goes
away in the transaction that stores the batch's outcomes. Claims of a runner whose heartbeat is older
than the lease, or whose process is gone (same host), are taken over.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from drivefi import __version__
from drivefi.campaign.containment import pid_alive
from drivefi.core import Fault
from drivefi.errors import InputError

SCHEMA_VERSION = 2  # 1: campaigns/faults/outcomes without markers; 2: + meta, runners, claims
APPLICATION_ID = 0x44724649  # "DrFI" in the SQLite header
FORMAT = "drivefi-results"
LEGACY_TABLES = {"campaigns", "faults", "outcomes"}

SCHEMA = """
CREATE TABLE IF NOT EXISTS drivefi_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
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
    outcome TEXT,                    -- masked | hazard | accident | stack_failure (NULL: error)
    min_delta_lon REAL,
    min_delta_lat REAL,
    first_hazard_step INTEGER,
    collision_step INTEGER,
    departure_step INTEGER,
    golden_safe INTEGER,             -- golden run safe (delta > 0) at the fault's first step
    critical INTEGER,                -- golden safe there and the fault produced a hazard
    attempts INTEGER NOT NULL DEFAULT 1,
    error TEXT,                      -- why: the infrastructure's reasons, or the stack's failure
    finished REAL NOT NULL,
    PRIMARY KEY (campaign, idx)
);
CREATE TABLE IF NOT EXISTS runners (
    owner TEXT PRIMARY KEY,          -- one running campaign process
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started REAL NOT NULL,
    heartbeat REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS claims (
    campaign INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    owner TEXT NOT NULL,
    claimed REAL NOT NULL,
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
    "stack_failure",
    "error",
    "pending",
]

SQLITE_MAGIC = b"SQLite format 3\x00"
LEASE_S = 30.0  # a runner silent for this long loses its claims
CREATE_RACE_S = 20.0  # how long campaigns started together may retry creating one store


class StoreLocked(InputError):
    """The results database is locked by another process."""


@dataclass
class Campaign:
    id: int
    scenario: str
    plan_hash: str
    seed: int
    sim: str
    total: int


class ResultsStore:
    """A DriveFI results database. ``write=False`` (default) opens it read-only; ``write=True``
    creates it if missing (or empty) and upgrades a version-1 store."""

    def __init__(self, path: str | Path, write: bool = False, timeout: float = 2.0):
        self.path = Path(path)
        self.write_mode = write
        self.db: sqlite3.Connection | None = None
        if self.path.is_dir():
            raise InputError(f"{self.path}: is a folder, expected a results database file")
        if not write:
            kind = self._inspect()
            if kind == "new":
                raise InputError(f"{self.path}: results database not found")
            if kind == "empty":
                raise InputError(f"{self.path}: not a DriveFI results database (it is empty)")
            self.db = self._connect_ro(timeout)
            return
        # campaigns started together on a new store race to create it (SQLite may answer "busy"
        # at once, e.g. to the switch to WAL): those retry; an existing store locked by another
        # process is refused after ``timeout`` as before
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        deadline = time.monotonic() + CREATE_RACE_S
        while True:
            try:
                self._open_for_writing(timeout)
                return
            except StoreLocked:
                if not fresh or time.monotonic() > deadline:
                    raise
                if self.db is not None:
                    self.db.close()
                    self.db = None
                time.sleep(0.05)

    def _open_for_writing(self, timeout: float) -> None:
        kind = self._inspect()
        if not self.path.exists():
            from drivefi.util.atomic import check_output

            check_output(self.path, "--db")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise InputError(f"--db {self.path}: cannot create its folder ({err})") from None
        try:
            self.db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
            self.db.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            if kind != "store":
                self._tx(self._create)  # new, empty or version 1: schema and markers
        except sqlite3.DatabaseError as err:
            raise self._error(err) from None
        except OSError as err:
            raise InputError(f"{self.path}: cannot open ({err.strerror or err})") from None

    # -- opening -----------------------------------------------------------------------------
    def _uri(self, extra: str = "") -> str:
        return f"file:{quote(str(self.path.resolve()))}?mode=ro{extra}"

    def _connect_ro(self, timeout: float) -> sqlite3.Connection:
        last = None
        for extra in ("", "&immutable=1"):  # immutable: a WAL store in a read-only folder
            try:
                db = sqlite3.connect(self._uri(extra), uri=True, timeout=timeout)
                db.execute("SELECT COUNT(*) FROM campaigns").fetchone()
                return db
            except sqlite3.DatabaseError as err:
                last = err
        raise self._error(last) from None

    def _inspect(self) -> str:
        """new | empty | legacy | store; raises for anything that is not (yet) a DriveFI store."""
        p = self.path
        if not p.exists():
            return "new"
        try:
            with open(p, "rb") as f:
                head = f.read(100)
        except OSError as err:
            raise InputError(f"{p}: cannot read ({err.strerror or err})") from None
        if len(head) == 0:
            return "empty"
        if not head.startswith(SQLITE_MAGIC):
            raise InputError(f"{p}: not a DriveFI results database (not an SQLite file)")
        try:
            db = sqlite3.connect(self._uri(), uri=True, timeout=2.0)
            try:
                tables = {
                    r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
                }
                user_version = db.execute("PRAGMA user_version").fetchone()[0]
                app_id = db.execute("PRAGMA application_id").fetchone()[0]
                meta = {}
                if "drivefi_meta" in tables:
                    meta = dict(db.execute("SELECT key, value FROM drivefi_meta").fetchall())
            finally:
                db.close()
        except sqlite3.DatabaseError as err:
            raise self._error(err) from None
        if meta.get("format") == FORMAT and app_id == APPLICATION_ID:
            version = int(meta.get("schema", user_version) or 0)
            if version > SCHEMA_VERSION:
                raise InputError(
                    f"{p}: results database of schema version {version}, written by a newer "
                    f"DriveFI; this one reads up to version {SCHEMA_VERSION}"
                )
            return "store" if version == SCHEMA_VERSION else "legacy"
        if not tables and user_version == 0 and app_id == 0:
            return "empty"  # SQLite header only (a run killed while creating the store)
        legacy = LEGACY_TABLES <= tables <= LEGACY_TABLES | {"sqlite_sequence"}
        if legacy and user_version == 0 and app_id == 0 and self._legacy_columns():
            return "legacy"
        raise InputError(
            f"{p}: not a DriveFI results database (an SQLite file with other tables: "
            f"{', '.join(sorted(tables)) or 'none'}); give a new --db path"
        )

    def _legacy_columns(self) -> bool:
        db = sqlite3.connect(self._uri(), uri=True)
        try:
            cols = {r[1] for r in db.execute("PRAGMA table_info(outcomes)")}
        finally:
            db.close()
        return {"campaign", "idx", "status", *OUTCOME_FIELDS} <= cols

    def _create(self) -> None:
        for stmt in SCHEMA.split(";\n"):  # not executescript: it would commit the transaction
            if stmt.strip():
                self.db.execute(stmt)
        self.db.executemany(
            "INSERT OR REPLACE INTO drivefi_meta VALUES (?, ?)",
            [("format", FORMAT), ("schema", str(SCHEMA_VERSION)), ("written_by", __version__)],
        )
        self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self.db.execute(f"PRAGMA application_id={APPLICATION_ID}")

    def _error(self, err: Exception | None) -> InputError:
        msg = str(err)
        if "locked" in msg or "busy" in msg:
            return StoreLocked(
                f"{self.path}: database is locked by another process (another campaign running?)"
            )
        if "not a database" in msg or "malformed" in msg:
            return InputError(
                f"{self.path}: not a DriveFI results database (corrupt or another kind of file)"
            )
        if "readonly" in msg:
            return InputError(f"{self.path}: cannot write the results database (read-only: {msg})")
        if "unable to open" in msg:
            return InputError(f"{self.path}: cannot open the results database ({msg})")
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

    def _q(self, sql: str, args: tuple = ()) -> list:
        try:
            return self.db.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as err:
            raise self._error(err) from None

    # -- campaigns ---------------------------------------------------------------------------
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

    def campaign_ids(self) -> list[int]:
        return [r[0] for r in self._q("SELECT id FROM campaigns ORDER BY id")]

    def check_campaign(self, campaign_id: int) -> None:
        """Raise InputError naming the campaign if the store does not hold it."""
        ids = self.campaign_ids()
        if campaign_id not in ids:
            held = ", ".join(map(str, ids)) if ids else "none"
            raise InputError(
                f"{self.path}: no campaign {campaign_id} in this results database "
                f"(campaigns: {held})"
            )

    def done(self, campaign: Campaign, include_errors: bool = False) -> set[int]:
        q = "SELECT idx FROM outcomes WHERE campaign=?" + (
            "" if include_errors else " AND status='ok'"
        )
        return {r[0] for r in self._q(q, (campaign.id,))}

    def write(self, campaign: Campaign, rows: list[dict], owner: str | None = None) -> None:
        """Store a batch of outcomes in one transaction (an error row may later be replaced by ok);
        the batch's claims go away in the same transaction."""
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
            if owner is not None:
                self.db.executemany(
                    "DELETE FROM claims WHERE campaign=? AND idx=? AND owner=?",
                    [(campaign.id, r["idx"], owner) for r in rows],
                )

        self._tx(work)

    # -- sharing the work --------------------------------------------------------------------
    def register(self, owner: str) -> None:
        now = time.time()
        self._tx(
            lambda: self.db.execute(
                "INSERT OR REPLACE INTO runners VALUES (?, ?, ?, ?, ?)",
                (owner, socket.gethostname(), os.getpid(), now, now),
            )
        )

    def heartbeat(self, owner: str) -> None:
        """Keep ``owner``'s claims (re-registering it if another runner took them over)."""
        now = time.time()

        def work():
            cur = self.db.execute("UPDATE runners SET heartbeat=? WHERE owner=?", (now, owner))
            if cur.rowcount == 0:
                self.db.execute(
                    "INSERT INTO runners VALUES (?, ?, ?, ?, ?)",
                    (owner, socket.gethostname(), os.getpid(), now, now),
                )

        self._tx(work)

    def unregister(self, owner: str) -> None:
        """Give back every claim of ``owner`` (a runner that stops)."""

        def work():
            self.db.execute("DELETE FROM claims WHERE owner=?", (owner,))
            self.db.execute("DELETE FROM runners WHERE owner=?", (owner,))

        self._tx(work)

    def release(self, campaign: Campaign, owner: str, idxs: list[int]) -> None:
        self._tx(
            lambda: self.db.executemany(
                "DELETE FROM claims WHERE campaign=? AND idx=? AND owner=?",
                [(campaign.id, i, owner) for i in idxs],
            )
        )

    def _reap(self, lease: float) -> None:
        """Drop runners that stopped beating or whose process is gone, and their claims."""
        host, now = socket.gethostname(), time.time()
        dead = []
        for owner, h, pid, beat in self.db.execute(
            "SELECT owner, host, pid, heartbeat FROM runners"
        ).fetchall():
            if beat < now - lease or (h == host and pid != os.getpid() and not pid_alive(pid)):
                dead.append((owner,))
        self.db.executemany("DELETE FROM claims WHERE owner=?", dead)
        self.db.executemany("DELETE FROM runners WHERE owner=?", dead)
        self.db.execute("DELETE FROM claims WHERE owner NOT IN (SELECT owner FROM runners)")

    _OPEN = """FROM faults f WHERE f.campaign=:c
        AND NOT EXISTS (SELECT 1 FROM outcomes o WHERE o.campaign=f.campaign AND o.idx=f.idx
                        AND (o.status='ok' OR o.finished >= :since))"""

    def claim(
        self, campaign: Campaign, owner: str, n: int, since: float, lease: float = LEASE_S
    ) -> list[int]:
        """Claim up to ``n`` faults (earliest start step first) that have no outcome, no live claim,
        and no error stored since ``since`` (errors of earlier runs are retried)."""

        def work():
            self._reap(lease)
            rows = self.db.execute(
                "SELECT f.idx "
                + self._OPEN
                + """ AND NOT EXISTS (SELECT 1 FROM claims k WHERE k.campaign=f.campaign
                                       AND k.idx=f.idx)
                   ORDER BY f.start, f.idx LIMIT :n""",
                {"c": campaign.id, "since": since, "n": n},
            ).fetchall()
            now = time.time()
            self.db.executemany(
                "INSERT INTO claims VALUES (?, ?, ?, ?)",
                [(campaign.id, r[0], owner, now) for r in rows],
            )
            return [r[0] for r in rows]

        return self._tx(work)

    def open_count(self, campaign: Campaign, since: float) -> int:
        """Faults still without an outcome of this run (claimed by someone or not)."""
        return self._q("SELECT COUNT(*) " + self._OPEN, {"c": campaign.id, "since": since})[0][0]

    # -- reading -----------------------------------------------------------------------------
    def campaigns(self, campaign_id: int | None = None) -> list[dict]:
        """One dict per campaign (or only ``campaign_id``'s): planned, done (outcomes, stack
        failures included), error (the infrastructure failed), pending, outcome counts."""
        where, args = ("WHERE c.id=?", (campaign_id,)) if campaign_id is not None else ("", ())
        rows = self._q(
            f"""SELECT c.id, c.scenario, c.plan_hash, c.seed, c.sim, c.version, c.created,
               (SELECT COUNT(*) FROM faults f WHERE f.campaign=c.id),
               SUM(o.status='ok'),
               SUM(o.outcome='masked'), SUM(o.outcome='hazard'), SUM(o.outcome='accident'),
               SUM(o.status='error'), SUM(o.critical), SUM(o.outcome='stack_failure')
               FROM campaigns c LEFT JOIN outcomes o ON o.campaign=c.id {where}
               GROUP BY c.id ORDER BY c.id""",
            args,
        )
        keys = ["id", "scenario", "plan_hash", "seed", "sim", "version", "created", "planned", "done",
                "masked", "hazard", "accident", "error", "critical", "stack_failure"]  # fmt: skip
        out = []
        for r in rows:
            d = {k: (v if v is not None else 0) for k, v in zip(keys, r, strict=True)}
            d["pending"] = d["planned"] - d["done"] - d["error"]
            out.append(d)
        return out

    def outcomes(self, campaign_id: int | None = None):
        """All outcomes joined with their faults, as a pandas DataFrame."""
        import pandas as pd

        q = """SELECT f.campaign, f.idx, f.point, f.model, f.value, f.bit, f.start, f.duration, f.seed,
                      o.status, o.outcome, o.min_delta_lon, o.min_delta_lat, o.first_hazard_step,
                      o.collision_step, o.departure_step, o.golden_safe, o.critical, o.attempts, o.error
               FROM faults f LEFT JOIN outcomes o ON o.campaign=f.campaign AND o.idx=f.idx"""
        args: tuple = ()
        if campaign_id is not None:
            self.check_campaign(campaign_id)
            q += " WHERE f.campaign=?"
            args = (campaign_id,)
        try:
            return pd.read_sql_query(q + " ORDER BY f.campaign, f.idx", self.db, params=args)
        except sqlite3.DatabaseError as err:
            raise self._error(err) from None

    def errors(self, campaign_id: int | None = None):
        """The faults whose runs failed: the infrastructure (status error) or the stack under the
        fault (outcome stack_failure); fault fields, attempts, what failed and the reason."""
        df = self.outcomes(campaign_id)
        cols = ["campaign", "idx", "point", "model", "value", "bit", "start", "duration",
                "attempts", "error"]  # fmt: skip
        failed = (df["status"] == "error") | (df["outcome"] == "stack_failure")
        out = df.loc[failed, cols].reset_index(drop=True)
        out.insert(len(cols) - 1, "failed", failed_what(df.loc[failed]).to_numpy())
        return out

    def close(self) -> None:
        """Close; the last campaign to close a store switches it back to a rollback journal, so a
        finished store is one self-contained file (a read-only reader then creates nothing)."""
        if self.write_mode:
            try:
                if self.db.execute("SELECT COUNT(*) FROM runners").fetchone()[0] == 0:
                    self.db.execute("PRAGMA journal_mode=DELETE")
            except sqlite3.DatabaseError:
                pass  # another connection is open: it stays in WAL mode
        self.db.close()


def failed_what(df):
    """Per failed outcome row: ``stack`` (the stack failed under the fault: a finding) or
    ``simulator`` (the infrastructure gave up after its retries)."""
    return df["outcome"].map(lambda o: "stack" if o == "stack_failure" else "simulator")
