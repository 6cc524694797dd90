"""Helpers of the campaign tests that kill, reap and compare: stored outcomes, process trees."""

from __future__ import annotations

from pathlib import Path

from drivefi.campaign.store import ResultsStore


def outcomes(db):
    """A results database's outcomes, sorted by plan index."""
    store = ResultsStore(db)
    try:
        return store.outcomes().sort_values("idx").reset_index(drop=True)
    finally:
        store.close()


def rows(db):
    """A results database's outcomes, sorted by plan index (campaign ids dropped)."""
    return outcomes(db).drop(columns=["campaign"])


def descendants(root: int) -> set[int]:
    from drivefi.campaign.reaper import descendants as d

    return set(d(root))


def alive(pids) -> set[int]:
    """The processes of ``pids`` that still run (zombies count as gone)."""
    out = set()
    for p in pids:
        try:
            st = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        if st.rsplit(")", 1)[1].split()[0] != "Z":
            out.add(p)
    return out
