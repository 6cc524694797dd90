"""Faulty runs that rejoin the golden run, so their remainder is not simulated again.

Once a run's fault is over and its world and stack state equal the golden run's at the same step,
bit for bit, the rest of the run *is* the golden run's rest: the closed loop is deterministic. The
run then stops stepping; its outcome is completed from the golden run's remaining steps
(:class:`GoldenTail`) and a kept trace takes the golden run's rows from there
(:func:`drivefi.run.golden.faulty_frame`). Outcomes and traces are the same, bit for bit, as when
the run goes on to the end (tested for the reference ADS and every example agent).

Typical rejoiners: a fault whose value the stack ignored at the time (a gap with no lead ahead,
a brake command of 0 while coasting). Only a stack that steps its runs one by one gains from
skipping them (a user's agent: every step saved is a ``run_step`` call), so only a stack with
``same_as(rows, steps, golden_state)`` and ``park(rows)`` is checked; the vectorised reference ADS
steps a whole batch in one call and is not. The check rests on what snapshots rest on: the
stack's whole state is what its snapshot captures (:mod:`drivefi.stacks.agent.equal`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

SWITCH = "DRIVEFI_REJOIN"  # 0: every run goes to the scenario's end (to compare, or to time)
GAP_MAX = 32  # steps between stack-state checks of a run whose world matched but stack did not


@dataclass(frozen=True)
class GoldenTail:
    """Per step k of the golden run, the outcome summary of its steps k..end: the least deltas
    and the first step (or -1) of a hazard, a collision and a road departure."""

    min_delta_lon: np.ndarray
    min_delta_lat: np.ndarray
    hazard: np.ndarray
    collision: np.ndarray
    departure: np.ndarray

    @classmethod
    def of(cls, frame: pd.DataFrame) -> GoldenTail:
        def least(col: str) -> np.ndarray:
            return np.minimum.accumulate(frame[col].to_numpy(float)[::-1])[::-1]

        return cls(
            least("delta_lon"),
            least("delta_lat"),
            *(_next(frame[c].to_numpy(bool)) for c in ("hazard", "collision", "departure")),
        )


def _next(flags: np.ndarray) -> np.ndarray:
    """Per index k, the first index >= k where ``flags`` holds, else -1."""
    n = len(flags)
    first = np.minimum.accumulate(np.where(flags, np.arange(n), n)[::-1])[::-1]
    return np.where(first < n, first, -1)


class Rejoin:
    """Watches a batch of faulty runs for the step each rejoins ``golden`` (a
    :class:`drivefi.run.golden.Golden`); ``ends[i]``: the first step after run i's fault."""

    def __init__(self, golden, ends: np.ndarray):
        self.world = golden.snapshots.world
        self.stack = golden.snapshots.ads
        self.tail = GoldenTail.of(golden.trace.frame)
        self.done = np.zeros(len(ends), bool)
        self._next = np.asarray(ends, np.int64).copy()  # earliest step of the next check
        self._gap = np.ones(len(ends), np.int64)

    def check(self, world, stack, k: np.ndarray, live: np.ndarray) -> np.ndarray:
        """The runs that rejoin the golden run at their step ``k`` now; ``stack`` parks them."""
        rows = np.flatnonzero(live & ~self.done & (k >= self._next))
        if rows.size == 0:
            return rows
        rows = world.same_rows(rows, self.world, k[rows])
        if rows.size == 0:
            return rows
        same = stack.same_as(rows, k[rows], self.stack)
        # the world matches but the stack does not (yet): look again later, less and less often
        miss = rows[~same]
        self._next[miss] = k[miss] + self._gap[miss]
        self._gap[miss] = np.minimum(2 * self._gap[miss], GAP_MAX)
        back = rows[same]
        self.done[back] = True
        stack.park(back)
        return back


def rejoin_for(sim, golden, faults: list) -> Rejoin | None:
    """A :class:`Rejoin` for a batch of ``faults`` that ``sim`` runs from ``golden``'s snapshots,
    when its stack can be checked (see the module docstring) and ``DRIVEFI_REJOIN`` is not 0."""
    if not hasattr(sim.ads, "same_as") or os.environ.get(SWITCH, "1") == "0":
        return None
    return Rejoin(golden, np.array([f.start + f.duration for f in faults], np.int64))
