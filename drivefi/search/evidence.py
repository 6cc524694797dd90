"""What the search does not know: points whose faults never reach the stack, and the model's
evidence per group of the fault space.

Unreached points. A point whose corrupted value never changes the stack's commands (the trace's
throttle, brake and steer columns) in any run that injected it never reached the stack: e.g. an
agent that takes its speed from ground truth (``get_velocity()``) never sees a
``localization.speed`` fault. The training runs, already paid for, inject faults at every point;
a point that none of them showed reaching the stack gets a few probes with its range's extremes
(:data:`PROBE_SHARES` x both ends, :data:`PROBE_SECONDS` long) before it is called unreached. On
a simulator with snapshots (deterministic) a command must differ bit for bit; elsewhere by more
than :data:`TOLERANCE`. A run whose stack failed, or that did not complete, counts as reached:
it is no proof the value went unread. Unreached points are left out of the space the search
scores (:func:`left_out`, read by :func:`drivefi.search.score_space` while a :func:`watch` is
open) and reported; they are never planned.

Evidence per group. A group is point x duration class x phase (:func:`drivefi.search.modes
.group_keys`). Per group: the training and round runs injected there, how many were critical,
the model's predicted critical faults (plan members), the faults confirmed critical (rounds and
validation), and a calibration figure, the model's mean P(hazard) against the observed critical
share over the group's simulated runs. A group is unresolved when the model has little evidence
there (fewer than :data:`FEW_RUNS` simulated runs) and its predictions are uncertain (some
candidate's P(hazard) within :data:`UNCERTAIN`), or when a simulated run there was critical but
the plan holds nothing in it.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from drivefi.core import Fault
from drivefi.faults.plan import faults_frame
from drivefi.run.trace import TRACE_ACT

PROBE_SHARES = (0.25, 0.5, 0.75)  # probe start times, as shares of the drive
PROBE_SECONDS = 1.0  # a probe's length
TOLERANCE = 1e-3  # commands that differ by less are the same (simulators without snapshots)
FEW_RUNS = 3  # a group with fewer simulated runs has little evidence
UNCERTAIN = (0.2, 0.8)  # P(hazard) in this range: the model cannot tell

_WATCH: contextvars.ContextVar = contextvars.ContextVar("drivefi_search_watch", default=None)


def reached(golden: pd.DataFrame, trace, start: int, exact: bool) -> bool:
    """Whether a faulty run's commands differ from the golden run's at some step from its
    fault's ``start`` on (None, a failed run: True)."""
    if trace is None:
        return True
    f = trace.frame
    rows = f["k"].to_numpy() >= start
    for col in TRACE_ACT:
        a = f[col].to_numpy(float)[rows]
        g = golden[col].to_numpy(float)[rows]
        seen = np.isfinite(a)
        diff = a[seen] != g[seen] if exact else np.abs(a[seen] - g[seen]) > TOLERANCE
        if diff.any():
            return True
    return False


def critical(golden: pd.DataFrame, trace, start: int) -> bool:
    """Whether a faulty run was unsafe (hazard, collision or departure) at a step from its fault's
    ``start`` on where the golden run was safe (None, a failed run: False)."""
    if trace is None:
        return False
    f = trace.frame
    after = (f["k"].to_numpy() >= start) & ~golden["hazard"].to_numpy(bool)
    bad = np.zeros(len(f), bool)
    for col in ("hazard", "collision", "departure"):
        bad |= f[col].to_numpy(bool)
    return bool(np.any(bad & after))


@dataclass
class Watch:
    """What the training runs (and probes) of one search showed: per run its fault, whether it
    reached the stack's commands and whether it was critical."""

    exact: bool  # compare commands bit for bit (a deterministic simulator)
    training: list = field(default_factory=list)  # (Fault, reached, critical)
    probes: list = field(default_factory=list)  # (Fault, reached, critical), not in the fit
    points: list = field(default_factory=list)  # every point of the stack, in order

    @property
    def unreached(self) -> dict[str, int]:
        """Points no run showed reaching the stack -> how many runs showed it (all of theirs)."""
        runs: dict[str, int] = {p: 0 for p in self.points}
        hit: dict[str, bool] = {p: False for p in self.points}
        for f, r, _ in self.training + self.probes:
            runs[f.point] = runs.get(f.point, 0) + 1
            hit[f.point] = hit.get(f.point, False) or r
        return {p: runs[p] for p in runs if not hit[p]}


@contextmanager
def watch(exact: bool) -> Iterator[Watch]:
    """Record the training runs of the search inside the block (:func:`note_training`) and leave
    the points they show unreached out of the space it scores (:func:`left_out`)."""
    w = Watch(exact)
    token = _WATCH.set(w)
    try:
        yield w
    finally:
        _WATCH.reset(token)


@contextmanager
def watching(exact: bool) -> Iterator[Watch]:
    """The open watch, or a new one for the block: what :func:`drivefi.search.active
    .active_search` runs in, so that every caller (the pipeline, a bench, a library user) gets
    unreached points left out and exploration, whether or not it opened a watch itself."""
    w = _WATCH.get()
    if w is not None:
        yield w
        return
    with watch(exact) as w:
        yield w


def critical_runs() -> list[Fault]:
    """The faults of the open watch's training runs and probes that were critical (none outside
    a watch): evidence of failure the model may not have learned."""
    w = _WATCH.get()
    return [f for f, _, crit in (w.training + w.probes if w else []) if crit]


def left_out() -> set[str]:
    """Points the open watch found unreached (none outside a watch)."""
    w = _WATCH.get()
    return set(w.unreached) if w is not None else set()


def probe_faults(scenario, point) -> list[Fault]:
    """Probes of one point (an :class:`drivefi.core.InjectionPoint` or PointSpec): both ends of
    its range, held PROBE_SECONDS, from PROBE_SHARES of the drive."""
    dur = max(1, min(round(PROBE_SECONDS / scenario.dt), scenario.steps))
    model = "m-fixed" if dur > 1 else "1-fixed"
    starts = sorted({min(int(s * scenario.steps), scenario.steps - dur) for s in PROBE_SHARES})
    return [
        Fault(point.name, model, float(v), None, k, dur, 0)
        for k in starts
        for v in (point.lo, point.hi)
    ]


def note_training(
    scenario, points, faults: list[Fault], traces: list, golden, simulate: Callable[[list], list]
) -> None:
    """Record the training runs (``traces``, one per fault, None where a run failed) of the open
    watch, if any; probe the points (PointSpecs) no training run showed reaching the stack, with
    ``simulate(faults)`` (traces, one per fault). Refuses (exit 2) a stack none of whose points
    reaches its commands."""
    w = _WATCH.get()
    if w is None:
        return
    g = getattr(golden, "trace", golden).frame
    w.points = [p.name for p in points]
    w.training = [(f, reached(g, t, f.start, w.exact), critical(g, t, f.start))
                  for f, t in zip(faults, traces, strict=True)]  # fmt: skip
    todo = [p for p in points if p.name in w.unreached]
    probes = [f for p in todo for f in probe_faults(scenario, p)]
    if probes:
        got = simulate(probes)
        w.probes = [(f, reached(g, t, f.start, w.exact), critical(g, t, f.start))
                    for f, t in zip(probes, got, strict=True)]  # fmt: skip
    if len(w.unreached) == len(w.points):
        from drivefi.errors import InputError

        raise InputError(
            f"training: no fault at any point of the stack ({', '.join(w.points)}) changed its "
            f"commands in {len(w.training) + len(w.probes)} runs: the stack reads none of them"
        )


# ---------------------------------------------------------------------------------------------
# exploration: where a run was critical and the plan holds nothing

EXPLORE_STARTS = 3  # start steps tried across a critical run's fault window
EXPLORE_PER_HIT = 2 * EXPLORE_STARTS + 1  # candidates injected for one critical run at most


def explore(c, dt: float, hits: list[Fault], planned: np.ndarray, done: set) -> np.ndarray:
    """Candidates to inject where a run was critical (``hits``, e.g. :func:`critical_runs`) but
    the plan (candidate indices ``planned``) holds nothing near it: no member of the same point
    and duration class whose fault window overlaps the run's. For each such run (one per point x
    duration class x phase, remembered in ``done``) the candidates like it (:func:`_like`). This
    is how the search finds a failure mode its model does not represent (a regime switch, a
    filter's re-initialisation) instead of planning around it silently."""
    from drivefi.search.modes import duration_class

    if not hits or len(c) == 0:
        return np.zeros(0, np.int64)
    ccls = duration_class(pd.DataFrame({"duration": c.duration}), dt).to_numpy()
    hf = faults_frame(hits)
    hcls = duration_class(hf, dt).to_numpy()
    plan_mask = np.zeros(len(c), bool)
    plan_mask[planned] = True
    picks: list[int] = []
    for f, cls in zip(hits, hcls, strict=True):
        key = (f.point, cls, int(f.start * dt))
        if key in done:
            continue
        done.add(key)
        same = (c.point == f.point) & (ccls == cls)
        near = same & (c.start < f.start + f.duration) & (c.start + c.duration > f.start)
        if not same.any() or (near & plan_mask).any():
            continue  # no candidate like it (durations, steps), or the plan has it
        picks.extend(_like(c, np.flatnonzero(same), f))
    return np.asarray(sorted(set(picks)), np.int64)


def _like(c, members: np.ndarray, f: Fault) -> list[int]:
    """Candidates (of ``members``: same point and duration class) like critical fault ``f``: the
    longest duration no longer than ``f``'s (else the shortest), at EXPLORE_STARTS start steps
    across ``f``'s window (a run held longer than any candidate is critical somewhere in it), each
    with the grid value nearest ``f``'s and the nearest one beyond it (away from the grid's
    middle: a stronger corruption); then the smallest predicted margin among the candidates whose
    window overlaps ``f``'s."""
    dur = c.duration[members]
    d = dur[dur <= f.duration].max() if (dur <= f.duration).any() else dur.min()
    pool = members[dur == d]
    grid = np.unique(c.value[pool].astype(float))
    v = float(f.value) if f.value is not None else float(np.median(grid))
    near = grid[np.argmin(np.abs(grid - v))]
    out_ = grid >= v if v >= 0.5 * (grid.min() + grid.max()) else grid <= v
    beyond = grid[out_][np.argmin(np.abs(grid[out_] - v))] if out_.any() else near
    picks = []
    last = f.start + max(f.duration - int(d), 0)
    for k in np.unique(np.linspace(f.start, last, EXPLORE_STARTS).round().astype(np.int64)):
        starts = c.start[pool]
        at = pool[np.abs(starts - k) == np.abs(starts - k).min()]
        picks += [int(i) for i in at if c.value[i] in (near, beyond)]
    overlap = members[(c.start[members] < f.start + f.duration)
                      & (c.start[members] + c.duration[members] > f.start)]  # fmt: skip
    if len(overlap):
        picks.append(int(overlap[np.argmin(c.delta[overlap])]))
    return list(dict.fromkeys(picks))[:EXPLORE_PER_HIT]


# ---------------------------------------------------------------------------------------------
# evidence per group


GROUP_COLS = ("point", "duration_class", "phase")


def _keyed(df: pd.DataFrame, dt: float, **cols) -> pd.DataFrame:
    """``df``'s group keys plus ``cols`` (arrays of df's length)."""
    from drivefi.search.modes import group_keys

    keys = group_keys(df, dt) if len(df) else pd.DataFrame(columns=list(GROUP_COLS))
    return keys.assign(**{k: np.asarray(v) for k, v in cols.items()})


@dataclass
class SearchEvidence:
    """The inputs of :func:`group_evidence`: every run the search simulated, and what it plans."""

    training: list  # (Fault, reached, critical) per training run
    training_p: np.ndarray  # the model's P(hazard) per training fault
    candidates: object  # drivefi.search.Candidates (the last scoring)
    injected: np.ndarray  # bool per candidate (the rounds)
    outcome: np.ndarray  # per candidate: 1 critical, 0 not, -1 not injected
    p_final: np.ndarray  # per candidate: the P(hazard) the plan uses (calibrated)
    plan: np.ndarray  # candidate indices of the plan
    validated: list  # Faults the validation injected
    validated_critical: pd.DataFrame  # their critical faults (point, start, duration, ...)


def group_evidence(e: SearchEvidence, dt: float, unreached=()) -> list[dict]:
    """One dict per group (point x duration class x phase) holding any run or candidate: runs
    (training, rounds), critical among them, candidates, predicted critical (plan members),
    confirmed (critical in the rounds and the validation), uncertain candidates, calibration
    (mean predicted P(hazard) vs observed critical share of its runs) and ``unresolved`` with
    its reason. Sorted by point, duration class, phase."""
    from drivefi.search.modes import PHASE_SECONDS

    c = e.candidates
    tr = faults_frame([f for f, _, _ in e.training])
    parts = [
        _keyed(tr, dt, training=1, rounds=0, critical=[int(x) for _, _, x in e.training],
               p=e.training_p, candidates=0, predicted_critical=0, confirmed=0, uncertain=0,
               validated=0),
    ]  # fmt: skip
    if len(c):
        cf = c.frame()
        inj = e.injected.astype(int)
        plan = np.zeros(len(c), int)
        plan[e.plan] = 1
        lo, hi = UNCERTAIN
        parts.append(
            _keyed(cf, dt, training=0, rounds=inj, critical=inj * (e.outcome == 1),
                   p=np.where(e.injected, c.p_hazard, np.nan), candidates=1,
                   predicted_critical=plan, confirmed=inj * (e.outcome == 1),
                   uncertain=((e.p_final > lo) & (e.p_final < hi)).astype(int), validated=0)
        )  # fmt: skip
    val = faults_frame(e.validated)
    if len(val):
        parts.append(_keyed(val, dt, training=0, rounds=0, critical=0, p=np.nan, candidates=0,
                            predicted_critical=0, confirmed=0, uncertain=0, validated=1))  # fmt: skip
    vc = e.validated_critical
    if len(vc):
        parts.append(_keyed(vc, dt, training=0, rounds=0, critical=0, p=np.nan, candidates=0,
                            predicted_critical=0, confirmed=1, uncertain=0, validated=0))  # fmt: skip
    df = pd.concat([p for p in parts if len(p)], ignore_index=True)
    if df.empty:
        return []
    df["p_sum"] = df["p"].fillna(0.0)
    df["p_n"] = df["p"].notna().astype(int)
    sums = ["training", "rounds", "critical", "p_sum", "p_n", "candidates", "predicted_critical",
            "confirmed", "uncertain", "validated"]  # fmt: skip
    g = df.groupby(list(GROUP_COLS), sort=True)[sums].sum().reset_index()
    left = set(unreached)
    out = []
    for r in g.itertuples(index=False):
        runs = int(r.training + r.rounds)
        predicted = float(r.p_sum / r.p_n) if r.p_n else None
        reason = ""
        if r.point in left:  # known: its faults never reach the stack
            pass
        elif r.critical > 0 and r.predicted_critical == 0:
            reason = "a critical run; " + (
                "nothing planned" if r.candidates else "no candidate (durations, steps)"
            )
        elif runs < FEW_RUNS and r.uncertain > 0:
            reason = f"{runs} run(s), {int(r.uncertain)} uncertain prediction(s)"
        out.append({
            "point": r.point,
            "duration_class": r.duration_class,
            "phase": int(r.phase),
            "phase_window": [r.phase * PHASE_SECONDS, (r.phase + 1) * PHASE_SECONDS],
            "in_space": r.point not in left,
            "training_runs": int(r.training),
            "round_runs": int(r.rounds),
            "runs": runs,
            "critical": int(r.critical),
            "candidates": int(r.candidates),
            "predicted_critical": int(r.predicted_critical),
            "uncertain": int(r.uncertain),
            "validated": int(r.validated),
            "confirmed": int(r.confirmed),
            "predicted_share": predicted,
            "observed_share": (float(r.critical) / runs) if runs else None,
            "unresolved": bool(reason),
            "why": reason,
        })  # fmt: skip
    return out


def top_unresolved(groups: list[dict], n: int = 5) -> list[dict]:
    """The unresolved groups, most predicted critical faults first (then most uncertain)."""
    bad = [g for g in groups if g["unresolved"]]
    return sorted(bad, key=lambda g: (-g["predicted_critical"], -g["uncertain"], -g["critical"]))[
        :n
    ]
