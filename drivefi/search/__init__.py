"""Critical-fault search: score the whole candidate-fault space with the 3-TBN, offline.

For every step k where the golden run is safe, every injection point, every candidate value (the
same grids as exhaustive plans; for bit flips, the flipped golden value) and every duration, the
3-TBN predicts the next steps under do(fault) from the golden window (k-1, k); the Runge-Kutta
safety potential of the predicted states gives delta and P(hazard). Candidates are ranked by
P(hazard), then by predicted delta, and the critical ones become a fault plan. Each
(point, duration, value kind) is one vectorised call over all its (step, value) pairs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from drivefi.core import Fault
from drivefi.errors import InputError
from drivefi.faults import flip_bit
from drivefi.faults.plan import Plan, default_values, fault_model_for
from drivefi.util.progress import Progress, silent

SEARCH_MODELS = ("1-fixed", "m-fixed", "bitflip")


@dataclass
class Candidates:
    """The scored candidate space, arrays of one length."""

    point: np.ndarray  # object (names)
    model: np.ndarray
    value: np.ndarray
    bit: np.ndarray  # -1 where not a bit flip
    start: np.ndarray
    duration: np.ndarray
    p_hazard: np.ndarray
    delta: np.ndarray

    def __len__(self) -> int:
        return len(self.start)

    def frame(self, idx=None):
        """Candidates ``idx`` (default: all) as faults, a pandas DataFrame with the columns of
        :func:`drivefi.faults.plan.faults_frame` (what :mod:`drivefi.search.modes` groups)."""
        import pandas as pd

        sel = slice(None) if idx is None else idx
        n = len(self.start[sel])
        return pd.DataFrame({"point": self.point[sel].astype(str), "model": self.model[sel],
                             "value": self.value[sel], "bit": self.bit[sel],
                             "start": self.start[sel], "duration": self.duration[sel],
                             "seed": np.zeros(n, np.int64)})  # fmt: skip

    def order(self) -> np.ndarray:
        """Most critical first: P(hazard) descending, then predicted delta ascending."""
        return np.lexsort((self.delta, -self.p_hazard))


@dataclass
class SearchResult:
    plan: Plan
    candidates: int
    predicted_critical: int
    seconds: float
    rate: float  # candidates scored per second


def _predictor(model, golden_windows):
    from drivefi.tbn import PosteriorPredictor, Predictor

    ctx = golden_windows.context
    return PosteriorPredictor(model, ctx) if getattr(model, "draws", 0) else Predictor(model, ctx)


@dataclass(frozen=True)
class FaultSpace:
    """The candidate faults the search scores: points x models x durations x values x starts."""

    # default: every point of the model, but the points whose faults never reach the stack while
    # a search records its training runs (drivefi.search.evidence.watch)
    points: list[str] | None = None
    models: tuple[str, ...] = ("1-fixed", "m-fixed")
    durations: tuple[int, ...] = (1, 5, 20)
    values: dict[str, list[float]] | None = None  # default: each point's value grid
    bits: tuple[int, ...] = tuple(range(32))
    horizon_after: int = 20  # steps rolled out after a fault ends
    stride: int = 1  # start steps: every stride-th


def score_space(
    scenario,
    model,
    golden,
    space: FaultSpace | None = None,
    progress: Progress = silent,
    **fields,
) -> Candidates:
    """Score every candidate fault of ``space`` (or its fields as keywords, e.g.
    ``durations=(1, 5)``); ``golden`` is a :class:`drivefi.run.golden.Golden` or Trace."""
    from drivefi.tbn import GoldenWindows, SafetyModel, check_scenario, score_faults

    sp = replace(space or FaultSpace(), **fields)
    points, models, durations, values = sp.points, sp.models, sp.durations, sp.values
    bits, horizon_after, stride = sp.bits, sp.horizon_after, sp.stride

    check_scenario(model, scenario.name, "model")
    for m in models:
        if m not in SEARCH_MODELS:
            raise InputError(f"--models: expected some of {', '.join(SEARCH_MODELS)}, got '{m}'")
    trace = getattr(golden, "trace", golden)
    st = model.structure
    gw = GoldenWindows(trace, scenario, st)
    pred = _predictor(model, gw)
    safety = SafetyModel(scenario)
    frame = trace.frame
    safe = (frame["delta_lon"].to_numpy() > 0) & (frame["delta_lat"].to_numpy() > 0)
    steps = scenario.steps
    if not points:  # every point of the model but those the open watch found unreached
        from drivefi.search.evidence import left_out

        out_ = left_out()
        points = [p for p in st.points if p not in out_]
    for p in points:
        if p not in st.points:
            raise InputError(
                f"--points: unknown injection point '{p}'; known: {', '.join(st.points)}"
            )
    out: dict[str, list] = {c: [] for c in Candidates.__dataclass_fields__}
    jobs = []  # (model label, duration, value kind)
    for m in models:
        if m == "1-fixed":  # one-step faults are the space's duration 1: only when asked for
            jobs += [("1-fixed", 1)] if 1 in durations else []
        elif m == "m-fixed":
            jobs += [("m-fixed", d) for d in durations if d > 1]
        else:
            jobs += [("bitflip", d) for d in durations]
    total = len(jobs) * len(points)
    for j, (label, dur) in enumerate(jobs):
        progress("scoring the candidate space", j * len(points), total)
        # every step, step 0 included (its slice k-1 is the initial slice repeated)
        ks = np.flatnonzero(safe[: steps - dur + 1])
        if stride > 1:
            ks = ks[ks % stride == 0]
        for p in points:
            if label == "bitflip":
                clean = frame[p].to_numpy()[ks]
                kk = np.repeat(ks, len(bits))
                bb = np.tile(np.asarray(bits), len(ks))
                vv = flip_bit(np.repeat(clean, len(bits)), bb)
                keep = np.isfinite(vv) & (np.abs(vv) < 1e6)  # the linear model cannot score NaN/inf
                kk, bb, vv = kk[keep], bb[keep], vv[keep]
            else:
                grid = np.asarray((values or {}).get(p) or value_grid(st, p))
                kk = np.repeat(ks, len(grid))
                vv = np.tile(grid, len(ks))
                bb = np.full(len(kk), -1)
            if len(kk) == 0:
                continue
            sc = score_faults(pred, gw, safety, kk, p, vv, dur, horizon=dur + horizon_after)
            n = len(kk)
            out["point"].append(np.full(n, p, object))
            out["model"].append(
                np.full(n, label if label == "bitflip" else fault_model_for(dur), object)
            )
            out["value"].append(vv)
            out["bit"].append(bb)
            out["start"].append(kk)
            out["duration"].append(np.full(n, dur))
            out["p_hazard"].append(np.nan_to_num(sc.p_hazard, nan=0.0))
            out["delta"].append(np.nan_to_num(sc.delta, nan=np.inf))
    progress("scoring the candidate space", total, total)
    cat = {c: (np.concatenate(v) if v else np.array([])) for c, v in out.items()}
    return Candidates(**cat)


def value_grid(st, point: str, count: int = 5) -> list[float]:
    """A point's default value grid (range ends and evenly spaced values), from the stack's
    declared range as the structure records it."""
    if point in st.ranges:
        lo, hi = st.ranges[point]
        return [float(v) for v in np.linspace(lo, hi, count)]
    return default_values(point, count)


def select(c: Candidates, top: int | None = None, min_prob: float | None = 0.5) -> np.ndarray:
    """Indices of the chosen candidates, most critical first."""
    order = c.order()
    if min_prob is not None:
        order = order[c.p_hazard[order] >= min_prob]
    if top is not None:
        order = order[:top]
    return order


def candidate_faults(c: Candidates, idx) -> list[Fault]:
    """The faults of candidates ``idx``."""
    faults = []
    for i in idx:
        flip = c.model[i] == "bitflip"
        faults.append(
            Fault(
                str(c.point[i]),
                str(c.model[i]),
                None if flip else float(c.value[i]),
                int(c.bit[i]) if flip else None,
                int(c.start[i]),
                int(c.duration[i]),
                0,
            )
        )
    return faults


def to_plan(scenario, c: Candidates, idx: np.ndarray) -> Plan:
    faults = candidate_faults(c, idx)
    extra = {
        "p_hazard": [f"{c.p_hazard[i]:.6g}" for i in idx],
        "predicted_delta": [f"{c.delta[i]:.6g}" for i in idx],
    }
    return Plan(scenario.name, scenario.steps, faults, extra)


def search(scenario, model, golden, top=None, min_prob=0.5, **space) -> SearchResult:
    """Score the space, pick the critical faults, return them as a plan (most critical first)."""
    t0 = time.perf_counter()
    c = score_space(scenario, model, golden, **space)
    idx = select(c, top, min_prob)
    el = time.perf_counter() - t0
    n_crit = int((c.p_hazard >= (0.5 if min_prob is None else min_prob)).sum())
    return SearchResult(
        to_plan(scenario, c, idx), len(c), n_crit, el, len(c) / el if el > 0 else 0.0
    )


def score_fault_list(scenario, model, golden, faults: list[Fault], horizon_after: int = 20):
    """The model's P(hazard) of each of ``faults`` (value faults, any start and duration), as
    :func:`score_space` scores candidates: e.g. the training runs' faults, to set the model's
    predictions beside their outcomes."""
    from drivefi.tbn import GoldenWindows, SafetyModel, score_faults

    out = np.zeros(len(faults))
    if not faults:
        return out
    trace = getattr(golden, "trace", golden)
    gw = GoldenWindows(trace, scenario, model.structure)
    pred, safety = _predictor(model, gw), SafetyModel(scenario)
    point = np.array([f.point for f in faults], object)
    k = np.array([f.start for f in faults], np.int64)
    v = np.array([np.nan if f.value is None else f.value for f in faults], float)
    d = np.array([f.duration for f in faults], np.int64)
    for p in np.unique(point):
        sel = np.flatnonzero((point == p) & np.isfinite(v))
        if p not in model.structure.points or not len(sel):
            continue
        sc = score_faults(pred, gw, safety, k[sel], str(p), v[sel], d[sel],
                          horizon=int(d[sel].max()) + horizon_after)  # fmt: skip
        out[sel] = np.nan_to_num(sc.p_hazard, nan=0.0)
    return out
