"""The lease of a running campaign on its results store: an owner id and a heartbeat thread.

While a campaign runs, a daemon thread refreshes its ``runners`` row every ``lease / 4`` seconds on
its own SQLite connection, so long batches (a slow CARLA fault) keep their claims; a campaign that
dies stops beating and other campaigns on the store take its claims over after ``lease`` seconds
(at once when its process is gone on the same host).
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from pathlib import Path

from drivefi.campaign.store import LEASE_S, ResultsStore
from drivefi.errors import DriveFIError


class Lease:
    def __init__(self, db: str | Path, lease: float = LEASE_S):
        self.owner = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.lease = lease
        self._db = Path(db)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, store: ResultsStore) -> None:
        store.register(self.owner)
        self._thread = threading.Thread(target=self._beat, name="drivefi-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        store = None
        try:
            while not self._stop.wait(self.lease / 4):
                try:
                    if store is None:
                        store = ResultsStore(self._db, write=True, timeout=5.0)
                    store.heartbeat(self.owner)
                except DriveFIError:
                    pass  # busy for a moment: the next beat comes well within the lease
        finally:
            if store is not None:
                store.close()

    def stop(self, store: ResultsStore | None = None) -> None:
        """Stop beating and give back every claim still held."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        if store is not None:
            with contextlib.suppress(DriveFIError):  # else the lease runs out by itself
                store.unregister(self.owner)
