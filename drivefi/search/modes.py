"""Failure modes ("cases"): critical faults grouped into what a user acts on.

The unit in which the search, the pipeline, the bench and the report count what was found.

Definition: two critical faults are the same case when they have
  * the same context (when given: scenario, seed, simulator),
  * the same injection point,
  * the same corruption (its "kind"): the corrupted value for value faults (``1-fixed``,
    ``m-fixed``, ``1-random``), the flipped bit for ``bitflip``, the generator seed for
    ``m-random``,
  * the same duration class: ``transient`` (one step), ``short`` (up to
    :data:`SHORT_SECONDS`), ``sustained`` (longer),
  * the same phase of the drive: the :data:`PHASE_SECONDS`-long slice of the drive the fault
    starts in (0-1 s, 1-2 s, ...).

Why not "overlapping fault windows, chained" (the report's earlier definition): chaining makes a
fault's case depend on which other faults were sampled. A dense sample (the search: hundreds of
neighbouring start steps) chains a whole drive into one case, a sparse one (random FI) splits the
same failure into many, and merging two campaigns changes both counts. With fixed phases and
duration classes a fault's case is a function of the fault alone, so counts add up and the
search and random FI are counted alike (the speed-up in cases compares like with like).

The outcome (hazard or accident) is NOT part of the key: it is the severity of a case, not
another case (neighbouring start steps of one corruption often tip between a near miss and a
collision), and faults whose outcome class is not recorded (the active-refit rounds record only
critical / not critical) count in the same unit. A case's outcome is its most severe member's:
``accident`` if any member collided. Its representative is its most severe fault (an accident
first, then the smallest of min_delta_lon and min_delta_lat): the one to replay first.

Times need the scenario's step ``dt``; without it (a scenario file that cannot be found) steps
are taken as :data:`DEFAULT_DT` long. Everything is vectorised (pandas / numpy).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SEVERITY = {"accident": 2, "hazard": 1}  # other outcomes (e.g. "critical", unknown class): 0
PHASE_SECONDS = 1.0  # the drive's phases: slices this long, from the scenario's start
SHORT_SECONDS = 0.5  # a fault up to this long (and longer than one step) is "short"
DEFAULT_DT = 0.05  # [s] a step's length when the scenario's dt is unknown
DURATION_CLASSES = ("transient", "short", "sustained")


def critical_faults(outcomes: pd.DataFrame) -> pd.DataFrame:
    """The critical faults of a campaign's outcomes: runs that ran to the end (status ok, the
    stack did not fail) and produced a hazard."""
    o = outcomes
    if o.empty:
        return o
    ok = (o["status"] == "ok") & (o["outcome"] != "stack_failure")
    return o[ok & (o["critical"] == 1)]


def fault_kind(df: pd.DataFrame) -> pd.Series:
    """What makes two faults the same corruption: the value, the flipped bit, or the m-random
    seed (as text: ``0.5``, ``bit 30``, ``seed 7``)."""
    if df.empty:
        return pd.Series([], index=df.index, dtype=object)
    model = df["model"].astype(str).to_numpy()
    value = pd.to_numeric(df["value"], errors="coerce").to_numpy(float)
    out = np.array([f"{v:g}" for v in value], dtype=object)
    for m, col, prefix in (("bitflip", "bit", "bit"), ("m-random", "seed", "seed")):
        sel = model == m
        if sel.any():
            vals = pd.to_numeric(df[col], errors="coerce").to_numpy()[sel]
            out[sel] = [f"{prefix} {int(v)}" if np.isfinite(v) else f"{prefix} ?" for v in vals]
    return pd.Series(out, index=df.index, dtype=object)


def _dt(df: pd.DataFrame, dt: float | None) -> np.ndarray:
    """Each row's step length: ``dt``, else the rows' own ``dt`` column, else DEFAULT_DT."""
    if dt is not None:
        return np.full(len(df), float(dt))
    if "dt" in df:
        return pd.to_numeric(df["dt"], errors="coerce").fillna(DEFAULT_DT).to_numpy(float)
    return np.full(len(df), DEFAULT_DT)


def duration_class(df: pd.DataFrame, dt: float | None = None) -> pd.Series:
    """``transient`` (one step), ``short`` (up to SHORT_SECONDS) or ``sustained``."""
    dur = df["duration"].to_numpy(np.int64)
    secs = dur * _dt(df, dt)
    cls = np.where(dur <= 1, 0, np.where(secs <= SHORT_SECONDS + 1e-9, 1, 2))
    return pd.Series(np.asarray(DURATION_CLASSES, object)[cls], index=df.index, dtype=object)


def phase(df: pd.DataFrame, dt: float | None = None) -> pd.Series:
    """The phase of the drive a fault starts in: 0 for [0, PHASE_SECONDS), 1 for the next..."""
    t = df["start"].to_numpy(np.int64) * _dt(df, dt)
    return pd.Series(np.floor(t / PHASE_SECONDS + 1e-9).astype(np.int64), index=df.index)


def case_keys(df: pd.DataFrame, by: tuple[str, ...] = (), dt: float | None = None) -> pd.DataFrame:
    """The columns that name a fault's case: context (``by``), point, kind, duration class,
    phase."""
    return pd.DataFrame({**{c: df[c].astype(str).to_numpy() for c in by},
                         "point": df["point"].astype(str).to_numpy(),
                         "kind": fault_kind(df).to_numpy(),
                         "duration_class": duration_class(df, dt).to_numpy(),
                         "phase": phase(df, dt).to_numpy()}, index=df.index)  # fmt: skip


def case_ids(df: pd.DataFrame, by: tuple[str, ...] = (), dt: float | None = None) -> np.ndarray:
    """A case id (0, 1, ...) per row of ``df`` (critical faults with point, model, value, bit,
    seed, start, duration; ``dt``: the step length, else the rows' ``dt`` column); ``by``:
    context columns that also separate cases (scenario, seed, simulator). Ids follow the order of
    (context, point, kind, duration class, phase)."""
    if len(df) == 0:
        return np.zeros(0, np.int64)
    keys = case_keys(df, by, dt)
    return keys.groupby(list(keys.columns), sort=True, dropna=False).ngroup().to_numpy(np.int64)


def count_cases(df: pd.DataFrame, by: tuple[str, ...] = (), dt: float | None = None) -> int:
    """How many distinct cases the critical faults of ``df`` fall into."""
    return int(case_ids(df, by, dt).max() + 1) if len(df) else 0


def severity_order(df: pd.DataFrame) -> np.ndarray:
    """Positions of ``df``'s rows, most severe first: accidents first, then the smallest margin
    (min of min_delta_lon, min_delta_lat; rows without margins last), then the earliest start."""
    sev = (
        df["outcome"].map(SEVERITY).fillna(0).to_numpy(float)
        if "outcome" in df
        else np.zeros(len(df))
    )
    worst = _worst(df)
    worst = np.where(np.isnan(worst), np.inf, worst)
    return np.lexsort((df["start"].to_numpy(), worst, -sev))


def _worst(df: pd.DataFrame) -> np.ndarray:
    cols = [c for c in ("min_delta_lon", "min_delta_lat") if c in df]
    if not cols:
        return np.full(len(df), np.nan)
    return df[cols].apply(pd.to_numeric, errors="coerce").min(axis=1).to_numpy(float)


def summarise_cases(
    df: pd.DataFrame, by: tuple[str, ...] = (), dt: float | None = None
) -> pd.DataFrame:
    """One row per case, most severe first: ``case`` (1 = most severe), ``id`` (from
    :func:`case_ids`), context columns, point, kind, outcome (the worst member's), count,
    representative (``rep``: the index label in ``df`` of its most severe fault), start-time range
    ``t_first`` / ``t_last`` and duration range ``dur_min`` / ``dur_max`` (seconds with ``dt``,
    else steps) and the worst margin ``worst``."""
    cols = ["case", "id", *by, "point", "kind", "duration_class", "phase", "outcome", "count",
            "rep", "t_first", "t_last", "dur_min", "dur_max", "worst"]  # fmt: skip
    if df.empty:
        return pd.DataFrame(columns=cols)
    scale = 1.0 if dt is None else float(dt)
    keys = case_keys(df, by, dt)
    d = df.assign(_id=case_ids(df, by, dt), _kind=keys["kind"].to_numpy(),
                  _dcls=keys["duration_class"].to_numpy(), _phase=keys["phase"].to_numpy(),
                  _worst=_worst(df))  # fmt: skip
    d = d.iloc[severity_order(d)]  # first member of each case = its representative
    g = d.groupby("_id", sort=False)
    first = g.head(1).set_index("_id")
    out = pd.DataFrame({
        "id": first.index.to_numpy(),
        **{c: first[c].to_numpy() for c in by},
        "point": first["point"].to_numpy(),
        "kind": first["_kind"].to_numpy(),
        "duration_class": first["_dcls"].to_numpy(),
        "phase": first["_phase"].to_numpy(),
        "outcome": first["outcome"].to_numpy() if "outcome" in first else "critical",
        "count": g.size().reindex(first.index).to_numpy(),
        "rep": g.head(1).index.to_numpy(),
        "t_first": g["start"].min().reindex(first.index).to_numpy() * scale,
        "t_last": g["start"].max().reindex(first.index).to_numpy() * scale,
        "dur_min": g["duration"].min().reindex(first.index).to_numpy() * scale,
        "dur_max": g["duration"].max().reindex(first.index).to_numpy() * scale,
        "worst": g["_worst"].min().reindex(first.index).to_numpy(),
    })  # fmt: skip
    out.insert(0, "case", np.arange(1, len(out) + 1))
    return out[cols].reset_index(drop=True)


def group_keys(df: pd.DataFrame, dt: float | None = None) -> pd.DataFrame:
    """A fault's group of the search space: point, duration class and phase (a case without its
    corruption): where the search's evidence is counted (:mod:`drivefi.search.evidence`)."""
    return pd.DataFrame({"point": df["point"].astype(str).to_numpy(),
                         "duration_class": duration_class(df, dt).to_numpy(),
                         "phase": phase(df, dt).to_numpy()}, index=df.index)  # fmt: skip
