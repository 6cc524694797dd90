"""Training data for the 3-TBN: slice columns from traces, windows of consecutive steps, and a
generator of golden + random-fault runs of a scenario.

Every trace row becomes one slice: the trace's kinematics, injection points and applied actuation,
the exogenous inputs (road curvature; the nearest in-lane object ahead, from the scenario's scripted
actors), the derived features, and ``u_lon`` (the speed controller's command, observed where neither
throttle nor brake saturates). ``faulted.<point>`` marks rows whose point value was forced by a fault,
so that point's CPD is not fitted on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from drivefi.ads.perception import nearest_ahead
from drivefi.errors import InputError
from drivefi.tbn.structure import (
    APPLIED,
    FEATURES,
    INITIAL,
    NO_LEAD,
    POINTS,
    STATE,
    STRUCTURE,
    Context,
    Structure,
    u_lon,
)

TRACE_NEEDS = ("k", *STATE, "curvature", *APPLIED, *POINTS)
FAULT_PREFIX = "faulted."
INIT_PREFIX = "init."  # the stack's state before a trace's first step (from its metadata)
# metadata "ads_state" (drivefi.ads.stack.ADSState fields) -> recursive features
ADS_STATE = {
    "integral": "pi_int", "offset": "lane_est", "heading": "heading_est", "coast": "lane_miss",
    "gap": "gap_est", "ospeed": "ospeed_est", "ocoast": "gap_miss", "speed": "speed_est",
    "scoast": "speed_miss", "ref": "ref",
}  # fmt: skip


class LeadTable:
    """The nearest in-lane object ahead of the ego (as the reference perception selects it)."""

    def __init__(self, scenario):
        from drivefi.bridges.embedded import EmbeddedBridge

        self.bridge = EmbeddedBridge(scenario)
        self.half_len = 0.5 * scenario.ego.vehicle.length
        self.half_w = 0.5 * scenario.road.lane_width
        self.lane_c = self.bridge.lane_c

    def at(self, k: np.ndarray, s: np.ndarray) -> dict[str, np.ndarray]:
        """lead_s (object centre along the road), lead_off (ego half length + object half extent)
        and lead_v at steps k for an ego at s; with nothing ahead, lead_s = s + NO_LEAD."""
        k = np.asarray(k, np.int64)
        s = np.asarray(s, float)
        if self.bridge.actors.count == 0:
            return {"lead_s": s + NO_LEAD, "lead_off": np.zeros_like(s), "lead_v": np.zeros_like(s)}
        obj = self.bridge.actors_at(k)
        j, gap, o_lon = nearest_ahead(
            obj.s - s[:, None], obj.d - self.lane_c, obj.psi, obj.length, obj.width,
            self.half_w, self.half_len,
        )  # fmt: skip
        rows = np.arange(len(k))
        seen = np.isfinite(gap)
        return {
            "lead_s": np.where(seen, obj.s[rows, j], s + NO_LEAD),
            "lead_off": np.where(seen, self.half_len + o_lon, 0.0),
            "lead_v": np.where(seen, obj.v_lon[rows, j], 0.0),
        }


def fault_point(meta: dict) -> str | None:
    """The injection point a trace's fault forced ('*' when unknown or several)."""
    f = meta.get("fault")
    if not f:
        return None
    if isinstance(f, dict):
        p = f.get("point")
        return p if p in POINTS else "*"
    return "*"


def check_frame(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Validate a trace frame; returns its recorded rows (leading unrecorded rows dropped)."""
    missing = [c for c in TRACE_NEEDS if c not in frame.columns]
    if missing:
        raise InputError(f"{source}: missing column(s) {', '.join(missing)} needed by the 3-TBN")
    kin = frame[[*STATE, "curvature"]].to_numpy(float)
    recorded = np.isfinite(kin).any(axis=1)
    if not recorded.any():
        raise InputError(f"{source}: no recorded rows (every kinematic value is NaN)")
    first = int(np.argmax(recorded))
    last = len(recorded) - int(np.argmax(recorded[::-1]))
    f = frame.iloc[first:last].reset_index(drop=True)
    bad = ~np.isfinite(f[[*STATE, "curvature", *APPLIED]].to_numpy(float))
    if bad.any():
        r, c = np.argwhere(bad)[0]
        col = [*STATE, "curvature", *APPLIED][c]
        raise InputError(
            f"{source}: NaN or infinite '{col}' at step {int(f['k'].iloc[r])} "
            f"(a trace needs finite kinematics and actuation on every recorded step)"
        )
    if len(f) < 3:
        raise InputError(f"{source}: only {len(f)} recorded steps; the 3-TBN needs at least 3")
    return f


def slice_frame(
    frame: pd.DataFrame, meta: dict, scenario=None, source: str = "<trace>", structure=STRUCTURE
) -> pd.DataFrame:
    """One row per step with every slice variable, 'k', and ``faulted.<point>`` flags."""
    cols = _raw_slice(frame, meta, scenario, source)
    add_features([cols], Context.from_meta(meta), structure)
    return pd.DataFrame(cols)


def _raw_slice(frame: pd.DataFrame, meta: dict, scenario, source: str) -> dict[str, np.ndarray]:
    """A trace's observed slice columns (no features yet)."""
    f = check_frame(frame, source)
    ctx = Context.from_meta(meta)
    cols: dict[str, np.ndarray] = {"k": f["k"].to_numpy(np.int64)}
    for c in (*STATE, "curvature", *APPLIED, *POINTS):
        cols[c] = f[c].to_numpy(float)
    if scenario is None:
        scenario = scenario_of(meta, source)
    cols.update(LeadTable(scenario).at(cols["k"], cols["s"]))
    cols["u_lon"] = u_lon(cols, ctx)
    active = f["fault_active"].to_numpy(bool) if "fault_active" in f else np.zeros(len(f), bool)
    which = fault_point(meta)
    for p in POINTS:
        cols[FAULT_PREFIX + p] = active & (which in (p, "*"))
    for field, val in (meta.get("ads_state") or {}).items():
        if field in ADS_STATE:
            cols[INIT_PREFIX + ADS_STATE[field]] = np.full(len(f), float(val))
    # the controller's own command is unknown where a fault forced throttle or brake
    forced = cols[FAULT_PREFIX + "control.throttle"] | cols[FAULT_PREFIX + "control.brake"]
    cols["u_lon"] = np.where(forced, np.nan, cols["u_lon"])
    return cols


def add_features(runs: list[dict[str, np.ndarray]], ctx: Context, structure=STRUCTURE) -> None:
    """Compute the derived features of runs of consecutive steps (in place). Recursive features
    (trackers, speed reference) are stepped along the runs, all runs at once."""
    feats = [v for v in structure.vars if v.kind == "feature"]
    rec = [v for v in feats if any(lag == 1 for _, lag in v.parents)]
    rec_names = {v.name for v in rec}
    dep = set(rec_names)  # features computed from recursive ones
    for v in feats:
        if any(lag == 0 and p in dep for p, lag in v.parents):
            dep.add(v.name)

    def plain(names):
        for cols in runs:
            prev = {n: np.roll(a, 1) for n, a in cols.items()}
            for v in feats:
                if v.name in names:
                    cols[v.name] = FEATURES[v.name](cols, prev, ctx)

    plain({v.name for v in feats if v.name not in dep})
    if rec:
        names = dict.fromkeys(n for c in runs for n in c if np.asarray(c[n]).dtype.kind == "f")
        inputs = [n for n in names if n not in dep]
        for v in rec:
            bad = [p for p, lag in v.parents if lag == 0 and p in dep and p not in rec_names]
            if bad:
                raise ValueError(f"{v.name}: recursive feature depends on derived {bad}")
        n = max(len(c["k"]) for c in runs)
        data = {}
        for name in inputs:
            m = np.full((len(runs), n), np.nan)
            for i, c in enumerate(runs):
                if name in c:
                    m[i, : len(c[name])] = c[name]
            data[name] = m
        out = {v.name: np.full((len(runs), n), np.nan) for v in rec}
        cur = {name: m[:, 0] for name, m in data.items()}
        prev = {}
        for v in rec:  # the stack's state before the first step: recorded, else INITIAL's
            given = cur.get(INIT_PREFIX + v.name)
            init = INITIAL[v.name](cur, ctx)
            prev[v.name] = init if given is None else np.where(np.isfinite(given), given, init)
        for t in range(n):
            cur = {name: m[:, t] for name, m in data.items()}
            for v in rec:
                cur[v.name] = FEATURES[v.name](cur, prev, ctx)
                out[v.name][:, t] = cur[v.name]
            prev = cur
        for i, c in enumerate(runs):
            for name, m in out.items():
                c[name] = m[i, : len(c["k"])]
    plain(dep - rec_names)


def scenario_of(meta: dict, source: str = "<trace>"):
    from drivefi.scenario import load_scenario

    name = meta.get("scenario")
    if not name:
        raise InputError(f"{source}: trace metadata names no scenario")
    try:
        return load_scenario(name)
    except InputError:
        raise InputError(
            f"{source}: scenario '{name}' of this trace is not a bundled scenario; "
            "the 3-TBN needs its actors"
        ) from None


def windows(slices: pd.DataFrame, structure: Structure = STRUCTURE) -> pd.DataFrame:
    """Consecutive-step pairs: columns ``<var>_0`` (step k-1) and ``<var>_1`` (step k)."""
    names = [*structure.names, *(FAULT_PREFIX + p for p in POINTS)]
    a, b = slices.iloc[:-1].reset_index(drop=True), slices.iloc[1:].reset_index(drop=True)
    ok = (b["k"].to_numpy() - a["k"].to_numpy()) == 1
    if "run" in slices:
        ok &= a["run"].to_numpy() == b["run"].to_numpy()
    out = {f"{n}_0": a[n].to_numpy()[ok] for n in names}
    out.update({f"{n}_1": b[n].to_numpy()[ok] for n in names})
    out["k_1"] = b["k"].to_numpy()[ok]
    if "run" in slices:
        out["run"] = b["run"].to_numpy()[ok]
    return pd.DataFrame(out)


@dataclass
class TrainingSet:
    """Slice rows of several runs (column 'run'), their windows and a summary."""

    slices: pd.DataFrame
    scenarios: list[str]
    contexts: dict[str, dict]
    sources: list[str]

    @property
    def runs(self) -> int:
        return int(self.slices["run"].nunique())

    def windows(self, structure: Structure = STRUCTURE) -> pd.DataFrame:
        return windows(self.slices, structure)

    def summary(self) -> dict:
        s = self.slices
        faulted = s[[FAULT_PREFIX + p for p in POINTS]].any(axis=1)
        return {
            "scenarios": self.scenarios,
            "runs": self.runs,
            "rows": len(s),
            "faulted_rows": int(faulted.sum()),
            "sources": self.sources[:20] + (["..."] if len(self.sources) > 20 else []),
        }


def from_traces(traces: list, sources: list[str] | None = None, scenario=None) -> TrainingSet:
    """Build a training set from :class:`drivefi.recorder.Trace` objects."""
    sources = sources or [f"<trace {i}>" for i in range(len(traces))]
    names, ctxs = [], {}
    raw: list[tuple[str, dict]] = []
    cache: dict[str, object] = {}
    for i, (tr, src) in enumerate(zip(traces, sources, strict=True)):
        sc = scenario
        name = tr.meta.get("scenario")
        if sc is None:
            sc = cache.get(name) or scenario_of(tr.meta, src)
            cache[name] = sc
        try:
            cols = _raw_slice(tr.frame, tr.meta, sc, src)
            ctx = Context.from_meta(tr.meta)
        except KeyError as err:
            raise InputError(f"{src}: trace metadata lacks {err}") from None
        cols["run"] = np.full(len(cols["k"]), i)
        raw.append((name, cols))
        if name not in names:
            names.append(name)
            ctxs[name] = ctx.as_dict()
    for name in names:  # features of each scenario's runs, batched
        add_features([c for n, c in raw if n == name], Context(**ctxs[name]))
    frames = [pd.DataFrame(c) for _, c in raw]
    return TrainingSet(pd.concat(frames, ignore_index=True), names, ctxs, list(sources))


def read_traces(paths: list[str | Path]) -> TrainingSet:
    """Read Parquet traces (golden or faulty) into a training set."""
    from drivefi.recorder import read_trace

    if not paths:
        raise InputError("fit: give at least one trace file")
    traces = [read_trace(p) for p in paths]
    return from_traces(traces, [str(p) for p in paths])


DURATIONS = (1, 2, 5, 10, 20, 40)


def random_faults(scenario, runs: int, seed: int = 0, points=POINTS, durations=DURATIONS) -> list:
    """``runs`` single m-fixed faults: random point, value (range ends 30% of the time), start and
    duration."""
    from drivefi.ads import POINTS_BY_NAME
    from drivefi.faults import Fault

    rng = np.random.default_rng([seed, 0x7B1])
    out = []
    for _ in range(runs):
        p = POINTS_BY_NAME[points[rng.integers(len(points))]]
        u = rng.random()
        value = p.lo if u < 0.15 else p.hi if u < 0.3 else p.lo + rng.random() * (p.hi - p.lo)
        dur = int(durations[rng.integers(len(durations))])
        start = int(rng.integers(2, scenario.steps - 1))
        out.append(
            Fault(p.name, "m-fixed" if dur > 1 else "1-fixed", float(value), None, start, dur, 0)
        )
    return out


def fault_run_traces(scenario, faults: list, golden) -> list:
    """Traces of ``faults`` run in one lock-step batch, each started from the golden run's snapshot
    two steps before its fault (runs are independent: any split of ``faults`` gives the same)."""
    from drivefi.ads import INJECTION_POINTS
    from drivefi.faults import FaultInjector
    from drivefi.recorder import Trace, trace_frame, trace_meta
    from drivefi.simulate import Simulation, TraceRecorder

    runs = len(faults)
    sim = Simulation(scenario)
    rec = TraceRecorder(runs, sim.steps, sim.points)
    starts = np.array([max(f.start - 2, 0) for f in faults])
    sim.run(
        runs,
        snapshot=golden.snapshots.take(starts),
        injector=FaultInjector(faults, INJECTION_POINTS),
        recorders=[rec],
    )
    ads = golden.snapshots.ads
    traces = []
    for i, f in enumerate(faults):
        meta = trace_meta(scenario, sim.seed, f.as_row())
        # the stack's state the run starts from (its trackers, speed reference, integral)
        meta["ads_state"] = {a: float(getattr(ads, a)[starts[i]]) for a in ADS_STATE}
        traces.append(Trace(trace_frame(rec, i), meta))
    return traces


def simulate_training(
    scenario, runs: int = 200, seed: int = 0, golden=None, map_chunks=None
) -> list:
    """Golden trace plus ``runs`` random-fault traces, the fault runs batched in lock-step and
    started from the golden run's snapshot two steps before their fault. ``map_chunks(fn,
    scenario, faults, golden)`` (e.g. a Ray executor's) may spread the runs over workers; it
    returns ``fn``'s trace lists in the order of ``faults``."""
    from drivefi.recorder import record_golden

    golden = golden or record_golden(scenario)
    traces = [golden.trace]
    if runs <= 0:
        return traces
    faults = random_faults(scenario, runs, seed)
    if map_chunks is None:
        return traces + fault_run_traces(scenario, faults, golden)
    for part in map_chunks(fault_run_traces, scenario, faults, golden):
        traces += part
    return traces


def training_set(
    scenario, runs: int = 200, seed: int = 0, golden=None, map_chunks=None
) -> TrainingSet:
    """What the pipeline calls: a scenario's golden run plus ``runs`` random-fault runs."""
    traces = simulate_training(scenario, runs, seed, golden, map_chunks)
    src = [f"{scenario.name}:golden"] + [f"{scenario.name}:fault{i}" for i in range(runs)]
    return from_traces(traces, src, scenario)
